"""The directory in MongoDB: a document per community (its place tree), per person, per audited read.

Personal fields are sealed on the way in and opened on the way out
(:mod:`services.directory.sealing`): name, phone, e-mail, openid and room are
BSON binary in the database, and ``phone_hash`` (a keyed hash) finds a person by
phone. Building, unit, birth year and flags stay in the clear: segments and
scoping query them, and on their own they identify nobody.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import suppress
from datetime import datetime
from typing import Any

from bson import Binary
from pymongo import ASCENDING, DESCENDING
from pymongo.client_session import ClientSession
from pymongo.database import Database
from pymongo.errors import CollectionInvalid, DuplicateKeyError, OperationFailure

from kernel.envelope import Envelope
from kernel.errors import Conflict
from kernel.idempotency import ensure_idempotency_index
from kernel.outbox import push_events
from services.directory.people import Address, Consent, Person
from services.directory.places import Community
from services.directory.sealing import Sealer

PLACES = "places"
PEOPLE = "people"
AUDIT = "audit"
META = "meta"
SEALED = ("name", "phone", "email", "wechat_openid")
MAX_PAGE = 200


def ensure_indexes(db: Database) -> None:
    """The collections (a transaction cannot always create one) and the indexes every query relies on."""
    existing = set(db.list_collection_names())
    for name in (PLACES, PEOPLE, AUDIT, META):
        if name not in existing:
            with suppress(CollectionInvalid, OperationFailure):  # another instance created it meanwhile
                db.create_collection(name)
    people = db[PEOPLE]
    people.create_index([("phone_hash", ASCENDING)], name="by_phone", sparse=True)
    people.create_index([("community", ASCENDING), ("address.building", ASCENDING)], name="by_building")
    people.create_index([("community", ASCENDING), ("roles", ASCENDING), ("grids", ASCENDING)], name="by_role")
    people.create_index([("moved_out_at", ASCENDING)], name="by_moved_out", sparse=True)
    db[AUDIT].create_index([("community", ASCENDING), ("at", DESCENDING)], name="by_time")
    db[AUDIT].create_index([("community", ASCENDING), ("subject", ASCENDING), ("at", DESCENDING)],
                           name="by_subject")
    # create_api_key is left out on purpose: its answer holds the key, which must not be stored; a second
    # key under the same name is refused (409), which makes its retries safe already.
    ensure_idempotency_index(db)


def phone_hash(sealer: Sealer, phone: str) -> str:
    return sealer.lookup_hash("phone", phone)


def to_document(person: Person, sealer: Sealer) -> dict:
    """The stored form of a person: personal fields sealed, the phone also as its lookup hash."""
    address = None
    if person.address is not None:
        address = {"building": person.address.building, "unit": person.address.unit,
                   "room": _binary(sealer.seal("room", person.address.room or None))}
    return {
        "_id": person.id, "community": person.community,
        "name": _binary(sealer.seal("name", person.name)),
        "phone": _binary(sealer.seal("phone", person.phone)),
        "phone_hash": phone_hash(sealer, person.phone) if person.phone else None,
        "email": _binary(sealer.seal("email", person.email)),
        "wechat_openid": _binary(sealer.seal("wechat_openid", person.wechat_openid)),
        "roles": list(person.roles), "grids": list(person.grids), "teams": list(person.teams),
        "address": address, "birth_year": person.birth_year, "household": person.household,
        "flags": list(person.flags),
        "consents": {purpose: consent.to_dict() for purpose, consent in person.consents.items()},
        "password_hash": person.password_hash,
        "created_at": person.created_at, "updated_at": person.updated_at,
        "moved_out_at": person.moved_out_at, "erased_at": person.erased_at,
    }


def from_document(document: dict, sealer: Sealer) -> Person:
    address = None
    if document.get("address"):
        stored = document["address"]
        address = Address(stored.get("building"), stored.get("unit") or "",
                          sealer.open("room", stored.get("room")) or "")
    consents = {purpose: Consent(purpose, bool(c.get("granted")), c.get("at"))
                for purpose, c in (document.get("consents") or {}).items()}
    return Person(
        id=document["_id"], community=document["community"],
        name=sealer.open("name", document.get("name")), phone=sealer.open("phone", document.get("phone")),
        roles=list(document.get("roles") or []), grids=list(document.get("grids") or []),
        teams=list(document.get("teams") or []), address=address, birth_year=document.get("birth_year"),
        household=document.get("household"), flags=list(document.get("flags") or []),
        email=sealer.open("email", document.get("email")),
        wechat_openid=sealer.open("wechat_openid", document.get("wechat_openid")),
        consents=consents, password_hash=document.get("password_hash"),
        created_at=document.get("created_at"), updated_at=document.get("updated_at"),
        moved_out_at=document.get("moved_out_at"), erased_at=document.get("erased_at"),
    )


def _binary(value: bytes | None) -> Binary | None:
    return None if value is None else Binary(value)


def page(cursor_after: str | None, limit: int | None) -> tuple[dict, int]:
    """The ``_id`` condition and the bounded size of a page that starts after ``cursor_after``.

    >>> page("p-00000000000a", 1000)
    ({'_id': {'$gt': 'p-00000000000a'}}, 200)
    >>> page(None, None)
    ({}, 50)
    """
    size = max(1, min(int(limit or 50), MAX_PAGE))
    return ({"_id": {"$gt": cursor_after}} if cursor_after else {}), size


class DirectoryRepository:
    """Places, people and the audit of one service database."""

    def __init__(self, db: Database, sealer: Sealer):
        self.db = db
        self.sealer = sealer
        self.places = db[PLACES]
        self.people = db[PEOPLE]
        self.audits = db[AUDIT]

    # --- places
    def community(self, code: str, session: ClientSession | None = None) -> Community | None:
        document = self.places.find_one({"_id": code}, session=session)
        return Community.from_document(document) if document else None

    def communities(self) -> list[Community]:
        return [Community.from_document(d) for d in self.places.find({}, sort=[("_id", ASCENDING)])]

    def save_community(self, community: Community, session: ClientSession | None = None) -> None:
        """Write a changed tree if nobody saved it since it was read (its ``version``); Conflict otherwise."""
        expected = community.version
        community.version = expected + 1
        document = community.to_document()
        try:
            if expected == 0:
                self.places.insert_one(document, session=session)
                return
            result = self.places.replace_one({"_id": community.code, "version": expected}, document,
                                             session=session)
        except DuplicateKeyError as error:
            community.version = expected
            raise Conflict(f"the places of {community.code} were changed meanwhile; try again") from error
        if result.matched_count != 1:
            community.version = expected
            raise Conflict(f"the places of {community.code} were changed meanwhile; try again")

    def grid_workers(self, community: str) -> dict[str, list[str]]:
        """Grid code → the ids of its grid workers (staff with the role whose grids include it)."""
        workers: dict[str, list[str]] = {}
        query = {"community": community, "roles": "grid_worker", "erased_at": None}
        for document in self.people.find(query, {"grids": 1}, sort=[("_id", ASCENDING)]):
            for grid in document.get("grids") or []:
                workers.setdefault(grid, []).append(document["_id"])
        return workers

    # --- people
    def building_of(self, community: str, person_id: str) -> str | None:
        """A live person's building code, read without unsealing anything (routing asks it per ticket)."""
        document = self.people.find_one({"_id": person_id, "community": community, "erased_at": None},
                                        {"address.building": 1})
        return ((document or {}).get("address") or {}).get("building")

    def get(self, community: str, person_id: str) -> Person | None:
        document = self.people.find_one({"_id": person_id, "community": community})
        return from_document(document, self.sealer) if document else None

    def by_phone(self, phone: str, community: str | None = None) -> list[Person]:
        """The live people with this (normalised) phone, in one community or in all."""
        query: dict[str, Any] = {"phone_hash": phone_hash(self.sealer, phone), "erased_at": None}
        if community is not None:
            query["community"] = community
        return [from_document(d, self.sealer) for d in self.people.find(query, sort=[("_id", ASCENDING)])]

    def by_phone_hashes(self, community: str, hashes: Sequence[str]) -> dict[str, Person]:
        """The live people of a community by the lookup hashes of their phones (all of them, no page)."""
        query = {"community": community, "phone_hash": {"$in": list(hashes)}, "erased_at": None}
        return {d["phone_hash"]: from_document(d, self.sealer) for d in self.people.find(query)}

    def many(self, community: str, person_ids: Sequence[str]) -> list[Person]:
        query = {"community": community, "_id": {"$in": list(person_ids)}}
        return [from_document(d, self.sealer) for d in self.people.find(query)]

    def insert(self, person: Person, session: ClientSession | None = None) -> None:
        self.people.insert_one(to_document(person, self.sealer), session=session)

    def insert_many(self, people: Iterable[Person], session: ClientSession | None = None) -> None:
        documents = [to_document(person, self.sealer) for person in people]
        if documents:
            self.people.insert_many(documents, ordered=True, session=session)

    def replace(self, person: Person, session: ClientSession | None = None) -> None:
        self.people.replace_one({"_id": person.id, "community": person.community},
                                to_document(person, self.sealer), session=session)

    def replace_with_events(self, person: Person, events: Sequence[Envelope]) -> bool:
        """Write a person and the events the change causes in one write; False if it is gone or erased."""
        document = to_document(person, self.sealer)
        document.pop("_id")
        result = self.people.update_one({"_id": person.id, "community": person.community, "erased_at": None},
                                        push_events({"$set": document}, events))
        return result.matched_count == 1

    def find(self, query: dict, cursor_after: str | None, limit: int | None) -> tuple[list[Person], str | None]:
        """A page of people matching ``query`` in id order, and the cursor of the next page (None at the end)."""
        condition, size = page(cursor_after, limit)
        documents = list(self.people.find({**query, **condition}, sort=[("_id", ASCENDING)], limit=size + 1))
        next_cursor = documents[size - 1]["_id"] if len(documents) > size else None
        return [from_document(d, self.sealer) for d in documents[:size]], next_cursor

    def ids_matching(self, query: dict) -> list[str]:
        return [d["_id"] for d in self.people.find(query, {"_id": 1}, sort=[("_id", ASCENDING)])]

    def due_for_erasure(self, before: datetime, limit: int = 100) -> list[Person]:
        query = {"moved_out_at": {"$ne": None, "$lt": before}, "erased_at": None}
        return [from_document(d, self.sealer) for d in self.people.find(query, limit=limit)]

    # --- audit
    def audit(self, entry: dict) -> None:
        self.audits.insert_one(entry)

    def audit_entries(self, community: str, filters: dict, cursor_after: str | None,
                      limit: int | None) -> tuple[list[dict], str | None]:
        """Audit entries newest first; the cursor is the last entry's ``_id`` (time-ordered ObjectIds)."""
        size = max(1, min(int(limit or 50), MAX_PAGE))
        query: dict[str, Any] = {"community": community}
        for key in ("actor", "subject"):
            if filters.get(key):
                query[key] = filters[key]
        times = {}
        if filters.get("from"):
            times["$gte"] = filters["from"]
        if filters.get("to"):
            times["$lt"] = filters["to"]
        if times:
            query["at"] = times
        if cursor_after:
            query["_id"] = {"$lt": cursor_after}
        documents = list(self.audits.find(query, sort=[("_id", DESCENDING)], limit=size + 1))
        next_cursor = documents[size - 1]["_id"] if len(documents) > size else None
        return documents[:size], next_cursor

    # --- seeding
    def is_empty(self) -> bool:
        return self.places.find_one({}, {"_id": 1}) is None and self.people.find_one({}, {"_id": 1}) is None

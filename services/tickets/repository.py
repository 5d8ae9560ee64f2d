"""Tickets in MongoDB: one document per ticket, carrying its timeline and its outbox; side entries apart.

What another service did about a ticket (a volunteer's task step) is recorded as its own small
document in ``side_entries``, not by updating its ticket: on the embedded database a small
insert costs its server ~0.14 ms of CPU, an update of a ticket document ~1.2 ms. The repository
attaches a ticket's side entries whenever it reads the ticket (:attr:`Ticket.history`).
Echo outcomes are not here: notify keeps them, and the service asks for them when it shows a
ticket (services/tickets/timeline.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from kernel.envelope import Envelope
from kernel.errors import Conflict
from kernel.groupcommit import GroupCommit
from kernel.idempotency import ensure_idempotency_index
from kernel.logging import get_logger
from kernel.outbox import OUTBOX, SINCE, push_events, with_events
from kernel.pagination import keyset_filter
from services.tickets import readmodel, sla
from services.tickets.domain import CLOSED_STATES, OPEN_STATES, Ticket
from services.tickets.numbers import COLLECTION as NUMBERS

COLLECTION = "tickets"
PATROLS = "patrols"  # one document per patrol round, with its outbox (patrol.recorded)
STAFF_SORT = [("created_at", DESCENDING), ("_id", DESCENDING)]
SIDE_ENTRIES = "side_entries"  # one document per event of another service on a ticket: _id is the event's id
LEGACY_ECHOES = "echoes"  # before notify answered for echoes: copies of their outcomes, and the side entries
ECHO_OUTCOME_TYPES = ("echo.delivered", "echo.failed", "echo.read")
OPEN311_TOKENS = "open311_tokens"  # Open311 token -> the ticket id it stands for (_id is the token)
# What the reports read of a ticket (reports.ticket_line, the clearance): never its people or its text.
REPORT_FIELDS = {"number": 1, "state": 1, "grid": 1, "category": 1, "priority": 1, "assignee": 1, "next_step.owner": 1,
                 "next_step.due_at": 1, "suggested_owner": 1, "created_at": 1, "due_at": 1, "bounce_count": 1,
                 "reopen_count": 1, "updated_at": 1}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
REQUEST_KEYS = uuid.UUID("5d6f0c4e-1f7b-4c55-9a55-6875697368e5")  # the namespace of request-key ticket ids
log = get_logger(__name__)


def retire_echo_copies(db: Database) -> None:
    """Move a database written before notify answered for echoes (issue #16) to ``side_entries``.

    Its ``echoes`` held a copy of each echo's outcome beside the volunteer steps: the steps move (a second
    run, or another process doing it at once, finds them there), and the copies go with the collection.
    Nothing reads them any more, and they name residents that no erasure of tickets' looks for. A database
    without ``echoes`` has nothing to do (one list of names at start-up).
    """
    if LEGACY_ECHOES not in db.list_collection_names():
        return
    try:
        steps = list(db[LEGACY_ECHOES].find({"type": {"$nin": list(ECHO_OUTCOME_TYPES)}}))
        if steps:
            try:
                db[SIDE_ENTRIES].insert_many(steps, ordered=False)
            except BulkWriteError as error:  # a step moved already (its key), by an earlier run or a peer
                if any(failure.get("code") != 11000 for failure in error.details.get("writeErrors", [])):
                    raise
    except PyMongoError as error:  # kept for the next start (a peer that dropped it meanwhile moved every step)
        log.warning("tickets.echo_copies_not_retired", error=repr(error)[:300])
        return
    db[LEGACY_ECHOES].drop()
    log.info("tickets.echo_copies_retired", side_entries=len(steps))


def ticket_id_for(community: str, reporter: str | None, request_key: str | None) -> str:
    """A new ticket's id: random, or derived from the client's request key so that a retry finds it.

    >>> ticket_id_for("xingqiao", "r-1", "k-1") == ticket_id_for("xingqiao", "r-1", "k-1")
    True
    >>> ticket_id_for("xingqiao", "r-2", "k-1") == ticket_id_for("xingqiao", "r-1", "k-1")
    False
    >>> len(ticket_id_for("xingqiao", "r-1", None))
    32
    """
    if request_key is None:
        return uuid.uuid4().hex
    return uuid.uuid5(REQUEST_KEYS, json.dumps([community, reporter, request_key])).hex


class TicketRepository:
    """Tickets of the service's database; ``writes`` group-commits concurrent workers' writes."""

    def __init__(self, db: Database, writes: GroupCommit):
        self.collection = db[COLLECTION]
        self.side_entries = db[SIDE_ENTRIES]
        self.writes = writes

    @staticmethod
    def ensure_indexes(db: Database) -> None:
        tickets = db[COLLECTION]
        tickets.create_index([("community", ASCENDING), ("attached_residents", ASCENDING),
                              ("created_at", DESCENDING)], name="by_resident")
        # No (community, state) nor (community, created_at) index of their own: staff_state and staff_recent
        # lead with those fields and serve the reports' open tickets and Open311's window of the newest;
        # each index costs every write of a ticket.
        # A request key makes the ticket's id (ticket_id_for): no index of its own, which would cost
        # every write to every ticket (the embedded database checks each index on each write).
        # Staff's lists (list_for_staff): newest first within the community, or within one state, grid or
        # owner. Other filters (category, source, overdue) narrow what one of these reads; each index costs
        # every write of a ticket, so there is one per filter a list is mostly asked for, not one per filter.
        tickets.create_index([("community", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)],
                             name="staff_recent")
        tickets.create_index([("community", ASCENDING), ("state", ASCENDING), ("created_at", DESCENDING)],
                             name="staff_state")
        tickets.create_index([("community", ASCENDING), ("grid", ASCENDING), ("created_at", DESCENDING)],
                             name="staff_grid")
        tickets.create_index([("community", ASCENDING), ("assignee.id", ASCENDING), ("created_at", DESCENDING)],
                             name="staff_owner")
        # GET /tickets/{number}; unique, so a number is never given to two tickets, whatever happens.
        tickets.create_index([("community", ASCENDING), ("number", ASCENDING)], name="by_number", unique=True,
                             partialFilterExpression={"number": {"$type": "string"}})
        ensure_idempotency_index(db)  # comments and patrols honour Idempotency-Key (kernel/idempotency.py)
        db[PATROLS].create_index([("community", ASCENDING), ("grid", ASCENDING), ("started_at", DESCENDING)],
                                 name="by_grid")
        # The only secondary index of the side entries: every index costs every insert of one.
        db[SIDE_ENTRIES].create_index([("ticket_id", ASCENDING)], name="by_ticket")
        retire_echo_copies(db)
        sla.ensure_indexes(db, COLLECTION)  # the index of due times; the calendar's seed
        # The weekly review reads what changed since the week began, and the daily clearance what closed that day.
        tickets.create_index([("community", ASCENDING), ("updated_at", DESCENDING)], name="by_updated")
        # Overdue lists (staff's ``overdue=true``, the weekly review): ``due_at`` is None once no clock runs.
        tickets.create_index([("community", ASCENDING), ("due_at", ASCENDING)], name="by_due")
        readmodel.ensure_indexes(db)  # the reports' counters

    def add(self, ticket: Ticket, events: Sequence[Envelope], request_key: str | None = None,
            request_hash: str | None = None, extra: Mapping[str, Any] | None = None) -> Ticket:
        """Insert a new ticket and its events in one write; returns the ticket that is stored.

        A client that retries a create with the same ``request_key`` (its Idempotency-Key)
        gets the ticket of its first attempt back instead of a second ticket: such a
        ticket's id is :func:`ticket_id_for` the key, so the retry's insert collides.
        ``extra`` are members the ticket does not model (Open311's attributes and media_url).
        """
        document = {**(extra or {}), **ticket.to_document()}
        # The timer looks at a new ticket when its first threshold comes (``extra`` may say when: else now).
        document.setdefault(sla.NEXT_AT, ticket.created_at)
        if request_key is not None:
            document["request_key"] = request_key
            document["request_hash"] = request_hash  # a retry with another body is refused (422)
        try:
            self.writes.insert(self.collection, with_events(document, events))
            return ticket
        except DuplicateKeyError:
            existing = self.by_request_key(ticket.community, ticket.reporter, request_key)
            if request_key is None or existing is None:
                raise
            return existing

    def by_request_key(self, community: str, reporter: str | None, request_key: str | None) -> Ticket | None:
        """The ticket an earlier create with this key made, with its side entries; None if there is none."""
        if request_key is None:
            return None
        document = self.collection.find_one({"_id": ticket_id_for(community, reporter, request_key),
                                             "community": community, "reporter": reporter})
        return self._with_side_entries(community, [document])[0] if document else None

    def request_hash(self, community: str, ticket_id: str) -> str | None:
        """The hash of the body that created a keyed ticket (None for tickets stored before hashes were)."""
        document = self.collection.find_one({"_id": ticket_id, "community": community}, {"request_hash": 1})
        return (document or {}).get("request_hash")

    def get(self, community: str, ticket_id: str) -> Ticket | None:
        """The ticket with its side entries (two queries: the ticket, then its side entries by ``ticket_id``)."""
        document = self.collection.find_one({"_id": ticket_id, "community": community})
        return self._with_side_entries(community, [document])[0] if document else None

    def by_number(self, community: str, number: str) -> Ticket | None:
        """The ticket with this short number (``XQ-20261206-0042``), with its side entries."""
        document = self.collection.find_one({"community": community, "number": number})
        return self._with_side_entries(community, [document])[0] if document else None

    @staticmethod
    def staff_query(community: str, filters: Mapping[str, Any], scope: Sequence[Mapping[str, Any]],
                    now: datetime) -> dict:
        """The filter of a staff list: the asked ``filters`` (equalities) AND every clause of the caller's ``scope``.

        >>> TicketRepository.staff_query("xingqiao", {"state": "received", "owner": "p-1"}, [], datetime(2026, 1, 1))
        {'community': 'xingqiao', 'state': 'received', 'assignee.id': 'p-1'}
        """
        query: dict[str, Any] = {"community": community}
        for name in ("state", "grid", "category", "source"):
            if filters.get(name) is not None:
                query[name] = str(filters[name])
        if filters.get("owner") is not None:
            query["assignee.id"] = str(filters["owner"])
        clauses = [dict(clause) for clause in scope]
        if filters.get("overdue") is True:
            query["due_at"] = {"$lt": now}
            query.setdefault("state", {"$in": sorted(str(state) for state in OPEN_STATES)})
        elif filters.get("overdue") is False:
            clauses.append({"$or": [{"due_at": None}, {"due_at": {"$gte": now}}]})
        if clauses:
            query["$and"] = clauses
        return query

    def list_for_staff(self, query: Mapping[str, Any], limit: int, after: Sequence[Any] | None = None
                       ) -> list[Ticket]:
        """A page of a staff list, newest first (``after``: the ``(created_at, id)`` the last page ended at)."""
        keyset = keyset_filter(STAFF_SORT, after)
        full = {"$and": [dict(query), keyset]} if keyset else dict(query)
        documents = list(self.collection.find(full, sort=STAFF_SORT, limit=limit))
        community = query["community"]
        return self._with_side_entries(community, documents)

    def add_patrol(self, document: Mapping[str, Any], events: Sequence[Envelope]) -> bool:
        """Insert a patrol round with its event; False if it is there already (a retried request)."""
        try:
            self.writes.insert(self.collection.database[PATROLS], with_events(dict(document), events))
            return True
        except DuplicateKeyError:
            return False

    def patrol(self, community: str, patrol_id: str) -> dict | None:
        return self.collection.database[PATROLS].find_one({"_id": patrol_id, "community": community},
                                                          {OUTBOX: 0, SINCE: 0})

    @property
    def numbers(self):
        """The collection of per-day number counters (services/tickets/numbers.py)."""
        return self.collection.database[NUMBERS]

    def save(self, ticket: Ticket, expected_version: int, events: Sequence[Envelope]) -> None:
        """Write a changed ticket and its events in one write, if nobody changed it meanwhile.

        Its side entries are not part of the write (:meth:`Ticket.to_document` leaves them out):
        they live in their own records, which a save can neither copy nor overwrite.
        """
        document = ticket.to_document()
        document.pop("_id")
        document.update(sla.next_at_for_write(ticket.updated_at))  # the change may start or stop a clock
        result = self.collection.update_one(
            {"_id": ticket.id, "community": ticket.community, "version": expected_version},
            push_events({"$set": document}, events),
        )
        if result.matched_count != 1:
            raise Conflict(f"ticket {ticket.id} was changed by someone else; reload and retry")

    def of_resident(self, community: str, resident: str, limit: int = 50,
                    after: Sequence[Any] | None = None) -> list[Ticket]:
        """A resident's tickets, newest first, with their side entries (one ``$in`` query for all of them).

        ``after`` is the ``(created_at, id)`` of the last ticket of the previous page.
        """
        sort = [("created_at", DESCENDING), ("_id", DESCENDING)]
        query = {"community": community, "attached_residents": resident, **keyset_filter(sort, after)}
        cursor = self.collection.find(query, sort=sort, limit=limit)
        return self._with_side_entries(community, list(cursor))

    def record_entry(self, community: str, ticket_id: str, entry: Mapping[str, Any]) -> None:
        """Record a side entry once: an insert of its own document, keyed by its ``event_id``.

        A redelivered event collides with its record and changes nothing (the record
        is the handler's dedupe, ``dedupe="effects"``). The ticket is not written, so
        its version does not move: a transition saved from an older read cannot
        overwrite the entry, which is not in the ticket's document (:meth:`save`).
        Concurrent entries go to the database as one insert (group commit).
        """
        record = {"_id": entry["event_id"], "community": community, "ticket_id": ticket_id, **entry}
        with suppress(DuplicateKeyError):  # recorded already: a redelivery of the same event
            self.writes.insert(self.side_entries, record)

    # --- personal data (PIPL) ----------------------------------------------------------------------

    def documents_of_person(self, community: str, resident: str) -> list[dict]:
        """The raw documents (outbox included) of every ticket that names the resident as reported/attached."""
        return list(self.collection.find({"community": community, "attached_residents": resident}))

    def closed_before(self, cutoff: datetime, limit: int) -> list[dict]:
        """Raw documents of closed tickets last changed before ``cutoff`` that were not anonymised yet."""
        return list(self.collection.find(
            {"state": {"$in": sorted(str(state) for state in CLOSED_STATES)}, "updated_at": {"$lt": cutoff},
             "anonymised_at": None},
            sort=[("updated_at", ASCENDING)], limit=limit,
        ))

    def save_anonymised(self, ticket: Ticket, expected_version: int, outbox: list[dict] | None) -> bool:
        """Write an anonymised ticket and its anonymised outbox; False if someone changed it meanwhile.

        The outbox keeps every entry, id and staging time (the relay's bookkeeping is untouched):
        only what the events say about people changes. The request key goes: with it a ticket's
        id could be recomputed from a resident's id, which would tie the ticket to them again; so
        does the hash of the request's body, which would confirm a guess of what they wrote.
        """
        document = ticket.to_document()
        document.pop("_id")
        if outbox is not None:
            document[OUTBOX] = outbox
        result = self.collection.update_one(
            {"_id": ticket.id, "community": ticket.community, "version": expected_version},
            {"$set": document, "$unset": {"request_key": "", "request_hash": ""}},
        )
        return result.matched_count == 1

    def _with_side_entries(self, community: str, documents: Sequence[Mapping[str, Any]]) -> list[Ticket]:
        """The tickets the documents describe, each with the side entries recorded for it."""
        if not documents:
            return []
        ids = [document["_id"] for document in documents]
        query = {"ticket_id": ids[0] if len(ids) == 1 else {"$in": ids}, "community": community}
        entries: dict[str, list[dict]] = {}
        for record in self.side_entries.find(query, {"_id": 0, "community": 0}):
            entries.setdefault(record.pop("ticket_id"), []).append(record)
        return [Ticket.from_document(document, entries.get(document["_id"], ())) for document in documents]

    # --- reports (services/tickets/reports.py) -----------------------------------------------------------
    # The embedded database plans a query with a second ``$in`` (grids, states) as a collection scan: each
    # query here names one index range, and the grids of a grid worker's report are kept in Python.

    @staticmethod
    def _in_grids(documents, grids: Sequence[str] | None) -> list[dict]:
        if grids is None:
            return list(documents)
        wanted = set(grids)
        return [document for document in documents if document.get("grid") in wanted]

    @staticmethod
    def report_open_query(community: str) -> dict[str, Any]:
        """Open tickets of the community: a range of the ``staff_state`` index."""
        return {"community": community, "state": {"$in": sorted(str(state) for state in OPEN_STATES)}}

    def open_for_report(self, community: str, grids: Sequence[str] | None) -> list[dict]:
        """What the daily clearance reads of every open ticket (no timeline, no outbox)."""
        return self._in_grids(self.collection.find(self.report_open_query(community), REPORT_FIELDS), grids)

    @staticmethod
    def report_closed_query(community: str, start: datetime, end: datetime) -> dict[str, Any]:
        return {"community": community, "updated_at": {"$gte": start, "$lt": end}}

    def closed_between(self, community: str, start: datetime, end: datetime, grids: Sequence[str] | None) -> int:
        """How many tickets were closed (last changed while closed) in ``[start, end)``: the ``by_updated`` index."""
        closed = {str(state) for state in CLOSED_STATES}
        found = self.collection.find(self.report_closed_query(community, start, end), {"state": 1, "grid": 1})
        return sum(document.get("state") in closed for document in self._in_grids(found, grids))

    @staticmethod
    def report_overdue_query(community: str, cutoff: datetime) -> dict[str, Any]:
        """Tickets whose resolution deadline passed before ``cutoff``: the ``by_due`` index's range (bounded
        below, so the tickets with no deadline, which sort first, are not read)."""
        return {"community": community, "due_at": {"$gt": EPOCH, "$lt": cutoff}}

    def for_weekly_review(self, community: str, ids: Sequence[str], cutoff: datetime,
                          grids: Sequence[str] | None) -> list[dict]:
        """The tickets of a weekly review, each once: those marked for it (``ids``), the overdue, and those
        awaiting a callback (the unanswered are among them); three index ranges, never all that changed."""
        fields = {**REPORT_FIELDS, "review_flags": 1, "community": 1}
        still_open = {str(state) for state in OPEN_STATES} - {"resolved"}
        found: dict[str, dict] = {}
        if ids:  # by _id alone: the embedded database scans the collection for an _id $in beside another field
            for document in self.collection.find({"_id": {"$in": list(ids)}}, fields):
                if document.get("community") == community:
                    found[document["_id"]] = document
        for document in self.collection.find(self.report_overdue_query(community, cutoff), fields):
            if document.get("state") in still_open:
                found.setdefault(document["_id"], document)
        for document in self.collection.find({"community": community, "state": "resolved"}, fields):
            found.setdefault(document["_id"], document)
        return self._in_grids(found.values(), grids)

    # --- Open311 ---------------------------------------------------------------------------------------

    def open311_search(self, community: str, *, ids: Sequence[str] | None = None, start: datetime | None = None,
                       end: datetime | None = None, service_codes: Sequence[str] | None = None,
                       hidden_codes: Sequence[str] = (), states: Sequence[str] | None = None,
                       limit: int = 1000) -> list[dict]:
        """Raw documents (no outbox) for GET requests: by ids, or in ``[start, end]``, newest first."""
        query: dict[str, Any] = {"community": community}
        if ids is not None:
            query["_id"] = {"$in": list(ids)}
        else:
            query["created_at"] = {"$gte": start, "$lte": end}
        codes: dict[str, Any] = {}
        if service_codes is not None:
            codes["$in"] = [code for code in service_codes if code not in hidden_codes]
        elif hidden_codes:
            codes["$nin"] = list(hidden_codes)
        if codes:
            query["service_code"] = codes
        if states is not None:
            query["state"] = {"$in": list(states)}
        sort = [("created_at", DESCENDING), ("_id", DESCENDING)]
        return list(self.collection.find(query, {OUTBOX: 0}, sort=sort, limit=limit))

    def open311_document(self, community: str, ticket_id: str) -> dict | None:
        """One ticket's raw document (no outbox), for GET requests/{id}."""
        return self.collection.find_one({"_id": ticket_id, "community": community}, {OUTBOX: 0})

    def add_open311_token(self, community: str, token: str, ticket_id: str, now: datetime) -> None:
        """Record what an Open311 token stands for, before the ticket is stored (a retry records it again)."""
        with suppress(DuplicateKeyError):
            self.collection.database[OPEN311_TOKENS].insert_one(
                {"_id": token, "community": community, "ticket_id": ticket_id, "created_at": now})

    def open311_token(self, community: str, token: str) -> str | None:
        """The id of the ticket a token stands for, once that ticket is stored; None otherwise."""
        record = self.collection.database[OPEN311_TOKENS].find_one({"_id": token, "community": community})
        if record is None or self.collection.find_one({"_id": record["ticket_id"]}, {"_id": 1}) is None:
            return None
        return record["ticket_id"]

"""Tickets in MongoDB: one document per ticket, carrying its timeline and its outbox."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from kernel.envelope import Envelope
from kernel.errors import Conflict
from kernel.groupcommit import BatchRun, Writes
from kernel.outbox import push_events, settle_expression, since_expression, with_events
from services.tickets.domain import Ticket

COLLECTION = "tickets"
REQUEST_KEYS = uuid.UUID("5d6f0c4e-1f7b-4c55-9a55-6875697368e5")  # the namespace of request-key ticket ids
ECHO_BATCH = 16  # timeline entries per statement: each ticket of a batch is matched against every entry's case


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
    """Tickets of the service's database; ``writes`` combines concurrent workers' writes."""

    def __init__(self, db: Database, writes: Writes):
        self.collection = db[COLLECTION]
        self.writes = writes

    @staticmethod
    def ensure_indexes(db: Database) -> None:
        tickets = db[COLLECTION]
        tickets.create_index([("community", ASCENDING), ("attached_residents", ASCENDING),
                              ("created_at", DESCENDING)], name="by_resident")
        tickets.create_index([("community", ASCENDING), ("state", ASCENDING)], name="by_state")
        # A request key makes the ticket's id (ticket_id_for): a unique index for it would cost
        # every write to every ticket (the embedded database checks each index on each write).
        if "by_request_key" in tickets.index_information():
            tickets.drop_index("by_request_key")

    def add(self, ticket: Ticket, events: Sequence[Envelope], request_key: str | None = None) -> Ticket:
        """Insert a new ticket and its events in one write; returns the ticket that is stored.

        A client that retries a create with the same ``request_key`` (its Idempotency-Key)
        gets the ticket of its first attempt back instead of a second ticket: such a
        ticket's id is :func:`ticket_id_for` the key, so the retry's insert collides.
        """
        document = ticket.to_document()
        if request_key is not None:
            document["request_key"] = request_key
        try:
            self.writes.insert(self.collection, with_events(document, events))
            return ticket
        except DuplicateKeyError:
            existing = self.by_request_key(ticket.community, ticket.reporter, request_key)
            if request_key is None or existing is None:
                raise
            return existing

    def by_request_key(self, community: str, reporter: str | None, request_key: str | None) -> Ticket | None:
        if request_key is None:
            return None
        document = self.collection.find_one({"_id": ticket_id_for(community, reporter, request_key),
                                             "community": community, "reporter": reporter})
        return Ticket.from_document(document) if document else None

    def get(self, community: str, ticket_id: str) -> Ticket | None:
        document = self.collection.find_one({"_id": ticket_id, "community": community})
        return Ticket.from_document(document) if document else None

    def save(self, ticket: Ticket, expected_version: int, events: Sequence[Envelope]) -> None:
        """Write a changed ticket and its events in one write, if nobody changed it meanwhile."""
        document = ticket.to_document()
        document.pop("_id")
        result = self.collection.update_one(
            {"_id": ticket.id, "community": ticket.community, "version": expected_version},
            push_events({"$set": document}, events),
        )
        if result.matched_count != 1:
            raise Conflict(f"ticket {ticket.id} was changed by someone else; reload and retry")

    def of_resident(self, community: str, resident: str, limit: int = 50) -> list[Ticket]:
        cursor = self.collection.find({"community": community, "attached_residents": resident},
                                      sort=[("created_at", DESCENDING)], limit=limit)
        return [Ticket.from_document(document) for document in cursor]

    def record_echo(self, community: str, ticket_id: str, entry: dict, published: Sequence[str] = ()) -> None:
        """Add an echo outcome to the ticket's timeline once (its ``event_id`` is the key).

        The version moves too, so a transition saved from an older read conflicts
        instead of overwriting the timeline without this entry. The same write removes
        the ``published`` events from the ticket's outbox (the relay handed them over:
        one write instead of two). Concurrent entries are written together
        (see :func:`record_echoes`).
        """
        self.writes.submit(f"timeline:{self.collection.full_name}", lambda: record_echoes(self.collection),
                           (community, ticket_id, entry, tuple(published)), limit=ECHO_BATCH)


def record_echoes(collection) -> BatchRun:
    """A batch run adding timeline entries to their tickets: one ``update_many`` per batch.

    Each ticket gets the entries meant for it (a ``$switch`` on its id and community)
    whose event id its timeline does not hold yet, and loses the published events
    handed over with them from its outbox; its version moves only if it got an entry.
    """
    def run(items: list[tuple[str, str, dict, tuple[str, ...]]]) -> list[None]:
        changes: dict[tuple[str, str], tuple[dict[str, dict], set[str]]] = {}
        for community, ticket_id, entry, published in items:
            entries, settled = changes.setdefault((community, ticket_id), ({}, set()))
            entries.setdefault(entry["event_id"], entry)
            settled.update(published)
        collection.update_many({"_id": {"$in": sorted({ticket_id for _, ticket_id in changes})}},
                               _timeline_pipeline(changes))
        return [None] * len(items)
    return run


def _timeline_pipeline(changes: dict[tuple[str, str], tuple[dict[str, dict], set[str]]]) -> list[dict]:
    branches = [
        {"case": {"$and": [{"$eq": ["$_id", ticket_id]}, {"$eq": ["$community", community]}]},
         # literal: a "$" at the start of a text is then not a field path
         "then": {"$literal": {"entries": list(entries.values()), "published": sorted(settled)}}}
        for (community, ticket_id), (entries, settled) in changes.items()
    ]
    # $map rather than the "$timeline.event_id" path, which SecantusDB does not resolve to an array
    known = {"$map": {"input": {"$ifNull": ["$timeline", []]}, "as": "entry", "in": "$$entry.event_id"}}
    return [
        {"$set": {"_change": {"$switch": {"branches": branches, "default": {"entries": [], "published": []}}}}},
        {"$set": {"_new_entries": {"$filter": {"input": "$_change.entries",
                                               "cond": {"$not": [{"$in": ["$$this.event_id", known]}]}}}}},
        {"$set": {"timeline": {"$concatArrays": [{"$ifNull": ["$timeline", []]}, "$_new_entries"]},
                  "version": {"$add": ["$version", {"$cond": [{"$gt": [{"$size": "$_new_entries"}, 0]}, 1, 0]}]},
                  **settle_expression("$_change.published")}},
        {"$set": since_expression()},
        {"$unset": ["_change", "_new_entries"]},
    ]

"""Tickets in MongoDB: one document per ticket, carrying its timeline and its outbox."""

from __future__ import annotations

from collections.abc import Sequence

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from kernel.envelope import Envelope
from kernel.errors import Conflict
from kernel.outbox import push_events, with_events
from services.tickets.domain import Ticket

COLLECTION = "tickets"


class TicketRepository:
    def __init__(self, db: Database):
        self.collection = db[COLLECTION]

    @staticmethod
    def ensure_indexes(db: Database) -> None:
        tickets = db[COLLECTION]
        tickets.create_index([("community", ASCENDING), ("attached_residents", ASCENDING),
                              ("created_at", DESCENDING)], name="by_resident")
        tickets.create_index([("community", ASCENDING), ("state", ASCENDING)], name="by_state")
        tickets.create_index([("community", ASCENDING), ("reporter", ASCENDING), ("request_key", ASCENDING)],
                             unique=True, partialFilterExpression={"request_key": {"$type": "string"}},
                             name="by_request_key")

    def add(self, ticket: Ticket, events: Sequence[Envelope], request_key: str | None = None) -> Ticket:
        """Insert a new ticket and its events in one write; returns the ticket that is stored.

        A client that retries a create with the same ``request_key`` (its Idempotency-Key)
        gets the ticket of its first attempt back instead of a second ticket.
        """
        document = ticket.to_document()
        if request_key is not None:
            document["request_key"] = request_key
        try:
            self.collection.insert_one(with_events(document, events))
            return ticket
        except DuplicateKeyError:
            existing = self.by_request_key(ticket.community, ticket.reporter, request_key)
            if request_key is None or existing is None:
                raise
            return existing

    def by_request_key(self, community: str, reporter: str | None, request_key: str | None) -> Ticket | None:
        if request_key is None:
            return None
        document = self.collection.find_one({"community": community, "reporter": reporter,
                                             "request_key": request_key})
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

    def record_echo(self, community: str, ticket_id: str, entry: dict) -> bool:
        """Add an echo outcome to the timeline once; False if it was already there.

        The version moves too, so a transition saved from an older read conflicts
        instead of overwriting the timeline without this entry.
        """
        result = self.collection.update_one(
            {"_id": ticket_id, "community": community, "timeline.event_id": {"$ne": entry["event_id"]}},
            {"$push": {"timeline": entry}, "$inc": {"version": 1}},
        )
        return result.modified_count == 1

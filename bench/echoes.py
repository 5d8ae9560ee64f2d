"""Tickets and their echoes, read back from the database of a stack after (or while) it is loaded.

Every phase loads with a resident of its own, so its tickets are
``attached_residents == subject`` and its echoes ``recipient == subject`` — both
served by the indexes the platform keeps anyway. Times are the ones the services
stored (``created_at`` of the ticket, ``delivery.delivered_at`` of the inbox
message), on this machine's clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pymongo import MongoClient
from pymongo.collection import Collection

from bench.documents import COMMUNITY
from bench.stacks import Stack

POLL_SECONDS = 0.5


@dataclass(frozen=True)
class EchoStore:
    """Where one stack keeps tickets and inbox messages."""

    client: MongoClient
    tickets_db: str
    inbox_db: str

    @classmethod
    def of(cls, client: MongoClient, stack: Stack) -> EchoStore:
        return cls(client, stack.tickets_db, stack.inbox_db)

    @property
    def tickets(self) -> Collection:
        return self.client[self.tickets_db]["tickets"]

    @property
    def inbox(self) -> Collection:
        return self.client[self.inbox_db]["inbox"]

    def counts(self, subject: str) -> tuple[int, int]:
        """Tickets of ``subject``, and echoes delivered to them."""
        tickets = self.tickets.count_documents({"community": COMMUNITY, "attached_residents": subject})
        echoes = self.inbox.count_documents({"community": COMMUNITY, "recipient": subject})
        return tickets, echoes

    def wait_drained(self, subject: str, deadline: float, settle: float = 1.0) -> bool:
        """Wait until every ticket of ``subject`` has its echo (and no ticket came for ``settle`` s)."""
        last_tickets, stable_since = -1, time.monotonic()
        while time.time() < deadline:
            tickets, echoes = self.counts(subject)
            if tickets != last_tickets:
                last_tickets, stable_since = tickets, time.monotonic()
            if echoes >= tickets and time.monotonic() - stable_since >= settle:
                return True
            time.sleep(POLL_SECONDS)
        return False

    def created(self, subject: str) -> dict[str, float]:
        """Ticket id -> ``created_at`` (epoch seconds) for every ticket of ``subject``."""
        cursor = self.tickets.find({"community": COMMUNITY, "attached_residents": subject}, {"created_at": 1})
        return {doc["_id"]: doc["created_at"].timestamp() for doc in cursor}

    def delivered(self, subject: str) -> dict[str, float]:
        """Ticket id -> the earliest ``delivery.delivered_at`` (epoch seconds) of its echo to ``subject``."""
        cursor = self.inbox.find({"community": COMMUNITY, "recipient": subject},
                                 {"ticket_id": 1, "delivery.delivered_at": 1})
        first: dict[str, float] = {}
        for doc in cursor:
            at = doc["delivery"]["delivered_at"].timestamp()
            first[doc["ticket_id"]] = min(at, first.get(doc["ticket_id"], at))
        return first

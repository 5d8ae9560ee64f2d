"""Residents' inbox messages, each with its delivery record and the outbox of its outcome event."""

from __future__ import annotations

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from kernel.envelope import Envelope
from kernel.groupcommit import Writes
from kernel.outbox import with_events

COLLECTION = "inbox"


class InboxRepository:
    """Inbox messages of the service's database; ``writes`` combines concurrent workers' inserts."""

    def __init__(self, db: Database, writes: Writes):
        self.collection = db[COLLECTION]
        self.writes = writes

    @staticmethod
    def ensure_indexes(db: Database) -> None:
        db[COLLECTION].create_index([("community", ASCENDING), ("recipient", ASCENDING),
                                     ("created_at", DESCENDING)], name="by_recipient")

    def deliver(self, message: dict, outcome: Envelope) -> bool:
        """Store a message and its outcome event in one write; False if it was stored before.

        The message id is derived from the source event and the recipient, so a
        redelivered event cannot leave a second message.
        """
        try:
            self.writes.insert(self.collection, with_events(message, [outcome]))
            return True
        except DuplicateKeyError:
            return False

    def of_recipient(self, community: str, recipient: str, limit: int = 50) -> list[dict]:
        return list(self.collection.find(
            {"community": community, "recipient": recipient},
            {"_outbox": 0, "_outbox_since": 0},
            sort=[("created_at", DESCENDING)], limit=limit,
        ))

"""Residents' inbox messages, each with its delivery record and the outbox of its outcome event;
the delivery records of the sign-in codes sent by SMS."""

from __future__ import annotations

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from kernel.envelope import Envelope
from kernel.groupcommit import CommitQueues
from kernel.outbox import with_events
from kernel.pagination import keyset_filter

COLLECTION = "inbox"
DELIVERIES = "deliveries"  # external sends (SMS ...), one record per send; never the message's secret


def ensure_indexes(db: Database) -> None:
    """Every index of notify's database."""
    InboxRepository.ensure_indexes(db)
    DeliveryRepository.ensure_indexes(db)


class InboxRepository:
    """Inbox messages of the service's database; ``writes`` group-commits concurrent workers' inserts."""

    def __init__(self, db: Database, writes: CommitQueues):
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

    def erase_recipient(self, community: str, recipient: str) -> int:
        """Remove every inbox message of a resident who asked to be forgotten; how many there were.

        Idempotent: a second call finds nothing. A message still waiting in its outbox goes too;
        its ``echo.delivered`` is a fact about a person who is no more, and tickets anonymise it.
        """
        return self.collection.delete_many({"community": community, "recipient": recipient}).deleted_count

    def of_recipient(self, community: str, recipient: str, limit: int = 50, after: tuple | None = None) -> list[dict]:
        """A recipient's messages, newest first; ``after`` is the ``(created_at, _id)`` of the previous page's last."""
        sort = [("created_at", DESCENDING), ("_id", DESCENDING)]
        return list(self.collection.find(
            {"community": community, "recipient": recipient, **keyset_filter(sort, after)},
            {"_outbox": 0, "_outbox_since": 0},
            sort=sort, limit=limit,
        ))

    def unread(self, community: str, recipient: str) -> int:
        return self.collection.count_documents({"community": community, "recipient": recipient, "read_at": None})


class DeliveryRepository:
    """Records of external sends: what was asked, when, and what the provider answered."""

    def __init__(self, db: Database):
        self.collection = db[DELIVERIES]

    @staticmethod
    def ensure_indexes(db: Database) -> None:
        db[DELIVERIES].create_index([("community", ASCENDING), ("requested_at", DESCENDING)],
                                    name="by_community")

    def requested(self, record: dict) -> None:
        self.collection.insert_one(record)

    def sent(self, delivery_id: str, at, provider_id: str, attempts: int) -> None:
        # "sent", never "delivered": only a provider's receipt can say that.
        self.collection.update_one({"_id": delivery_id}, {"$set": {
            "status": "sent", "sent_at": at, "provider_id": provider_id, "attempts": attempts,
            "provider_answer": {"code": "OK"}}})

    def failed(self, delivery_id: str, at, answer: dict, attempts: int) -> None:
        self.collection.update_one({"_id": delivery_id}, {"$set": {
            "status": "failed", "failed_at": at, "provider_answer": answer, "attempts": attempts}})

    def get(self, delivery_id: str) -> dict | None:
        return self.collection.find_one({"_id": delivery_id})

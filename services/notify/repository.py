"""Residents' inbox messages, each with its delivery record and the outbox of its outcome event;
the delivery records of the sign-in codes sent by SMS."""

from __future__ import annotations

from contextlib import suppress
from datetime import timedelta

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from kernel.envelope import Envelope
from kernel.groupcommit import CommitQueues
from kernel.idempotency import ensure_idempotency_index
from kernel.outbox import push_events, with_events
from kernel.pagination import keyset_filter
from services.notify.fallback import ACCOUNTED_REASONS

COLLECTION = "inbox"
DELIVERIES = "deliveries"  # external sends (SMS ...), one record per send; never the message's secret


def ensure_indexes(db: Database) -> None:
    """Every index of notify's database."""
    ensure_idempotency_index(db)  # broadcasts honour Idempotency-Key (kernel/idempotency.py)
    InboxRepository.ensure_indexes(db)
    DeliveryRepository.ensure_indexes(db)
    ensure_echo_indexes(db)


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

    def store(self, message: dict) -> bool:
        """Store a message whose outcome event its echo carries; False if it was stored before."""
        try:
            self.writes.insert(self.collection, message)
            return True
        except DuplicateKeyError:
            return False

    def mark_read(self, community: str, recipient: str, message_id: str, at) -> tuple[dict | None, bool]:
        """The recipient's message with ``read_at`` set (the first time only), and whether this call set it."""
        projection = {"_outbox": 0, "_outbox_since": 0}
        changed = self.collection.find_one_and_update(
            {"_id": message_id, "community": community, "recipient": recipient, "read_at": None},
            {"$set": {"read_at": at}}, projection=projection, return_document=ReturnDocument.AFTER)
        if changed is not None:
            return changed, True
        return self.collection.find_one({"_id": message_id, "community": community, "recipient": recipient},
                                        projection), False

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


ECHOES = "echoes"  # one document per (event, recipient): its plan, each step's delivery record, its outbox
PREFERENCES = "preferences"
TASKS = "echo_tasks"  # human steps: a grid worker phones or visits


def ensure_echo_indexes(db: Database) -> None:
    db[ECHOES].create_index([("due_at", ASCENDING)], name="due", sparse=True)
    db[ECHOES].create_index([("community", ASCENDING), ("ticket_id", ASCENDING)], name="by_ticket")
    db[ECHOES].create_index([("community", ASCENDING), ("recipient", ASCENDING)], name="by_recipient")
    db[ECHOES].create_index([("silent", ASCENDING), ("proof_due_at", ASCENDING)], name="proof")
    db[COLLECTION].create_index([("broadcast_id", ASCENDING)], name="by_broadcast", sparse=True)
    db[TASKS].create_index([("community", ASCENDING), ("status", ASCENDING), ("created_at", DESCENDING)],
                           name="open_tasks")


class EchoRepository:
    """Echo documents: created once per (event, recipient), then moved on by compare-and-set on ``version``."""

    LEASE_SECONDS = 30.0

    def __init__(self, db: Database, writes: CommitQueues | None = None):
        self.collection = db[ECHOES]
        self.writes = writes

    def create(self, echo: dict, outcome: list[Envelope]) -> bool:
        """Store a new echo (with its outcome events, if it is delivered already); False if it exists."""
        document = with_events({**echo, "version": 0, "lease_until": None}, outcome)
        try:
            if self.writes is not None:
                self.writes.insert(self.collection, document)
            else:
                self.collection.insert_one(document)
            return True
        except DuplicateKeyError:
            return False

    def claim(self, echo_id: str, now, *, due_only: bool = True) -> dict | None:
        """Lease an echo for one worker (the handler or the timer), if it is due and not leased."""
        query: dict = {"_id": echo_id, "$or": [{"lease_until": None}, {"lease_until": {"$lt": now}}]}
        if due_only:
            query["due_at"] = {"$lte": now}
        return self.collection.find_one_and_update(
            query, {"$set": {"lease_until": now + timedelta(seconds=self.LEASE_SECONDS)}},
            projection={"_outbox": 0}, return_document=ReturnDocument.AFTER)

    def due(self, now, limit: int = 200) -> list[str]:
        return [d["_id"] for d in self.collection.find({"due_at": {"$lte": now}}, {"_id": 1}, limit=limit,
                                                       sort=[("due_at", ASCENDING)])]

    def save(self, echo: dict, events: list[Envelope], *, release: bool = True) -> bool:
        """Write the echo's new state (and events) if nobody else moved it since it was read."""
        state = {k: v for k, v in echo.items() if k not in ("_id", "version", "_outbox", "_outbox_since")}
        if release:
            state["lease_until"] = None
        update = push_events({"$set": state, "$inc": {"version": 1}}, events)
        return self.collection.update_one({"_id": echo["_id"], "version": echo.get("version", 0)},
                                          update).modified_count == 1

    def get(self, echo_id: str) -> dict | None:
        return self.collection.find_one({"_id": echo_id}, {"_outbox": 0, "_outbox_since": 0})

    def of_ticket(self, community: str, ticket_id: str, limit: int = 200) -> list[dict]:
        return list(self.collection.find({"community": community, "ticket_id": ticket_id},
                                         {"_outbox": 0, "_outbox_since": 0}, sort=[("occurred_at", ASCENDING)],
                                         limit=limit))

    def newly_silent(self, now, limit: int = 500) -> list[dict]:
        """Echoes past their proof deadline, not delivered, not accounted for, not yet reported silent.

        Accounted ones (a reason recorded) are left out here, or a crowd of them (a digest) could fill
        every pass's ``limit`` and hide a silent one behind them.
        """
        return list(self.collection.find({"proof_due_at": {"$lte": now}, "status": {"$ne": "delivered"},
                                          "silent_at": None, "reason": {"$nin": list(ACCOUNTED_REASONS)},
                                          "audience": {"$ne": "staff"}},
                                         {"_outbox": 0, "_outbox_since": 0}, limit=limit))

    def silent(self, community: str | None = None, limit: int = 1000) -> list[dict]:
        query: dict = {"silent_at": {"$ne": None}, "status": {"$ne": "delivered"}, "audience": {"$ne": "staff"}}
        if community is not None:
            query["community"] = community
        return list(self.collection.find(query, {"_outbox": 0, "_outbox_since": 0},
                                         sort=[("proof_due_at", ASCENDING)], limit=limit))

    def mark_silent(self, echo_id: str, at, events: list[Envelope]) -> bool:
        update = push_events({"$set": {"silent_at": at}}, events)
        return self.collection.update_one({"_id": echo_id, "silent_at": None}, update).modified_count == 1

    def recent(self, community: str, since, limit: int = 20000) -> list[dict]:
        return list(self.collection.find({"community": community, "occurred_at": {"$gte": since}},
                                         {"steps": 1, "occurred_at": 1}, limit=limit))

    def erase_recipient(self, community: str, recipient: str) -> int:
        return self.collection.delete_many({"community": community, "recipient": recipient}).deleted_count


class PreferenceRepository:
    def __init__(self, db: Database):
        self.collection = db[PREFERENCES]

    def get(self, community: str, person: str) -> dict | None:
        return self.collection.find_one({"_id": f"{community}:{person}"}, {"_id": 0, "community": 0, "person": 0})

    def put(self, community: str, person: str, preferences: dict, at) -> None:
        self.collection.replace_one({"_id": f"{community}:{person}"},
                                    {**preferences, "community": community, "person": person, "updated_at": at},
                                    upsert=True)

    def erase(self, community: str, person: str) -> None:
        self.collection.delete_one({"_id": f"{community}:{person}"})


class TaskRepository:
    """Human steps: a grid worker is asked to phone or visit; recording it done is the delivery."""

    def __init__(self, db: Database):
        self.collection = db[TASKS]

    def open(self, task: dict) -> None:
        # the same step opened twice (a retry) leaves one task
        with suppress(DuplicateKeyError):
            self.collection.insert_one(task)

    def get(self, community: str, task_id: str) -> dict | None:
        return self.collection.find_one({"_id": task_id, "community": community})

    def list(self, community: str, status: str | None, limit: int, after: tuple | None = None) -> list[dict]:
        sort = [("created_at", DESCENDING), ("_id", DESCENDING)]
        query: dict = {"community": community, **keyset_filter(sort, after)}
        if status:
            query["status"] = status
        return list(self.collection.find(query, sort=sort, limit=limit))

    def done(self, community: str, task_id: str, by: str, note: str | None, at) -> dict | None:
        return self.collection.find_one_and_update(
            {"_id": task_id, "community": community, "status": "open"},
            {"$set": {"status": "done", "done_at": at, "done_by": by, "note": note}},
            return_document=ReturnDocument.AFTER)

    def erase_recipient(self, community: str, recipient: str) -> int:
        return self.collection.delete_many({"community": community, "recipient": recipient}).deleted_count


BROADCASTS = "broadcasts"


class BroadcastRepository:
    """Broadcasts: the request (with its outbox), where its fan-out got to, and its recipients' inbox messages."""

    def __init__(self, db: Database):
        self.collection = db[BROADCASTS]
        self.inbox = db[COLLECTION]

    def create(self, broadcast: dict, events: list[Envelope]) -> None:
        self.collection.insert_one(with_events(broadcast, events))

    def get(self, community: str, broadcast_id: str) -> dict | None:
        return self.collection.find_one({"_id": broadcast_id, "community": community},
                                        {"_outbox": 0, "_outbox_since": 0})

    def deliver_batch(self, messages: list[dict]) -> int:
        """Insert a page of inbox messages at once; those stored before (a redelivered batch) are skipped."""
        if not messages:
            return 0
        try:
            return len(self.inbox.insert_many(messages, ordered=False).inserted_ids)
        except BulkWriteError as error:
            others = [e for e in error.details.get("writeErrors", []) if e.get("code") != 11000]
            if others:
                raise
            return error.details.get("nInserted", 0)

    def progress(self, broadcast_id: str, cursor: str | None, targeted: int, done: bool, at) -> None:
        """Where the fan-out got to: a redelivered request resumes after the last page stored."""
        self.collection.update_one({"_id": broadcast_id}, {"$set": {
            "cursor": cursor, "targeted": targeted, "status": "done" if done else "sending", "updated_at": at,
            **({"done_at": at} if done else {})}})

    def counts(self, broadcast_id: str) -> tuple[int, int]:
        """(delivered, read) inbox messages of the broadcast."""
        delivered = self.inbox.count_documents({"broadcast_id": broadcast_id})
        read = self.inbox.count_documents({"broadcast_id": broadcast_id, "read_at": {"$ne": None}})
        return delivered, read

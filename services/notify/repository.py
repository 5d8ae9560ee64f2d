"""Residents' inbox messages, each with its delivery record; the delivery records of the sign-in codes sent
by SMS.

An echo delivered at once in the inbox (the common case) is *one* document: the inbox message carries the
echo's record (``echo``: its plan and each step's delivery record), written by one insert. Echoes that start
on another channel live in ``echoes`` and reach the inbox, if at all, as a message of their own.
:class:`EchoRepository` reads both where staff, the reports or a ticket's timeline look at echoes."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from datetime import timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from kernel.envelope import Envelope
from kernel.groupcommit import GroupCommit
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
    CheckinRepository.ensure_indexes(db)
    BroadcastRepository.ensure_indexes(db)


class InboxRepository:
    """Inbox messages of the service's database; ``writes`` group-commits concurrent workers' inserts."""

    def __init__(self, db: Database, writes: GroupCommit):
        self.collection = db[COLLECTION]
        self.writes = writes

    @staticmethod
    def ensure_indexes(db: Database) -> None:
        db[COLLECTION].create_index([("community", ASCENDING), ("recipient", ASCENDING),
                                     ("created_at", DESCENDING)], name="by_recipient")
        # the echoes a message carries, as staff and a ticket's timeline (echo_outcomes) look them up by ticket
        db[COLLECTION].create_index([("community", ASCENDING), ("ticket_id", ASCENDING)], name="by_ticket")

    def deliver(self, message: dict) -> bool:
        """Store a message; False if it was stored before.

        The message id is derived from the source event and the recipient, so a
        redelivered event cannot leave a second message.
        """
        try:
            self.writes.insert(self.collection, message)
            return True
        except DuplicateKeyError:
            return False

    def deliver_echo(self, message: dict, echo: dict) -> bool:
        """Store a message with the record of the echo it delivers, in one insert; False if it was stored
        before (a redelivered event)."""
        return self.deliver(carrying(message, echo))

    def carries_echo(self, echo_id: str) -> bool:
        return self.collection.find_one({"_id": echo_id, "echo": {"$exists": True}}, {"_id": 1}) is not None

    def save_echo(self, echo: dict) -> None:
        """The new state of the echo a message carries (its read receipt)."""
        state = {k: v for k, v in echo.items() if k not in ("_id", "_outbox", "_outbox_since")}
        self.collection.update_one({"_id": echo["_id"]}, {"$set": {"echo": state}})

    def erase_recipient(self, community: str, recipient: str) -> int:
        """Remove every inbox message of a resident who asked to be forgotten; how many there were.

        Idempotent: a second call finds nothing. The echo records the messages carry go with them, so a
        ticket's timeline no longer shows the resident's echoes (tickets reads them here).
        """
        return self.collection.delete_many({"community": community, "recipient": recipient}).deleted_count

    def of_recipient(self, community: str, recipient: str, limit: int = 50, after: tuple | None = None) -> list[dict]:
        """A recipient's messages, newest first; ``after`` is the ``(created_at, _id)`` of the previous page's last."""
        sort = [("created_at", DESCENDING), ("_id", DESCENDING)]
        return list(self.collection.find(
            {"community": community, "recipient": recipient, **keyset_filter(sort, after)},
            {"_outbox": 0, "_outbox_since": 0, "echo": 0},
            sort=sort, limit=limit,
        ))

    def store(self, message: dict) -> bool:
        """Store the inbox step of an echo recorded in ``echoes``; False if it was stored before."""
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


ECHOES = "echoes"  # one document per (event, recipient): its plan, each step's delivery record; the outbox of
# its ticket.silent
PREFERENCES = "preferences"
TASKS = "echo_tasks"  # human steps: a grid worker phones or visits


def carrying(message: dict, echo: dict) -> dict:
    """The inbox message that is also the record of ``echo`` (see the module's docstring)."""
    return {**message, "echo": {k: v for k, v in echo.items() if k not in ("_id", "_outbox", "_outbox_since")}}


def carried(message: dict) -> dict:
    """The echo record a message carries, as an ``echoes`` document would hold it."""
    return {**message["echo"], "_id": message["_id"]}


# What a timeline entry needs of an ``echoes`` document (services/notify/outcomes.py), and of an inbox message.
TIMELINE_FIELDS = {"ticket_id": 1, "recipient": 1, "source_event_type": 1, "status": 1, "current": 1, "steps": 1,
                   "delivered_at": 1, "read_at": 1, "failed_at": 1}
MESSAGE_FIELDS = {"read_at": 1, "echo": 1}
NOT_PROVED = ["staff", "broadcast"]  # audiences outside the reconciler's proof (it proves ticket echoes)


def ensure_echo_indexes(db: Database) -> None:
    db[ECHOES].create_index([("due_at", ASCENDING)], name="due", sparse=True)
    db[ECHOES].create_index([("community", ASCENDING), ("ticket_id", ASCENDING)], name="by_ticket")
    db[ECHOES].create_index([("community", ASCENDING), ("recipient", ASCENDING)], name="by_recipient")
    db[ECHOES].create_index([("silent", ASCENDING), ("proof_due_at", ASCENDING)], name="proof")
    db[COLLECTION].create_index([("broadcast_id", ASCENDING)], name="by_broadcast", sparse=True)
    db[ECHOES].create_index([("broadcast_id", ASCENDING)], name="by_broadcast", sparse=True)
    db[ECHOES].create_index([("digest_id", ASCENDING)], name="by_digest", sparse=True)
    db[TASKS].create_index([("community", ASCENDING), ("status", ASCENDING), ("created_at", DESCENDING)],
                           name="open_tasks")


class EchoRepository:
    """Echo documents: created once per (event, recipient), then moved on by compare-and-set on ``version``."""

    LEASE_SECONDS = 30.0

    def __init__(self, db: Database, writes: GroupCommit | None = None):
        self.collection = db[ECHOES]
        self.inbox = db[COLLECTION]
        self.writes = writes

    def create(self, echo: dict) -> bool:
        """Store a new echo; False if it exists."""
        document = {**echo, "version": 0, "lease_until": None}
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

    def save(self, echo: dict, *, release: bool = True) -> bool:
        """Write the echo's new state if nobody else moved it since it was read."""
        state = {k: v for k, v in echo.items() if k not in ("_id", "version", "_outbox", "_outbox_since")}
        if release:
            state["lease_until"] = None
        return self.collection.update_one({"_id": echo["_id"], "version": echo.get("version", 0)},
                                          {"$set": state, "$inc": {"version": 1}}).modified_count == 1

    def get(self, echo_id: str) -> dict | None:
        return self.collection.find_one({"_id": echo_id}, {"_outbox": 0, "_outbox_since": 0})

    def digest_candidates(self, lead: dict, digest_id: str, now, limit: int = 100) -> list[str]:
        """The person's other echoes due for the same digest: held for it until the same time, or (a retry)
        already in it."""
        query = {"community": lead["community"], "recipient": lead["recipient"], "_id": {"$ne": lead["_id"]},
                 "status": {"$nin": ["delivered", "failed"]}, "due_at": {"$lte": now},
                 "$or": [{"digest_id": digest_id}, {"reason": "digest_pending", "not_before": lead.get("not_before")}]}
        return [d["_id"] for d in self.collection.find(query, {"_id": 1}, limit=limit)]

    def of_digest(self, digest_id: str) -> list[str]:
        return [d["_id"] for d in self.collection.find({"digest_id": digest_id}, {"_id": 1})]

    def of_ticket(self, community: str, ticket_id: str, limit: int = 200) -> list[dict]:
        """The ticket's echoes, those in ``echoes`` and those their inbox messages carry, oldest first."""
        query = {"community": community, "ticket_id": ticket_id}
        own = list(self.collection.find(query, {"_outbox": 0, "_outbox_since": 0}, limit=limit))
        inline = [carried(m) for m in self.inbox.find({**query, "echo": {"$exists": True}}, {"echo": 1},
                                                      limit=limit)]
        return sorted(own + inline, key=lambda echo: echo["occurred_at"])[:limit]

    def of_tickets(self, community: str, ticket_ids: Sequence[str]) -> list[dict]:
        """Every echo of the tickets, as ``echoes`` documents hold them (what a timeline entry needs): those in
        ``echoes`` and those their inbox messages carry. One query of each collection, each a range of its
        ``by_ticket`` index.

        An inbox message that does not carry its echo is the inbox step of one in ``echoes``: its ``read_at``
        is the read receipt, should the echo's own copy have missed it (a receipt that lost every race with
        the timer).
        """
        query = {"community": community, "ticket_id": {"$in": list(ticket_ids)}}
        own = {echo["_id"]: echo for echo in self.collection.find(query, TIMELINE_FIELDS)}
        inline = []
        for message in self.inbox.find(query, MESSAGE_FIELDS):
            if "echo" in message:
                inline.append(carried(message))
            elif message.get("read_at") and message["_id"] in own and not own[message["_id"]].get("read_at"):
                own[message["_id"]]["read_at"] = message["read_at"]
        return inline + list(own.values())

    def newly_silent(self, now, limit: int = 500) -> list[dict]:
        """Echoes past their proof deadline, not delivered, not accounted for, not yet reported silent.

        Accounted ones (a reason recorded) are left out here, or a crowd of them (a digest) could fill
        every pass's ``limit`` and hide a silent one behind them.
        """
        return list(self.collection.find({"proof_due_at": {"$lte": now}, "status": {"$ne": "delivered"},
                                          "silent_at": None, "reason": {"$nin": list(ACCOUNTED_REASONS)},
                                          "audience": {"$nin": NOT_PROVED}},
                                         {"_outbox": 0, "_outbox_since": 0}, limit=limit))

    def silent(self, community: str | None = None, limit: int = 1000) -> list[dict]:
        query: dict = {"silent_at": {"$ne": None}, "status": {"$ne": "delivered"}, "audience": {"$nin": NOT_PROVED}}
        if community is not None:
            query["community"] = community
        return list(self.collection.find(query, {"_outbox": 0, "_outbox_since": 0},
                                         sort=[("proof_due_at", ASCENDING)], limit=limit))

    def mark_silent(self, echo_id: str, at, events: list[Envelope]) -> bool:
        update = push_events({"$set": {"silent_at": at}}, events)
        return self.collection.update_one({"_id": echo_id, "silent_at": None}, update).modified_count == 1

    def recent(self, community: str, since, limit: int = 20000) -> list[dict]:
        own = list(self.collection.find({"community": community, "occurred_at": {"$gte": since}},
                                        {"steps": 1, "occurred_at": 1}, limit=limit))
        inline = self.inbox.find({"community": community, "echo.occurred_at": {"$gte": since}},
                                 {"echo.steps": 1, "echo.occurred_at": 1}, limit=limit)
        return own + [carried(message) for message in inline]

    def erase_recipient(self, community: str, recipient: str) -> int:
        return self.collection.delete_many({"community": community, "recipient": recipient}).deleted_count


class PreferenceRepository:
    def __init__(self, db: Database):
        self.collection = db[PREFERENCES]

    def get(self, community: str, person: str) -> dict | None:
        return self.collection.find_one({"_id": f"{community}:{person}"}, {"_id": 0, "community": 0, "person": 0})

    def many(self, community: str, people: list[str]) -> dict[str, dict]:
        """The stored preferences of those of ``people`` who set any, in one read."""
        found = self.collection.find({"_id": {"$in": [f"{community}:{person}" for person in people]}},
                                     {"_id": 0, "community": 0})
        return {document.pop("person"): document for document in found}

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
        self.echoes = db[ECHOES]

    def create(self, broadcast: dict, events: list[Envelope]) -> bool:
        """Store a broadcast and its request; False if one with its id exists (a day's check-in, made once)."""
        try:
            self.collection.insert_one(with_events(broadcast, events))
            return True
        except DuplicateKeyError:
            return False

    def members(self, broadcast_id: str, limit: int = 5000) -> list[dict]:
        """Who a broadcast reached (its inbox messages: one per resident), with their grid."""
        return list(self.inbox.find({"broadcast_id": broadcast_id}, {"recipient": 1, "grid": 1}, limit=limit))

    def reached(self, broadcast_id: str, recipient: str) -> bool:
        return self.inbox.find_one({"_id": f"{broadcast_id}:{recipient}"}, {"_id": 1}) is not None

    def get(self, community: str, broadcast_id: str) -> dict | None:
        return self.collection.find_one({"_id": broadcast_id, "community": community},
                                        {"_outbox": 0, "_outbox_since": 0})

    def recent(self, community: str, limit: int, after: Sequence[Any] | None = None) -> list[dict]:
        """A community's broadcasts, newest first; ``after`` is the ``(created_at, id)`` of the previous page's last."""
        sort = [("created_at", DESCENDING), ("_id", DESCENDING)]
        return list(self.collection.find({"community": community, **keyset_filter(sort, after)},
                                         {"_outbox": 0, "_outbox_since": 0}, sort=sort, limit=limit))

    @staticmethod
    def ensure_indexes(db: Database) -> None:
        """The list of a community's broadcasts, newest first."""
        db[BROADCASTS].create_index([("community", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)],
                                    name="by_created")

    def deliver_batch(self, messages: list[dict]) -> int:
        """Insert a page of inbox messages at once; those stored before (a redelivered batch) are skipped."""
        return insert_new(self.inbox, messages)

    def create_echoes(self, echoes: list[dict]) -> int:
        """Insert a page's echoes that start on a push channel; those stored before are skipped."""
        return insert_new(self.echoes, [{**echo, "version": 0, "lease_until": None} for echo in echoes])

    def progress(self, broadcast_id: str, cursor: str | None, targeted: int, done: bool, at) -> None:
        """Where the fan-out got to: a redelivered request resumes after the last page stored."""
        self.collection.update_one({"_id": broadcast_id}, {"$set": {
            "cursor": cursor, "targeted": targeted, "status": "done" if done else "sending", "updated_at": at,
            **({"done_at": at} if done else {})}})

    def counts(self, broadcast_ids: Sequence[str]) -> dict[str, tuple[int, int, int]]:
        """Per broadcast, (delivered, read, failed) echoes: delivered on the first channel (the inbox messages
        that carry their echo) or on a later one (``echoes``), read in the inbox, failed on every step.

        Two aggregations for a whole page of broadcasts, whatever its length (a list the console polls while
        one is sending), not four counts per broadcast."""
        found = {broadcast_id: [0, 0, 0] for broadcast_id in broadcast_ids}
        if not found:
            return {}
        wanted = {"broadcast_id": {"$in": list(found)}}
        for group in self.inbox.aggregate([{"$match": wanted}, {"$group": {
                "_id": "$broadcast_id",
                "delivered": {"$sum": {"$cond": [{"$eq": ["$echo.status", "delivered"]}, 1, 0]}},
                "read": {"$sum": {"$cond": [{"$gt": ["$read_at", None]}, 1, 0]}}}}]):
            found[group["_id"]][0] += group["delivered"]
            found[group["_id"]][1] += group["read"]
        for group in self.echoes.aggregate([{"$match": {**wanted, "status": {"$in": ["delivered", "failed"]}}},
                                            {"$group": {"_id": {"broadcast": "$broadcast_id", "status": "$status"},
                                                        "count": {"$sum": 1}}}]):
            position = 0 if group["_id"]["status"] == "delivered" else 2
            found[group["_id"]["broadcast"]][position] += group["count"]
        return {broadcast_id: (delivered, read, failed) for broadcast_id, (delivered, read, failed) in found.items()}


def insert_new(collection, documents: list[dict]) -> int:
    """Insert ``documents`` at once, skipping those stored before (a redelivered batch); how many were new."""
    if not documents:
        return 0
    try:
        return len(collection.insert_many(documents, ordered=False).inserted_ids)
    except BulkWriteError as error:
        others = [e for e in error.details.get("writeErrors", []) if e.get("code") != 11000]
        if others:
            raise
        return error.details.get("nInserted", 0)


CHECKINS = "checkins"  # answers to the daily health check-in: one per (community, day, resident)
CHECKIN_SCHEDULES = "checkin_schedules"  # per community: the hour of its daily check-in


class CheckinRepository:
    def __init__(self, db: Database):
        self.collection = db[CHECKINS]

    @staticmethod
    def ensure_indexes(db: Database) -> None:
        db[CHECKINS].create_index([("community", ASCENDING), ("day", ASCENDING)], name="by_day")

    def schedule(self, community: str) -> str | None:
        """The community's check-in hour (``HH:MM``), None if none was set."""
        document = self.collection.database[CHECKIN_SCHEDULES].find_one({"_id": community})
        return document.get("at") if document else None

    def set_schedule(self, community: str, at: str | None, now) -> None:
        self.collection.database[CHECKIN_SCHEDULES].replace_one({"_id": community}, {"at": at, "updated_at": now},
                                                                 upsert=True)

    def answer(self, community: str, day: str, resident: str, answer: dict, at) -> dict:
        """Record (or replace: the last answer of the day counts) a resident's answer."""
        document = {**answer, "community": community, "day": day, "resident": resident, "answered_at": at}
        self.collection.replace_one({"_id": f"{community}:{day}:{resident}"}, document, upsert=True)
        return document

    def of_day(self, community: str, day: str) -> dict[str, dict]:
        return {d["resident"]: {k: d.get(k) for k in ("status", "temperature", "note", "answered_at")}
                for d in self.collection.find({"community": community, "day": day})}

    def erase_recipient(self, community: str, resident: str) -> int:
        return self.collection.delete_many({"community": community, "resident": resident}).deleted_count


DIGESTS = "digests"  # one per digest sent: the message that carried several echoes, and which


class DigestRepository:
    def __init__(self, db: Database):
        self.collection = db[DIGESTS]

    def record(self, digest_id: str, lead: dict, channel: str, echo_ids: list[str], title: str, body: str,
               outcome, at) -> None:
        """The digest's delivery record (a retry of the same digest adds its echoes and its latest answer)."""
        self.collection.update_one({"_id": digest_id}, {
            "$setOnInsert": {"community": lead["community"], "recipient": lead["recipient"], "channel": channel,
                             "created_at": at},
            "$addToSet": {"echo_ids": {"$each": echo_ids}},
            "$set": {"title": title, "body": body, "attempted_at": at,
                     "status": outcome.status if outcome else "skipped",
                     "provider_id": outcome.provider_id if outcome else None,
                     "answer": dict(outcome.answer or {}) if outcome else None}}, upsert=True)

    def get(self, digest_id: str) -> dict | None:
        return self.collection.find_one({"_id": digest_id})

    def erase_recipient(self, community: str, recipient: str) -> int:
        return self.collection.delete_many({"community": community, "recipient": recipient}).deleted_count

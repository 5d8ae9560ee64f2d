"""Transactional outbox: a state change and the events it causes are one write.

A repository stores the events it stages inside the document it writes (``_outbox``, each entry stamped
under ``_staged``; the document's latest staging under ``_outbox_since``): no dual write, and on SecantusDB
a single-document write costs a third of a transaction. Right after the write the relay publishes them with
publisher confirms, and records what the broker confirmed in the ledger (:mod:`kernel.ledger`), never in the
document. What a writer's publish left behind is found in commit order, from one change stream over the
service database's outbox collections, held for a grace delay on the relay's own clock and published unless
the relay or the ledger knows it; a lost resume point falls back to a scan (``outbox.resume_lost``,
``huisheng_outbox_resume_lost_total``). An event may be published twice (consumers dedupe on ``event_id``),
never zero times. How and why: docs/architecture.md, "No dual writes: the outbox".

>>> from kernel.envelope import Envelope
>>> event = Envelope.new("ticket.paused", {"ticket_id": "t", "state": "paused", "attached_residents": ["r"],
...     "reason": "parts on order"}, community="xingqiao")
>>> doc = with_events({"_id": "t"}, [event])
>>> [e["type"] for e in doc[OUTBOX]], doc[OUTBOX][0][STAGED] == doc[SINCE]
(['ticket.paused'], True)
>>> update = push_events({"$set": {"state": "x"}}, [event])
>>> sorted(update)
['$max', '$push', '$set']
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime

import eventlet
from bson import Timestamp
from eventlet.queue import LightQueue
from nameko.extensions import DependencyProvider
from prometheus_client import Counter
from pymongo.collection import Collection
from pymongo.database import Database

from kernel.config import settings_of
from kernel.envelope import Envelope, utcnow
from kernel.events import validate_outgoing
from kernel.groupcommit import next_batch
from kernel.ledger import (
    OUTBOX,
    OUTBOX_INDEX,
    SINCE,
    STAGED,
    STREAM_POINT,
    Change,
    ResumePointLost,
    checkpoint,
    ensure_ledger_indexes,
    next_changes,
    open_stream,
    outbox_pipeline,
    prune_ledger,
    record_published,
    resume_point,
    save_resume_point,
    scan,
    staged_since,
    unlisted,
)
from kernel.logging import get_logger
from kernel.metrics import OUTBOX_LAG, OUTBOX_OLDEST, OUTBOX_PENDING, PUBLISH_FAILURES, PUBLISHED, labelled
from kernel.mongo import MongoClientProvider
from kernel.publisher import Outgoing, PipelinedPublisher
from kernel.topology import EVENTS

__all__ = ["OUTBOX", "SINCE", "STAGED", "Outbox", "StreamReading", "ensure_indexes", "push_events",
           "staged", "with_events"]

SWEEP_BATCH = 500  # documents whose events are published as one pipelined batch
MAX_PENDING = 20_000  # changes held in memory at most (a broker outage): the stream is read on once they go
# Confirmed ids are written to the ledger in one document this often (at most a quarter of the
# grace delay, so that another relay finds them there before it would publish them itself).
LEDGER_SECONDS = 0.5
SAVE_SECONDS = 1.0  # the resume point is stored this often at most
PRUNE_SECONDS = 60.0  # the ledger is pruned of entries past their retention this often
FLUSH_BATCH = 200  # documents the flusher publishes as one batch at most
# The relay remembers what it published itself for this long, so that its stream (a grace delay
# behind) rarely has to ask the ledger.
REMEMBER_SECONDS = 60.0

OUTBOX_FALLBACKS = Counter("huisheng_outbox_resume_lost_total",
                           "Times a relay could not resume its change stream and scanned instead",
                           ["service", "collection"])

log = get_logger(__name__)


@dataclass(frozen=True)
class StreamReading:
    """How the relay reads a change stream: THE seam for the embedded server's costs (docs/architecture.md).

    On MongoDB a ``getMore`` waits on the server (``await_ms``), changes are projected (``project``) and a
    caught-up stream's own position is stored (``idle_positions``), so a quiet collection's point stays inside
    the oplog. On SecantusDB the relay asks without waiting once per ``poll_seconds``, unprojected, and stores
    only tokens of changes (a collection quiet for longer than its oplog lasts falls back to a small scan).

    >>> StreamReading.for_server({"setName": "secantus"}, poll_seconds=1.0)
    StreamReading(poll_seconds=1.0, await_ms=1, idle_positions=False, project=False)
    >>> StreamReading.for_server({"setName": "rs0"}, poll_seconds=1.0)
    StreamReading(poll_seconds=0.02, await_ms=500, idle_positions=True, project=True)
    """

    poll_seconds: float
    await_ms: int
    idle_positions: bool
    project: bool

    @classmethod
    def for_server(cls, hello: dict, poll_seconds: float) -> StreamReading:
        if hello.get("setName") == "secantus":
            return cls(poll_seconds=poll_seconds, await_ms=1, idle_positions=False, project=False)
        return cls(poll_seconds=0.02, await_ms=500, idle_positions=True, project=True)


@dataclass
class _Pending:
    change: Change
    received: float  # time.monotonic() when this relay read it


@dataclass
class _Tail:
    """The database's outbox stream and what the relay read from it and has not yet seen published."""

    stream: object = None
    pending: deque = field(default_factory=deque)
    safe: Change | None = None  # the latest change that all before it are published with
    last: Change | None = None  # the latest change read
    at: Timestamp | None = None  # cluster time of the latest point known safe
    saved: float = 0.0
    saved_token: dict | None = None

    def close(self) -> None:
        stream, self.stream = self.stream, None
        self.pending.clear()  # re-read from the stored point: nothing past it is lost, some is read twice
        self.safe = self.last = None
        if stream is not None:
            with suppress(Exception):  # a dead connection has nothing to close
                stream.close()


def _operation_time(db: Database) -> Timestamp | None:
    """The server's cluster time now (the stream just opened is at or before it)."""
    with db.client.start_session() as session:
        db.command("ping", session=session)
        return session.operation_time


def staged(envelopes: Iterable[Envelope], at: datetime | None = None) -> list[dict]:
    """Validate against the catalogue and turn into what the outbox stores: the wire form, stamped."""
    at = at or utcnow()
    return [{**validate_outgoing(envelope).to_wire(), STAGED: at} for envelope in envelopes]


def with_events(document: dict, envelopes: Sequence[Envelope]) -> dict:
    """A new document carrying its events, for ``insert_one``."""
    if not envelopes:
        return document
    now = utcnow()
    return {**document, OUTBOX: staged(envelopes, now), SINCE: now}


def push_events(update: dict, envelopes: Sequence[Envelope]) -> dict:
    """An update that also appends events to the document's outbox, for ``update_one``.

    ``_outbox_since`` becomes the time of this staging: the fallback scan finds a document by its latest
    events (the older ones were published, or the resume point would not have passed them).
    """
    if not envelopes:
        return update
    now = utcnow()
    return {
        **update,
        "$push": {**update.get("$push", {}), OUTBOX: {"$each": staged(envelopes, now)}},
        "$max": {**update.get("$max", {}), SINCE: now},
    }


def ensure_indexes(collection: Collection) -> None:
    """The sweep reads documents by the time of their latest events; the ledger sits beside them."""
    collection.create_index(SINCE, sparse=True, name=OUTBOX_INDEX)
    ensure_ledger_indexes(collection.database)


class Outbox(DependencyProvider):
    """The relay: publishes the events of the documents of ``collections`` (those whose documents carry an outbox),
    at once after a write (a worker's ``self.outbox.flush_soon``) and from the database's change stream."""

    def __init__(self, collections: Sequence[str], **kwargs):
        self.collection_names = tuple(collections)
        self._sweeper = self._recorder = self._flusher = None
        self._flush_publisher = self._sweep_publisher = None
        self.collections: dict[str, Collection] = {}  # by name, once the container starts
        self._queued = LightQueue()  # (collection, document id, events) written, not yet published
        self._published: set[str] = set()  # event ids the broker confirmed lately
        self._confirmed: deque[tuple[float, str]] = deque()  # (when, monotonic; event id), oldest first
        self._unrecorded: list[str] = []  # confirmed, not yet in the ledger
        self._tail = _Tail()  # the database's outbox stream and what was read from it
        self.fallbacks = 0  # resume points lost (also a metric)
        super().__init__(**kwargs)

    mongo = MongoClientProvider()

    def setup(self) -> None:
        settings = settings_of(self.container.config)
        self.settings = settings
        self.record_every = min(LEDGER_SECONDS, settings.outbox_grace_seconds / 4)
        self.grace = settings.outbox_grace_seconds
        # confirms + mandatory: the alternate exchange keeps events nobody is bound to in a visible queue
        # instead of dropping them. One publisher per greenthread that publishes: the flusher's and the sweep's.
        self._flush_publisher = PipelinedPublisher(settings.amqp_uri)
        self._sweep_publisher = PipelinedPublisher(settings.amqp_uri)

    def get_dependency(self, worker_ctx) -> Outbox:
        return self

    def start(self) -> None:
        # At start, not before: every extension (the shared Mongo client too) is set up by then.
        self.collections = {name: self.mongo.db[name] for name in sorted(self.collection_names)}
        for collection in self.collections.values():
            ensure_indexes(collection)
        self.source = StreamReading.for_server(self.mongo.client.admin.command("hello"),
                                               self.settings.outbox_sweep_seconds)
        self._sweeper = self.container.spawn_managed_thread(self._tail_forever, identifier="outbox-tail")
        self._recorder = self.container.spawn_managed_thread(self._record_forever, identifier="outbox-ledger")
        self._flusher = self.container.spawn_managed_thread(self._flush_forever, identifier="outbox-flush")

    def stop(self) -> None:
        self.kill()
        try:  # what was confirmed but not yet recorded would otherwise be published again after a restart
            self.record()
        except Exception as error:
            log.warning("outbox.ledger_failed", events=len(self._unrecorded), error=repr(error))

    def kill(self) -> None:
        # What is still queued stays in its documents' outboxes: the sweep publishes it after a restart.
        for thread in (self._sweeper, self._recorder, self._flusher):
            if thread is not None:
                thread.kill()
        self._sweeper = self._recorder = self._flusher = None
        self._tail.close()
        for publisher in (self._flush_publisher, self._sweep_publisher):
            if publisher is not None:
                publisher.close()

    def flush_soon(self, collection_name: str, document_id, events: Sequence[Envelope] = ()) -> None:
        """Publish a document's events in the background, right after its write, with what concurrent writers
        queued meanwhile. ``events`` are the envelopes just written with the document; without them the relay
        reads the document and publishes its whole outbox again (a retried write that found it stored)."""
        self._queued.put((collection_name, document_id, events))

    def _flush_forever(self) -> None:
        while True:
            batch = next_batch(self._queued, FLUSH_BATCH)
            try:
                self._flush_batch(batch)
            except Exception as error:  # the sweep will retry: the events are safe in their documents
                PUBLISH_FAILURES.labels(service=self.container.service_name).inc()
                log.warning("outbox.flush_failed", documents=len(batch), error=repr(error))

    def _flush_batch(self, batch: list[tuple]) -> None:
        """Publish the events of queued documents in one pipelined batch; note what the broker confirmed."""
        collections = self.collections
        documents = []
        for collection_name, document_id, events in batch:
            wire = [event.to_wire() for event in events] if events else (collections[collection_name].find_one(
                {"_id": document_id}, {OUTBOX: 1}) or {}).get(OUTBOX) or []
            documents.append((collection_name, wire))
        self._publish_documents(self._flush_publisher, documents)

    def _publish_documents(self, publisher: PipelinedPublisher,
                           outboxes: Sequence[tuple[str | None, list[dict]]]) -> set[str]:
        """Publish the events of several documents (each with its collection's name) as one batch; the ids the
        broker confirmed, counted per collection.

        A refused event is counted and logged; it stays in its outbox for the sweep.
        """
        events = [(name, event) for name, outbox in outboxes for event in outbox]
        outcomes = publisher.publish_all([_outgoing(event) for _, event in events])
        confirmed, counts = set(), dict.fromkeys((name for name, _ in outboxes), 0)
        lag = labelled(OUTBOX_LAG, self.container.service_name)
        for (name, event), ok in zip(events, outcomes, strict=True):
            if ok:
                confirmed.add(event["event_id"])
                counts[name] += 1
                lag.observe(_age_seconds(event))
            else:
                PUBLISH_FAILURES.labels(service=self.container.service_name).inc()
                log.warning("outbox.publish_refused", event_id=event["event_id"], type=event["type"])
        for name, count in counts.items():
            if count:
                labelled(PUBLISHED, self.container.service_name, name or STREAM_POINT).inc(count)
        self._note_published(confirmed)
        return confirmed

    def _note_published(self, event_ids: Iterable[str]) -> None:
        now = time.monotonic()
        for event_id in event_ids:
            if event_id not in self._published:
                self._published.add(event_id)
                self._confirmed.append((now, event_id))
                self._unrecorded.append(event_id)

    def published(self, event_id: str) -> bool:
        """True if this relay saw the broker confirm the event (in the last minute)."""
        return event_id in self._published

    def record(self) -> int:
        """Write the confirmed ids not yet in the ledger, as one ledger document; how many.

        Ids that could not be written stay for the next call.
        """
        ids, self._unrecorded = self._unrecorded, []
        try:
            record_published(self.mongo.db, ids)
        except Exception:
            self._unrecorded[:0] = ids
            raise
        return len(ids)

    def _record_forever(self) -> None:
        while True:
            eventlet.sleep(self.record_every)
            try:
                self.record()
                self._forget(time.monotonic() - REMEMBER_SECONDS)
            except Exception as error:  # a sweep elsewhere may publish them again; consumers dedupe
                log.warning("outbox.ledger_failed", events=len(self._unrecorded), error=repr(error))

    def _forget(self, before: float) -> None:
        """Drop remembered ids confirmed before ``before``."""
        while self._confirmed and self._confirmed[0][0] < before:
            self._published.discard(self._confirmed.popleft()[1])

    # ------------------------------------------------------------------ the commit-ordered source

    def _tail_forever(self) -> None:
        pruned = time.monotonic()
        while True:
            started = time.monotonic()
            busy = False
            try:
                busy = self.tail()
            except Exception as error:  # the stream is reopened from the stored point next round
                log.warning("outbox.tail_failed", error=repr(error))
                self._tail.close()
            if started - pruned >= PRUNE_SECONDS:
                try:
                    prune_ledger(self.mongo.db)
                    pruned = started
                except Exception as error:
                    log.warning("outbox.prune_failed", error=repr(error))
            pause = self.source.poll_seconds - (time.monotonic() - started)
            eventlet.sleep(0 if busy else max(0.02, pause))  # a backlog is worked off without pausing

    def tail(self) -> bool:
        """One round on the database's stream: read what committed since, publish what is past the grace
        delay and still unpublished, store the new resume point. True if more is waiting (a backlog)."""
        tail, db = self._tail, self.mongo.db
        if tail.stream is None:
            self._open(db, tail)
        now = time.monotonic()
        room = MAX_PENDING - len(tail.pending)
        for change in next_changes(tail.stream, room) if room > 0 else ():
            tail.pending.append(_Pending(change, now))
            tail.last = change
        more = self._publish_ready(db, tail, now - self.grace)
        self._save(db, tail)
        return more or len(tail.pending) >= MAX_PENDING

    def _stream(self, db: Database, token: dict | None):
        return open_stream(db, token, self.source.await_ms, outbox_pipeline(self.collections, self.source.project))

    def _open(self, db: Database, tail: _Tail) -> None:
        """Resume the stream from the stored point; if that is gone, scan from the point's bound."""
        point = resume_point(db, STREAM_POINT)
        reason = None
        if point and point.get("token"):
            try:
                tail.stream = self._stream(db, point["token"])
                tail.at = point.get("at")
                return
            except ResumePointLost as lost:
                reason = str(lost)
        self._fall_back(db, tail, reason, since=checkpoint(point))

    def _fall_back(self, db: Database, tail: _Tail, reason: str | None, since: datetime | None) -> None:
        """Open the stream at the present first, then scan each collection from ``since``: whatever commits
        meanwhile is in one or the other."""
        tail.stream = self._stream(db, None)
        tail.at = _operation_time(db)
        start = tail.stream.resume_token if self.source.idle_positions else None
        now, scanned = time.monotonic(), 0
        for name in self.collections:
            documents = scan(db, name, since)
            scanned += len(documents)
            for document in documents:  # published ones are filtered when they are due, as the stream's are
                events = staged_since(document, since)
                if events:
                    tail.pending.append(_Pending(Change(start, tail.at, None, document["_id"], events, name), now))
        if reason is not None:  # not a first start (nor a quiet database's on SecantusDB): a loss
            self.fallbacks += 1
            labelled(OUTBOX_FALLBACKS, self.container.service_name, STREAM_POINT).inc()
            log.warning("outbox.resume_lost", reason=reason, scanned=scanned,
                        since=since.isoformat() if since else None)
        else:
            log.info("outbox.scanned", scanned=scanned, since=since.isoformat() if since else None)

    def _publish_ready(self, db: Database, tail: _Tail, due: float) -> bool:
        """Publish the unpublished events of changes received before ``due``, in commit order, a batch of
        :data:`SWEEP_BATCH` at a time; the resume point moves past every change all of whose events the
        broker confirmed (or the ledger lists). True if due changes are left (a backlog, or a refusal)."""
        while tail.pending and tail.pending[0].received <= due:
            batch = []
            for item in tail.pending:
                if item.received > due or len(batch) == SWEEP_BATCH:
                    break
                batch.append(item)
            unknown = [[e for e in item.change.events if e["event_id"] not in self._published] for item in batch]
            waiting = list(zip(batch, unlisted(db, unknown), strict=True))
            to_publish = [(item.change.collection, events) for item, events in waiting if events]
            confirmed = self._publish_batch(to_publish) if to_publish else set()
            if to_publish:
                log.info("outbox.swept", documents=len(to_publish),
                         events=sum(len(events) for _, events in to_publish), confirmed=len(confirmed))
            for item, events in waiting:
                if any(event["event_id"] not in confirmed for event in events):
                    self._gauge(tail)
                    return False  # the broker refused one: this change and what follows wait for the next round
                tail.pending.popleft()
                tail.safe = item.change
        self._gauge(tail)
        return bool(tail.pending) and tail.pending[0].received <= due

    def _save(self, db: Database, tail: _Tail) -> None:
        """Store the resume point, every :data:`SAVE_SECONDS` at most: the stream's own position once
        nothing read is pending, else the last change published with all before it."""
        now = time.monotonic()
        if now - tail.saved < SAVE_SECONDS:
            return
        if not tail.pending and tail.stream is not None:  # everything read is published
            token = tail.stream.resume_token if self.source.idle_positions else (
                tail.last.token if tail.last is not None else None)
            at = tail.last.at if tail.last is not None else None
        elif tail.safe is not None:
            token, at = tail.safe.token, tail.safe.at
        else:
            return
        at = max(filter(None, (at, tail.at)), default=None)
        if token is None or token == tail.saved_token or at is None:
            return
        save_resume_point(db, STREAM_POINT, token, at, at.as_datetime())  # the server's clock
        tail.saved, tail.saved_token, tail.safe, tail.at = now, token, None, at

    def _publish_batch(self, outboxes: list[tuple[str | None, list[dict]]]) -> set[str]:
        """Publish a batch from the stream; the ids the broker confirmed (none if the connection failed)."""
        try:
            return self._publish_documents(self._sweep_publisher, outboxes)
        except Exception as error:
            PUBLISH_FAILURES.labels(service=self.container.service_name).inc()
            log.warning("outbox.sweep_publish_failed", error=repr(error))
            return set()

    def _gauge(self, tail: _Tail) -> None:
        """Per collection, changes past the grace delay still waiting, and how long the oldest has waited (on
        this relay's own clock: the time it was received, not its writer's stamp)."""
        now = time.monotonic()
        late: dict[str | None, list[_Pending]] = {}
        for item in tail.pending:
            if item.received > now - self.grace:
                break  # received in order: the rest are later still
            late.setdefault(item.change.collection, []).append(item)
        for name in self.collections:
            waiting = late.get(name, [])
            labelled(OUTBOX_PENDING, self.container.service_name, name).set(len(waiting))
            labelled(OUTBOX_OLDEST, self.container.service_name, name).set(
                now - waiting[0].received if waiting else 0.0)


def _outgoing(event: dict) -> Outgoing:
    """A stored event as the message the relay publishes: routed by its type, identified by its id.

    The staging stamp is the outbox's own bookkeeping, not part of the event.
    """
    if STAGED in event:
        event = {key: value for key, value in event.items() if key != STAGED}
    return Outgoing(event, EVENTS.name, event["type"], message_id=event["event_id"],
                    correlation_id=event["correlation_id"], headers={"x-huisheng-attempt": 1})


def _age_seconds(event: dict) -> float:
    """Seconds since the event was written (its ``occurred_at``)."""
    return max(0.0, (utcnow() - datetime.fromisoformat(event["occurred_at"])).total_seconds())

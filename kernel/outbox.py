"""Transactional outbox: a state change and the events it causes are one write.

A repository stores the events it stages *inside* the document it writes (under
``_outbox``, each stamped with the time it was staged, and the document with the
time of its latest staging under ``_outbox_since``), so the change and its events
are saved atomically: no dual write, and on SecantusDB a single-document write
costs a third of a transaction. Right after the write the relay publishes them
with publisher confirms. It never writes the document again: what the broker
confirmed goes into a ledger, one document per batch, and a sweep takes whatever
was left behind (a crash between the write and the publish, a broker outage) once
it is older than a grace period, then moves its collection's checkpoint past it
(see :mod:`kernel.ledger`). A consumer may therefore see an event twice, never
zero times: consumers dedupe on ``event_id``.

>>> from kernel.envelope import Envelope
>>> event = Envelope.new("echo.failed", {"echo_id": "e", "ticket_id": "t", "recipient": "r",
...     "channel": "inbox", "source_event_id": "s", "source_event_type": "ticket.received",
...     "at": "2026-11-26T08:00:00+00:00", "reason": "no channel"}, community="xingqiao")
>>> doc = with_events({"_id": "t"}, [event])
>>> [e["type"] for e in doc[OUTBOX]], doc[OUTBOX][0][STAGED] == doc[SINCE]
(['echo.failed'], True)
>>> update = push_events({"$set": {"state": "x"}}, [event])
>>> sorted(update)
['$max', '$push', '$set']
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

import eventlet
from eventlet.queue import LightQueue
from nameko.extensions import DependencyProvider, SharedExtension
from pymongo import ASCENDING
from pymongo.collection import Collection

from kernel.config import settings_of
from kernel.envelope import Envelope, utcnow
from kernel.events import validate_outgoing
from kernel.groupcommit import next_batch
from kernel.ledger import (
    OUTBOX,
    SINCE,
    STAGED,
    advance_checkpoint,
    checkpoint,
    ensure_ledger_indexes,
    pending_events,
    prune_ledger,
    record_published,
)
from kernel.logging import get_logger
from kernel.metrics import OUTBOX_LAG, OUTBOX_OLDEST, OUTBOX_PENDING, PUBLISH_FAILURES, PUBLISHED, labelled
from kernel.mongo import MongoClientProvider
from kernel.publisher import Outgoing, PipelinedPublisher
from kernel.topology import EVENTS

__all__ = ["OUTBOX", "SINCE", "STAGED", "Outbox", "OutboxRelay", "ensure_indexes", "push_events", "staged",
           "with_events"]

SWEEP_BATCH = 500  # documents whose events are published as one pipelined batch
SWEEP_READ = 2000  # documents a sweep aims to read at once (see OutboxRelay._read_slice)
FIRST_SLICE = timedelta(seconds=5)  # the span of time a sweep first reads, resized after every read
LONGEST_SLICE = timedelta(hours=1)
# Confirmed ids are written to the ledger in one document this often (at most a quarter of the
# grace period, so that another relay's sweep finds them there): a statement per interval, not per batch.
LEDGER_SECONDS = 0.5
PRUNE_SECONDS = 60.0  # the ledger is pruned of entries past their retention this often
FLUSH_BATCH = 200  # documents the flusher publishes as one batch at most
# The relay remembers what it published itself for this long, so that its sweep (whose window is
# the grace period plus one interval behind) rarely has to ask the ledger.
REMEMBER_SECONDS = 60.0
ONE_TICK = timedelta(milliseconds=1)  # the database keeps times to the millisecond

log = get_logger(__name__)


def staged(envelopes: Iterable[Envelope], at: datetime | None = None) -> list[dict]:
    """Validate against the catalogue and turn into what the outbox stores: the wire form, stamped."""
    at = at or utcnow()
    entries = []
    for envelope in envelopes:
        entry = validate_outgoing(envelope).to_wire()
        entry[STAGED] = at
        entries.append(entry)
    return entries


def with_events(document: dict, envelopes: Sequence[Envelope]) -> dict:
    """A new document carrying its events, for ``insert_one``."""
    if not envelopes:
        return document
    now = utcnow()
    return {**document, OUTBOX: staged(envelopes, now), SINCE: now}


def push_events(update: dict, envelopes: Sequence[Envelope]) -> dict:
    """An update that also appends events to the document's outbox, for ``update_one``.

    ``_outbox_since`` becomes the time of this staging: the sweep finds a document by
    its latest events (the older ones were published, or its checkpoint would not have
    passed them).
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
    collection.create_index(SINCE, sparse=True, name="outbox_since")
    ensure_ledger_indexes(collection.database)


class OutboxRelay(SharedExtension):
    """Publishes outbox events of one container, at once after a write and by a periodic sweep."""

    def __init__(self, **kwargs):
        self.collection_names: set[str] = set()
        self._sweeper = self._recorder = self._flusher = None
        self._flush_publisher = self._sweep_publisher = None
        self._collections: dict[str, Collection] | None = None
        self._queued = LightQueue()  # (collection, document id, events) written, not yet published
        self._published: set[str] = set()  # event ids the broker confirmed lately
        self._confirmed: deque[tuple[float, str]] = deque()  # (when, monotonic; event id), oldest first
        self._unrecorded: list[str] = []  # confirmed, not yet in the ledger
        self._slices: dict[str, timedelta] = {}  # collection -> the span of time its next sweep reads
        super().__init__(**kwargs)

    mongo = MongoClientProvider()

    def setup(self) -> None:
        settings = settings_of(self.container.config)
        self.settings = settings
        self.record_every = min(LEDGER_SECONDS, settings.outbox_grace_seconds / 4)
        # confirms + mandatory: the broker confirms each event; the alternate exchange keeps
        # events nobody is bound to in a visible queue instead of dropping them. One publisher
        # per greenthread that publishes: the flusher's and the sweep's.
        self._flush_publisher = PipelinedPublisher(settings.amqp_uri)
        self._sweep_publisher = PipelinedPublisher(settings.amqp_uri)

    def register(self, collection_name: str) -> None:
        self.collection_names.add(collection_name)
        self._collections = None

    def collections(self) -> dict[str, Collection]:
        """Resolved on first use: the shared Mongo client is set up in no particular order."""
        if self._collections is None:
            db = self.mongo.database(self.container.service_name)
            self._collections = {name: db[name] for name in sorted(self.collection_names)}
        return self._collections

    def start(self) -> None:
        self._sweeper = self.container.spawn_managed_thread(self._sweep_forever, identifier="outbox-sweep")
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
        for publisher in (self._flush_publisher, self._sweep_publisher):
            if publisher is not None:
                publisher.close()

    def flush_soon(self, collection_name: str, document_id, events: Sequence[Envelope] = ()) -> None:
        """Publish a document's events in the background, right after its write.

        ``events`` are the envelopes just written with the document; given them, the
        relay does not read the document back. Without them it reads the document and
        publishes every event in its outbox again (for a retried write that found its
        document already there; consumers dedupe). The flusher publishes what
        concurrent writers queued meanwhile as one batch.
        """
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
        collections = self.collections()
        documents = []
        for collection_name, document_id, events in batch:
            wire = [event.to_wire() for event in events] if events else self._stored_events(
                collections[collection_name], document_id)
            if wire:
                documents.append((collection_name, wire))
        confirmed = self._publish_documents(self._flush_publisher, [wire for _, wire in documents])
        for collection_name, wire in documents:
            count = sum(1 for event in wire if event["event_id"] in confirmed)
            if count:
                labelled(PUBLISHED, self.container.service_name, collection_name).inc(count)

    @staticmethod
    def _stored_events(collection: Collection, document_id) -> list[dict]:
        document = collection.find_one({"_id": document_id}, {OUTBOX: 1})
        return (document or {}).get(OUTBOX) or []

    def _publish_documents(self, publisher: PipelinedPublisher, outboxes: Sequence[list[dict]]) -> set[str]:
        """Publish the events of several documents as one batch; the ids the broker confirmed.

        A refused event is counted and logged; it stays in its outbox for the sweep.
        """
        events = [event for outbox in outboxes for event in outbox]
        outcomes = publisher.publish_all([_outgoing(event) for event in events])
        confirmed = set()
        lag = labelled(OUTBOX_LAG, self.container.service_name)
        for event, ok in zip(events, outcomes, strict=True):
            if ok:
                confirmed.add(event["event_id"])
                lag.observe(_age_seconds(event))
            else:
                PUBLISH_FAILURES.labels(service=self.container.service_name).inc()
                log.warning("outbox.publish_refused", event_id=event["event_id"], type=event["type"])
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
            record_published(self.mongo.database(self.container.service_name), ids)
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

    def sweep(self) -> bool:
        """Publish what is older than the grace period and still unpublished, a slice per collection.

        Returns True if a collection has more waiting than one slice took (a backlog).
        """
        cutoff = utcnow() - timedelta(seconds=self.settings.outbox_grace_seconds)
        more = [self._sweep_slice(name, collection, cutoff) for name, collection in self.collections().items()]
        return any(more)

    def _sweep_slice(self, name: str, collection: Collection, cutoff: datetime) -> bool:
        """One slice of time of a collection's documents, from its checkpoint on, no later than ``cutoff``.

        Every unpublished event of the slice is published (a batch of :data:`SWEEP_BATCH`
        documents at a time); once all are confirmed the checkpoint moves past the slice,
        else to the first document whose events the broker did not confirm. True if the
        slice ended before ``cutoff``.
        """
        db = collection.database
        since = checkpoint(db, name)
        documents, next_since = self._read_slice(name, collection, since, cutoff)
        pending = pending_events(db, documents, since, known=self._published)
        failed_since = None
        for start in range(0, len(pending), SWEEP_BATCH):
            batch = pending[start:start + SWEEP_BATCH]
            confirmed = self._publish_batch([events for _, events in batch])
            labelled(PUBLISHED, self.container.service_name, name).inc(len(confirmed))
            failed = [document for document, events in batch
                      if any(event["event_id"] not in confirmed for event in events)]
            if failed:
                failed_since = failed[0][SINCE]
                break  # the broker refused one: the rest waits for the next sweep
        if failed_since is None and pending:
            log.info("outbox.swept", collection=name, documents=len(pending),
                     events=sum(len(events) for _, events in pending))
        more = next_since < cutoff
        if failed_since is not None:
            next_since, more = failed_since, False
        if since is None or next_since > since:
            advance_checkpoint(db, name, next_since)
        self._gauge(name, pending if failed_since is not None else [], failed_since)
        return more

    def _read_slice(self, name: str, collection: Collection, since: datetime | None,
                    cutoff: datetime) -> tuple[list[dict], datetime]:
        """The documents staged from ``since`` until the slice's end, and that end (excluded).

        The database reads a whole range of its index whatever the limit (SecantusDB
        fetches every document of the range before it sorts or limits), so a read is
        bounded by time, not by a count: each collection's slice is resized after every
        read to hold about :data:`SWEEP_READ` documents (at least a millisecond, the
        database's resolution, so a slice always moves on).
        """
        if since is None:  # no sweep yet: from the oldest document
            oldest = collection.find_one({SINCE: {"$lte": cutoff}}, {SINCE: 1}, sort=[(SINCE, ASCENDING)])
            if oldest is None:
                return [], cutoff
            since = oldest[SINCE]
        width = self._slices.get(name, FIRST_SLICE)
        end = min(cutoff, since + width)
        documents = list(collection.find({SINCE: {"$gte": since, "$lt": end}}, {OUTBOX: 1, SINCE: 1}))
        if len(documents) > SWEEP_READ:
            width = max(ONE_TICK, width * SWEEP_READ / len(documents) // ONE_TICK * ONE_TICK)
        elif len(documents) < SWEEP_READ // 4 and end < cutoff:
            width = min(LONGEST_SLICE, width * 2)
        self._slices[name] = width
        return documents, end

    def _publish_batch(self, outboxes: list[list[dict]]) -> set[str]:
        """Publish a swept batch; the ids the broker confirmed (none if the connection failed)."""
        try:
            return self._publish_documents(self._sweep_publisher, outboxes)
        except Exception as error:
            PUBLISH_FAILURES.labels(service=self.container.service_name).inc()
            log.warning("outbox.sweep_publish_failed", error=repr(error))
            return set()

    def _gauge(self, name: str, pending: list, oldest: datetime | None) -> None:
        """Documents the sweep could not publish, and how long the oldest of them has waited."""
        lag = (utcnow() - oldest).total_seconds() if oldest else 0.0
        labelled(OUTBOX_PENDING, self.container.service_name, name).set(len(pending))
        labelled(OUTBOX_OLDEST, self.container.service_name, name).set(max(0.0, lag))

    def _sweep_forever(self) -> None:
        pruned = time.monotonic()
        while True:
            started = time.monotonic()
            backlog = False
            try:
                backlog = self.sweep()
                if started - pruned >= PRUNE_SECONDS:
                    prune_ledger(self.mongo.database(self.container.service_name))
                    pruned = started
            except Exception as error:
                log.warning("outbox.sweep_failed", error=repr(error))
            pause = self.settings.outbox_sweep_seconds - (time.monotonic() - started)
            eventlet.sleep(0 if backlog else max(0.05, pause))  # a backlog is swept without pausing


class Outbox(DependencyProvider):
    """Injects a handle to schedule publication of a document's events after its write.

    ``collections`` names the collections whose documents carry an outbox.
    """

    relay = OutboxRelay()

    def __init__(self, collections: Sequence[str], **kwargs):
        self.collection_names = tuple(collections)
        super().__init__(**kwargs)

    def setup(self) -> None:
        for name in self.collection_names:
            self.relay.register(name)

    def start(self) -> None:
        for name in self.collection_names:
            ensure_indexes(self.relay.collections()[name])

    def get_dependency(self, worker_ctx) -> OutboxRelay:
        return self.relay


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

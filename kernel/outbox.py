"""Transactional outbox: a state change and the events it causes are one write.

A repository stores the events it stages *inside* the document it writes (under
``_outbox``), so the change and its events are saved atomically — no dual write,
and on SecantusDB a single-document write costs a third of a transaction. Right
after the write the relay publishes them with publisher confirms and removes what
the broker confirmed; a sweep takes whatever is left behind (a crash between
the write and the publish, a broker outage) once it is older than a grace period.
A consumer may therefore see an event twice, never zero times: consumers dedupe
on ``event_id``.

>>> from kernel.envelope import Envelope
>>> event = Envelope.new("echo.failed", {"echo_id": "e", "ticket_id": "t", "recipient": "r",
...     "channel": "inbox", "source_event_id": "s", "source_event_type": "ticket.received",
...     "at": "2026-11-26T08:00:00+00:00", "reason": "no channel"}, community="xingqiao")
>>> doc = with_events({"_id": "t"}, [event])
>>> [e["type"] for e in doc[OUTBOX]], SINCE in doc
(['echo.failed'], True)
>>> update = push_events({"$set": {"state": "x"}}, [event])
>>> sorted(update)
['$min', '$push', '$set']
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta

import eventlet
from eventlet.queue import LightQueue
from nameko.extensions import DependencyProvider, SharedExtension
from pymongo.collection import Collection

from kernel.config import settings_of
from kernel.envelope import Envelope, utcnow
from kernel.events import validate_outgoing
from kernel.groupcommit import next_batch
from kernel.logging import get_logger
from kernel.metrics import OUTBOX_LAG, OUTBOX_OLDEST, OUTBOX_PENDING, PUBLISH_FAILURES, PUBLISHED, labelled
from kernel.mongo import MongoClientProvider
from kernel.publisher import Outgoing, PipelinedPublisher
from kernel.topology import EVENTS

OUTBOX = "_outbox"
SINCE = "_outbox_since"
SWEEP_BATCH = 500  # events published, then settled in the background, at a time
SWEEP_READ = 2000  # documents a sweep reads at once
PENDING_BACKLOG_SECONDS = 5.0
SETTLE_SECONDS = 0.05  # published events are marked in batches this often
# A published event is marked this long after its publish (at most a quarter of the sweep's
# grace period), unless a later write to its document removed it first (OutboxRelay.hand_over):
# that write is then the settle.
SETTLE_AFTER_SECONDS = 0.5
SETTLE_CHUNK = 20  # documents per settle statement
FLUSH_BATCH = 200  # documents the flusher publishes as one batch at most

log = get_logger(__name__)


def staged(envelopes: Iterable[Envelope]) -> list[dict]:
    """Validate against the catalogue and turn into what the outbox stores (the wire form)."""
    return [validate_outgoing(envelope).to_wire() for envelope in envelopes]


def with_events(document: dict, envelopes: Sequence[Envelope]) -> dict:
    """A new document carrying its events, for ``insert_one``."""
    if not envelopes:
        return document
    return {**document, OUTBOX: staged(envelopes), SINCE: utcnow()}


def push_events(update: dict, envelopes: Sequence[Envelope]) -> dict:
    """An update that also appends events to the document's outbox, for ``update_one``."""
    if not envelopes:
        return update
    return {
        **update,
        "$push": {**update.get("$push", {}), OUTBOX: {"$each": staged(envelopes)}},
        "$min": {**update.get("$min", {}), SINCE: utcnow()},
    }


def ensure_indexes(collection: Collection) -> None:
    """The sweep finds documents with unpublished events by their age."""
    collection.create_index(SINCE, sparse=True, name="outbox_since")


class OutboxRelay(SharedExtension):
    """Publishes outbox events of one container, at once after a write and by a periodic sweep."""

    def __init__(self, **kwargs):
        self.collection_names: set[str] = set()
        self._sweeper = self._settler = self._flusher = None
        self._flush_publisher = self._sweep_publisher = None
        self._collections: dict[str, Collection] | None = None
        self._queued = LightQueue()  # (collection, document id, events) written, not yet published
        # collection -> document id -> (when first published, monotonic; [published event ids])
        self._unsettled: dict[str, dict] = {}
        super().__init__(**kwargs)

    mongo = MongoClientProvider()

    def setup(self) -> None:
        settings = settings_of(self.container.config)
        self.settings = settings
        self.settle_after = min(SETTLE_AFTER_SECONDS, settings.outbox_grace_seconds / 4)
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
        self._settler = self.container.spawn_managed_thread(self._settle_forever, identifier="outbox-settle")
        self._flusher = self.container.spawn_managed_thread(self._flush_forever, identifier="outbox-flush")

    def stop(self) -> None:
        self.kill()
        try:  # what was published but not yet marked would otherwise be published again after a restart
            self.settle(everything=True)
        except Exception as error:
            log.warning("outbox.settle_failed", error=repr(error))

    def kill(self) -> None:
        # What is still queued stays in its documents' outboxes: the sweep publishes it after a restart.
        for thread in (self._sweeper, self._settler, self._flusher):
            if thread is not None:
                thread.kill()
        self._sweeper = self._settler = self._flusher = None
        for publisher in (self._flush_publisher, self._sweep_publisher):
            if publisher is not None:
                publisher.close()

    def flush_soon(self, collection_name: str, document_id, events: Sequence[Envelope] = ()) -> None:
        """Publish a document's events in the background, right after its write.

        ``events`` are the envelopes just written with the document; given them, the
        relay does not read the document back. Without them it reads what is pending.
        The flusher publishes what concurrent writers queued meanwhile as one batch.
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
            wire = [event.to_wire() for event in events] if events else self._pending_events(
                collections[collection_name], document_id)
            if wire:
                documents.append((collection_name, document_id, wire))
        confirmed = self._publish_documents(self._flush_publisher, [wire for _, _, wire in documents])
        published_at = time.monotonic()
        for collection_name, document_id, wire in documents:
            ids = [event["event_id"] for event in wire if event["event_id"] in confirmed]
            if ids:
                self._remember(collection_name, document_id, ids, published_at)
                labelled(PUBLISHED, self.container.service_name, collection_name).inc(len(ids))

    @staticmethod
    def _pending_events(collection: Collection, document_id) -> list[dict]:
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
        return confirmed

    def settle(self, *, everything: bool = False) -> int:
        """Remove published events from their documents: a statement per chunk of documents.

        Only events published at least ``settle_after`` seconds ago (all of them with
        ``everything``), so that a write to the document soon after can take them out
        instead (:meth:`hand_over`). Until then a published event is still in its outbox;
        the sweep only takes events older than the grace period, and at worst publishes
        one again (consumers dedupe).
        """
        due_before = float("inf") if everything else time.monotonic() - self.settle_after
        collections = self.collections()
        count = 0
        for name, documents in list(self._unsettled.items()):
            due = [(document_id, ids) for document_id, (published_at, ids) in documents.items()
                   if published_at <= due_before]
            for document_id, _ in due:
                del documents[document_id]
            try:
                _settle(collections[name], due)
            except Exception:
                for document_id, ids in due:
                    self._remember(name, document_id, ids, 0.0)  # due at once
                raise
            count += sum(len(ids) for _, ids in due)
        return count

    def hand_over(self, collection_name: str, document_id) -> list[str]:
        """The published events of a document still to be removed, for a write that removes them itself.

        The relay forgets them: the caller's write takes them out of the outbox (see
        :func:`settle_expression`). If that write fails, the caller gives them back with
        :meth:`take_back`; if it dies meanwhile, the sweep publishes them again.
        """
        _, ids = self._unsettled.get(collection_name, {}).pop(document_id, (0.0, []))
        return ids

    @contextmanager
    def handed_over(self, collection_name: str, document_id) -> Iterator[list[str]]:
        """:meth:`hand_over` for the body of a ``with``; an exception gives the events back.

        Usage (the tickets service records an echo and settles the ticket's events in one write)::

            with self.outbox.handed_over("tickets", ticket_id) as published:
                repository.record_echo(..., published=published)
        """
        event_ids = self.hand_over(collection_name, document_id)
        try:
            yield event_ids
        except BaseException:
            self.take_back(collection_name, document_id, event_ids)
            raise

    def take_back(self, collection_name: str, document_id, event_ids: Sequence[str]) -> None:
        """Events handed over to a write that failed: the relay settles them itself again."""
        if event_ids:
            self._remember(collection_name, document_id, event_ids, 0.0)  # due at once

    def _remember(self, collection_name: str, document_id, event_ids: Sequence[str], published_at: float) -> None:
        """Note published events still in their document's outbox; a document is due with its first."""
        documents = self._unsettled.setdefault(collection_name, {})
        earlier, ids = documents.get(document_id, (published_at, []))
        documents[document_id] = (min(earlier, published_at), [*ids, *(i for i in event_ids if i not in ids)])

    def unsettled(self, collection_name: str, document_id) -> list[str]:
        """The events of a document the broker confirmed and the relay has still to remove."""
        return list(self._unsettled.get(collection_name, {}).get(document_id, (0.0, []))[1])

    def _settle_forever(self) -> None:
        while True:
            eventlet.sleep(SETTLE_SECONDS)
            try:
                self.settle()
            except Exception as error:
                log.warning("outbox.settle_failed", error=repr(error))

    def sweep(self) -> int:
        """Publish the events older than the grace period, up to :data:`SWEEP_READ` documents per collection.

        Returns how many documents it took; a full read means more may be waiting. They
        are published a batch of :data:`SWEEP_BATCH` at a time, each batch settled in the
        background while the next one is published (the broker and the database work
        at the same time), and every settle is done before the next read.
        """
        cutoff = utcnow() - timedelta(seconds=self.settings.outbox_grace_seconds)
        swept = 0
        for collection in self.collections().values():
            documents = list(collection.find({SINCE: {"$lte": cutoff}}, {OUTBOX: 1}).limit(SWEEP_READ))
            settling = None
            for start in range(0, len(documents), SWEEP_BATCH):
                batch = documents[start:start + SWEEP_BATCH]
                published = self._publish_batch(batch)
                if settling is not None:
                    settling.wait()  # one settle at a time
                    settling = None
                if published:
                    settling = self.container.spawn_managed_thread(
                        lambda c=collection, b=batch, p=published: self._settle_batch(c, b, p),
                        identifier="outbox-sweep-settle")
                if len(published) < sum(len(document[OUTBOX]) for document in batch):
                    break  # the broker refused one: the rest waits for the next sweep
            if settling is not None:
                settling.wait()
            swept += len(documents)
        return swept

    def _publish_batch(self, documents: list[dict]) -> set[str]:
        """Publish the events of a batch of documents; the ids the broker confirmed.

        A failed connection fails the batch: nothing of it is settled, the next sweep tries again.
        """
        try:
            return self._publish_documents(self._sweep_publisher, [document[OUTBOX] for document in documents])
        except Exception as error:
            PUBLISH_FAILURES.labels(service=self.container.service_name).inc()
            log.warning("outbox.sweep_publish_failed", error=repr(error))
            return set()

    def _settle_batch(self, collection: Collection, documents: list[dict], published: set[str]) -> None:
        """Settle a swept batch; never raises: it runs in a managed thread, whose exception kills the
        container. Events it could not settle are published again by a later sweep."""
        try:
            _settle(collection, [(document["_id"], [e["event_id"] for e in document[OUTBOX]
                                                    if e["event_id"] in published]) for document in documents])
        except Exception as error:
            log.warning("outbox.settle_failed", collection=collection.name, error=repr(error))
            return
        PUBLISHED.labels(service=self.container.service_name, collection=collection.name).inc(len(published))
        log.info("outbox.swept", collection=collection.name, published=len(published))

    def pending(self) -> dict[str, dict]:
        """Unpublished events and the age of the oldest, per collection (for ops and the gauges)."""
        report = {}
        for name, collection in self.collections().items():
            oldest = collection.find_one({SINCE: {"$exists": True}}, {SINCE: 1}, sort=[(SINCE, 1)])
            lag = (utcnow() - oldest[SINCE]).total_seconds() if oldest else 0.0
            count = collection.count_documents({SINCE: {"$exists": True}}) if oldest else 0
            report[name] = {"documents": count, "oldest_seconds": lag}
            OUTBOX_PENDING.labels(service=self.container.service_name, collection=name).set(count)
            OUTBOX_OLDEST.labels(service=self.container.service_name, collection=name).set(lag)
        return report

    def _sweep_forever(self) -> None:
        gauged = 0.0
        while True:
            started = time.monotonic()
            backlog = False
            try:
                backlog = self.sweep() >= SWEEP_READ
                # pending() counts and sorts every waiting document: while a backlog drains, rarely,
                # or draining N events reads O(N^2) documents.
                period = PENDING_BACKLOG_SECONDS if backlog else self.settings.outbox_sweep_seconds
                if started - gauged >= period:
                    self.pending()
                    gauged = started
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
    """A stored event as the message the relay publishes: routed by its type, identified by its id."""
    return Outgoing(event, EVENTS.name, event["type"], message_id=event["event_id"],
                    correlation_id=event["correlation_id"], headers={"x-huisheng-attempt": 1})


def _age_seconds(event: dict) -> float:
    """Seconds since the event was written (its ``occurred_at``)."""
    return max(0.0, (utcnow() - datetime.fromisoformat(event["occurred_at"])).total_seconds())


def _settle(collection: Collection, settled: Sequence[tuple]) -> None:
    """Remove published events: one statement per chunk of documents, with that chunk's event ids.

    One statement costs the database one commit for the whole chunk. Chunks stay small
    because each document's events are tested against every id of its chunk
    (SecantusDB's matcher is Python: a batch of 500 in one statement was quadratic).
    """
    settled = [(document_id, ids) for document_id, ids in settled if ids]
    for start in range(0, len(settled), SETTLE_CHUNK):
        chunk = settled[start:start + SETTLE_CHUNK]
        collection.update_many({"_id": {"$in": [document_id for document_id, _ in chunk]}},
                               _without_events([event_id for _, ids in chunk for event_id in ids]))


def _without_events(event_ids: list[str]) -> list[dict]:
    """One atomic update: drop the published events, and the sweep marker once none is left.

    A writer that adds events meanwhile keeps the marker, since the outbox is then not empty.
    """
    return [{"$set": settle_expression(event_ids)}, {"$set": since_expression()}]


def settle_expression(event_ids) -> dict:
    """For a pipeline ``$set`` stage: the outbox without ``event_ids`` (an expression or a list).

    >>> settle_expression(["e1"])["_outbox"]["$filter"]["cond"]
    {'$not': [{'$in': ['$$this.event_id', ['e1']]}]}
    """
    return {OUTBOX: {"$filter": {"input": {"$ifNull": [f"${OUTBOX}", []]},
                                 "cond": {"$not": [{"$in": ["$$this.event_id", event_ids]}]}}}}


def since_expression() -> dict:
    """For the pipeline ``$set`` stage after :func:`settle_expression`: no sweep marker on an empty outbox."""
    return {SINCE: {"$cond": [{"$eq": [{"$size": f"${OUTBOX}"}, 0]}, "$$REMOVE", f"${SINCE}"]}}

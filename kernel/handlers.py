"""Reliable event handlers: retries with back-off, then a dead-letter queue; never ack-and-forget.

``@handles("<subscription>")`` replaces nameko's ``@event_handler`` (which acks a message even when its
handler raised) for the subscriptions of :mod:`kernel.events`; docs/architecture.md ("Reliable handlers")
tells each step. Dead-lettered events are shown and replayed by ``huisheng ops dlq``.

Usage::

    class NotifyService:
        name = "notify"

        @handles("notify.ticket_events")
        def on_ticket_event(self, event: Envelope):
            ...
"""

from __future__ import annotations

import traceback
from contextlib import suppress
from functools import partial

import eventlet
from nameko.amqp.publish import Publisher
from nameko.exceptions import ContainerBeingKilled
from nameko.messaging import Consumer, QueueConsumer

from kernel.config import settings_of
from kernel.context import CORRELATION_ID
from kernel.envelope import Envelope, MalformedEvent, utcnow
from kernel.events import subscription, validate_incoming
from kernel.idempotency import DONE, Claims
from kernel.logging import get_logger
from kernel.metrics import HANDLED, labelled
from kernel.mongo import MongoClientProvider
from kernel.topology import ATTEMPT, DEAD, ERROR, FAILED_AT, TRACEBACK, consumer_queue, retry_exchange

PROCESSED = "processed_events"
PROCESSED_RETENTION_SECONDS = 30 * 24 * 3600
DATABASE_BACKOFF_SECONDS = 1.0
CLAIM_LEASE_SECONDS = 60.0
# A parked or dead-lettered copy: a short retry, then the original goes back to its queue instead.
RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1}
# "claim": the kernel records each event id before and after the handler (any handler is safe). "effects": the
# handler's writes record the event id themselves, atomically with the effect, so a repeat has no effect.
DEDUPE_MODES = ("claim", "effects")

log = get_logger(__name__)


class ReliableQueueConsumer(QueueConsumer):
    """A queue consumer that rejects undecodable messages (to the DLQ) instead of crashing."""

    def get_consumers(self, consumer_cls, channel):
        consumers = super().get_consumers(consumer_cls, channel)
        for consumer in consumers:
            consumer.on_decode_error = self._on_decode_error
        return consumers

    def _on_decode_error(self, message, error) -> None:
        log.error("event.undecodable", error=repr(error), content_type=message.content_type)
        message.reject(requeue=False)


class ReliableEventHandler(Consumer):
    queue_consumer = ReliableQueueConsumer()
    mongo = MongoClientProvider()

    def __init__(self, subscription_name: str, *, dedupe: str = "claim", **kwargs):
        if dedupe not in DEDUPE_MODES:
            raise ValueError(f"dedupe must be one of {DEDUPE_MODES}, not {dedupe!r}")
        self.subscription = subscription(subscription_name)
        self.dedupe = dedupe
        super().__init__(queue=consumer_queue(self.subscription), **kwargs)

    def setup(self) -> None:
        if self.subscription.service != self.container.service_name:
            raise RuntimeError(f"{self.container.service_name} cannot consume {self.subscription.name}: "
                               f"the subscription belongs to {self.subscription.service}")
        settings = settings_of(self.container.config)
        self.retry_delays_ms = settings.retry_delays_ms
        # Persistent, JSON, confirmed (the original is acked only once the broker has the copy) and mandatory
        # (no queue to take it raises UndeliverableMessage); nameko's producers are pooled (kernel.patches).
        self.publisher = Publisher(settings.amqp_uri, mandatory=True, retry_policy=RETRY_POLICY)
        super().setup()

    def start(self) -> None:
        # Which events each subscription of this service has handled, or is handling now, keyed
        # "<subscription>:<event id>": a claim whose worker died expires after CLAIM_LEASE_SECONDS.
        self.claims = Claims(self.mongo.db[PROCESSED], CLAIM_LEASE_SECONDS)
        self.claims.collection.create_index("at", expireAfterSeconds=PROCESSED_RETENTION_SECONDS)
        super().start()

    def claim(self, key: str) -> str:
        """Claim an event before its handler runs: ``"claimed"`` (go ahead), ``"done"`` (a duplicate) or
        ``"busy"`` (another worker has it)."""
        now = utcnow()
        existing = self.claims.claim(key, now, at=now)
        if existing is None or self.claims.take_over(key, now):
            return "claimed"
        return "done" if existing["state"] == DONE else "busy"

    def handle_message(self, body, message) -> None:
        try:
            event = validate_incoming(Envelope.from_wire(body))
        except MalformedEvent as error:
            try:
                self._dead_letter(body, message, attempt=_attempt(message), error=str(error), trace="")
            except Exception as failure:
                # The broker refused the copy: let it dead-letter the original (the queue's DLX) instead.
                log.error("event.dead_letter_failed", error=repr(failure))
                message.reject(requeue=False)
            return
        try:
            claim = "claimed"  # "effects": the handler's own writes are keyed by the event, a repeat changes nothing
            if self.dedupe == "claim":
                claim = self.claim(f"{self.subscription.name}:{event.event_id}")
        except Exception as error:
            # The database is unreachable: hold consumption a moment and give the message back.
            log.error("event.dedupe_unavailable", event_id=event.event_id, error=repr(error))
            eventlet.sleep(DATABASE_BACKOFF_SECONDS)
            self.queue_consumer.requeue_message(message)
            self._count("requeued")
            return
        if claim == "done":
            log.info("event.duplicate_skipped", event_id=event.event_id, type=event.type)
            self._count("duplicate")
            self.queue_consumer.ack_message(message)
            return
        if claim == "busy":
            # Another worker is handling this very event. Keep the copy until its claim
            # resolves: if that worker dies, this copy is the one that gets it done.
            self._park(body, message, event, delay_ms=max(self.retry_delays_ms), attempt=_attempt(message),
                       error="another delivery of this event is in progress")
            self._count("busy")
            return
        context_data = {**self.unpack_message_headers(message), CORRELATION_ID: event.correlation_id}
        try:
            self.container.spawn_worker(self, (event,), {}, context_data=context_data,
                                        handle_result=partial(self.handle_event_result, body, message, event))
        except ContainerBeingKilled:
            self.queue_consumer.requeue_message(message)

    def handle_event_result(self, body, message, event: Envelope, worker_ctx, result=None, exc_info=None):
        key = f"{self.subscription.name}:{event.event_id}" if self.dedupe == "claim" else None
        try:
            if exc_info is None:
                if key:
                    self.claims.done(key, at=utcnow())
                self.queue_consumer.ack_message(message)
                self._count("ok")
            else:
                if key:  # give the claim up after a failure, so the retried copy can take it
                    self.claims.release(key)
                self._failed(body, message, event, exc_info)
        except Exception as error:
            # Could not park or record: give the message back so it is not lost. On a dead channel
            # that fails too, and need not succeed: the broker redelivers what was never acked.
            log.error("event.settle_failed", event_id=event.event_id, error=repr(error))
            with suppress(Exception):
                self.queue_consumer.requeue_message(message)
            self._count("requeued")
        return result, exc_info

    def _failed(self, body, message, event: Envelope, exc_info) -> None:
        attempt = _attempt(message)
        error = f"{exc_info[0].__name__}: {exc_info[1]}"
        trace = "".join(traceback.format_exception(*exc_info))[-4000:]
        if attempt > len(self.retry_delays_ms):  # the last attempt
            self._dead_letter(body, message, attempt=attempt, error=error, trace=trace)
            return
        self._park(body, message, event, delay_ms=self.retry_delays_ms[attempt - 1], attempt=attempt + 1, error=error)
        self._count("retried")

    def _park(self, body, message, event: Envelope, *, delay_ms: int, attempt: int, error: str) -> None:
        """Move the message to the retry queue of ``delay_ms``; ack it once the broker has the copy."""
        log.warning("event.retry_scheduled", event_id=event.event_id, type=event.type,
                    next_attempt=attempt, delay_ms=delay_ms, error=error)
        self.publisher.publish(body, exchange=retry_exchange(delay_ms), routing_key=self.subscription.queue,
                               message_id=event.event_id, correlation_id=event.correlation_id,
                               headers={**_headers(message), ATTEMPT: attempt, ERROR: error[:1000]})
        self.queue_consumer.ack_message(message)

    def _dead_letter(self, body, message, *, attempt: int, error: str, trace: str) -> None:
        log.error("event.dead_lettered", queue=self.subscription.dead_letter_queue, attempt=attempt, error=error)
        self.publisher.publish(body, exchange=DEAD, routing_key=self.subscription.queue,
                               message_id=message.properties.get("message_id"),
                               correlation_id=message.properties.get("correlation_id"),
                               headers={**_headers(message), ATTEMPT: attempt, ERROR: error[:1000], TRACEBACK: trace,
                                        FAILED_AT: utcnow().isoformat()})
        self.queue_consumer.ack_message(message)
        self._count("dead_lettered")

    def _count(self, outcome: str) -> None:
        labelled(HANDLED, self.subscription.name, outcome).inc()


def _headers(message) -> dict:
    return dict(message.headers or {})


def _attempt(message) -> int:
    try:
        return max(1, int(_headers(message).get(ATTEMPT, 1)))
    except (TypeError, ValueError):
        return 1


handles = ReliableEventHandler.decorator

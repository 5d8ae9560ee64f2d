"""The broker topology, declared before anything is published (docs/architecture.md, "Topology, declared
first"): the events' topic exchange, a queue and a dead-letter queue per subscription of :mod:`kernel.events`,
the retry tiers whose TTL is a back-off delay, and ``huisheng.unrouted`` for events no queue is bound to.

>>> names = [q.name for q in consumer_queues((1000,))]
>>> "huisheng.notify.ticket_events" in names and "huisheng.notify.ticket_events.dlq" in names
True
"""

from __future__ import annotations

from collections.abc import Iterable

from kombu import Connection, Exchange, Queue, binding

from kernel.config import Settings
from kernel.events import SUBSCRIPTIONS, Subscription

EVENTS = Exchange("huisheng.events", type="topic", durable=True, arguments={"alternate-exchange": "huisheng.unrouted"})
UNROUTED = Exchange("huisheng.unrouted", type="fanout", durable=True)
REQUEUE = Exchange("huisheng.requeue", type="direct", durable=True)
DEAD = Exchange("huisheng.dead", type="direct", durable=True)
UNROUTED_QUEUE = Queue("huisheng.unrouted", exchange=UNROUTED, durable=True)
# The headers of a message parked for a retry or dead-lettered (kernel.handlers), and of a replayed one (ops).
ATTEMPT = "x-huisheng-attempt"
ERROR = "x-huisheng-error"
TRACEBACK = "x-huisheng-traceback"
FAILED_AT = "x-huisheng-failed-at"
REPLAYED = "x-huisheng-replayed"


def retry_exchange(delay_ms: int) -> Exchange:
    return Exchange(f"huisheng.retry.{delay_ms}ms", type="fanout", durable=True)


def retry_queue(delay_ms: int) -> Queue:
    """Messages wait here ``delay_ms``, then go back to the queue named by their routing key."""
    return Queue(f"huisheng.retry.{delay_ms}ms", exchange=retry_exchange(delay_ms), durable=True,
                 queue_arguments={"x-message-ttl": delay_ms, "x-dead-letter-exchange": REQUEUE.name})


def consumer_queue(sub: Subscription) -> Queue:
    """The subscription's queue; a message rejected without requeue goes to its DLQ."""
    bindings = [binding(EVENTS, routing_key=event_type) for event_type in sub.event_types]
    return Queue(sub.queue, bindings=[*bindings, binding(REQUEUE, routing_key=sub.queue)], durable=True,
                 queue_arguments={"x-dead-letter-exchange": DEAD.name, "x-dead-letter-routing-key": sub.queue})


def dead_letter_queue(sub: Subscription) -> Queue:
    return Queue(sub.dead_letter_queue, exchange=DEAD, routing_key=sub.queue, durable=True)


def consumer_queues(retry_delays_ms: Iterable[int]) -> list[Queue]:
    queues = [UNROUTED_QUEUE]
    queues += [retry_queue(delay) for delay in sorted(set(retry_delays_ms))]
    for sub in SUBSCRIPTIONS:
        queues += [consumer_queue(sub), dead_letter_queue(sub)]
    return queues


def declare_all(settings: Settings) -> None:
    """Declare every exchange, queue and binding on the broker of ``settings``; idempotent."""
    with Connection(settings.amqp_uri, connect_timeout=5) as connection:
        connection.ensure_connection(max_retries=3)
        channel = connection.default_channel
        for exchange in (UNROUTED, EVENTS, REQUEUE, DEAD):
            exchange.declare(channel=channel)
        for queue in consumer_queues(settings.retry_delays_ms):
            queue(channel).declare()

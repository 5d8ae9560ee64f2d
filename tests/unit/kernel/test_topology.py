"""The broker topology as kombu objects, inspected without a connection."""

import pytest

from kernel.events import SUBSCRIPTIONS
from kernel.topology import (
    DEAD,
    EVENTS,
    REQUEUE,
    UNROUTED,
    UNROUTED_QUEUE,
    consumer_queue,
    consumer_queues,
    dead_letter_queue,
    retry_queue,
)

DELAYS = (1000, 200, 5000, 1000, 200)


@pytest.fixture
def queues():
    return {queue.name: queue for queue in consumer_queues(DELAYS)}


def bindings_of(queue):
    return {(b.exchange.name, b.routing_key) for b in queue.bindings}


def test_every_subscription_has_its_queue_and_dead_letter_queue(queues):
    for sub in SUBSCRIPTIONS:
        assert sub.queue in queues
        assert sub.dead_letter_queue in queues


def test_one_retry_queue_per_distinct_delay(queues):
    retry_names = sorted(name for name in queues if name.startswith("huisheng.retry."))
    assert retry_names == sorted(f"huisheng.retry.{d}ms" for d in set(DELAYS))


def test_no_delays_means_no_retry_queues():
    assert not [q for q in consumer_queues(()) if q.name.startswith("huisheng.retry.")]


def test_queue_names_are_unique():
    names = [queue.name for queue in consumer_queues(DELAYS)]
    assert len(names) == len(set(names))
    assert len(names) == 1 + len(set(DELAYS)) + 2 * len(SUBSCRIPTIONS)


def test_every_queue_is_durable(queues):
    assert all(queue.durable for queue in queues.values())


@pytest.mark.parametrize("sub", SUBSCRIPTIONS, ids=lambda sub: sub.name)
def test_consumer_queue_is_bound_to_its_event_types_and_to_requeue_by_name(sub):
    queue = consumer_queue(sub)
    assert queue.name == sub.queue
    assert bindings_of(queue) == {(EVENTS.name, t) for t in sub.event_types} | {(REQUEUE.name, sub.queue)}


@pytest.mark.parametrize("sub", SUBSCRIPTIONS, ids=lambda sub: sub.name)
def test_consumer_queue_dead_letters_to_dead_under_its_own_name(sub):
    arguments = consumer_queue(sub).queue_arguments
    assert arguments["x-dead-letter-exchange"] == DEAD.name == "huisheng.dead"
    assert arguments["x-dead-letter-routing-key"] == sub.queue


@pytest.mark.parametrize("sub", SUBSCRIPTIONS, ids=lambda sub: sub.name)
def test_dead_letter_queue_receives_what_its_consumer_queue_dead_letters(sub):
    dlq = dead_letter_queue(sub)
    assert dlq.name == sub.dead_letter_queue
    assert dlq.exchange.name == consumer_queue(sub).queue_arguments["x-dead-letter-exchange"]
    assert dlq.routing_key == consumer_queue(sub).queue_arguments["x-dead-letter-routing-key"]


@pytest.mark.parametrize("delay", [50, 200, 20000])
def test_retry_queue_waits_the_delay_then_dead_letters_to_requeue(delay):
    queue = retry_queue(delay)
    assert queue.name == f"huisheng.retry.{delay}ms"
    assert queue.queue_arguments == {"x-message-ttl": delay, "x-dead-letter-exchange": "huisheng.requeue"}
    assert queue.queue_arguments["x-dead-letter-exchange"] == REQUEUE.name
    assert queue.exchange.name == f"huisheng.retry.{delay}ms"
    assert queue.exchange.type == "fanout"
    assert queue.exchange.durable


def test_retry_queues_in_the_topology_carry_their_delay(queues):
    for delay in set(DELAYS):
        assert queues[f"huisheng.retry.{delay}ms"].queue_arguments["x-message-ttl"] == delay


def test_events_exchange_is_a_durable_topic_with_an_alternate_exchange():
    assert (EVENTS.name, EVENTS.type, EVENTS.durable) == ("huisheng.events", "topic", True)
    assert EVENTS.arguments["alternate-exchange"] == UNROUTED.name == "huisheng.unrouted"


def test_unrouted_events_are_kept_in_a_queue(queues):
    assert UNROUTED.type == "fanout"
    assert UNROUTED_QUEUE.exchange is UNROUTED
    assert queues[UNROUTED_QUEUE.name] is UNROUTED_QUEUE


def test_requeue_and_dead_route_by_name():
    assert (REQUEUE.name, REQUEUE.type, REQUEUE.durable) == ("huisheng.requeue", "direct", True)
    assert (DEAD.name, DEAD.type, DEAD.durable) == ("huisheng.dead", "direct", True)

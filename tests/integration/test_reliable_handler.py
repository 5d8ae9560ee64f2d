"""The reliable event handler against the real broker and database."""

from __future__ import annotations

import eventlet
import pytest
from nameko.testing.services import entrypoint_waiter

from kernel.envelope import Envelope
from kernel.events import current_version, subscription
from kernel.handlers import ATTEMPT, ERROR, handles
from kernel.mongo import Mongo
from tests.support.broker import depth, drain, publish_event, publish_raw
from tests.support.events import ticket_received

SUB = subscription("notify.ticket_events")
pytestmark = pytest.mark.integration


class AlwaysFails:
    """Stands in for notify with a handler that always raises."""

    name = "notify"
    db = Mongo()
    attempts: list[str] = []

    @handles("notify.ticket_events")
    def on_ticket_event(self, event: Envelope):
        AlwaysFails.attempts.append(event.event_id)
        raise RuntimeError("the SMS gateway is down")


class Counts:
    """Stands in for notify with a slow handler that counts its effects."""

    name = "notify"
    db = Mongo()

    @handles("notify.ticket_events")
    def on_ticket_event(self, event: Envelope):
        eventlet.sleep(0.2)  # long enough for the copies of an event to arrive while it runs
        self.db.effects.insert_one({"event_id": event.event_id})


def test_a_failing_handler_is_retried_then_dead_lettered(container_factory, service_config, settings,
                                                         wait_until):
    AlwaysFails.attempts = []
    container_factory(AlwaysFails, service_config).start()
    event = ticket_received()

    publish_event(settings.amqp_uri, event.to_wire())

    max_attempts = len(settings.retry_delays_ms) + 1
    wait_until(lambda: depth(settings.amqp_uri, SUB.dead_letter_queue) == 1)
    assert AlwaysFails.attempts == [event.event_id] * max_attempts
    [(body, headers)] = drain(settings.amqp_uri, SUB.dead_letter_queue)
    assert body["event_id"] == event.event_id
    assert headers[ATTEMPT] == max_attempts
    assert "the SMS gateway is down" in headers[ERROR]
    assert depth(settings.amqp_uri, SUB.queue) == 0


def test_a_redelivered_event_has_no_second_effect(container_factory, service_config, settings,
                                                  mongo_client, wait_until):
    container_factory(Counts, service_config).start()
    event, later = ticket_received(), ticket_received()
    effects = mongo_client[settings.database_name("notify")].effects

    for _ in range(3):
        publish_event(settings.amqp_uri, event.to_wire())
    publish_event(settings.amqp_uri, later.to_wire())

    wait_until(lambda: effects.count_documents({"event_id": later.event_id}) == 1)
    wait_until(lambda: effects.count_documents({"event_id": event.event_id}) == 1)
    wait_until(lambda: depth(settings.amqp_uri, SUB.queue) == 0
               and all(depth(settings.amqp_uri, f"huisheng.retry.{d}ms") == 0 for d in settings.retry_delays_ms))
    eventlet.sleep(0.5)  # let any copy still in flight be handled (it must be skipped)
    assert effects.count_documents({"event_id": event.event_id}) == 1
    assert effects.count_documents({}) == 2


def test_malformed_messages_go_to_the_dead_letter_queue(container_factory, service_config, settings,
                                                        wait_until):
    container_factory(Counts, service_config).start()

    publish_raw(settings.amqp_uri, b"\xff not json", "ticket.received", "application/json")
    publish_event(settings.amqp_uri, {"type": "ticket.received", "hello": "world"})
    invalid_payload = ticket_received().to_wire()
    invalid_payload["payload"].pop("description")
    publish_event(settings.amqp_uri, invalid_payload)

    wait_until(lambda: depth(settings.amqp_uri, SUB.dead_letter_queue) == 3)
    reasons = [headers.get(ERROR, "rejected: undecodable") for _, headers in
               drain(settings.amqp_uri, SUB.dead_letter_queue)]
    assert any("not a valid event envelope" in reason for reason in reasons)
    assert any("payload is invalid" in reason for reason in reasons)


def test_an_event_of_a_previous_version_is_upcast(container_factory, service_config, settings,
                                                  mongo_client):
    seen: list[Envelope] = []

    class Records:
        name = "notify"
        db = Mongo()

        @handles("notify.ticket_events")
        def on_ticket_event(self, event: Envelope):
            seen.append(event)

    container = container_factory(Records, service_config)
    container.start()
    wire = ticket_received(residents=("r-9",)).to_wire()
    wire["version"] = 1
    for added_later in ("attached_residents", "number", "grid", "building"):  # by versions 2 and 3
        del wire["payload"][added_later]

    with entrypoint_waiter(container, "on_ticket_event", timeout=10):
        publish_event(settings.amqp_uri, wire)

    assert seen[0].version == current_version("ticket.received") == 3
    assert seen[0].payload["attached_residents"] == ["r-9"]


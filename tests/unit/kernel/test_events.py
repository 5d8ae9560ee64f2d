"""The event catalogue: versions, payload schemas, upcasting and subscriptions."""

import pytest

from kernel.envelope import Envelope, MalformedEvent
from kernel.events import (
    CATALOGUE,
    RESIDENT_VISIBLE_TICKET_EVENTS,
    SUBSCRIPTIONS,
    TicketEventPayload,
    TicketSilentV1,
    UnknownEventType,
    current_version,
    subscription,
    upcast,
    validate_incoming,
    validate_outgoing,
)


def envelope(type_, payload, version=1):
    return Envelope.new(type_, payload, community="xingqiao", version=version)


def test_every_subscribed_event_type_is_in_the_catalogue():
    for sub in SUBSCRIPTIONS:
        for event_type in sub.event_types:
            assert event_type in CATALOGUE, (sub.name, event_type)


def test_every_resident_visible_event_is_subscribed_by_notify():
    assert set(RESIDENT_VISIBLE_TICKET_EVENTS) <= set(subscription("notify.ticket_events").event_types)


def test_every_catalogue_entry_has_an_upcaster_below_its_current_version():
    for event_type in CATALOGUE.values():
        assert set(event_type.upcasters) == set(range(1, event_type.current)), event_type.name


def test_current_version_of_ticket_received_is_3_and_of_transitions_1():
    assert current_version("ticket.received") == 3
    assert current_version("ticket.paused") == 1
    assert current_version("ticket.silent") == 1


def test_current_version_of_an_unknown_type_raises():
    with pytest.raises(UnknownEventType):
        current_version("ticket.vanished")


def test_validate_outgoing_accepts_the_current_version(received_v3):
    event = envelope("ticket.received", received_v3, version=3)
    assert validate_outgoing(event) is event


def test_validate_outgoing_rejects_an_old_version(received_v1):
    with pytest.raises(MalformedEvent, match="version 3"):
        validate_outgoing(envelope("ticket.received", received_v1, version=1))


def test_validate_outgoing_rejects_an_invalid_payload(received_v3):
    del received_v3["attached_residents"]
    with pytest.raises(MalformedEvent) as caught:
        validate_outgoing(envelope("ticket.received", received_v3, version=3))
    assert "attached_residents" in caught.value.errors


def test_validate_outgoing_rejects_an_unknown_type():
    with pytest.raises(UnknownEventType):
        validate_outgoing(envelope("ticket.vanished", {}))


def test_validate_incoming_upcasts_received_v1_to_v3(received_v1):
    event = envelope("ticket.received", received_v1, version=1)
    upcasted = validate_incoming(event)
    assert upcasted.version == 3
    assert upcasted.payload["attached_residents"] == ["r1"]
    assert (upcasted.payload["number"], upcasted.payload["grid"], upcasted.payload["building"]) == (None, None, None)
    assert (upcasted.event_id, upcasted.correlation_id) == (event.event_id, event.correlation_id)
    assert "attached_residents" not in event.payload  # the original is untouched


@pytest.mark.parametrize("reporter", [None, ""])
def test_upcasting_received_v1_without_a_reporter_attaches_nobody(received_v1, reporter):
    received_v1["reporter"] = reporter
    upcasted = validate_incoming(envelope("ticket.received", received_v1, version=1))
    assert upcasted.payload["attached_residents"] == []


def test_upcasting_received_v1_with_no_reporter_key_attaches_nobody(received_v1):
    del received_v1["reporter"]
    assert upcast("ticket.received", 1, received_v1) == (
        3, {**received_v1, "attached_residents": [], "number": None, "grid": None, "building": None})


def test_validate_incoming_returns_a_current_event_unchanged(received_v3):
    event = envelope("ticket.received", received_v3, version=3)
    assert validate_incoming(event) is event


def test_validate_incoming_rejects_an_invalid_v1_payload(received_v1):
    received_v1["colour"] = "red"  # v1 rejects unknown keys
    with pytest.raises(MalformedEvent):
        validate_incoming(envelope("ticket.received", received_v1, version=1))


def test_validate_incoming_rejects_an_unknown_type():
    with pytest.raises(UnknownEventType, match="ticket.vanished"):
        validate_incoming(envelope("ticket.vanished", {}))


@pytest.mark.parametrize("version", [4, 99])
def test_validate_incoming_rejects_an_unknown_version(received_v2, version):
    with pytest.raises(UnknownEventType, match=f"no version {version}"):
        validate_incoming(envelope("ticket.received", received_v2, version=version))


def test_unknown_event_type_is_a_malformed_event():
    assert issubclass(UnknownEventType, MalformedEvent)


@pytest.mark.parametrize("event_type", ["echo.delivered", "echo.failed", "echo.read"])
def test_echo_outcomes_are_no_events(event_type):
    """notify keeps its echoes' outcomes; tickets asks for them (notify.echo_outcomes), nobody is told them."""
    assert event_type not in CATALOGUE
    assert all(event_type not in sub.event_types for sub in SUBSCRIPTIONS)
    with pytest.raises(UnknownEventType):
        validate_outgoing(envelope(event_type, {"ticket_id": "T1"}))


def test_ticket_silent_accepts_a_valid_payload(silent):
    assert TicketSilentV1().validate(silent) == {}
    assert validate_outgoing(envelope("ticket.silent", silent)).payload is silent


def test_ticket_silent_rejects_extra_keys(silent):
    assert "phone" in TicketSilentV1().validate({**silent, "phone": "13812345678"})


def test_ticket_event_payload_accepts_extra_details(transition):
    assert TicketEventPayload().validate({**transition, "assignee": "w1", "until": None}) == {}


@pytest.mark.parametrize("missing", ["ticket_id", "state", "attached_residents"])
def test_ticket_event_payload_requires_its_core_fields(transition, missing):
    del transition[missing]
    assert missing in TicketEventPayload().validate(transition)


def test_ticket_event_payload_rejects_an_unknown_state(transition):
    assert "state" in TicketEventPayload().validate({**transition, "state": "lost"})


@pytest.mark.parametrize("name,queue", [
    ("notify.ticket_events", "huisheng.notify.ticket_events"),
    ("tickets.volunteer_events", "huisheng.tickets.volunteer_events"),
])
def test_subscription_queue_names(name, queue):
    sub = subscription(name)
    assert sub.queue == queue
    assert sub.dead_letter_queue == f"{queue}.dlq"
    assert sub.service == name.split(".")[0]


def test_subscription_names_and_queues_are_unique():
    assert len({sub.name for sub in SUBSCRIPTIONS}) == len(SUBSCRIPTIONS)
    assert len({sub.queue for sub in SUBSCRIPTIONS}) == len(SUBSCRIPTIONS)


def test_tickets_subscribes_to_no_echo_outcome():
    with pytest.raises(KeyError):
        subscription("tickets.echo_outcomes")
    assert not [sub.name for sub in SUBSCRIPTIONS if any(t.startswith("echo.") for t in sub.event_types)]


def test_an_unknown_subscription_raises_key_error():
    with pytest.raises(KeyError, match="x"):
        subscription("x")


def test_resident_erased_is_consumed_by_tickets_and_notify():
    assert current_version("resident.erased") == 1
    assert subscription("tickets.erasures").event_types == ("resident.erased",)
    assert subscription("notify.erasures").event_types == ("resident.erased",)


def test_resident_erased_payload_is_validated():
    good = envelope("resident.erased", {"resident_id": "p-0123456789ab", "erased_at": "2026-11-26T08:00:00+00:00"})
    assert validate_outgoing(good) is good
    with pytest.raises(MalformedEvent):
        validate_outgoing(envelope("resident.erased", {"resident_id": "p-0123456789ab"}))
    with pytest.raises(MalformedEvent):
        validate_outgoing(envelope("resident.erased", {"resident_id": "", "erased_at": "x", "phone": "138"}))


PAYLOAD_SCHEMAS = sorted({schema for event_type in CATALOGUE.values() for schema in event_type.schemas.values()}
                         - {TicketEventPayload}, key=lambda schema: schema.__name__)


@pytest.mark.parametrize("schema", PAYLOAD_SCHEMAS, ids=[schema.__name__ for schema in PAYLOAD_SCHEMAS])
def test_a_payload_key_its_schema_does_not_name_is_refused(schema):
    # No Meta says so: marshmallow's default (RAISE); only a ticket transition's payload takes extra details.
    assert schema().validate({"not_a_key": 1})["not_a_key"] == ["Unknown field."]


def test_a_ticket_transition_carries_details_of_its_own():
    payload = {"ticket_id": "T1", "state": "paused", "attached_residents": [], "reason": "parts on order"}
    assert TicketEventPayload().validate(payload) == {}

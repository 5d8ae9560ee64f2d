"""The event envelope: wire form, UTC timestamps and what counts as malformed."""

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from kernel.envelope import Envelope, MalformedEvent, utcnow

CHINA = timezone(timedelta(hours=8))


@pytest.fixture
def event():
    return Envelope.new("ticket.received", {"ticket_id": "T1"}, community="xingqiao",
                        correlation_id="c-1", version=2)


@pytest.fixture
def wire(event):
    return event.to_wire()


def test_round_trip_through_the_wire_gives_an_equal_envelope(event):
    assert Envelope.from_wire(event.to_wire()) == event


def test_round_trip_survives_json_encoding(event):
    assert Envelope.from_wire(json.loads(json.dumps(event.to_wire()))) == event


def test_wire_form_has_exactly_the_envelope_fields(wire):
    assert set(wire) == {"event_id", "type", "version", "occurred_at", "correlation_id", "community", "payload"}
    assert wire["type"] == "ticket.received"
    assert wire["version"] == 2
    assert wire["payload"] == {"ticket_id": "T1"}


def test_utcnow_is_utc_at_millisecond_precision():
    now = utcnow()
    assert now.utcoffset() == timedelta(0)
    assert now.microsecond % 1000 == 0
    assert abs(datetime.now(UTC) - now) < timedelta(seconds=5)


def test_occurred_at_in_china_time_is_converted_to_utc(wire):
    loaded = Envelope.from_wire({**wire, "occurred_at": "2026-11-26T16:00:00+08:00"})
    assert loaded.occurred_at.utcoffset() == timedelta(0)
    assert loaded.occurred_at.hour == 8
    assert loaded.occurred_at == datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def test_naive_occurred_at_on_the_wire_is_taken_as_utc(wire):
    loaded = Envelope.from_wire({**wire, "occurred_at": "2026-11-26T08:00:00"})
    assert loaded.occurred_at == datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    assert loaded.occurred_at.utcoffset() == timedelta(0)


def test_wire_occurred_at_of_a_new_event_is_utc(event):
    assert datetime.fromisoformat(event.to_wire()["occurred_at"]).utcoffset() == timedelta(0)


def test_wire_occurred_at_is_utc_even_when_the_event_was_created_in_china_time():
    event = Envelope.new("ticket.received", {}, community="xingqiao",
                         occurred_at=datetime(2026, 11, 26, 16, 0, tzinfo=CHINA))
    assert event.to_wire()["occurred_at"] == "2026-11-26T08:00:00+00:00"


def test_a_naive_occurred_at_is_taken_as_utc():
    event = Envelope.new("ticket.received", {}, community="xingqiao", occurred_at=datetime(2026, 11, 26, 8, 0))
    assert event.to_wire()["occurred_at"] == "2026-11-26T08:00:00+00:00"


def test_correlation_id_defaults_to_the_event_id():
    event = Envelope.new("ticket.received", {}, community="xingqiao")
    assert event.correlation_id == event.event_id


def test_given_correlation_id_is_kept(event):
    assert event.correlation_id == "c-1"
    assert event.event_id != "c-1"


def test_every_new_event_gets_its_own_id():
    ids = {Envelope.new("ticket.received", {}, community="x").event_id for _ in range(50)}
    assert len(ids) == 50


def test_with_payload_keeps_identity_and_changes_payload_and_version(event):
    changed = event.with_payload({"ticket_id": "T2"}, 3)
    assert (changed.event_id, changed.type, changed.correlation_id, changed.community, changed.occurred_at) == (
        event.event_id, event.type, event.correlation_id, event.community, event.occurred_at)
    assert (changed.payload, changed.version) == ({"ticket_id": "T2"}, 3)


@pytest.mark.parametrize("data", [None, [], ["ticket.received"], "ticket.received", 42, b"{}"])
def test_a_non_dict_is_malformed(data):
    with pytest.raises(MalformedEvent, match="JSON object"):
        Envelope.from_wire(data)


@pytest.mark.parametrize(
    "missing", ["event_id", "type", "version", "occurred_at", "correlation_id", "community", "payload"])
def test_a_missing_field_is_malformed_and_named(wire, missing):
    del wire[missing]
    with pytest.raises(MalformedEvent) as caught:
        Envelope.from_wire(wire)
    assert missing in caught.value.errors


@pytest.mark.parametrize("name", [
    "Ticket Received", "ticket received", "ticket", "Ticket.received", "ticket.Received", "ticket..received",
    "ticket.received.", ".ticket", "ticket-received.x", "ticket.received2", "",
    "ticket.received\n",
])
def test_a_bad_type_name_is_malformed(wire, name):
    with pytest.raises(MalformedEvent) as caught:
        Envelope.from_wire({**wire, "type": name})
    assert "type" in caught.value.errors


@pytest.mark.parametrize("version", [0, -1, "2", 1.5, True, None])
def test_a_version_that_is_not_a_positive_integer_is_malformed(wire, version):
    with pytest.raises(MalformedEvent) as caught:
        Envelope.from_wire({**wire, "version": version})
    assert "version" in caught.value.errors


@pytest.mark.parametrize("field,value", [
    ("community", ""), ("community", "x" * 65), ("event_id", ""), ("correlation_id", ""),
    ("occurred_at", "yesterday"), ("payload", ["not", "a", "dict"]), ("payload", None),
])
def test_an_invalid_field_value_is_malformed(wire, field, value):
    with pytest.raises(MalformedEvent) as caught:
        Envelope.from_wire({**wire, field: value})
    assert field in caught.value.errors


def test_an_unknown_envelope_field_is_malformed(wire):
    with pytest.raises(MalformedEvent) as caught:
        Envelope.from_wire({**wire, "priority": "urgent"})
    assert "priority" in caught.value.errors


def test_malformed_event_message_includes_the_errors(wire):
    with pytest.raises(MalformedEvent, match="community"):
        Envelope.from_wire({**wire, "community": ""})


def test_malformed_event_is_a_value_error():
    assert issubclass(MalformedEvent, ValueError)
    assert MalformedEvent("x").errors is None

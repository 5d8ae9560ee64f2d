"""The outbox's pure functions: staging events into a document or an update."""

import copy
from datetime import UTC, datetime, timedelta

import pytest

from kernel.envelope import Envelope, MalformedEvent
from kernel.events import UnknownEventType
from kernel.outbox import OUTBOX, SINCE, push_events, staged, with_events


def event(type_, payload, version=1):
    return Envelope.new(type_, payload, community="xingqiao", version=version)


@pytest.fixture
def events(transition, echo_outcome):
    return [event("ticket.paused", transition), event("echo.failed", echo_outcome)]


def assert_recent_utc(value):
    assert isinstance(value, datetime)
    assert value.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - value) < timedelta(seconds=5)


def test_outbox_field_names():
    assert (OUTBOX, SINCE) == ("_outbox", "_outbox_since")


def test_staged_gives_the_wire_form_of_each_event(events):
    assert staged(events) == [e.to_wire() for e in events]
    assert [Envelope.from_wire(wire) for wire in staged(events)] == events


def test_with_events_without_events_returns_the_document_unchanged():
    document = {"_id": "T1", "state": "received"}
    assert with_events(document, []) is document
    assert document == {"_id": "T1", "state": "received"}


def test_with_events_adds_the_outbox_and_its_time(events):
    document = {"_id": "T1", "state": "paused"}
    stored = with_events(document, events)
    assert stored["_id"] == "T1" and stored["state"] == "paused"
    assert stored[OUTBOX] == [e.to_wire() for e in events]
    assert_recent_utc(stored[SINCE])
    assert set(stored) == {"_id", "state", OUTBOX, SINCE}


def test_with_events_does_not_change_the_given_document(events):
    document = {"_id": "T1"}
    with_events(document, events)
    assert document == {"_id": "T1"}


@pytest.mark.parametrize("bad", [
    lambda t: event("ticket.paused", {**t, "state": "lost"}),
    lambda t: event("ticket.paused", {key: v for key, v in t.items() if key != "ticket_id"}),
    lambda t: event("ticket.received", t, version=1),  # an old version (and not a v1 payload)
])
def test_with_events_rejects_an_invalid_event_and_returns_nothing(transition, events, bad):
    document = {"_id": "T1"}
    result = None
    with pytest.raises(MalformedEvent):
        result = with_events(document, [*events, bad(transition)])
    assert result is None
    assert document == {"_id": "T1"}


def test_with_events_rejects_an_unknown_event_type():
    with pytest.raises(UnknownEventType):
        with_events({"_id": "T1"}, [event("ticket.vanished", {})])


def test_push_events_without_events_returns_the_update_unchanged():
    update = {"$set": {"state": "paused"}}
    assert push_events(update, []) is update


def test_push_events_appends_the_outbox_and_keeps_the_oldest_time(events):
    update = push_events({"$set": {"state": "paused"}}, events)
    assert update["$set"] == {"state": "paused"}
    assert update["$push"] == {OUTBOX: {"$each": [e.to_wire() for e in events]}}
    assert set(update["$min"]) == {SINCE}
    assert_recent_utc(update["$min"][SINCE])


def test_push_events_merges_an_existing_push_and_min_without_losing_keys(events):
    due = datetime(2026, 11, 27, tzinfo=UTC)
    original = {
        "$set": {"state": "paused"},
        "$push": {"timeline": {"type": "paused"}},
        "$min": {"first_response_at": due},
        "$inc": {"version": 1},
    }
    before = copy.deepcopy(original)
    update = push_events(original, events)
    assert update["$push"]["timeline"] == {"type": "paused"}
    assert update["$push"][OUTBOX] == {"$each": [e.to_wire() for e in events]}
    assert update["$min"]["first_response_at"] == due
    assert SINCE in update["$min"]
    assert update["$set"] == {"state": "paused"} and update["$inc"] == {"version": 1}
    assert original == before  # the given update is not changed in place


def test_push_events_rejects_an_invalid_event(transition):
    with pytest.raises(MalformedEvent):
        push_events({"$set": {}}, [event("ticket.paused", {**transition, "attached_residents": "r1"})])

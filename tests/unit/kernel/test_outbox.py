"""The outbox's pure functions: staging events into a document or an update."""

import copy
from datetime import UTC, datetime, timedelta

import pytest

from kernel.envelope import Envelope, MalformedEvent
from kernel.events import UnknownEventType
from kernel.outbox import OUTBOX, SINCE, STAGED, _outgoing, push_events, staged, with_events


def event(type_, payload, version=1):
    return Envelope.new(type_, payload, community="xingqiao", version=version)


@pytest.fixture
def events(transition, silent):
    return [event("ticket.paused", transition), event("ticket.silent", silent)]


def assert_recent_utc(value):
    assert isinstance(value, datetime)
    assert value.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - value) < timedelta(seconds=5)


def stamped(envelopes, at):
    return [{**e.to_wire(), STAGED: at} for e in envelopes]


def test_outbox_field_names():
    assert (OUTBOX, SINCE, STAGED) == ("_outbox", "_outbox_since", "_staged")


def test_staged_gives_the_wire_form_of_each_event_stamped_with_its_staging(events):
    at = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
    assert staged(events, at) == stamped(events, at)
    assert_recent_utc(staged(events)[0][STAGED])


def test_what_is_published_is_the_wire_form_without_the_stamp(events):
    entry = staged(events)[0]
    outgoing = _outgoing(entry)
    assert outgoing.body == events[0].to_wire()
    assert Envelope.from_wire(outgoing.body) == events[0]
    assert STAGED in entry  # the stored entry keeps it


def test_with_events_without_events_returns_the_document_unchanged():
    document = {"_id": "T1", "state": "received"}
    assert with_events(document, []) is document
    assert document == {"_id": "T1", "state": "received"}


def test_with_events_adds_the_outbox_and_its_time(events):
    document = {"_id": "T1", "state": "paused"}
    stored = with_events(document, events)
    assert stored["_id"] == "T1" and stored["state"] == "paused"
    assert stored[OUTBOX] == stamped(events, stored[SINCE])
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


def test_push_events_appends_the_outbox_and_moves_the_time_to_this_staging(events):
    update = push_events({"$set": {"state": "paused"}}, events)
    assert update["$set"] == {"state": "paused"}
    assert set(update["$max"]) == {SINCE}
    assert_recent_utc(update["$max"][SINCE])
    assert update["$push"] == {OUTBOX: {"$each": stamped(events, update["$max"][SINCE])}}


def test_push_events_merges_an_existing_push_and_max_without_losing_keys(events):
    due = datetime(2026, 11, 27, tzinfo=UTC)
    original = {
        "$set": {"state": "paused"},
        "$push": {"timeline": {"type": "paused"}},
        "$max": {"last_seen_at": due},
        "$inc": {"version": 1},
    }
    before = copy.deepcopy(original)
    update = push_events(original, events)
    assert update["$push"]["timeline"] == {"type": "paused"}
    assert update["$push"][OUTBOX] == {"$each": stamped(events, update["$max"][SINCE])}
    assert update["$max"]["last_seen_at"] == due
    assert SINCE in update["$max"]
    assert update["$set"] == {"state": "paused"} and update["$inc"] == {"version": 1}
    assert original == before  # the given update is not changed in place


def test_push_events_rejects_an_invalid_event(transition):
    with pytest.raises(MalformedEvent):
        push_events({"$set": {}}, [event("ticket.paused", {**transition, "attached_residents": "r1"})])


def test_the_relay_remembers_what_it_published_for_a_while_and_records_each_id_once():
    from kernel.outbox import Outbox

    relay = Outbox(collections=[])
    relay._note_published(["a", "b"])
    relay._note_published(["b", "c"])  # a second publish of b (a sweep beside a flush)
    assert relay._unrecorded == ["a", "b", "c"]
    assert all(relay.published(event_id) for event_id in "abc")

    first_seen = relay._confirmed[0][0]
    relay._forget(before=first_seen)  # nothing older than the oldest
    assert relay.published("a")
    relay._forget(before=float("inf"))
    assert not any(relay.published(event_id) for event_id in "abc") and not relay._confirmed

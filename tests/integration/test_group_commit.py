"""Group commit against the real SecantusDB: inserts, timeline entries and outbox settles."""

from __future__ import annotations

import uuid

import eventlet
import pytest
from pymongo.errors import DuplicateKeyError

from kernel.groupcommit import GroupCommitter, Writes, insert_each
from kernel.outbox import OUTBOX, SINCE, _settle, push_events, with_events
from services.tickets.repository import record_echoes
from tests.support.events import ticket_received

pytestmark = pytest.mark.integration


@pytest.fixture
def collection(mongo_client):
    collection = mongo_client["groupcommit"][f"c{uuid.uuid4().hex[:8]}"]
    yield collection
    collection.drop()


@pytest.fixture
def writes():
    committer = GroupCommitter()
    yield Writes(committer)
    committer.stop()


def test_concurrent_inserts_are_written_and_a_duplicate_fails_only_its_own_writer(collection, writes):
    collection.insert_one({"_id": "taken"})

    def insert(document_id):
        try:
            writes.insert(collection, {"_id": document_id})
            return "ok"
        except DuplicateKeyError:
            return "duplicate"

    ids = [f"d{i}" for i in range(20)] + ["taken", "d3"]
    outcomes = list(eventlet.GreenPool().imap(insert, ids))
    assert outcomes.count("duplicate") == 2 and outcomes[20] == "duplicate"
    assert sorted(collection.distinct("_id")) == sorted({*ids})


def test_insert_each_maps_each_failure_to_its_document(collection):
    collection.insert_one({"_id": "taken"})
    outcomes = insert_each(collection)([{"_id": "a"}, {"_id": "taken"}, {"_id": "b"}, {"_id": "a"}])
    assert [type(outcome).__name__ for outcome in outcomes] == ["NoneType", "DuplicateKeyError", "NoneType",
                                                                "DuplicateKeyError"]
    assert outcomes[1].details["keyValue"] == {"_id": "taken"}


def test_timeline_entries_are_added_once_to_their_own_ticket(collection):
    collection.insert_many([
        {"_id": "a", "community": "xingqiao", "version": 3, "timeline": [{"event_id": "old"}]},
        {"_id": "b", "community": "xingqiao", "version": 1},
        {"_id": "c", "community": "elsewhere", "version": 1, "timeline": []},
    ])
    run = record_echoes(collection)
    items = [
        ("xingqiao", "a", {"event_id": "old", "note": "already there"}, ()),
        ("xingqiao", "a", {"event_id": "e1", "reason": "$not a field path"}, ()),
        ("xingqiao", "a", {"event_id": "e1", "reason": "a redelivery in the same batch"}, ()),
        ("xingqiao", "b", {"event_id": "e2"}, ()),
        ("xingqiao", "c", {"event_id": "e3"}, ()),  # another community's ticket: untouched
    ]
    assert run(items) == [None] * 5
    tickets = {document["_id"]: document for document in collection.find()}
    assert tickets["a"]["timeline"] == [{"event_id": "old"}, {"event_id": "e1", "reason": "$not a field path"}]
    assert tickets["a"]["version"] == 4
    assert tickets["b"]["timeline"] == [{"event_id": "e2"}] and tickets["b"]["version"] == 2
    assert tickets["c"]["timeline"] == [] and tickets["c"]["version"] == 1
    run([("xingqiao", "b", {"event_id": "e2"}, ())])  # a redelivery later: no second entry, no version move
    again = collection.find_one({"_id": "b"})
    assert again["timeline"] == [{"event_id": "e2"}] and again["version"] == 2


def test_a_timeline_entry_settles_the_published_events_handed_over_with_it(collection):
    published, unpublished, other = (ticket_received(ticket_id="t") for _ in range(3))
    collection.insert_one(with_events({"_id": "t", "community": "xingqiao", "version": 1},
                                      [published, unpublished]))
    collection.insert_one(with_events({"_id": "u", "community": "xingqiao", "version": 1}, [other]))
    run = record_echoes(collection)
    run([("xingqiao", "t", {"event_id": "echo-1"}, (published.event_id,)),
         ("xingqiao", "u", {"event_id": "echo-2"}, (other.event_id,))])
    ticket = collection.find_one({"_id": "t"})
    assert [event["event_id"] for event in ticket[OUTBOX]] == [unpublished.event_id]
    assert SINCE in ticket and ticket["timeline"] == [{"event_id": "echo-1"}]
    settled = collection.find_one({"_id": "u"})
    assert settled[OUTBOX] == [] and SINCE not in settled


def test_settle_removes_only_the_published_events_in_chunks(collection):
    published = [ticket_received(ticket_id=f"t{i}") for i in range(120)]
    collection.insert_many([with_events({"_id": f"t{i}"}, [event]) for i, event in enumerate(published)])
    later = ticket_received(ticket_id="t7")  # written after the publish, before the settle
    collection.update_one({"_id": "t7"}, push_events({"$set": {"state": "x"}}, [later]))

    _settle(collection, [(f"t{i}", [event.event_id]) for i, event in enumerate(published)])

    assert collection.count_documents({SINCE: {"$exists": True}}) == 1
    left = collection.find_one({"_id": "t7"})
    assert [event["event_id"] for event in left[OUTBOX]] == [later.event_id]
    assert collection.count_documents({OUTBOX: {"$size": 0}}) == 119

"""Group commit against the real SecantusDB: inserts, and the tickets' side entries written through it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import eventlet
import pytest
from pymongo.errors import DuplicateKeyError

from kernel.groupcommit import GroupCommit, insert_each
from services.tickets.catalogue import Service
from services.tickets.domain import Actor, Ticket
from services.tickets.repository import TicketRepository, ticket_id_for

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
LEAK = Service("roof_leak", "房屋漏水", "屋顶漏水", "房屋设施", "urgent")
SECRETARY = Actor("s-1", "secretary")


@pytest.fixture
def collection(mongo_client):
    collection = mongo_client["groupcommit"][f"c{uuid.uuid4().hex[:8]}"]
    yield collection
    collection.drop()


@pytest.fixture
def writes():
    queues = GroupCommit()
    yield queues
    queues.stop()


@pytest.fixture
def tickets(mongo_client, writes):
    """The tickets repository on a database of its own, with the indexes the service makes."""
    name = f"groupcommit_{uuid.uuid4().hex[:8]}"
    TicketRepository.ensure_indexes(mongo_client[name])
    yield TicketRepository(mongo_client[name], writes)
    mongo_client.drop_database(name)


def at(minutes: float) -> datetime:
    return NOW + timedelta(minutes=minutes)


def stored_ticket(tickets: TicketRepository, ticket_id: str = "T1", request_key: str | None = None) -> Ticket:
    ticket = Ticket.receive(ticket_id, "xingqiao", LEAK, "卫生间漏水", "3-2-401", "r-1", "resident", NOW)
    ticket.pull_events()
    assert tickets.add(ticket, [], request_key) is ticket
    return ticket


def step(event_id: str, minutes: float, kind: str = "volunteer.accepted", **extra) -> dict:
    """A side entry as the tickets service builds it from a volunteer's task step (timeline.volunteer_entry)."""
    return {"type": kind, "at": at(minutes), "event_id": event_id, "volunteer": "v-1", "task_id": "a-1",
            "summary": "v-1", **extra}


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




def test_a_side_entry_is_recorded_once_however_often_it_is_delivered(tickets):
    stored_ticket(tickets)
    before = tickets.collection.find_one({"_id": "T1"})
    entry = step("e1", 1, "volunteer.declined", reason="$busy")  # a "$" text is stored as it is

    list(eventlet.GreenPool().imap(lambda _: tickets.record_entry("xingqiao", "T1", entry), range(3)))
    tickets.record_entry("xingqiao", "T1", entry)  # redelivered later: no error, no second record

    assert list(tickets.side_entries.find()) == [{"_id": "e1", "community": "xingqiao", "ticket_id": "T1", **entry}]
    assert tickets.collection.find_one({"_id": "T1"}) == before  # the ticket itself is not written
    assert [e["event_id"] for e in tickets.get("xingqiao", "T1").history if e["type"] == "volunteer.declined"] == [
        "e1"]


def test_a_ticket_shows_its_side_entries_on_its_timeline_in_time_order(tickets):
    ticket = stored_ticket(tickets)
    ticket.dispatch({"kind": "worker", "id": "w-1"}, at(2), SECRETARY)
    tickets.save(ticket, 1, [])
    keyed = stored_ticket(tickets, ticket_id_for("xingqiao", "r-1", "k-1"), request_key="k-1")
    tickets.record_entry("xingqiao", "T1", step("late", 3, "volunteer.checked_out"))  # recorded out of order
    tickets.record_entry("xingqiao", "T1", step("tie", 2, "volunteer.declined", reason="busy"))
    tickets.record_entry("xingqiao", "T1", step("early", 1, "volunteer.offered"))
    tickets.record_entry("xingqiao", keyed.id, step("keyed", 1))
    tickets.record_entry("elsewhere", "T1", step("other-community", 1))  # not this ticket's

    def shown(found: Ticket) -> list[tuple[str, str | None]]:
        return [(entry["type"], entry.get("event_id")) for entry in found.history]

    got = tickets.get("xingqiao", "T1")
    assert shown(got) == [("ticket.received", None), ("volunteer.offered", "early"), ("ticket.dispatched", None),
                          ("volunteer.declined", "tie"), ("volunteer.checked_out", "late")]  # a tie: after
    assert got.history[3]["reason"] == "busy" and got.history[3]["at"] == at(2)
    assert [entry["type"] for entry in got.timeline] == ["ticket.received", "ticket.dispatched"]
    assert got.echoes == []  # notify's: the service asks for them when it shows the ticket
    assert {found.id: shown(found) for found in tickets.of_resident("xingqiao", "r-1")} == {
        "T1": shown(got), keyed.id: [("ticket.received", None), ("volunteer.accepted", "keyed")]}
    assert shown(tickets.by_request_key("xingqiao", "r-1", "k-1")) == shown(tickets.get("xingqiao", keyed.id))
    assert tickets.get("elsewhere", "T1") is None and tickets.of_resident("xingqiao", "r-9") == []


def test_a_transition_saved_after_a_side_entry_keeps_it_visible_and_out_of_the_ticket_document(tickets):
    stored_ticket(tickets)
    before_the_entry = tickets.get("xingqiao", "T1")
    tickets.record_entry("xingqiao", "T1", step("e1", 1))

    # Read before the entry was recorded: the save does not conflict (the entry moved no version) ...
    before_the_entry.dispatch({"kind": "worker", "id": "w-1"}, at(2), SECRETARY)
    tickets.save(before_the_entry, 1, [])
    # ... and one read after it neither copies the entry into the document nor loses it.
    after_the_entry = tickets.get("xingqiao", "T1")
    after_the_entry.accept(at(3), SECRETARY)
    tickets.save(after_the_entry, 2, [])

    document = tickets.collection.find_one({"_id": "T1"})
    assert [entry["type"] for entry in document["timeline"]] == ["ticket.received", "ticket.dispatched",
                                                                 "ticket.accepted"]
    assert "side_entries" not in document and "echoes" not in document and document["version"] == 3
    assert [entry["type"] for entry in tickets.get("xingqiao", "T1").history] == [
        "ticket.received", "volunteer.accepted", "ticket.dispatched", "ticket.accepted"]


def test_side_entries_have_one_secondary_index_on_the_ticket_id(tickets):
    indexes = tickets.side_entries.index_information()
    assert sorted(indexes) == ["_id_", "by_ticket"]
    assert indexes["by_ticket"]["key"] == [("ticket_id", 1)]


def test_a_database_with_echo_copies_keeps_its_volunteer_steps_and_loses_the_copies(mongo_client, writes):
    """Before notify answered for echoes, tickets copied each outcome into ``echoes`` beside the volunteer steps:
    the service's start moves the steps to ``side_entries`` and drops the copies (they name residents)."""
    name = f"groupcommit_{uuid.uuid4().hex[:8]}"
    db = mongo_client[name]
    try:
        copy = {"_id": "o1", "community": "xingqiao", "ticket_id": "T1", "type": "echo.delivered", "at": at(1),
                "event_id": "o1", "channel": "inbox", "recipient": "r-1", "source_event_type": "ticket.received"}
        kept = {"_id": "v1", "community": "xingqiao", "ticket_id": "T1", **step("v1", 2)}
        db.echoes.insert_many([copy, kept])
        db.side_entries.insert_one(dict(kept))  # a peer moved it already: no error, one copy
        TicketRepository.ensure_indexes(db)
        TicketRepository.ensure_indexes(db)  # a second start has nothing to do
        assert "echoes" not in db.list_collection_names()
        assert list(db.side_entries.find()) == [kept]
        tickets = TicketRepository(db, writes)
        stored_ticket(tickets)
        assert [entry["type"] for entry in tickets.get("xingqiao", "T1").history] == [
            "ticket.received", "volunteer.accepted"]
    finally:
        mongo_client.drop_database(name)

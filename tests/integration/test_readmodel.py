"""The reports' read model folded in batches on the real database: equal to a full aggregation, whatever the batching.

Tickets come from the benchmark's generator (every state, callbacks, reopenings). They are folded in
batches that repeat tickets, by two threads at once over overlapping batches, then changed and folded
again: the counters must equal a full aggregation of the tickets each time. The projection folds the
tickets the change stream names, once, and resumes after a crash without counting twice.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta

import pytest
from pymongo import MongoClient, monitoring
from pymongo.errors import PyMongoError

from bench.reports import ticket_documents
from kernel.envelope import utcnow
from services.tickets.projection import CHECKPOINT, ReportStream
from services.tickets.readmodel import COUNTERS, FACT_FIELDS, FACTS, ReadModel, facts_of, transaction
from services.tickets.repository import COLLECTION

pytestmark = pytest.mark.integration

COMMUNITY = "xingqiao"


@pytest.fixture
def db(mongo_client, request):
    database = mongo_client[f"readmodel_{abs(hash(request.node.name)) % 10**8}"]
    yield database
    mongo_client.drop_database(database.name)


def full_aggregation(db, now):
    return facts_of(db[COLLECTION].find({}, FACT_FIELDS), now)


def test_a_batch_folds_each_ticket_once_and_the_counters_equal_a_full_aggregation(db):
    now = utcnow()
    tickets = list(ticket_documents(60, now))
    db[COLLECTION].insert_many(tickets)
    model = ReadModel(db)
    ids = [ticket["_id"] for ticket in tickets]

    first = model.apply_many([(COMMUNITY, ticket_id, now) for ticket_id in ids[:40] + ids[:10]])
    assert len(first) == 50 and all(first[:40]) and first[40:] == first[:10]  # one fold per ticket, reported twice
    model.apply_many([(COMMUNITY, ticket_id, now) for ticket_id in ids[30:]])
    assert model.as_facts() == full_aggregation(db, now)
    assert db[FACTS].count_documents({}) == 60

    # Redelivered: nothing changes.
    assert model.apply_many([(COMMUNITY, ids[0], now), (COMMUNITY, ids[1], now)]) == [{}, {}]
    assert model.as_facts() == full_aggregation(db, now)


def test_two_folders_at_once_over_overlapping_batches_count_every_change_once(db):
    now = utcnow()
    tickets = list(ticket_documents(80, now, seed=11))
    db[COLLECTION].insert_many(tickets)
    ids = [ticket["_id"] for ticket in tickets]
    errors: list[BaseException] = []

    def fold(batch: list[str]) -> None:
        try:
            model = ReadModel(db)
            for start in range(0, len(batch), 7):
                model.apply_many([(COMMUNITY, ticket_id, now) for ticket_id in batch[start:start + 7]])
        except BaseException as error:  # shown by the assertion below, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=fold, args=(ids[:60],)), threading.Thread(target=fold, args=(ids[20:][::-1],))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert ReadModel(db).as_facts() == full_aggregation(db, now)

    # The tickets change (a reopening, a ticket erased); folding them again moves the counters with them.
    db[COLLECTION].update_one({"_id": ids[3]}, {"$set": {"state": "reopened"},
                                                "$push": {"timeline": {"type": "ticket.reopened", "at": now}}})
    db[COLLECTION].delete_one({"_id": ids[4]})
    later = now + timedelta(seconds=1)
    ReadModel(db).apply_many([(COMMUNITY, ids[3], later), (COMMUNITY, ids[4], later)])
    assert ReadModel(db).as_facts() == full_aggregation(db, later)
    assert db[COUNTERS].count_documents({}) > 0


def test_the_projection_folds_what_committed_once_resumes_after_a_crash_and_one_process_folds_at_a_time(db):
    now = utcnow()
    tickets = list(ticket_documents(40, now, seed=5))
    tickets[2]["created_at"] = "not a time"  # a ticket whose facts cannot be computed: left out, said in the log
    model = ReadModel(db)
    first = ReportStream("first")
    assert first.fold(db, model, now) == 0  # opens the stream (nothing committed yet)
    db[COLLECTION].insert_many(tickets)

    def fold_all(stream: ReportStream) -> int:
        total = 0
        for _ in range(50):
            read = stream.fold(db, model, now, limit=15)
            total += read
            if not read and total:
                return total
        return total

    assert fold_all(first) == 40
    good = [ticket for index, ticket in enumerate(tickets) if index != 2]
    assert model.as_facts() == facts_of(good, now)

    # Another process does nothing while the lease is held.
    second = ReportStream("second")
    assert second.fold(db, model, now) == 0

    # A later write is folded; a process that died before storing its position is taken over, and what it
    # read again is folded again without counting twice.
    reopened = {"$set": {"state": "reopened"}, "$push": {"timeline": {"type": "ticket.reopened", "at": now}}}
    db[COLLECTION].update_one({"_id": tickets[5]["_id"]}, reopened)
    stored = db[CHECKPOINT].find_one({"_id": "tickets"})["token"]
    assert fold_all(first) == 1
    db[CHECKPOINT].update_one({"_id": "tickets"}, {"$set": {"token": stored, "until": 0}})  # crashed, lease lapsed
    assert fold_all(second) == 1 and first.fold(db, model, now) == 0
    expected = facts_of(db[COLLECTION].find({"_id": {"$ne": tickets[2]["_id"]}}, FACT_FIELDS), now)
    assert model.as_facts() == expected


def test_a_first_start_folds_the_tickets_of_every_community_changed_lately_then_follows_the_stream(db):
    now = utcnow()
    here = list(ticket_documents(12, now, seed=3))
    there = [{**ticket, "_id": f"other-{ticket['_id']}"} for ticket in ticket_documents(8, now, seed=4,
                                                                                     community="other")]
    for ticket in here + there:
        ticket["updated_at"] = now  # changed within the look-back: the fallback must find each
    db[COLLECTION].insert_many(here + there)
    model = ReadModel(db)

    assert ReportStream("first").fold(db, model, now) == 0  # no stored position: the fallback folded them
    assert model.as_facts() == full_aggregation(db, now)
    assert {fact["community"] for fact in db[FACTS].find({}, {"community": 1})} == {COMMUNITY, "other"}



class Finishes(monitoring.CommandListener):
    """The ``abortTransaction`` and ``commitTransaction`` commands the server answered."""

    def __init__(self) -> None:
        self.answered: list[str] = []

    def started(self, event) -> None:
        pass

    def succeeded(self, event) -> None:
        if event.command_name in ("abortTransaction", "commitTransaction"):
            self.answered.append(event.command_name)

    def failed(self, event) -> None:
        pass


def test_a_fold_that_runs_out_of_time_ends_its_transaction_on_the_server(mongo_uri):
    """A transaction given up on at its deadline is aborted on the server there and then. pymongo's own abort
    goes under the expired deadline and never leaves, and the server would keep the transaction, its
    writes' locks and its snapshot until its 60 s limit (MongoDB's ``transactionLifetimeLimitSeconds``)."""
    finishes = Finishes()
    client = MongoClient(mongo_uri, event_listeners=[finishes])
    db = client[f"readmodel_deadline_{os.getpid()}"]
    try:
        db[COUNTERS].insert_one({"_id": "hot", "n": 0})

        def slow(session) -> None:
            db[COUNTERS].update_one({"_id": "hot"}, {"$inc": {"n": 1}}, session=session)
            time.sleep(0.6)  # past the deadline: the commit is never sent
            db[COUNTERS].update_one({"_id": "hot"}, {"$inc": {"n": 1}}, session=session)

        with pytest.raises(PyMongoError):
            transaction(db, slow, seconds=0.3)
        assert finishes.answered == ["abortTransaction"]
        transaction(db, lambda session: db[COUNTERS].update_one({"_id": "hot"}, {"$inc": {"n": 10}},
                                                                session=session), seconds=5)
        assert finishes.answered == ["abortTransaction", "commitTransaction"]
        assert db[COUNTERS].find_one({"_id": "hot"})["n"] == 10  # the abandoned one's write never counted
    finally:
        client.drop_database(db.name)
        client.close()

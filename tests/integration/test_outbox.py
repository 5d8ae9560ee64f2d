"""The outbox relay on the real broker and database: published right after the write, and otherwise
found in commit order from the change stream, whatever the write's latency or its writer's clock.

The relay never writes a document again: what the broker confirmed goes into the ledger,
and each collection's resume point moves past what is published.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import replace
from datetime import timedelta

import eventlet
import pytest
from nameko.testing.services import dummy, entrypoint_hook

from kernel.events import validate_incoming
from kernel.ledger import (
    CHECKPOINTS,
    STREAM_POINT,
    ResumePointLost,
    next_changes,
    open_stream,
    outbox_pipeline,
    published_among,
    record_published,
    resume_point,
    unpublished,
)
from kernel.mongo import Mongo, connect
from kernel.outbox import OUTBOX, SINCE, STAGED, Outbox, push_events, with_events
from tests.conftest import free_port, secantus_executable, wait_for_mongo
from tests.support.broker import depth, drain
from tests.support.events import ticket_received
from tests.support.proxy import TcpProxy

pytestmark = pytest.mark.integration
QUEUE = "huisheng.notify.ticket_events"


def received(ticket_id: str | None = None):
    """A ``ticket.received`` at the catalogue's current version."""
    return validate_incoming(ticket_received(ticket_id))


class Writer:
    """A service that saves a document with an event, as a repository does."""

    name = "tickets"
    db = Mongo()
    outbox = Outbox(collections=["things"])

    @dummy
    def save(self, event_wire: dict):
        from kernel.envelope import Envelope

        event = Envelope.from_wire(event_wire)
        self.db.things.insert_one(with_events({"_id": event.payload["ticket_id"]}, [event]))
        self.outbox.flush_soon("things", event.payload["ticket_id"])


def relay_of(container) -> Outbox:
    [relay] = [ext for ext in container.extensions if isinstance(ext, Outbox)]
    return relay


def published_ids(settings) -> list[str]:
    return [body["event_id"] for body, _ in drain(settings.amqp_uri, QUEUE, limit=5000)]


def resumed_past(db, name: str = "things") -> bool:
    """True once nothing is unpublished: after the stored resume point, or since the scan's bound."""
    return unpublished(db, name) == []


def tailing(container) -> bool:
    """True once the relay has its database's change stream open."""
    return relay_of(container)._tail.stream is not None


@pytest.fixture
def scanned(monkeypatch):
    """``scanned(container)``: True once its relay's first start has scanned its collections. A write made
    between the stream's opening and the end of that scan is in both (published twice, as at-least-once
    allows): a test of the stream alone, or of publishing once, writes after it."""
    relays: set[int] = set()
    fall_back = Outbox._fall_back

    def recorded(self, *args, **kwargs):
        fall_back(self, *args, **kwargs)
        relays.add(id(self))

    monkeypatch.setattr(Outbox, "_fall_back", recorded)
    return lambda container: id(relay_of(container)) in relays


def saved_point(db) -> dict | None:
    point = resume_point(db, STREAM_POINT)
    return point if point and point.get("token") else None


def test_an_event_saved_while_the_broker_is_down_is_published_when_it_is_back(
        container_factory, settings, mongo_client, wait_until, request):
    proxy = TcpProxy.before_broker(settings.amqp_uri)
    request.addfinalizer(proxy.stop)
    cut_off = replace(settings, amqp_uri=proxy.amqp_uri(settings.amqp_uri))
    container = container_factory(Writer, cut_off.nameko_config())
    container.start()
    things = mongo_client[settings.database_name("tickets")].things
    proxy.cut()

    event = received()
    with entrypoint_hook(container, "save") as save:
        save(event.to_wire())

    stored = things.find_one({"_id": event.payload["ticket_id"]})
    assert [e["event_id"] for e in stored[OUTBOX]] == [event.event_id]  # the write did not wait for the broker
    eventlet.sleep(1.0)  # several rounds of the relay while the broker is unreachable
    assert depth(settings.amqp_uri, QUEUE) == 0
    assert [d["_id"] for d in unpublished(things.database, "things")] == [event.payload["ticket_id"]]

    proxy.restore()
    wait_until(lambda: depth(settings.amqp_uri, QUEUE) >= 1, timeout=15)
    assert set(published_ids(settings)) == {event.event_id}
    database = things.database
    wait_until(lambda: unpublished(database, "things") == [] and published_among(database, [event.event_id]))
    assert things.find_one({"_id": event.payload["ticket_id"]}) == stored  # never written again


def test_an_event_is_published_right_after_its_write(container_factory, settings, wait_until):
    container = container_factory(Writer, settings.nameko_config())
    container.start()
    event = received()

    with entrypoint_hook(container, "save") as save:
        save(event.to_wire())

    wait_until(lambda: depth(settings.amqp_uri, QUEUE) >= 1, timeout=2)
    bodies = [body for body, _ in drain(settings.amqp_uri, QUEUE)]
    assert bodies and all(body == event.to_wire() for body in bodies)  # at least once (a copy is deduped)


def test_an_event_nobody_listens_to_lands_in_the_unrouted_queue(container_factory, settings, wait_until):
    from kernel.envelope import Envelope

    container = container_factory(Writer, settings.nameko_config())
    container.start()
    event = Envelope.new("ticket.escalated", {"ticket_id": "t-unheard", "state": "received",
                                              "attached_residents": []}, community="xingqiao")

    with entrypoint_hook(container, "save") as save:
        save(event.to_wire())

    wait_until(lambda: depth(settings.amqp_uri, "huisheng.unrouted") == 1, timeout=5)


def test_a_published_event_goes_to_the_ledger_and_its_document_is_not_written_again(
        container_factory, settings, mongo_client, wait_until):
    container = container_factory(Writer, settings.nameko_config())
    container.start()
    things = mongo_client[settings.database_name("tickets")].things
    event = received()

    with entrypoint_hook(container, "save") as save:
        save(event.to_wire())

    wait_until(lambda: published_among(things.database, [event.event_id]) == {event.event_id}, timeout=5)
    stored = things.find_one({"_id": event.payload["ticket_id"]})
    wait_until(lambda: resumed_past(things.database), timeout=5)
    eventlet.sleep(0.8)  # more rounds pass over it, past the grace delay
    assert depth(settings.amqp_uri, QUEUE) == 1  # published once: the stream found it in the relay's memory
    assert things.find_one({"_id": event.payload["ticket_id"]}) == stored


def test_the_first_start_publishes_what_neither_this_relay_nor_the_ledger_knows(
        container_factory, settings, mongo_client, wait_until):
    things = mongo_client[settings.database_name("tickets")].things
    by_another_relay, lost_in_a_crash = received(), received()
    for event in (by_another_relay, lost_in_a_crash):  # written, then the writer died before its flush
        things.insert_one(with_events({"_id": event.payload["ticket_id"]}, [event]))
    record_published(things.database, [by_another_relay.event_id])  # another instance published this one

    container = container_factory(Writer, settings.nameko_config())
    container.start()

    wait_until(lambda: depth(settings.amqp_uri, QUEUE) >= 1, timeout=5)
    wait_until(lambda: resumed_past(things.database), timeout=5)
    eventlet.sleep(0.5)
    assert set(published_ids(settings)) == {lost_in_a_crash.event_id}  # at least once; not the other one


def test_a_later_event_of_a_document_is_published_without_its_earlier_ones(
        container_factory, settings, mongo_client, wait_until):
    things = mongo_client[settings.database_name("tickets")].things
    first = received()
    document_id = first.payload["ticket_id"]
    second = received(document_id)
    container = container_factory(Writer, settings.nameko_config())
    container.start()
    with entrypoint_hook(container, "save") as save:
        save(first.to_wire())
    wait_until(lambda: resumed_past(things.database), timeout=5)
    drain(settings.amqp_uri, QUEUE)

    # A later change to the same document, its event written and never flushed (its writer died).
    things.update_one({"_id": document_id}, push_events({"$set": {"state": "x"}}, [second]))

    wait_until(lambda: depth(settings.amqp_uri, QUEUE) >= 1, timeout=5)
    eventlet.sleep(0.5)
    assert set(published_ids(settings)) == {second.event_id}  # at least once, the earlier one not again
    assert [e["event_id"] for e in things.find_one({"_id": document_id})[OUTBOX]] == [
        first.event_id, second.event_id]  # the document keeps what it emitted


def test_a_write_committed_long_after_its_staging_while_the_broker_was_away_is_published(
        container_factory, settings, mongo_client, wait_until, request):
    """The case a clock-based checkpoint missed: staged at t, applied at t + 3 s (ten grace delays),
    and its writer's own publish failed. The stream sees it when it commits."""
    broker, database = TcpProxy.before(settings.amqp_uri), TcpProxy.before(settings.mongo_uri)
    request.addfinalizer(broker.stop)
    request.addfinalizer(database.stop)
    behind = replace(settings, amqp_uri=broker.amqp_uri(settings.amqp_uri),
                     mongo_uri=database.mongo_uri(settings.mongo_uri))
    container = container_factory(Writer, behind.nameko_config())
    request.addfinalizer(container.kill)  # before the proxies stop: closing through a cut one waits 5 s
    container.start()
    things = mongo_client[settings.database_name("tickets")].things
    wait_until(lambda: tailing(container), timeout=5)
    event = received()

    broker.cut()
    database.hold()
    def write() -> None:
        with entrypoint_hook(container, "save") as save:
            save(event.to_wire())

    writing = eventlet.spawn(write)
    eventlet.sleep(3.0)
    assert things.find_one({"_id": event.payload["ticket_id"]}) is None  # not applied yet
    database.release()
    writing.wait()
    stored = things.find_one({"_id": event.payload["ticket_id"]})
    assert stored is not None
    eventlet.sleep(1.0)  # the flush failed; the relay holds the change, its broker away
    assert depth(settings.amqp_uri, QUEUE) == 0

    broker.restore()
    wait_until(lambda: depth(settings.amqp_uri, QUEUE) >= 1, timeout=15)
    assert set(published_ids(settings)) == {event.event_id}
    wait_until(lambda: resumed_past(things.database), timeout=10)
    point = wait_until(lambda: saved_point(things.database), timeout=5)
    assert point["at"].as_datetime() - stored[SINCE] > timedelta(seconds=2)  # committed late (a 1 s clock)


def test_a_restarted_relay_resumes_from_its_stored_point(container_factory, settings, mongo_client, wait_until):
    things = mongo_client[settings.database_name("tickets")].things
    container = container_factory(Writer, settings.nameko_config())
    container.start()
    # A write before the stream opens is found by the first start's scan, but on SecantusDB only a change read
    # from the stream gives a token to store (StreamReading.idle_positions): there would be no point to resume.
    wait_until(lambda: tailing(container), timeout=5)
    before = received()
    with entrypoint_hook(container, "save") as save:
        save(before.to_wire())
    wait_until(lambda: resumed_past(things.database) and saved_point(things.database), timeout=5)
    container.stop()
    assert published_ids(settings) == [before.event_id]

    while_down = [received() for _ in range(3)]  # written while no relay runs, never flushed
    for event in while_down:
        things.insert_one(with_events({"_id": event.payload["ticket_id"]}, [event]))
    assert {d["_id"] for d in unpublished(things.database, "things")} == {e.payload["ticket_id"] for e in while_down}

    restarted = container_factory(Writer, settings.nameko_config())
    restarted.start()
    wait_until(lambda: depth(settings.amqp_uri, QUEUE) >= 3, timeout=5)
    wait_until(lambda: resumed_past(things.database), timeout=5)
    eventlet.sleep(0.5)
    assert set(published_ids(settings)) == {e.event_id for e in while_down}  # at least once; not `before` again
    assert relay_of(restarted).fallbacks == 0


def test_two_relays_publish_everything_one_of_them_cannot(
        container_factory, settings, mongo_client, wait_until, request):
    proxy = TcpProxy.before_broker(settings.amqp_uri)
    request.addfinalizer(proxy.stop)
    healthy = container_factory(Writer, settings.nameko_config())
    cut_off = container_factory(Writer, replace(settings, amqp_uri=proxy.amqp_uri(settings.amqp_uri)).nameko_config())
    healthy.start()
    cut_off.start()
    things = mongo_client[settings.database_name("tickets")].things
    proxy.cut()

    events = [received() for _ in range(20)]
    with entrypoint_hook(cut_off, "save") as save:  # the instance whose broker is away writes them all
        for event in events:
            save(event.to_wire())

    wait_until(lambda: depth(settings.amqp_uri, QUEUE) >= len(events), timeout=10)
    wait_until(lambda: resumed_past(things.database), timeout=10)
    published = published_ids(settings)
    assert set(published) == {e.event_id for e in events}  # all of them, by the other instance's stream
    assert relay_of(healthy).published(events[-1].event_id)


def test_a_backlog_larger_than_a_batch_and_the_memory_is_published_once(
        container_factory, settings, mongo_client, wait_until, monkeypatch, request, scanned):
    import kernel.outbox

    monkeypatch.setattr(kernel.outbox, "SWEEP_BATCH", 20)
    monkeypatch.setattr(kernel.outbox, "MAX_PENDING", 50)
    proxy = TcpProxy.before_broker(settings.amqp_uri)
    request.addfinalizer(proxy.stop)
    container = container_factory(Writer, replace(settings, amqp_uri=proxy.amqp_uri(settings.amqp_uri)).nameko_config())
    container.start()
    things = mongo_client[settings.database_name("tickets")].things
    wait_until(lambda: scanned(container), timeout=5)
    proxy.cut()
    events = [received() for _ in range(160)]
    things.insert_many([with_events({"_id": e.payload["ticket_id"]}, [e]) for e in events])  # never flushed
    eventlet.sleep(1.0)

    proxy.restore()
    wait_until(lambda: resumed_past(things.database), timeout=60)
    assert sorted(published_ids(settings)) == sorted(e.event_id for e in events)  # every one, once


@pytest.fixture
def short_oplog_uri():
    """A SecantusDB of this test's own whose oplog keeps 50 entries (SecantusDB's 100,000, scaled down)."""
    port = free_port()
    server = subprocess.Popen([secantus_executable(), "--host", "127.0.0.1", "--port", str(port), "--storage-path",
                               ":memory:", "--log-level", "WARNING", "--oplog-max-entries", "50"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"mongodb://127.0.0.1:{port}/?retryWrites=false&directConnection=true"
    wait_for_mongo(uri)
    yield uri
    server.kill()  # in memory, and nothing checks its stop: a graceful one takes seconds
    server.wait(10)


def test_a_lost_resume_point_falls_back_to_a_scan_that_misses_nothing(
        container_factory, settings, short_oplog_uri, wait_until, request):
    settings = replace(settings, mongo_uri=short_oplog_uri)
    client = connect(short_oplog_uri)
    things = client[settings.database_name("tickets")].things
    container = container_factory(Writer, settings.nameko_config())
    container.start()
    # A write before the stream opens is found by the first start's scan, and a point is only stored once
    # the stream itself has read a change: write after it opened.
    wait_until(lambda: tailing(container), timeout=5)
    first = received()
    with entrypoint_hook(container, "save") as save:
        save(first.to_wire())
    token = wait_until(lambda: saved_point(things.database), timeout=5)["token"]
    container.stop()
    drain(settings.amqp_uri, QUEUE)

    late = received()  # staged ten minutes ago on its writer's clock, committed now, never flushed
    document = with_events({"_id": late.payload["ticket_id"]}, [late])
    document[SINCE] = document[OUTBOX][0][STAGED] = document[SINCE] - timedelta(minutes=10)
    things.insert_one(document)
    deadline = time.monotonic() + 30
    while True:  # a burst elsewhere pushes the point out of the oplog (it is pruned lazily)
        client[settings.database_name("tickets")].other.insert_many([{"n": n} for n in range(100)])
        try:
            with open_stream(things.database, token, pipeline=outbox_pipeline(["things"])) as stream:
                list(next_changes(stream, 1_000_000))
        except ResumePointLost:
            break
        assert time.monotonic() < deadline, "the oplog never dropped the resume point"
        eventlet.sleep(0.3)
    assert [d["_id"] for d in unpublished(things.database, "things")] == [late.payload["ticket_id"]]

    restarted = container_factory(Writer, settings.nameko_config())
    request.addfinalizer(restarted.kill)  # before its server stops: closing its client after that waits 10 s
    restarted.start()
    wait_until(lambda: depth(settings.amqp_uri, QUEUE) >= 1, timeout=10)
    assert set(published_ids(settings)) == {late.event_id}  # at least once
    assert relay_of(restarted).fallbacks == 1
    wait_until(lambda: resumed_past(things.database), timeout=10)
    assert things.database[CHECKPOINTS].count_documents({}) == 1
    client.close()


class TwoCollectionsWriter:
    """A service whose documents of two collections carry events (tickets and patrols, say)."""

    name = "tickets"
    db = Mongo()
    outbox = Outbox(collections=["things", "others"])

    @dummy
    def ready(self) -> None:
        """Nothing: the container only runs the relay."""


def test_one_stream_follows_every_outbox_collection_of_the_database_under_one_resume_point(
        container_factory, settings, mongo_client, wait_until, scanned):
    db = mongo_client[settings.database_name("tickets")]
    container = container_factory(TwoCollectionsWriter, settings.nameko_config())
    container.start()
    wait_until(lambda: scanned(container), timeout=5)
    # written, never flushed (a writer that died after its write): only the stream finds them
    events = {"things": [received() for _ in range(3)], "others": [received() for _ in range(2)]}
    for name, written in events.items():
        for event in written:
            db[name].insert_one(with_events({"_id": event.payload["ticket_id"]}, [event]))
    db.elsewhere.insert_one(with_events({"_id": "not-an-outbox"}, [received()]))  # not one of its collections

    expected = {e.event_id for written in events.values() for e in written}
    published: list[str] = []

    def all_published() -> bool:
        published.extend(published_ids(settings))
        return expected <= set(published)

    # At least once, not exactly once (the platform's guarantee; consumers dedupe): an event may be published
    # twice, whatever found it.
    wait_until(all_published, timeout=15)
    eventlet.sleep(0.5)
    published.extend(published_ids(settings))
    assert set(published) == expected  # every event, nothing of the other collection
    wait_until(lambda: resumed_past(db, "things") and resumed_past(db, "others") and saved_point(db), timeout=10)
    assert [point["_id"] for point in db[CHECKPOINTS].find()] == [STREAM_POINT]

"""The outbox relay: an event saved while the broker is away is published once it is back.

The relay never writes a document again: what the broker confirmed goes into the
ledger, and the sweep moves each collection's checkpoint past what it published.
"""

from __future__ import annotations

import eventlet
import pytest
from nameko.testing.services import dummy, entrypoint_hook

from kernel.config import Settings
from kernel.ledger import checkpoint, published_among, record_published, unpublished
from kernel.mongo import Mongo
from kernel.outbox import OUTBOX, SINCE, STAGED, Outbox, push_events, with_events
from tests.support.broker import depth, drain
from tests.support.events import ticket_received
from tests.support.proxy import TcpProxy

pytestmark = pytest.mark.integration
QUEUE = "huisheng.notify.ticket_events"


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


def test_an_event_saved_while_the_broker_is_down_is_published_when_it_is_back(
        container_factory, settings, mongo_client, wait_until, request):
    proxy = TcpProxy.before_broker(settings.amqp_uri)
    request.addfinalizer(proxy.stop)
    cut_off = Settings(**{**settings.__dict__, "amqp_uri": proxy.amqp_uri(settings.amqp_uri)})
    container = container_factory(Writer, cut_off.nameko_config())
    container.start()
    things = mongo_client[settings.database_name("tickets")].things
    proxy.cut()

    event = ticket_received()
    with entrypoint_hook(container, "save") as save:
        save(event.to_wire())

    stored = things.find_one({"_id": event.payload["ticket_id"]})
    assert [e["event_id"] for e in stored[OUTBOX]] == [event.event_id]  # the write did not wait for the broker
    eventlet.sleep(1.0)  # several sweeps run while the broker is unreachable
    assert depth(settings.amqp_uri, QUEUE) == 0
    assert things.find_one({"_id": event.payload["ticket_id"]})[OUTBOX]  # still kept, not dropped

    proxy.restore()
    wait_until(lambda: depth(settings.amqp_uri, QUEUE) == 1, timeout=15)
    [(body, _)] = drain(settings.amqp_uri, QUEUE)
    assert body["event_id"] == event.event_id
    database = things.database
    wait_until(lambda: unpublished(database, "things") == [] and published_among(database, [event.event_id]))
    assert things.find_one({"_id": event.payload["ticket_id"]}) == stored  # never written again


def test_an_event_is_published_right_after_its_write(container_factory, settings, mongo_client, wait_until):
    container = container_factory(Writer, settings.nameko_config())
    container.start()
    event = ticket_received()

    with entrypoint_hook(container, "save") as save:
        save(event.to_wire())

    wait_until(lambda: depth(settings.amqp_uri, QUEUE) == 1, timeout=2)
    [(body, _)] = drain(settings.amqp_uri, QUEUE)
    assert body == event.to_wire()


def test_an_event_nobody_listens_to_lands_in_the_unrouted_queue(container_factory, settings, wait_until):
    from kernel.envelope import Envelope

    container = container_factory(Writer, settings.nameko_config())
    container.start()
    event = Envelope.new("ticket.escalated", {"ticket_id": "t-unheard", "state": "received",
                                              "attached_residents": []}, community="xingqiao")

    with entrypoint_hook(container, "save") as save:
        save(event.to_wire())

    wait_until(lambda: depth(settings.amqp_uri, "huisheng.unrouted") == 1, timeout=5)


def relay_of(container):
    from kernel.outbox import OutboxRelay

    [relay] = [ext for ext in container.extensions if isinstance(ext, OutboxRelay)]
    return relay


def test_a_published_event_goes_to_the_ledger_and_its_document_is_not_written_again(
        container_factory, settings, mongo_client, wait_until):
    container = container_factory(Writer, settings.nameko_config())
    container.start()
    things = mongo_client[settings.database_name("tickets")].things
    event = ticket_received()

    with entrypoint_hook(container, "save") as save:
        save(event.to_wire())

    wait_until(lambda: published_among(things.database, [event.event_id]) == {event.event_id}, timeout=5)
    stored = things.find_one({"_id": event.payload["ticket_id"]})
    wait_until(lambda: swept_past(things, stored[SINCE]), timeout=5)
    eventlet.sleep(0.5)  # more sweeps pass over it
    assert depth(settings.amqp_uri, QUEUE) == 1  # published once
    assert things.find_one({"_id": event.payload["ticket_id"]}) == stored


def test_the_sweep_publishes_what_neither_this_relay_nor_the_ledger_knows(
        container_factory, settings, mongo_client, wait_until):
    things = mongo_client[settings.database_name("tickets")].things
    by_another_relay, lost_in_a_crash = ticket_received(), ticket_received()
    for event in (by_another_relay, lost_in_a_crash):  # written, then the writer died before its flush
        things.insert_one(with_events({"_id": event.payload["ticket_id"]}, [event]))
    record_published(things.database, [by_another_relay.event_id])  # another instance published this one

    container = container_factory(Writer, settings.nameko_config())
    container.start()

    wait_until(lambda: depth(settings.amqp_uri, QUEUE) == 1, timeout=5)
    wait_until(lambda: unpublished(things.database, "things") == [], timeout=5)
    eventlet.sleep(0.5)
    assert [body["event_id"] for body, _ in drain(settings.amqp_uri, QUEUE)] == [lost_in_a_crash.event_id]


def test_events_staged_before_the_checkpoint_are_not_published_again_with_a_new_one(
        container_factory, settings, mongo_client, wait_until):
    things = mongo_client[settings.database_name("tickets")].things
    first = ticket_received()
    document_id = first.payload["ticket_id"]
    second = ticket_received(document_id)
    container = container_factory(Writer, settings.nameko_config())
    container.start()
    with entrypoint_hook(container, "save") as save:
        save(first.to_wire())
    wait_until(lambda: swept_past(things, things.find_one({"_id": document_id})[SINCE]), timeout=5)
    drain(settings.amqp_uri, QUEUE)

    # A later change to the same document, its event written and never flushed (its writer died).
    things.update_one({"_id": document_id}, push_events({"$set": {"state": "x"}}, [second]))

    wait_until(lambda: depth(settings.amqp_uri, QUEUE) == 1, timeout=5)
    eventlet.sleep(0.5)
    assert [body["event_id"] for body, _ in drain(settings.amqp_uri, QUEUE)] == [second.event_id]
    assert [e["event_id"] for e in things.find_one({"_id": document_id})[OUTBOX]] == [
        first.event_id, second.event_id]  # the document keeps what it emitted


def swept_past(collection, moment) -> bool:
    """True once the collection's checkpoint is later than ``moment``."""
    reached = checkpoint(collection.database, collection.name)
    return reached is not None and reached > moment.replace(tzinfo=reached.tzinfo)


def test_a_backlog_larger_than_a_sweep_is_published_once(
        container_factory, settings, mongo_client, wait_until, monkeypatch):
    from datetime import timedelta

    import kernel.outbox
    from kernel.envelope import utcnow

    monkeypatch.setattr(kernel.outbox, "SWEEP_READ", 40)
    monkeypatch.setattr(kernel.outbox, "SWEEP_BATCH", 20)
    things = mongo_client[settings.database_name("tickets")].things
    long_ago = (utcnow() - timedelta(minutes=5)).replace(microsecond=0)  # what is found when the broker is back
    # 70 staged in one millisecond (more than a read aims at), then 90 over nine seconds: slices shrink and grow
    instants = [long_ago] * 70 + [long_ago + timedelta(milliseconds=100 * (1 + n)) for n in range(90)]
    events = [ticket_received() for _ in instants]
    documents = []
    for event, at in zip(events, instants, strict=True):
        document = with_events({"_id": event.payload["ticket_id"]}, [event])
        document[OUTBOX][0][STAGED] = document[SINCE] = at
        documents.append(document)
    things.insert_many(documents)
    container = container_factory(Writer, settings.nameko_config())
    container.start()

    wait_until(lambda: unpublished(things.database, "things") == [], timeout=60)
    published = [body["event_id"] for body, _ in drain(settings.amqp_uri, QUEUE, limit=5000)]
    assert sorted(published) == sorted(e.event_id for e in events)  # every one, once
    relay = relay_of(container)
    assert relay.published(events[-1].event_id)
    assert relay._slices["things"] >= timedelta(milliseconds=1)

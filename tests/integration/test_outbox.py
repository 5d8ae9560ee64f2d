"""The outbox relay: an event saved while the broker is away is published once it is back."""

from __future__ import annotations

import eventlet
import pytest
from nameko.testing.services import dummy, entrypoint_hook

from kernel.config import Settings
from kernel.mongo import Mongo
from kernel.outbox import OUTBOX, SINCE, Outbox, with_events
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
    wait_until(lambda: SINCE not in things.find_one({"_id": event.payload["ticket_id"]}))
    assert things.find_one({"_id": event.payload["ticket_id"]})[OUTBOX] == []


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


def test_published_events_are_settled_by_the_relay_unless_a_later_write_takes_them_over(
        container_factory, settings, mongo_client, wait_until):
    patient = Settings(**{**settings.__dict__, "outbox_grace_seconds": 30.0})  # no sweep meanwhile
    container = container_factory(Writer, patient.nameko_config())
    container.start()
    things = mongo_client[settings.database_name("tickets")].things
    relay = relay_of(container)
    relay.settle_after = 3600.0  # nothing is due until the test says so
    settled_by_relay, handed_over = ticket_received(), ticket_received()

    with entrypoint_hook(container, "save") as save:
        save(settled_by_relay.to_wire())
        save(handed_over.to_wire())
    wait_until(lambda: depth(settings.amqp_uri, QUEUE) == 2, timeout=5)
    wait_until(lambda: relay.unsettled("things", handed_over.payload["ticket_id"]), timeout=5)  # confirmed
    taken = relay.hand_over("things", handed_over.payload["ticket_id"])
    assert taken == [handed_over.event_id]

    # The relay settles what it kept once due; what it handed over stays for the taker's write.
    relay.settle_after = 0.0
    wait_until(lambda: SINCE not in things.find_one({"_id": settled_by_relay.payload["ticket_id"]}), timeout=5)
    relay.settle(everything=True)
    assert things.find_one({"_id": handed_over.payload["ticket_id"]})[OUTBOX]

    # The taker's write failed: given back, the events are the relay's to settle again.
    relay.take_back("things", handed_over.payload["ticket_id"], taken)
    wait_until(lambda: SINCE not in things.find_one({"_id": handed_over.payload["ticket_id"]}), timeout=5)
    assert things.find_one({"_id": handed_over.payload["ticket_id"]})[OUTBOX] == []


def test_a_failing_write_in_handed_over_gives_the_events_back(container_factory, settings, wait_until):
    container = container_factory(Writer, settings.nameko_config())
    container.start()
    relay = relay_of(container)
    relay.settle_after = 3600.0  # the relay keeps the event until it is handed over
    event = ticket_received()
    with entrypoint_hook(container, "save") as save:
        save(event.to_wire())
    wait_until(lambda: relay.unsettled("things", event.payload["ticket_id"]) == [event.event_id], timeout=5)

    with pytest.raises(RuntimeError), relay.handed_over("things", event.payload["ticket_id"]) as taken:
        assert taken == [event.event_id]
        raise RuntimeError("the write failed")
    assert relay.hand_over("things", event.payload["ticket_id"]) == [event.event_id]


def test_a_backlog_larger_than_a_sweep_is_published_and_settled(
        container_factory, settings, mongo_client, wait_until):
    from datetime import timedelta

    from kernel.envelope import utcnow
    from kernel.outbox import SWEEP_READ

    things = mongo_client[settings.database_name("tickets")].things
    events = [ticket_received() for _ in range(SWEEP_READ + 150)]  # two reads, five batches
    long_ago = utcnow() - timedelta(minutes=5)  # what the relay finds when the broker comes back
    things.insert_many([{**with_events({"_id": e.payload["ticket_id"]}, [e]), SINCE: long_ago} for e in events])
    container = container_factory(Writer, settings.nameko_config())
    container.start()

    wait_until(lambda: things.count_documents({SINCE: {"$exists": True}}) == 0, timeout=60)
    published = {body["event_id"] for body, _ in drain(settings.amqp_uri, QUEUE, limit=5000)}
    assert published == {e.event_id for e in events}  # every one, whatever was published twice
    assert things.count_documents({OUTBOX: {"$size": 0}}) == len(events)

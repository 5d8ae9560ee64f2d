"""The outbox relay: an event saved while the broker is away is published once it is back."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

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


def through(proxy: TcpProxy, amqp_uri: str) -> str:
    parts = urlsplit(amqp_uri)
    netloc = f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def test_an_event_saved_while_the_broker_is_down_is_published_when_it_is_back(
        container_factory, settings, mongo_client, wait_until, request):
    proxy = TcpProxy(urlsplit(settings.amqp_uri).port or 5672).start()
    request.addfinalizer(proxy.stop)
    cut_off = Settings(**{**settings.__dict__, "amqp_uri": through(proxy, settings.amqp_uri)})
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

"""The echo loop with the real tickets and notify services, broker and database."""

from __future__ import annotations

import time
from datetime import datetime

import eventlet
import pytest
from nameko.testing.services import entrypoint_hook

from kernel.errors import NotFound, ValidationFailed
from services.notify.service import NotifyService
from services.tickets.service import TicketsService
from tests.support.broker import depth

pytestmark = pytest.mark.integration

REPORT = {"service_code": "blocked_drain", "description": "楼下下水道堵了，污水外溢",
          "address_string": "兴乔小区3号楼2单元", "attributes": {"overflowing": "yes"}}  # blocked_drain's answer


@pytest.fixture
def platform(container_factory, settings, service_config):
    from tests.conftest import free_port

    tickets = container_factory(TicketsService, service_config)
    notify = container_factory(NotifyService, settings.nameko_config(web_address=f"127.0.0.1:{free_port()}"))
    tickets.start()
    notify.start()
    return tickets, notify


def test_a_new_ticket_echoes_to_its_reporter_and_the_echo_lands_on_its_timeline(platform, wait_until):
    tickets, notify = platform
    with entrypoint_hook(tickets, "create") as create:
        ticket = create("xingqiao", "r-100", REPORT)
    assert ticket["state"] == "received" and ticket["status"] == "open"
    assert [entry["type"] for entry in ticket["timeline"]] == ["ticket.received"]

    def timeline():
        with entrypoint_hook(tickets, "get") as get:
            return [entry["type"] for entry in get("xingqiao", ticket["id"],
                                                   {"subject": "r-100", "role": "resident"})["timeline"]]

    assert wait_until(lambda: "echo.delivered" in timeline(), timeout=5)
    with entrypoint_hook(notify, "list_inbox") as list_inbox:
        inbox = list_inbox("xingqiao", "r-100")
    [message] = inbox["items"]
    assert inbox["next_cursor"] is None and inbox["unread"] == 1
    assert message["ticket_id"] == ticket["id"]
    assert message["title"] == "您的诉求已受理"
    assert message["delivery"]["status"] == "delivered"


def test_a_resident_sees_only_their_own_tickets(platform):
    tickets, _ = platform
    with entrypoint_hook(tickets, "create") as create:
        ticket = create("xingqiao", "r-1", REPORT)
    with entrypoint_hook(tickets, "get") as get:
        with pytest.raises(NotFound):
            get("xingqiao", ticket["id"], {"subject": "r-2", "role": "resident"})
        with pytest.raises(NotFound):  # another community's staff do not see it either
            get("another", ticket["id"], {"subject": "s-1", "role": "secretary"})
        assert get("xingqiao", ticket["id"], {"subject": "g-1", "role": "grid_worker"})["id"] == ticket["id"]
    with entrypoint_hook(tickets, "list_mine") as list_mine:
        assert [t["id"] for t in list_mine("xingqiao", "r-1")["items"]] == [ticket["id"]]
        assert list_mine("xingqiao", "r-2") == {"items": [], "next_cursor": None}


def test_bad_input_is_a_structured_error_and_saves_nothing(platform, settings, mongo_client):
    tickets, _ = platform
    with entrypoint_hook(tickets, "create") as create:
        with pytest.raises(ValidationFailed) as missing:
            create("xingqiao", "r-1", {"service_code": "roof_leak"})
        with pytest.raises(ValidationFailed) as unknown:
            create("xingqiao", "r-1", {**REPORT, "service_code": "no_such_service"})
    assert set(missing.value.details) == {"description", "address_string"}
    assert "unknown service_code" in unknown.value.details["service_code"][0]
    assert mongo_client[settings.database_name("tickets")].tickets.count_documents({}) == 0


def test_a_redelivered_ticket_event_leaves_one_inbox_message_per_resident(platform, settings, mongo_client,
                                                                          wait_until):
    """notify's inbox message is keyed by event and recipient: the message is the record of the event."""
    from tests.support.broker import publish_event
    from tests.support.events import ticket_received

    event = ticket_received(residents=("r-7", "r-8"))
    inbox = mongo_client[settings.database_name("notify")].inbox

    for _ in range(3):  # arriving together, as a flush and a sweep that both published it would
        publish_event(settings.amqp_uri, event.to_wire())
    wait_until(lambda: inbox.count_documents({"source_event_id": event.event_id}) == 2)
    wait_until(lambda: depth(settings.amqp_uri, "huisheng.notify.ticket_events") == 0)
    publish_event(settings.amqp_uri, event.to_wire())  # and once more, long after
    wait_until(lambda: depth(settings.amqp_uri, "huisheng.notify.ticket_events") == 0)
    eventlet.sleep(0.3)

    assert sorted(m["recipient"] for m in inbox.find({"source_event_id": event.event_id})) == ["r-7", "r-8"]


def test_a_redelivered_ticket_event_leaves_one_echo_on_the_timeline(platform, settings, mongo_client, wait_until):
    """notify's echo record is keyed by event and recipient, and the timeline reads it from notify: however often
    the event comes, the ticket shows one echo of it."""
    from kernel.outbox import OUTBOX, STAGED
    from tests.support.broker import publish_event

    tickets, _ = platform
    with entrypoint_hook(tickets, "create") as create:
        ticket = create("xingqiao", "r-5", REPORT)

    def echoes() -> list[dict]:
        with entrypoint_hook(tickets, "get") as get:
            shown = get("xingqiao", ticket["id"], {"subject": "r-5", "role": "resident"})
        return [entry for entry in shown["timeline"] if entry["type"].startswith("echo.")]

    assert wait_until(lambda: len(echoes()) == 1, timeout=5)
    stored = mongo_client[settings.database_name("tickets")].tickets.find_one({"_id": ticket["id"]})
    [received] = [{k: v for k, v in event.items() if k != STAGED} for event in stored[OUTBOX]]
    for _ in range(3):
        publish_event(settings.amqp_uri, received)
    wait_until(lambda: depth(settings.amqp_uri, "huisheng.notify.ticket_events") == 0)
    eventlet.sleep(0.5)
    [echo] = echoes()
    assert (echo["type"], echo["channel"], echo["recipient"]) == ("echo.delivered", "inbox", "r-5")


STAFF = {"subject": "s-1", "role": "secretary"}


def test_every_reply_shows_notifys_echoes_and_says_when_notify_does_not_answer(container_factory, settings,
                                                                               service_config, mongo_client,
                                                                               wait_until):
    """The timeline's echoes are notify's records, asked for when tickets answers (get, by number, lists, an
    action's reply); a notify that does not answer leaves the reply without them, marked ``echoes_unavailable``.
    A new ticket's reply asks nothing (it has no echo yet)."""
    from services.tickets.timeline import NOTIFY_TIMEOUT
    from tests.conftest import free_port

    def notify_config():
        return settings.nameko_config(web_address=f"127.0.0.1:{free_port()}")

    tickets, notify = container_factory(TicketsService, service_config), container_factory(NotifyService,
                                                                                           notify_config())
    tickets.start()
    notify.start()
    with entrypoint_hook(tickets, "create") as create:
        ticket = create("xingqiao", "r-6", REPORT)
    resident = {"subject": "r-6", "role": "resident"}

    def call(method: str, *args):
        with entrypoint_hook(tickets, method) as entrypoint:
            return entrypoint("xingqiao", *args)

    def echoes(reply: dict) -> list[tuple[str, str, str]]:
        return [(e["type"], e["channel"], e["recipient"]) for e in reply["timeline"] if e["type"].startswith("echo.")]

    delivered = [("echo.delivered", "inbox", "r-6")]
    assert wait_until(lambda: echoes(call("get", ticket["id"], resident)) == delivered, timeout=5)
    message = mongo_client[settings.database_name("notify")].inbox.find_one({"ticket_id": ticket["id"]})
    [entry] = [e for e in call("get", ticket["id"], resident)["timeline"] if e["type"] == "echo.delivered"]
    assert datetime.fromisoformat(entry["at"]) == message["delivery"]["delivered_at"]  # notify's record, as it is
    replies = [call("get", ticket["number"], STAFF), call("list_mine", "r-6")["items"][0],
               call("list_tickets", STAFF)["items"][0],
               call("dispatch", ticket["id"], {"kind": "worker", "id": "w-1"}, STAFF)]
    # the receipt's echo first in each (the dispatch's own may already be delivered when its reply asks notify)
    assert [echoes(reply)[:1] for reply in replies] == [delivered] * 4
    assert [echoes(reply) for reply in replies[:3]] == [delivered] * 3
    assert not [reply for reply in replies if "echoes_unavailable" in reply]

    notify.stop()
    started = time.monotonic()
    unanswered = call("get", ticket["id"], resident)
    assert time.monotonic() - started < NOTIFY_TIMEOUT + 3  # the deadline, not nameko's endless wait
    assert unanswered["echoes_unavailable"] is True and echoes(unanswered) == []
    assert [entry["type"] for entry in unanswered["timeline"]] == ["ticket.received", "ticket.dispatched"]
    [listed] = call("list_mine", "r-6")["items"]
    assert listed["echoes_unavailable"] is True and listed["id"] == ticket["id"]
    started = time.monotonic()
    created = call("create", "r-6", {**REPORT, "description": "又堵了"})
    assert time.monotonic() - started < NOTIFY_TIMEOUT and "echoes_unavailable" not in created  # never asked

    container_factory(NotifyService, notify_config()).start()
    # the dispatch's echoes too: to the resident, and to the grid worker (whose is shown to staff as well)
    dispatched = [("echo.delivered", "inbox", "r-6"), ("echo.delivered", "inbox", "w-1")]
    assert wait_until(lambda: sorted(echoes(call("get", ticket["id"], STAFF))) == sorted(delivered + dispatched),
                      timeout=10)
    assert "echoes_unavailable" not in call("get", ticket["id"], resident)

"""The echo loop with the real tickets and notify services, broker and database."""

from __future__ import annotations

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


def test_a_redelivered_echo_outcome_leaves_one_timeline_entry(platform, settings, wait_until):
    from kernel.envelope import Envelope
    from tests.support.broker import publish_event

    tickets, _ = platform
    with entrypoint_hook(tickets, "create") as create:
        ticket = create("xingqiao", "r-5", REPORT)
    outcome = Envelope.new("echo.delivered", {
        "echo_id": "manual:r-5", "ticket_id": ticket["id"], "recipient": "r-5", "channel": "sms",
        "source_event_id": "manual", "source_event_type": "ticket.received",
        "at": "2026-11-26T08:00:00+00:00", "reason": None}, community="xingqiao")

    for _ in range(3):
        publish_event(settings.amqp_uri, outcome.to_wire())
    wait_until(lambda: depth(settings.amqp_uri, "huisheng.tickets.echo_outcomes") == 0)
    eventlet.sleep(0.5)

    with entrypoint_hook(tickets, "get") as get:
        timeline = get("xingqiao", ticket["id"], {"subject": "r-5", "role": "resident"})["timeline"]
    assert [entry["channel"] for entry in timeline if entry["type"] == "echo.delivered"].count("sms") == 1

"""The echo loop with the real tickets and notify services, broker and database."""

from __future__ import annotations

import pytest
from nameko.testing.services import entrypoint_hook

from kernel.errors import NotFound, ValidationFailed
from services.notify.service import NotifyService
from services.tickets.service import TicketsService
from tests.support.broker import depth

pytestmark = pytest.mark.integration

REPORT = {"service_code": "blocked_drain", "description": "楼下下水道堵了，污水外溢",
          "address_string": "兴乔小区3号楼2单元"}


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
        [message] = list_inbox("xingqiao", "r-100")
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
        assert [t["id"] for t in list_mine("xingqiao", "r-1")] == [ticket["id"]]
        assert list_mine("xingqiao", "r-2") == []


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


def test_a_redelivered_ticket_event_leaves_one_inbox_message(platform, settings, mongo_client, wait_until):
    """Even past the dedupe record, the inbox write itself is idempotent."""
    from tests.support.broker import publish_event
    from tests.support.events import ticket_received

    tickets, notify = platform
    event = ticket_received(residents=("r-7", "r-8"))
    inbox = mongo_client[settings.database_name("notify")].inbox
    processed = mongo_client[settings.database_name("notify")].processed_events

    publish_event(settings.amqp_uri, event.to_wire())
    wait_until(lambda: processed.find_one({"state": "done"}))
    processed.delete_many({})  # as if the dedupe record had been lost
    publish_event(settings.amqp_uri, event.to_wire())
    wait_until(lambda: processed.find_one({"state": "done"}))
    wait_until(lambda: depth(settings.amqp_uri, "huisheng.notify.ticket_events") == 0)

    assert sorted(m["recipient"] for m in inbox.find({"source_event_id": event.event_id})) == ["r-7", "r-8"]


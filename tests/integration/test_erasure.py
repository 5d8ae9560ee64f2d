"""Erasure (PIPL) in tickets and notify with the real services, broker and database."""

from __future__ import annotations

import json
from datetime import timedelta

import eventlet
import pytest
from nameko.testing.services import entrypoint_hook

from kernel.envelope import Envelope, utcnow
from services.notify.service import NotifyService
from services.tickets.catalogue import Catalogue
from services.tickets.domain import ERASED_NOTE, Actor, Ticket
from services.tickets.service import TicketsService
from tests.conftest import free_port
from tests.support.broker import depth, publish_event

pytestmark = pytest.mark.integration

REPORT = {"service_code": "roof_leak", "description": "我家401卫生间漏水，联系13812345678（李四）",
          "address_string": "兴乔小区3号楼2单元401", "lat": 30.27, "long": 120.15,
          "attributes": {"floor": 4, "still_leaking": "yes"}}  # roof_leak's required answers


def erased(resident: str, community: str = "xingqiao") -> Envelope:
    return Envelope.new("resident.erased", {"resident_id": resident, "erased_at": utcnow().isoformat()},
                        community=community)


@pytest.fixture
def platform(container_factory, settings, service_config):
    tickets = container_factory(TicketsService, service_config)
    notify = container_factory(NotifyService, settings.nameko_config(web_address=f"127.0.0.1:{free_port()}"))
    tickets.start()
    notify.start()
    return tickets, notify


@pytest.fixture
def dbs(settings, mongo_client):
    return mongo_client[settings.database_name("tickets")], mongo_client[settings.database_name("notify")]


def report(tickets, resident: str) -> dict:
    with entrypoint_hook(tickets, "create") as create:
        return create("xingqiao", resident, REPORT, request_key=f"key-{resident}")


def settled(settings, *queues: str) -> None:
    for queue in queues:
        for _ in range(200):
            if depth(settings.amqp_uri, queue) == 0:
                break
            eventlet.sleep(0.05)
    eventlet.sleep(0.3)


def shown(tickets, ticket_id: str) -> dict:
    """The ticket as the office sees it, its timeline with the echoes notify answers for."""
    with entrypoint_hook(tickets, "get") as get:
        return get("xingqiao", ticket_id, {"subject": "s-1", "role": "secretary"})


def echoes_of(reply: dict) -> list[str]:
    return [entry["recipient"] for entry in reply["timeline"] if entry["type"].startswith("echo.")]


def test_an_erased_resident_is_anonymised_in_tickets_and_gone_from_the_inbox(platform, dbs, settings, wait_until):
    tickets, _ = platform
    tickets_db, notify_db = dbs
    mine, theirs = report(tickets, "p-000000000001"), report(tickets, "p-000000000002")
    wait_until(lambda: notify_db.inbox.count_documents({"recipient": "p-000000000001"}) == 1)
    wait_until(lambda: echoes_of(shown(tickets, mine["id"])) == ["p-000000000001"])
    assert tickets_db.tickets.find_one({"_id": mine["id"]})["request_key"] == "key-p-000000000001"

    publish_event(settings.amqp_uri, erased("p-000000000001").to_wire())

    wait_until(lambda: tickets_db.tickets.find_one({"_id": mine["id"]})["reporter"] != "p-000000000001")
    wait_until(lambda: notify_db.inbox.count_documents({"recipient": "p-000000000001"}) == 0)
    # notify erases the echo records (inbox messages and ``echoes``): the timeline shows them no more
    assert notify_db.echoes.count_documents({"recipient": "p-000000000001"}) == 0
    reply = shown(tickets, mine["id"])
    assert echoes_of(reply) == [] and "echoes_unavailable" not in reply
    assert "p-000000000001" not in json.dumps(reply, ensure_ascii=False)

    document = tickets_db.tickets.find_one({"_id": mine["id"]})
    text = json.dumps(document, ensure_ascii=False, default=str)  # its outbox included
    assert "p-000000000001" not in text and "13812345678" not in text and "李四" not in text and "401" not in text
    assert document["reporter"].startswith("anon-") and document["attached_residents"] == [document["reporter"]]
    assert document["description"] == ERASED_NOTE and document["address_string"] == "兴乔小区3号楼"
    assert document["lat"] is None and document["long"] is None
    assert "request_key" not in document and "request_hash" not in document
    # The ticket itself stays, with its state, category, times and events: it keeps counting.
    assert (document["state"], document["category"], document["service_code"]) == ("received", mine["category"],
                                                                                   "roof_leak")
    assert [entry["type"] for entry in document["timeline"]] == ["ticket.received"]
    assert [event["type"] for event in document["_outbox"]] == ["ticket.received"]
    assert "echoes" not in tickets_db.list_collection_names()  # tickets keeps no copy of an echo to erase
    # Another resident's ticket, inbox and echo are untouched.
    other = tickets_db.tickets.find_one({"_id": theirs["id"]})
    assert other["reporter"] == "p-000000000002" and other["description"] == REPORT["description"]
    assert notify_db.inbox.count_documents({"recipient": "p-000000000002"}) == 1
    assert echoes_of(shown(tickets, theirs["id"])) == ["p-000000000002"]


def test_erasure_is_idempotent(platform, dbs, settings, wait_until):
    tickets, _ = platform
    tickets_db, notify_db = dbs
    mine = report(tickets, "p-000000000003")
    wait_until(lambda: notify_db.inbox.count_documents({"recipient": "p-000000000003"}) == 1)
    event = erased("p-000000000003")
    publish_event(settings.amqp_uri, event.to_wire())
    wait_until(lambda: tickets_db.tickets.find_one({"_id": mine["id"]})["reporter"] != "p-000000000003")
    settled(settings, "huisheng.tickets.erasures", "huisheng.notify.erasures")
    once = tickets_db.tickets.find_one({"_id": mine["id"]})

    publish_event(settings.amqp_uri, event.to_wire())  # redelivered
    publish_event(settings.amqp_uri, erased("p-000000000003").to_wire())  # asked again: a new event
    settled(settings, "huisheng.tickets.erasures", "huisheng.notify.erasures")

    assert tickets_db.tickets.find_one({"_id": mine["id"]}) == once
    assert notify_db.inbox.count_documents({"recipient": "p-000000000003"}) == 0
    assert depth(settings.amqp_uri, "huisheng.tickets.erasures.dlq") == 0
    assert depth(settings.amqp_uri, "huisheng.notify.erasures.dlq") == 0


def test_the_retention_job_anonymises_closed_tickets_past_the_period(platform, dbs):
    tickets, _ = platform
    tickets_db, _ = dbs
    leak = Catalogue.load().get("roof_leak")
    long_ago = utcnow() - timedelta(days=1200)
    old = Ticket.receive("old-closed", "xingqiao", leak, "张三家漏水 13900000000", "3-2-401", "p-000000000004",
                         "resident", long_ago)
    old.close_not_fixed("cancelled", "居民撤回", long_ago, Actor("s-1", "secretary"))
    recent = Ticket.receive("recent-closed", "xingqiao", leak, "王五家漏水", "3-2-402", "p-000000000005",
                            "resident", utcnow() - timedelta(days=10))
    recent.close_not_fixed("cancelled", None, utcnow() - timedelta(days=10), Actor("s-1", "secretary"))
    still_open = Ticket.receive("old-open", "xingqiao", leak, "赵六家漏水", "3-2-403", "p-000000000006",
                                "resident", long_ago)
    for ticket in (old, recent, still_open):
        tickets_db.tickets.insert_one(ticket.to_document())

    with entrypoint_hook(tickets, "anonymise_expired") as anonymise_expired:
        assert anonymise_expired() == 1
        assert anonymise_expired() == 0  # done once

    document = tickets_db.tickets.find_one({"_id": "old-closed"})
    assert document["anonymised_at"] is not None and document["state"] == "closed_not_fixed"
    assert "p-000000000004" not in json.dumps(document, ensure_ascii=False, default=str)
    assert document["description"] == ERASED_NOTE and document["address_string"] == "3号楼"
    assert tickets_db.tickets.find_one({"_id": "recent-closed"})["reporter"] == "p-000000000005"
    assert tickets_db.tickets.find_one({"_id": "old-open"})["reporter"] == "p-000000000006"

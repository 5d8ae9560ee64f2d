"""Deadlines on the running service: two tickets processes, a moved clock, each threshold's event exactly once.

The tickets service's clock is moved through its test-only RPC (SLA_TEST_CLOCK), which every
process reads from the database: the timers of both containers race for every threshold.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import datetime

import eventlet
import pytest
from kombu import Connection, Queue, binding
from nameko.testing.services import entrypoint_hook
from prometheus_client import REGISTRY

from kernel.envelope import utcnow
from kernel.errors import NotFound, ValidationFailed
from kernel.topology import EVENTS
from services.tickets.calendar import SHANGHAI, YearCalendar, shipped_years
from services.tickets.service import TicketsService
from services.tickets.sla import CALENDARS, CALENDARS_CACHE, SLA_MARKS
from tests.conftest import free_port
from tests.support.broker import drain

pytestmark = pytest.mark.integration

WATCH = "test.sla_watch"
GAS = {"service_code": "gas_smell", "description": "楼道里煤气味很重", "address_string": "兴乔小区3号楼"}
LEAK = {"service_code": "roof_leak", "description": "顶楼漏雨，客厅天花板滴水", "address_string": "兴乔小区5号楼",
        "attributes": {"floor": 5, "still_leaking": "yes"}}  # roof_leak's required answers


@pytest.fixture
def sla_settings(settings):
    return dataclasses.replace(settings, sla_test_clock=True, sla_timer_seconds=0.2)


@pytest.fixture
def watch(sla_settings):
    """A queue of this test bound to the deadline events and escalations."""
    with Connection(sla_settings.amqp_uri) as connection:
        Queue(WATCH, bindings=[binding(EVENTS, routing_key=key) for key in ("sla.*", "ticket.escalated")],
              durable=True)(connection.default_channel).declare()
    return sla_settings.amqp_uri


def start_tickets(container_factory, settings):
    container = container_factory(TicketsService, settings.nameko_config(web_address=f"127.0.0.1:{free_port()}"))
    container.start()
    return container


def call(container, name, *args, **kwargs):
    with entrypoint_hook(container, name) as hook:
        return hook(*args, **kwargs)


class Seen:
    """Every event taken from the watch queue so far."""

    def __init__(self, amqp_uri: str) -> None:
        self.amqp_uri, self.events = amqp_uri, []

    def take(self) -> list[dict]:
        self.events += [body for body, _ in drain(self.amqp_uri, WATCH)]
        return self.events

    def thresholds(self) -> Counter:
        return Counter((e["payload"]["ticket_id"], e["payload"]["clock"], e["payload"]["started_at"],
                        e["payload"]["threshold"]) for e in self.take() if e["type"].startswith("sla."))


def move_to(container, moment: datetime) -> None:
    call(container, "set_test_clock", (moment - utcnow()).total_seconds())


def test_thresholds_fire_exactly_once_across_two_processes_and_a_restart(
        container_factory, sla_settings, watch, wait_until):
    first, second = start_tickets(container_factory, sla_settings), start_tickets(container_factory, sla_settings)
    gas = call(first, "create", "xingqiao", "r-1", GAS)
    leak = call(second, "create", "xingqiao", "r-2", LEAK)
    seen = Seen(watch)

    # The fast lane: escalated to the secretary at intake, before any clock has run.
    wait_until(lambda: [e for e in seen.take() if e["type"] == "ticket.escalated"], timeout=10)
    escalations = [e for e in seen.take() if e["type"] == "ticket.escalated"]
    assert [(e["payload"]["ticket_id"], e["payload"]["reason"]) for e in escalations] == [(gas["id"], "fast_lane")]
    assert not seen.thresholds()  # nothing is due yet

    clocks = call(first, "sla_clocks", "xingqiao", gas["id"])
    response = next(clock for clock in clocks["clocks"] if clock["clock"] == "first_response")
    assert clocks["fast_lane"] and response["time_kind"] == "natural"
    for step in response["thresholds"]:  # 15, 22.5 and 30 minutes after receipt
        move_to(first, datetime.fromisoformat(step["at"]))
        key = (gas["id"], "first_response", response["started_at"], step["threshold"])
        wait_until(lambda key=key: seen.thresholds()[key] == 1, timeout=10)
        kind = "sla.breached" if step["threshold"] == 100 else "sla.warned"
        assert [e["type"] for e in seen.take() if e["type"].startswith("sla.")][-1] == kind
        eventlet.sleep(0.5)  # more ticks of both timers
        assert seen.thresholds()[key] == 1

    # Past every deadline of both tickets: each clock's three thresholds, once each.
    leak_clocks = call(second, "sla_clocks", "xingqiao", leak["id"])["clocks"]
    last_due = max(datetime.fromisoformat(clock["due_at"]) for clock in leak_clocks + clocks["clocks"])
    move_to(second, last_due)
    expected = {(ticket, clock["clock"], clock["started_at"], percent)
                for ticket, running in ((gas["id"], clocks["clocks"]), (leak["id"], leak_clocks))
                for clock in running for percent in (50, 75, 100)}
    assert len(expected) == 12
    wait_until(lambda: set(seen.thresholds()) == expected, timeout=15)
    eventlet.sleep(1.0)
    assert set(seen.thresholds().values()) == {1}

    # A restart (and a new process) finds every threshold claimed: nothing again.
    first.stop()
    third = start_tickets(container_factory, sla_settings)
    call(third, "set_test_clock", (last_due - utcnow()).total_seconds() + 3600)
    eventlet.sleep(1.5)
    counts = seen.thresholds()
    assert set(counts) == expected and set(counts.values()) == {1}
    assert len([e for e in seen.events if e["type"] == "ticket.escalated"]) == 1


def test_a_new_ticket_is_indexed_at_its_first_threshold_not_read_before(
        container_factory, sla_settings, watch, wait_until, mongo_client):
    tickets = start_tickets(container_factory, sla_settings)
    leak = call(tickets, "create", "xingqiao", "r-3", LEAK)
    db = mongo_client[sla_settings.database_name("tickets")]
    document = db.tickets.find_one({"_id": leak["id"]})
    running = call(tickets, "sla_clocks", "xingqiao", leak["id"])["clocks"]
    first_threshold = min(datetime.fromisoformat(t["at"]) for clock in running for t in clock["thresholds"])
    # The index holds the first threshold, not "now": the timer does not read a new ticket before it is due.
    assert document["sla_next_at"].replace(tzinfo=first_threshold.tzinfo) >= first_threshold.replace(microsecond=0)
    # The timer has nothing to claim before then: no marks.
    eventlet.sleep(0.6)
    assert db[SLA_MARKS].count_documents({"ticket_id": leak["id"]}) == 0


def test_the_calendar_is_seeded_served_replaced_and_its_absence_warned(
        container_factory, sla_settings, mongo_client, wait_until):
    tickets = start_tickets(container_factory, sla_settings)
    assert call(tickets, "get_calendar", 2026)["workdays"][0] == {"date": "2026-01-04", "name": "元旦调休上班"}
    with pytest.raises(NotFound):
        call(tickets, "get_calendar", 2031)
    with pytest.raises(ValidationFailed) as refused:
        call(tickets, "put_calendar", 2031, {"holidays": [], "workdays": [{"date": "2031-03-03", "name": "x"}]})
    assert "workdays" in refused.value.details
    with pytest.raises(ValidationFailed):
        call(tickets, "put_calendar", 1999, {"holidays": [], "workdays": []})

    # This year unloaded: deadlines count weekends only, and operations are told until it is loaded.
    year = utcnow().astimezone(SHANGHAI).year
    db = mongo_client[sla_settings.database_name("tickets")]
    db[CALENDARS].delete_one({"_id": year})
    CALENDARS_CACHE.forget(db)
    gauge = {"year": str(year)}
    wait_until(lambda: REGISTRY.get_sample_value("huisheng_calendar_missing", gauge) == 1, timeout=10)

    body = YearCalendar.load(year).to_dict() if year in shipped_years() else {"holidays": [], "workdays": []}
    stored = call(tickets, "put_calendar", year, body, by="admin-1")
    assert stored["updated_by"] == "admin-1" and stored["holidays"] == body["holidays"]
    assert REGISTRY.get_sample_value("huisheng_calendar_missing", gauge) == 0
    eventlet.sleep(0.6)  # the timer's ticks do not raise it again
    assert REGISTRY.get_sample_value("huisheng_calendar_missing", gauge) == 0


def test_the_calendar_through_the_gateway_by_role(container_factory, sla_settings):
    import requests

    from tests.integration.harness import bearer, start_gateway

    start_tickets(container_factory, sla_settings)
    base = start_gateway(container_factory, sla_settings) + "/api/v1/calendar"

    def as_(role: str) -> dict:
        return bearer(sla_settings, role, f"{role}-1")

    assert requests.get(f"{base}/2026", headers=as_("secretary"), timeout=5).json()["year"] == 2026
    assert requests.get(f"{base}/2026", headers=as_("resident"), timeout=5).status_code == 403
    assert requests.get(f"{base}/2032", headers=as_("admin"), timeout=5).status_code == 404
    body = {"source": "test", "holidays": [{"date": "2032-01-01", "name": "元旦"}], "workdays": []}
    assert requests.put(f"{base}/2032", json=body, headers=as_("secretary"), timeout=5).status_code == 403
    refused = requests.put(f"{base}/2032", json={**body, "extra": 1}, headers=as_("admin"), timeout=5)
    assert refused.status_code == 422 and "extra" in refused.json()["errors"]
    wrong_year = requests.put(f"{base}/2033", json=body, headers=as_("admin"), timeout=5)
    assert wrong_year.status_code == 422 and "holidays" in wrong_year.json()["errors"]
    stored = requests.put(f"{base}/2032", json=body, headers=as_("admin"), timeout=5)
    assert stored.status_code == 200 and stored.json()["updated_by"] == "admin-1"
    assert requests.get(f"{base}/2032", headers=as_("ops"), timeout=5).json()["holidays"] == body["holidays"]


def test_a_staff_response_stops_the_first_response_clock_and_starts_keep_in_loop(
        container_factory, sla_settings, watch, wait_until):
    tickets = start_tickets(container_factory, sla_settings)
    leak = call(tickets, "create", "xingqiao", "r-4", LEAK)
    seen = Seen(watch)
    running = call(tickets, "sla_clocks", "xingqiao", leak["id"])["clocks"]
    response = next(clock for clock in running if clock["clock"] == "first_response")
    move_to(tickets, datetime.fromisoformat(response["thresholds"][0]["at"]))  # 50 % of the first response
    wait_until(lambda: seen.thresholds()[(leak["id"], "first_response", response["started_at"], 50)] == 1)

    secretary = {"subject": "s-1", "role": "secretary", "community": "xingqiao"}
    call(tickets, "act", "xingqiao", leak["id"], "dispatch", {"kind": "worker", "id": "gw-1"}, secretary)
    after = call(tickets, "sla_clocks", "xingqiao", leak["id"])["clocks"]
    assert [clock["clock"] for clock in after] == ["next_update", "resolution"]

    keep_in_loop = after[0]
    move_to(tickets, datetime.fromisoformat(keep_in_loop["due_at"]))
    wait_until(lambda: seen.thresholds()[(leak["id"], "next_update", keep_in_loop["started_at"], 100)] == 1,
               timeout=10)
    eventlet.sleep(0.5)
    fired = {(clock, percent) for ticket, clock, _, percent in seen.thresholds() if ticket == leak["id"]}
    assert ("first_response", 75) not in fired and ("first_response", 100) not in fired  # it stopped at the dispatch
    assert set(seen.thresholds().values()) == {1}

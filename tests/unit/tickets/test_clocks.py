"""Deadlines per priority, which clocks run in which state, thresholds at 50/75/100 %, the fast lane."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.tickets.calendar import SHANGHAI, WorkingCalendar, YearCalendar
from services.tickets.catalogue import Catalogue
from services.tickets.clocks import (
    FIRST_RESPONSE,
    NEXT_UPDATE,
    RESOLUTION,
    Clock,
    at_intake,
    crossings,
    next_check,
    percents_of,
    policy_for,
    running_clocks,
    sla_event,
)
from services.tickets.domain import Actor, Ticket
from services.tickets.sla import _ceil_ms

CATALOGUE = Catalogue.load()
CAL = WorkingCalendar([YearCalendar.load(2026)])
PERCENTS = percents_of(CATALOGUE)
SECRETARY = Actor("s-1", "secretary")
SERVICE_OF = {"critical": "gas_smell", "urgent": "roof_leak", "normal": "street_light"}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


def local(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def ticket(priority: str, received: datetime) -> Ticket:
    service = CATALOGUE.get(SERVICE_OF.get(priority, "street_light"))
    made = Ticket.receive("T1", "xingqiao", service, "描述一下问题", "3号楼", "r-1", "resident", received)
    made.priority = priority
    made.pull_events()
    return made


def clocks_of(made: Ticket) -> dict[str, Clock]:
    return {clock.name: clock for clock in running_clocks(made, policy_for(CATALOGUE, made.priority), CAL)}


# Received on Friday 4 December 2026 at 16:00 Shanghai time.
@pytest.mark.parametrize("priority, first_response, resolution", [
    ("critical", "2026-12-04 16:30", "2026-12-05 16:00"),  # natural time, day and night: Saturday counts
    ("urgent", "2026-12-07 09:00", "2026-12-07 16:00"),  # 2 working hours / 1 working day
    ("normal", "2026-12-04 17:30", "2026-12-11 16:00"),  # same working day / 5 working days
    ("low", "2026-12-07 16:00", "2026-12-18 16:00"),  # 1 working day / 10 working days
])
def test_deadlines_per_priority(priority, first_response, resolution):
    running = clocks_of(ticket(priority, at("2026-12-04 16:00")))
    assert set(running) == {FIRST_RESPONSE, RESOLUTION}
    assert local(running[FIRST_RESPONSE].due_at) == first_response
    assert local(running[RESOLUTION].due_at) == resolution
    assert running[FIRST_RESPONSE].time_kind == ("natural" if priority == "critical" else "working")


def test_deadlines_skip_the_national_day_holiday():
    running = clocks_of(ticket("urgent", at("2026-09-30 16:30")))
    assert local(running[FIRST_RESPONSE].due_at) == "2026-10-08 09:30"
    assert local(running[RESOLUTION].due_at) == "2026-10-08 16:30"


def test_thresholds_of_a_working_clock_skip_the_weekend():
    first = clocks_of(ticket("urgent", at("2026-12-04 16:00")))[FIRST_RESPONSE]  # 1.5 h Friday, 0.5 h Monday
    assert [(p, local(when)) for p, when in first.thresholds(CAL, PERCENTS)] == [
        (50, "2026-12-04 17:00"), (75, "2026-12-04 17:30"), (100, "2026-12-07 09:00")]


def test_thresholds_of_the_fast_lane_are_minutes_apart():
    first = clocks_of(ticket("critical", at("2026-12-05 03:00")))[FIRST_RESPONSE]  # a Saturday night
    assert [(p, local(when)) for p, when in first.thresholds(CAL, PERCENTS)] == [
        (50, "2026-12-05 03:15"), (75, "2026-12-05 03:22"), (100, "2026-12-05 03:30")]


def test_crossings_and_the_next_check():
    made = ticket("critical", at("2026-12-05 03:00"))
    running = running_clocks(made, policy_for(CATALOGUE, "critical"), CAL)
    now = at("2026-12-05 03:20")
    reached = crossings(running, CAL, now, PERCENTS)
    assert [(c.clock.name, c.threshold) for c in reached] == [(FIRST_RESPONSE, 50)]
    assert local(next_check(running, CAL, now, PERCENTS)) == "2026-12-05 03:22"
    later = crossings(running, CAL, at("2026-12-06 04:00"), PERCENTS)
    assert {(c.clock.name, c.threshold) for c in later} == {(name, p) for name in (FIRST_RESPONSE, RESOLUTION)
                                                            for p in PERCENTS}
    assert next_check(running, CAL, at("2026-12-06 04:00"), PERCENTS) is None


def test_the_automatic_acknowledgement_is_no_first_response_but_a_dispatch_is():
    made = ticket("urgent", at("2026-12-07 09:00"))
    assert made.first_response_at is None  # receipt (and its echo) is the platform's, not staff's
    made.dispatch({"kind": "worker", "id": "gw-1"}, at("2026-12-07 10:00"), SECRETARY)
    running = clocks_of(made)
    assert set(running) == {NEXT_UPDATE, RESOLUTION}
    assert local(running[NEXT_UPDATE].started_at) == "2026-12-07 10:00"
    assert local(running[NEXT_UPDATE].due_at) == "2026-12-07 14:00"  # 4 working hours: keep the resident in the loop


def test_keep_in_loop_restarts_from_the_last_update_the_resident_saw():
    made = ticket("urgent", at("2026-12-07 09:00"))
    made.dispatch({"kind": "worker", "id": "gw-1"}, at("2026-12-07 10:00"), SECRETARY)
    made.accept(at("2026-12-07 15:00"), Actor("gw-1", "grid_worker"))
    running = clocks_of(made)
    assert local(running[NEXT_UPDATE].started_at) == "2026-12-07 15:00"
    assert local(running[NEXT_UPDATE].due_at) == "2026-12-08 10:00"
    assert local(running[RESOLUTION].started_at) == "2026-12-07 09:00"  # resolution counts from receipt


def test_a_bounce_does_not_stop_the_resolution_clock():
    made = ticket("urgent", at("2026-12-07 09:00"))
    made.dispatch({"kind": "worker", "id": "gw-1"}, at("2026-12-07 10:00"), SECRETARY)
    made.bounce("不是我的网格", at("2026-12-07 11:00"), Actor("gw-1", "grid_worker"))
    assert local(clocks_of(made)[RESOLUTION].started_at) == "2026-12-07 09:00"


def test_no_clock_runs_while_awaiting_the_callback_or_once_closed():
    made = ticket("urgent", at("2026-12-07 09:00"))
    worker = Actor("gw-1", "grid_worker")
    made.dispatch({"kind": "worker", "id": "gw-1"}, at("2026-12-07 10:00"), SECRETARY)
    made.accept(at("2026-12-07 10:10"), worker)
    made.start(at("2026-12-07 10:20"), worker)
    made.resolve("修好了", at("2026-12-07 11:00"), worker)
    assert clocks_of(made) == {}
    made.record_callback("not_fixed", "还在漏", at("2026-12-08 09:00"), SECRETARY)
    reopened = clocks_of(made)  # a new resolution clock from the reopening, at the raised priority
    assert made.priority == "critical"
    assert local(reopened[RESOLUTION].started_at) == "2026-12-08 09:00"
    assert local(reopened[RESOLUTION].due_at) == "2026-12-09 09:00"


def test_each_clock_instance_has_its_own_keys():
    made = ticket("urgent", at("2026-12-07 09:00"))
    first = clocks_of(made)[FIRST_RESPONSE]
    keys = {first.key(made.id, p) for p in PERCENTS}
    assert len(keys) == 3 and all(key.startswith("T1|first_response|2026-12-07T01:00:00.000+00:00|") for key in keys)


def test_the_events_say_warned_or_breached_and_validate_against_the_catalogue():
    from kernel.envelope import Envelope
    from kernel.events import validate_outgoing

    made = ticket("urgent", at("2026-12-07 09:00"))
    running = running_clocks(made, policy_for(CATALOGUE, "urgent"), CAL)
    reached = crossings(running, CAL, at("2026-12-08 12:00"), PERCENTS)
    types = {(c.clock.name, c.threshold): sla_event(made, c).type for c in reached}
    assert types[(FIRST_RESPONSE, 50)] == "sla.warned" and types[(FIRST_RESPONSE, 100)] == "sla.breached"
    for crossing in reached:
        event = sla_event(made, crossing)
        validate_outgoing(Envelope.new(event.type, event.payload, community="xingqiao"))
        assert event.payload["due_at"] == crossing.clock.due_at.isoformat()


def test_the_fast_lane_is_escalated_at_intake_and_others_are_not():
    gas = Ticket.receive("T9", "xingqiao", CATALOGUE.get("gas_smell"), "煤气味很重", "3号楼", "r-1", "resident",
                         datetime(2026, 12, 5, 14, 0, tzinfo=UTC))
    assert at_intake(gas) is True
    events = gas.pull_events()
    assert [event.type for event in events] == ["ticket.received", "ticket.escalated"]
    assert events[1].payload["reason"] == "fast_lane" and events[1].payload["to"] == "secretary"
    assert gas.timeline[-1]["type"] == "ticket.escalated"
    leak = ticket("urgent", at("2026-12-07 09:00"))
    assert at_intake(leak) is False and leak.pull_events() == []


def test_category_overrides_beat_the_priority_default():
    override = CATALOGUE.deadline_policy("low")
    assert policy_for(CATALOGUE, "urgent", "房屋设施", {("房屋设施", "urgent"): override}) is override
    assert policy_for(CATALOGUE, "urgent", "公共安全", {("房屋设施", "urgent"): override}) is not override


def test_next_looks_are_rounded_up_to_the_millisecond():
    moment = datetime(2026, 12, 7, 1, 0, 0, 999_500, tzinfo=UTC)
    assert _ceil_ms(moment) == datetime(2026, 12, 7, 1, 0, 1, tzinfo=UTC)
    assert _ceil_ms(moment - timedelta(microseconds=600)).microsecond == 999_000

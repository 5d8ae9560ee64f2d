"""The ticket aggregate, without a broker or a database: states, rules, events, documents."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.tickets.catalogue import Service
from services.tickets.domain import (
    ALLOWED_FROM,
    AUTHORISATION,
    CLOSE_REASONS,
    OPEN311_STATUS,
    Actor,
    CallbackAttemptsExhausted,
    DomainError,
    DomainEvent,
    InvalidAssignee,
    InvalidLocation,
    InvalidTime,
    InvalidTransition,
    NotAllowed,
    NotAttached,
    ReasonRequired,
    RequiredFieldMissing,
    RespondentRequired,
    State,
    Ticket,
    TicketEventType,
    UnknownChoice,
    raise_priority,
)

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
LEAK = Service("roof_leak", "房屋漏水", "屋顶漏水", "房屋设施", "urgent", ("漏水",), False)
GAS = Service("gas_smell", "燃气泄漏气味", "闻到燃气味", "公共安全", "critical", ("燃气",), True)
NOISE = Service("noise", "噪音扰民", "装修噪音", "邻里关系", "low", ("噪音",), False)

SECRETARY = Actor("s1", "secretary")
GRID_WORKER = Actor("w1", "grid_worker")
ADMIN = Actor("a1", "admin")
VOLUNTEER = Actor("v1", "volunteer", teams=("dangyuan",))
OTHER_VOLUNTEER = Actor("v2", "volunteer", teams=("linli",))
REPORTER = Actor("r1", "resident")
NEIGHBOUR = Actor("r2", "resident")
OPS = Actor("o1", "ops")

WORKER_W1 = {"kind": "worker", "id": "w1"}
TEAM = {"kind": "team", "id": "dangyuan"}


def at(minutes: int) -> datetime:
    return NOW + timedelta(minutes=minutes)


def new_ticket(service: Service = LEAK, **overrides) -> Ticket:
    arguments = dict(
        id="T1", community="xingqiao", service=service, description="卫生间天花板漏水",
        address_string="3号楼2单元401", reporter="r1", source="resident", now=NOW,
    )
    arguments.update(overrides)
    return Ticket.receive(**arguments)


def drive(ticket: Ticket, *steps: str) -> Ticket:
    """Apply commands by name with sensible arguments, as a secretary."""
    commands = {
        "dispatch": lambda t: t.dispatch(WORKER_W1, at(1), SECRETARY),
        "dispatch_team": lambda t: t.dispatch(TEAM, at(1), SECRETARY),
        "accept": lambda t: t.accept(at(2), SECRETARY),
        "start": lambda t: t.start(at(3), SECRETARY),
        "pause": lambda t: t.pause("等待配件", at(4), SECRETARY),
        "resume": lambda t: t.resume(at(5), SECRETARY),
        "resolve": lambda t: t.resolve("已修补防水层", at(6), SECRETARY),
        "fixed": lambda t: t.record_callback("fixed", "好了", at(7), SECRETARY),
        "not_fixed": lambda t: t.record_callback("not_fixed", "还漏", at(7), SECRETARY),
        "partly_fixed": lambda t: t.record_callback("partly_fixed", "小了", at(7), SECRETARY),
        "cant_tell": lambda t: t.record_callback("cant_tell", "没下雨", at(7), SECRETARY),
        "bounce": lambda t: t.bounce("不属于本网格", at(8), SECRETARY),
        "close": lambda t: t.close_not_fixed("cancelled", "居民撤回", at(9), SECRETARY),
    }
    for step in steps:
        commands[step](ticket)
    return ticket


PATH_TO = {
    State.RECEIVED: (),
    State.DISPATCHED: ("dispatch",),
    State.ACCEPTED: ("dispatch", "accept"),
    State.IN_PROGRESS: ("dispatch", "accept", "start"),
    State.PAUSED: ("dispatch", "accept", "start", "pause"),
    State.RESOLVED: ("dispatch", "accept", "start", "resolve"),
    State.CONFIRMED: ("dispatch", "accept", "start", "resolve", "fixed"),
    State.REOPENED: ("dispatch", "accept", "start", "resolve", "not_fixed"),
    State.CLOSED_NOT_FIXED: ("close",),
}


def ticket_in(state: State, **overrides) -> Ticket:
    ticket = drive(new_ticket(**overrides), *PATH_TO[state])
    assert ticket.state == state
    ticket.pull_events()
    return ticket


def event_types(ticket: Ticket) -> list[str]:
    return [event.type for event in ticket.pull_events()]


# --- receiving -------------------------------------------------------------------------------------

def test_receive_takes_category_and_priority_from_the_service():
    ticket = new_ticket()
    assert (ticket.state, ticket.service_code, ticket.category, ticket.priority) == (
        State.RECEIVED, "roof_leak", "房屋设施", "urgent")
    assert (ticket.created_at, ticket.updated_at, ticket.version) == (NOW, NOW, 1)
    assert ticket.attached_residents == ["r1"]
    assert (ticket.bounce_count, ticket.reopen_count, ticket.assignee) == (0, 0, None)
    assert not ticket.is_fast_lane


def test_receive_raises_ticket_received_with_exactly_the_published_keys():
    ticket = new_ticket(lat=36.8, long=118.05)
    [event] = ticket.pull_events()
    assert event == DomainEvent("ticket.received", {
        "ticket_id": "T1", "state": "received", "service_code": "roof_leak", "category": "房屋设施",
        "priority": "urgent", "reporter": "r1", "attached_residents": ["r1"],
        "description": "卫生间天花板漏水", "address_string": "3号楼2单元401", "lat": 36.8, "long": 118.05,
        "source": "resident", "created_at": "2026-11-26T08:00:00+00:00",
        "number": None, "grid": None, "building": None,
    })
    assert ticket.pull_events() == []


def test_fast_lane_service_makes_a_critical_ticket():
    ticket = new_ticket(GAS)
    assert ticket.priority == "critical" and ticket.is_fast_lane


def test_reporter_comes_first_among_attached_residents_each_once():
    ticket = new_ticket(attached_residents=["r2", "r1", "r2", "r3"])
    assert ticket.attached_residents == ["r1", "r2", "r3"]


def test_patrol_finding_may_have_no_reporter():
    ticket = new_ticket(reporter=None, source="patrol")
    assert ticket.reporter is None and ticket.attached_residents == []


def test_coordinates_alone_are_a_location():
    ticket = new_ticket(address_string=None, lat=36.8, long=118.05)
    assert (ticket.lat, ticket.long) == (36.8, 118.05)


@pytest.mark.parametrize("overrides, error", [
    ({"description": "  "}, RequiredFieldMissing),
    ({"id": ""}, RequiredFieldMissing),
    ({"community": ""}, RequiredFieldMissing),
    ({"source": "pigeon"}, UnknownChoice),
    ({"now": datetime(2026, 11, 26, 8, 0)}, InvalidTime),
    ({"lat": 36.8}, InvalidLocation),
    ({"lat": 91.0, "long": 118.0}, InvalidLocation),
    ({"address_string": None}, RequiredFieldMissing),
])
def test_receive_rejects_incomplete_reports(overrides, error):
    with pytest.raises(error):
        new_ticket(**overrides)


def test_times_are_kept_in_utc_at_millisecond_precision():
    beijing = timezone(timedelta(hours=8))
    ticket = new_ticket(now=datetime(2026, 11, 26, 16, 0, 0, 123456, tzinfo=beijing))
    assert ticket.created_at == datetime(2026, 11, 26, 8, 0, 0, 123000, tzinfo=UTC)
    assert ticket.created_at.tzinfo is UTC


# --- allowed transitions ---------------------------------------------------------------------------

@pytest.mark.parametrize("start, step, end, events", [
    (State.RECEIVED, "dispatch", State.DISPATCHED, ["ticket.dispatched"]),
    (State.REOPENED, "dispatch", State.DISPATCHED, ["ticket.dispatched"]),
    (State.DISPATCHED, "accept", State.ACCEPTED, ["ticket.accepted"]),
    (State.ACCEPTED, "start", State.IN_PROGRESS, ["ticket.started"]),
    (State.IN_PROGRESS, "pause", State.PAUSED, ["ticket.paused"]),
    (State.PAUSED, "resume", State.IN_PROGRESS, ["ticket.resumed"]),
    (State.IN_PROGRESS, "resolve", State.RESOLVED, ["ticket.resolved"]),
    (State.RESOLVED, "fixed", State.CONFIRMED, ["ticket.callback_recorded", "ticket.confirmed"]),
    (State.RESOLVED, "not_fixed", State.REOPENED, ["ticket.callback_recorded", "ticket.reopened"]),
    (State.RESOLVED, "partly_fixed", State.REOPENED, ["ticket.callback_recorded", "ticket.reopened"]),
    (State.RESOLVED, "cant_tell", State.RESOLVED, ["ticket.callback_recorded"]),
    (State.DISPATCHED, "bounce", State.RECEIVED, ["ticket.bounced"]),
    (State.ACCEPTED, "bounce", State.RECEIVED, ["ticket.bounced"]),
    *[(state, "close", State.CLOSED_NOT_FIXED, ["ticket.closed"])
      for state in sorted(State) if state not in (State.CONFIRMED, State.CLOSED_NOT_FIXED)],
])
def test_allowed_transition(start, step, end, events):
    ticket = ticket_in(start)
    version = ticket.version
    drive(ticket, step)
    assert ticket.state == end
    assert event_types(ticket) == events
    assert ticket.version == version + 1
    assert ticket.timeline[-1]["state"] == end


def test_full_happy_path_timeline_and_open311_status():
    ticket = drive(new_ticket(), "dispatch", "accept", "start", "pause", "resume", "resolve", "fixed")
    assert [entry["type"] for entry in ticket.timeline] == [
        "ticket.received", "ticket.dispatched", "ticket.accepted", "ticket.started", "ticket.paused",
        "ticket.resumed", "ticket.resolved", "ticket.callback_recorded", "ticket.confirmed",
    ]
    assert ticket.status_open311 == "closed" and not ticket.is_open
    assert ticket.resolution_summary == "已修补防水层"


def _command(name: str):
    """Each command given by a secretary (allowed by role), to test state rules alone."""
    return {
        "dispatch": lambda t: t.dispatch(WORKER_W1, at(1), SECRETARY),
        "accept": lambda t: t.accept(at(1), SECRETARY),
        "start": lambda t: t.start(at(1), SECRETARY),
        "pause": lambda t: t.pause("等待配件", at(1), SECRETARY),
        "resume": lambda t: t.resume(at(1), SECRETARY),
        "resolve": lambda t: t.resolve("已修好", at(1), SECRETARY),
        "bounce": lambda t: t.bounce("派错了", at(1), SECRETARY),
        "record_callback": lambda t: t.record_callback("fixed", "", at(1), SECRETARY),
        "close_not_fixed": lambda t: t.close_not_fixed("cancelled", "", at(1), SECRETARY),
        "attach_resident": lambda t: t.attach_resident("r9", at(1), SECRETARY),
        "merge": lambda t: t.merge_into(new_ticket(id="T9"), at(1), SECRETARY),
        "comment": lambda t: t.comment("在跟进", "internal", at(1), SECRETARY),
        "plan": lambda t: t.plan("明早上门", "w1", at(600), at(1), SECRETARY),
    }[name]


DISALLOWED = [(state, command) for command in sorted(ALLOWED_FROM) for state in sorted(State)
              if state not in ALLOWED_FROM[command]]


@pytest.mark.parametrize("state, command", DISALLOWED)
def test_disallowed_transition_raises_and_changes_nothing(state, command):
    ticket = ticket_in(state)
    before = ticket.to_document()
    with pytest.raises(InvalidTransition) as raised:
        _command(command)(ticket)
    assert (raised.value.current_state, raised.value.command) == (state, command)
    assert f"cannot {command} a ticket that is {state}" in str(raised.value)
    assert ticket.to_document() == before
    assert ticket.pull_events() == []


def test_every_command_has_a_state_rule_and_an_authorisation_rule():
    assert set(ALLOWED_FROM) == set(AUTHORISATION)
    assert len(DISALLOWED) > 40


# --- bounces and escalation ------------------------------------------------------------------------

def test_bounce_returns_ticket_to_received_without_assignee():
    ticket = ticket_in(State.ACCEPTED)
    ticket.bounce("不属于本网格", at(10), GRID_WORKER)
    assert (ticket.state, ticket.assignee, ticket.bounce_count) == (State.RECEIVED, None, 1)
    assert ticket.created_at == NOW  # the clock keeps running from receipt
    [event] = ticket.pull_events()
    assert event.type == "ticket.bounced"
    assert event.payload["reason"] == "不属于本网格"
    assert event.payload["bounce_count"] == 1
    assert event.payload["bounced_assignee"] == WORKER_W1
    assert event.payload["previous_state"] == "accepted"
    assert not ticket.flagged_for_review


def test_second_bounce_escalates_and_flags_for_weekly_review():
    ticket = drive(ticket_in(State.DISPATCHED), "bounce", "dispatch", "bounce")
    events = ticket.pull_events()
    assert [e.type for e in events] == [
        "ticket.bounced", "ticket.dispatched", "ticket.bounced", "ticket.escalated"]
    escalated = events[-1].payload
    assert (escalated["reason"], escalated["bounce_count"], escalated["threshold"]) == ("bounced", 2, 2)
    assert escalated["version"] == events[-2].payload["version"]  # one command, one version
    assert ticket.review_flags == ["bounced_repeatedly"]


def test_every_bounce_past_the_threshold_escalates_again():
    ticket = drive(ticket_in(State.DISPATCHED), "bounce", "dispatch", "bounce", "dispatch", "bounce")
    assert event_types(ticket).count("ticket.escalated") == 2
    assert ticket.bounce_count == 3
    assert ticket.review_flags == ["bounced_repeatedly"]


@pytest.mark.parametrize("threshold, escalations", [(1, 2), (3, 0)])
def test_escalation_threshold_is_a_parameter(threshold, escalations):
    ticket = ticket_in(State.DISPATCHED)
    ticket.bounce("派错了", at(10), SECRETARY, escalate_after=threshold)
    ticket.dispatch(WORKER_W1, at(11), SECRETARY)
    ticket.bounce("又派错了", at(12), SECRETARY, escalate_after=threshold)
    assert event_types(ticket).count("ticket.escalated") == escalations


def test_escalation_threshold_must_be_positive():
    with pytest.raises(DomainError):
        ticket_in(State.DISPATCHED).bounce("派错了", at(10), SECRETARY, escalate_after=0)


# --- callbacks -------------------------------------------------------------------------------------

def test_not_fixed_reopens_with_raised_priority_and_weekly_review():
    ticket = ticket_in(State.RESOLVED)
    ticket.record_callback("not_fixed", "还在漏", at(10), REPORTER, satisfaction="dissatisfied")
    assert ticket.state == State.REOPENED
    assert (ticket.priority, ticket.priority_raises, ticket.reopen_count) == ("critical", 1, 1)
    assert ticket.review_flags == ["reopened_not_fixed"]
    recorded, reopened = ticket.pull_events()
    assert recorded.payload["outcome"] == "not_fixed"
    assert recorded.payload["satisfaction"] == "dissatisfied"
    assert recorded.payload["resident"] == "r1"
    assert reopened.payload["previous_priority"] == "urgent"
    assert reopened.payload["priority"] == "critical"
    assert reopened.payload["priority_raised"] is True
    assert reopened.payload["reopen_count"] == 1
    assert ticket.status_open311 == "open"


def test_not_fixed_on_a_critical_ticket_cannot_raise_further():
    ticket = ticket_in(State.RESOLVED, service=GAS)
    drive(ticket, "not_fixed")
    assert (ticket.priority, ticket.priority_raises) == ("critical", 0)
    assert ticket.pull_events()[-1].payload["priority_raised"] is False


def test_partly_fixed_reopens_at_the_same_priority():
    ticket = ticket_in(State.RESOLVED)
    drive(ticket, "partly_fixed")
    assert (ticket.state, ticket.priority, ticket.reopen_count) == (State.REOPENED, "urgent", 1)
    assert ticket.review_flags == ["reopened_partly_fixed"]


def test_reopened_ticket_goes_round_again_and_old_answers_do_not_count():
    ticket = ticket_in(State.REOPENED)
    drive(ticket, "dispatch", "accept", "start", "resolve")
    assert ticket.callback_round == 2
    ticket.record_callback("cant_tell", "", at(20), SECRETARY)
    assert ticket.state == State.RESOLVED
    assert ticket.callbacks[-1]["attempt"] == 1
    drive(ticket, "fixed")
    assert ticket.state == State.CONFIRMED


def test_cant_tell_keeps_ticket_resolved_and_counts_attempts():
    ticket = drive(ticket_in(State.RESOLVED), "cant_tell", "cant_tell")
    assert ticket.state == State.RESOLVED
    assert [entry["attempt"] for entry in ticket.callbacks] == [1, 2]
    assert ticket.pull_events()[-1].payload["pending_respondents"] == ["r1"]


def test_third_unanswered_attempt_keeps_ticket_resolved_and_flags_it():
    ticket = ticket_in(State.RESOLVED)
    for minute in (10, 20, 30):
        ticket.record_callback("no_answer", "无人接听", at(minute), SECRETARY)
    assert ticket.state == State.RESOLVED
    assert ticket.review_flags == ["callback_unanswered"]
    assert ticket.pull_events()[-1].payload["pending_respondents"] == []
    with pytest.raises(CallbackAttemptsExhausted):
        ticket.record_callback("no_answer", "", at(40), SECRETARY)


def test_late_answer_after_exhausted_attempts_still_confirms():
    ticket = ticket_in(State.RESOLVED)
    for minute in (10, 20, 30):
        ticket.record_callback("cant_tell", "", at(minute), SECRETARY)
    ticket.record_callback("fixed", "回来看了，好了", at(60), REPORTER)
    assert ticket.state == State.CONFIRMED


def test_max_attempts_is_a_parameter():
    ticket = ticket_in(State.RESOLVED)
    ticket.record_callback("no_answer", "", at(10), SECRETARY, max_attempts=1)
    assert ticket.review_flags == ["callback_unanswered"]


def test_every_attached_resident_gets_their_own_callback():
    ticket = ticket_in(State.RESOLVED, attached_residents=["r2"])
    ticket.record_callback("fixed", "", at(10), REPORTER)
    assert ticket.state == State.RESOLVED
    assert ticket.pull_events()[-1].payload["pending_respondents"] == ["r2"]
    ticket.record_callback("fixed", "", at(11), NEIGHBOUR, satisfaction="basically_satisfied")
    assert ticket.state == State.CONFIRMED
    confirmed = ticket.pull_events()[-1]
    assert confirmed.type == "ticket.confirmed"
    assert (confirmed.payload["fixed_by"], confirmed.payload["unreachable"]) == (["r1", "r2"], [])


def test_confirmed_when_the_others_are_unreachable():
    ticket = ticket_in(State.RESOLVED, attached_residents=["r2"])
    for minute in (10, 20, 30):
        ticket.record_callback("no_answer", "", at(minute), SECRETARY, resident="r2")
    ticket.record_callback("fixed", "", at(40), SECRETARY, resident="r1")
    assert ticket.state == State.CONFIRMED
    assert ticket.pull_events()[-1].payload["unreachable"] == ["r2"]


def test_any_attached_resident_saying_not_fixed_reopens():
    ticket = ticket_in(State.RESOLVED, attached_residents=["r2"])
    ticket.record_callback("fixed", "", at(10), REPORTER)
    ticket.record_callback("not_fixed", "我家还漏", at(11), NEIGHBOUR)
    assert ticket.state == State.REOPENED


def test_staff_must_say_whose_answer_when_several_residents_are_attached():
    ticket = ticket_in(State.RESOLVED, attached_residents=["r2"])
    with pytest.raises(RespondentRequired):
        ticket.record_callback("fixed", "", at(10), SECRETARY)


def test_callback_for_a_resident_not_attached_is_refused():
    ticket = ticket_in(State.RESOLVED)
    with pytest.raises(NotAttached):
        ticket.record_callback("fixed", "", at(10), SECRETARY, resident="r9")
    with pytest.raises(NotAllowed):
        ticket.record_callback("fixed", "", at(10), Actor("r9", "resident"))


def test_patrol_ticket_without_residents_is_confirmed_by_the_on_site_check():
    ticket = drive(new_ticket(reporter=None, source="patrol"), "dispatch", "accept", "start", "resolve")
    ticket.record_callback("fixed", "现场复查已修好", at(10), GRID_WORKER)
    assert ticket.state == State.CONFIRMED
    assert ticket.callbacks[-1]["resident"] is None


@pytest.mark.parametrize("outcome, satisfaction", [("mostly", None), ("fixed", "ecstatic")])
def test_callback_choices_are_checked(outcome, satisfaction):
    with pytest.raises(UnknownChoice):
        ticket_in(State.RESOLVED).record_callback(outcome, "", at(10), SECRETARY, satisfaction=satisfaction)


# --- required reasons ------------------------------------------------------------------------------

@pytest.mark.parametrize("state, command", [
    (State.IN_PROGRESS, lambda t, reason: t.pause(reason, at(10), SECRETARY)),
    (State.DISPATCHED, lambda t, reason: t.bounce(reason, at(10), SECRETARY)),
    (State.IN_PROGRESS, lambda t, reason: t.resolve(reason, at(10), SECRETARY)),
    (State.RECEIVED, lambda t, reason: t.close_not_fixed(reason, "", at(10), SECRETARY)),
])
@pytest.mark.parametrize("reason", [None, "", "   "])
def test_reasons_are_required(state, command, reason):
    ticket = ticket_in(state)
    with pytest.raises(ReasonRequired, match="needs a non-empty"):
        command(ticket, reason)
    assert ticket.state == state


@pytest.mark.parametrize("reason", sorted(CLOSE_REASONS))
def test_close_not_fixed_with_each_sub_reason(reason):
    ticket = ticket_in(State.IN_PROGRESS)
    ticket.close_not_fixed(reason, "说明", at(10), SECRETARY)
    assert (ticket.state, ticket.close_reason, ticket.status_open311) == (
        State.CLOSED_NOT_FIXED, reason, "closed")
    [event] = ticket.pull_events()
    assert (event.type, event.payload["reason"], event.payload["note"]) == ("ticket.closed", reason, "说明")


def test_close_as_duplicate_names_the_master():
    ticket = new_ticket(id="T2")
    ticket.close_not_fixed("duplicate", "同一下水道", at(10), GRID_WORKER, duplicate_of="T1")
    assert ticket.pull_events()[-1].payload["duplicate_of"] == "T1"


def test_unknown_close_reason_is_refused():
    with pytest.raises(UnknownChoice, match="'lazy'"):
        new_ticket().close_not_fixed("lazy", "", at(10), SECRETARY)


def test_pause_records_reason_and_expected_resumption():
    ticket = ticket_in(State.IN_PROGRESS)
    ticket.pause("等待防水材料", at(10), SECRETARY, until=at(60 * 24))
    [event] = ticket.pull_events()
    assert event.payload["reason"] == "等待防水材料"
    assert event.payload["until"] == "2026-11-27T08:00:00+00:00"
    assert ticket.timeline[-1]["until"] == at(60 * 24)


@pytest.mark.parametrize("assignee", [{"kind": "robot", "id": "x"}, {"kind": "team", "id": ""}, "w1"])
def test_dispatch_needs_a_valid_assignee(assignee):
    with pytest.raises(InvalidAssignee):
        new_ticket().dispatch(assignee, at(1), SECRETARY)


def test_commands_need_aware_times():
    with pytest.raises(InvalidTime):
        new_ticket().dispatch(WORKER_W1, datetime(2026, 11, 26, 9, 0), SECRETARY)


# --- who may do what -------------------------------------------------------------------------------

@pytest.mark.parametrize("actor", [GRID_WORKER, SECRETARY, ADMIN])
def test_staff_roles_may_run_the_whole_life(actor):
    ticket = new_ticket()
    ticket.dispatch(TEAM, at(1), actor)
    ticket.accept(at(2), actor)
    ticket.start(at(3), actor)
    ticket.pause("等待配件", at(4), actor)
    ticket.resume(at(5), actor)
    ticket.resolve("修好了", at(6), actor)
    ticket.record_callback("fixed", "", at(7), actor)
    assert ticket.state == State.CONFIRMED


@pytest.mark.parametrize("assignee", [TEAM, {"kind": "worker", "id": "v1"}])
def test_volunteer_may_accept_start_and_resolve_what_is_dispatched_to_them(assignee):
    ticket = new_ticket()
    ticket.dispatch(assignee, at(1), SECRETARY)
    ticket.accept(at(2), VOLUNTEER)
    ticket.start(at(3), VOLUNTEER)
    ticket.resolve("帮老人买好了药", at(4), VOLUNTEER)
    assert ticket.state == State.RESOLVED


def test_volunteer_may_bounce_what_is_dispatched_to_their_team():
    ticket = ticket_in(State.RECEIVED)
    ticket.dispatch(TEAM, at(1), SECRETARY)
    ticket.bounce("需要专业维修", at(2), VOLUNTEER)
    assert ticket.bounce_count == 1


@pytest.mark.parametrize("command", ["accept", "bounce"])
def test_volunteer_of_another_team_may_not_act(command):
    ticket = new_ticket()
    ticket.dispatch(TEAM, at(1), SECRETARY)
    action = {"accept": lambda: ticket.accept(at(2), OTHER_VOLUNTEER),
              "bounce": lambda: ticket.bounce("不想做", at(2), OTHER_VOLUNTEER)}[command]
    with pytest.raises(NotAllowed, match="not dispatched to them or their team"):
        action()


@pytest.mark.parametrize("state, action", [
    (State.RECEIVED, lambda t, a: t.dispatch(TEAM, at(10), a)),
    (State.IN_PROGRESS, lambda t, a: t.pause("累了", at(10), a)),
    (State.PAUSED, lambda t, a: t.resume(at(10), a)),
    (State.RECEIVED, lambda t, a: t.close_not_fixed("cancelled", "", at(10), a)),
])
def test_volunteer_may_not_dispatch_pause_resume_or_close(state, action):
    ticket = ticket_in(state)
    ticket.assignee = TEAM
    with pytest.raises(NotAllowed, match="the role 'volunteer' may not"):
        action(ticket, VOLUNTEER)


@pytest.mark.parametrize("state, action", [
    (State.RECEIVED, lambda t, a: t.dispatch(TEAM, at(10), a)),
    (State.DISPATCHED, lambda t, a: t.accept(at(10), a)),
    (State.ACCEPTED, lambda t, a: t.start(at(10), a)),
    (State.IN_PROGRESS, lambda t, a: t.pause("等等", at(10), a)),
    (State.PAUSED, lambda t, a: t.resume(at(10), a)),
    (State.IN_PROGRESS, lambda t, a: t.resolve("好了", at(10), a)),
    (State.DISPATCHED, lambda t, a: t.bounce("不对", at(10), a)),
    (State.RECEIVED, lambda t, a: t.close_not_fixed("cancelled", "", at(10), a)),
])
@pytest.mark.parametrize("actor", [REPORTER, OPS, Actor("h1", "integrator")])
def test_residents_and_other_roles_may_not_work_tickets(state, action, actor):
    ticket = ticket_in(state)
    with pytest.raises(NotAllowed):
        action(ticket, actor)
    assert ticket.state == state


def test_resident_may_attach_only_themselves():
    ticket = new_ticket()
    ticket.attach_resident("r2", at(10), NEIGHBOUR)
    assert ticket.attached_residents == ["r1", "r2"]
    with pytest.raises(NotAllowed, match="only act for themselves"):
        ticket.attach_resident("r3", at(11), NEIGHBOUR)


def test_resident_may_record_only_their_own_callback():
    ticket = ticket_in(State.RESOLVED, attached_residents=["r2"])
    with pytest.raises(NotAllowed, match="only act for themselves"):
        ticket.record_callback("fixed", "", at(10), NEIGHBOUR, resident="r1")
    ticket.record_callback("cant_tell", "", at(10), NEIGHBOUR)
    assert ticket.callbacks[-1]["resident"] == "r2"


# --- attaching duplicates' reporters ---------------------------------------------------------------

def test_attach_resident_raises_ticket_attached():
    ticket = ticket_in(State.DISPATCHED)
    ticket.attach_resident("r2", at(10), GRID_WORKER)
    [event] = ticket.pull_events()
    assert (event.type, event.payload["resident"]) == ("ticket.attached", "r2")
    assert event.payload["attached_residents"] == ["r1", "r2"]


def test_attaching_twice_changes_nothing():
    ticket = ticket_in(State.DISPATCHED)
    ticket.attach_resident("r1", at(10), GRID_WORKER)
    assert ticket.pull_events() == [] and ticket.attached_residents == ["r1"]


def test_attach_needs_a_resident_id():
    with pytest.raises(RequiredFieldMissing):
        new_ticket().attach_resident("", at(10), GRID_WORKER)


# --- events ----------------------------------------------------------------------------------------

def _busy_ticket() -> Ticket:
    ticket = new_ticket(attached_residents=["r2"], lat=36.8, long=118.05)
    drive(ticket, "dispatch", "bounce", "dispatch_team", "bounce", "dispatch", "accept", "start")
    ticket.pause("等待配件", at(20), SECRETARY, until=at(600))
    drive(ticket, "resume", "resolve")
    ticket.attach_resident("r3", at(30), GRID_WORKER)
    ticket.record_callback("fixed", "好了", at(40), REPORTER, satisfaction="satisfied")
    ticket.record_callback("partly_fixed", "还有点", at(41), NEIGHBOUR)
    drive(ticket, "dispatch", "accept", "start", "resolve")
    for who in ("r1", "r2", "r3"):
        ticket.record_callback("fixed", "", at(50), SECRETARY, resident=who)
    return ticket


def test_every_event_type_occurs_in_a_busy_life():
    types = {event.type for event in _busy_ticket().pull_events()}
    types |= {event.type for event in drive(new_ticket(), "close").pull_events()}
    master, duplicate = new_ticket(id="T0"), new_ticket(reporter="r7")
    duplicate.comment("已联系物业", "resident", at(1), SECRETARY)
    duplicate.plan("明早上门查看", "w1", at(600), at(2), SECRETARY)
    duplicate.merge_into(master, at(3), SECRETARY)
    master.absorb(duplicate.id, duplicate.attached_residents, at(3), SECRETARY)
    types |= {event.type for ticket in (master, duplicate) for event in ticket.pull_events()}
    assert types == {event_type.value for event_type in TicketEventType}


def test_every_payload_is_json_ready_and_carries_the_common_keys():
    ticket = _busy_ticket()
    events = ticket.pull_events()
    assert ticket.state == State.CONFIRMED
    for event in events:
        assert json.loads(json.dumps(event.payload, ensure_ascii=False)) == event.payload
        assert {"ticket_id", "state", "attached_residents"} <= set(event.payload)
        assert type(event.payload["state"]) is str
    for event in events[1:]:
        assert {"community", "priority", "version", "occurred_at", "actor", "assignee"} <= set(event.payload)


def test_events_and_timeline_match_one_to_one_and_versions_grow():
    ticket = _busy_ticket()
    events = ticket.pull_events()
    assert [entry["type"] for entry in ticket.timeline] == [event.type for event in events]
    versions = [event.payload.get("version") for event in events[1:]]
    assert versions == sorted(versions) and versions[-1] == ticket.version
    assert ticket.pull_events() == []


def test_payload_state_is_the_state_after_the_event():
    ticket = ticket_in(State.RESOLVED)
    drive(ticket, "not_fixed")
    recorded, reopened = ticket.pull_events()
    assert (recorded.payload["state"], reopened.payload["state"]) == ("resolved", "reopened")


def test_payloads_satisfy_the_platform_event_catalogue():
    events_module = pytest.importorskip("kernel.events")
    for event in _busy_ticket().pull_events() + drive(new_ticket(), "close").pull_events():
        version = events_module.current_version(event.type)
        schema = events_module.CATALOGUE[event.type].schemas[version]
        assert schema().validate(event.payload) == {}, event.type


def test_actor_and_occurred_at_in_payloads():
    ticket = ticket_in(State.RECEIVED)
    ticket.dispatch(TEAM, at(1), GRID_WORKER)
    [event] = ticket.pull_events()
    assert event.payload["actor"] == {"subject": "w1", "role": "grid_worker"}
    assert event.payload["occurred_at"] == "2026-11-26T08:01:00+00:00"
    assert event.payload["assignee"] == TEAM


def test_first_response_is_the_first_staff_action():
    ticket = new_ticket()
    ticket.attach_resident("r2", at(1), NEIGHBOUR)
    assert ticket.first_response_at is None
    drive(ticket, "dispatch", "accept")
    assert ticket.first_response_at == at(1)


def test_domain_event_is_immutable():
    with pytest.raises(AttributeError):
        DomainEvent("ticket.received", {}).type = "x"


# --- documents -------------------------------------------------------------------------------------

def test_document_round_trip_keeps_everything():
    ticket = _busy_ticket()
    document = ticket.to_document()
    assert document["_id"] == "T1" and "id" not in document and "pending_events" not in document
    assert type(document["state"]) is str
    assert isinstance(document["created_at"], datetime)
    assert isinstance(document["timeline"][0]["at"], datetime)
    assert Ticket.from_document(document) == ticket


def test_document_is_a_copy():
    ticket = new_ticket()
    document = ticket.to_document()
    document["attached_residents"].append("r9")
    document["timeline"][0]["type"] = "x"
    assert ticket.attached_residents == ["r1"] and ticket.timeline[0]["type"] == "ticket.received"


def test_document_from_mongo_with_naive_datetimes_and_an_outbox():
    original = drive(new_ticket(), "dispatch")
    document = original.to_document()
    document["created_at"] = document["created_at"].replace(tzinfo=None)
    document["timeline"][1]["at"] = document["timeline"][1]["at"].replace(tzinfo=None)
    document["_outbox"] = [{"type": "ticket.dispatched"}]
    loaded = Ticket.from_document(document)
    assert loaded.created_at == NOW and loaded.created_at.tzinfo is UTC
    assert loaded.timeline[1]["at"] == at(1)
    assert loaded == original and loaded.pending_events == []


def echo(event_id: str, minutes: float, kind: str = "echo.delivered") -> dict:
    return {"type": kind, "at": NOW + timedelta(minutes=minutes), "event_id": event_id, "channel": "inbox",
            "recipient": "r1", "source_event_type": "ticket.received"}


def step(event_id: str, minutes: float, kind: str = "volunteer.accepted") -> dict:
    return {"type": kind, "at": NOW + timedelta(minutes=minutes), "event_id": event_id, "volunteer": "v1",
            "task_id": "a1", "summary": "v1"}


def test_side_entries_are_read_with_the_document_and_never_written_into_it():
    document = drive(new_ticket(), "dispatch").to_document()
    naive = {**step("e1", 0.5), "at": (NOW + timedelta(minutes=0.5)).replace(tzinfo=None)}
    loaded = Ticket.from_document(document, [naive])
    assert loaded.side_entries == [step("e1", 0.5)] and loaded.side_entries[0]["at"].tzinfo is UTC
    assert loaded.echoes == []  # notify's: the service attaches them to what it shows
    assert loaded == Ticket.from_document(document)  # side entries are not the ticket's state
    loaded.echoes = [echo("e2", 0.7)]
    loaded.accept(at(2), SECRETARY)
    saved = loaded.to_document()
    assert "side_entries" not in saved and "echoes" not in saved
    assert [entry["type"] for entry in saved["timeline"]] == ["ticket.received", "ticket.dispatched",
                                                              "ticket.accepted"]


def test_history_merges_side_entries_and_echoes_into_the_timeline_in_time_order():
    ticket = drive(new_ticket(), "dispatch", "accept")  # at NOW, at(1), at(2)
    ticket.echoes = [echo("late", 5), echo("tie", 1, "echo.failed"), echo("early", 0.5)]
    ticket.side_entries = [step("offered", 1.5, "volunteer.offered"), step("in", 1, "volunteer.checked_in")]
    assert [(entry["type"], entry.get("event_id")) for entry in ticket.history] == [
        ("ticket.received", None), ("echo.delivered", "early"), ("ticket.dispatched", None),
        ("volunteer.checked_in", "in"), ("echo.failed", "tie"), ("volunteer.offered", "offered"),
        ("ticket.accepted", None), ("echo.delivered", "late")]
    assert len(ticket.timeline) == 3  # the view only


def test_history_shows_an_echo_once_that_an_older_document_holds_in_its_timeline():
    ticket = new_ticket()
    ticket.timeline.append(echo("e1", 1))  # recorded by the timeline update of earlier releases
    ticket.echoes = [echo("e1", 1), echo("e2", 2)]
    assert [entry.get("event_id") for entry in ticket.history] == [None, "e1", "e2"]


def test_loaded_ticket_continues_where_it_left_off():
    loaded = Ticket.from_document(ticket_in(State.DISPATCHED).to_document())
    loaded.accept(at(10), SECRETARY)
    assert loaded.state == State.ACCEPTED and loaded.version == 3


# --- Open311 -----------------------------------------------------------------------------------------

def test_open311_status_covers_every_state():
    assert set(OPEN311_STATUS) == set(State)
    assert {state for state, status in OPEN311_STATUS.items() if status == "closed"} == {
        State.CONFIRMED, State.CLOSED_NOT_FIXED}
    assert OPEN311_STATUS["paused"] == "open"


@pytest.mark.parametrize("state", sorted(State))
def test_status_open311_property(state):
    ticket = ticket_in(state)
    assert ticket.status_open311 == OPEN311_STATUS[state]
    assert ticket.is_open == (ticket.status_open311 == "open")


@pytest.mark.parametrize("priority, raised", [
    ("low", "normal"), ("normal", "urgent"), ("urgent", "critical"), ("critical", "critical")])
def test_raise_priority(priority, raised):
    assert raise_priority(priority) == raised


def test_noise_is_low_priority_and_not_fixed_raises_it_to_normal():
    ticket = ticket_in(State.RESOLVED, service=NOISE)
    drive(ticket, "not_fixed")
    assert ticket.priority == "normal"

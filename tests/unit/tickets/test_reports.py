"""What counts where: the facts of a ticket, the three rates, 日清 and 周议 (services/tickets/reports.py). No I/O."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest

from services.tickets import reports
from services.tickets.catalogue import Catalogue
from services.tickets.domain import Actor, Ticket
from services.tickets.readmodel import counter_documents, counter_updates, facts_of

T0 = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai, Tuesday 1 December
DAY = "2026-12-01"
SECRETARY, WORKER = Actor("s1", "secretary"), Actor("w1", "grid_worker", grids=("g1",))
RESIDENT, OTHER = Actor("r1", "resident"), Actor("r2", "resident")
LEAK = Catalogue.load().get("roof_leak")


def received(at: datetime = T0, response_due: timedelta = timedelta(hours=2), **placed) -> Ticket:
    ticket = Ticket.receive("T1", "xq", LEAK, "漏水", "3号楼", "r1", "resident", at,
                            grid=placed.get("grid", "g1"), building=placed.get("building", "b03"))
    ticket.response_due_at = at + response_due
    ticket.pull_events()
    return ticket


def worked(ticket: Ticket, at: datetime) -> Ticket:
    """Dispatched at ``at`` (the first response), accepted, started, resolved an hour later."""
    ticket.dispatch({"kind": "worker", "id": "w1"}, at, SECRETARY)
    ticket.accept(at, WORKER)
    ticket.start(at, WORKER)
    ticket.resolve("修好了", at + timedelta(hours=1), WORKER)
    return ticket


def metrics(ticket: Ticket, now: datetime) -> Counter:
    """The facts summed over days, grids and categories: ``{metric: n}``."""
    found: Counter = Counter()
    for (_, _, _, metric), n in reports.ticket_facts(ticket.to_document(), now).items():
        found[metric] += n
    return found


def test_a_ticket_answered_in_time_counts_as_a_response_met_on_its_deadline_day():
    ticket = worked(received(), T0 + timedelta(minutes=30))
    facts = reports.ticket_facts(ticket.to_document(), T0 + timedelta(days=1))
    assert facts[(DAY, "g1", LEAK.category, reports.RESPONSE_MET)] == 1
    assert facts[(DAY, "g1", LEAK.category, reports.RECEIVED)] == 1
    assert facts[(DAY, "g1", LEAK.category, "building:b03")] == 1
    assert facts[(DAY, "g1", LEAK.category, reports.CLAIMED)] == 1
    assert reports.RESPONSE_MISSED not in {key[3] for key in facts}


def test_open_and_late_is_a_miss_once_the_deadline_passed_and_not_before():
    ticket = received()
    assert metrics(ticket, T0 + timedelta(hours=1))[reports.RESPONSE_MISSED] == 0  # still in time
    late = metrics(ticket, T0 + timedelta(hours=3))
    assert late[reports.RESPONSE_MISSED] == 1 and late[reports.RESPONSE_MET] == 0


def test_a_late_first_response_is_a_miss():
    ticket = worked(received(), T0 + timedelta(hours=5))
    found = metrics(ticket, T0 + timedelta(days=1))
    assert (found[reports.RESPONSE_MISSED], found[reports.RESPONSE_MET]) == (1, 0)


def test_the_response_counts_on_the_day_its_deadline_fell_in_shanghai():
    evening = datetime(2026, 12, 1, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai; deadline 00:30 the next day there
    ticket = received(at=evening, response_due=timedelta(hours=1))
    facts = reports.ticket_facts(ticket.to_document(), evening + timedelta(hours=2))
    assert facts[("2026-12-02", "g1", LEAK.category, reports.RESPONSE_MISSED)] == 1
    assert facts[(DAY, "g1", LEAK.category, reports.RECEIVED)] == 1


def test_an_internal_plan_is_no_first_response():
    ticket = received()
    ticket.plan("明天上门", "w1", T0 + timedelta(days=1), T0 + timedelta(minutes=10), SECRETARY)
    assert ticket.first_response_at is None
    assert metrics(ticket, T0 + timedelta(hours=3))[reports.RESPONSE_MISSED] == 1


def test_fixed_at_callback_counts_called_back_fixed_answered_and_satisfied():
    ticket = worked(received(), T0)
    ticket.record_callback("fixed", "好了", T0 + timedelta(days=1), RESIDENT, satisfaction="satisfied")
    found = metrics(ticket, T0 + timedelta(days=2))
    assert {metric: found[metric] for metric in (reports.CALLED_BACK, reports.FIXED, reports.ANSWERED,
                                                 reports.SATISFIED, reports.UNANSWERED)} == {
        reports.CALLED_BACK: 1, reports.FIXED: 1, reports.ANSWERED: 1, reports.SATISFIED: 1, reports.UNANSWERED: 0}


def test_partly_fixed_is_called_back_but_not_fixed_and_reopens():
    ticket = worked(received(), T0)
    ticket.record_callback("partly_fixed", "还滴", T0 + timedelta(days=1), RESIDENT, satisfaction="basically_satisfied")
    found = metrics(ticket, T0 + timedelta(days=2))
    assert (found[reports.CALLED_BACK], found[reports.FIXED], found[reports.REOPENED]) == (1, 0, 1)
    assert found[reports.SATISFIED] == 1  # 基本满意 counts as satisfied, whatever the fix


def test_unanswered_callbacks_are_counted_apart_never_as_satisfied_or_called_back():
    ticket = worked(received(), T0)
    for attempt in range(3):
        ticket.record_callback("no_answer", None, T0 + timedelta(days=1, hours=attempt), SECRETARY)
    found = metrics(ticket, T0 + timedelta(days=2))
    assert found[reports.UNANSWERED] == 1
    assert (found[reports.CALLED_BACK], found[reports.ANSWERED], found[reports.SATISFIED]) == (0, 0, 0)
    assert ticket.state == "resolved"  # nobody confirmed it


def test_a_late_answer_after_no_answer_is_answered_not_unanswered():
    ticket = worked(received(), T0)
    ticket.record_callback("no_answer", None, T0 + timedelta(days=1), SECRETARY)
    ticket.record_callback("fixed", None, T0 + timedelta(days=1, hours=2), SECRETARY, satisfaction="dissatisfied")
    found = metrics(ticket, T0 + timedelta(days=2))
    assert (found[reports.UNANSWERED], found[reports.ANSWERED], found[reports.FIXED]) == (0, 1, 1)
    assert found[reports.SATISFIED] == 0  # fixed, but 不满意


def test_reopened_then_fixed_counts_two_claims_two_callbacks_one_fix():
    ticket = worked(received(), T0)
    ticket.record_callback("not_fixed", "没修好", T0 + timedelta(days=1), RESIDENT)
    ticket.dispatch({"kind": "worker", "id": "w1"}, T0 + timedelta(days=1, hours=1), SECRETARY)
    ticket.accept(T0 + timedelta(days=1, hours=1), WORKER)
    ticket.start(T0 + timedelta(days=1, hours=1), WORKER)
    ticket.resolve("换了防水层", T0 + timedelta(days=2), WORKER)
    ticket.record_callback("fixed", None, T0 + timedelta(days=3), RESIDENT, satisfaction="satisfied")
    found = metrics(ticket, T0 + timedelta(days=4))
    assert (found[reports.CLAIMED], found[reports.CALLED_BACK], found[reports.FIXED], found[reports.REOPENED]) == (
        2, 2, 1, 1)
    result = reports.rates(found)
    assert result["resolution_rate"] == {"numerator": 1, "denominator": 2, "rate": 0.5}
    assert result["claimed_resolution_rate"]["rate"] == 1.0  # staff claimed both resolutions


def test_every_attached_resident_has_their_own_callback():
    ticket = received()
    ticket.attach_resident("r2", T0, OTHER)
    worked(ticket, T0)
    ticket.record_callback("fixed", None, T0 + timedelta(days=1), RESIDENT, satisfaction="satisfied")
    ticket.record_callback("no_answer", None, T0 + timedelta(days=1), SECRETARY, resident="r2")
    found = metrics(ticket, T0 + timedelta(days=2))
    assert (found[reports.CALLED_BACK], found[reports.UNANSWERED]) == (1, 1)


def test_closing_without_a_fix_counts_for_the_claimed_rate_unless_a_duplicate():
    substantive, duplicate = received(), received()
    substantive.close_not_fixed("not_responsible", "转燃气公司", T0 + timedelta(hours=1), SECRETARY)
    duplicate.close_not_fixed("duplicate", None, T0 + timedelta(hours=1), SECRETARY)
    assert metrics(substantive, T0 + timedelta(days=1))[reports.CLOSED_UNFIXED] == 1
    assert metrics(duplicate, T0 + timedelta(days=1))[reports.CLOSED_UNFIXED] == 0


def test_rates_are_null_with_nothing_counted():
    result = reports.rates({})
    assert all(result[name]["rate"] is None for name in (
        "response_rate", "resolution_rate", "claimed_resolution_rate", "satisfaction_rate"))


def test_facts_difference_applied_twice_changes_nothing_the_second_time():
    ticket = received()
    before = reports.ticket_facts(ticket.to_document(), T0)
    worked(ticket, T0 + timedelta(minutes=5))
    after = reports.ticket_facts(ticket.to_document(), T0 + timedelta(hours=3))
    difference = reports.facts_difference(before, after)
    assert difference[(DAY, "g1", LEAK.category, reports.RESPONSE_MET)] == 1
    assert reports.facts_difference(after, after) == {}
    assert reports.decode_facts(reports.encode_facts(after)) == dict(after)


def test_counter_updates_and_whole_documents_agree():
    ticket = worked(received(), T0)
    facts = reports.ticket_facts(ticket.to_document(), T0 + timedelta(days=1))
    (update,) = counter_updates("xq", facts)
    (document,) = counter_documents({"xq": facts})
    assert update._filter == {"_id": document["_id"]}
    assert update._doc["$inc"]["m.received"] == document["m"]["received"] == 1
    assert document["b"] == {"b03": 1}
    assert facts_of([ticket.to_document()], T0 + timedelta(days=1)) == +facts


def test_unplaced_tickets_count_under_the_empty_grid():
    ticket = received(grid=None)
    assert ("2026-12-01", "", LEAK.category, reports.RECEIVED) in reports.ticket_facts(ticket.to_document(), T0)


# --- periods -------------------------------------------------------------------------------------------

def test_the_default_rate_period_is_the_last_30_days_inclusive():
    first, last = reports.rate_period(None, None, datetime(2026, 12, 6, 20, tzinfo=UTC))  # 04:00 on the 7th there
    assert (first, last) == (date(2026, 11, 8), date(2026, 12, 7))
    assert len(reports.days_between(first, last)) == 30


@pytest.mark.parametrize("start, end", [("2026-12-07", "2026-12-06"), ("2026-13-01", None), ("yesterday", None),
                                        ("2024-01-01", "2026-01-01")])
def test_bad_periods_are_refused_with_the_field_named(start, end):
    with pytest.raises(reports.ReportQueryInvalid) as refused:
        reports.rate_period(start, end, T0)
    assert set(refused.value.problems) <= {"from", "to"}


@pytest.mark.parametrize("week", ["2026-W54", "2026-49", "W49", None])
def test_bad_weeks_are_refused(week):
    with pytest.raises(reports.ReportQueryInvalid):
        reports.parse_week(week)


# --- 日清 ----------------------------------------------------------------------------------------------

def doc(ticket_id: str, state: str, **extra) -> dict:
    return {"_id": ticket_id, "number": f"XQ-20261201-{ticket_id[-4:]}", "state": state, "grid": "g1",
            "category": LEAK.category, "created_at": T0, **extra}


def test_daily_clearance_sorts_open_tickets_and_lists_the_rest_per_grid_and_owner():
    moment = reports.clearance_moment(date(2026, 12, 1))
    documents = [
        doc("T-0001", "received"),  # uncleared, nobody's yet
        doc("T-0002", "accepted", assignee={"kind": "worker", "id": "w1"}),  # uncleared, w1's
        doc("T-0003", "accepted", assignee={"kind": "worker", "id": "w1"},
            next_step={"owner": "w1", "due_at": moment + timedelta(days=1)}),  # planned
        doc("T-0004", "paused"),  # deferred
        doc("T-0005", "resolved"),  # awaiting its callback
        doc("T-0006", "accepted", next_step={"owner": "w1", "due_at": moment - timedelta(days=1)}),  # lapsed step
        doc("T-0007", "received", created_at=moment + timedelta(minutes=1)),  # after the clearance: tomorrow's
        doc("T-0008", "received", grid="g2", suggested_owner="w2"),
    ]
    report = reports.daily_report(date(2026, 12, 1), moment, documents, closed_that_day=4)
    assert report["cleared"] == {"closed_today": 4, "planned": 1, "deferred": 1, "awaiting_callback": 1}
    assert report["open"] == 7 and report["uncleared"]["count"] == 4
    by_grid = {group["grid"]: group for group in report["uncleared"]["by_grid"]}
    assert {owner["owner"]: owner["count"] for owner in by_grid["g1"]["owners"]} == {None: 1, "w1": 2}
    assert [line["number"] for line in by_grid["g2"]["owners"][0]["tickets"]] == ["XQ-20261201-0008"]
    assert "description" not in by_grid["g2"]["owners"][0]["tickets"][0]


# --- 周议 ----------------------------------------------------------------------------------------------

def test_weekly_agenda_items():
    monday, sunday = reports.parse_week("2026-W49")
    week = reports.Week(monday, sunday)
    inside = week.start + timedelta(days=2)
    documents = [
        doc("T-0001", "accepted", due_at=inside),  # overdue
        doc("T-0002", "reopened", timeline=[{"type": "ticket.reopened", "at": inside}], reopen_count=1),
        doc("T-0003", "confirmed", callbacks=[{"at": inside, "outcome": "fixed", "satisfaction": "dissatisfied"}]),
        doc("T-0004", "received", bounce_count=2, timeline=[{"type": "ticket.bounced", "at": inside}]),
        doc("T-0005", "resolved", review_flags=["callback_unanswered"]),
        doc("T-0006", "confirmed", bounce_count=3, timeline=[{"type": "ticket.bounced", "at": week.start
                                                              - timedelta(days=3)}]),  # bounced, but not this week
    ]
    repeats = reports.repeat_problems([{"category": "c", "b": {"b1": 3}}])
    agenda = reports.weekly_agenda(week, week.end + timedelta(days=1), documents, repeats, {"items": [], "note": "x"})
    assert agenda["week"] == "2026-W49" and agenda["from"] == "2026-11-30"
    assert {name: [line["id"] for line in agenda[name]["tickets"]] for name in (
        "overdue", "reopened", "unsatisfied", "bounced_repeatedly", "callback_unanswered")} == {
        "overdue": ["T-0001"], "reopened": ["T-0002"], "unsatisfied": ["T-0003"], "bounced_repeatedly": ["T-0004"],
        "callback_unanswered": ["T-0005"]}
    assert agenda["repeat_problems"]["items"] == [{"building": "b1", "category": "c", "count": 3}]

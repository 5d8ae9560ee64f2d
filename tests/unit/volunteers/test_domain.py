"""The volunteers' rules without I/O: availability, matching and fairness, hours, wishes, coverage, imports."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from kernel.envelope import Envelope, MalformedEvent
from kernel.events import validate_outgoing
from services.volunteers import domain
from services.volunteers.domain import Need, VolunteerError

SAT_10_LOCAL = datetime(2026, 12, 12, 2, 0, tzinfo=UTC)  # Saturday 10:00 in Shanghai
WEEKEND = [{"day": 5, "start": "08:00", "end": "18:00"}, {"day": 6, "start": "08:00", "end": "18:00"}]


def volunteer(vid: str, *, skills=("plumbing",), grid="g1", availability=WEEKEND, status="active", exceptions=()):
    return {"_id": vid, "skills": list(skills), "grid": grid, "availability": list(availability),
            "exceptions": list(exceptions), "status": status}


# --- availability

def test_a_night_slot_runs_past_midnight_into_the_next_day():
    night = [{"day": 4, "start": "22:00", "end": "02:00"}]  # Friday night
    friday_23 = datetime(2026, 12, 11, 15, 0, tzinfo=UTC)
    saturday_01 = datetime(2026, 12, 11, 17, 0, tzinfo=UTC)
    saturday_03 = datetime(2026, 12, 11, 19, 0, tzinfo=UTC)
    assert domain.is_available(night, [], friday_23)
    assert domain.is_available(night, [], saturday_01)
    assert not domain.is_available(night, [], saturday_03)


def test_a_day_off_overrides_the_week_and_extra_hours_add_to_it():
    assert domain.is_available(WEEKEND, [], SAT_10_LOCAL)
    assert not domain.is_available(WEEKEND, [{"date": "2026-12-12", "available": False}], SAT_10_LOCAL)
    tuesday = SAT_10_LOCAL - timedelta(days=4)
    assert not domain.is_available(WEEKEND, [], tuesday)
    assert domain.is_available(WEEKEND, [{"date": "2026-12-08", "available": True, "start": "09:00",
                                          "end": "11:00"}], tuesday)


@pytest.mark.parametrize("slot", [{"day": 7, "start": "09:00", "end": "10:00"},
                                  {"day": 1, "start": "25:00", "end": "10:00"},
                                  {"day": 1, "start": "10:00", "end": "10:00"},
                                  {"day": True, "start": "09:00", "end": "10:00"}])
def test_bad_slots_are_refused(slot):
    with pytest.raises(VolunteerError):
        domain.check_slots([slot])


def test_availability_cells_in_chinese_and_english_parse_and_garbage_does_not():
    assert domain.parse_availability("星期二 18:30-21:00, Sat 9:00-12:00") == [
        {"day": 1, "start": "18:30", "end": "21:00"}, {"day": 5, "start": "09:00", "end": "12:00"}]
    with pytest.raises(VolunteerError):
        domain.parse_availability("whenever")


# --- matching and fairness

def test_skill_outranks_grid_and_every_proposal_says_why():
    people = [volunteer("near", skills=["errands"], grid="g1"), volunteer("skilled", grid="g2")]
    ranked = domain.rank(people, Need(("plumbing",), "g1", SAT_10_LOCAL), {})
    assert [p.volunteer for p in ranked] == ["skilled", "near"]
    assert "skill:plumbing" in ranked[0].reasons and "available_now" in ranked[0].reasons
    assert "same_grid:g1" in ranked[1].reasons and "no_matching_skill" in ranked[1].reasons


def test_availability_at_that_time_counts():
    people = [volunteer("busy", availability=[]), volunteer("free")]
    ranked = domain.rank(people, Need(("plumbing",), "g1", SAT_10_LOCAL), {})
    assert [p.volunteer for p in ranked] == ["free", "busy"]
    assert "not_in_availability" in ranked[1].reasons


def test_fairness_moves_a_busy_volunteer_down_and_breaks_ties_by_load():
    people = [volunteer("a"), volunteer("b")]
    need = Need(("plumbing",), "g1", SAT_10_LOCAL)
    assert [p.volunteer for p in domain.rank(people, need, {"a": 2})] == ["b", "a"]
    assert [p.volunteer for p in domain.rank(people, need, {"b": 2})] == ["a", "b"]
    assert "recent_tasks:2" in domain.rank(people, need, {"a": 2})[1].reasons


def test_paused_volunteers_are_never_proposed():
    ranked = domain.rank([volunteer("p", status="paused"), volunteer("a")], Need(("plumbing",), "g1",
                                                                                  SAT_10_LOCAL), {})
    assert [p.volunteer for p in ranked] == ["a"]


def test_the_next_candidate_skips_everyone_asked():
    proposals = [{"volunteer": v} for v in ("a", "b", "c")]
    assert domain.next_candidate(proposals, []) == "a"
    assert domain.next_candidate(proposals, ["a"]) == "b"
    assert domain.next_candidate(proposals, ["a", "b", "c"]) is None


def test_a_ticket_service_names_its_skills_and_other_services_fall_back_to_the_team():
    assert domain.need_for_service("street_light", [], None, SAT_10_LOCAL).skills == ("electrical", "repairs")
    assert domain.need_for_service("other", ["it_help"], "g1", SAT_10_LOCAL).skills == ("it_help",)
    assert all(skill in domain.SKILLS for skills in domain.SERVICE_SKILLS.values() for skill in skills)


# --- hours

def test_a_session_across_midnight_counts_whole_and_splits_by_local_day():
    start = datetime(2026, 12, 5, 15, 40, tzinfo=UTC)  # 23:40 local
    end = start + timedelta(minutes=50)
    assert domain.session_minutes(start, end) == 50
    assert domain.minutes_by_day(start, end, 50) == {"2026-12-05": 20, "2026-12-06": 30}


def test_a_session_is_capped_and_cannot_end_before_it_starts():
    start = datetime(2026, 12, 5, 1, 0, tzinfo=UTC)
    assert domain.session_minutes(start, start + timedelta(hours=11)) == domain.SESSION_CAP_MINUTES
    with pytest.raises(VolunteerError):
        domain.session_minutes(start, start - timedelta(minutes=1))


def test_a_forgotten_check_out_closes_at_the_auto_close_cap():
    start = datetime(2026, 12, 5, 1, 0, tzinfo=UTC)
    assert not domain.forgotten(start, start + timedelta(hours=11))
    assert domain.forgotten(start, start + domain.FORGOTTEN_AFTER)
    ended, minutes = domain.auto_close(start)
    assert minutes == domain.AUTO_CLOSE_MINUTES and ended == start + timedelta(minutes=minutes)


def test_manual_hours_are_capped_per_entry_and_per_month():
    assert domain.check_manual(480, 0) == 480
    with pytest.raises(VolunteerError, match="at most 480"):
        domain.check_manual(481, 0)
    with pytest.raises(VolunteerError, match="a month"):
        domain.check_manual(60, domain.MANUAL_MONTH_CAP_MINUTES - 30)
    for bad in (0, -5, 1.5, True):
        with pytest.raises(VolunteerError):
            domain.check_manual(bad, 0)


def test_corrections_need_a_reason_and_never_take_an_entry_below_zero():
    assert domain.check_correction(60, 0, -60, "wrong task") == -60
    with pytest.raises(VolunteerError, match="reason"):
        domain.check_correction(60, 0, -10, " ")
    with pytest.raises(VolunteerError, match="below zero"):
        domain.check_correction(60, -30, -31, "again")
    with pytest.raises(VolunteerError):
        domain.check_correction(60, 0, 0, "nothing")


def test_credit_and_manual_hours_are_kept_apart_with_their_corrections():
    tasks = [{"_id": "t1", "minutes": 100}]
    entries = [{"_id": "m1", "kind": "manual", "minutes": 30},
               {"_id": "c1", "kind": "correction", "target": "t1", "minutes": -40},
               {"_id": "c2", "kind": "correction", "target": "m1", "minutes": 10}]
    assert domain.totals(tasks, entries) == {"credit_minutes": 60, "manual_minutes": 40, "total_minutes": 100}


# --- tasks, wishes, ratings

def test_a_task_moves_only_along_its_path():
    assert domain.task_move("offering", "accept") == "accepted"
    assert domain.task_move("accepted", "check_in") == "checked_in"
    assert domain.task_move("checked_in", "check_out") == "checked_out"
    with pytest.raises(VolunteerError):
        domain.task_move("accepted", "check_out")
    with pytest.raises(VolunteerError):
        domain.task_move("accepted", "claim")  # a wish has one claimant


def test_ratings_are_one_to_five():
    assert domain.check_rating(1) == 1
    for bad in (0, 6, "5", 4.5):
        with pytest.raises(VolunteerError):
            domain.check_rating(bad)


def test_check_in_codes_are_six_digits():
    codes = {domain.check_in_code() for _ in range(50)}
    assert all(len(code) == 6 and code.isdigit() for code in codes) and len(codes) > 1


# --- coverage

def test_coverage_counts_only_active_volunteers_free_that_week():
    people = [volunteer("a"), volunteer("b", status="paused"),
              volunteer("c", exceptions=[{"date": "2026-12-12", "available": False},
                                         {"date": "2026-12-13", "available": False}]),
              volunteer("d", grid="g2")]
    gaps = domain.coverage_gaps(people, ["plumbing"], ["g1", "g2", "g3"], date(2026, 12, 7))
    assert {(g["grid"], g["available"]) for g in gaps} == {("g1", 1), ("g2", 1), ("g3", 0)}
    assert domain.coverage_gaps(people, ["plumbing"], ["g1"], date(2026, 12, 14)) == []  # c is back: 2 free
    assert domain.coverage_gaps(people, ["plumbing"], ["g1"], date(2026, 12, 14), minimum=3)[0]["available"] == 2


def test_the_week_is_its_monday():
    assert domain.week_of("2026-12-13", date(2026, 1, 1)) == date(2026, 12, 7)
    with pytest.raises(VolunteerError):
        domain.week_of("next week", date(2026, 1, 1))


# --- imports

def test_every_rejected_row_is_reported_with_its_reasons():
    rows = [(2, {"name": "张三", "phone": "13800000001", "grid": "g1", "skills": "plumbing、电工",
                 "teams": "党员先锋", "party_member": "是", "partner_unit": "区供电所",
                 "availability": "周六 09:00-12:00"}),
            (3, {"name": "李四", "phone": "13800000002", "party_member": "maybe"}),
            (4, {"name": "王五", "phone": "13800000003", "teams": "unknown_team", "availability": "sometimes"}),
            (5, {"name": "赵六", "phone": "138 0000 0001"})]
    good, rejected = domain.validate_rows(rows, {"g1"}, {"党员先锋": "party_vanguard",
                                                        "party_vanguard": "party_vanguard"})
    assert [row["row"] for row in good] == [2]
    assert good[0]["skills"] == ["plumbing", "electrical"] and good[0]["teams"] == ["party_vanguard"]
    assert good[0]["party_member"] is True and good[0]["partner_unit"] == "区供电所"
    assert {r["row"]: sorted(r["errors"]) for r in rejected} == {
        3: ["party_member"], 4: ["availability", "teams"], 5: ["phone"]}


# --- events

def test_the_task_and_wish_payloads_fit_the_catalogue():
    task = {"assignment_id": "vt-1", "subject": "ticket", "ticket_id": "T1", "number": None, "volunteer_id": "p1",
            "team": "neighbour_help", "attached_residents": ["r1"], "at": "2026-12-06T08:00:00+00:00",
            "check_in_code": "123456"}
    validate_outgoing(Envelope.new("volunteer.accepted", task, community="xingqiao"))
    wish = {"wish_id": "w1", "ticket_id": "w1", "resident": "r1", "attached_residents": ["r1"], "title": "修收音机",
            "skill": "repairs", "grid": None, "volunteer_id": None, "at": "2026-12-06T08:00:00+00:00"}
    validate_outgoing(Envelope.new("wish.published", wish, community="xingqiao"))
    with pytest.raises(MalformedEvent):  # no personal data rides on the bus
        validate_outgoing(Envelope.new("wish.published", {**wish, "phone": "13800000001"}, community="xingqiao"))

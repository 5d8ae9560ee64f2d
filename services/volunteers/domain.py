"""Volunteers without I/O: skills, availability, matching with its reasons, fairness, hours, wishes, coverage.

Times are aware datetimes; a volunteer's weekly availability is in the community's local time
(Asia/Shanghai), as people say it ("Saturdays 9 to 12").

>>> from datetime import UTC, datetime
>>> week = [{"day": 5, "start": "09:00", "end": "12:00"}]
>>> is_available(week, [], datetime(2026, 12, 12, 2, 0, tzinfo=UTC))  # Saturday 10:00 in Shanghai
True
>>> session_minutes(datetime(2026, 12, 5, 14, 30, tzinfo=UTC), datetime(2026, 12, 5, 17, 15, tzinfo=UTC))
165
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from kernel.contracts import SHANGHAI

# The skill codes: the teams' own (data/default_teams.json) and the ones the office asked for.
SKILLS: tuple[str, ...] = (
    "plumbing", "electrical", "repairs", "elderly_care", "meals", "dispute_mediation", "counselling",
    "legal_advice", "it_help", "errands", "patrol", "safety_check", "sanitation", "greening", "publicity",
    "events", "tutoring", "donations", "professional_services", "first_aid",
)
SKILL_NAMES: dict[str, str] = {
    "plumbing": "水电维修-水", "electrical": "水电维修-电", "repairs": "维修", "elderly_care": "为老服务",
    "meals": "助餐", "dispute_mediation": "矛盾调解", "counselling": "心理疏导", "legal_advice": "法律咨询",
    "it_help": "数字助老", "errands": "跑腿代办", "patrol": "巡逻", "safety_check": "安全检查",
    "sanitation": "环境卫生", "greening": "绿化", "publicity": "宣传", "events": "活动", "tutoring": "课业辅导",
    "donations": "捐赠", "professional_services": "专业服务", "first_aid": "急救",
}
# What a ticket's service needs from a volunteer (services/tickets/data/service_catalogue.json).
SERVICE_SKILLS: dict[str, tuple[str, ...]] = {
    "roof_leak": ("plumbing", "repairs"),
    "blocked_drain": ("plumbing", "repairs"),
    "street_light": ("electrical", "repairs"),
    "gas_smell": ("safety_check",),
    "structural_danger": ("safety_check",),
    "safety_hazard": ("safety_check", "patrol"),
    "elderly_care_emergency": ("elderly_care", "first_aid"),
    "elderly_care": ("elderly_care", "meals", "errands"),
    "neighbour_dispute": ("dispute_mediation", "counselling", "legal_advice"),
    "noise": ("dispute_mediation", "patrol"),
    "sanitation": ("sanitation", "greening"),
    "illegal_construction": ("patrol", "legal_advice"),
}
ACTIVE, PAUSED, MERGED = "active", "paused", "merged"
STATUSES = (ACTIVE, PAUSED)

# Ranking weights: a fitting skill matters most, then being near (same grid) and free now; each task in
# the fairness window costs a little, so the same willing few are not asked every time.
SKILL_WEIGHT, GRID_WEIGHT, AVAILABLE_WEIGHT, LOAD_WEIGHT = 4.0, 2.0, 3.0, 1.0
FAIRNESS_WINDOW = timedelta(days=30)

# Hours: a session's length is capped (nobody serves 14 hours at one task); a check-out forgotten
# for FORGOTTEN_AFTER closes at the cap, marked; manual hours are capped per entry and per month.
SESSION_CAP_MINUTES = 8 * 60
AUTO_CLOSE_MINUTES = 2 * 60
FORGOTTEN_AFTER = timedelta(hours=12)
MANUAL_ENTRY_CAP_MINUTES = 8 * 60
MANUAL_MONTH_CAP_MINUTES = 40 * 60
MIN_COVERAGE = 2  # available volunteers per skill and grid in a week below which the review is told


class VolunteerError(ValueError):
    """A request the rules refuse; ``field`` names what was wrong (for a 422)."""

    def __init__(self, message: str, field_name: str = "_schema"):
        super().__init__(message)
        self.field = field_name


# --- availability -------------------------------------------------------------------------------------

_HHMM = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")
DAY_WORDS = {
    "mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6,
    "周一": 0, "周二": 1, "周三": 2, "周四": 3, "周五": 4, "周六": 5, "周日": 6, "周天": 6,
    "星期一": 0, "星期二": 1, "星期三": 2, "星期四": 3, "星期五": 4, "星期六": 5, "星期日": 6, "星期天": 6,
}


def minute_of(text: str) -> int:
    """``"HH:MM"`` as minutes after midnight (``"24:00"`` is 1440).

    >>> minute_of("09:30"), minute_of("24:00")
    (570, 1440)
    """
    match = _HHMM.match(text or "")
    if not match or (match.group(1) == "24" and match.group(2) != "00"):
        raise VolunteerError(f"not a time of day: {text!r} (HH:MM)", "availability")
    return int(match.group(1)) * 60 + int(match.group(2))


def check_slots(slots: Iterable[Mapping[str, Any]]) -> list[dict]:
    """Weekly slots ``{"day": 0-6 (Monday 0), "start", "end"}``; a slot whose end is before its start runs past
    midnight into the next day.

    >>> check_slots([{"day": 4, "start": "22:00", "end": "02:00"}])
    [{'day': 4, 'start': '22:00', 'end': '02:00'}]
    """
    checked = []
    for slot in slots:
        day = slot.get("day")
        if not isinstance(day, int) or isinstance(day, bool) or not 0 <= day <= 6:
            raise VolunteerError(f"a slot's day is 0 (Monday) to 6 (Sunday), not {day!r}", "availability")
        start, end = minute_of(slot.get("start", "")), minute_of(slot.get("end", ""))
        if start == end:
            raise VolunteerError("a slot must not be empty", "availability")
        checked.append({"day": day, "start": slot["start"], "end": slot["end"]})
    return checked


def parse_availability(text: str) -> list[dict]:
    """A spreadsheet cell like ``"周六 09:00-12:00; Sun 14:00-18:00"`` as slots.

    >>> parse_availability("周六 09:00-12:00；sun 14:00-18:00")
    [{'day': 5, 'start': '09:00', 'end': '12:00'}, {'day': 6, 'start': '14:00', 'end': '18:00'}]
    >>> parse_availability("")
    []
    """
    slots = []
    for part in re.split(r"[;；,，]+", text or ""):
        part = part.strip()
        if not part:
            continue
        match = re.match(r"^(\S+?)\s*(\d{1,2}:\d{2})\s*[-~～至]\s*(\d{1,2}:\d{2})$", part)
        if not match or match.group(1).lower()[:3] not in DAY_WORDS and match.group(1) not in DAY_WORDS:
            raise VolunteerError(f"not a slot: {part!r} (e.g. 周六 09:00-12:00)", "availability")
        word = match.group(1) if match.group(1) in DAY_WORDS else match.group(1).lower()[:3]
        slots.append({"day": DAY_WORDS[word], "start": match.group(2).zfill(5), "end": match.group(3).zfill(5)})
    return check_slots(slots)


def _in_slot(slot: Mapping[str, Any], local: datetime) -> bool:
    start, end = minute_of(slot["start"]), minute_of(slot["end"])
    minute, day = local.hour * 60 + local.minute, local.weekday()
    if start < end:
        return day == slot["day"] and start <= minute < end
    # past midnight: the evening of its day, or the small hours of the next
    return (day == slot["day"] and minute >= start) or (day == (slot["day"] + 1) % 7 and minute < end)


def is_available(slots: Sequence[Mapping[str, Any]], exceptions: Sequence[Mapping[str, Any]], at: datetime) -> bool:
    """Whether a volunteer is free at ``at``: their week, unless an exception for that local date says otherwise.

    An exception ``{"date": "YYYY-MM-DD", "available": false}`` takes the day off; with ``"available": true``
    and ``start``/``end`` it adds hours on that date.

    >>> saturday_10 = datetime(2026, 12, 12, 2, 0, tzinfo=UTC)
    >>> week = [{"day": 5, "start": "09:00", "end": "12:00"}]
    >>> is_available(week, [{"date": "2026-12-12", "available": False}], saturday_10)
    False
    >>> is_available([], [{"date": "2026-12-12", "available": True, "start": "08:00", "end": "11:00"}], saturday_10)
    True
    """
    local = at.astimezone(SHANGHAI)
    today = local.date().isoformat()
    minute = local.hour * 60 + local.minute
    for exception in exceptions:
        if exception.get("date") != today:
            continue
        if not exception.get("available", False):
            return False
        if minute_of(exception["start"]) <= minute < minute_of(exception["end"]):
            return True
    return any(_in_slot(slot, local) for slot in slots)


def available_minutes_in_week(slots: Sequence[Mapping[str, Any]], exceptions: Sequence[Mapping[str, Any]],
                              week_start: date) -> int:
    """Minutes a volunteer is free in the local week starting ``week_start`` (counted in 30-minute steps).

    >>> available_minutes_in_week([{"day": 5, "start": "09:00", "end": "12:00"}], [], date(2026, 12, 7))
    180
    """
    start = datetime.combine(week_start, time(0, 0), tzinfo=SHANGHAI)
    step = timedelta(minutes=30)
    return sum(30 for i in range(7 * 48) if is_available(slots, exceptions, start + i * step))


# --- matching -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Need:
    """What a task asks of a volunteer: skills (any of them fits), where, and when."""

    skills: tuple[str, ...]
    grid: str | None
    at: datetime


@dataclass(frozen=True)
class Proposal:
    volunteer: str
    score: float
    reasons: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        return {"volunteer": self.volunteer, "score": round(self.score, 2), "reasons": list(self.reasons)}


def need_for_service(service_code: str | None, team_skills: Sequence[str], grid: str | None, at: datetime) -> Need:
    """The need of a ticket of ``service_code`` dispatched to a team with ``team_skills``.

    >>> need_for_service("blocked_drain", ["repairs"], "g1", datetime(2026, 1, 1, tzinfo=UTC)).skills
    ('plumbing', 'repairs')
    >>> need_for_service("other", ["errands"], None, datetime(2026, 1, 1, tzinfo=UTC)).skills
    ('errands',)
    """
    skills = SERVICE_SKILLS.get(service_code or "", ()) or tuple(team_skills)
    return Need(tuple(skills), grid, at)


def rank(volunteers: Iterable[Mapping[str, Any]], need: Need, loads: Mapping[str, int]) -> list[Proposal]:
    """Active volunteers best first, each with the reasons of its place; ties go to the lighter load, then the id.

    ``loads`` is each volunteer's tasks in the fairness window (recent load).

    >>> at = datetime(2026, 12, 12, 2, 0, tzinfo=UTC)  # Saturday 10:00 local
    >>> sat = [{"day": 5, "start": "08:00", "end": "18:00"}]
    >>> people = [
    ...     {"_id": "a", "status": "active", "skills": ["plumbing"], "grid": "g2", "availability": sat},
    ...     {"_id": "b", "status": "active", "skills": ["plumbing"], "grid": "g1", "availability": sat},
    ...     {"_id": "c", "status": "active", "skills": ["errands"], "grid": "g1", "availability": []},
    ...     {"_id": "d", "status": "paused", "skills": ["plumbing"], "grid": "g1", "availability": sat}]
    >>> [p.volunteer for p in rank(people, Need(("plumbing",), "g1", at), {"b": 0, "a": 0})]
    ['b', 'a', 'c']
    >>> rank(people, Need(("plumbing",), "g1", at), {"b": 6})[0].volunteer  # b has done a lot lately
    'a'
    """
    proposals = []
    for volunteer in volunteers:
        if volunteer.get("status", ACTIVE) != ACTIVE:
            continue
        score, reasons = 0.0, []
        fitting = [skill for skill in need.skills if skill in (volunteer.get("skills") or ())]
        if fitting:
            score += SKILL_WEIGHT
            reasons.append("skill:" + ",".join(fitting))
        else:
            reasons.append("no_matching_skill")
        if need.grid and volunteer.get("grid") == need.grid:
            score += GRID_WEIGHT
            reasons.append(f"same_grid:{need.grid}")
        if is_available(volunteer.get("availability") or (), volunteer.get("exceptions") or (), need.at):
            score += AVAILABLE_WEIGHT
            reasons.append("available_now")
        else:
            reasons.append("not_in_availability")
        load = int(loads.get(volunteer["_id"], 0))
        score -= LOAD_WEIGHT * load
        reasons.append(f"recent_tasks:{load}")
        proposals.append(Proposal(volunteer["_id"], score, tuple(reasons)))
    return sorted(proposals, key=lambda p: (-p.score, loads.get(p.volunteer, 0), p.volunteer))


def next_candidate(proposals: Sequence[Mapping[str, Any]], asked: Iterable[str]) -> str | None:
    """The best proposed volunteer not asked yet, None when everyone was.

    >>> next_candidate([{"volunteer": "a"}, {"volunteer": "b"}], ["a"])
    'b'
    >>> next_candidate([{"volunteer": "a"}], ["a"]) is None
    True
    """
    done = set(asked)
    return next((p["volunteer"] for p in proposals if p["volunteer"] not in done), None)


def check_in_code() -> str:
    """A 6-digit code the resident reads to the volunteer at the door (the check-in's proof of presence)."""
    return f"{secrets.randbelow(10**6):06d}"


# --- hours --------------------------------------------------------------------------------------------

def session_minutes(check_in: datetime, check_out: datetime, cap: int = SESSION_CAP_MINUTES) -> int:
    """Whole minutes between check-in and check-out, at most ``cap``; across midnight like any other time.

    >>> late = datetime(2026, 12, 5, 14, 30, tzinfo=UTC)  # 22:30 in Shanghai
    >>> session_minutes(late, late + timedelta(hours=2, minutes=45))
    165
    >>> session_minutes(late, late + timedelta(hours=20))
    480
    """
    if check_out < check_in:
        raise VolunteerError("a check-out cannot be before its check-in", "check_out")
    return min(cap, int((check_out - check_in).total_seconds() // 60))


def forgotten(check_in: datetime, now: datetime) -> bool:
    """Whether a session still open at ``now`` had its check-out forgotten (the auto-close takes over)."""
    return now - check_in >= FORGOTTEN_AFTER


def auto_close(check_in: datetime) -> tuple[datetime, int]:
    """A forgotten session's closing: the time it is deemed to end and its minutes (the cap, marked by the caller).

    >>> start = datetime(2026, 12, 5, 1, 0, tzinfo=UTC)
    >>> auto_close(start)[1]
    120
    """
    return check_in + timedelta(minutes=AUTO_CLOSE_MINUTES), AUTO_CLOSE_MINUTES


def minutes_by_day(check_in: datetime, check_out: datetime, minutes: int) -> dict[str, int]:
    """A session's credited minutes on each local date it touched (a night shift counts on both days).

    >>> start = datetime(2026, 12, 5, 14, 30, tzinfo=UTC)  # 22:30 local
    >>> minutes_by_day(start, start + timedelta(hours=3), 180)
    {'2026-12-05': 90, '2026-12-06': 90}
    """
    result: dict[str, int] = {}
    end = min(check_out, check_in + timedelta(minutes=minutes)).astimezone(SHANGHAI)
    cursor = check_in.astimezone(SHANGHAI)
    while cursor < end:
        midnight = datetime.combine(cursor.date() + timedelta(days=1), time(0, 0), tzinfo=SHANGHAI)
        stop = min(end, midnight)
        result[cursor.date().isoformat()] = result.get(cursor.date().isoformat(), 0) + int(
            (stop - cursor).total_seconds() // 60)
        cursor = stop
    short = minutes - sum(result.values())  # rounding of seconds: the last day takes the remainder
    if result and short:
        last = max(result)
        result[last] += short
    return result


def check_manual(minutes: Any, month_so_far: int) -> int:
    """Manual minutes allowed for one entry, given the month's manual minutes so far; VolunteerError beyond the caps.

    >>> check_manual(90, 0)
    90
    >>> check_manual(600, 0)
    Traceback (most recent call last):
    ...
    services.volunteers.domain.VolunteerError: a manual entry is at most 480 minutes
    """
    if not isinstance(minutes, int) or isinstance(minutes, bool) or minutes <= 0:
        raise VolunteerError("minutes must be a positive whole number", "minutes")
    if minutes > MANUAL_ENTRY_CAP_MINUTES:
        raise VolunteerError(f"a manual entry is at most {MANUAL_ENTRY_CAP_MINUTES} minutes", "minutes")
    if month_so_far + minutes > MANUAL_MONTH_CAP_MINUTES:
        raise VolunteerError(f"manual hours are at most {MANUAL_MONTH_CAP_MINUTES // 60} a month "
                             f"({month_so_far} minutes recorded already)", "minutes")
    return minutes


def check_correction(target_minutes: int, corrected_so_far: int, delta: Any, reason: Any) -> int:
    """A correction of an entry by ``delta`` minutes: a reason is required, and the entry cannot go below zero.

    >>> check_correction(120, 0, -30, "left early")
    -30
    >>> check_correction(120, -100, -30, "again")
    Traceback (most recent call last):
    ...
    services.volunteers.domain.VolunteerError: the entry would fall below zero (120 - 130)
    """
    if not isinstance(reason, str) or len(reason.strip()) < 2:
        raise VolunteerError("a correction needs a reason", "reason")
    if not isinstance(delta, int) or isinstance(delta, bool) or delta == 0:
        raise VolunteerError("delta_minutes must be a non-zero whole number", "delta_minutes")
    if target_minutes + corrected_so_far + delta < 0:
        raise VolunteerError(f"the entry would fall below zero ({target_minutes} - {-(corrected_so_far + delta)})",
                             "delta_minutes")
    if target_minutes + corrected_so_far + delta > max(SESSION_CAP_MINUTES, MANUAL_ENTRY_CAP_MINUTES):
        raise VolunteerError("the entry would exceed the session cap", "delta_minutes")
    return delta


def totals(tasks: Iterable[Mapping[str, Any]], entries: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Credit minutes (from check-in/out, with their corrections) and manual minutes (with theirs), kept apart.

    >>> tasks = [{"_id": "t1", "minutes": 120}, {"_id": "t2", "minutes": 30}]
    >>> entries = [{"_id": "m1", "kind": "manual", "minutes": 60},
    ...            {"kind": "correction", "target": "t1", "minutes": -20},
    ...            {"kind": "correction", "target": "m1", "minutes": 15}]
    >>> totals(tasks, entries)
    {'credit_minutes': 130, 'manual_minutes': 75, 'total_minutes': 205}
    """
    credit_ids = set()
    credit = 0
    for task in tasks:
        credit_ids.add(task["_id"])
        credit += int(task.get("minutes") or 0)
    manual = 0
    entries = list(entries)
    for entry in entries:
        if entry.get("kind") == "manual":
            manual += int(entry["minutes"])
    for entry in entries:
        if entry.get("kind") == "correction":
            if entry.get("target") in credit_ids:
                credit += int(entry["minutes"])
            else:
                manual += int(entry["minutes"])
    return {"credit_minutes": credit, "manual_minutes": manual, "total_minutes": credit + manual}


# --- tasks and 微心愿 ----------------------------------------------------------------------------------

# A task is a ticket's (offered to volunteers one at a time) or a wish's (published, claimed by anyone).
TASK_MOVES: dict[str, tuple[tuple[str, ...], str]] = {
    "accept": (("offering",), "accepted"),
    "decline": (("offering",), "offering"),
    "claim": (("published",), "accepted"),
    "check_in": (("accepted",), "checked_in"),
    "check_out": (("checked_in",), "checked_out"),
    "confirm": (("checked_out",), "confirmed"),
    "withdraw": (("published", "offering"), "withdrawn"),
}
OPEN_TASK_STATES = ("offering", "published", "accepted", "checked_in")
# A wish's state as its resident says it.
WISH_STATES = {"published": "published", "accepted": "claimed", "checked_in": "claimed",
               "checked_out": "fulfilled", "confirmed": "confirmed", "withdrawn": "withdrawn"}


def task_move(state: str, action: str) -> str:
    """The state a task moves to by ``action``; VolunteerError when it may not.

    >>> task_move("published", "claim")
    'accepted'
    >>> task_move("checked_out", "check_in")
    Traceback (most recent call last):
    ...
    services.volunteers.domain.VolunteerError: a checked_out task cannot check_in
    """
    before, after = TASK_MOVES[action]
    if state not in before:
        raise VolunteerError(f"a {state} task cannot {action}", "state")
    return after


def check_rating(rating: Any) -> int:
    """A resident's rating of help: 1 to 5 stars.

    >>> check_rating(5)
    5
    """
    if not isinstance(rating, int) or isinstance(rating, bool) or not 1 <= rating <= 5:
        raise VolunteerError("a rating is a whole number from 1 to 5", "rating")
    return rating


# --- coverage -----------------------------------------------------------------------------------------

def coverage_gaps(volunteers: Iterable[Mapping[str, Any]], skills: Sequence[str], grids: Sequence[str],
                  week_start: date, minimum: int = MIN_COVERAGE) -> list[dict]:
    """Each skill × grid with fewer than ``minimum`` active volunteers free some time in the week.

    >>> sat = [{"day": 5, "start": "09:00", "end": "12:00"}]
    >>> people = [{"_id": "a", "status": "active", "skills": ["plumbing"], "grid": "g1", "availability": sat},
    ...           {"_id": "b", "status": "active", "skills": ["plumbing"], "grid": "g1", "availability": sat}]
    >>> [(g["skill"], g["grid"], g["available"]) for g in coverage_gaps(people, ["plumbing", "it_help"], ["g1"],
    ...                                                                date(2026, 12, 7))]
    [('it_help', 'g1', 0)]
    """
    counts: dict[tuple[str, str], int] = {(s, g): 0 for s in skills for g in grids}
    for volunteer in volunteers:
        if volunteer.get("status", ACTIVE) != ACTIVE or volunteer.get("grid") not in grids:
            continue
        if not available_minutes_in_week(volunteer.get("availability") or (), volunteer.get("exceptions") or (),
                                         week_start):
            continue
        for skill in volunteer.get("skills") or ():
            if (skill, volunteer["grid"]) in counts:
                counts[(skill, volunteer["grid"])] += 1
    return [{"skill": skill, "grid": grid, "available": count, "needed": minimum}
            for (skill, grid), count in counts.items() if count < minimum]


def week_of(text: str | None, today: date) -> date:
    """The Monday of the week ``text`` (``YYYY-MM-DD``, any day of it) names; the coming week when None.

    >>> week_of("2026-12-09", date(2026, 1, 1)), week_of(None, date(2026, 12, 9))
    (datetime.date(2026, 12, 7), datetime.date(2026, 12, 14))
    """
    if text is None:
        return today + timedelta(days=7 - today.weekday())
    try:
        day = date.fromisoformat(text)
    except (TypeError, ValueError) as error:
        raise VolunteerError(f"not a date: {text!r} (YYYY-MM-DD)", "week") from error
    return day - timedelta(days=day.weekday())


# --- import rows --------------------------------------------------------------------------------------

VOLUNTEER_COLUMNS: dict[str, tuple[str, ...]] = {
    "name": ("name", "姓名"),
    "phone": ("phone", "mobile", "手机号", "手机号码", "手机", "联系电话", "电话"),
    "grid": ("grid", "网格", "网格编号", "所在网格"),
    "skills": ("skills", "技能", "专长", "服务技能"),
    "teams": ("teams", "team", "队伍", "服务队", "所属队伍"),
    "party_member": ("party_member", "党员", "是否党员"),
    "partner_unit": ("partner_unit", "共建单位", "报到单位", "单位"),
    "availability": ("availability", "可服务时间", "服务时间", "空闲时间"),
}
_LIST_SEPARATORS = re.compile(r"[,，、;；/\s]+")
_YES = {"是", "yes", "y", "true", "1", "党员", "中共党员"}
_NO = {"否", "no", "n", "false", "0", "", "群众"}
SKILL_WORDS = {name: code for code, name in SKILL_NAMES.items()} | {
    "水电": "plumbing", "水管": "plumbing", "电工": "electrical", "维修": "repairs", "助老": "elderly_care",
    "调解": "dispute_mediation", "心理": "counselling", "法律": "legal_advice", "电脑": "it_help", "跑腿": "errands",
    "巡逻": "patrol"}
_MOBILE = re.compile(r"^(?:\+?86)?(1[3-9]\d{9})$")


def normalise_phone(text: str) -> str:
    """A mainland mobile number as its 11 digits; VolunteerError otherwise.

    >>> normalise_phone("+86 138-0000-1234")
    '13800001234'
    """
    match = _MOBILE.match(re.sub(r"[\s-]", "", text or ""))
    if not match:
        raise VolunteerError("not a mainland mobile number", "phone")
    return match.group(1)


def mask_phone(phone: str | None) -> str | None:
    """The phone as views that do not need it show it.

    >>> mask_phone("13800001234")
    '138****1234'
    """
    return None if phone is None else (f"{phone[:3]}****{phone[-4:]}" if len(phone) >= 7 else "****")


def validate_rows(rows: Sequence[tuple[int, Mapping[str, str]]], grids: set[str], teams: Mapping[str, str]
                  ) -> tuple[list[dict], list[dict]]:
    """Volunteer rows as registrations, and a report of every rejected row (its number and reasons per column).

    ``teams`` maps each team's code and name to its code. A phone given twice in one file is rejected the
    second time (the first row stands).

    >>> rows = [(2, {"name": "李四", "phone": "13800001234", "grid": "g1", "skills": "水电、plumbing",
    ...              "party_member": "是", "availability": "周六 09:00-12:00"}),
    ...         (3, {"name": "", "phone": "123", "grid": "g9", "skills": "juggling"}),
    ...         (4, {"name": "王五", "phone": "13800001234", "grid": "g1"})]
    >>> good, rejected = validate_rows(rows, {"g1"}, {"party_vanguard": "party_vanguard"})
    >>> good[0]["skills"], good[0]["party_member"], [r["row"] for r in rejected]
    (['plumbing'], True, [3, 4])
    >>> sorted(rejected[0]["errors"])
    ['grid', 'name', 'phone', 'skills']
    """
    good, rejected, seen = [], [], set()
    for number, row in rows:
        errors: dict[str, list[str]] = {}
        result: dict[str, Any] = {"row": number}
        name = (row.get("name") or "").strip()
        if not 1 <= len(name) <= 32:
            errors["name"] = ["a name of 1 to 32 characters is required"]
        result["name"] = name
        try:
            result["phone"] = normalise_phone(row.get("phone") or "")
            if result["phone"] in seen:
                errors["phone"] = ["this phone is on an earlier row of the file"]
            seen.add(result["phone"])
        except VolunteerError as error:
            errors["phone"] = [str(error)]
        grid = (row.get("grid") or "").strip() or None
        if grid is not None and grid not in grids:
            errors["grid"] = [f"no grid {grid}"]
        result["grid"] = grid
        skills, unknown = [], []
        for word in _LIST_SEPARATORS.split(row.get("skills") or ""):
            if not word:
                continue
            code = word if word in SKILLS else SKILL_WORDS.get(word)
            (skills.append(code) if code else unknown.append(word))
        if unknown:
            errors["skills"] = [f"unknown skills: {', '.join(unknown)}"]
        result["skills"] = list(dict.fromkeys(skills))
        wanted_teams = [t for t in _LIST_SEPARATORS.split(row.get("teams") or "") if t]
        if [t for t in wanted_teams if t not in teams]:
            errors["teams"] = [f"unknown teams: {', '.join(t for t in wanted_teams if t not in teams)}"]
        result["teams"] = list(dict.fromkeys(teams[t] for t in wanted_teams if t in teams))
        party = (row.get("party_member") or "").strip().lower()
        if party not in _YES | _NO:
            errors["party_member"] = ["是 or 否"]
        result["party_member"] = party in _YES
        result["partner_unit"] = (row.get("partner_unit") or "").strip() or None
        try:
            result["availability"] = parse_availability(row.get("availability") or "")
        except VolunteerError as error:
            errors["availability"] = [str(error)]
        if errors:
            rejected.append({"row": number, "errors": errors})
        else:
            good.append(result)
    return good, rejected


def utc(moment: datetime) -> datetime:
    """An aware time in UTC (the database gives naive UTC back)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

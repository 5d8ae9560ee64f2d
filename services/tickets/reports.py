"""What counts where: 日清 (daily clearance), 周议 (the weekly review agenda) and the three rates. No I/O.

Everything here reads ticket documents (as the repository stores them) and returns plain
values; readmodel.py keeps the counters, service.py answers the requests.

**Facts.** :func:`ticket_facts` says what one ticket contributes to the counters: a
``{(day, grid, category, metric): n}`` map, the day in Asia/Shanghai. The counters of the
read model are the sum of every ticket's facts; the read model keeps each ticket's last
facts, so a change of the ticket is applied as the difference (idempotent: applying the
same facts twice changes nothing). Metrics, each on the day named:

- ``received`` — the ticket was received (its day of receipt); ``building:<code>`` beside it;
- ``response_met`` / ``response_missed`` — on the day its first-response deadline fell: met if
  the first staff action the resident can see came by the deadline; missed if it came later,
  or not at all once the deadline has passed (open-and-late is a miss);
- ``claimed`` — staff marked it resolved (once per resolution: a reopened ticket resolved again
  counts again), on the resolution's day; ``closed_unfixed`` — closed without a fix for a reason
  of substance (not responsible, no further action), on the closing day;
- per resident and resolution round, on the day of their last answer: ``called_back`` (an answer
  about the fix: fixed, partly fixed, not fixed) and ``fixed`` (that answer was fixed);
  ``answered`` (any answer but no answer) and ``satisfied`` (满意 or 基本满意 given);
  ``unanswered`` (only unanswered attempts so far: counted apart, never as satisfied);
- ``reopened`` — each reopening after a callback, on its day.

>>> from datetime import datetime, UTC
>>> doc = {"community": "xq", "grid": "g1", "category": "房屋设施", "created_at": datetime(2026, 12, 1, 2, tzinfo=UTC),
...        "response_due_at": datetime(2026, 12, 1, 4, tzinfo=UTC),
...        "first_response_at": datetime(2026, 12, 1, 3, tzinfo=UTC), "timeline": [], "callbacks": []}
>>> sorted((key[3], n) for key, n in ticket_facts(doc, datetime(2026, 12, 2, tzinfo=UTC)).items())
[('received', 1), ('response_met', 1)]
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from services.tickets.calendar import SHANGHAI

RECEIVED, RESPONSE_MET, RESPONSE_MISSED = "received", "response_met", "response_missed"
CLAIMED, CLOSED_UNFIXED = "claimed", "closed_unfixed"
CALLED_BACK, FIXED, ANSWERED, SATISFIED, UNANSWERED = "called_back", "fixed", "answered", "satisfied", "unanswered"
REOPENED = "reopened"
BUILDING = "building:"  # + the building's code: tickets received there (repeat problems)
METRICS: tuple[str, ...] = (RECEIVED, RESPONSE_MET, RESPONSE_MISSED, CLAIMED, CLOSED_UNFIXED, CALLED_BACK, FIXED,
                            ANSWERED, SATISFIED, UNANSWERED, REOPENED)

CONCLUSIVE = frozenset({"fixed", "partly_fixed", "not_fixed"})  # an answer about the fix
SATISFIED_LEVELS = frozenset({"satisfied", "basically_satisfied"})  # 满意, 基本满意
SUBSTANTIVE_CLOSE_REASONS = frozenset({"not_responsible", "no_further_action"})  # duplicate/cancelled: not handled
OPEN_STATES = ("received", "dispatched", "accepted", "in_progress", "paused", "resolved", "reopened")
UNPLACED = ""  # the grid of a ticket routing could not place
DEFAULT_CLEARANCE_HOUR = 17
DEFAULT_RATE_DAYS = 30
REPEAT_DAYS, REPEAT_AT_LEAST = 30, 3
BOUNCED_AT_LEAST = 2
MAX_LISTED = 200  # tickets listed per group of a report (the counts are always whole)
MAX_RANGE_DAYS = 366

Key = tuple[str, str, str, str]  # (day, grid, category, metric)


class ReportQueryInvalid(ValueError):
    """A report's parameter cannot be read; ``problems`` is ``{field: [message]}``."""

    def __init__(self, problems: dict[str, list[str]]) -> None:
        super().__init__(problems)
        self.problems = problems


# --- days in Asia/Shanghai ----------------------------------------------------------------------------

def local_day(moment: datetime) -> str:
    """The day of ``moment`` in Asia/Shanghai, ``YYYY-MM-DD`` (naive datetimes are UTC, as pymongo's).

    >>> local_day(datetime(2026, 12, 5, 17, 0, tzinfo=UTC))
    '2026-12-06'
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(SHANGHAI).date().isoformat()


def day_start(day: date) -> datetime:
    """Midnight of ``day`` in Asia/Shanghai, as an aware datetime."""
    return datetime.combine(day, time(0), tzinfo=SHANGHAI)


def parse_day(text: Any, field: str) -> date:
    """A ``YYYY-MM-DD`` parameter, or :class:`ReportQueryInvalid`.

    >>> parse_day("2026-12-06", "date")
    datetime.date(2026, 12, 6)
    >>> parse_day("6.12.2026", "date")
    Traceback (most recent call last):
    ...
    services.tickets.reports.ReportQueryInvalid: {'date': ['a day as YYYY-MM-DD']}
    """
    if isinstance(text, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
        try:
            return date.fromisoformat(text.strip())
        except ValueError:
            pass
    raise ReportQueryInvalid({field: ["a day as YYYY-MM-DD"]})


def parse_week(text: Any) -> tuple[date, date]:
    """An ISO week ``YYYY-Www`` as its Monday and Sunday, or :class:`ReportQueryInvalid`.

    >>> parse_week("2026-W49")
    (datetime.date(2026, 11, 30), datetime.date(2026, 12, 6))
    """
    matched = re.fullmatch(r"(\d{4})-W(\d{2})", text.strip()) if isinstance(text, str) else None
    if matched:
        try:
            monday = date.fromisocalendar(int(matched.group(1)), int(matched.group(2)), 1)
            return monday, monday + timedelta(days=6)
        except ValueError:
            pass
    raise ReportQueryInvalid({"week": ["an ISO week as YYYY-Www, e.g. 2026-W49"]})


def current_week(now: datetime) -> str:
    """The ISO week of ``now`` in Asia/Shanghai.

    >>> current_week(datetime(2026, 12, 6, 20, 0, tzinfo=UTC))
    '2026-W50'
    """
    year, week, _ = now.astimezone(SHANGHAI).date().isocalendar()
    return f"{year}-W{week:02d}"


def rate_period(start: Any, end: Any, now: datetime) -> tuple[date, date]:
    """``from``/``to`` of the rates (days, inclusive); the default is the 30 days ending today.

    >>> rate_period(None, None, datetime(2026, 12, 6, 2, tzinfo=UTC))
    (datetime.date(2026, 11, 7), datetime.date(2026, 12, 6))
    """
    today = now.astimezone(SHANGHAI).date()
    last = parse_day(end, "to") if end not in (None, "") else today
    first = parse_day(start, "from") if start not in (None, "") else last - timedelta(days=DEFAULT_RATE_DAYS - 1)
    if first > last:
        raise ReportQueryInvalid({"from": ["must not be after to"]})
    if (last - first).days >= MAX_RANGE_DAYS:
        raise ReportQueryInvalid({"from": [f"a period of at most {MAX_RANGE_DAYS} days"]})
    return first, last


# --- facts: what one ticket adds to the counters ------------------------------------------------------

def ticket_facts(document: Mapping[str, Any], now: datetime,
                 response_due: Callable[[Mapping[str, Any]], datetime | None] | None = None) -> Counter:
    """The counters' facts of one ticket as it is at ``now`` (see the module's docstring).

    ``response_due`` computes the first-response deadline of a ticket stored before tickets
    carried ``response_due_at`` (the rebuild passes the clocks'); without it such a ticket has no
    response facts.
    """
    grid = document.get("grid") or UNPLACED
    category = document.get("category") or ""
    facts: Counter = Counter()

    def add(moment: datetime, metric: str, n: int = 1) -> None:
        facts[(local_day(moment), grid, category, metric)] += n

    created = document["created_at"]
    add(created, RECEIVED)
    if document.get("building"):
        add(created, BUILDING + str(document["building"]))
    due = document.get("response_due_at")
    if due is None and response_due is not None:
        due = response_due(document)
    if due is not None:
        first = document.get("first_response_at")
        if first is not None:
            add(due, RESPONSE_MET if _aware(first) <= _aware(due) else RESPONSE_MISSED)
        elif _aware(due) <= _aware(now):
            add(due, RESPONSE_MISSED)
    for entry in document.get("timeline") or ():
        kind, at = entry.get("type"), entry.get("at")
        if at is None:
            continue
        if kind == "ticket.resolved":
            add(at, CLAIMED)
        elif kind == "ticket.reopened":
            add(at, REOPENED)
        elif kind == "ticket.closed" and entry.get("reason") in SUBSTANTIVE_CLOSE_REASONS:
            add(at, CLOSED_UNFIXED)
    for answers in _callback_rounds(document.get("callbacks") or ()):
        conclusive = [entry for entry in answers if entry.get("outcome") in CONCLUSIVE]
        if conclusive:
            add(conclusive[-1]["at"], CALLED_BACK)
            if conclusive[-1]["outcome"] == "fixed":
                add(conclusive[-1]["at"], FIXED)
        answered = [entry for entry in answers if entry.get("outcome") != "no_answer"]
        if answered:
            add(answered[-1]["at"], ANSWERED)
            levels = [entry["satisfaction"] for entry in answered if entry.get("satisfaction")]
            if levels and levels[-1] in SATISFIED_LEVELS:
                add(answered[-1]["at"], SATISFIED)
        else:
            add(answers[-1]["at"], UNANSWERED)
    return facts


def _callback_rounds(callbacks: Iterable[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """The attempts of each (round, resident), each group in time order."""
    groups: dict[tuple[Any, Any], list[Mapping[str, Any]]] = defaultdict(list)
    for entry in callbacks:
        if entry.get("at") is not None:
            groups[(entry.get("round"), entry.get("resident"))].append(entry)
    return [sorted(group, key=lambda entry: _aware(entry["at"])) for group in groups.values()]


def facts_difference(before: Mapping[Key, int], after: Mapping[Key, int]) -> dict[Key, int]:
    """What to add to the counters when a ticket's facts go from ``before`` to ``after`` (zeros left out).

    >>> received, fixed = ("d", "g", "c", "received"), ("d", "g", "c", "fixed")
    >>> facts_difference({received: 1}, {received: 1, fixed: 1})
    {('d', 'g', 'c', 'fixed'): 1}
    """
    keys = set(before) | set(after)
    return {key: after.get(key, 0) - before.get(key, 0) for key in sorted(keys)
            if after.get(key, 0) != before.get(key, 0)}


def encode_facts(facts: Mapping[Key, int]) -> list[list]:
    """Facts as stored (field names may not hold dots, so a list of ``[day, grid, category, metric, n]``)."""
    return [[*key, n] for key, n in sorted(facts.items()) if n]


def decode_facts(stored: Iterable[Sequence]) -> dict[Key, int]:
    return {(str(day), str(grid), str(category), str(metric)): int(n) for day, grid, category, metric, n in stored}


def counter_id(community: str, day: str, grid: str, category: str) -> str:
    """The ``_id`` of one counters document: a day × community × grid × category."""
    return f"{community}|{day}|{grid}|{category}"


def sum_facts(documents: Iterable[Mapping[str, Any]], now: datetime,
              response_due: Callable[[Mapping[str, Any]], datetime | None] | None = None) -> Counter:
    """A full aggregation: the facts of every ticket, summed (what the counters must equal)."""
    total: Counter = Counter()
    for document in documents:
        total.update(ticket_facts(document, now, response_due))
    return total


# --- the three rates ----------------------------------------------------------------------------------

def ratio(numerator: int, denominator: int) -> dict[str, Any]:
    """``{"numerator", "denominator", "rate"}``; ``rate`` is None when nothing was counted.

    >>> ratio(3, 4), ratio(0, 0)
    ({'numerator': 3, 'denominator': 4, 'rate': 0.75}, {'numerator': 0, 'denominator': 0, 'rate': None})
    """
    return {"numerator": numerator, "denominator": denominator,
            "rate": round(numerator / denominator, 4) if denominator else None}


def rates(totals: Mapping[str, int]) -> dict[str, Any]:
    """The rates from summed metrics (``{metric: n}`` over the period, grids and categories asked).

    - ``response_rate`` (响应率): first responses that met their deadline ÷ tickets whose
      first-response deadline fell in the period and has passed (open-and-late ones are misses);
    - ``resolution_rate`` (解决率): residents who said "fixed" ÷ residents who answered about the fix;
    - ``claimed_resolution_rate``: resolutions staff marked ÷ what staff concluded (resolutions
      plus closures without a fix for a reason of substance): what the office says it fixed;
    - ``satisfaction_rate`` (满意率): 满意 + 基本满意 ÷ callbacks answered.

    >>> result = rates({"response_met": 3, "response_missed": 1, "called_back": 2, "fixed": 1, "claimed": 2,
    ...                 "closed_unfixed": 0, "answered": 2, "satisfied": 1, "unanswered": 1})
    >>> result["response_rate"]["rate"], result["resolution_rate"]["rate"], result["claimed_resolution_rate"]["rate"]
    (0.75, 0.5, 1.0)
    >>> result["counts"]["callbacks_unanswered"]
    1
    """
    get = lambda metric: int(totals.get(metric, 0))  # noqa: E731
    return {
        "response_rate": ratio(get(RESPONSE_MET), get(RESPONSE_MET) + get(RESPONSE_MISSED)),
        "resolution_rate": ratio(get(FIXED), get(CALLED_BACK)),
        "claimed_resolution_rate": ratio(get(CLAIMED), get(CLAIMED) + get(CLOSED_UNFIXED)),
        "satisfaction_rate": ratio(get(SATISFIED), get(ANSWERED)),
        "counts": {
            "received": get(RECEIVED), "first_response_met": get(RESPONSE_MET),
            "first_response_missed": get(RESPONSE_MISSED), "resolutions_claimed": get(CLAIMED),
            "closed_without_fix": get(CLOSED_UNFIXED), "called_back": get(CALLED_BACK),
            "confirmed_fixed": get(FIXED), "callbacks_answered": get(ANSWERED), "satisfied": get(SATISFIED),
            "callbacks_unanswered": get(UNANSWERED), "reopened": get(REOPENED),
        },
    }


def totals_of(counters: Iterable[Mapping[str, Any]]) -> Counter:
    """The metrics of counters documents (``{"m": {metric: n}}``) summed."""
    total: Counter = Counter()
    for document in counters:
        total.update({metric: int(n) for metric, n in (document.get("m") or {}).items()})
    return total


def repeat_problems(counters: Iterable[Mapping[str, Any]], at_least: int = REPEAT_AT_LEAST) -> list[dict[str, Any]]:
    """Buildings where one category was reported ``at_least`` times in the counters given (most first).

    >>> repeat_problems([{"category": "c", "b": {"b1": 2}}, {"category": "c", "b": {"b1": 1, "b2": 1}}])
    [{'building': 'b1', 'category': 'c', 'count': 3}]
    """
    seen: Counter = Counter()
    for document in counters:
        for building, n in (document.get("b") or {}).items():
            seen[(building, document.get("category") or "")] += int(n)
    found = [{"building": building, "category": category, "count": n}
             for (building, category), n in seen.items() if n >= at_least]
    return sorted(found, key=lambda item: (-item["count"], item["building"], item["category"]))


# --- 日清: the daily clearance -----------------------------------------------------------------------

def clearance_moment(day: date, hour: int = DEFAULT_CLEARANCE_HOUR) -> datetime:
    """The clearance of ``day``: ``hour`` o'clock in Asia/Shanghai.

    >>> clearance_moment(date(2026, 12, 6)).isoformat()
    '2026-12-06T17:00:00+08:00'
    """
    return datetime.combine(day, time(hour), tzinfo=SHANGHAI)


def owner_of(document: Mapping[str, Any]) -> str | None:
    """Whose the ticket is: its assignee, else the next step's owner, else the grid's worker proposed at intake."""
    assignee = document.get("assignee") or {}
    step = document.get("next_step") or {}
    return assignee.get("id") or step.get("owner") or document.get("suggested_owner")


def clearance_status(document: Mapping[str, Any], moment: datetime) -> str:
    """How an open ticket stands at the clearance ``moment``.

    ``planned``: a dated next step with an owner, not lapsed; ``deferred``: paused (the pause's
    reason is echoed to the resident); ``awaiting_callback``: resolved, its callback scheduled;
    ``uncleared``: none of these.

    >>> moment = datetime(2026, 12, 6, 9, tzinfo=UTC)
    >>> clearance_status({"state": "paused"}, moment), clearance_status({"state": "received"}, moment)
    ('deferred', 'uncleared')
    >>> step = {"owner": "p-1", "due_at": datetime(2026, 12, 7, tzinfo=UTC)}
    >>> clearance_status({"state": "accepted", "next_step": step}, moment)
    'planned'
    """
    state = document.get("state")
    if state == "paused":
        return "deferred"
    if state == "resolved":
        return "awaiting_callback"
    step = document.get("next_step") or {}
    if step.get("owner") and step.get("due_at") is not None and _aware(step["due_at"]) >= _aware(moment):
        return "planned"
    return "uncleared"


def daily_report(day: date, moment: datetime, open_documents: Iterable[Mapping[str, Any]], closed_that_day: int,
                 ) -> dict[str, Any]:
    """日清 of ``day``: open tickets received before the clearance ``moment`` sorted into cleared and not;
    the uncleared list per grid and owner (each group lists at most :data:`MAX_LISTED` tickets)."""
    cleared: Counter = Counter()
    groups: dict[tuple[str, str | None], list[Mapping[str, Any]]] = defaultdict(list)
    considered = 0
    for document in open_documents:
        if _aware(document["created_at"]) > _aware(moment):
            continue  # received after the clearance: tomorrow's
        considered += 1
        status = clearance_status(document, moment)
        if status == "uncleared":
            groups[(document.get("grid") or UNPLACED, owner_of(document))].append(document)
        else:
            cleared[status] += 1
    by_grid: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (grid, owner), documents in sorted(groups.items(), key=lambda item: (item[0][0], item[0][1] or "")):
        documents.sort(key=lambda doc: _aware(doc["created_at"]))
        by_grid[grid].append({"owner": owner, "count": len(documents),
                              "tickets": [ticket_line(doc) for doc in documents[:MAX_LISTED]]})
    uncleared = sum(len(documents) for documents in groups.values())
    return {
        "date": day.isoformat(), "clearance_at": moment.isoformat(), "open": considered,
        "cleared": {"closed_today": closed_that_day, "planned": cleared["planned"], "deferred": cleared["deferred"],
                    "awaiting_callback": cleared["awaiting_callback"]},
        "uncleared": {"count": uncleared, "by_grid": [
            {"grid": grid or None, "count": sum(owner["count"] for owner in owners), "owners": owners}
            for grid, owners in by_grid.items()]},
    }


def ticket_line(document: Mapping[str, Any]) -> dict[str, Any]:
    """One ticket in a report's list: enough to find it and act on it, no personal data."""
    return {
        "id": document["_id"], "number": document.get("number"), "state": document.get("state"),
        "grid": document.get("grid"), "category": document.get("category"), "priority": document.get("priority"),
        "owner": owner_of(document), "created_at": _iso(document.get("created_at")),
        "due_at": _iso(document.get("due_at")), "bounce_count": document.get("bounce_count", 0),
        "reopen_count": document.get("reopen_count", 0),
    }


# --- 周议: the weekly review agenda ------------------------------------------------------------------

@dataclass(frozen=True)
class Week:
    monday: date
    sunday: date

    @property
    def start(self) -> datetime:
        return day_start(self.monday)

    @property
    def end(self) -> datetime:
        """The first moment after the week."""
        return day_start(self.sunday + timedelta(days=1))

    def holds(self, moment: datetime | None) -> bool:
        return moment is not None and self.start <= _aware(moment) < self.end


def agenda_marks(document: Mapping[str, Any]) -> list[dict[str, str]]:
    """The days a ticket belongs on a weekly review, and why: ``[{"day", "item"}]`` (the read model keeps them,
    so the review reads the marked tickets of its week, not every ticket that changed).

    ``reopened``: each reopening; ``unsatisfied``: each callback answer of 不满意, not fixed or partly
    fixed; ``bounced_repeatedly``: each bounce of a ticket bounced at least twice.

    >>> agenda_marks({"timeline": [{"type": "ticket.reopened", "at": datetime(2026, 12, 1, tzinfo=UTC)}],
    ...               "callbacks": [{"outcome": "fixed", "satisfaction": "dissatisfied",
    ...                              "at": datetime(2026, 12, 2, tzinfo=UTC)}]})
    [{'day': '2026-12-01', 'item': 'reopened'}, {'day': '2026-12-02', 'item': 'unsatisfied'}]
    """
    marks: list[tuple[str, str]] = []
    bounced = int(document.get("bounce_count") or 0) >= BOUNCED_AT_LEAST
    for entry in document.get("timeline") or ():
        if entry.get("at") is None:
            continue
        if entry.get("type") == "ticket.reopened":
            marks.append((local_day(entry["at"]), "reopened"))
        elif entry.get("type") == "ticket.bounced" and bounced:
            marks.append((local_day(entry["at"]), "bounced_repeatedly"))
    for entry in document.get("callbacks") or ():
        if entry.get("at") is not None and (entry.get("satisfaction") == "dissatisfied"
                                            or entry.get("outcome") in ("not_fixed", "partly_fixed")):
            marks.append((local_day(entry["at"]), "unsatisfied"))
    return [{"day": day, "item": item} for day, item in sorted(set(marks))]


AGENDA_ITEMS = ("overdue", "reopened", "unsatisfied", "bounced_repeatedly", "callback_unanswered")


def weekly_agenda(week: Week, now: datetime, documents: Iterable[Mapping[str, Any]],
                  repeats: list[dict[str, Any]], coverage_gaps: dict[str, Any],
                  marks: Mapping[str, list[Mapping[str, str]]] | None = None) -> dict[str, Any]:
    """周议 of ``week``: its agenda items from the tickets given (the marked, the overdue, the unanswered).

    - ``overdue``: open tickets past their resolution deadline (at the week's end, or now if sooner);
    - ``reopened``: reopened after a callback during the week;
    - ``unsatisfied``: a callback in the week said 不满意, not fixed or partly fixed;
    - ``bounced_repeatedly``: bounced at least twice, a bounce during the week;
    - ``callback_unanswered``: still awaiting a callback that nobody answered (the lead decides);
    - ``repeat_problems``: one building and category reported 3 times or more in the 30 days to the week's end;
    - ``volunteer_coverage_gaps``: what the volunteers service reports for the week.

    ``marks`` are the tickets' :func:`agenda_marks` as the read model keeps them (by ticket id);
    a ticket without them has its marks computed from the document.
    """
    cutoff = min(_aware(now), week.end)
    first, last = week.monday.isoformat(), week.sunday.isoformat()
    items: dict[str, list[Mapping[str, Any]]] = {name: [] for name in AGENDA_ITEMS}
    for document in documents:
        due = document.get("due_at")
        if (document.get("state") in OPEN_STATES and document.get("state") != "resolved" and due is not None
                and _aware(due) < cutoff):
            items["overdue"].append(document)
        known = (marks or {}).get(document["_id"])
        found = {mark["item"] for mark in (known if known is not None else agenda_marks(document))
                 if first <= mark["day"] <= last}
        for item in ("reopened", "unsatisfied", "bounced_repeatedly"):
            if item in found:
                items[item].append(document)
        if document.get("state") == "resolved" and "callback_unanswered" in (document.get("review_flags") or ()):
            items["callback_unanswered"].append(document)
    agenda = {name: {"count": len(found), "tickets": [ticket_line(doc) for doc in _oldest_first(found)[:MAX_LISTED]]}
              for name, found in items.items()}
    return {"week": f"{week.monday.isocalendar()[0]}-W{week.monday.isocalendar()[1]:02d}",
            "from": week.monday.isoformat(), "to": week.sunday.isoformat(), **agenda,
            "repeat_problems": {"count": len(repeats), "items": repeats},
            "volunteer_coverage_gaps": coverage_gaps}


def _oldest_first(documents: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(documents, key=lambda doc: _aware(doc["created_at"]))


# --- helpers ------------------------------------------------------------------------------------------

def days_between(first: date, last: date) -> list[str]:
    """Every day from ``first`` to ``last`` inclusive, as ``YYYY-MM-DD``.

    >>> days_between(date(2026, 12, 30), date(2027, 1, 1))
    ['2026-12-30', '2026-12-31', '2027-01-01']
    """
    return [(first + timedelta(days=offset)).isoformat() for offset in range((last - first).days + 1)]


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _iso(moment: datetime | None) -> str | None:
    return _aware(moment).isoformat() if moment is not None else None

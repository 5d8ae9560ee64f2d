"""The working calendar: office hours on working days, Chinese public holidays and make-up working days (调休).

Which days are worked is data an admin loads once a year (the State Council publishes
the next year's arrangement each November): ``data/calendar/<year>.json`` seeds the
tickets database, ``PUT /api/v1/calendar/{year}`` replaces a year. A year nobody
loaded counts weekends only (Monday to Friday are working days); the calendar notes
each such year it was asked about in :attr:`WorkingCalendar.missing_seen`, so the
service can warn operations until the year is loaded.

Times go in and out as aware datetimes (any zone; results are UTC); days and office
hours are those of Asia/Shanghai, the platform's zone for everything people see.

>>> from datetime import datetime, UTC
>>> calendar = WorkingCalendar([YearCalendar.load(2026)])
>>> calendar.is_working_day(date(2026, 10, 1)), calendar.is_working_day(date(2026, 10, 10))  # 国庆, 调休 Saturday
(False, True)
>>> friday_4pm = datetime(2026, 12, 4, 16, 0, tzinfo=SHANGHAI)
>>> calendar.add_working(friday_4pm, timedelta(hours=2)).astimezone(SHANGHAI).strftime("%a %H:%M")
'Mon 09:00'
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from kernel.contracts import CALENDAR_YEARS, SHANGHAI

DATA_DIR: Path = Path(__file__).with_name("data") / "calendar"
OFFICE_START, OFFICE_END = time(8, 30), time(17, 30)
MONDAY_TO_FRIDAY: tuple[int, ...] = (0, 1, 2, 3, 4)
FIRST_YEAR, LAST_YEAR = CALENDAR_YEARS  # years an admin may load (the contract the gateway documents)
SEARCH_DAYS = 3700  # a deadline further than ten years away means a calendar without working days


class CalendarInvalid(ValueError):
    """A year's calendar data is invalid; ``problems`` maps each field to what is wrong with it."""

    def __init__(self, problems: dict[str, list[str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{key}: {', '.join(value)}" for key, value in problems.items()))


class NoWorkingTime(ValueError):
    """The calendar has no working time for years ahead: its data must be wrong."""


@dataclass(frozen=True)
class YearCalendar:
    """One year's arrangement: public holidays (days off) and 调休 working days, each with its name.

    >>> year = YearCalendar.from_dict(2027, {"holidays": [{"date": "2027-01-01", "name": "元旦"}], "workdays": []})
    >>> year.holidays
    {datetime.date(2027, 1, 1): '元旦'}
    """

    year: int
    holidays: dict[date, str] = field(default_factory=dict)
    workdays: dict[date, str] = field(default_factory=dict)
    source: str = ""

    @classmethod
    def load(cls, year: int, directory: Path = DATA_DIR) -> YearCalendar:
        """The shipped calendar of ``year`` (``FileNotFoundError`` if none is shipped)."""
        data = json.loads((directory / f"{year}.json").read_text(encoding="utf-8"))
        return cls.from_dict(year, data)

    @classmethod
    def from_dict(cls, year: int, data: Any) -> YearCalendar:
        """Validate ``{"holidays": [{"date", "name"}], "workdays": [...], "source"?}`` for ``year``.

        Every date must be in ``year``, a date may not be both a holiday and a working day,
        and a make-up working day must fall on a Saturday or Sunday (any other day is
        worked anyway). Raises :class:`CalendarInvalid` listing every problem.

        >>> try:
        ...     YearCalendar.from_dict(2026, {"holidays": [], "workdays": [{"date": "2026-03-02", "name": "x"}]})
        ... except CalendarInvalid as invalid:
        ...     invalid.problems
        {'workdays': ['2026-03-02 is a Monday: a make-up working day is a Saturday or Sunday']}
        """
        problems: dict[str, list[str]] = {}
        if not isinstance(year, int) or isinstance(year, bool) or not FIRST_YEAR <= year <= LAST_YEAR:
            raise CalendarInvalid({"year": [f"must be a year from {FIRST_YEAR} to {LAST_YEAR}"]})
        if not isinstance(data, Mapping):
            raise CalendarInvalid({"_schema": ["must be an object with holidays and workdays"]})
        if data.get("year") not in (None, year):
            problems.setdefault("year", []).append(f"the body says {data['year']!r}, the path {year}")
        holidays = _days(data.get("holidays"), "holidays", year, problems)
        workdays = _days(data.get("workdays"), "workdays", year, problems)
        for day in sorted(set(holidays) & set(workdays)):
            problems.setdefault("workdays", []).append(f"{day} is also a holiday")
        for day in sorted(workdays):
            if day.weekday() < 5:
                problems.setdefault("workdays", []).append(
                    f"{day} is a {day.strftime('%A')}: a make-up working day is a Saturday or Sunday")
        source = data.get("source", "")
        if not isinstance(source, str):
            problems.setdefault("source", []).append("must be a string")
        if problems:
            raise CalendarInvalid(problems)
        return cls(year, holidays, workdays, source)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (as shipped and as the API shows it), days in order.

        >>> YearCalendar(2027, {date(2027, 1, 1): "元旦"}).to_dict()["holidays"]
        [{'date': '2027-01-01', 'name': '元旦'}]
        """
        return {
            "year": self.year, "source": self.source,
            "holidays": [{"date": day.isoformat(), "name": name} for day, name in sorted(self.holidays.items())],
            "workdays": [{"date": day.isoformat(), "name": name} for day, name in sorted(self.workdays.items())],
        }


def _days(raw: Any, key: str, year: int, problems: dict[str, list[str]]) -> dict[date, str]:
    if raw is None:
        return {}
    if not isinstance(raw, list):
        problems.setdefault(key, []).append("must be a list of {date, name}")
        return {}
    days: dict[date, str] = {}
    for index, item in enumerate(raw):
        where = f"{key}[{index}]"
        if not isinstance(item, Mapping) or not isinstance(item.get("date"), str):
            problems.setdefault(key, []).append(f"{where} must be an object with a date 'YYYY-MM-DD'")
            continue
        try:
            day = date.fromisoformat(item["date"])
        except ValueError:
            problems.setdefault(key, []).append(f"{where}: {item['date']!r} is not a date 'YYYY-MM-DD'")
            continue
        name = item.get("name", "")
        if not isinstance(name, str) or len(name) > 50:
            problems.setdefault(key, []).append(f"{where}: name must be a string of at most 50 characters")
        elif day.year != year:
            problems.setdefault(key, []).append(f"{where}: {day} is not in {year}")
        elif day in days:
            problems.setdefault(key, []).append(f"{where}: {day} is listed twice")
        else:
            days[day] = name
    return days


def shipped_years(directory: Path = DATA_DIR) -> list[int]:
    """The years a calendar file ships for (the database's seed)."""
    return sorted(int(path.stem) for path in directory.glob("*.json") if path.stem.isdigit())


class WorkingCalendar:
    """Working days and office hours, and the arithmetic of working time on them.

    ``missing_seen`` collects every year a question touched that has no calendar loaded
    (such a year counts weekends only).
    """

    def __init__(self, years: Iterable[YearCalendar] = (), start: time = OFFICE_START, end: time = OFFICE_END,
                 weekdays: Iterable[int] = MONDAY_TO_FRIDAY, zone: ZoneInfo = SHANGHAI) -> None:
        if start >= end:
            raise ValueError("office hours must start before they end")
        self.years: dict[int, YearCalendar] = {year.year: year for year in years}
        self.start, self.end, self.zone = start, end, zone
        self.weekdays = frozenset(weekdays)
        self.missing_seen: set[int] = set()

    @property
    def day_length(self) -> timedelta:
        """The working time of one working day (9 h for 08:30-17:30)."""
        return datetime.combine(date.min, self.end) - datetime.combine(date.min, self.start)

    def has_year(self, year: int) -> bool:
        return year in self.years

    def is_working_day(self, day: date) -> bool:
        """A 调休 working day, or a usual weekday that is not a holiday (weekdays only if the year is missing).

        >>> calendar = WorkingCalendar([YearCalendar.load(2026)])
        >>> [calendar.is_working_day(date(2026, 2, d)) for d in (13, 14, 16, 24, 28)]
        [True, True, False, True, True]
        >>> calendar.is_working_day(date(2027, 1, 1)), sorted(calendar.missing_seen)  # no 2027 loaded
        (True, [2027])
        """
        arrangement = self.years.get(day.year)
        if arrangement is None:
            self.missing_seen.add(day.year)
            return day.weekday() in self.weekdays
        if day in arrangement.workdays:
            return True
        return day.weekday() in self.weekdays and day not in arrangement.holidays

    def window(self, day: date) -> tuple[datetime, datetime]:
        """The office hours of ``day`` as UTC instants (whether or not it is a working day)."""
        return (datetime.combine(day, self.start, self.zone).astimezone(UTC),
                datetime.combine(day, self.end, self.zone).astimezone(UTC))

    def local_day(self, moment: datetime) -> date:
        return _aware(moment).astimezone(self.zone).date()

    def _working_days_from(self, day: date) -> Iterable[date]:
        for offset in range(SEARCH_DAYS):
            candidate = day + timedelta(days=offset)
            if self.is_working_day(candidate):
                yield candidate
        raise NoWorkingTime(f"no working day within {SEARCH_DAYS} days of {day}")

    def add_working(self, start: datetime, amount: timedelta) -> datetime:
        """The instant ``amount`` of working time after ``start`` (UTC).

        Time outside office hours, on weekends and holidays does not count. An amount that
        ends exactly at a close of office ends there (17:30), not at the next opening; an
        amount of zero is the next working instant.

        >>> calendar = WorkingCalendar([YearCalendar.load(2026)])
        >>> late = datetime(2026, 9, 30, 16, 30, tzinfo=SHANGHAI)  # before 国庆: 1 h today, the rest after it
        >>> calendar.add_working(late, timedelta(hours=2)).astimezone(SHANGHAI).isoformat()
        '2026-10-08T09:30:00+08:00'
        """
        start = _aware(start).astimezone(UTC)
        if amount < timedelta(0):
            raise ValueError("working time to add must not be negative")
        remaining = amount
        for day in self._working_days_from(self.local_day(start)):
            opens, closes = self.window(day)
            begin = max(start, opens)
            if begin >= closes:
                continue
            if remaining <= closes - begin:
                return begin + remaining
            remaining -= closes - begin
        raise NoWorkingTime("unreachable")  # pragma: no cover - the generator raises first

    def working_between(self, start: datetime, end: datetime) -> timedelta:
        """The working time between two instants (zero if ``end`` is not after ``start``).

        >>> calendar = WorkingCalendar([YearCalendar.load(2026)])
        >>> friday = datetime(2026, 12, 4, 12, 0, tzinfo=SHANGHAI)
        >>> calendar.working_between(friday, friday + timedelta(days=3))  # Fri 12:00-17:30, Mon 08:30-12:00
        datetime.timedelta(seconds=32400)
        """
        start, end = _aware(start).astimezone(UTC), _aware(end).astimezone(UTC)
        total = timedelta(0)
        if end <= start:
            return total
        day, last = self.local_day(start), self.local_day(end)
        while day <= last:
            if self.is_working_day(day):
                opens, closes = self.window(day)
                overlap = min(end, closes) - max(start, opens)
                if overlap > timedelta(0):
                    total += overlap
            day += timedelta(days=1)
        return total

    def add_working_days(self, start: datetime, days: int) -> datetime:
        """``days`` working days of working time after ``start``: the same office time ``days`` working days on.

        Received at 10:00 on a working day, one working day is 10:00 of the next working
        day; received outside office hours, the count starts at the next opening.

        >>> calendar = WorkingCalendar([YearCalendar.load(2026)])
        >>> saturday = datetime(2026, 12, 5, 11, 0, tzinfo=SHANGHAI)
        >>> calendar.add_working_days(saturday, 1).astimezone(SHANGHAI).isoformat()
        '2026-12-07T17:30:00+08:00'
        """
        return self.add_working(start, self.day_length * days)

    def close_of_working_day(self, start: datetime, days_after: int = 0) -> datetime:
        """17:30 of the working day of ``start`` (of the next working day once that day's office has closed),
        or of the ``days_after``-th working day after it. The deadline of "the same working day" (日清).

        >>> calendar = WorkingCalendar([YearCalendar.load(2026)])
        >>> evening = datetime(2026, 12, 4, 19, 0, tzinfo=SHANGHAI)  # a Friday evening
        >>> calendar.close_of_working_day(evening).astimezone(SHANGHAI).isoformat()
        '2026-12-07T17:30:00+08:00'
        """
        start = _aware(start).astimezone(UTC)
        counted = -1
        for day in self._working_days_from(self.local_day(start)):
            closes = self.window(day)[1]
            if counted < 0 and start >= closes:
                continue
            counted += 1
            if counted == days_after:
                return closes
        raise NoWorkingTime("unreachable")  # pragma: no cover


def _aware(moment: datetime) -> datetime:
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise ValueError(f"a timezone-aware datetime is needed, not {moment!r}")
    return moment

"""The daily health check-in of residents in home quarantine (居家隔离), with the clock passed in. No I/O.

Every day at the hour the office set (``PUT /api/v1/checkins/schedule`` ``{"at": "09:00"}``, local time;
none is sent until it is set), notify sends the community's residents flagged ``home_quarantine`` in the
directory a check-in notice. It is a broadcast with the day in its id (``checkin-<community>-<YYYY-MM-DD>``),
so it reaches each resident on their preferred channel with the broadcast's delivery records, and a second timer pass, a
restart or a second notify instance never sends it twice. A resident answers with ``POST /api/v1/me/checkins``
(``{"status": "well" | "unwell", "temperature": 36.6, "note": "..."}``; one answer a day, the last one counts).
``GET /api/v1/checkins?date=`` lists the day's residents with their answers, a grid worker only their grids';
``ANSWER_HOURS`` after the notice, the residents who did not answer are raised to their grid's workers as a
staff echo (once a day per grid and worker).

>>> from datetime import UTC, datetime
>>> checkin_day(datetime(2026, 12, 6, 0, 30, tzinfo=UTC), "09:00")  # 08:30 in Shanghai: not yet
>>> checkin_day(datetime(2026, 12, 6, 1, 5, tzinfo=UTC), "09:00")
datetime.date(2026, 12, 6)
>>> checkin_id("xingqiao", checkin_day(datetime(2026, 12, 6, 1, 5, tzinfo=UTC), "09:00"))
'checkin-xingqiao-2026-12-06'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from services.notify.preferences import DEFAULT_TIMEZONE

ANSWER_HOURS = 6  # after the notice, a resident who has not answered is raised to their grid worker
SEGMENT = {"flags": ["home_quarantine"]}
TITLE = "每日健康打卡"
BODY = "请在社区应用中完成今日健康打卡（体温、有无不适）。如有发热、咳嗽等症状，请立即联系网格员。"
MISSING_TEMPLATE = "staff:checkin.missing"


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def checkin_day(now: datetime, at: str, tz: str = DEFAULT_TIMEZONE) -> date | None:
    """The local date whose check-in is due at ``now`` (its hour has come), or None before the hour."""
    local = now.astimezone(ZoneInfo(tz))
    return local.date() if local.time() >= _clock(at) else None


def notice_time(day: date, at: str, tz: str = DEFAULT_TIMEZONE) -> datetime:
    """When the check-in of ``day`` is sent (aware, in ``tz``).

    >>> notice_time(date(2026, 12, 6), "09:00").isoformat()
    '2026-12-06T09:00:00+08:00'
    """
    return datetime.combine(day, _clock(at), tzinfo=ZoneInfo(tz))


def raise_due(now: datetime, day: date, at: str, tz: str = DEFAULT_TIMEZONE, hours: float = ANSWER_HOURS) -> bool:
    """Whether the residents who did not answer ``day``'s check-in are to be raised now.

    >>> from datetime import UTC
    >>> raise_due(datetime(2026, 12, 6, 6, 59, tzinfo=UTC), date(2026, 12, 6), "09:00")  # 14:59 local
    False
    >>> raise_due(datetime(2026, 12, 6, 7, 0, tzinfo=UTC), date(2026, 12, 6), "09:00")
    True
    """
    return now >= notice_time(day, at, tz) + timedelta(hours=hours)


def checkin_id(community: str, day: date) -> str:
    return f"checkin-{community}-{day.isoformat()}"


def parse_day(text: str | None, today: date) -> date | None:
    """``?date=`` as a date (today when absent), None when it is not a date.

    >>> parse_day(None, date(2026, 12, 6)), parse_day("2026-12-05", date(2026, 12, 6)), parse_day("12/05", date.min)
    (datetime.date(2026, 12, 6), datetime.date(2026, 12, 5), None)
    """
    if not text:
        return today
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def roll(members: Iterable[Mapping], answers: Mapping[str, Mapping]) -> list[dict]:
    """Each member of the day's check-in with their answer (None when they gave none), unanswered first.

    >>> roll([{"recipient": "r1", "grid": "g1"}, {"recipient": "r2", "grid": "g2"}], {"r2": {"status": "well"}})
    [{'resident': 'r1', 'grid': 'g1', 'answered': False, 'answer': None}, \
{'resident': 'r2', 'grid': 'g2', 'answered': True, 'answer': {'status': 'well'}}]
    """
    rows = [{"resident": m["recipient"], "grid": m.get("grid"), "answered": m["recipient"] in answers,
             "answer": answers.get(m["recipient"])} for m in members]
    return sorted(rows, key=lambda row: (row["answered"], row["grid"] or "", row["resident"]))


def missing_by_grid(rows: Iterable[Mapping]) -> dict[str | None, list[str]]:
    """The residents who did not answer, by grid.

    >>> missing_by_grid([{"resident": "r1", "grid": "g1", "answered": False},
    ...                  {"resident": "r2", "grid": "g1", "answered": True}])
    {'g1': ['r1']}
    """
    grids: dict[str | None, list[str]] = {}
    for row in rows:
        if not row["answered"]:
            grids.setdefault(row["grid"], []).append(row["resident"])
    return grids

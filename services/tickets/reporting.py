"""The reports' requests: who may read which grids, and the day, week or period asked, as platform errors.

What counts in a report is reports.py's (no I/O); the counters are readmodel.py's. This module
turns a caller and a query into what those take, or a 403/422.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from nameko.exceptions import MethodNotFound
from nameko.exceptions import UnknownService as NoSuchService

from kernel.errors import Forbidden, PlatformError, ValidationFailed
from kernel.permissions import Grant, grant_for
from kernel.rpc import RpcTimeout
from services.tickets import reports
from services.tickets.calendar import SHANGHAI

VOLUNTEERS_TIMEOUT = 2.0  # the weekly review asks volunteers for coverage gaps; it is shown without them if late


def report_grids(viewer: dict, grid: Any) -> list[str] | None:
    """The grids a report for ``viewer`` covers (None: the whole community); 403 outside their reach.

    >>> report_grids({"role": "grid_worker", "grids": ["g1", "g2"]}, None)
    ['g1', 'g2']
    >>> report_grids({"role": "secretary", "grids": []}, None) is None
    True
    """
    grant = grant_for("reports.read", viewer["role"])
    if grant is None:
        raise Forbidden(f"the role {viewer['role']} may not read reports", {"action": ["reports.read"]})
    if grid is not None and (not isinstance(grid, str) or not grid.strip()):
        raise ValidationFailed("the request is not valid", {"grid": ["a grid's code"]})
    if grant is Grant.IF_GRID:
        mine = list(viewer.get("grids") or [])
        if grid is not None and grid not in mine:
            raise Forbidden(f"grid {grid} is not one of yours", {"grid": [grid]})
        return [grid] if grid is not None else mine
    return [grid] if grid is not None else None


def report_day(text: Any, now: datetime) -> date:
    """The day a daily report is of: ``text`` (YYYY-MM-DD), default today in Asia/Shanghai; 422 if unreadable."""
    if text in (None, ""):
        return now.astimezone(SHANGHAI).date()
    try:
        return reports.parse_day(text, "date")
    except reports.ReportQueryInvalid as invalid:
        raise ValidationFailed("the request is not valid", invalid.problems) from invalid


def report_week(text: Any, now: datetime) -> reports.Week:
    """The week a weekly review is of: ``YYYY-Www``, default this week; 422 if unreadable."""
    try:
        monday, sunday = reports.parse_week(text if text not in (None, "") else reports.current_week(now))
    except reports.ReportQueryInvalid as invalid:
        raise ValidationFailed("the request is not valid", invalid.problems) from invalid
    return reports.Week(monday, sunday)


def rate_period(start: Any, end: Any, category: Any, now: datetime) -> tuple[date, date]:
    """The days the rates are over (inclusive; default the last 30), the category checked; 422 if unreadable."""
    try:
        period = reports.rate_period(start, end, now)
    except reports.ReportQueryInvalid as invalid:
        raise ValidationFailed("the request is not valid", invalid.problems) from invalid
    if category is not None and (not isinstance(category, str) or not category.strip()):
        raise ValidationFailed("the request is not valid", {"category": ["a category's name"]})
    return period


def clearance_hour(hour: int) -> int:
    """The configured hour of the daily clearance, if it is one.

    >>> clearance_hour(18), clearance_hour(25)
    (18, 17)
    """
    return hour if 0 <= hour <= 23 else reports.DEFAULT_CLEARANCE_HOUR


def coverage_gaps(volunteers: Any, community: str, span: reports.Week) -> dict:
    """What volunteers reports as the week's coverage gaps (its RPC ``coverage_gaps``, asked with the week's
    Monday: ``{"gaps": [{"skill", "grid", "available", "needed"}]}``), or an empty list and a note why not."""
    try:
        found = volunteers.coverage_gaps(community, span.monday.isoformat())
    except (NoSuchService, RpcTimeout, MethodNotFound, PlatformError) as error:
        return {"items": [], "note": f"volunteers did not report coverage gaps ({type(error).__name__})"}
    gaps = found.get("gaps") if isinstance(found, dict) else None
    return {"items": list(gaps or []), "note": None if isinstance(gaps, list) else "no gaps in the answer"}

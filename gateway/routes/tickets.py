"""Tickets, the service catalogue, the inbox and volunteer teams."""

from __future__ import annotations

import re

from gateway.http import PROBLEM_CONTENT_TYPE, endpoint, idempotency_key, json_body, paging, problem_details, query
from kernel.contracts import CalendarSchema
from kernel.errors import Conflict, NotFound, PlatformError, PreconditionFailed, ValidationFailed
from kernel.permissions import STAFF, allowed, require
from kernel.validation import load
from kernel.web import http

CALENDAR_BODY = CalendarSchema()  # built once: building a schema costs more than using it

TICKET_ACTIONS = ("dispatch", "accept", "bounce", "start", "pause", "resume", "resolve", "close", "merge", "plan")
TICKET_FILTERS = ("state", "grid", "category", "owner", "source", "overdue")
_YEAR = re.compile(r"\d{1,4}")
_ETAG = re.compile(r'^\s*(?:W/)?"(\d{1,12})"\s*$')


def etag(ticket: dict) -> dict[str, str]:
    """The ETag header of a ticket answer: its version, which an action's ``If-Match`` sends back.

    >>> etag({"version": 3})
    {'ETag': '"3"'}
    """
    return {"ETag": f'"{ticket["version"]}"'} if isinstance(ticket.get("version"), int) else {}


def expected_version(request) -> int | None:
    """The version an action's ``If-Match`` names; None without one (or ``*``).

    Stale writes answer **412 Precondition Failed** (RFC 9110: a failed If-Match is 412, and the client
    learns to reload), not 409: a 409 here means the state does not allow the action, a different fix.
    An If-Match that names no version of ours cannot match: 412 as well.
    """
    value = request.headers.get("If-Match")
    if value is None or value.strip() == "*":
        return None
    matched = _ETAG.match(value)
    return int(matched.group(1)) if matched else -1


def problem_answer(self, error: PlatformError, **extra) -> tuple[int, dict, dict]:
    """A problem-details answer with members of its own at the top (``state``, ``allowed_actions``, ``version``)."""
    body = {**problem_details(error, self.context.correlation_id), **extra}
    return error.status, body, {"Content-Type": f"{PROBLEM_CONTENT_TYPE}; charset=utf-8"}


def acted(self, call) -> tuple[int, dict, dict]:
    """Run a write's RPC: 200 with the ticket and its ETag; 409 with ``state`` and ``allowed_actions``;
    412 :class:`~kernel.errors.PreconditionFailed` on a stale If-Match (``version``: the current one, and its ETag)."""
    try:
        ticket = call()
    except Conflict as error:
        if error.code == "invalid_transition":
            details = error.details or {}
            return problem_answer(self, error, state=details.get("state"),
                                  allowed_actions=details.get("allowed_actions", []))
        raise
    except PreconditionFailed as error:
        return stale_answer(self, error)
    return 200, ticket, etag(ticket)


def stale_answer(self, error: PreconditionFailed) -> tuple[int, dict, dict]:
    """412 with the current version, in the body and as the ETag the client's next If-Match sends."""
    version = error.details.get("version")  # RPC carries it as text
    version = int(version) if str(version).isdigit() else None
    status, body, headers = problem_answer(self, error, version=version)
    return status, body, {**headers, **etag({"version": version})}


class TicketRoutes:
    """Needs ``auth``, ``limits``, ``idempotency``, ``tickets``, ``notify``, ``volunteers`` (see GatewayService)."""

    @http("GET", "/api/v1/services")
    @endpoint
    def list_services(self, request):
        caller = self.caller(request, "services.read")
        cursor, limit = paging(request)
        return 200, self.tickets.list_services(caller.community, cursor=cursor, limit=limit)

    @http("POST", "/api/v1/tickets")
    @endpoint
    def create_ticket(self, request):
        caller = self.caller(request, "tickets.create")
        body = json_body(request)  # the tickets service applies the one schema of a create
        key = idempotency_key(request)
        # phone-in / walk-in: staff who may create tickets do it on a resident's behalf (``on_behalf_of``)
        if caller.role in STAFF and allowed("tickets.create", caller.role):
            created = self.tickets.create(caller.community, None, body, source="phone_in",
                                          request_key=f"{caller.subject}:{key}" if key else None,
                                          viewer=caller.viewer())
            return 201, created, etag(created)
        if caller.role == "integrator":
            created = self.tickets.create(caller.community, None, body, source="open311",
                                          request_key=f"{caller.subject}:{key}" if key else None)
        else:
            created = self.tickets.create(caller.community, caller.subject, body, source="resident", request_key=key,
                                          home=caller.home)  # the token's home building places it
        return 201, created, etag(created)

    @http("GET", "/api/v1/tickets")
    @endpoint
    def list_my_tickets(self, request):
        """Residents: their own tickets. Staff: ``?state=&grid=&category=&owner=&source=&overdue=`` within reach."""
        caller = self.caller(request, "tickets.list")
        cursor, limit = paging(request)
        if caller.role == "resident":
            return 200, self.tickets.list_mine(caller.community, caller.subject, cursor=cursor, limit=limit)
        filters = {name: value for name in TICKET_FILTERS if (value := query(request, name)) is not None}
        return 200, self.tickets.list_tickets(caller.community, caller.viewer(), filters, cursor=cursor, limit=limit)

    @http("GET", "/api/v1/tickets/<string:ticket_id>")
    @endpoint
    def get_ticket(self, request, ticket_id):
        """A ticket by its id or its short number (``XQ-20261206-0042``), with its ETag."""
        caller = self.caller(request, "tickets.read")
        ticket = self.tickets.get(caller.community, ticket_id, caller.viewer())
        return 200, ticket, etag(ticket)

    @http("POST", "/api/v1/tickets/<string:ticket_id>/actions/<string:action>")
    @endpoint
    def act_on_ticket(self, request, ticket_id, action):
        """One action of the lifecycle; its body is the action's schema in kernel/contracts.py. ``If-Match``."""
        caller = self.caller(request)
        if action not in TICKET_ACTIONS:
            raise NotFound(f"no action {action!r}", {"action": list(TICKET_ACTIONS)}, code="no_such_action")
        require(f"tickets.{'close_not_fixed' if action == 'close' else action}", caller.role)  # 403: never theirs
        body = _object(json_body(request) if request.content_length else {})
        return acted(self, lambda: self.tickets.act(caller.community, ticket_id, action, body, caller.viewer(),
                                                    expected_version=expected_version(request)))

    @http("POST", "/api/v1/tickets/<string:ticket_id>/comments")
    @endpoint
    def comment_on_ticket(self, request, ticket_id):
        """A comment (``{"text", "visibility": "internal"|"resident", "attachments"}``); the ticket as it is now."""
        caller = self.caller(request, "tickets.comment")
        body = _object(json_body(request))
        status, ticket, headers = acted(self, lambda: self.tickets.comment(
            caller.community, ticket_id, body, caller.viewer(), expected_version=expected_version(request)))
        return (201 if status == 200 else status), ticket, headers

    @http("POST", "/api/v1/tickets/<string:ticket_id>/callback")
    @endpoint
    def ticket_callback(self, request, ticket_id):
        """The callback answer (``{"outcome", "note", "satisfaction", "resident"}``): a resident's or staff's."""
        caller = self.caller(request, "tickets.record_callback")
        body = _object(json_body(request))
        return acted(self, lambda: self.tickets.record_callback(
            caller.community, ticket_id, body, caller.viewer(), expected_version=expected_version(request)))

    @http("POST", "/api/v1/patrols")
    @endpoint
    def record_patrol(self, request):
        """A grid worker's patrol round; each finding becomes a ticket with source ``patrol``."""
        caller = self.caller(request, "patrols.record")
        body = _object(json_body(request))
        return 201, self.tickets.record_patrol(caller.community, body, caller.viewer())

    @http("GET", "/api/v1/me/inbox")
    @endpoint
    def my_inbox(self, request):
        caller = self.caller(request, "inbox.read")
        cursor, limit = paging(request)
        return 200, self.notify.list_inbox(caller.community, caller.subject, cursor=cursor, limit=limit)

    @http("GET", "/api/v1/volunteer-teams")
    @endpoint
    def list_volunteer_teams(self, request):
        caller = self.caller(request, "volunteer_teams.read")
        cursor, limit = paging(request)
        return 200, self.volunteers.list_teams(caller.community, cursor=cursor, limit=limit)

    @http("GET", "/api/v1/calendar/<string:year>")
    @endpoint
    def get_calendar(self, request, year):
        """The year's working calendar (public holidays, 调休 working days); 404 while it is not loaded."""
        self.caller(request, "calendar.read")
        return 200, self.tickets.get_calendar(calendar_year(year))

    @http("PUT", "/api/v1/calendar/<string:year>")
    @endpoint
    def put_calendar(self, request, year):
        """Load or replace the year's calendar (body: kernel.contracts.CalendarSchema); clears its ops warning."""
        caller = self.caller(request, "calendar.write")
        year = calendar_year(year)
        body = load(CALENDAR_BODY, json_body(request))
        return 200, self.tickets.put_calendar(year, body, by=caller.subject)

    @http("GET", "/api/v1/deadlines")
    @endpoint
    def get_deadlines(self, request):
        """The deadline table: per category × priority, first response, keep-in-loop and resolution."""
        self.caller(request, "deadlines.read")
        return 200, self.tickets.get_deadlines()

    @http("PUT", "/api/v1/deadlines/<string:category>")
    @endpoint
    def put_deadlines(self, request, category):
        """Replace a category's deadlines (``{"priorities": {...}}``) for tickets received from now on."""
        caller = self.caller(request, "deadlines.manage")
        return 200, self.tickets.put_deadlines(category, json_body(request), by=caller.subject)

    # --- 日清周议 and the three rates (helper M; services/tickets/reports.py says what counts) ----------------

    @http("GET", "/api/v1/reports/daily")
    @endpoint
    def daily_report(self, request):
        """日清: ``?date=YYYY-MM-DD`` (default today, Asia/Shanghai) ``&grid=``; the uncleared per grid and owner."""
        caller = self.caller(request, "reports.read")
        return 200, self.tickets.daily_report(caller.community, caller.viewer(), date=query(request, "date"),
                                              grid=query(request, "grid"))

    @http("GET", "/api/v1/reports/weekly")
    @endpoint
    def weekly_report(self, request):
        """周议: ``?week=YYYY-Www`` (default this week) ``&grid=``; the review agenda."""
        caller = self.caller(request, "reports.read")
        return 200, self.tickets.weekly_report(caller.community, caller.viewer(), week=query(request, "week"),
                                               grid=query(request, "grid"))

    @http("GET", "/api/v1/reports/rates")
    @endpoint
    def rates_report(self, request):
        """响应率, 解决率, 满意率: ``?from=&to=`` (days, inclusive; default the last 30) ``&grid=&category=``."""
        caller = self.caller(request, "reports.read")
        return 200, self.tickets.rates_report(caller.community, caller.viewer(), start=query(request, "from"),
                                              end=query(request, "to"), grid=query(request, "grid"),
                                              category=query(request, "category"))


def calendar_year(text: str) -> int:
    """The ``{year}`` of a calendar path: digits, else no such resource (404).

    The route takes any segment rather than ``<int:year>``: a path that matches no route gets the web
    server's HTML page, and every answer of the API is problem details. The tickets service checks the
    range (:data:`CALENDAR_YEARS`, 422 outside it).

    >>> calendar_year("2027")
    2027
    >>> calendar_year("next")
    Traceback (most recent call last):
    ...
    kernel.errors.NotFound: ("no calendar year 'next'", {'year': ['an integer such as 2027']}, 'no_such_route')
    """
    if not _YEAR.fullmatch(text):
        raise NotFound(f"no calendar year {text[:16]!r}", {"year": ["an integer such as 2027"]}, code="no_such_route")
    return int(text)


def _object(body) -> dict:
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object", {"_schema": ["expected a JSON object"]})
    return body

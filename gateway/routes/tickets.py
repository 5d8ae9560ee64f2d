"""Tickets, the service catalogue, the inbox and volunteer teams."""

from __future__ import annotations

import re

from gateway.http import endpoint, idempotency_key, json_body, paging, query
from kernel.contracts import CalendarSchema
from kernel.errors import PROBLEM_CONTENT_TYPE, Conflict, NotFound, ValidationFailed
from kernel.permissions import require
from kernel.validation import load
from kernel.web import http

CALENDAR_BODY = CalendarSchema()  # built once: building a schema costs more than using it

TICKET_ACTIONS = ("dispatch", "accept", "bounce", "start", "pause", "resume", "resolve", "close", "merge", "plan")
TICKET_FILTERS = ("state", "grid", "category", "owner", "source", "overdue")
STAFF_ENTRY_ROLES = ("grid_worker", "secretary", "admin")
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


def problem_answer(self, status: int, title: str, error: Conflict, **extra) -> tuple[int, dict, dict]:
    """A problem-details answer with members of its own at the top (``state``, ``allowed_actions``)."""
    body = {**error.to_problem(self.context.correlation_id), "status": status, "title": title, **extra}
    return status, body, {"Content-Type": f"{PROBLEM_CONTENT_TYPE}; charset=utf-8"}


def acted(self, call) -> tuple[int, dict, dict]:
    """Run an action's RPC: 200 with the ticket and its ETag; 409 with ``state`` and ``allowed_actions``;
    412 on a stale If-Match (body: ``version``, the current one)."""
    try:
        ticket = call()
    except Conflict as error:
        details = error.details or {}
        if error.code == "stale_version":
            version = int(details["version"])  # RPC carries an error's details as text
            body = problem_answer(self, 412, "Precondition Failed", error, code="stale_version",
                                  type="/problems/stale_version", version=version)
            return body[0], body[1], {**body[2], "ETag": f'"{version}"'}
        if error.code == "invalid_transition":
            return problem_answer(self, 409, "Conflict", error, state=details.get("state"),
                                  allowed_actions=details.get("allowed_actions", []))
        raise
    return 200, ticket, etag(ticket)


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
        if caller.role in STAFF_ENTRY_ROLES:  # phone-in / walk-in: on a resident's behalf (``on_behalf_of``)
            created = self.tickets.create(caller.community, None, body, source="phone_in",
                                          request_key=f"{caller.subject}:{key}" if key else None,
                                          viewer=caller.viewer())
            return 201, created, etag(created)
        if caller.role == "integrator":
            created = self.tickets.create(caller.community, None, body, source="open311",
                                          request_key=f"{caller.subject}:{key}" if key else None)
        else:
            created = self.tickets.create(caller.community, caller.subject, body, source="resident", request_key=key)
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

    @http("GET", "/api/v1/calendar/<int:year>")
    @endpoint
    def get_calendar(self, request, year):
        """The year's working calendar (public holidays, 调休 working days); 404 while it is not loaded."""
        self.caller(request, "calendar.read")
        return 200, self.tickets.get_calendar(year)

    @http("PUT", "/api/v1/calendar/<int:year>")
    @endpoint
    def put_calendar(self, request, year):
        """Load or replace the year's calendar (body: kernel.contracts.CalendarSchema); clears its ops warning."""
        caller = self.caller(request, "calendar.write")
        body = load(CALENDAR_BODY, json_body(request))
        return 200, self.tickets.put_calendar(year, body, by=caller.subject)


def _object(body) -> dict:
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object", {"_schema": ["expected a JSON object"]})
    return body

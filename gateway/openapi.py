"""The gateway's API document: OpenAPI 3.1, built from the request schemas of :mod:`kernel.contracts` (apispec).

The routes are not listed by hand: :func:`routes` walks :class:`gateway.service.GatewayService` for its ``@http``
entrypoints, and :data:`OPERATIONS` describes each by handler name (summary, body schema, query parameters,
permission, success answer). A route without a description still appears (flagged ``x-undocumented``) and
``tests/unit/test_openapi.py`` fails until it is described, so a new route cannot be forgotten.

Every operation lists each status it can answer: its success, and the problem details (RFC 9457, one
``Problem`` schema, as :func:`gateway.http.problem` renders it) of every failure the gateway or the service
behind it can produce — which ones follows from what the operation does (:func:`error_statuses`):

>>> error_statuses(OPERATIONS["create_ticket"], path_params=False, method="POST")
[400, 401, 403, 409, 413, 422, 429, 503, 504]
>>> error_statuses(OPERATIONS["health_check"], path_params=False)
[]
>>> document()["paths"]["/api/v1/tickets/{ticket_id}"]["get"]["responses"]["404"]["content"]
{'application/problem+json': {'schema': {'$ref': '#/components/schemas/Problem'}}}
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema, fields
from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import Map, Rule

from gateway.http import (
    API_KEY_HEADER,
    CORRELATION_HEADER,
    IDEMPOTENCY_HEADER,
    MAX_BODY_BYTES,
    MAX_QUERY_VALUE_CHARS,
)
from gateway.routes.console import CONSOLE_OPERATIONS
from gateway.routes.console import TYPES as CONSOLE_TYPES
from gateway.routes.ops import OPS_OPERATIONS
from gateway.routes.photos import PHOTO_OPERATIONS
from gateway.routes.volunteers import VOLUNTEER_OPERATIONS
from kernel import contracts
from kernel.contracts import ATTACHMENT_TYPES, CALENDAR_YEARS, text_field
from kernel.pagination import DEFAULT_LIMIT, MAX_CURSOR_CHARS, MAX_LIMIT
from kernel.permissions import PERMISSIONS

# The sign-in and API-key bodies, for this document only: gateway/routes/directory.py and the directory check them.


class SignInCodeSchema(Schema):
    """``POST /api/v1/auth/code``: text a one-time sign-in code to this phone."""

    phone = fields.String(required=True, metadata={"example": "13800002001"})


class SignInSchema(Schema):
    """``POST /api/v1/auth/token``: the phone, the code it got, and a staff member's password."""

    phone = fields.String(required=True, metadata={"example": "13800002001"})
    code = fields.String(required=True, metadata={"example": "123456"})
    password = fields.String(allow_none=True)


class RefreshSchema(Schema):
    """``POST /api/v1/auth/refresh``: a refresh token for a new access token."""

    refresh_token = fields.String(required=True)


class ApiKeySchema(Schema):
    """``POST /api/v1/apikeys``: an integrator's key, scoped to communities (the admin's own by default)."""

    name = text_field(64, 1, required=True)
    communities = fields.List(fields.String(), allow_none=True)


OPENAPI_VERSION = "3.1.0"
JSON = "application/json"
PROBLEM = "application/problem+json"
SUCCESS = (200, 201, 202, 204)
PROBLEM_STATUSES = (400, 401, 403, 404, 409, 412, 413, 422, 429, 503, 504)
REASONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 400: "Bad Request: not JSON, too deep, "
           "or a malformed header", 401: "Unauthorized: no valid bearer token or API key",
           403: "Forbidden: this role may not do this", 404: "Not Found (also: not yours to see)",
           409: "Conflict: the state does not allow it, or a retry with the same Idempotency-Key is running",
           405: "Method Not Allowed: the path serves the methods of `Allow`",
           412: "Precondition Failed: `If-Match` names a version that is no longer current (`version`: the current "
                "one, also in `ETag`)",
           414: "URI Too Long: a request line over 8 KiB, refused by the web server before the gateway (no body)",
           413: f"Content Too Large: a body over {MAX_BODY_BYTES} bytes",
           422: "Unprocessable Content: a field, a query parameter or an Idempotency-Key reused with another body",
           415: "Unsupported Media Type: not form-encoded",
           429: "Too Many Requests: wait Retry-After seconds", 503: "Service Unavailable: a service it needs is down",
           504: "Gateway Timeout: a service did not answer in time"}


@dataclass(frozen=True)
class Operation:
    """What one gateway handler does, for the document."""

    summary: str
    tag: str
    ok: int = 200
    answer: str | dict = "Object"  # a component name or an inline schema
    body: type[Schema] | None = None
    bodies: tuple[str, ...] = ()  # names in kernel.contracts, any of which the body may be (added by others)
    query: tuple[str, ...] = ()
    action: str | None = None  # the permission table's action: 403 for roles without it
    auth: bool = True
    calls: bool = True  # calls a service: 503/504 possible
    not_found: bool = False  # 404 besides the path parameters' own
    conflict: bool = False  # 409 besides the Idempotency-Key's own
    invalid: bool = False  # 422 besides the body's and the query's
    refuses: bool = False  # 401 without authentication (wrong credentials at sign-in)
    open311: bool = False  # GeoReport v2: JSON or XML by the path's format; errors in the spec's format
    actions: tuple[tuple[str, str], ...] = ()  # (variant, permission) when each variant has its own (ticket actions)
    stale: bool = False  # a write with If-Match: 412 with the current version on a stale one
    etag: bool = False  # the answer carries the ticket's version as ETag
    path_schemas: dict = field(default_factory=dict)  # a path parameter's schema, when not a plain string
    query_specs: dict = field(default_factory=dict)  # a query parameter's own description, over QUERY's
    body_optional: bool = False  # no body at all is an empty one
    body_schema: dict | None = None  # an inline JSON Schema of a body no contract names (the gateway checks members)
    header_params: tuple[dict, ...] = ()  # request headers it reads (OpenAPI parameter objects, "in": "header")
    raw_body: tuple[str, ...] = ()  # the body is a file of one of these types, not JSON (a photo upload)
    description: str = ""
    extra: dict = field(default_factory=dict)


ACTION_NAMES = ("dispatch", "accept", "bounce", "start", "pause", "resume", "resolve", "close", "merge", "plan")
# The permission each action is checked against (gateway/routes/tickets.py): closing unfixed is its own right.
ACTION_PERMISSIONS = {name: f"tickets.{'close_not_fixed' if name == 'close' else name}" for name in ACTION_NAMES}
TICKET_FILTERS = {
    "state": {"description": "the lifecycle state", "schema": {"type": "string", "enum": [
        "received", "dispatched", "accepted", "in_progress", "paused", "resolved", "confirmed", "reopened",
        "closed_not_fixed"]}},
    "grid": {"description": "a grid's code", "schema": {"type": "string", "minLength": 1, "maxLength": 32}},
    "category": {"description": "a category of the catalogue", "schema": {"type": "string", "minLength": 1,
                                                                          "maxLength": 64}},
    "owner": {"description": "the assignee's id", "schema": {"type": "string", "minLength": 1, "maxLength": 64}},
    "source": {"description": "how it came in", "schema": {"type": "string", "enum": [
        "resident", "phone_in", "walk_in", "patrol", "hotline", "open311", "staff"]}},
    "overdue": {"description": "past its deadline and still open", "schema": {"type": "boolean"}},
}

# PUT /api/v1/deadlines/{category}: services/tickets/deadlines.py checks it (tests/unit/tickets/test_deadlines.py
# holds these units to the catalogue's).
DEADLINE_UNITS = ["close_of_working_day", "days", "hours", "minutes", "working_days", "working_hours"]
_DURATION = {"type": "object", "required": ["amount", "unit"], "additionalProperties": False,
             "properties": {"amount": {"type": "integer", "minimum": 0}, "unit": {"enum": DEADLINE_UNITS}}}
_POLICY = {"type": "object", "required": ["first_response", "next_update", "resolution"], "additionalProperties": False,
           "properties": {"time_kind": {"enum": ["natural", "working"]}, "first_response": _DURATION,
                          "next_update": _DURATION, "resolution": _DURATION}}
DEADLINES_BODY = {"type": "object", "required": ["priorities"], "additionalProperties": False, "properties": {
    "priorities": {"type": "object", "minProperties": 1, "additionalProperties": False,
                   "properties": {priority: _POLICY for priority in ("critical", "urgent", "normal", "low")}}}}
CALENDAR_YEAR = {"type": "integer", "minimum": CALENDAR_YEARS[0], "maximum": CALENDAR_YEARS[1]}
_TEXT_FILTER = {"schema": {"type": "string", "maxLength": MAX_QUERY_VALUE_CHARS}}  # empty: no filter
REPORT_DAY = {"schema": {"type": "string", "anyOf": [{"format": "date"}, {"const": ""}]}}  # empty: the default
REPORT_WEEK = {"description": "an ISO week such as 2026-W49 (default, or empty: this week)",
               "schema": {"type": "string", "pattern": r"^(\d{4}-W\d{2})?$"}}
OPEN311_READ = ("Public (the spec's GET methods): without a key, public fields only and no private categories; "
                "a directory API key (`api_key`) sees its communities whole.")

OPERATIONS: dict[str, Operation] = {
    # --- tickets (gateway/routes/tickets.py) ---
    "list_services": Operation("The service catalogue of the caller's community", "tickets", answer="Page",
                               query=("cursor", "limit"), action="services.read"),
    "create_ticket": Operation("Report a matter (a resident; staff on a resident's behalf; an integrator's key)",
                               "tickets", 201, answer="Ticket", action="tickets.create", etag=True,
                               bodies=("CreateTicketSchema", "StaffCreateTicketSchema"),
                               description="`service_code` must be one of the catalogue's (422 otherwise). A "
                                           "resident and an integrator send CreateTicket; staff (grid worker, "
                                           "secretary, admin) send StaffCreateTicket: a phone-in or walk-in, "
                                           "`on_behalf_of` naming the resident. The answer's `ETag` is its version."),
    "list_my_tickets": Operation("Tickets: a resident's own; staff's within their reach, filtered", "tickets",
                                 answer="Page", query=("cursor", "limit", *TICKET_FILTERS), action="tickets.list",
                                 description="Residents get their own tickets (the filters do not apply); staff "
                                             "the tickets of their grids, assignments or community."),
    "get_ticket": Operation("One ticket with its timeline (by id or number)", "tickets", answer="Ticket",
                            action="tickets.read", etag=True,
                            description="The `ETag` is the ticket's version: send it back as `If-Match` with an "
                                        "action, a comment or a callback."),
    "my_inbox": Operation("The caller's echoes (in-app inbox)", "notify", answer="Page", query=("cursor", "limit"),
                          action="inbox.read"),
    "list_volunteer_teams": Operation("The community's volunteer teams", "volunteers", answer="Page",
                                      query=("cursor", "limit"), action="volunteer_teams.read"),
    "get_calendar": Operation("The year's working calendar (404 while not loaded)", "tickets", action="calendar.read",
                              not_found=True, invalid=True, path_schemas={"year": CALENDAR_YEAR}),
    "put_calendar": Operation("Load or replace the year's working calendar", "tickets", body=contracts.CalendarSchema,
                              action="calendar.write", path_schemas={"year": CALENDAR_YEAR},
                              description="Every date must be in the year; a make-up working day (调休) is a "
                                          "Saturday or Sunday (422 otherwise)."),
    "get_deadlines": Operation("The deadline table: per category × priority, first response, keep-in-loop, "
                               "resolution", "tickets", action="deadlines.read",
                               description="Seeded at start-up from the catalogue; each category with who changed "
                                           "it last (`updated_by`, `updated_at`)."),
    "put_deadlines": Operation("Replace a category's deadlines, for tickets received from now on", "tickets",
                               action="deadlines.manage", not_found=True, body_schema=DEADLINES_BODY,
                               description="Priorities left out keep theirs; a ticket keeps the deadlines it was "
                                           "given when received. Each amount is a positive whole number (0 only "
                                           "for `close_of_working_day`: the close of the day of receipt); a "
                                           "priority's three units are all natural or all working time (422 "
                                           "otherwise). An unknown category is 404."),
    "act_on_ticket": Operation("One step of a ticket's lifecycle; 409 carries `state` and `allowed_actions`",
                               "tickets", actions=tuple(ACTION_PERMISSIONS.items()), conflict=True, invalid=True,
                               stale=True, etag=True, body_optional=True,
                               bodies=("DispatchSchema", "ReasonSchema", "PauseSchema", "ResolveSchema",
                                       "CloseSchema", "MergeSchema", "PlanSchema", "TicketActionSchema"),
                               description="The body depends on the action (kernel/contracts.py: dispatch → "
                                           "Dispatch, pause → Pause, resolve → Resolve, close → Close, merge → "
                                           "Merge, plan → Plan, bounce → Reason, others → TicketAction; an "
                                           "empty body is an empty TicketAction). `If-Match: \"<version>\"` "
                                           "(the ETag of the ticket read) makes it conditional: 412 `stale_version` "
                                           "when the ticket has moved on, with the current `version` and `ETag`."),
    "comment_on_ticket": Operation("An internal or resident-visible comment", "tickets", 201, action="tickets.comment",
                                   bodies=("CommentSchema",), conflict=True, stale=True, etag=True,
                                   description="`If-Match` as for an action (412 `stale_version` when stale)."),
    "ticket_callback": Operation("The resident's answer, or staff recording a phone callback", "tickets",
                                 action="tickets.record_callback", bodies=("CallbackSchema",), conflict=True,
                                 stale=True, etag=True,
                                 description="`If-Match` as for an action (412 `stale_version` when stale)."),
    "record_patrol": Operation("A grid worker's patrol; each finding becomes a ticket", "tickets", 201,
                               action="patrols.record", bodies=("PatrolSchema",)),
    # --- notify (gateway/routes/notify.py) ---
    "get_my_preferences": Operation("The caller's echo preferences (the defaults until set)", "notify",
                                    action="preferences.read"),
    "put_my_preferences": Operation("Replace the caller's echo preferences", "notify",
                                    bodies=("PreferencesSchema",), action="preferences.write",
                                    description="Critical tickets bypass quiet hours and digests regardless."),
    "read_my_message": Operation("The read receipt of one inbox message (404 if not the caller's)", "notify",
                                 action="inbox.read"),
    "list_echoes": Operation("Every echo of one ticket, each step of its plan", "notify", query=("ticket_id",),
                             action="echoes.read", not_found=True,
                             query_specs={"ticket_id": {"description": "the ticket (required: 422 without it)",
                                                        "required": True, "schema": {
                                                            "type": "string", "minLength": 1,
                                                            "maxLength": MAX_QUERY_VALUE_CHARS}}}),
    "list_echo_tasks": Operation("Human steps to do: phone or visit a resident", "notify", answer="Page",
                                 query=("cursor", "limit", "task_status"), action="echo_tasks.read",
                                 query_specs={"task_status": {"name": "status", "description": "open (default) or "
                                                              "done", "schema": {"type": "string",
                                                                                 "enum": ["", "open", "done"]}}}),
    "complete_echo_task": Operation("The worker phoned or visited: the echo is delivered", "notify",
                                    bodies=("TaskDoneSchema",), action="echo_tasks.complete", conflict=True,
                                    body_optional=True,
                                    description="The body (a `note`) is optional."),
    "create_broadcast": Operation("A notice to a segment of the community, fanned out in batches", "notify", 201,
                                  bodies=("BroadcastSchema",), action="broadcasts.create",
                                  description="An empty `segment` is the whole community; `critical` bypasses "
                                              "quiet hours and digests."),
    "list_broadcasts": Operation("The community's broadcasts, newest first, each with its progress", "notify",
                                 answer="Page", query=("cursor", "limit"), action="broadcasts.read"),
    "get_broadcast": Operation("A broadcast's progress: targeted, delivered, read, failed", "notify",
                               action="broadcasts.read"),
    "sms_receipts": Operation("The SMS provider's delivery receipts (Aliyun SmsReport), signed", "notify",
                              auth=False, refuses=True, invalid=True,
                              body_schema={"type": "array", "items": {"type": "object"}, "maxItems": 1000},
                              header_params=(
                                  {"name": "X-Huisheng-Timestamp", "in": "header", "required": False,
                                   "schema": {"type": "string"}, "description": "when it was signed (seconds)"},
                                  {"name": "X-Huisheng-Signature", "in": "header", "required": False,
                                   "schema": {"type": "string"}, "description": "HMAC of timestamp and body with "
                                                                                "SMS_RECEIPT_SECRET"}),
                              description="No bearer token: the provider signs the push (401 `bad_signature` "
                                          "when unsigned, wrongly signed or stale)."),
    "answer_my_checkin": Operation("The caller's answer to today's health check-in (home quarantine)", "notify",
                                   action="checkins.answer", not_found=True, body_schema={
                                       "type": "object", "required": ["status"], "additionalProperties": False,
                                       "properties": {"status": {"type": "string", "enum": ["well", "unwell"]},
                                                      "temperature": {"type": ["number", "null"], "minimum": 34,
                                                                      "maximum": 43},
                                                      "note": {"type": ["string", "null"], "maxLength": 200}}},
                                   description="404 when no check-in reached the caller today; the last answer "
                                               "of the day counts."),
    "list_checkins": Operation("The day's health check-in: each resident it reached and their answer", "notify",
                               action="checkins.read", query=("date",), invalid=True,
                               query_specs={"date": {"description": "YYYY-MM-DD (default: today, local time)",
                                                     "schema": {"type": "string", "maxLength": 10}}},
                               description="A grid worker sees their grids' residents; unanswered first."),
    "put_checkin_schedule": Operation("The local hour of the daily health check-in, or null for none", "notify",
                                      action="checkins.schedule", body_schema={
                                          "type": "object", "required": ["at"], "additionalProperties": False,
                                          "properties": {"at": {"type": ["string", "null"],
                                                                "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"}}}),
    "silent_tickets": Operation("Tickets whose change was neither echoed nor accounted for in time", "reports",
                                action="reports.echoes"),
    "echo_latency": Operation("p50/p95 seconds from a change to sent, delivered and read, by channel", "reports",
                              action="reports.echoes"),
    # --- 日清周议 and the three rates (services/tickets/reports.py) ---
    "daily_report": Operation("日清: the day's uncleared tickets per grid and owner", "reports",
                              query=("date", "grid"), action="reports.read", invalid=True,
                              query_specs={"grid": _TEXT_FILTER, "date": REPORT_DAY | {
                                  "description": "the day (default today, Asia/Shanghai)"}}),
    "weekly_report": Operation("周议: the week's review agenda", "reports", query=("week", "grid"),
                               action="reports.read", invalid=True,
                               query_specs={"week": REPORT_WEEK, "grid": _TEXT_FILTER}),
    "rates_report": Operation("响应率, 解决率, 满意率 over a span of days", "reports",
                              query=("from", "to", "grid", "category"), action="reports.read", invalid=True,
                              query_specs={"from": REPORT_DAY | {"description": "the first day (default 30 days "
                                                                              "ago)"},
                                           "to": REPORT_DAY | {"description": "the last day, inclusive"},
                                           "grid": _TEXT_FILTER, "category": _TEXT_FILTER}),
    # --- sign-in (gateway/routes/directory.py) ---
    "request_code": Operation("Text a one-time sign-in code to a phone", "sign-in", 202,
                              answer={"type": "object", "properties": {"sent": {"type": "boolean"}}},
                              body=SignInCodeSchema, auth=False, invalid=True),
    "sign_in": Operation("Sign in with the code (and a staff member's password)", "sign-in", answer="Tokens",
                         body=SignInSchema, auth=False, invalid=True, refuses=True),
    "refresh": Operation("A new access token for a refresh token", "sign-in", answer="Tokens",
                         body=RefreshSchema, auth=False, invalid=True, refuses=True),
    "sign_out": Operation("End the caller's session", "sign-in", 204),
    # --- me ---
    "me": Operation("Who the caller is", "me", action="me.read", not_found=True),
    "export_me": Operation("Everything the platform holds about the caller", "me", action="me.export",
                           not_found=True),
    "erase_me": Operation("Erase the caller's personal data (tickets stay, anonymised)", "me", action="me.erase",
                          not_found=True, conflict=True),
    "record_consent": Operation("Grant or withdraw consent to one purpose", "me", 201, body=contracts.ConsentSchema,
                                action="consents.write", not_found=True),
    # --- the register ---
    "list_residents": Operation("Residents the caller may see (grid workers: their grids)", "register",
                                answer="Page", query=("cursor", "limit", "grid", "building", "flag"),
                                action="residents.list"),
    "get_resident": Operation("One person of the register", "register", action="residents.read"),
    "place_tree": Operation("The community's grids, buildings and units", "places", action="places.read",
                            not_found=True),
    "list_communities": Operation("Every community of the platform", "places", answer="Page", action="places.read"),
    "locate": Operation("The grid and workers of a building code", "places", action="places.read", invalid=True),
    "audit": Operation("The audit trail (admins)", "administration", answer="Page",
                       query=("cursor", "limit", "actor", "subject", "from", "to"), action="audit.read"),
    # --- administration ---
    "list_api_keys": Operation("Integrators' API keys (never the secret)", "administration", answer="Page",
                               action="apikeys.manage"),
    "create_api_key": Operation("A new API key: its secret is shown once", "administration", 201,
                                body=ApiKeySchema, action="apikeys.manage", invalid=True),
    "revoke_api_key": Operation("Revoke an API key (refused within a second)", "administration",
                                action="apikeys.manage", invalid=True),
    "revoke_person": Operation("End every session of a person", "administration", action="sessions.revoke",
                               invalid=True),
    "create_staff": Operation("Add a staff member or volunteer", "administration", 201, body=contracts.StaffSchema,
                              action="staff.manage"),
    # --- Open311 GeoReport v2 (gateway/routes/open311.py): `api_key` (a directory API key) for POST only ---
    "open311_services": Operation("GeoReport v2: the service list", "open311", auth=False, open311=True,
                                  query=("jurisdiction_id", "api_key"), description=OPEN311_READ),
    "open311_service_definition": Operation("GeoReport v2: a service's attributes", "open311", auth=False,
                                            open311=True, query=("jurisdiction_id", "api_key"),
                                            description=OPEN311_READ),
    "open311_create_request": Operation("GeoReport v2: file a request (form-encoded, api_key required)", "open311",
                                        201, auth=False, open311=True,
                                        description="201 with `service_request_id` and `service_notice`; 202 with "
                                                    "a `token` when the ticket is still being stored (follow it "
                                                    "with GET tokens/{token}). A wrong or missing api_key: 403."),
    "open311_list_requests": Operation("GeoReport v2: requests (90 days by default)", "open311", auth=False,
                                       open311=True, query=("jurisdiction_id", "api_key", "service_request_id",
                                                            "service_code", "status", "start_date", "end_date"),
                                       description=OPEN311_READ + " `service_request_id`, `service_code` and "
                                                   "`status` are comma-delimited lists; the window is the last 90 "
                                                   "days by default and at most 90 days (400 beyond)."),
    "open311_get_request": Operation("GeoReport v2: one request", "open311", auth=False, open311=True,
                                     query=("jurisdiction_id", "api_key"), description=OPEN311_READ),
    "open311_token": Operation("GeoReport v2: the request id of a token", "open311", auth=False, open311=True,
                               query=("jurisdiction_id", "api_key"), description=OPEN311_READ),
    # --- the document itself and the operations endpoints (no authentication) ---
    "openapi_document": Operation("This document", "documentation", answer="Object", auth=False, calls=False),
    "docs_page": Operation("The API's documentation page (Swagger UI, served locally)", "documentation",
                           answer={"type": "string"}, auth=False, calls=False),
    "docs_asset": Operation("A file of the documentation page", "documentation", answer={"type": "string"},
                            auth=False, calls=False),
    "favicon": Operation("The site's icon (the documentation page's)", "documentation", answer={"type": "string"},
                         auth=False, calls=False),
    "health_check": Operation("Liveness", "operations", auth=False, calls=False),
    "readiness_check": Operation("Readiness: 503 while the broker is unreachable", "operations", auth=False,
                                 calls=False, extra={503: "Object"}),
    "metrics_exposition": Operation("Prometheus metrics", "operations", answer={"type": "string"}, auth=False,
                                    calls=False),
}
"""Handler name -> its description. The catch-all 404 and the CORS preflight are not operations."""
# The volunteers' routes come described with them (gateway/routes/volunteers.py); a second answer of their own:
# the same phone registered again is 200, an import with rejected rows 200 with its report.
OPERATIONS.update({name: Operation(**spec) for described in (VOLUNTEER_OPERATIONS, CONSOLE_OPERATIONS, OPS_OPERATIONS,
                                                              PHOTO_OPERATIONS)
                   for name, spec in described.items()})
for _name in ("register_volunteer", "import_volunteers"):
    OPERATIONS[_name] = replace(OPERATIONS[_name], extra={200: OPERATIONS[_name].answer})
_VOLUNTEER_ID = {"type": "string", "minLength": 1, "maxLength": 64}
OPERATIONS["merge_volunteers"] = replace(OPERATIONS["merge_volunteers"], body_schema={
    "type": "object", "required": ["keep", "drop"], "additionalProperties": False,
    "properties": {"keep": _VOLUNTEER_ID, "drop": _VOLUNTEER_ID}})
OPERATIONS["set_volunteer_status"] = replace(OPERATIONS["set_volunteer_status"], body_schema={
    "type": "object", "required": ["status"], "additionalProperties": False,
    "properties": {"status": {"type": "string", "enum": ["active", "paused"]}}})

NOT_OPERATIONS = frozenset({"no_such_route", "preflight", "open311_no_such_route", "open311_options"})
OPEN311_ERRORS = (400, 403, 404, 429, 503, 504)  # the spec's 400/403/404; a 401, 409 or 422 of ours answers 400/403
OPEN311_POST_ERRORS = (413, 415)
CONTENT_TYPES: dict[str, tuple[str, ...]] = {
    "docs_page": ("text/html",), "metrics_exposition": ("text/plain",), "favicon": ("image/png",),
    "docs_asset": ("text/css", "text/javascript", "image/png"), "console_page": ("text/html",),
    "console_asset": tuple(sorted({media.split(";")[0] for media in CONSOLE_TYPES.values()})),
    "get_photo": ATTACHMENT_TYPES,
}
PATH_VALUES = {("docs_asset", "name"): ["swagger-ui.css", "index.css", "swagger-ui-bundle.js", "init.js",
                                        "favicon-32x32.png", "favicon-16x16.png"],
               ("act_on_ticket", "action"): list(ACTION_NAMES),
               **{(name, "fmt"): ["json", "xml"] for name in ("open311_services", "open311_service_definition",
                                                              "open311_create_request", "open311_list_requests",
                                                              "open311_get_request", "open311_token")}}
FREE_FORM = {"health_check", "readiness_check", "metrics_exposition", "docs_page", "docs_asset", "openapi_document",
             "favicon", "console_page", "console_asset"}

QUERY = {
    "cursor": {"description": "`next_cursor` of the previous page", "schema": {
        "type": "string", "maxLength": MAX_CURSOR_CHARS}},  # empty: none
    "limit": {"description": "page size", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                                                     "default": DEFAULT_LIMIT}},
    "from": {"description": "entries at or after (ISO 8601 with a zone)", "schema": {
        "type": "string", "format": "date-time"}},
    "to": {"description": "entries before (ISO 8601 with a zone)", "schema": {"type": "string", "format": "date-time"}},
    **TICKET_FILTERS,
    "jurisdiction_id": {"description": "the community (this platform's by default; a key's own)", "schema": {
        "type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}},
    "api_key": {"description": "a directory API key (integrators)", "schema": {"type": "string", "maxLength": 200}},
    # GeoReport v2's optional arguments: an empty value is as good as none
    # (and an empty item of a comma-delimited list is left out: "a,,b" is a and b)
    "service_request_id": {"description": "comma-delimited request ids (overrides the other filters)", "schema": {
        "type": "string", "pattern": r"^[^,]{0,64}(,[^,]{0,64}){0,99}$"}},
    "service_code": {"description": "comma-delimited service codes", "schema": {
        "type": "string", "pattern": r"^[^,]{0,64}(,[^,]{0,64}){0,99}$"}},
    "status": {"description": "open, closed, or open,closed", "schema": {
        "type": "string", "enum": ["", "open", "closed", "open,closed", "closed,open"]}},
    "start_date": {"description": "requests at or after (ISO 8601 with a zone)", "schema": {
        "type": "string", "anyOf": [{"format": "date-time"}, {"const": ""}]}},
    "end_date": {"description": "requests at or before (ISO 8601 with a zone)", "schema": {
        "type": "string", "anyOf": [{"format": "date-time"}, {"const": ""}]}},
}

NULLABLE_STRING = {"type": ["string", "null"]}
COMPONENTS: dict[str, dict] = {
    "Problem": {
        "type": "object", "description": "RFC 9457 problem details; `errors` holds per-field messages (422).",
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {
            "type": {"type": "string", "examples": ["/problems/validation_failed"]},
            "title": {"type": "string"}, "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"}, "code": {"type": "string"}, "correlation_id": NULLABLE_STRING,
            "errors": {"type": "object", "additionalProperties": True}}},
    "Page": {
        "type": "object", "description": "A page of a list: pass `next_cursor` back as `?cursor=` (null: the last).",
        "required": ["items", "next_cursor"],
        "properties": {"items": {"type": "array", "items": {"type": "object"}}, "next_cursor": NULLABLE_STRING}},
    "Ticket": {
        "type": "object", "required": ["id"],
        "properties": {"id": {"type": "string"}, "service_code": {"type": "string"}, "state": {"type": "string"},
                       "status": {"type": "string"}, "description": {"type": "string"},
                       "timeline": {"type": "array", "items": {"type": "object"}, "description": (
                           "the ticket's own entries, volunteer steps and its echoes' outcomes (echo.delivered, "
                           "echo.failed, echo.read: notify's records), oldest first")},
                       "echoes_unavailable": {"type": "boolean", "description": (
                           "true when notify did not answer in time: the timeline lacks the echoes (absent "
                           "otherwise); ask again later")}}},
    "Tokens": {
        "type": "object",
        "properties": {"access_token": {"type": "string"}, "refresh_token": {"type": "string"},
                       "token_type": {"type": "string"}, "expires_in": {"type": "integer"}}},
    "Object": {"type": "object"},
    "StaleVersion": {"allOf": [{"$ref": "#/components/schemas/Problem"}, {
        "type": "object", "required": ["version"], "description": "412 `stale_version`: reload, then retry",
        "properties": {"version": {"type": "integer", "description": "the ticket's current version"}}}]},
    "Open311Errors": {"type": "array", "description": "GeoReport v2 errors: `[{\"code\", \"description\"}]`",
                      "items": {"type": "object", "properties": {"code": {"type": "integer"},
                                                                 "description": {"type": "string"}}}},
}
HEADERS = {
    "CorrelationId": {"description": "the request's correlation id (the client's, or a new one)", "required": True,
                      "schema": {"type": "string"}},
    "RetryAfter": {"description": "seconds to wait", "required": True, "schema": {"type": "string",
                                                                                   "pattern": r"^\d+$"}},
    "WWWAuthenticate": {"required": True, "schema": {"type": "string"}},
    "ETag": {"description": "the ticket's version (`\"7\"`): send it back as `If-Match`", "required": True,
             "schema": {"type": "string", "pattern": r'^"\d+"$'}},
}


# ------------------------------------------------------------------------------------------------- routes

def routes(service: type | None = None) -> Iterator[tuple[str, str, str]]:
    """``(handler name, method, werkzeug rule)`` of every ``@http`` entrypoint of the gateway.

    >>> ("get_ticket", "GET", "/api/v1/tickets/<string:ticket_id>") in set(routes())
    True
    """
    if service is None:
        from gateway.service import GatewayService  # the service imports this module's route

        service = GatewayService
    for name in sorted(dir(service)):
        for entrypoint in getattr(getattr(service, name, None), ENTRYPOINT_EXTENSIONS_ATTR, ()):
            if hasattr(entrypoint, "url") and hasattr(entrypoint, "method"):
                for method in entrypoint.method.split(","):
                    yield name, method.strip().upper(), entrypoint.url


_RULE_PARAMETER = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


def openapi_path(rule: str) -> tuple[str, list[str]]:
    """A werkzeug rule as an OpenAPI path, and its parameters' names.

    >>> openapi_path("/api/v1/tickets/<string:ticket_id>/actions/<action>")
    ('/api/v1/tickets/{ticket_id}/actions/{action}', ['ticket_id', 'action'])
    """
    return _RULE_PARAMETER.sub(r"{\2}", rule), [match[1] for match in _RULE_PARAMETER.findall(rule)]


def error_statuses(operation: Operation, path_params: bool, method: str = "GET") -> list[int]:
    """The problem statuses ``operation`` can answer, from what it does."""
    statuses: set[int] = set()
    if operation.auth:
        statuses |= {401, 429}
        if method == "POST":  # an Idempotency-Key: malformed 400, reused with another body 422, running 409
            statuses |= {400, 409, 422}
    if operation.action or operation.actions:
        statuses.add(403)
    if operation.body is not None or operation.bodies or operation.body_schema:
        statuses |= {400, 413, 422, 429}
    if operation.raw_body:  # 415: a type it does not take; 422: bytes that are not what the type says
        statuses |= {400, 413, 415, 422, 429}
    if operation.query:
        statuses |= {414, 422}  # 414: the web server's, for a request line over its limit
    if path_params or operation.not_found:
        statuses.add(404)
    if operation.conflict:
        statuses.add(409)
    if operation.stale:
        statuses.add(412)
    if operation.refuses:
        statuses.add(401)
    if operation.invalid:
        statuses.add(422)
    if operation.calls:
        statuses |= {503, 504}
    if not operation.auth and operation.calls:
        statuses.add(429)  # the sign-in routes are limited per client address
    return sorted(statuses)


# ----------------------------------------------------------------------------------------------- document

FORM = "application/x-www-form-urlencoded"
_FORM_TEXT = {"type": "string", "maxLength": 4000}  # gateway.open311.MAX_FIELD_CHARS
OPEN311_FORM = {
    "type": "object", "required": ["api_key", "service_code"], "additionalProperties": False,
    "description": "GeoReport v2's arguments; a service's attributes as `attribute[code]=value` (a list: "
                   "`attribute[code][]`, repeated). A location: lat+long, address_string or address_id. An "
                   "argument the spec does not name is refused (400).",
    "properties": {name: _FORM_TEXT for name in (
        "api_key", "jurisdiction_id", "service_code", "lat", "long", "address_string", "address_id", "email",
        "device_id", "account_id", "first_name", "last_name", "phone", "description", "media_url")},
    "patternProperties": {r"^attribute\[[^\[\]]{1,64}\](\[\])?$": _FORM_TEXT},
}
_OPEN311_BODY = {JSON: {"schema": {"oneOf": [{"type": "array"}, {"type": "object"}]}},
                 "text/xml": {"schema": {"type": "string"}}}
_OPEN311_ERROR = {JSON: {"schema": {"$ref": "#/components/schemas/Open311Errors"}},
                  "text/xml": {"schema": {"type": "string"}}}


def _open311_responses(described: Operation, method: str) -> dict:
    """GeoReport v2's answers: the path's format (`.json` or `.xml`), errors as the spec's error list."""
    if method == "POST":
        responses = {"201": {"description": "Created: `service_request_id` and `service_notice`",
                             "content": _OPEN311_BODY},
                     "202": {"description": "Accepted: a `token` to follow (GET tokens/{token})",
                             "content": _OPEN311_BODY}}
    else:
        responses = {"200": {"description": "OK (in the format of the path)", "content": _OPEN311_BODY}}
    statuses = [*OPEN311_ERRORS, *(OPEN311_POST_ERRORS if method == "POST" else ())]
    for status in sorted(statuses):
        responses[str(status)] = {"description": REASONS[status], "content": _OPEN311_ERROR}
    if described.query:
        responses["414"] = _problem(414)
    return responses


def _schema_name(schema: type[Schema]) -> str:
    return schema.__name__.removesuffix("Schema")


def _response(operation: Operation, name: str, status: int) -> dict:
    if status == 204:
        return {"description": REASONS[204], "headers": {CORRELATION_HEADER: {"$ref": "#/components/headers/"
                                                                                    "CorrelationId"}}}
    answer = operation.extra.get(status, operation.answer)
    schema = {"$ref": f"#/components/schemas/{answer}"} if isinstance(answer, str) else answer
    types = CONTENT_TYPES.get(name, (JSON,))
    response: dict[str, Any] = {"description": REASONS.get(status, "OK"),
                                "content": {media: {"schema": schema} for media in types}}
    if name not in FREE_FORM:
        response["headers"] = {CORRELATION_HEADER: {"$ref": "#/components/headers/CorrelationId"}}
    if operation.etag and 200 <= status < 300:
        response["headers"]["ETag"] = {"$ref": "#/components/headers/ETag"}
    return response


def _problem(status: int) -> dict:
    if status == 414:  # eventlet's own answer: no body, none of our headers
        return {"description": REASONS[414]}
    headers = {CORRELATION_HEADER: {"$ref": "#/components/headers/CorrelationId"}}
    if status == 412:
        headers["ETag"] = {"$ref": "#/components/headers/ETag"}
        return {"description": REASONS[412], "headers": headers,
                "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/StaleVersion"}}}}
    if status in (429, 503, 504):
        headers["Retry-After"] = {"$ref": "#/components/headers/RetryAfter"}
    if status == 401:
        headers["WWW-Authenticate"] = {"$ref": "#/components/headers/WWWAuthenticate"}
    return {"description": REASONS[status], "headers": headers,
            "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def _path_schema(name: str, param: str) -> dict:  # lengths: gateway.http.MAX_PATH_VALUE_CHARS
    described = OPERATIONS.get(name)
    if described is not None and param in described.path_schemas:
        return described.path_schemas[param]
    values = PATH_VALUES.get((name, param))
    return {"type": "string", "enum": values} if values else {"type": "string", "minLength": 1, "maxLength": 128}


def _roles(action: str) -> str:
    return ", ".join(PERMISSIONS[action])


def _operation(spec: APISpec, name: str, method: str, params: list[str]) -> dict:
    described = OPERATIONS.get(name)
    if described is None:  # still in the document, with every answer it might give; the unit test fails meanwhile
        described = Operation(f"{name} (not described yet)", "undocumented", answer="Object", action="undescribed",
                              invalid=True, not_found=True, conflict=True,
                              bodies=("object",) if method in ("POST", "PUT", "PATCH") else (), body_optional=True)
    operation: dict[str, Any] = {"operationId": name, "summary": described.summary, "tags": [described.tag]}
    text = [described.description] if described.description else []
    if described.action in PERMISSIONS:
        text.append(f"Roles: {_roles(described.action)} (action `{described.action}`).")
    if described.actions:
        text.append("Roles: " + "; ".join(f"{variant}: {_roles(permission)} (`{permission}`)"
                                          for variant, permission in described.actions) + ". Others: 403.")
    if text:
        operation["description"] = " ".join(text)
    parameters: list[dict] = [{"name": param, "in": "path", "required": True, "schema": _path_schema(name, param)}
                              for param in params]
    for query in described.query:
        spec_of = described.query_specs.get(query) or QUERY.get(query, _TEXT_FILTER)
        parameters.append({"name": query, "in": "query", "required": False, **spec_of})  # spec_of may rename it
    if method == "POST" and described.auth:
        parameters.append({"name": IDEMPOTENCY_HEADER, "in": "header", "required": False,
                           "description": "a retry with the same key and body has no second effect",
                           "schema": {"type": "string", "pattern": r"^[A-Za-z0-9._:-]{1,128}$"}})
    parameters.extend(described.header_params)
    if described.stale:
        parameters.append({"name": "If-Match", "in": "header", "required": False,
                           "description": "the ETag of the ticket read (`\"7\"`); `*` or none: unconditional",
                           "schema": {"type": "string", "pattern": r'^(\*|(W/)?"\d{1,12}")$'}})
    if parameters:
        operation["parameters"] = parameters
    if described.body is not None:
        if _schema_name(described.body) not in spec.components.schemas:
            spec.components.schema(_schema_name(described.body), schema=described.body)
        operation["requestBody"] = {"required": True, "content": {JSON: {"schema": {
            "$ref": f"#/components/schemas/{_schema_name(described.body)}"}}}}
    if described.bodies:
        refs = []
        for schema_name in described.bodies:
            schema = getattr(contracts, schema_name, None)
            if schema is None:  # not in the contracts (yet): the body is described as an object
                continue
            if _schema_name(schema) not in spec.components.schemas:
                spec.components.schema(_schema_name(schema), schema=schema)
            refs.append({"$ref": f"#/components/schemas/{_schema_name(schema)}"})
        body_schema = refs[0] if len(refs) == 1 else {"anyOf": refs} if refs else {"type": "object"}
        operation["requestBody"] = {"required": not described.body_optional,
                                    "content": {JSON: {"schema": body_schema}}}
    if described.body_schema is not None:
        operation["requestBody"] = {"required": not described.body_optional,
                                    "content": {JSON: {"schema": described.body_schema}}}
    if described.raw_body:
        operation["requestBody"] = {"required": True, "content": {
            media: {"schema": {"type": "string", "format": "binary"}} for media in described.raw_body}}
    responses = {str(described.ok): _response(described, name, described.ok)}
    for status, answer in described.extra.items():
        if answer is not None and status not in PROBLEM_STATUSES:
            responses[str(status)] = _response(described, name, status)
    for status in error_statuses(described, bool(params), method):
        responses.setdefault(str(status), _problem(status))
    if described.open311:
        responses = _open311_responses(described, method)
        if method == "POST":
            operation["requestBody"] = {"required": True, "content": {FORM: {"schema": OPEN311_FORM}}}
    if name == "readiness_check":
        responses["503"] = _response(described, name, 503)
    operation["responses"] = responses
    operation["security"] = [{"bearer": []}, {"apiKey": []}] if described.auth else []
    if name not in OPERATIONS:
        operation["x-undocumented"] = True
    return operation


@cache
def document() -> dict:
    """The OpenAPI 3.1 document of the gateway (built once per process)."""
    spec = APISpec(title="Huisheng 回声 API", version="1", openapi_version=OPENAPI_VERSION,
                   plugins=[MarshmallowPlugin()],
                   info={"description": "Every resident request gets an echo. Lists answer `{\"items\": [...], "
                                        "\"next_cursor\"}`; errors are RFC 9457 problem details."})
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    spec.components.security_scheme("apiKey", {"type": "apiKey", "in": "header", "name": API_KEY_HEADER})
    for name, schema in COMPONENTS.items():
        spec.components.schema(name, schema)
    for name, header in HEADERS.items():
        spec.components.header(name, header)
    paths: dict[str, dict[str, dict]] = {}
    for name, method, rule in routes():
        if name in NOT_OPERATIONS or method in ("OPTIONS", "HEAD"):
            continue
        path, params = openapi_path(rule)
        paths.setdefault(path, {})[method.lower()] = _operation(spec, name, method, params)
    for path, operations in sorted(paths.items()):
        spec.path(path=path, operations=operations)
    return spec.to_dict()


@cache
def _route_map() -> Map:
    return Map([Rule(rule, methods=[method], endpoint=name) for name, method, rule in routes()
                if name not in NOT_OPERATIONS], strict_slashes=False)


def allowed_methods(path: str) -> list[str]:
    """The methods the gateway serves at ``path``, for a 405's ``Allow`` (empty when the path is unknown).

    >>> allowed_methods("/api/v1/me"), allowed_methods("/api/v1/nothing")
    (['DELETE', 'GET'], [])
    """
    try:
        _route_map().bind("gateway").match(path, method="NO-SUCH-METHOD")
    except MethodNotAllowed as error:
        return sorted(method for method in error.valid_methods or () if method not in ("HEAD", "OPTIONS"))
    except HTTPException:
        return []
    return []

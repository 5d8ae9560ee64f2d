"""The tickets service's entrypoints: load, call the domain, save, dump."""

from __future__ import annotations

import uuid
from datetime import UTC, timedelta

from nameko.dependency_providers import Config
from nameko.exceptions import MethodNotFound
from nameko.exceptions import UnknownService as NoSuchService
from nameko.timer import timer

from kernel.config import settings_of
from kernel.context import Context
from kernel.contracts import (
    OPEN311_MAX_REQUESTS,
    CalendarSchema,
    Open311QuerySchema,
    Open311RequestSchema,
    PatrolSchema,
    StaffCreateTicketSchema,
    TicketFiltersSchema,
)
from kernel.envelope import Envelope, utcnow
from kernel.errors import Conflict, Forbidden, NotFound, PlatformError, ValidationFailed
from kernel.events import current_version
from kernel.groupcommit import GroupCommit
from kernel.handlers import handles
from kernel.health import HealthEndpoints
from kernel.idempotency import fingerprint, idempotent
from kernel.logging import get_logger
from kernel.mongo import Mongo
from kernel.outbox import OUTBOX, Outbox
from kernel.pagination import decode_cursor, encode_cursor, page, page_limit
from kernel.permissions import Grant, grant_for, may_access
from kernel.rpc import RpcClient, RpcTimeout, rpc
from kernel.validation import load
from services.tickets import actions as lifecycle
from services.tickets import clocks, reports, sla
from services.tickets.calendar import FIRST_YEAR, LAST_YEAR, SHANGHAI, CalendarInvalid, YearCalendar
from services.tickets.catalogue import Catalogue, Duration, Service, UnknownService
from services.tickets.domain import (
    CLOSED_STATES,
    OPEN_STATES,
    DomainError,
    Ticket,
    anonymised_payload,
    impersonal_address,
)
from services.tickets.numbers import NUMBER, TicketNumbers
from services.tickets.readmodel import ReadModel, clock_response_due
from services.tickets.repository import COLLECTION, PATROLS, TicketRepository, ticket_id_for
from services.tickets.schemas import CreateTicketSchema, TicketSchema, ViewerSchema
from services.tickets.sla import CALENDARS_CACHE, MISSING, SLA_MARKS, CalendarStore, DeadlineWatch, SlaClock, sla_timer

CATALOGUE = Catalogue.load()
STAFF_CREATE, PATROL, TICKET_FILTERS = StaffCreateTicketSchema(), PatrolSchema(), TicketFiltersSchema()
STAFF_ENTRY_ROLES = frozenset({"grid_worker", "secretary", "admin"})  # who may enter a ticket on a resident's behalf
SAVE_ATTEMPTS = 3  # an action without If-Match is given again on a fresh read when someone wrote meanwhile
DIRECTORY_TIMEOUT = 2.0  # routing asks the directory at intake; a ticket is received unplaced rather than late
# Schemas are built once: building one deep-copies its fields, which costs more than using it.
CREATE_TICKET, VIEWER = CreateTicketSchema(), ViewerSchema()
TICKET, TICKETS = TicketSchema(), TicketSchema(many=True)
OPEN311_REQUEST, OPEN311_QUERY = Open311RequestSchema(), Open311QuerySchema()
CALENDAR_BODY = CalendarSchema()
log = get_logger(__name__)
RETENTION_SWEEP_SECONDS = 3600  # how often the retention job looks for closed tickets past the period
EXPORT_PAGE = 200  # tickets read at a time for a personal-data export
RETENTION_BATCH = 200  # tickets one retention run anonymises at most
ANONYMISE_ATTEMPTS = 3  # reads of a ticket an anonymisation tries before its handler retries later
VOLUNTEERS_TIMEOUT = 2.0  # the weekly review asks volunteers for coverage gaps; it is shown without them if late


def pseudonym() -> str:
    """A fresh id that links to nobody: random, per ticket, so anonymised tickets cannot be tied together."""
    return f"anon-{uuid.uuid4().hex[:12]}"


def envelopes(ticket: Ticket, correlation_id: str) -> list[Envelope]:
    """The domain events a command raised, in the platform's envelope."""
    return [
        Envelope.new(event.type, event.payload, community=ticket.community,
                     correlation_id=correlation_id, version=current_version(event.type))
        for event in ticket.pull_events()
    ]


def may_view(ticket: Ticket, viewer: dict) -> bool:
    """kernel/permissions' ``tickets.read``: residents their own tickets, grid workers their grids, volunteers
    what is dispatched to them, the office its community."""
    return may_access("tickets.read", viewer, community=ticket.community, owners=ticket.attached_residents,
                      grid=getattr(ticket, "grid", None), assignee=ticket.assignee)


# --- Open311 GeoReport v2 ----------------------------------------------------------------------------
# What a stranger may see of a request: the service, its status and notes, times and a coarse place.
OPEN311_NOTES = {
    "received": "已受理", "dispatched": "已派单处理", "accepted": "已签收", "in_progress": "办理中",
    "paused": "延期办理", "resolved": "已办结，待回访", "confirmed": "已办结，回访满意",
    "reopened": "回访未解决，重新办理", "closed_not_fixed": "已关闭",
}
CLOSE_REASON_NOTES = {"not_responsible": "不属本社区职责，已转办", "no_further_action": "无需进一步处理",
                      "duplicate": "重复诉求，已合并", "cancelled": "已撤销"}
UNIT_TEXT = {"minutes": "分钟", "hours": "小时", "days": "天", "working_hours": "个工作小时",
             "working_days": "个工作日"}
NATURAL_UNITS = {"minutes": 60, "hours": 3600, "days": 86400}
COARSE_DECIMALS = 3  # a public lat/long is rounded to ~100 m: the block, not the door


def w3(moment) -> str | None:
    """A datetime in the W3C profile of ISO 8601 that GeoReport v2 requires, in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment is not None else None


def duration_text(duration: Duration) -> str:
    """A deadline in words.

    >>> duration_text(Duration(30, "minutes")), duration_text(Duration(0, "close_of_working_day"))
    ('30分钟', '当个工作日下班前')
    """
    if duration.unit == "close_of_working_day":
        return "当个工作日下班前" if duration.amount == 0 else f"{duration.amount}个工作日后下班前"
    return f"{duration.amount}{UNIT_TEXT[duration.unit]}"


def service_notice(priority: str) -> str | None:
    """What the office commits to for a request of this priority (the deadline table)."""
    try:
        policy = CATALOGUE.deadline_policy(priority)
    except LookupError:
        return None
    return f"首次响应时限：{duration_text(policy.first_response)}；办结时限：{duration_text(policy.resolution)}"


def expected_at(ticket: Ticket):
    """When an open request should be resolved, where the deadline runs on natural time (working time needs
    the working calendar, which the tickets service does not keep)."""
    try:
        resolution = CATALOGUE.deadline_policy(ticket.priority).resolution
    except LookupError:
        return None
    if not ticket.is_open or resolution.unit not in NATURAL_UNITS:
        return None
    return ticket.created_at + timedelta(seconds=resolution.amount * NATURAL_UNITS[resolution.unit])


def status_notes(ticket: Ticket, full: bool) -> str:
    """The state in words; an integrator's view adds what the office wrote (a pause's reason, the summary)."""
    note = OPEN311_NOTES.get(str(ticket.state), str(ticket.state))
    if str(ticket.state) == "closed_not_fixed" and ticket.close_reason:
        note = f"{note}：{CLOSE_REASON_NOTES.get(ticket.close_reason, ticket.close_reason)}"
    if not full:
        return note
    if str(ticket.state) == "paused":
        reasons = [entry.get("reason") for entry in ticket.timeline if entry.get("type") == "ticket.paused"]
        return f"{note}：{reasons[-1]}" if reasons and reasons[-1] else note
    if str(ticket.state) == "resolved" and ticket.resolution_summary:
        return f"{note}：{ticket.resolution_summary}"
    return note


def open311_view(document: dict, full: bool) -> dict:
    """A ticket as a GeoReport v2 request: public fields only unless ``full`` (a key scoped to its community).

    Public: no description (none is marked public), no reporter, the address cut to the building,
    lat/long rounded to about 100 m, no media and no address id (either may show a door).
    """
    ticket = Ticket.from_document(document)
    service = CATALOGUE.get(ticket.service_code) if ticket.service_code in CATALOGUE else None
    lat, long = ticket.lat, ticket.long
    if not full and lat is not None and long is not None:
        lat, long = round(lat, COARSE_DECIMALS), round(long, COARSE_DECIMALS)
    assignee = ticket.assignee or {}
    return {
        "service_request_id": ticket.id,
        "status": ticket.status_open311,
        "status_notes": status_notes(ticket, full),
        "service_name": service.name if service else ticket.service_code,
        "service_code": ticket.service_code,
        "description": ticket.description if full else None,
        "agency_responsible": assignee.get("id") if assignee.get("kind") == "unit" else None,
        "service_notice": service_notice(ticket.priority),
        "requested_datetime": w3(ticket.created_at),
        "updated_datetime": w3(ticket.updated_at),
        "expected_datetime": w3(expected_at(ticket)),
        "address": ticket.address_string if full else impersonal_address(ticket.address_string),
        "address_id": document.get("address_id") if full else None,
        "zipcode": None,
        "lat": lat,
        "long": long,
        "media_url": document.get("media_url") if full else None,
    }


def open311_services(include_private: bool) -> list[Service]:
    return [service for service in CATALOGUE.all() if include_private or not service.private]


class TicketsService(HealthEndpoints):
    name = "tickets"

    db = Mongo(indexes=TicketRepository.ensure_indexes)
    writes = GroupCommit()
    outbox = Outbox(collections=[COLLECTION, SLA_MARKS, PATROLS])  # the marks carry sla.warned / sla.breached
    numbers = TicketNumbers()  # short numbers, from blocks reserved per process (services/tickets/numbers.py)
    directory = RpcClient("directory", timeout=DIRECTORY_TIMEOUT)  # routing: directory.me, directory.locate
    volunteers = RpcClient("volunteers", timeout=VOLUNTEERS_TIMEOUT)  # the weekly review's coverage gaps
    sla_clock = SlaClock()  # the wall clock, movable in tests (SLA_TEST_CLOCK)
    context = Context()
    config = Config()  # the retention period (Settings.retention_days)

    @property
    def tickets(self) -> TicketRepository:
        return TicketRepository(self.db, self.writes)

    @rpc
    def list_services(self, community: str, cursor: str | None = None, limit: int | None = None) -> dict:
        """The catalogue in its own order, a page at a time (the cursor holds the position)."""
        limit = page_limit(limit)
        start = (decode_cursor(cursor, 1) or (0,))[0]
        if not isinstance(start, int) or start < 0:
            raise ValidationFailed("the request is not valid", {"cursor": ["not a cursor this list gave out"]})
        services = [service.to_open311() for service in CATALOGUE.all()]
        shown = services[start:start + limit]
        more = start + limit < len(services)
        return {"items": shown, "next_cursor": encode_cursor(start + limit) if more else None}

    @rpc
    def create(self, community: str, reporter: str | None, data: dict, source: str = "resident",
               request_key: str | None = None, viewer: dict | None = None) -> dict:
        """Receive a request. The same ``request_key`` from the same reporter creates one ticket only.

        ``viewer`` is staff entering it on a resident's behalf (phone-in, walk-in, hotline): the body
        may then name ``on_behalf_of`` (the resident, who gets the echoes) and ``source``. Routing: a
        ``building`` (the body's, else the reporter's own from ``directory.me``) places the ticket in
        its grid (``directory.locate``) and proposes the grid's worker as ``suggested_owner``.
        """
        if viewer is not None and viewer.get("role") in STAFF_ENTRY_ROLES:
            request = load(STAFF_CREATE, data)
            reporter, source = request.pop("on_behalf_of"), request.pop("source")
        else:
            request = load(CREATE_TICKET, data)
        attachments = request.pop("attachments", [])
        request_hash = fingerprint(data) if request_key is not None else None
        earlier = self.tickets.by_request_key(community, reporter, request_key)
        if earlier is not None:
            return self._retried(earlier, request_key, request_hash)
        placed = self._route(community, reporter, request.pop("building", None))
        try:
            service = CATALOGUE.get(request.pop("service_code"))
        except UnknownService as error:
            raise ValidationFailed("the request is not valid",
                                   {"service_code": [f"unknown service_code {error.code!r}"]}) from error
        ticket = Ticket.receive(
            id=ticket_id_for(community, reporter, request_key), community=community, service=service, reporter=reporter,
            source=source, now=utcnow(), **request, **placed, attachments=attachments,
            number=self.numbers.next(self.tickets.numbers, community),
        )
        clocks.at_intake(ticket)  # the fast lane: escalated to the secretary at once
        self._set_deadlines(ticket)
        events = envelopes(ticket, self.context.correlation_id)
        stored = self.tickets.add(ticket, events, request_key, request_hash, extra=self._first_look(ticket))
        if stored is not ticket:  # a concurrent attempt with the same key stored it first
            return self._retried(stored, request_key, request_hash)
        self.outbox.flush_soon(COLLECTION, ticket.id, events)
        log.info("ticket.received", ticket_id=ticket.id, service_code=service.code, priority=ticket.priority)
        return TICKET.dump(ticket)

    def _retried(self, ticket: Ticket, request_key: str | None = None, request_hash: str | None = None) -> dict:
        """The answer to a retried create: the ticket of the first attempt, its events published again.

        The same key with another body is refused (422): the first body's hash is stored on the
        ticket (tickets created before hashes were stored have none and are taken as the same).

        The first attempt's write may have timed out on its client yet committed late,
        after its worker gave up: nothing then asked the relay to publish its events.
        Without ``events`` the relay reads what the document's outbox holds and
        publishes it (again, perhaps: consumers dedupe on ``event_id``), so the retry
        does not leave ``ticket.received`` to the sweep, or to chance.
        """
        stored_hash = self.tickets.request_hash(ticket.community, ticket.id) if request_hash else None
        if stored_hash is not None and stored_hash != request_hash:
            raise ValidationFailed("this Idempotency-Key was used with another request",
                                   {"Idempotency-Key": ["used with another request"]}, code="idempotency_key_reused")
        self.outbox.flush_soon(COLLECTION, ticket.id)
        return TICKET.dump(ticket)

    @rpc
    def get(self, community: str, ticket_id: str, viewer: dict) -> dict:
        """A ticket by its id or its short number, as ``viewer`` may see it (``allowed_actions`` theirs)."""
        viewer = self._viewer(community, viewer)
        return self._view(self._visible(community, ticket_id, viewer), viewer)

    @rpc
    def list_mine(self, community: str, resident: str, cursor: str | None = None, limit: int | None = None) -> dict:
        """The resident's tickets, newest first: ``{"items", "next_cursor"}``."""
        limit = page_limit(limit)
        found = self.tickets.of_resident(community, resident, limit + 1, after=decode_cursor(cursor, 2))
        return page(found, limit, key=lambda ticket: (ticket.created_at, ticket.id), dump=TICKETS.dump)

    # --- the lifecycle through the gateway (issue #11) ----------------------------------------------
    # Each action loads the ticket, checks the caller's If-Match (``expected_version``), gives the domain
    # command and saves with a filter on the version it loaded (never a lost update). The request
    # schemas are kernel/contracts.py's; services/tickets/actions.py maps errors and views.

    @rpc
    @idempotent  # a retried POST (same Idempotency-Key) answers what the first did, with no second transition
    def act(self, community: str, ticket_id: str, action: str, data: dict, viewer: dict,
            expected_version: int | None = None) -> dict:
        """Give ``action`` (dispatch, accept, bounce, start, pause, resume, resolve, close, merge, plan)."""
        if action not in lifecycle.ACTION_SCHEMAS:
            raise NotFound(f"no action {action!r}", {"action": sorted(lifecycle.ACTION_SCHEMAS)}, code="no_such_action")
        request = load(lifecycle.ACTION_SCHEMAS[action], data if data is not None else {})
        if action == "merge":
            return self._merge(community, ticket_id, request, viewer, expected_version)
        escalate_after = settings_of(self.config).escalate_after_bounces

        def command(ticket: Ticket, actor, now) -> None:
            lifecycle.apply_action(ticket, action, request, now, actor, escalate_after)
            if action == "resolve":  # the callback (回访): the catalogue's due (the next working day's close)
                ticket.schedule_callback(clocks.due_after(CATALOGUE.callback.due, now, self._calendar()))

        ticket, _ = self._change(community, ticket_id, viewer, expected_version, command)
        return self._view(ticket, self._viewer(community, viewer))

    @rpc
    def dispatch(self, community, ticket_id, data, viewer, expected_version=None) -> dict:
        return self.act(community, ticket_id, "dispatch", data, viewer, expected_version)

    @rpc
    def accept(self, community, ticket_id, data, viewer, expected_version=None) -> dict:
        return self.act(community, ticket_id, "accept", data, viewer, expected_version)

    @rpc
    def bounce(self, community, ticket_id, data, viewer, expected_version=None) -> dict:
        return self.act(community, ticket_id, "bounce", data, viewer, expected_version)

    @rpc
    def start(self, community, ticket_id, data, viewer, expected_version=None) -> dict:
        return self.act(community, ticket_id, "start", data, viewer, expected_version)

    @rpc
    def pause(self, community, ticket_id, data, viewer, expected_version=None) -> dict:
        return self.act(community, ticket_id, "pause", data, viewer, expected_version)

    @rpc
    def resume(self, community, ticket_id, data, viewer, expected_version=None) -> dict:
        return self.act(community, ticket_id, "resume", data, viewer, expected_version)

    @rpc
    def resolve(self, community, ticket_id, data, viewer, expected_version=None) -> dict:
        return self.act(community, ticket_id, "resolve", data, viewer, expected_version)

    @rpc
    def close(self, community, ticket_id, data, viewer, expected_version=None) -> dict:
        return self.act(community, ticket_id, "close", data, viewer, expected_version)

    @rpc
    def merge(self, community, ticket_id, data, viewer, expected_version=None) -> dict:
        return self.act(community, ticket_id, "merge", data, viewer, expected_version)

    @rpc
    def plan(self, community, ticket_id, data, viewer, expected_version=None) -> dict:
        return self.act(community, ticket_id, "plan", data, viewer, expected_version)

    @rpc
    @idempotent  # a retried POST (same Idempotency-Key) comments once
    def comment(self, community: str, ticket_id: str, data: dict, viewer: dict,
                expected_version: int | None = None) -> dict:
        """A comment, internal or resident-visible (notify echoes those of staff); the ticket as it is now."""
        request = load(lifecycle.COMMENT, data if data is not None else {})
        ticket, _ = self._change(community, ticket_id, viewer, expected_version, lambda ticket, actor, now: (
            ticket.comment(request["text"], request["visibility"], now, actor, attachments=request["attachments"])))
        return self._view(ticket, self._viewer(community, viewer))

    @rpc
    @idempotent  # a retried POST (same Idempotency-Key) records the answer once
    def record_callback(self, community: str, ticket_id: str, data: dict, viewer: dict,
                        expected_version: int | None = None) -> dict:
        """The callback (回访) answer: the resident's own, or staff recording a phone call.

        A merged ticket's reporter answers on the master (they are attached to it): the answer goes there.
        """
        request = load(lifecycle.CALLBACK, data if data is not None else {})
        viewed = self._visible(community, ticket_id, self._viewer(community, viewer))
        if viewed.merged_into is not None:
            ticket_id, expected_version = viewed.merged_into, None
        ticket, _ = self._change(community, ticket_id, viewer, expected_version, lambda ticket, actor, now: (
            ticket.record_callback(request["outcome"], request["note"], now, actor, resident=request["resident"],
                                   satisfaction=request["satisfaction"])))
        return self._view(ticket, self._viewer(community, viewer))

    @rpc
    def list_tickets(self, community: str, viewer: dict, filters: dict | None = None, cursor: str | None = None,
                     limit: int | None = None) -> dict:
        """Staff's list, newest first, within the caller's reach (a grid worker's grids, a volunteer's
        assignments, the office's community); residents get their own. Filters: state, grid, category,
        owner (the assignee's id), source, overdue (past ``due_at`` and open)."""
        viewer = self._viewer(community, viewer)
        limit = page_limit(limit)
        wanted = load(TICKET_FILTERS, filters or {})
        scope = lifecycle.staff_scope(viewer)
        if scope is None:
            raise Forbidden(f"the role {viewer['role']} may not list tickets", {"action": ["tickets.list"]})
        query = self.tickets.staff_query(community, wanted, scope, utcnow())
        found = self.tickets.list_for_staff(query, limit + 1, after=decode_cursor(cursor, 2))
        return page(found, limit, key=lambda ticket: (ticket.created_at, ticket.id),
                    dump=lambda tickets: [self._view(ticket, viewer) for ticket in tickets])

    @rpc
    @idempotent  # a retried POST (same Idempotency-Key) records the round and its tickets once
    def record_patrol(self, community: str, data: dict, viewer: dict) -> dict:
        """A patrol round (巡查), even with no finding; each finding becomes a ticket with source ``patrol``.

        The round's tickets are written first, then the round with ``patrol.recorded`` (ids derived from
        the round's id, so the same round written again finds its tickets instead of making new ones).
        """
        viewer = self._viewer(community, viewer)
        request = load(PATROL, data if data is not None else {})
        if not may_access("patrols.record", viewer, community=community, grid=request["grid"]):
            raise Forbidden(f"{viewer['role']} may not record a patrol of grid {request['grid']}",
                            {"grid": [request["grid"]]})
        services = []
        for index, finding in enumerate(request["findings"]):
            if finding["service_code"] not in CATALOGUE:
                raise ValidationFailed("the request is not valid",
                                       {f"findings.{index}.service_code": [f"unknown {finding['service_code']!r}"]})
            services.append(CATALOGUE.get(finding["service_code"]))
        patrol_id, now = uuid.uuid4().hex, utcnow()
        ticket_ids = []
        for index, (finding, service) in enumerate(zip(request["findings"], services, strict=True)):
            placed = self._route(community, None, finding.get("building")) or {"grid": request["grid"]}
            ticket = Ticket.receive(
                id=ticket_id_for(community, f"patrol:{patrol_id}", str(index)), community=community, service=service,
                description=finding["description"], reporter=None, source="patrol", now=now,
                address_string=finding.get("address_string") or finding.get("building"),
                lat=finding.get("lat"), long=finding.get("long"), attachments=finding["attachments"],
                number=self.numbers.next(self.tickets.numbers, community), patrol_id=patrol_id, **placed)
            self._set_deadlines(ticket)
            events = envelopes(ticket, self.context.correlation_id)
            self.tickets.add(ticket, events)
            self.outbox.flush_soon(COLLECTION, ticket.id, events)
            ticket_ids.append(ticket.id)
        record = {"_id": patrol_id, "community": community, "grid": request["grid"], "worker": viewer["subject"],
                  "started_at": request["started_at"], "ended_at": request["ended_at"], "checked": request["checked"],
                  "findings": len(ticket_ids), "ticket_ids": ticket_ids, "recorded_at": now}
        payload = {"patrol_id": patrol_id, "grid": request["grid"], "worker": viewer["subject"],
                   "started_at": request["started_at"].isoformat(),
                   "ended_at": request["ended_at"].isoformat() if request["ended_at"] else None,
                   "checked": request["checked"], "findings": len(ticket_ids), "ticket_ids": ticket_ids}
        events = [Envelope.new("patrol.recorded", payload, community=community,
                               correlation_id=self.context.correlation_id, version=current_version("patrol.recorded"))]
        self.tickets.add_patrol(record, events)
        self.outbox.flush_soon(PATROLS, patrol_id, events)
        return {"id": patrol_id, **{key: value for key, value in payload.items() if key != "patrol_id"},
                "recorded_at": now.isoformat()}

    @handles("tickets.merges")
    def on_merged(self, event: Envelope) -> None:
        """The master of a merge takes the duplicate's residents: converges a merge whose second write was lost."""
        payload = event.payload
        actor = payload.get("actor") or {"subject": "system", "role": "secretary"}
        self._absorb(event.community, payload["master_id"], payload["ticket_id"], payload["attached_residents"],
                     lifecycle.actor_of({"subject": actor["subject"], "role": actor["role"]}))

    # --- the lifecycle's helpers ---------------------------------------------------------------------

    def _viewer(self, community: str, viewer: dict) -> dict:
        viewer = load(VIEWER, viewer)
        viewer["community"] = viewer["community"] or community
        return viewer

    def _find(self, community: str, reference: str) -> Ticket | None:
        """A ticket by its id or its short number (XQ-20261206-0042)."""
        if isinstance(reference, str) and NUMBER.fullmatch(reference):
            return self.tickets.by_number(community, reference)
        return self.tickets.get(community, reference)

    def _visible(self, community: str, reference: str, viewer: dict) -> Ticket:
        ticket = self._find(community, reference)
        if ticket is None or not may_view(ticket, viewer):
            raise NotFound(f"no ticket {reference} that you may see")
        return ticket

    def _view(self, ticket: Ticket, viewer: dict) -> dict:
        master = self.tickets.get(ticket.community, ticket.merged_into) if ticket.merged_into else None
        return lifecycle.view(TICKET.dump(ticket), ticket, viewer, master)

    def _change(self, community: str, reference: str, viewer: dict, expected_version: int | None, command):
        """Load, check the version, give ``command(ticket, actor, now)``, save; retried on a race without If-Match."""
        viewer = self._viewer(community, viewer)
        actor = lifecycle.actor_of(viewer)
        for _ in range(SAVE_ATTEMPTS):
            ticket = self._visible(community, reference, viewer)
            if expected_version is not None and ticket.version != expected_version:
                raise lifecycle.stale(ticket, expected_version)
            loaded = ticket.version
            try:
                result = command(ticket, actor, utcnow())
            except DomainError as error:
                raise lifecycle.platform_error(error, self._visible(community, reference, viewer), actor) from error
            events = envelopes(ticket, self.context.correlation_id)
            try:
                self.tickets.save(ticket, loaded, events)
            except Conflict:
                if expected_version is not None:
                    raise lifecycle.stale(self._visible(community, reference, viewer), expected_version) from None
                continue  # no If-Match: give the command again on what is there now (it is checked again)
            self.outbox.flush_soon(COLLECTION, ticket.id, events)
            return ticket, result
        raise Conflict(f"ticket {reference} kept changing; try again", {"ticket": [reference]})

    def _merge(self, community: str, reference: str, request: dict, viewer: dict,
               expected_version: int | None) -> dict:
        """Merge a duplicate into its master: converging events, not a transaction.

        1. The duplicate is closed with ``merged_into`` and ``ticket.merged`` in its outbox (one write).
        2. The master attaches the duplicate's residents (:meth:`Ticket.absorb`), at once; and the
           handler of ``ticket.merged`` (``tickets.merges``) does it again, which changes nothing if
           step 2 happened. A crash between the two writes leaves the event in the duplicate's
           outbox: the relay publishes it and the handler finishes the merge. Attaching is idempotent,
           so every order and every redelivery converges to the same master.
        """
        viewer = self._viewer(community, viewer)
        master = self._find(community, request["into"])
        if master is None or not may_view(master, viewer):
            raise ValidationFailed("the request is not valid", {"into": ["no such ticket that you may see"]})

        def merge(ticket: Ticket, actor, now) -> None:
            try:
                ticket.merge_into(master, now, actor)
            except DomainError as error:
                if isinstance(error, lifecycle.InvalidTransition) and ticket.state in OPEN_STATES:
                    raise ValidationFailed("the request is not valid", {"into": [str(error)]}) from error
                raise

        duplicate, _ = self._change(community, reference, viewer, expected_version, merge)
        self._absorb(community, master.id, duplicate.id, duplicate.attached_residents, lifecycle.actor_of(viewer))
        return self._view(duplicate, viewer)

    def _absorb(self, community: str, master_id: str, duplicate_id: str, residents: list[str], actor) -> None:
        for _ in range(SAVE_ATTEMPTS + 2):
            master = self.tickets.get(community, master_id)
            if master is None:
                log.warning("ticket.merge_master_missing", ticket_id=duplicate_id, master_id=master_id)
                return
            loaded = master.version
            if not master.absorb(duplicate_id, residents, utcnow(), actor):
                return
            events = envelopes(master, self.context.correlation_id)
            try:
                self.tickets.save(master, loaded, events)
            except Conflict:
                continue
            self.outbox.flush_soon(COLLECTION, master.id, events)
            return
        raise Conflict(f"ticket {master_id} kept changing while a duplicate was merged into it")

    def _route(self, community: str, resident: str | None, building: str | None) -> dict:
        """Where a new ticket goes: ``{"grid", "building", "suggested_owner"}`` from the directory, or ``{}``.

        A building the directory does not know is the caller's mistake (422); a directory that does not
        answer leaves the ticket unplaced (it is received all the same, and dispatched by hand).
        """
        try:
            if building is None and resident is not None:
                try:
                    building = ((self.directory.me(community, resident) or {}).get("place") or {}).get("building")
                except NotFound:
                    building = None
            if building is None:
                return {}
            try:
                located = self.directory.locate(community, building)
            except NotFound as error:
                raise ValidationFailed("the request is not valid",
                                       {"building": [f"no building {building!r} in {community}"]}) from error
        except (NoSuchService, RpcTimeout) as error:
            log.warning("ticket.routing_unavailable", error=type(error).__name__)
            return {"building": building} if building else {}
        workers = located.get("workers") or []
        return {"grid": located["grid"], "building": building, "suggested_owner": workers[0] if workers else None}

    @rpc
    def export_resident(self, community: str, resident: str) -> dict:
        """Every ticket the resident reported or is attached to, whole: their part of a personal-data export."""
        tickets, after = [], None
        while page_of := self.tickets.of_resident(community, resident, EXPORT_PAGE, after=after):
            tickets += page_of
            after = (page_of[-1].created_at, page_of[-1].id)
        return {"tickets": TICKETS.dump(tickets)}

    # The echo's record is keyed by the outcome event's id: it is the record of the event.
    @handles("tickets.echo_outcomes", dedupe="effects")
    def on_echo_outcome(self, event: Envelope) -> None:
        """Record an echo outcome for the ticket's timeline (a redelivery collides and changes nothing)."""
        payload = event.payload
        entry = {
            "type": event.type, "at": event.occurred_at, "event_id": event.event_id,
            "channel": payload["channel"], "recipient": payload["recipient"],
            "source_event_type": payload["source_event_type"],
        }
        if payload.get("reason"):
            entry["reason"] = payload["reason"]
        self.tickets.record_echo(event.community, payload["ticket_id"], entry)

    # Like an echo, each volunteer step has its own record keyed by the event's id (helper N, issue #13).
    @handles("tickets.volunteer_events", dedupe="effects")
    def on_volunteer_event(self, event: Envelope) -> None:
        """Show a ticket's volunteer task on its timeline: offered (with reasons), accepted, declined, in, out.

        The resident's check-in code is left out: the assigned volunteer reads this timeline too.
        """
        payload = event.payload
        if payload["subject"] != "ticket":
            return
        entry = {"type": event.type, "at": event.occurred_at, "event_id": event.event_id,
                 "volunteer": payload["volunteer_id"], "task_id": payload["assignment_id"]}
        entry.update({key: payload[key] for key in ("reasons", "reason", "minutes", "auto_closed", "confirmed_by")
                      if payload.get(key) not in (None, [], False)})
        details = payload.get("reasons") or ([f"{payload['minutes']} min"] if payload.get("minutes") is not None
                                             else []) + ([payload["reason"]] if payload.get("reason") else [])
        entry["summary"] = f"{payload['volunteer_id']}: {', '.join(details)}" if details else payload["volunteer_id"]
        self.tickets.record_echo(event.community, payload["ticket_id"], entry)

    # --- personal data (PIPL) ----------------------------------------------------------------------

    @handles("tickets.erasures")
    def on_resident_erased(self, event: Envelope) -> None:
        """A resident asked to be forgotten: every ticket naming them is anonymised, and their echoes.

        Idempotent: once anonymised, no ticket or echo names the resident, so a redelivery
        finds nothing to change.
        """
        resident = event.payload["resident_id"]
        changed = sum(self._anonymise(document, resident=resident)
                      for document in self.tickets.documents_of_person(event.community, resident))
        # Echoes of tickets that no longer name them (another community's copy, an older record).
        self.tickets.rename_echo_recipient(event.community, resident, pseudonym())
        log.info("resident.erased", resident_id=resident, tickets_anonymised=changed)

    @timer(interval=RETENTION_SWEEP_SECONDS)
    def anonymise_expired(self) -> int:
        """Retention: the personal data of tickets closed more than RETENTION_DAYS ago is anonymised."""
        cutoff = utcnow() - timedelta(days=settings_of(self.config).retention_days)
        changed = sum(self._anonymise(document) for document in self.tickets.closed_before(cutoff, RETENTION_BATCH))
        if changed:
            log.info("tickets.retention_anonymised", tickets=changed, closed_before=cutoff.isoformat())
        return changed

    def _anonymise(self, document: dict, resident: str | None = None) -> bool:
        """Anonymise one ticket: one resident, or (``resident`` None) everyone on it; False if nothing changed."""
        for _ in range(ANONYMISE_ATTEMPTS):
            ticket = Ticket.from_document(document)
            expected = ticket.version
            people = [resident] if resident is not None else ticket.people
            pseudonyms = {who: pseudonym() for who in people}
            whole = resident is None
            if not ticket.anonymise(pseudonyms, utcnow(), whole=whole):
                return False
            outbox = [{**entry, "payload": anonymised_payload(entry.get("payload", {}), pseudonyms, whole=whole)}
                      for entry in document.get(OUTBOX, [])] if OUTBOX in document else None
            if self.tickets.save_anonymised(ticket, expected, outbox):
                for who, alias in pseudonyms.items():
                    self.tickets.rename_echo_recipient(ticket.community, who, alias, ticket.id)
                return True
            document = self.tickets.collection.find_one({"_id": ticket.id, "community": ticket.community})
            if document is None:
                return False
        raise Conflict(f"ticket {document['_id']} kept changing while it was being anonymised; retried later")

    # --- Open311 GeoReport v2 (the gateway renders these as JSON or XML) ------------------------------

    @rpc
    def open311_services(self, include_private: bool = False) -> list[dict]:
        """GET services: the catalogue; services private by nature only for a key (``include_private``)."""
        return [service.to_open311() for service in open311_services(include_private)]

    @rpc
    def open311_service_definition(self, service_code: str, include_private: bool = False) -> dict:
        """GET services/{code}: the service's attributes, or 404."""
        for service in open311_services(include_private):
            if service.code == service_code:
                return service.to_open311_definition()
        raise NotFound(f"no service {service_code}", {"service_code": [f"unknown service_code {service_code!r}"]})

    @rpc
    def open311_create(self, community: str, reporter: str, data: dict, token: str) -> dict:
        """POST requests: a ticket from source ``open311``; the same ``token`` makes one ticket only.

        Answers ``{"service_request_id", "service_notice", "account_id"}``. The token is recorded
        before the ticket, so GET tokens/{token} finds the ticket once it is stored.
        """
        request = load(OPEN311_REQUEST, data)
        try:
            service = CATALOGUE.get(request["service_code"])
        except UnknownService as error:
            raise NotFound(f"no service {error.code}",
                           {"service_code": [f"unknown service_code {error.code!r}"]}) from error
        values, errors = service.check_attributes(request["attributes"])
        if errors:
            raise ValidationFailed("the attributes do not match the service definition", errors)
        key, request_hash = f"open311:{token}", fingerprint(data)
        stored = self.tickets.by_request_key(community, reporter, key)
        if stored is None:
            ticket_id = ticket_id_for(community, reporter, key)
            self.tickets.add_open311_token(community, token, ticket_id, utcnow())
            address = request["address_string"] or (f"楼栋 {request['address_id']}" if request["address_id"] else None)
            ticket = Ticket.receive(
                id=ticket_id, community=community, service=service,
                description=(request["description"] or "").strip() or service.name, address_string=address,
                reporter=reporter, source="open311", now=utcnow(), lat=request["lat"], long=request["long"],
                number=self.numbers.next(self.tickets.numbers, community),
                **self._open311_route(community, reporter, request["address_id"]))
            clocks.at_intake(ticket)  # the fast lane: escalated to the secretary at once
            self._set_deadlines(ticket)
            events = envelopes(ticket, self.context.correlation_id)
            extra = {"attributes": values, "media_url": request["media_url"], "address_id": request["address_id"],
                     **self._first_look(ticket)}
            stored = self.tickets.add(ticket, events, key, request_hash, extra=extra)
            if stored is ticket:
                self.outbox.flush_soon(COLLECTION, ticket.id, events)
                log.info("ticket.received", ticket_id=ticket.id, service_code=service.code, source="open311")
            else:  # a concurrent attempt with the same token stored it first
                self._retried(stored, key, request_hash)
        else:  # a retry with the same token: the first request's ticket, if the body is the same
            self._retried(stored, key, request_hash)
        return {"service_request_id": stored.id, "service_notice": service_notice(stored.priority),
                "account_id": None}

    @rpc
    def open311_token(self, community: str, token: str) -> dict:
        """GET tokens/{token}: the request a token stands for, or 404 (unknown, or not stored yet)."""
        ticket_id = self.tickets.open311_token(community, token)
        if ticket_id is None:
            raise NotFound(f"no request for token {token}", {"token": ["not found"]})
        return {"service_request_id": ticket_id, "token": token}

    @rpc
    def open311_requests(self, community: str, query: dict, full: bool = False) -> list[dict]:
        """GET requests: the newest (at most 1000) requests matching ``query`` (Open311QuerySchema)."""
        query = load(OPEN311_QUERY, query)
        hidden = [] if full else [service.code for service in CATALOGUE.all() if service.private]
        if query["service_request_id"] is not None:  # the spec: it overrides all other arguments
            documents = self.tickets.open311_search(community, ids=query["service_request_id"],
                                                    hidden_codes=hidden, limit=OPEN311_MAX_REQUESTS)
        else:
            statuses = query["status"]
            states = None if statuses is None else [
                str(state) for state in (*OPEN_STATES, *CLOSED_STATES)
                if ("open" if state in OPEN_STATES else "closed") in statuses]
            documents = self.tickets.open311_search(
                community, start=query["start_date"], end=query["end_date"], service_codes=query["service_code"],
                hidden_codes=hidden, states=states, limit=OPEN311_MAX_REQUESTS)
        return [open311_view(document, full) for document in documents]

    @rpc
    def open311_request(self, community: str, ticket_id: str, full: bool = False) -> dict:
        """GET requests/{id}: one request, or 404 (also for a category that is private by nature, unless ``full``)."""
        document = self.tickets.open311_document(community, ticket_id)
        private = document is not None and not full and any(
            service.private for service in CATALOGUE.all() if service.code == document.get("service_code"))
        if document is None or private:
            raise NotFound(f"no request {ticket_id}", {"service_request_id": ["not found"]})
        return open311_view(document, full)

    # --- clocks: the working calendar, deadlines, warnings and breaches (sla.py) ----------------------

    def _calendar(self):
        return CALENDARS_CACHE.get(self.db, CATALOGUE)

    def _first_look(self, ticket: Ticket) -> dict:
        """When the timer should first look at a new ticket (its first threshold), as members of its document."""
        calendar = self._calendar()
        running = clocks.running_clocks(ticket, clocks.policy_for(CATALOGUE, ticket.priority, ticket.category),
                                        calendar)
        upcoming = clocks.next_check(running, calendar, ticket.created_at, clocks.percents_of(CATALOGUE))
        if calendar.missing_seen:
            MISSING.report(calendar)
        return sla.next_at_for_write(upcoming) if upcoming is not None else {}

    @sla_timer
    def check_deadlines(self) -> int:
        """Emit ``sla.warned`` / ``sla.breached`` for every threshold that has come, once each; how many."""
        now = self.sla_clock.now(self.db)
        calendar = self._calendar()
        fired = DeadlineWatch(self.db, COLLECTION, CATALOGUE, calendar).run(now, self.context.correlation_id)
        for key, events in fired.marks:
            self.outbox.flush_soon(SLA_MARKS, key, events)
        today = now.astimezone(SHANGHAI).date()
        # The next year's arrangement is published in November: from December on, its absence is worth a warning.
        MISSING.report(calendar, [today.year, today.year + 1] if today.month == 12 else [today.year])
        return len(fired.marks)

    @rpc
    def sla_clocks(self, community: str, ticket_id: str) -> dict:
        """The ticket's running clocks, their deadlines and thresholds, computed now (for staff views and tests)."""
        ticket = self.tickets.get(community, ticket_id)
        if ticket is None:
            raise NotFound(f"no ticket {ticket_id}")
        calendar = self._calendar()
        percents = clocks.percents_of(CATALOGUE)
        running = clocks.running_clocks(ticket, clocks.policy_for(CATALOGUE, ticket.priority, ticket.category),
                                        calendar)
        return {"ticket_id": ticket.id, "priority": ticket.priority, "fast_lane": ticket.is_fast_lane,
                "clocks": [clock.to_view(calendar, percents) for clock in running]}

    @rpc
    def get_calendar(self, year: int) -> dict:
        """The working calendar of a year; 404 if none is loaded (that year counts weekends only)."""
        year = _calendar_year(year)
        document = CalendarStore(self.db).document(year)
        if document is None:
            raise NotFound(f"no working calendar loaded for {year}: its deadlines count weekends only",
                           {"year": [f"{year} is not loaded"]}, code="calendar_missing")
        return document

    @rpc
    def put_calendar(self, year: int, data: dict, by: str | None = None) -> dict:
        """Load (or replace) a year's public holidays and 调休 working days; the year's ops warning clears."""
        year = _calendar_year(year)
        body = load(CALENDAR_BODY, data)
        try:
            calendar = YearCalendar.from_dict(year, body)
        except CalendarInvalid as invalid:
            raise ValidationFailed("the calendar is not valid", invalid.problems) from invalid
        store = CalendarStore(self.db)
        store.put(calendar, by)
        CALENDARS_CACHE.forget(self.db)
        MISSING.loaded(year)
        log.info("calendar.loaded", year=year, holidays=len(calendar.holidays), workdays=len(calendar.workdays))
        return store.document(year)

    @rpc
    def set_test_clock(self, offset_seconds: float) -> dict:
        """Tests only (SLA_TEST_CLOCK=1): move every tickets process's deadline clock by ``offset_seconds``."""
        if not self.sla_clock.movable:
            raise Forbidden("the deadline clock is the wall clock here (SLA_TEST_CLOCK is off)")
        self.sla_clock.move(self.db, offset_seconds)
        return {"now": self.sla_clock.now(self.db).isoformat()}

    def _set_deadlines(self, ticket: Ticket) -> None:
        """A new ticket's first-response and resolution deadlines (``response_due_at``, ``due_at``), from its clocks."""
        calendar = self._calendar()
        running = clocks.running_clocks(ticket, clocks.policy_for(CATALOGUE, ticket.priority, ticket.category),
                                        calendar)
        ticket.due_at = sla.resolution_due(running)
        ticket.response_due_at = next((clock.due_at for clock in running if clock.name == clocks.FIRST_RESPONSE),
                                      None)

    def _open311_route(self, community: str, reporter: str | None, address_id: str | None) -> dict:
        """Routing of an Open311 request: its ``address_id`` as the building; an id the directory does not know
        leaves the request unplaced (an integrator's ids are its own), as a directory that does not answer does."""
        try:
            return self._route(community, reporter, address_id)
        except ValidationFailed:
            return self._route(community, reporter, None)

    # --- 日清周议 and the three rates (reports.py: what counts; readmodel.py: the counters) -----------------

    def _read_model(self) -> ReadModel:
        return ReadModel(self.db, clock_response_due(CATALOGUE, self._calendar()))

    def _report_grids(self, community: str, viewer: dict, grid: str | None) -> tuple[dict, list[str] | None]:
        """Who asks and the grids their report covers (None: the whole community); 403 outside their reach."""
        viewer = self._viewer(community, viewer)
        grant = grant_for("reports.read", viewer["role"])
        if grant is None:
            raise Forbidden(f"the role {viewer['role']} may not read reports", {"action": ["reports.read"]})
        if grid is not None and (not isinstance(grid, str) or not grid.strip()):
            raise ValidationFailed("the request is not valid", {"grid": ["a grid's code"]})
        if grant is Grant.IF_GRID:
            mine = list(viewer.get("grids") or [])
            if grid is not None and grid not in mine:
                raise Forbidden(f"grid {grid} is not one of yours", {"grid": [grid]})
            return viewer, [grid] if grid is not None else mine
        return viewer, [grid] if grid is not None else None

    def _clearance_hour(self) -> int:
        hour = settings_of(self.config).daily_clearance_hour
        return hour if 0 <= hour <= 23 else reports.DEFAULT_CLEARANCE_HOUR

    @rpc
    def daily_report(self, community: str, viewer: dict, date: str | None = None, grid: str | None = None) -> dict:
        """日清 of ``date`` (default today, Asia/Shanghai) at the clearance hour: the uncleared list per grid and owner.

        The tickets are taken as they are now (an earlier date shows today's tickets against that day's hour).
        """
        _, grids = self._report_grids(community, viewer, grid)
        now = utcnow()
        day = _report_day(date, now)
        moment = reports.clearance_moment(day, self._clearance_hour())
        documents = self.tickets.open_for_report(community, grids)
        closed = self.tickets.closed_between(community, reports.day_start(day),
                                             reports.day_start(day + timedelta(days=1)), grids)
        return {**reports.daily_report(day, moment, documents, closed), "grids": grids}

    @rpc
    def weekly_report(self, community: str, viewer: dict, week: str | None = None, grid: str | None = None) -> dict:
        """周议 of ``week`` (``YYYY-Www``, default this week): the review agenda."""
        _, grids = self._report_grids(community, viewer, grid)
        now = utcnow()
        try:
            monday, sunday = reports.parse_week(week if week not in (None, "") else reports.current_week(now))
        except reports.ReportQueryInvalid as invalid:
            raise ValidationFailed("the request is not valid", invalid.problems) from invalid
        span = reports.Week(monday, sunday)
        model = self._read_model()
        marks = model.marked(community, monday, sunday, grids)
        documents = self.tickets.for_weekly_review(community, list(marks), min(now, span.end), grids)
        repeats = reports.repeat_problems(model.read(
            community, sunday - timedelta(days=reports.REPEAT_DAYS - 1), sunday, grids, buildings=True))
        gaps = self._coverage_gaps(community, span)
        return {**reports.weekly_agenda(span, now, documents, repeats, gaps, marks), "grids": grids}

    def _coverage_gaps(self, community: str, span) -> dict:
        """What volunteers reports as the week's coverage gaps (its RPC ``coverage_gaps``, asked with the week's
        Monday: ``{"gaps": [{"skill", "grid", "available", "needed"}]}``), or an empty list and a note why not."""
        try:
            found = self.volunteers.coverage_gaps(community, span.monday.isoformat())
        except (NoSuchService, RpcTimeout, MethodNotFound, PlatformError) as error:
            return {"items": [], "note": f"volunteers did not report coverage gaps ({type(error).__name__})"}
        gaps = found.get("gaps") if isinstance(found, dict) else None
        return {"items": list(gaps or []), "note": None if isinstance(gaps, list) else "no gaps in the answer"}

    @rpc
    def rates_report(self, community: str, viewer: dict, start: str | None = None, end: str | None = None,
                     grid: str | None = None, category: str | None = None) -> dict:
        """响应率, 解决率 (beside it what staff claimed) and 满意率 over ``[start, end]`` (days, inclusive,
        Asia/Shanghai; default the last 30 days), read from the counters (readmodel.py)."""
        _, grids = self._report_grids(community, viewer, grid)
        try:
            first, last = reports.rate_period(start, end, utcnow())
        except reports.ReportQueryInvalid as invalid:
            raise ValidationFailed("the request is not valid", invalid.problems) from invalid
        if category is not None and (not isinstance(category, str) or not category.strip()):
            raise ValidationFailed("the request is not valid", {"category": ["a category's name"]})
        totals = self._read_model().totals(community, first, last, grids, category)
        return {"from": first.isoformat(), "to": last.isoformat(), "grids": grids, "category": category,
                **reports.rates(totals)}

    @rpc
    def rebuild_reports(self, community: str | None = None) -> dict:
        """The read model anew from the tickets (``huisheng reports rebuild`` does it straight on the database)."""
        return self._read_model().rebuild(utcnow(), community)

    # Keyed by the ticket, not the event: each event recomputes the ticket's facts and applies the difference
    # in one transaction (readmodel.py), so a redelivery or a reordering changes nothing.
    @handles("tickets.reports", dedupe="effects")
    def on_report_event(self, event: Envelope) -> None:
        """Bring the reports' counters up to date with the ticket the event is about."""
        if event.type == "sla.breached" and event.payload.get("clock") != clocks.FIRST_RESPONSE:
            return  # only the first-response deadline passing changes what the ticket counts for
        # The deadline clock's "now" (the wall clock, or the test clock the timer also reads).
        self._read_model().apply(event.community, event.payload["ticket_id"], self.sla_clock.now(self.db))


def _report_day(text, now):
    """The day a daily report is of: ``text`` (YYYY-MM-DD), default today in Asia/Shanghai; 422 if unreadable."""
    if text in (None, ""):
        return now.astimezone(SHANGHAI).date()
    try:
        return reports.parse_day(text, "date")
    except reports.ReportQueryInvalid as invalid:
        raise ValidationFailed("the request is not valid", invalid.problems) from invalid


def _calendar_year(year) -> int:
    """A year an admin may load, or 422."""
    try:
        value = int(year)
    except (TypeError, ValueError):
        value = None
    if value is None or isinstance(year, bool) or not FIRST_YEAR <= value <= LAST_YEAR:
        raise ValidationFailed("the request is not valid", {"year": [f"a year from {FIRST_YEAR} to {LAST_YEAR}"]})
    return value

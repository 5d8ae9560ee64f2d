"""The tickets service's entrypoints: load, call the domain, save, dump.

What is not an entrypoint lives beside it: the lifecycle's requests and views (actions.py), writing
a ticket and merging two (writes.py), routing (routing.py), the clocks at run time (sla.py) and the
deadline table (deadlines.py), Open311's view (open311.py), patrols (patrols.py), the reports'
queries (reporting.py) and rules (reports.py), personal data (retention.py).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta

from nameko.dependency_providers import Config
from nameko.timer import timer
from pymongo.errors import PyMongoError

from kernel.config import settings_of
from kernel.context import Context
from kernel.contracts import CalendarSchema, PatrolSchema, StaffCreateTicketSchema
from kernel.envelope import Envelope, utcnow
from kernel.errors import Forbidden, NotFound, ValidationFailed
from kernel.groupcommit import GroupCommit
from kernel.handlers import handles
from kernel.health import HealthEndpoints
from kernel.idempotency import fingerprint, idempotent
from kernel.logging import get_logger
from kernel.mongo import Mongo
from kernel.outbox import Outbox
from kernel.pagination import decode_cursor, encode_cursor, page, page_limit
from kernel.rpc import RpcClient, rpc
from kernel.validation import load
from services.tickets import actions as lifecycle
from services.tickets import (
    clocks,
    intake,
    open311,
    patrols,
    photos,
    reporting,
    reports,
    retention,
    routing,
    sla,
    timeline,
)
from services.tickets.calendar import SHANGHAI, CalendarInvalid, YearCalendar
from services.tickets.catalogue import UnknownService, shipped_catalogue
from services.tickets.deadlines import TABLES, DeadlinesInvalid, DeadlineStore, UnknownCategory, parse_row
from services.tickets.domain import Ticket
from services.tickets.numbers import TicketNumbers
from services.tickets.open311 import OPEN311_MAX_REQUESTS, Open311QuerySchema, Open311RequestSchema
from services.tickets.projection import FOLD_INTERVAL, ReportProjection
from services.tickets.readmodel import ReadModel, clock_response_due
from services.tickets.repository import COLLECTION, PATROLS, TicketRepository, ticket_id_for
from services.tickets.schemas import CreateTicketSchema, TicketFiltersSchema, TicketSchema
from services.tickets.sla import CALENDARS_CACHE, MISSING, SLA_MARKS, CalendarStore, DeadlineWatch, SlaClock, sla_timer
from services.tickets.timeline import volunteer_entry
from services.tickets.writes import TicketWrites

CATALOGUE = shipped_catalogue()
# Schemas are built once: building one deep-copies its fields, which costs more than using it.
STAFF_CREATE, PATROL, TICKET_FILTERS = StaffCreateTicketSchema(), PatrolSchema(), TicketFiltersSchema()
CREATE_TICKET, TICKET = CreateTicketSchema(), TicketSchema()
OPEN311_REQUEST, OPEN311_QUERY = Open311RequestSchema(), Open311QuerySchema()
CALENDAR_BODY = CalendarSchema()
log = get_logger(__name__)


class TicketsService(HealthEndpoints):
    name = "tickets"

    db = Mongo(indexes=TicketRepository.ensure_indexes)  # and, at start-up, the calendars' and deadlines' seed
    writes = GroupCommit()
    outbox = Outbox(collections=[COLLECTION, SLA_MARKS, PATROLS])  # the marks carry sla.warned / sla.breached
    numbers = TicketNumbers()  # short numbers, from blocks reserved per process (services/tickets/numbers.py)
    directory = RpcClient("directory", timeout=routing.DIRECTORY_TIMEOUT)  # routing: directory.routes, .route
    routes = routing.Routing()  # a copy of each community's routing, a few seconds old
    volunteers = RpcClient("volunteers", timeout=reporting.VOLUNTEERS_TIMEOUT)  # the weekly review's coverage gaps
    notify = RpcClient("notify", timeout=timeline.NOTIFY_TIMEOUT)  # the echoes on the timelines of a reply
    report_stream = ReportProjection()  # the tickets' change stream, folded into the reports' counters
    sla_clock = SlaClock()  # the wall clock, movable in tests (SLA_TEST_CLOCK)
    context = Context()
    config = Config()  # the retention period (Settings.retention_days)

    @property
    def tickets(self) -> TicketRepository:
        return TicketRepository(self.db, self.writes)

    @property
    def changes(self) -> TicketWrites:
        return TicketWrites(self.tickets, self.outbox, self.context.correlation_id)

    def _shown(self, community: str, tickets: Sequence[Ticket], dump: Callable[[Ticket], dict]) -> list[dict]:
        """The replies of ``tickets`` to a caller, their timelines with notify's echo outcomes: one
        ``echo_outcomes`` call for them all, and each reply ``echoes_unavailable`` if it went unanswered.

        Only what a caller is answered asks notify: an action loading the ticket it changes, the clocks,
        the reports and retention read tickets without their echoes.
        """
        answered = timeline.attach_echoes(self.notify, community, tickets)
        return [timeline.flagged(dump(ticket), answered) for ticket in tickets]

    def _viewed(self, community: str, ticket: Ticket, viewer: dict) -> dict:
        """One ticket as ``viewer`` sees it, with its echoes (:meth:`_shown`)."""
        return self._shown(community, [ticket], lambda shown: self.changes.view(shown, viewer))[0]

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
               request_key: str | None = None, viewer: dict | None = None, home: str | None = None) -> dict:
        """Receive a request. The same ``request_key`` from the same reporter creates one ticket only.

        ``viewer`` is staff entering it on a resident's behalf (phone-in, walk-in, hotline): the body
        may then name ``on_behalf_of`` (the resident, who gets the echoes) and ``source``. Routing: a
        ``building`` (the body's, else ``home``, the reporter's own as their token says, else the one the
        directory knows) places the ticket in its grid (routing.py) and proposes the grid's worker as
        ``suggested_owner``.
        """
        if lifecycle.enters_for_resident(viewer):
            request = load(STAFF_CREATE, data)
            reporter, source = request.pop("on_behalf_of"), request.pop("source")
        else:
            request = load(CREATE_TICKET, data)
        # ``attributes`` left out answers nothing: intake.answers still asks the category's required questions
        attachments, given = request.pop("attachments", []), request.pop("attributes", None)
        request_hash = fingerprint(data) if request_key is not None else None
        earlier = self.tickets.by_request_key(community, reporter, request_key)
        if earlier is not None:  # a replay: the first attempt's ticket, which may have echoes by now
            return self._shown(community, [self.changes.retried(earlier, request_key, request_hash)], TICKET.dump)[0]
        try:
            service = CATALOGUE.get(request.pop("service_code"))
        except UnknownService as error:
            raise ValidationFailed("the request is not valid",
                                   {"service_code": [f"unknown service_code {error.code!r}"]}) from error
        answers = intake.answers(service, given)  # 422 before routing asks the directory anything
        placed = routing.route(self.directory, community, reporter, request.pop("building", None),
                               home=home if viewer is None else None, copy=self.routes)
        ticket_id = ticket_id_for(community, reporter, request_key)
        author = viewer["subject"] if viewer is not None else reporter  # who uploaded the photos it names
        attachments = photos.claim(self.db, community, author, ticket_id, attachments)
        ticket = Ticket.receive(
            id=ticket_id, community=community, service=service, reporter=reporter,
            source=source, now=utcnow(), **request, **placed, attachments=attachments, attributes=answers,
            number=self.numbers.next(self.tickets.numbers, community),
        )
        clocks.at_intake(ticket)  # the fast lane: escalated to the secretary at once
        stored = self.changes.receive(ticket, request_key, request_hash, extra=self._give_deadlines(ticket))
        if stored is not ticket:  # a concurrent attempt with the same key stored it first
            return self._shown(community, [self.changes.retried(stored, request_key, request_hash)], TICKET.dump)[0]
        log.info("ticket.received", ticket_id=ticket.id, service_code=service.code, priority=ticket.priority)
        return TICKET.dump(ticket)  # a new ticket has no echo yet: notify is not asked

    @rpc
    def get(self, community: str, ticket_id: str, viewer: dict) -> dict:
        """A ticket by its id or its short number, as ``viewer`` may see it (``allowed_actions`` theirs)."""
        viewer = lifecycle.load_viewer(community, viewer)
        return self._viewed(community, self.changes.visible(community, ticket_id, viewer), viewer)

    @rpc
    def list_mine(self, community: str, resident: str, cursor: str | None = None, limit: int | None = None) -> dict:
        """The resident's tickets, newest first: ``{"items", "next_cursor"}``."""
        limit = page_limit(limit)
        found = self.tickets.of_resident(community, resident, limit + 1, after=decode_cursor(cursor, 2))
        return page(found, limit, key=lambda ticket: (ticket.created_at, ticket.id),
                    dump=lambda tickets: self._shown(community, tickets, TICKET.dump))

    # --- the lifecycle through the gateway (issue #11) ----------------------------------------------
    # Each action loads the ticket, checks the caller's If-Match (``expected_version``), gives the domain
    # command and saves with a filter on the version it loaded (writes.py: never a lost update). The
    # request schemas are kernel/contracts.py's; services/tickets/actions.py maps errors and views.

    @rpc
    @idempotent  # a retried POST (same Idempotency-Key) answers what the first did, with no second transition
    def act(self, community: str, ticket_id: str, action: str, data: dict, viewer: dict,
            expected_version: int | None = None) -> dict:
        """Give ``action`` (dispatch, accept, bounce, start, pause, resume, resolve, close, merge, plan)."""
        if action not in lifecycle.ACTION_SCHEMAS:
            raise NotFound(f"no action {action!r}", {"action": sorted(lifecycle.ACTION_SCHEMAS)}, code="no_such_action")
        request = load(lifecycle.ACTION_SCHEMAS[action], data if data is not None else {})
        viewer = lifecycle.load_viewer(community, viewer)
        if action == "merge":
            return self._viewed(community, self.changes.merge(community, ticket_id, request, viewer,
                                                              expected_version), viewer)
        escalate_after = settings_of(self.config).escalate_after_bounces

        def command(ticket: Ticket, actor, now) -> None:
            lifecycle.apply_action(ticket, action, request, now, actor, escalate_after)
            if action == "resolve":  # the callback (回访): the catalogue's due (the next working day's close)
                ticket.schedule_callback(clocks.due_after(CATALOGUE.callback.due, now, self._calendar()))

        ticket = self.changes.change(community, ticket_id, viewer, expected_version, command)
        return self._viewed(community, ticket, viewer)

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
        viewer = lifecycle.load_viewer(community, viewer)
        ticket = self.changes.change(community, ticket_id, viewer, expected_version, lambda ticket, actor, now: (
            ticket.comment(request["text"], request["visibility"], now, actor, attachments=photos.claim(
                self.db, community, viewer["subject"], ticket.id, request["attachments"]))))
        return self._viewed(community, ticket, viewer)

    @rpc
    @idempotent  # a retried POST (same Idempotency-Key) records the answer once
    def record_callback(self, community: str, ticket_id: str, data: dict, viewer: dict,
                        expected_version: int | None = None) -> dict:
        """The callback (回访) answer: the resident's own, or staff recording a phone call.

        A merged ticket's reporter answers on the master (they are attached to it): the answer goes there.
        """
        request = load(lifecycle.CALLBACK, data if data is not None else {})
        viewer = lifecycle.load_viewer(community, viewer)
        viewed = self.changes.visible(community, ticket_id, viewer)
        if viewed.merged_into is not None:
            ticket_id, expected_version = viewed.merged_into, None
        ticket = self.changes.change(community, ticket_id, viewer, expected_version, lambda ticket, actor, now: (
            ticket.record_callback(request["outcome"], request["note"], now, actor, resident=request["resident"],
                                   satisfaction=request["satisfaction"])))
        return self._viewed(community, ticket, viewer)

    @rpc
    def list_tickets(self, community: str, viewer: dict, filters: dict | None = None, cursor: str | None = None,
                     limit: int | None = None) -> dict:
        """Staff's list, newest first, within the caller's reach (a grid worker's grids, a volunteer's
        assignments, the office's community); residents get their own. Filters: state, grid, category,
        owner (the assignee's id), source, overdue (past ``due_at`` and open)."""
        viewer = lifecycle.load_viewer(community, viewer)
        limit = page_limit(limit)
        wanted = load(TICKET_FILTERS, filters or {})
        scope = lifecycle.staff_scope(viewer)
        if scope is None:
            raise Forbidden(f"the role {viewer['role']} may not list tickets", {"action": ["tickets.list"]})
        query = self.tickets.staff_query(community, wanted, scope, utcnow())
        found = self.tickets.list_for_staff(query, limit + 1, after=decode_cursor(cursor, 2))
        return page(found, limit, key=lambda ticket: (ticket.created_at, ticket.id), dump=lambda tickets: self._shown(
            community, tickets, lambda shown: self.changes.view(shown, viewer)))

    @rpc
    @idempotent  # a retried POST (same Idempotency-Key) records the round and its tickets once
    def record_patrol(self, community: str, data: dict, viewer: dict) -> dict:
        """A patrol round (巡查), even with no finding; each finding becomes a ticket with source ``patrol``."""
        viewer = lifecycle.load_viewer(community, viewer)
        request = load(PATROL, data if data is not None else {})
        services = patrols.check(request, viewer, community, CATALOGUE)
        patrol_id, now = uuid.uuid4().hex, utcnow()
        ticket_ids = []
        for index, (finding, service) in enumerate(zip(request["findings"], services, strict=True)):
            placed = routing.route(self.directory, community, None, finding.get("building"), copy=self.routes) or {
                "grid": request["grid"]}
            ticket = patrols.finding_ticket(community, patrol_id, index, finding, service, now,
                                            self.numbers.next(self.tickets.numbers, community), placed)
            self._give_deadlines(ticket)
            self.changes.receive(ticket)
            ticket_ids.append(ticket.id)
        record, events, answer = patrols.round_record(patrol_id, community, request, viewer["subject"], ticket_ids,
                                                      now, self.context.correlation_id)
        self.tickets.add_patrol(record, events)
        self.outbox.flush_soon(PATROLS, patrol_id, events)
        return answer

    # --- photos a phone uploads (photos.py: kept with GridFS; who may read one) ---------------------------

    @rpc
    @idempotent  # a retried upload (same Idempotency-Key) answers the first one's photo, not a second copy
    def store_photo(self, community: str, uploader: str, content_type: str, data: str) -> dict:
        """Keep an uploaded photo (``data``: its bytes in base64); ``{"url", "content_type", "size"}`` to attach."""
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError, TypeError) as error:
            raise ValidationFailed("the photo is not valid", {"body": ["not base64"]}) from error
        stored = photos.store(self.db, community, uploader, content_type, raw)
        log.info("photo.stored", url=stored["url"], content_type=content_type, size=stored["size"])
        return stored

    @rpc
    def photo(self, community: str, photo_id: str, viewer: dict) -> dict:
        """A photo ``viewer`` may see (theirs, or on a ticket they may read): ``{"content_type", "data"}``
        (base64); 404 otherwise, as for one that does not exist."""
        viewer = lifecycle.load_viewer(community, viewer)
        found = photos.readable(self.db, self.tickets.collection, community, photo_id, viewer)
        return {"content_type": found["content_type"], "data": base64.b64encode(found["data"]).decode("ascii")}

    @handles("tickets.merges")
    def on_merged(self, event: Envelope) -> None:
        """The master of a merge takes the duplicate's residents: converges a merge whose second write was lost."""
        payload = event.payload
        actor = payload.get("actor") or {"subject": "system", "role": "secretary"}
        self.changes.absorb(event.community, payload["master_id"], payload["ticket_id"], payload["attached_residents"],
                            lifecycle.actor_of({"subject": actor["subject"], "role": actor["role"]}))

    @rpc
    def export_resident(self, community: str, resident: str) -> dict:
        """Every ticket the resident reported or is attached to, whole: their part of a personal-data export."""
        return retention.export(self.tickets, community, resident)

    # Each volunteer step has its own record keyed by the event's id (helper N, issue #13): the record of the event.
    @handles("tickets.volunteer_events", dedupe="effects")
    def on_volunteer_event(self, event: Envelope) -> None:
        """Show a ticket's volunteer task on its timeline: offered (with reasons), accepted, declined, in, out."""
        entry = volunteer_entry(event)
        if entry is not None:
            self.tickets.record_entry(event.community, event.payload["ticket_id"], entry)

    # --- personal data (PIPL) ----------------------------------------------------------------------

    @handles("tickets.erasures")
    def on_resident_erased(self, event: Envelope) -> None:
        """A resident asked to be forgotten: every ticket naming them is anonymised.

        Idempotent: once anonymised, no ticket names the resident, so a redelivery finds nothing to
        change. Their echoes are notify's records, which notify erases (``notify.erasures``).
        """
        resident = event.payload["resident_id"]
        documents = self.tickets.documents_of_person(event.community, resident)
        changed = sum(retention.anonymise(self.tickets, document, resident=resident) for document in documents)
        deleted = photos.forget_uploader(self.db, event.community, resident)  # tickets' photos stay, as attachments do
        log.info("resident.erased", resident_id=resident, tickets_anonymised=changed, photos_deleted=deleted)

    @timer(interval=retention.RETENTION_SWEEP_SECONDS)
    def anonymise_expired(self) -> int:
        """Retention: the personal data of tickets closed more than RETENTION_DAYS ago is anonymised."""
        cutoff = utcnow() - timedelta(days=settings_of(self.config).retention_days)
        documents = self.tickets.closed_before(cutoff, retention.RETENTION_BATCH)
        changed = sum(retention.anonymise(self.tickets, document) for document in documents)
        if changed:
            log.info("tickets.retention_anonymised", tickets=changed, closed_before=cutoff.isoformat())
        return changed

    # --- Open311 GeoReport v2 (the gateway renders these as JSON or XML; open311.py: what each sees) ----------

    @rpc
    def open311_services(self, include_private: bool = False) -> list[dict]:
        """GET services: the catalogue; services private by nature only for a key (``include_private``)."""
        return [service.to_open311() for service in open311.open311_services(include_private)]

    @rpc
    def open311_service_definition(self, service_code: str, include_private: bool = False) -> dict:
        """GET services/{code}: the service's attributes, or 404."""
        for service in open311.open311_services(include_private):
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
        values = intake.answers(service, request["attributes"], field=intake.OPEN311_FIELD)
        key, request_hash = f"open311:{token}", fingerprint(data)
        stored = self.tickets.by_request_key(community, reporter, key)
        if stored is None:
            ticket_id = ticket_id_for(community, reporter, key)
            self.tickets.add_open311_token(community, token, ticket_id, utcnow())
            ticket = Ticket.receive(
                id=ticket_id, community=community, service=service,
                description=(request["description"] or "").strip() or service.name,
                address_string=open311.address_of(request), reporter=reporter, source="open311", now=utcnow(),
                lat=request["lat"], long=request["long"], number=self.numbers.next(self.tickets.numbers, community),
                attributes=values,
                **routing.open311_route(self.directory, community, reporter, request["address_id"], self.routes))
            clocks.at_intake(ticket)  # the fast lane: escalated to the secretary at once
            extra = {"media_url": request["media_url"], "address_id": request["address_id"],
                     **self._give_deadlines(ticket)}
            stored = self.changes.receive(ticket, key, request_hash, extra=extra)
            if stored is ticket:
                log.info("ticket.received", ticket_id=ticket.id, service_code=service.code, source="open311")
            else:  # a concurrent attempt with the same token stored it first
                self.changes.retried(stored, key, request_hash)
        else:  # a retry with the same token: the first request's ticket, if the body is the same
            self.changes.retried(stored, key, request_hash)
        return {"service_request_id": stored.id, "service_notice": open311.service_notice(stored),
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
        hidden = open311.hidden_codes(full)
        if query["service_request_id"] is not None:  # the spec: it overrides all other arguments
            documents = self.tickets.open311_search(community, ids=query["service_request_id"],
                                                    hidden_codes=hidden, limit=OPEN311_MAX_REQUESTS)
        else:
            documents = self.tickets.open311_search(
                community, start=query["start_date"], end=query["end_date"], service_codes=query["service_code"],
                hidden_codes=hidden, states=open311.states_of(query["status"]), limit=OPEN311_MAX_REQUESTS)
        return [open311.open311_view(document, full) for document in documents]

    @rpc
    def open311_request(self, community: str, ticket_id: str, full: bool = False) -> dict:
        """GET requests/{id}: one request, or 404 (also for a category that is private by nature, unless ``full``)."""
        document = self.tickets.open311_document(community, ticket_id)
        if document is None or open311.is_hidden(document, full):
            raise NotFound(f"no request {ticket_id}", {"service_request_id": ["not found"]})
        return open311.open311_view(document, full)

    # --- clocks: the working calendar, the deadline table, warnings and breaches (sla.py, deadlines.py) --------

    def _calendar(self):
        return CALENDARS_CACHE.get(self.db, CATALOGUE)

    def _give_deadlines(self, ticket: Ticket) -> dict:
        """A new ticket's deadlines from its category's row now; the members of its document for the timer."""
        calendar = self._calendar()
        running = sla.give_deadlines(ticket, TABLES.row(self.db, ticket.category, CATALOGUE), CATALOGUE, calendar)
        return sla.first_look(ticket, CATALOGUE, calendar, running)

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
        years = [today.year, today.year + 1] if today.month == 12 else [today.year]
        MISSING.report(calendar, years, read_at=CALENDARS_CACHE.read_at(calendar))
        return len(fired.marks)

    @rpc
    def sla_clocks(self, community: str, ticket_id: str) -> dict:
        """The ticket's running clocks, their deadlines and thresholds, computed now (for staff views and tests)."""
        ticket = self.tickets.get(community, ticket_id)
        if ticket is None:
            raise NotFound(f"no ticket {ticket_id}")
        return sla.clocks_view(ticket, CATALOGUE, self._calendar())

    @rpc
    def get_calendar(self, year: int) -> dict:
        """The working calendar of a year; 404 if none is loaded (that year counts weekends only)."""
        year = sla.admin_year(year)
        document = CalendarStore(self.db).document(year)
        if document is None:
            raise NotFound(f"no working calendar loaded for {year}: its deadlines count weekends only",
                           {"year": [f"{year} is not loaded"]}, code="calendar_missing")
        return document

    @rpc
    def put_calendar(self, year: int, data: dict, by: str | None = None) -> dict:
        """Load (or replace) a year's public holidays and 调休 working days; the year's ops warning clears."""
        year = sla.admin_year(year)
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
    def get_deadlines(self) -> dict:
        """The deadline table: per category × priority, first response, keep-in-loop and resolution."""
        return DeadlineStore(self.db).view(CATALOGUE)

    @rpc
    def put_deadlines(self, category: str, data: dict, by: str | None = None) -> dict:
        """Replace a category's deadlines (``{"priorities": {...}}``; priorities left out keep theirs) for the
        tickets received from now on; recorded with ``by`` and the row it replaces."""
        store = DeadlineStore(self.db)
        try:
            row = parse_row(data, store.row(category, CATALOGUE))
            answer = store.put(category, row, by, CATALOGUE)
        except UnknownCategory as unknown:
            raise NotFound(f"no category {unknown.category!r}", {"category": ["not a category of the catalogue"]},
                           code="no_such_category") from unknown
        except DeadlinesInvalid as invalid:
            raise ValidationFailed("the deadlines are not valid", invalid.problems) from invalid
        TABLES.forget(self.db)
        log.info("deadlines.changed", category=category, by=by, priorities=sorted(data["priorities"]))
        return answer

    @rpc
    def set_test_clock(self, offset_seconds: float) -> dict:
        """Tests only (SLA_TEST_CLOCK=1): move every tickets process's deadline clock by ``offset_seconds``."""
        if not self.sla_clock.movable:
            raise Forbidden("the deadline clock is the wall clock here (SLA_TEST_CLOCK is off)")
        self.sla_clock.move(self.db, offset_seconds)
        return {"now": self.sla_clock.now(self.db).isoformat()}

    # --- 日清周议 and the three rates (reporting.py: who asks what; reports.py: what counts; readmodel.py) ------

    def _read_model(self) -> ReadModel:
        return ReadModel(self.db, clock_response_due(CATALOGUE, self._calendar()))

    @rpc
    def daily_report(self, community: str, viewer: dict, date: str | None = None, grid: str | None = None) -> dict:
        """日清 of ``date`` (default today, Asia/Shanghai) at the clearance hour: the uncleared list per grid and owner.

        The tickets are taken as they are now (an earlier date shows today's tickets against that day's hour).
        """
        grids = reporting.report_grids(lifecycle.load_viewer(community, viewer), grid)
        now = utcnow()
        day = reporting.report_day(date, now)
        moment = reports.clearance_moment(day, reporting.clearance_hour(settings_of(self.config).daily_clearance_hour))
        documents = self.tickets.open_for_report(community, grids)
        closed = self.tickets.closed_between(community, reports.day_start(day),
                                             reports.day_start(day + timedelta(days=1)), grids)
        return {**reports.daily_report(day, moment, documents, closed), "grids": grids}

    @rpc
    def weekly_report(self, community: str, viewer: dict, week: str | None = None, grid: str | None = None) -> dict:
        """周议 of ``week`` (``YYYY-Www``, default this week): the review agenda."""
        grids = reporting.report_grids(lifecycle.load_viewer(community, viewer), grid)
        now = utcnow()
        span = reporting.report_week(week, now)
        model = self._read_model()
        marks = model.marked(community, span.monday, span.sunday, grids)
        documents = self.tickets.for_weekly_review(community, list(marks), min(now, span.end), grids)
        repeats = reports.repeat_problems(model.read(
            community, span.sunday - timedelta(days=reports.REPEAT_DAYS - 1), span.sunday, grids, buildings=True))
        gaps = reporting.coverage_gaps(self.volunteers, community, span)
        return {**reports.weekly_agenda(span, now, documents, repeats, gaps, marks), "grids": grids}

    @rpc
    def rates_report(self, community: str, viewer: dict, start: str | None = None, end: str | None = None,
                     grid: str | None = None, category: str | None = None) -> dict:
        """响应率, 解决率 (beside it what staff claimed) and 满意率 over ``[start, end]`` (days, inclusive,
        Asia/Shanghai; default the last 30 days), read from the counters (readmodel.py)."""
        grids = reporting.report_grids(lifecycle.load_viewer(community, viewer), grid)
        first, last = reporting.rate_period(start, end, category, utcnow())
        totals = self._read_model().totals(community, first, last, grids, category)
        return {"from": first.isoformat(), "to": last.isoformat(), "grids": grids, "category": category,
                **reports.rates(totals)}

    @rpc
    def rebuild_reports(self, community: str | None = None) -> dict:
        """The read model anew from the tickets (``huisheng reports rebuild`` does it straight on the database)."""
        return self._read_model().rebuild(utcnow(), community)

    # The counters follow the tickets' change stream, folded in batches beside the service's work
    # (projection.py): a fold held up delays the reports, never a ticket.
    @timer(interval=FOLD_INTERVAL)
    def fold_reports(self) -> int:
        """Bring the reports' counters up to date with the tickets written since the last fold."""
        try:  # the deadline clock's "now": the wall clock, or the test clock the SLA timer also reads
            return self.report_stream.fold(self.db, self._read_model(), self.sla_clock.now(self.db))
        except PyMongoError as error:  # a timeout, a conflict that outlasted its retries: read again next round
            log.warning("reports.fold_postponed", error=repr(error)[:300])
            self.report_stream.close()
            return 0

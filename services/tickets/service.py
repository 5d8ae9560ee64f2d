"""The tickets service's entrypoints: load, call the domain, save, dump."""

from __future__ import annotations

import uuid
from datetime import timedelta

from nameko.dependency_providers import Config
from nameko.timer import timer

from kernel.config import settings_of
from kernel.context import Context
from kernel.envelope import Envelope, utcnow
from kernel.errors import Conflict, NotFound, ValidationFailed
from kernel.events import current_version
from kernel.groupcommit import GroupCommit
from kernel.handlers import handles
from kernel.health import HealthEndpoints
from kernel.idempotency import fingerprint
from kernel.logging import get_logger
from kernel.mongo import Mongo
from kernel.outbox import OUTBOX, Outbox
from kernel.pagination import decode_cursor, encode_cursor, page, page_limit
from kernel.permissions import may_access
from kernel.rpc import rpc
from kernel.validation import load
from services.tickets.catalogue import Catalogue, UnknownService
from services.tickets.domain import Ticket, anonymised_payload
from services.tickets.repository import COLLECTION, TicketRepository, ticket_id_for
from services.tickets.schemas import CreateTicketSchema, TicketSchema, ViewerSchema

CATALOGUE = Catalogue.load()
# Schemas are built once: building one deep-copies its fields, which costs more than using it.
CREATE_TICKET, VIEWER = CreateTicketSchema(), ViewerSchema()
TICKET, TICKETS = TicketSchema(), TicketSchema(many=True)
log = get_logger(__name__)
RETENTION_SWEEP_SECONDS = 3600  # how often the retention job looks for closed tickets past the period
EXPORT_PAGE = 200  # tickets read at a time for a personal-data export
RETENTION_BATCH = 200  # tickets one retention run anonymises at most
ANONYMISE_ATTEMPTS = 3  # reads of a ticket an anonymisation tries before its handler retries later


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


class TicketsService(HealthEndpoints):
    name = "tickets"

    db = Mongo(indexes=TicketRepository.ensure_indexes)
    writes = GroupCommit()
    outbox = Outbox(collections=[COLLECTION])
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
               request_key: str | None = None) -> dict:
        """Receive a request. The same ``request_key`` from the same reporter creates one ticket only."""
        request = load(CREATE_TICKET, data)
        request_hash = fingerprint(data) if request_key is not None else None
        earlier = self.tickets.by_request_key(community, reporter, request_key)
        if earlier is not None:
            return self._retried(earlier, request_key, request_hash)
        try:
            service = CATALOGUE.get(request.pop("service_code"))
        except UnknownService as error:
            raise ValidationFailed("the request is not valid",
                                   {"service_code": [f"unknown service_code {error.code!r}"]}) from error
        ticket = Ticket.receive(
            id=ticket_id_for(community, reporter, request_key), community=community, service=service, reporter=reporter,
            source=source, now=utcnow(), **request,
        )
        events = envelopes(ticket, self.context.correlation_id)
        stored = self.tickets.add(ticket, events, request_key, request_hash)
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
        viewer = load(VIEWER, viewer)
        viewer["community"] = viewer["community"] or community
        ticket = self.tickets.get(community, ticket_id)
        if ticket is None or not may_view(ticket, viewer):
            raise NotFound(f"no ticket {ticket_id} that you may see")
        return TICKET.dump(ticket)

    @rpc
    def list_mine(self, community: str, resident: str, cursor: str | None = None, limit: int | None = None) -> dict:
        """The resident's tickets, newest first: ``{"items", "next_cursor"}``."""
        limit = page_limit(limit)
        found = self.tickets.of_resident(community, resident, limit + 1, after=decode_cursor(cursor, 2))
        return page(found, limit, key=lambda ticket: (ticket.created_at, ticket.id), dump=TICKETS.dump)

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

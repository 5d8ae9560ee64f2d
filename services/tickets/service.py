"""The tickets service's entrypoints: load, call the domain, save, dump."""

from __future__ import annotations

from kernel.context import Context
from kernel.envelope import Envelope, utcnow
from kernel.errors import NotFound, ValidationFailed
from kernel.events import current_version
from kernel.groupcommit import GroupCommit
from kernel.handlers import handles
from kernel.health import HealthEndpoints
from kernel.logging import get_logger
from kernel.mongo import Mongo
from kernel.outbox import Outbox
from kernel.rpc import rpc
from kernel.validation import load
from services.tickets.catalogue import Catalogue, UnknownService
from services.tickets.domain import Ticket
from services.tickets.repository import COLLECTION, TicketRepository, ticket_id_for
from services.tickets.schemas import CreateTicketSchema, TicketSchema, ViewerSchema

CATALOGUE = Catalogue.load()
# Schemas are built once: building one deep-copies its fields, which costs more than using it.
CREATE_TICKET, VIEWER = CreateTicketSchema(), ViewerSchema()
TICKET, TICKETS = TicketSchema(), TicketSchema(many=True)
STAFF_ROLES = frozenset({"grid_worker", "secretary", "ops", "admin"})
log = get_logger(__name__)


def envelopes(ticket: Ticket, correlation_id: str) -> list[Envelope]:
    """The domain events a command raised, in the platform's envelope."""
    return [
        Envelope.new(event.type, event.payload, community=ticket.community,
                     correlation_id=correlation_id, version=current_version(event.type))
        for event in ticket.pull_events()
    ]


def may_view(ticket: Ticket, viewer: dict) -> bool:
    """Residents see only their own tickets; staff see every ticket of their community."""
    return viewer["role"] in STAFF_ROLES or viewer["subject"] in ticket.attached_residents


class TicketsService(HealthEndpoints):
    name = "tickets"

    db = Mongo(indexes=TicketRepository.ensure_indexes)
    writes = GroupCommit()
    outbox = Outbox(collections=[COLLECTION])
    context = Context()

    @property
    def tickets(self) -> TicketRepository:
        return TicketRepository(self.db, self.writes)

    @rpc
    def list_services(self, community: str) -> list[dict]:
        return [service.to_open311() for service in CATALOGUE.all()]

    @rpc
    def create(self, community: str, reporter: str | None, data: dict, source: str = "resident",
               request_key: str | None = None) -> dict:
        """Receive a request. The same ``request_key`` from the same reporter creates one ticket only."""
        request = load(CREATE_TICKET, data)
        earlier = self.tickets.by_request_key(community, reporter, request_key)
        if earlier is not None:
            return self._retried(earlier)
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
        stored = self.tickets.add(ticket, events, request_key)
        if stored is not ticket:  # a concurrent attempt with the same key stored it first
            return self._retried(stored)
        self.outbox.flush_soon(COLLECTION, ticket.id, events)
        log.info("ticket.received", ticket_id=ticket.id, service_code=service.code, priority=ticket.priority)
        return TICKET.dump(ticket)

    def _retried(self, ticket: Ticket) -> dict:
        """The answer to a retried create: the ticket of the first attempt, its events published again.

        The first attempt's write may have timed out on its client yet committed late,
        after its worker gave up: nothing then asked the relay to publish its events.
        Without ``events`` the relay reads what the document's outbox holds and
        publishes it (again, perhaps: consumers dedupe on ``event_id``), so the retry
        does not leave ``ticket.received`` to the sweep, or to chance.
        """
        self.outbox.flush_soon(COLLECTION, ticket.id)
        return TICKET.dump(ticket)

    @rpc
    def get(self, community: str, ticket_id: str, viewer: dict) -> dict:
        viewer = load(VIEWER, viewer)
        ticket = self.tickets.get(community, ticket_id)
        if ticket is None or not may_view(ticket, viewer):
            raise NotFound(f"no ticket {ticket_id} that you may see")
        return TICKET.dump(ticket)

    @rpc
    def list_mine(self, community: str, resident: str, limit: int = 50) -> list[dict]:
        return TICKETS.dump(self.tickets.of_resident(community, resident, min(limit, 200)))

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

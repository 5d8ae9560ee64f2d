"""How the tickets service writes a ticket: a new one with its events, a command on a loaded one, a merge.

Every write stores the ticket and the events its command raised in one write (the outbox), then asks
the relay to publish them at once. A command loads the ticket, checks the caller's If-Match
(``expected_version``), gives the domain command and saves with a filter on the version it loaded:
never a lost update (:meth:`TicketWrites.change`).

A merge touches two tickets and is made of converging events, not a transaction
(:meth:`TicketWrites.merge`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kernel.envelope import Envelope, utcnow
from kernel.errors import Conflict, NotFound, ValidationFailed
from kernel.events import current_version
from kernel.logging import get_logger
from kernel.outbox import Outbox
from services.tickets import actions as lifecycle
from services.tickets.domain import OPEN_STATES, DomainError, Ticket
from services.tickets.numbers import NUMBER
from services.tickets.repository import COLLECTION, TicketRepository
from services.tickets.schemas import TicketSchema

SAVE_ATTEMPTS = 3  # an action without If-Match is given again on a fresh read when someone wrote meanwhile
TICKET = TicketSchema()  # built once: building a schema deep-copies its fields, which costs more than using it
log = get_logger(__name__)

Command = Callable[[Ticket, Any, Any], Any]  # (ticket, actor, now) -> anything; raises DomainError


def envelopes(ticket: Ticket, correlation_id: str | None) -> list[Envelope]:
    """The domain events a command raised, in the platform's envelope."""
    return [
        Envelope.new(event.type, event.payload, community=ticket.community,
                     correlation_id=correlation_id, version=current_version(event.type))
        for event in ticket.pull_events()
    ]


class TicketWrites:
    """The tickets of one worker: its repository, its outbox relay and its correlation id."""

    def __init__(self, tickets: TicketRepository, outbox: Outbox, correlation_id: str | None) -> None:
        self.tickets, self.outbox, self.correlation_id = tickets, outbox, correlation_id

    # --- reading ------------------------------------------------------------------------------------

    def find(self, community: str, reference: str) -> Ticket | None:
        """A ticket by its id or its short number (XQ-20261206-0042)."""
        if isinstance(reference, str) and NUMBER.fullmatch(reference):
            return self.tickets.by_number(community, reference)
        return self.tickets.get(community, reference)

    def visible(self, community: str, reference: str, viewer: Mapping[str, Any]) -> Ticket:
        """The ticket if ``viewer`` may see it; 404 otherwise (a resident cannot learn another's exists)."""
        ticket = self.find(community, reference)
        if ticket is None or not lifecycle.may_view(ticket, viewer):
            raise NotFound(f"no ticket {reference} that you may see")
        return ticket

    def view(self, ticket: Ticket, viewer: Mapping[str, Any]) -> dict:
        """The ticket as ``viewer`` sees it (a merged one with its master's status)."""
        master = self.tickets.get(ticket.community, ticket.merged_into) if ticket.merged_into else None
        return lifecycle.view(TICKET.dump(ticket), ticket, viewer, master)

    # --- a new ticket -------------------------------------------------------------------------------

    def receive(self, ticket: Ticket, request_key: str | None = None, request_hash: str | None = None,
                extra: dict | None = None) -> Ticket:
        """Store a new ticket with its events; the ticket stored (an earlier attempt's, if one won the race)."""
        events = envelopes(ticket, self.correlation_id)
        stored = self.tickets.add(ticket, events, request_key, request_hash, extra=extra)
        if stored is ticket:
            self.outbox.flush_soon(COLLECTION, ticket.id, events)
        return stored

    def retried(self, ticket: Ticket, request_key: str | None = None, request_hash: str | None = None) -> Ticket:
        """A retried create: the ticket of the first attempt, its events published again.

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
        return ticket

    # --- a command on a ticket ----------------------------------------------------------------------

    def change(self, community: str, reference: str, viewer: Mapping[str, Any], expected_version: int | None,
               command: Command) -> Ticket:
        """Load, check the version, give ``command(ticket, actor, now)``, save; retried on a race without If-Match."""
        viewer = lifecycle.load_viewer(community, viewer)
        actor = lifecycle.actor_of(viewer)
        for _ in range(SAVE_ATTEMPTS):
            ticket = self.visible(community, reference, viewer)
            if expected_version is not None and ticket.version != expected_version:
                raise lifecycle.stale(ticket, expected_version)
            loaded = ticket.version
            try:
                command(ticket, actor, utcnow())
            except DomainError as error:
                raise lifecycle.platform_error(error, self.visible(community, reference, viewer), actor) from error
            events = envelopes(ticket, self.correlation_id)
            try:
                self.tickets.save(ticket, loaded, events)
            except Conflict:
                if expected_version is not None:
                    raise lifecycle.stale(self.visible(community, reference, viewer), expected_version) from None
                continue  # no If-Match: give the command again on what is there now (it is checked again)
            self.outbox.flush_soon(COLLECTION, ticket.id, events)
            return ticket
        raise Conflict(f"ticket {reference} kept changing; try again", {"ticket": [reference]})

    # --- a merge ------------------------------------------------------------------------------------

    def merge(self, community: str, reference: str, request: Mapping[str, Any], viewer: Mapping[str, Any],
              expected_version: int | None) -> Ticket:
        """Merge a duplicate into its master: converging events, not a transaction; the duplicate.

        1. The duplicate is closed with ``merged_into`` and ``ticket.merged`` in its outbox (one write).
        2. The master attaches the duplicate's residents (:meth:`Ticket.absorb`), at once; and the
           handler of ``ticket.merged`` (``tickets.merges``) does it again, which changes nothing if
           step 2 happened. A crash between the two writes leaves the event in the duplicate's
           outbox: the relay publishes it and the handler finishes the merge. Attaching is idempotent,
           so every order and every redelivery converges to the same master.
        """
        viewer = lifecycle.load_viewer(community, viewer)
        master = self.find(community, request["into"])
        if master is None or not lifecycle.may_view(master, viewer):
            raise ValidationFailed("the request is not valid", {"into": ["no such ticket that you may see"]})

        def merge(ticket: Ticket, actor, now) -> None:
            try:
                ticket.merge_into(master, now, actor)
            except DomainError as error:
                if isinstance(error, lifecycle.InvalidTransition) and ticket.state in OPEN_STATES:
                    raise ValidationFailed("the request is not valid", {"into": [str(error)]}) from error
                raise

        duplicate = self.change(community, reference, viewer, expected_version, merge)
        self.absorb(community, master.id, duplicate.id, duplicate.attached_residents, lifecycle.actor_of(viewer))
        return duplicate

    def absorb(self, community: str, master_id: str, duplicate_id: str, residents: list[str], actor) -> None:
        """The master takes the duplicate's residents (idempotent: nothing changes the second time)."""
        for _ in range(SAVE_ATTEMPTS + 2):
            master = self.tickets.get(community, master_id)
            if master is None:
                log.warning("ticket.merge_master_missing", ticket_id=duplicate_id, master_id=master_id)
                return
            loaded = master.version
            if not master.absorb(duplicate_id, residents, utcnow(), actor):
                return
            events = envelopes(master, self.correlation_id)
            try:
                self.tickets.save(master, loaded, events)
            except Conflict:
                continue
            self.outbox.flush_soon(COLLECTION, master.id, events)
            return
        raise Conflict(f"ticket {master_id} kept changing while a duplicate was merged into it")

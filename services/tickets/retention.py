"""Personal data (PIPL): a resident's export, their erasure, and the retention period's anonymisation.

The domain decides what anonymising a ticket changes (:meth:`Ticket.anonymise`,
:func:`anonymised_payload`); this module reads and writes it, retrying on a concurrent write.
"""

from __future__ import annotations

import uuid

from kernel.envelope import utcnow
from kernel.errors import Conflict
from kernel.outbox import OUTBOX
from services.tickets.domain import Ticket, anonymised_payload
from services.tickets.repository import TicketRepository
from services.tickets.schemas import TicketSchema

RETENTION_SWEEP_SECONDS = 3600  # how often the retention job looks for closed tickets past the period
EXPORT_PAGE = 200  # tickets read at a time for a personal-data export
RETENTION_BATCH = 200  # tickets one retention run anonymises at most
ANONYMISE_ATTEMPTS = 3  # reads of a ticket an anonymisation tries before its handler retries later
TICKETS = TicketSchema(many=True)


def pseudonym() -> str:
    """A fresh id that links to nobody: random, per ticket, so anonymised tickets cannot be tied together."""
    return f"anon-{uuid.uuid4().hex[:12]}"


def export(tickets: TicketRepository, community: str, resident: str) -> dict:
    """Every ticket the resident reported or is attached to, whole: their part of a personal-data export."""
    found, after = [], None
    while page_of := tickets.of_resident(community, resident, EXPORT_PAGE, after=after):
        found += page_of
        after = (page_of[-1].created_at, page_of[-1].id)
    return {"tickets": TICKETS.dump(found)}


def anonymise(tickets: TicketRepository, document: dict, resident: str | None = None) -> bool:
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
        if tickets.save_anonymised(ticket, expected, outbox):
            return True
        document = tickets.collection.find_one({"_id": ticket.id, "community": ticket.community})
        if document is None:
            return False
    raise Conflict(f"ticket {document['_id']} kept changing while it was being anonymised; retried later")

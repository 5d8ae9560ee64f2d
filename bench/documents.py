"""Documents and events exactly as the platform writes them, built with the platform's own code.

The baselines insert the platform's inbox message, and the
backlog scenario writes tickets carrying an unpublished event, so the raw
figures and the platform's are about the same bytes.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from kernel.envelope import Envelope, utcnow
from kernel.events import current_version
from kernel.ledger import OUTBOX, SINCE, STAGED
from kernel.outbox import with_events

COMMUNITY = "xingqiao"
HOME_BUILDING = "b03"  # the demo community's 3号楼, the home a resident's token names
TICKET_BODY = {"service_code": "blocked_drain", "description": "3号楼下水道堵了，污水漫到楼道",
               "address_string": "兴乔小区3号楼", "attributes": {"overflowing": "yes"}}  # its required answer
# An event no subscription consumes: it is routed to huisheng.unrouted (and to our tap), so a backlog of
# these measures the relay alone, not the consumers' catch-up competing with it for the two cores.
BACKLOG_EVENT_TYPE = "ticket.escalated"


def inbox_message(recipient: str, now: datetime | None = None) -> dict:
    """An inbox message, delivered: what notify inserts per echo (no event: a ticket's timeline asks notify for
    its echoes, nothing is published about them)."""
    from services.notify.domain import compose
    from services.notify.domain import inbox_message as platform_inbox_message

    now = now or utcnow()
    ticket_id = uuid.uuid4().hex
    source = Envelope.new("ticket.received", {"ticket_id": ticket_id, "attached_residents": [recipient]},
                          community=COMMUNITY, occurred_at=now)
    (echo,) = compose("ticket.received", source.payload)
    return platform_inbox_message(source, echo)


def staged_at(document: dict, since: datetime) -> dict:
    """``document`` with all its outbox events staged at ``since``, in place; returned for chaining.

    The relay finds a document by ``_outbox_since`` and tells an event's fate by its
    own ``_staged`` stamp (older than its collection's checkpoint: published), so the two
    move together: an event stamped before a due time set later could be taken for
    published by a checkpoint that has passed its stamp, and never go out.
    """
    document[SINCE] = since
    for event in document.get(OUTBOX) or []:
        event[STAGED] = since
    return document


def backlog_tickets(count: int, since: datetime, correlation_prefix: str) -> list[dict]:
    """``count`` tickets as the tickets service stores them, each with one unpublished event.

    ``_outbox_since`` and the event's ``_staged`` are set to ``since`` for all of them
    (:func:`staged_at` them again to spread them over time, as the backlog scenario does).
    """
    from services.tickets.catalogue import Catalogue
    from services.tickets.domain import Ticket

    service = Catalogue.load().get(TICKET_BODY["service_code"])
    documents = []
    for index in range(count):
        ticket = Ticket.receive(uuid.uuid4().hex, COMMUNITY, service, TICKET_BODY["description"],
                                TICKET_BODY["address_string"], f"bench-backlog-{index % 100}", "resident", since)
        ticket.pull_events()
        event = Envelope.new(BACKLOG_EVENT_TYPE, {"ticket_id": ticket.id, "state": "received",
                                                  "attached_residents": list(ticket.attached_residents)},
                             community=COMMUNITY, correlation_id=f"{correlation_prefix}{index}",
                             version=current_version(BACKLOG_EVENT_TYPE), occurred_at=since)
        documents.append(staged_at(with_events(ticket.to_document(), [event]), since))
    return documents

"""What other services tell a ticket's timeline: volunteer steps (volunteers) and echo outcomes (notify).

A volunteer step is an event tickets records: its own record keyed by its event's id, apart from the
ticket's document (the repository's ``record_entry``), so a redelivery collides and changes nothing.

An echo's outcome (delivered, failed, read) is notify's record, not tickets': tickets keeps no copy of it
and asks notify (``echo_outcomes``) when it shows tickets to a caller, one call for every ticket of a reply
(:func:`attach_echoes`). A notify that does not answer in time leaves the timeline without its echoes, and
the reply says so (``echoes_unavailable``) rather than failing. :attr:`Ticket.history` merges both into
the ticket's own entries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from nameko.exceptions import MethodNotFound, RemoteError
from nameko.exceptions import UnknownService as NoSuchService

from kernel.envelope import Envelope
from kernel.errors import PlatformError
from kernel.logging import get_logger
from kernel.rpc import RpcTimeout
from services.tickets.domain import Ticket

NOTIFY_TIMEOUT = 2.0  # a reply waits this long for the echoes; past it, it goes without them
UNAVAILABLE = "echoes_unavailable"  # the member of a reply whose timeline lacks its echoes
log = get_logger(__name__)


def attach_echoes(notify: Any, community: str, tickets: Sequence[Ticket]) -> bool:
    """Put notify's echo outcomes on ``tickets`` (``Ticket.echoes``), asked in one ``echo_outcomes`` call;
    False if notify did not answer (not running, too slow, failing): the tickets then have none.

    ``notify`` is the service's RPC proxy to notify.
    """
    if not tickets:
        return True
    try:
        found = notify.echo_outcomes(community, [ticket.id for ticket in tickets])
    except (NoSuchService, RpcTimeout, MethodNotFound, RemoteError, PlatformError) as error:
        log.warning("ticket.echoes_unavailable", tickets=len(tickets), error=type(error).__name__)
        return False
    for ticket in tickets:
        ticket.echoes = echo_entries(found.get(ticket.id) or (), anonymised=ticket.anonymised_at is not None)
    return True


def echo_entries(entries: Sequence[Mapping[str, Any]], anonymised: bool = False) -> list[dict[str, Any]]:
    """notify's entries (``at`` in ISO 8601) as a timeline holds them (``at`` a UTC datetime).

    A ticket anonymised by the retention rule shows its echoes without their recipients: its own
    entries name nobody any more, and notify's records still name the people they went to.

    >>> entry = {"type": "echo.delivered", "at": "2026-11-26T16:00:00+08:00", "event_id": "e1:r1:delivered",
    ...          "channel": "inbox", "recipient": "r1", "source_event_type": "ticket.received"}
    >>> [shown] = echo_entries([entry], anonymised=True)
    >>> shown["at"].isoformat(), "recipient" in shown
    ('2026-11-26T08:00:00+00:00', False)
    """
    shown = []
    for entry in entries:
        copy = {**entry, "at": datetime.fromisoformat(entry["at"]).astimezone(UTC)}
        if anonymised:
            copy.pop("recipient", None)
        shown.append(copy)
    return shown


def flagged(reply: dict[str, Any], answered: bool) -> dict[str, Any]:
    """A ticket's reply, marked ``echoes_unavailable`` if notify did not answer for it.

    >>> flagged({"id": "T1"}, answered=False), flagged({"id": "T1"}, answered=True)
    ({'id': 'T1', 'echoes_unavailable': True}, {'id': 'T1'})
    """
    return reply if answered else {**reply, UNAVAILABLE: True}


def volunteer_entry(event: Envelope) -> dict[str, Any] | None:
    """A ticket's volunteer task step (offered with reasons, accepted, declined, in, out) as a timeline entry;
    None for a step that is not about a ticket.

    The resident's check-in code is left out: the assigned volunteer reads this timeline too.
    """
    payload = event.payload
    if payload["subject"] != "ticket":
        return None
    entry = {"type": event.type, "at": event.occurred_at, "event_id": event.event_id,
             "volunteer": payload["volunteer_id"], "task_id": payload["assignment_id"]}
    entry.update({key: payload[key] for key in ("reasons", "reason", "minutes", "auto_closed", "confirmed_by")
                  if payload.get(key) not in (None, [], False)})
    details = payload.get("reasons") or ([f"{payload['minutes']} min"] if payload.get("minutes") is not None
                                         else []) + ([payload["reason"]] if payload.get("reason") else [])
    entry["summary"] = f"{payload['volunteer_id']}: {', '.join(details)}" if details else payload["volunteer_id"]
    return entry

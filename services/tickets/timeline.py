"""What other services tell a ticket's timeline: echo outcomes (notify) and volunteer steps (volunteers).

Each is its own record keyed by its event's id, apart from the ticket's document (the repository's
``record_echo``), so a redelivery collides and changes nothing.
"""

from __future__ import annotations

from typing import Any

from kernel.envelope import Envelope


def echo_entry(event: Envelope) -> dict[str, Any]:
    """An echo outcome (``echo.delivered``, ``echo.failed``) as a timeline entry."""
    payload = event.payload
    entry = {
        "type": event.type, "at": event.occurred_at, "event_id": event.event_id,
        "channel": payload["channel"], "recipient": payload["recipient"],
        "source_event_type": payload["source_event_type"],
    }
    if payload.get("reason"):
        entry["reason"] = payload["reason"]
    return entry


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

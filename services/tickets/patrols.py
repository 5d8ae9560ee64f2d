"""Patrol rounds (巡查): a grid worker's round, recorded even when nothing is found; each finding a ticket.

The round's tickets are written first, then the round with ``patrol.recorded`` (ids derived from
the round's id, so the same round written again finds its tickets instead of making new ones).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kernel.envelope import Envelope
from kernel.errors import Forbidden, ValidationFailed
from kernel.events import current_version
from kernel.permissions import may_access
from services.tickets.catalogue import Catalogue, Service
from services.tickets.domain import Ticket
from services.tickets.repository import ticket_id_for


def check(request: dict, viewer: dict, community: str, catalogue: Catalogue) -> list[Service]:
    """The services of the round's findings; 403 for a grid not theirs, 422 for an unknown service code."""
    if not may_access("patrols.record", viewer, community=community, grid=request["grid"]):
        raise Forbidden(f"{viewer['role']} may not record a patrol of grid {request['grid']}",
                        {"grid": [request["grid"]]})
    services = []
    for index, finding in enumerate(request["findings"]):
        if finding["service_code"] not in catalogue:
            raise ValidationFailed("the request is not valid",
                                   {f"findings.{index}.service_code": [f"unknown {finding['service_code']!r}"]})
        services.append(catalogue.get(finding["service_code"]))
    return services


def finding_ticket(community: str, patrol_id: str, index: int, finding: dict, service: Service, now: datetime,
                   number: str, placed: dict) -> Ticket:
    """A finding of the round as a ticket with source ``patrol``, its id derived from the round's.

    It carries no answers to the category's questions and is not held to the required ones
    (``intake.answers``): kernel/contracts.py's PatrolFindingSchema has no ``attributes`` yet, and a
    finding the worker cannot record would be a finding the office never hears of.
    """
    return Ticket.receive(
        id=ticket_id_for(community, f"patrol:{patrol_id}", str(index)), community=community, service=service,
        description=finding["description"], reporter=None, source="patrol", now=now,
        address_string=finding.get("address_string") or finding.get("building"),
        lat=finding.get("lat"), long=finding.get("long"), attachments=finding["attachments"],
        number=number, patrol_id=patrol_id, **placed)


def round_record(patrol_id: str, community: str, request: dict, worker: str, ticket_ids: list[str], now: datetime,
                 correlation_id: str | None) -> tuple[dict, list[Envelope], dict[str, Any]]:
    """The round as stored, its ``patrol.recorded`` event, and the answer."""
    record = {"_id": patrol_id, "community": community, "grid": request["grid"], "worker": worker,
              "started_at": request["started_at"], "ended_at": request["ended_at"], "checked": request["checked"],
              "findings": len(ticket_ids), "ticket_ids": ticket_ids, "recorded_at": now}
    payload = {"patrol_id": patrol_id, "grid": request["grid"], "worker": worker,
               "started_at": request["started_at"].isoformat(),
               "ended_at": request["ended_at"].isoformat() if request["ended_at"] else None,
               "checked": request["checked"], "findings": len(ticket_ids), "ticket_ids": ticket_ids}
    events = [Envelope.new("patrol.recorded", payload, community=community, correlation_id=correlation_id,
                           version=current_version("patrol.recorded"))]
    answer = {"id": patrol_id, **{key: value for key, value in payload.items() if key != "patrol_id"},
              "recorded_at": now.isoformat()}
    return record, events, answer

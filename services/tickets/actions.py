"""The lifecycle's requests, without I/O: from a loaded request body to a domain command, and back to a view.

The tickets service's entrypoints (service.py) load and save; this module decides what a request
means, which error it becomes, and what a caller sees of a ticket:

- each action of ``POST /api/v1/tickets/{id}/actions/{action}`` has one request schema in
  kernel/contracts.py (:data:`ACTION_SCHEMAS`) and one applier (:func:`apply_action`);
- a domain error becomes a platform error (:func:`platform_error`): a state that does not allow the
  action is a 409 ``invalid_transition`` whose details carry ``state`` and ``allowed_actions``
  (for this caller); a role or relation that does not allow it a 403; bad values a 422;
- a stale write (the ticket's version is not the one the caller's If-Match named) is a 412
  ``stale_version`` (:data:`STALE_VERSION`).

>>> actor_of({"subject": "p-1", "role": "grid_worker", "grids": ["g3"], "teams": []})
Actor(subject='p-1', role='grid_worker', teams=(), grids=('g3',))
>>> sorted(ACTION_SCHEMAS) == sorted(ACTIONS)
True
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from marshmallow import Schema

from kernel.contracts import (
    CallbackSchema,
    CloseSchema,
    CommentSchema,
    DispatchSchema,
    MergeSchema,
    PauseSchema,
    PlanSchema,
    ReasonSchema,
    ResolveSchema,
    TicketActionSchema,
    ViewerSchema,
)
from kernel.errors import Conflict, Forbidden, PlatformError, PreconditionFailed, ValidationFailed
from kernel.permissions import STAFF, Grant, allowed, grant_for, may_access
from kernel.validation import load
from services.tickets.domain import (
    ACTIONS,
    CallbackAttemptsExhausted,
    DomainError,
    InvalidTransition,
    NotAllowed,
    RequiredFieldMissing,
    Role,
    Ticket,
    UnknownChoice,
)

VIEWER = ViewerSchema()  # built once: building a schema deep-copies its fields, which costs more than using it
STALE_VERSION = "stale_version"  # the code of a 412: the caller's If-Match names an older version
INVALID_TRANSITION = "invalid_transition"
RESIDENT_HIDDEN_TYPES = frozenset({"ticket.planned", "ticket.bounced", "ticket.escalated", "ticket.merged"})

_EMPTY = TicketActionSchema()
_BODIES: dict[str, Schema] = {
    "dispatch": DispatchSchema(), "accept": _EMPTY, "bounce": ReasonSchema(), "start": _EMPTY,
    "pause": PauseSchema(), "resume": _EMPTY, "resolve": ResolveSchema(), "close": CloseSchema(),
    "merge": MergeSchema(), "plan": PlanSchema(),
}
ACTION_SCHEMAS: dict[str, Schema] = {action: _BODIES[action] for action in ACTIONS}
"""Each action's request body (kernel/contracts.py)."""
COMMENT, CALLBACK = CommentSchema(), CallbackSchema()


def actor_of(viewer: Mapping[str, Any]):
    """The domain's :class:`Actor` for an authenticated viewer."""
    from services.tickets.domain import Actor

    return Actor(viewer["subject"], viewer["role"], tuple(viewer.get("teams") or ()),
                 tuple(viewer.get("grids") or ()))


def apply_action(ticket: Ticket, action: str, request: Mapping[str, Any], now: datetime, actor,
                 escalate_after: int) -> None:
    """Give the domain command of ``action`` (not merge: it needs the master, see TicketsService.merge)."""
    if action == "dispatch":
        ticket.dispatch({"kind": request["kind"], "id": request["id"]}, now, actor)
    elif action == "accept":
        ticket.accept(now, actor)
    elif action == "start":
        ticket.start(now, actor)
    elif action == "resume":
        ticket.resume(now, actor)
    elif action == "bounce":
        ticket.bounce(request["reason"], now, actor, escalate_after=escalate_after)
    elif action == "pause":
        ticket.pause(request["reason"], now, actor, until=request.get("until"))
    elif action == "resolve":
        ticket.resolve(request["summary"], now, actor)
    elif action == "close":
        ticket.close_not_fixed(request["reason"], request.get("note"), now, actor)
    elif action == "plan":
        ticket.plan(request["note"], request["owner"], request["due_at"], now, actor)
    else:
        raise ValueError(f"no applier for action {action!r}")


def platform_error(error: DomainError, ticket: Ticket, actor) -> PlatformError:
    """The platform error a domain error is, for this caller.

    >>> from services.tickets.catalogue import Service
    >>> from services.tickets.domain import Actor
    >>> from datetime import UTC
    >>> leak = Service("roof_leak", "房屋漏水", "屋顶漏水", "房屋设施", "urgent")
    >>> ticket = Ticket.receive("T1", "xingqiao", leak, "漏水", "3-2-401", "r1", "resident",
    ...                         datetime(2026, 12, 6, tzinfo=UTC))
    >>> error = platform_error(InvalidTransition("received", "accept"), ticket, Actor("s1", "secretary"))
    >>> error.status, error.code, error.details["state"], error.details["allowed_actions"]
    (409, 'invalid_transition', 'received', ['dispatch', 'close', 'merge', 'plan'])
    """
    if isinstance(error, InvalidTransition):
        return Conflict(str(error), {"state": ticket.state.value, "allowed_actions": ticket.allowed_actions(actor)},
                        code=INVALID_TRANSITION)
    if isinstance(error, NotAllowed):
        return Forbidden(str(error), {"action": [error.command]}, code="not_allowed")
    if isinstance(error, CallbackAttemptsExhausted):
        return Conflict(str(error), {"outcome": [str(error)]}, code="callback_attempts_exhausted")
    if isinstance(error, RequiredFieldMissing):
        return ValidationFailed("the request is not valid", {error.field_name: [str(error)]})
    if isinstance(error, UnknownChoice):
        return ValidationFailed("the request is not valid", {error.field_name: [str(error)]})
    return ValidationFailed(str(error), {"_schema": [str(error)]})


def stale(ticket: Ticket, expected: int) -> PreconditionFailed:
    return PreconditionFailed(f"ticket {ticket.id} is at version {ticket.version}, not {expected}: reload it",
                              {"version": ticket.version, "expected": expected, "state": ticket.state.value},
                              code=STALE_VERSION)


def staff_scope(viewer: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The clauses a staff list adds for the viewer's ``tickets.list`` grant; None if they may not list.

    >>> staff_scope({"subject": "p-1", "role": "grid_worker", "grids": ["g3"], "teams": []})
    [{'grid': {'$in': ['g3', None]}}]
    >>> staff_scope({"subject": "p-9", "role": "secretary", "grids": [], "teams": []})
    []
    >>> staff_scope({"subject": "p-9", "role": "ops", "grids": [], "teams": []}) is None
    True
    """
    grant = grant_for("tickets.list", viewer.get("role", ""))
    if grant is None:
        return None
    if grant is Grant.ALWAYS:
        return []
    if grant is Grant.IF_GRID:  # an unplaced ticket is community-wide (kernel/permissions)
        return [{"grid": {"$in": [*(viewer.get("grids") or ()), None]}}]
    if grant is Grant.IF_ASSIGNED:
        return [{"$or": [{"assignee.kind": "worker", "assignee.id": viewer["subject"]},
                         {"assignee.kind": "team", "assignee.id": {"$in": list(viewer.get("teams") or ())}}]}]
    return [{"attached_residents": viewer["subject"]}]


def view(dumped: dict[str, Any], ticket: Ticket, viewer: Mapping[str, Any], master: Ticket | None = None
         ) -> dict[str, Any]:
    """What ``viewer`` sees of a dumped ticket: residents see no internal notes; a merged ticket's status
    follows its master's; ``allowed_actions`` are the caller's."""
    body = dict(dumped)
    body["allowed_actions"] = ticket.allowed_actions(actor_of(viewer))
    if master is not None:
        body["own_state"] = body["state"]
        body["state"], body["status"] = master.state.value, master.status_open311
        body["master"] = {"id": master.id, "number": master.number}
    if viewer.get("role") == Role.RESIDENT:
        body["comments"] = [comment for comment in body.get("comments", []) if comment.get("visibility") != "internal"]
        body["timeline"] = [entry for entry in body.get("timeline", [])
                            if entry.get("visibility") != "internal" and entry.get("type") not in RESIDENT_HIDDEN_TYPES]
        for name in ("suggested_owner", "next_step"):
            body.pop(name, None)
    return body


def load_viewer(community: str, viewer: Mapping[str, Any]) -> dict[str, Any]:
    """Who is asking, as the gateway passed it; their community is the request's unless it says otherwise."""
    loaded = load(VIEWER, viewer)
    loaded["community"] = loaded["community"] or community
    return loaded


def may_view(ticket: Ticket, viewer: Mapping[str, Any]) -> bool:
    """kernel/permissions' ``tickets.read``: residents their own tickets, grid workers their grids, volunteers
    what is dispatched to them, the office its community."""
    return may_access("tickets.read", viewer, community=ticket.community, owners=ticket.attached_residents,
                      grid=getattr(ticket, "grid", None), assignee=ticket.assignee)


def enters_for_resident(viewer: Mapping[str, Any] | None) -> bool:
    """Whether the caller is staff entering a ticket on a resident's behalf (phone-in, walk-in, hotline):
    the staff roles kernel/permissions lets create tickets.

    >>> [enters_for_resident({"role": role}) for role in ("resident", "grid_worker", "ops", "admin")]
    [False, True, False, True]
    """
    return viewer is not None and viewer.get("role") in STAFF and allowed("tickets.create", viewer["role"])

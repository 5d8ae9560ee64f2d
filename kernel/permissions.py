"""The one permission table: which role may do what, and over which objects.

Every layer consults it: the gateway before it calls a service (``require``), the
services for object-level rules (``may_access``), and the tickets domain for its
commands (``services/tickets/domain.py`` builds its ``AUTHORISATION`` from here).

An action is ``<resource>.<verb>``. A role that is not listed for an action may not
do it (403 at the gateway); a listed one may, over the objects its :class:`Grant` reaches
within the caller's community. An object out of reach answers 404 (not 403): a resident
cannot learn that another resident's ticket exists.

>>> require("tickets.dispatch", "secretary")
<Grant.ALWAYS: 'always'>
>>> allowed("apikeys.manage", "secretary")
False
>>> viewer = {"subject": "r-1", "role": "resident", "community": "xingqiao", "grids": [], "teams": []}
>>> may_access("tickets.read", viewer, community="xingqiao", owners=["r-1"])
True
>>> may_access("tickets.read", viewer, community="xingqiao", owners=["r-2"])
False
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any


class Grant(StrEnum):
    ALWAYS = "always"  # anything in the caller's community
    IF_GRID = "if_grid"  # in one of the caller's grids; not placed in a grid yet counts as community-wide
    IF_ASSIGNED = "if_assigned"  # dispatched to the caller ("worker") or to one of their teams
    IF_SELF = "if_self"  # the caller's own: their record; tickets they reported or are attached to


RESIDENT, GRID_WORKER, VOLUNTEER = "resident", "grid_worker", "volunteer"
SECRETARY, OPS, ADMIN, INTEGRATOR = "secretary", "ops", "admin", "integrator"
ROLES: tuple[str, ...] = (RESIDENT, GRID_WORKER, VOLUNTEER, SECRETARY, OPS, ADMIN, INTEGRATOR)
PEOPLE: tuple[str, ...] = ROLES[:-1]  # everyone who signs in as a person (not an API key)
STAFF: tuple[str, ...] = (GRID_WORKER, SECRETARY, OPS, ADMIN)

A, G, T, S = Grant.ALWAYS, Grant.IF_GRID, Grant.IF_ASSIGNED, Grant.IF_SELF

# What the ticket commands' roles are (DOMAIN.md): grid workers in their grids, the secretary and
# admins community-wide, volunteers on what is dispatched to them, residents for themselves.
_TICKET_STAFF = {GRID_WORKER: G, SECRETARY: A, ADMIN: A}
_ASSIGNED_VOLUNTEER = {VOLUNTEER: T}
_SELF_RESIDENT = {RESIDENT: S}

PERMISSIONS: dict[str, dict[str, Grant]] = {
    # tickets
    "tickets.create": {RESIDENT: S, INTEGRATOR: A} | _TICKET_STAFF,  # staff: phone-in/walk-in on a resident's behalf
    "tickets.read": {RESIDENT: S, GRID_WORKER: G, VOLUNTEER: T, SECRETARY: A, OPS: A, ADMIN: A, INTEGRATOR: A},
    "tickets.list": {RESIDENT: S, VOLUNTEER: T} | _TICKET_STAFF,  # residents their own; staff within their grant
    "tickets.dispatch": _TICKET_STAFF,
    "tickets.accept": _TICKET_STAFF | _ASSIGNED_VOLUNTEER,
    "tickets.start": _TICKET_STAFF | _ASSIGNED_VOLUNTEER,
    "tickets.pause": _TICKET_STAFF,
    "tickets.resume": _TICKET_STAFF,
    "tickets.resolve": _TICKET_STAFF | _ASSIGNED_VOLUNTEER,
    "tickets.bounce": _TICKET_STAFF | _ASSIGNED_VOLUNTEER,
    "tickets.record_callback": _TICKET_STAFF | _SELF_RESIDENT,
    "tickets.close_not_fixed": _TICKET_STAFF,
    "tickets.attach_resident": _TICKET_STAFF | _SELF_RESIDENT,
    "tickets.merge": _TICKET_STAFF,
    "tickets.comment": _TICKET_STAFF | _ASSIGNED_VOLUNTEER | _SELF_RESIDENT,
    "tickets.plan": _TICKET_STAFF | _ASSIGNED_VOLUNTEER,
    # photos (gateway/routes/photos.py): whoever may attach one uploads; reading one is also per photo (its
    # uploader, or tickets.read on a ticket that references it: services/tickets/photos.py)
    "photos.upload": _TICKET_STAFF | _ASSIGNED_VOLUNTEER | _SELF_RESIDENT,
    "photos.read": {RESIDENT: S, GRID_WORKER: G, VOLUNTEER: T, SECRETARY: A, OPS: A, ADMIN: A, INTEGRATOR: A},
    "patrols.record": {GRID_WORKER: G, SECRETARY: A, ADMIN: A},
    "services.read": {role: A for role in ROLES},
    # Open311 GeoReport v2: its GET methods are public (public fields only, no private categories);
    # a directory API key files requests and reads its communities' requests whole.
    "open311.create": {INTEGRATOR: A},
    "open311.read_scoped": {INTEGRATOR: A},
    # notify and volunteers
    "inbox.read": {role: S for role in PEOPLE},
    "preferences.read": {role: S for role in PEOPLE},
    "preferences.write": {role: S for role in PEOPLE},
    "echoes.read": {GRID_WORKER: G, SECRETARY: A, OPS: A, ADMIN: A},  # each step of a ticket's echoes
    "echo_tasks.read": {GRID_WORKER: G, SECRETARY: A, ADMIN: A},  # human steps: phone or visit a resident
    "echo_tasks.complete": {GRID_WORKER: G, SECRETARY: A, ADMIN: A},
    "reports.echoes": {SECRETARY: A, OPS: A, ADMIN: A},  # silent tickets, echo latency
    "broadcasts.create": {SECRETARY: A, ADMIN: A},  # a notice to a segment of the community
    "broadcasts.read": {SECRETARY: A, ADMIN: A},
    "checkins.answer": {RESIDENT: S},  # the daily health check-in of residents in home quarantine
    "checkins.read": {GRID_WORKER: G, SECRETARY: A, ADMIN: A},
    "checkins.schedule": {SECRETARY: A, ADMIN: A},
    "volunteer_teams.read": {role: A for role in PEOPLE},
    # volunteers (issue #13): the office manages the registry; a volunteer answers their own offers and tasks
    "volunteers.list": {GRID_WORKER: G, SECRETARY: A, ADMIN: A},
    "volunteers.register": {SECRETARY: A, ADMIN: A},
    "volunteers.import": {SECRETARY: A, ADMIN: A},
    "volunteers.manage": {SECRETARY: A, ADMIN: A},  # pause, merge duplicates, manual hours, corrections
    "volunteers.confirm_presence": {GRID_WORKER: G, SECRETARY: A, ADMIN: A},  # check-in/out without the code
    "volunteers.records": {VOLUNTEER: S, SECRETARY: A, ADMIN: A},
    "volunteers.coverage": {GRID_WORKER: G, SECRETARY: A, ADMIN: A},
    # any volunteer task of the community (tasks carry no grid); its volunteer and residents read theirs by relation
    "volunteer_tasks.read": {GRID_WORKER: A, SECRETARY: A, ADMIN: A},
    "volunteering.me": {VOLUNTEER: S},
    "volunteering.respond": {VOLUNTEER: S},  # accept or decline an offer, check in and out
    "volunteering.rate": {RESIDENT: S},
    "wishes.publish": {RESIDENT: S},
    "wishes.read": {role: A for role in PEOPLE},
    "wishes.claim": {VOLUNTEER: S},
    "wishes.confirm": {RESIDENT: S},
    # the directory: places
    "places.read": {role: A for role in ROLES},
    "places.import": {SECRETARY: A, ADMIN: A},
    # the directory: people (ops run the machines, they do not read the register)
    "residents.list": {GRID_WORKER: G, SECRETARY: A, ADMIN: A},
    "residents.read": {RESIDENT: S, GRID_WORKER: G, SECRETARY: A, ADMIN: A},
    "residents.import": {SECRETARY: A, ADMIN: A},
    "me.read": {role: S for role in PEOPLE},
    "me.export": {role: S for role in PEOPLE},
    "me.erase": {RESIDENT: S},
    "consents.write": {RESIDENT: S, VOLUNTEER: S},
    # administration
    "apikeys.manage": {ADMIN: A},
    "audit.read": {ADMIN: A},
    "sessions.revoke": {ADMIN: A},
    "staff.manage": {ADMIN: A},
    # the working calendar deadlines count on (holidays, 调休): an admin loads each year; the office and ops read it
    "calendar.read": {SECRETARY: A, OPS: A, ADMIN: A},
    "calendar.write": {ADMIN: A},
    # the deadline table per category × priority (services/tickets/deadlines.py): an admin sets it, the office reads it
    "deadlines.read": {SECRETARY: A, OPS: A, ADMIN: A},
    "deadlines.manage": {ADMIN: A},
    # queues, dead letters and outbox lag over HTTP (the console's ops page): no personal data, the machines only
    "ops.read": {OPS: A, ADMIN: A},
    # 日清周议 and the three rates: the office community-wide, grid workers their grids' (services/tickets/reports.py)
    "reports.read": {GRID_WORKER: G, SECRETARY: A, ADMIN: A},
}
"""Action -> role -> how far the role reaches. A role not listed may not do the action."""


def grant_for(action: str, role: str) -> Grant | None:
    """The role's grant for ``action``, None if it has none; an unknown action is a programming error.

    >>> grant_for("residents.list", "grid_worker")
    <Grant.IF_GRID: 'if_grid'>
    >>> grant_for("residents.list", "ops") is None
    True
    """
    try:
        return PERMISSIONS[action].get(role)
    except KeyError:
        raise KeyError(f"no action {action!r} in the permission table") from None


def allowed(action: str, role: str) -> bool:
    """Whether ``role`` may do ``action`` at all (over some object)."""
    return grant_for(action, role) is not None


def require(action: str, role: str) -> Grant:
    """The role's grant for ``action``, or :class:`~kernel.errors.Forbidden`."""
    from kernel.errors import Forbidden  # lazy: it imports nameko, which the CLI (kernel.auth) must not

    grant = grant_for(action, role)
    if grant is None:
        raise Forbidden(f"the role {role} may not do {action}", {"action": [action]})
    return grant


def may_access(action: str, viewer: Mapping[str, Any], *, community: str, owners: Iterable[str] = (),
               grid: str | None = None, assignee: Mapping[str, str] | None = None) -> bool:
    """Whether ``viewer`` (``{"subject", "role", "community", "grids", "teams"}``) may do ``action`` on one object.

    ``community`` is the object's; ``owners`` who it belongs to (a ticket's attached residents,
    a person's own id); ``grid`` where it is (None: not placed yet, see :class:`Grant`);
    ``assignee`` to whom it is dispatched (``{"kind": "worker"|"team", "id"}``).

    >>> worker = {"subject": "gw-1", "role": "grid_worker", "community": "xingqiao", "grids": ["g3"], "teams": []}
    >>> [may_access("residents.read", worker, community="xingqiao", grid=g) for g in ("g3", "g4", None)]
    [True, False, True]
    >>> may_access("residents.read", worker, community="dongcheng", grid="g3")
    False
    """
    grant = grant_for(action, viewer.get("role", ""))
    if grant is None or viewer.get("community") != community:
        return False
    if grant is Grant.ALWAYS:
        return True
    if grant is Grant.IF_GRID:
        return grid is None or grid in (viewer.get("grids") or ())
    if grant is Grant.IF_ASSIGNED:
        kind, assignee_id = (assignee or {}).get("kind"), (assignee or {}).get("id")
        return (kind == "worker" and assignee_id == viewer.get("subject")) or (
            kind == "team" and assignee_id in (viewer.get("teams") or ()))
    return viewer.get("subject") in set(owners)

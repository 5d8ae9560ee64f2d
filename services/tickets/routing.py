"""Where a new ticket goes: its grid and building from the directory, and the grid's worker to suggest.

The directory answers one RPC, ``directory.route``: the building given (else the resident's home),
its grid and the grid's workers, from a copy of the place tree at most a few seconds old. A building
the directory does not know is the caller's mistake (422); a directory that does not answer leaves
the ticket unplaced: it is received all the same and dispatched by hand.
"""

from __future__ import annotations

from typing import Any

from nameko.exceptions import UnknownService as NoSuchService

from kernel.errors import NotFound, ValidationFailed
from kernel.logging import get_logger
from kernel.rpc import RpcTimeout

DIRECTORY_TIMEOUT = 2.0  # routing asks the directory at intake; a ticket is received unplaced rather than late
log = get_logger(__name__)


def route(directory: Any, community: str, resident: str | None, building: str | None) -> dict:
    """``{"grid", "building", "suggested_owner"}`` for a ticket of ``building`` (else the resident's own), or ``{}``.

    ``directory`` is the service's RPC proxy to the directory; one ``directory.route`` call answers it.
    """
    try:
        located = directory.route(community, resident, building)
    except NotFound as error:
        raise ValidationFailed("the request is not valid",
                               {"building": [f"no building {building!r} in {community}"]}) from error
    except (NoSuchService, RpcTimeout) as error:
        log.warning("ticket.routing_unavailable", error=type(error).__name__)
        return {"building": building} if building else {}
    if not located:
        return {}
    workers = located.get("workers") or []
    return {"grid": located["grid"], "building": located["building"],
            "suggested_owner": workers[0] if workers else None}


def open311_route(directory: Any, community: str, reporter: str | None, address_id: str | None) -> dict:
    """Routing of an Open311 request: its ``address_id`` as the building; an id the directory does not know
    leaves the request unplaced (an integrator's ids are its own), as a directory that does not answer does."""
    try:
        return route(directory, community, reporter, address_id)
    except ValidationFailed:
        return route(directory, community, reporter, None)

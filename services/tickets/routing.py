"""Where a new ticket goes: its grid and building, and the grid's worker to suggest.

A ticket whose building is known (the body's, an Open311 ``address_id``, a patrol finding's, or the
resident's home, which their token carries) is placed from a per-process copy of the community's
routing (``directory.routes``: every building's grid, every grid's workers), read again when older than
:data:`COPY_SECONDS`: no call to the directory per ticket. A building the copy lacks (added since, or
unknown) and a ticket whose building only the directory knows (staff entering a phone-in for a resident,
a token without ``home``) ask ``directory.route``. A building the directory does not know is the caller's
mistake (422); a directory that does not answer leaves the ticket unplaced: it is received all the same
and dispatched by hand.

>>> class Directory:
...     calls = []
...     def routes(self, community):
...         self.calls.append("routes")
...         return {"buildings": {"b01": "g1"}, "workers": {"g1": ["p-w1"]}}
...     def route(self, community, resident, building):
...         self.calls.append("route")
...         return {"grid": "g2", "building": "b09", "workers": []}
>>> directory, copy = Directory(), RoutingCopy(clock=iter([0.0, 1.0, 2.0]).__next__)
>>> route(directory, "xq", "r-1", None, home="b01", copy=copy)
{'grid': 'g1', 'building': 'b01', 'suggested_owner': 'p-w1'}
>>> route(directory, "xq", "r-1", "b01", copy=copy)["grid"], route(directory, "xq", "r-1", "b09", copy=copy)["grid"]
('g1', 'g2')
>>> directory.calls  # one copy for the three tickets; the building it lacks was asked
['routes', 'route']
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from nameko.exceptions import UnknownService as NoSuchService
from nameko.extensions import DependencyProvider

from kernel.errors import NotFound, ValidationFailed
from kernel.logging import get_logger
from kernel.rpc import RpcTimeout

DIRECTORY_TIMEOUT = 2.0  # routing asks the directory at intake; a ticket is received unplaced rather than late
COPY_SECONDS = 5.0  # as old as the directory's own copy of its tree may be (services/directory/routing.py)
log = get_logger(__name__)


class RoutingCopy:
    """Each community's ``directory.routes``, kept ``ttl`` seconds and shared by a process's workers."""

    def __init__(self, ttl: float = COPY_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl, self._clock = ttl, clock
        self._copies: dict[str, tuple[float, dict]] = {}

    def place(self, directory: Any, community: str, building: str) -> dict | None:
        """``{"grid", "building", "workers"}`` from the copy (read again once old); None if it lacks the building."""
        now = self._clock()
        kept = self._copies.get(community)
        if kept is None or now - kept[0] > self._ttl:
            kept = self._copies[community] = (now, directory.routes(community))
        grid = kept[1]["buildings"].get(building)
        if grid is None:
            return None
        return {"grid": grid, "building": building, "workers": kept[1]["workers"].get(grid, [])}


class Routing(DependencyProvider):
    """Gives the container's workers one shared :class:`RoutingCopy`."""

    def __init__(self, ttl: float = COPY_SECONDS, **kwargs) -> None:
        self.copy = RoutingCopy(ttl)
        super().__init__(**kwargs)

    def get_dependency(self, worker_ctx) -> RoutingCopy:
        return self.copy


def route(directory: Any, community: str, resident: str | None, building: str | None, home: str | None = None,
          copy: RoutingCopy | None = None) -> dict:
    """``{"grid", "building", "suggested_owner"}`` for a ticket of ``building`` (else ``home``, the resident's
    own as their token says, else the one the directory knows for ``resident``), or ``{}``.

    ``directory`` is the service's RPC proxy to the directory; ``copy`` places a known building without it.
    """
    known = building or home
    try:
        located = copy.place(directory, community, known) if known is not None and copy is not None else None
        if located is None:
            located = directory.route(community, resident, building)
    except NotFound as error:
        raise ValidationFailed("the request is not valid",
                               {"building": [f"no building {building!r} in {community}"]}) from error
    except (NoSuchService, RpcTimeout) as error:
        log.warning("ticket.routing_unavailable", error=type(error).__name__)
        return {"building": known} if known else {}
    if not located:
        return {}
    workers = located.get("workers") or []
    return {"grid": located["grid"], "building": located["building"],
            "suggested_owner": workers[0] if workers else None}


def open311_route(directory: Any, community: str, reporter: str | None, address_id: str | None,
                  copy: RoutingCopy | None = None) -> dict:
    """Routing of an Open311 request: its ``address_id`` as the building; an id the directory does not know
    leaves the request unplaced (an integrator's ids are its own), as a directory that does not answer does."""
    try:
        return route(directory, community, reporter, address_id, copy=copy)
    except ValidationFailed:
        return route(directory, community, reporter, None, copy=copy)

"""Where a new ticket goes: the building (given, or the resident's home), its grid and the grid's workers.

Every ticket asks this at intake, so it must cost the database little: the place tree and the grid
workers of a community change a few times a year (an import, a staff change) and are read from a
per-process copy at most ``ttl`` seconds old; only the resident's building is read per ticket, without
unsealing anything. A ticket routed within ``ttl`` of a change to the tree goes where the tree said
before the change, and can be dispatched again by hand like any ticket.

>>> from services.directory.places import Building, Community, Grid
>>> tree = Community("xq", "兴乔社区", grids=[Grid("g1", "一网格", buildings=[Building("b01", "1号楼")])])
>>> now = iter([0.0, 1.0, 9.0]).__next__
>>> reads = []
>>> places = RoutingPlaces(lambda code: reads.append(code) or (tree, {"g1": ["p-w1"]}), ttl=5.0, clock=now)
>>> places.route("xq", "b01"), places.route("xq", "b01")["grid"], len(reads)  # the second from the copy
({'community': 'xq', 'grid': 'g1', 'building': 'b01', 'workers': ['p-w1']}, 'g1', 1)
>>> places.route("xq", "b99") is None, len(reads)  # older than ttl: read again; an unknown building is None
(True, 2)
"""

from __future__ import annotations

import time
from collections.abc import Callable

from nameko.extensions import DependencyProvider

from services.directory.places import Community

TTL_SECONDS = 5.0
Snapshot = tuple[Community | None, dict[str, list[str]]]  # the tree, and grid code -> its workers


class RoutingPlaces:
    """A per-process copy of each community's tree and grid workers, read again when older than ``ttl``."""

    def __init__(self, read: Callable[[str], Snapshot], ttl: float = TTL_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._read = read
        self._ttl = ttl
        self._clock = clock
        self._copies: dict[str, tuple[float, Snapshot]] = {}

    def route(self, community: str, building: str) -> dict | None:
        """``{community, grid, building, workers}`` for a building of the community; None if it has no such building."""
        tree, workers = self._snapshot(community)
        grid = tree.grid_of(building) if tree is not None else None
        if grid is None:
            return None
        return {"community": community, "grid": grid.code, "building": building,
                "workers": list(workers.get(grid.code, []))}

    def routes(self, community: str) -> dict:
        """The whole community's routing as data: ``{"buildings": {building: grid}, "workers": {grid: [ids]}}``.

        >>> from services.directory.places import Building, Community, Grid
        >>> tree = Community("xq", "兴乔社区", grids=[Grid("g1", "一网格", buildings=[Building("b01", "1号楼")])])
        >>> RoutingPlaces(lambda code: (tree, {"g1": ["p-w1"]})).routes("xq")
        {'buildings': {'b01': 'g1'}, 'workers': {'g1': ['p-w1']}}
        """
        tree, workers = self._snapshot(community)
        grids = tree.grids if tree is not None else []
        return {"buildings": {building.code: grid.code for grid in grids for building in grid.buildings},
                "workers": {grid.code: list(workers.get(grid.code, [])) for grid in grids}}

    def _snapshot(self, community: str) -> Snapshot:
        now = self._clock()
        kept = self._copies.get(community)
        if kept is None or now - kept[0] > self._ttl:
            kept = self._copies[community] = (now, self._read(community))
        return kept[1]


class Routing(DependencyProvider):
    """Gives the container's workers one shared :class:`RoutingPlaces`, made on first use with their ``read``.

    ``read`` goes through the repository of the worker that first asks; every worker's repository reads
    the same database, so the copy serves them all.
    """

    def __init__(self, ttl: float = TTL_SECONDS) -> None:
        self.ttl = ttl
        self.places: RoutingPlaces | None = None

    def get_dependency(self, worker_ctx) -> Callable[[Callable[[str], Snapshot]], RoutingPlaces]:
        return self._places

    def _places(self, read: Callable[[str], Snapshot]) -> RoutingPlaces:
        if self.places is None:
            self.places = RoutingPlaces(read, self.ttl)
        return self.places

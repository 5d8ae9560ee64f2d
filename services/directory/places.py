"""The place tree of a street office: street → community → grid → building → unit → room (plain Python, no I/O).

A community is stored as one document holding its grids and their buildings: a
tree of a few dozen buildings is read whole, and changing it (an import) is one
atomic write. Grid workers are not stored here: they are the staff whose grids
include the grid (:mod:`services.directory.people`), so a worker's assignment has
one home.

>>> tree = Community("xingqiao", "兴乔社区", "体育场街道", "张店区")
>>> tree.add_grid(Grid("g3", "第三网格"))
>>> tree.add_building("g3", Building("b03", "3号楼", "兴乔小区3号楼", [Unit("2", "2单元", ["401", "402"])]))
>>> tree.grid_of("b03").code
'g3'
>>> tree.add_building("g9", Building("b04", "4号楼"))
Traceback (most recent call last):
...
services.directory.places.PlaceError: no grid g9 in xingqiao
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

CODE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}\Z")


class PlaceError(ValueError):
    """A change that would break the tree's rules."""


def valid_code(code: str) -> bool:
    """Codes are short lower-case slugs: they appear in routes and in every ticket.

    >>> valid_code("b03"), valid_code("g1"), valid_code("B03"), valid_code("3号楼"), valid_code("")
    (True, True, False, False, False)
    """
    return isinstance(code, str) and bool(CODE.match(code))


@dataclass
class Unit:
    code: str
    name: str = ""
    rooms: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.name = self.name or f"{self.code}单元"

    def to_dict(self) -> dict:
        return {"code": self.code, "name": self.name, "rooms": list(self.rooms)}

    @classmethod
    def from_dict(cls, data: dict) -> Unit:
        return cls(data["code"], data.get("name", ""), list(data.get("rooms") or []))


@dataclass
class Building:
    code: str
    name: str
    address: str = ""
    units: list[Unit] = field(default_factory=list)

    def unit(self, code: str) -> Unit | None:
        return next((unit for unit in self.units if unit.code == code), None)

    def merge_unit(self, unit: Unit) -> None:
        """Add a unit, or add the rooms of one already there (in the order first seen)."""
        existing = self.unit(unit.code)
        if existing is None:
            self.units.append(Unit(unit.code, unit.name, list(dict.fromkeys(unit.rooms))))
            return
        existing.name = unit.name or existing.name
        existing.rooms = list(dict.fromkeys([*existing.rooms, *unit.rooms]))

    def to_dict(self) -> dict:
        return {"code": self.code, "name": self.name, "address": self.address,
                "units": [unit.to_dict() for unit in self.units]}

    @classmethod
    def from_dict(cls, data: dict) -> Building:
        return cls(data["code"], data.get("name", data["code"]), data.get("address", ""),
                   [Unit.from_dict(unit) for unit in data.get("units") or []])


@dataclass
class Grid:
    code: str
    name: str
    buildings: list[Building] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"code": self.code, "name": self.name, "buildings": [b.to_dict() for b in self.buildings]}

    @classmethod
    def from_dict(cls, data: dict) -> Grid:
        return cls(data["code"], data.get("name", data["code"]),
                   [Building.from_dict(b) for b in data.get("buildings") or []])


@dataclass
class Community:
    """A community and its grids; every building in exactly one grid, every code unique in its level."""

    code: str
    name: str
    street: str = ""
    district: str = ""
    grids: list[Grid] = field(default_factory=list)
    version: int = 0  # bumped on every save: two imports at once cannot overwrite each other

    def __post_init__(self) -> None:
        if not valid_code(self.code):
            raise PlaceError(f"{self.code!r} is not a valid community code")

    def grid(self, code: str) -> Grid | None:
        return next((grid for grid in self.grids if grid.code == code), None)

    def grid_of(self, building: str) -> Grid | None:
        """The grid a building belongs to, or None if the community has no such building."""
        return next((grid for grid in self.grids for b in grid.buildings if b.code == building), None)

    def building(self, code: str) -> Building | None:
        return next((b for grid in self.grids for b in grid.buildings if b.code == code), None)

    def buildings_of(self, grids: Iterable[str]) -> list[str]:
        """The codes of the buildings of these grids (unknown grids have none)."""
        wanted = set(grids)
        return [b.code for grid in self.grids if grid.code in wanted for b in grid.buildings]

    def add_grid(self, grid: Grid) -> None:
        if not valid_code(grid.code):
            raise PlaceError(f"{grid.code!r} is not a valid grid code")
        existing = self.grid(grid.code)
        if existing is not None:
            existing.name = grid.name or existing.name
            return
        self.grids.append(Grid(grid.code, grid.name))

    def add_building(self, grid_code: str, building: Building) -> None:
        """Put a building in a grid; a building already elsewhere moves (a building has one grid).

        >>> tree = Community("c", "C")
        >>> tree.add_grid(Grid("g1", "一")); tree.add_grid(Grid("g2", "二"))
        >>> tree.add_building("g1", Building("b01", "1号楼", units=[Unit("1", rooms=["101"])]))
        >>> tree.add_building("g2", Building("b01", "1号楼", units=[Unit("1", rooms=["102"])]))
        >>> tree.grid_of("b01").code, tree.grid("g1").buildings, tree.building("b01").units[0].rooms
        ('g2', [], ['101', '102'])
        """
        if not valid_code(building.code):
            raise PlaceError(f"{building.code!r} is not a valid building code")
        target = self.grid(grid_code)
        if target is None:
            raise PlaceError(f"no grid {grid_code} in {self.code}")
        current = self.grid_of(building.code)
        if current is not None and current is not target:
            moved = self.building(building.code)
            current.buildings = [b for b in current.buildings if b.code != building.code]
            target.buildings.append(moved)
        existing = self.building(building.code)
        if existing is None:
            target.buildings.append(Building(building.code, building.name, building.address, []))
            existing = target.buildings[-1]
        existing.name = building.name or existing.name
        existing.address = building.address or existing.address
        for unit in building.units:
            existing.merge_unit(unit)

    def summary(self) -> dict:
        return {"code": self.code, "name": self.name, "street": self.street, "district": self.district}

    def to_document(self) -> dict:
        return {"_id": self.code, **self.summary(), "grids": [grid.to_dict() for grid in self.grids],
                "version": self.version}

    @classmethod
    def from_document(cls, document: dict) -> Community:
        return cls(document["_id"], document.get("name", document["_id"]), document.get("street", ""),
                   document.get("district", ""), [Grid.from_dict(g) for g in document.get("grids") or []],
                   document.get("version", 0))

    def tree(self, workers: dict[str, list[str]]) -> dict:
        """The answer of ``directory.place_tree``: each grid with its workers' person ids."""
        return {"community": self.summary(),
                "grids": [{**grid.to_dict(), "workers": list(workers.get(grid.code, []))} for grid in self.grids]}

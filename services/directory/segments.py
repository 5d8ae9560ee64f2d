"""Segments: queries over a community's residents that notify expands for a broadcast.

A spec combines its criteria with AND: ``grid``, ``building``, ``min_age``,
``max_age`` and ``flags`` (all of them). Ages come from birth years alone, so an
age is "the age reached this year" and ``today`` is injected. A grid means its
buildings, looked up in the place tree when the filter is made.

>>> from datetime import date
>>> from services.directory.places import Building, Community, Grid
>>> tree = Community("xq", "兴乔社区")
>>> tree.add_grid(Grid("g3", "第三网格")); tree.add_building("g3", Building("b03", "3号楼"))
>>> spec = load_spec({"grid": "g3", "min_age": 60, "flags": ["lives_alone"]})
>>> query = to_filter("xq", spec, tree, date(2026, 5, 1))
>>> query["address.building"], query["birth_year"], query["flags"]
({'$in': ['b03']}, {'$lte': 1966}, {'$all': ['lives_alone']})
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from kernel.validation import load
from services.directory.people import FLAGS, RESIDENT, Person
from services.directory.places import Community


class SegmentSpecSchema(Schema):
    class Meta:
        unknown = RAISE

    grid = fields.String(validate=validate.Length(min=1, max=32))
    building = fields.String(validate=validate.Length(min=1, max=32))
    min_age = fields.Integer(strict=True, validate=validate.Range(min=0, max=150))
    max_age = fields.Integer(strict=True, validate=validate.Range(min=0, max=150))
    flags = fields.List(fields.String(validate=validate.OneOf(FLAGS)), validate=validate.Length(max=len(FLAGS)))

    @validates_schema
    def _ages_in_order(self, data: dict, **kwargs: Any) -> None:
        if "min_age" in data and "max_age" in data and data["min_age"] > data["max_age"]:
            raise ValidationError("min_age is above max_age", "max_age")


_SPEC = SegmentSpecSchema()


def load_spec(spec: Any) -> dict:
    """A validated spec, or ValidationFailed with the reason per criterion.

    >>> load_spec({"flags": ["home_quarantine"]})
    {'flags': ['home_quarantine']}
    >>> try:
    ...     load_spec({"min_age": 70, "max_age": 60, "colour": "red"})
    ... except Exception as error:
    ...     sorted(error.details)
    ['colour']
    """
    return load(_SPEC, spec if spec is not None else {})


def live_residents(community: str) -> dict:
    """The residents a segment may reach: not erased, not moved out."""
    return {"community": community, "roles": RESIDENT, "erased_at": None, "moved_out_at": None}


def to_filter(community: str, spec: dict, tree: Community | None, today: date | datetime) -> dict:
    """The MongoDB filter of a validated spec (residents only, erased and moved-out left out)."""
    query = live_residents(community)
    buildings: set[str] | None = None
    if "grid" in spec:
        buildings = set(tree.buildings_of([spec["grid"]]) if tree else [])
    if "building" in spec:
        buildings = {spec["building"]} if buildings is None else buildings & {spec["building"]}
    if buildings is not None:
        query["address.building"] = {"$in": sorted(buildings)}
    years: dict[str, int] = {}
    if "min_age" in spec:
        years["$lte"] = today.year - spec["min_age"]
    if "max_age" in spec:
        years["$gte"] = today.year - spec["max_age"]
    if years:
        query["birth_year"] = years
    if spec.get("flags"):
        query["flags"] = {"$all": list(spec["flags"])}
    return query


def matches(person: Person, spec: dict, tree: Community | None, today: date | datetime) -> bool:
    """Whether ``person`` is in the segment: the same rule as :func:`to_filter`, in Python.

    >>> from services.directory.people import Address
    >>> from services.directory.places import Building, Grid
    >>> tree = Community("xq", "兴乔社区")
    >>> tree.add_grid(Grid("g3", "三")); tree.add_building("g3", Building("b03", "3号楼"))
    >>> old = Person("p-0123456789ab", "xq", "王五", "13800001234", address=Address("b03", "1", "101"),
    ...              birth_year=1950, flags=["lives_alone"])
    >>> matches(old, {"grid": "g3", "min_age": 60}, tree, date(2026, 1, 1)), matches(old, {"max_age": 60}, tree,
    ...     date(2026, 1, 1))
    (True, False)
    """
    if person.community != (tree.code if tree else person.community):
        return False
    if not person.is_resident or person.erased_at is not None or person.moved_out_at is not None:
        return False
    building = person.building
    if "grid" in spec:
        grid = tree.grid_of(building) if tree and building else None
        if grid is None or grid.code != spec["grid"]:
            return False
    if "building" in spec and building != spec["building"]:
        return False
    if "min_age" in spec or "max_age" in spec:
        if person.birth_year is None:
            return False
        if "min_age" in spec and person.birth_year > today.year - spec["min_age"]:
            return False
        if "max_age" in spec and person.birth_year < today.year - spec["max_age"]:
            return False
    return all(flag in person.flags for flag in spec.get("flags") or [])

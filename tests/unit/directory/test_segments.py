"""Segment specs: validation, the Mongo filter, and the pure rule it must agree with."""

from __future__ import annotations

from datetime import date

import pytest

from kernel.errors import ValidationFailed
from services.directory.people import Address, Person
from services.directory.places import Building, Community, Grid
from services.directory.segments import load_spec, matches, to_filter

TODAY = date(2026, 12, 1)


def tree() -> Community:
    community = Community("xingqiao", "兴乔社区")
    for grid, buildings in (("g1", ["b01", "b02"]), ("g3", ["b09", "b10"])):
        community.add_grid(Grid(grid, grid))
        for code in buildings:
            community.add_building(grid, Building(code, code))
    return community


def person(building="b09", birth_year=1950, flags=("elderly",), **changes) -> Person:
    p = Person("p-00000000000a", "xingqiao", "王秀英", "13800002001", address=Address(building, "1", "101"),
               birth_year=birth_year, flags=list(flags))
    for key, value in changes.items():
        setattr(p, key, value)
    return p


@pytest.mark.parametrize("spec,expected", [
    ({}, True),
    ({"grid": "g3"}, True),
    ({"grid": "g1"}, False),
    ({"building": "b09"}, True),
    ({"grid": "g1", "building": "b09"}, False),
    ({"min_age": 76}, True),  # 2026 - 1950 = 76: the age reached this year
    ({"min_age": 77}, False),
    ({"max_age": 76}, True),
    ({"max_age": 75}, False),
    ({"flags": ["elderly"]}, True),
    ({"flags": ["elderly", "lives_alone"]}, False),
    ({"grid": "g3", "min_age": 60, "flags": ["elderly"]}, True),
])
def test_criteria_combine_with_and(spec, expected):
    assert matches(person(), load_spec(spec), tree(), TODAY) is expected


def test_erased_moved_out_and_staff_only_people_are_never_in_a_segment():
    from datetime import UTC, datetime
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert not matches(person(erased_at=at), {}, tree(), TODAY)
    assert not matches(person(moved_out_at=at), {}, tree(), TODAY)
    assert not matches(person(roles=["grid_worker"]), {}, tree(), TODAY)
    assert not matches(person(birth_year=None), {"min_age": 60}, tree(), TODAY)


def test_the_filter_uses_birth_years_and_the_grid_s_buildings():
    query = to_filter("xingqiao", load_spec({"grid": "g3", "min_age": 60, "max_age": 80}), tree(), TODAY)
    assert query["address.building"] == {"$in": ["b09", "b10"]}
    assert query["birth_year"] == {"$lte": 1966, "$gte": 1946}
    assert query["community"] == "xingqiao" and query["erased_at"] is None and query["roles"] == "resident"


def test_an_unknown_grid_matches_nobody():
    assert to_filter("xingqiao", {"grid": "g9"}, tree(), TODAY)["address.building"] == {"$in": []}


@pytest.mark.parametrize("spec,field", [
    ({"min_age": -1}, "min_age"), ({"max_age": "old"}, "max_age"), ({"min_age": 70, "max_age": 60}, "max_age"),
    ({"flags": ["rich"]}, "flags"), ({"colour": "red"}, "colour"), ({"grid": ""}, "grid"),
])
def test_bad_specs_are_refused_with_the_criterion_named(spec, field):
    with pytest.raises(ValidationFailed) as refused:
        load_spec(spec)
    assert field in refused.value.details

"""The place tree's rules: one grid per building, valid codes, merging imports."""

from __future__ import annotations

import pytest

from services.directory.places import Building, Community, Grid, PlaceError, Unit
from services.directory.seed import community_of, load_demo


def tree() -> Community:
    community = Community("xingqiao", "兴乔社区", "体育场街道", "张店区")
    for code in ("g1", "g2", "g3"):
        community.add_grid(Grid(code, code))
    community.add_building("g3", Building("b09", "9号楼", "兴乔小区9号楼", [Unit("1", rooms=["101", "102"])]))
    return community


def test_a_building_is_located_in_its_grid():
    assert tree().grid_of("b09").code == "g3"
    assert tree().grid_of("b99") is None
    assert tree().buildings_of(["g3", "g1"]) == ["b09"]


def test_a_building_has_one_grid_moving_it_removes_it_from_the_old_one():
    community = tree()
    community.add_building("g1", Building("b09", "", units=[Unit("2", rooms=["201"])]))
    assert community.grid_of("b09").code == "g1" and community.grid("g3").buildings == []
    building = community.building("b09")
    assert building.name == "9号楼" and [u.code for u in building.units] == ["1", "2"]


def test_rooms_merge_without_duplicates():
    community = tree()
    community.add_building("g3", Building("b09", "9号楼", units=[Unit("1", rooms=["102", "201"])]))
    assert community.building("b09").unit("1").rooms == ["101", "102", "201"]


@pytest.mark.parametrize("grid,building", [("g9", "b10"), ("g1", "B10"), ("g1", "10号楼")])
def test_unknown_grids_and_invalid_codes_are_refused(grid, building):
    with pytest.raises(PlaceError):
        tree().add_building(grid, Building(building, "x"))


def test_a_document_round_trip_keeps_the_tree():
    community = tree()
    assert Community.from_document(community.to_document()) == community


def test_the_demo_community_is_a_valid_tree_of_five_grids():
    data = load_demo()
    community = community_of(data)
    buildings = [b.code for g in community.grids for b in g.buildings]
    assert [g.code for g in community.grids] == ["g1", "g2", "g3", "g4", "g5"]
    assert len(buildings) == len(set(buildings)) >= 20
    assert all(community.building(r["building"]) for r in data["residents"])
    workers = {s["grids"][0] for s in data["staff"] if "grid_worker" in s["roles"]}
    assert workers == {"g1", "g2", "g3", "g4", "g5"}
    secretary = [s for s in data["staff"] if "secretary" in s["roles"]]
    assert [s["name"] for s in secretary] == ["刘丽丽"]
    phones = [p["phone"] for p in data["staff"] + data["residents"]]
    assert len(phones) == len(set(phones)) and all(p.startswith("1380000") for p in phones)
    assert len(data["residents"]) >= 40

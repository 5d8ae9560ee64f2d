"""Routing at intake: a known building is placed from the copy of the directory's routes; the rest asks it."""

from __future__ import annotations

import pytest
from nameko.exceptions import UnknownService

from kernel.errors import NotFound, ValidationFailed
from kernel.rpc import RpcTimeout
from services.tickets.routing import RoutingCopy, open311_route, route

ROUTES = {"buildings": {"b01": "g1", "b03": "g2"}, "workers": {"g1": ["p-w1"], "g2": []}}


class Directory:
    """The directory's two routing RPCs, with what each was asked."""

    def __init__(self, routes: dict = ROUTES, down: Exception | None = None) -> None:
        self.routes_, self.down, self.asked = routes, down, []

    def routes(self, community: str) -> dict:
        self.asked.append(("routes", community))
        if self.down:
            raise self.down
        return self.routes_

    def route(self, community: str, resident: str | None, building: str | None) -> dict:
        self.asked.append(("route", resident, building))
        if self.down:
            raise self.down
        if building == "b99":
            raise NotFound("no building b99")
        return {"grid": "g7", "building": building or "b07", "workers": ["p-w7"]}


def clock(*moments: float):
    return iter(moments).__next__


def test_the_resident_s_home_is_placed_from_the_copy_read_once_until_it_is_old():
    directory, copy = Directory(), RoutingCopy(ttl=5.0, clock=clock(0.0, 4.0, 6.0))
    placed = [route(directory, "xq", "r-1", None, home="b03", copy=copy) for _ in range(3)]
    assert placed[0] == {"grid": "g2", "building": "b03", "suggested_owner": None}
    assert directory.asked == [("routes", "xq"), ("routes", "xq")]  # read again after 5 s, never route


def test_the_body_s_building_comes_before_the_home():
    directory, copy = Directory(), RoutingCopy(clock=clock(0.0))
    assert route(directory, "xq", "r-1", "b01", home="b03", copy=copy)["grid"] == "g1"


def test_a_home_the_copy_lacks_asks_the_directory_for_the_resident_s_home():
    directory, copy = Directory(), RoutingCopy(clock=clock(0.0))
    assert route(directory, "xq", "r-1", None, home="b05", copy=copy)["grid"] == "g7"
    assert directory.asked[-1] == ("route", "r-1", None)  # the directory's own answer, not the token's


def test_without_a_building_or_a_home_the_directory_is_asked():
    directory = Directory()
    assert route(directory, "xq", "r-1", None, copy=RoutingCopy())["building"] == "b07"
    assert directory.asked == [("route", "r-1", None)]


def test_a_building_nobody_knows_is_the_caller_s_mistake():
    with pytest.raises(ValidationFailed) as error:
        route(Directory(), "xq", "r-1", "b99", copy=RoutingCopy())
    assert "building" in error.value.details


def test_open311_leaves_an_address_id_nobody_knows_unplaced_rather_than_refused():
    assert open311_route(Directory(), "xq", None, "b99", RoutingCopy())["building"] == "b07"


@pytest.mark.parametrize("down", [UnknownService("directory"), RpcTimeout("directory", "routes", 2.0)])
def test_a_directory_that_does_not_answer_leaves_the_ticket_at_its_known_building(down):
    directory = Directory(down=down)
    assert route(directory, "xq", "r-1", None, home="b03", copy=RoutingCopy()) == {"building": "b03"}
    assert route(directory, "xq", "r-1", None, copy=RoutingCopy()) == {}

"""The volunteers service's team registry against the real broker and database."""

from __future__ import annotations

import pytest
from nameko.testing.services import entrypoint_hook

from services.volunteers.service import VolunteersService

pytestmark = pytest.mark.integration


def test_the_community_has_its_ten_teams_once_the_service_started_before_any_read(
        container_factory, service_config, settings, mongo_client):
    volunteers = container_factory(VolunteersService, service_config)
    volunteers.start()
    teams = mongo_client[settings.database_name("volunteers")].teams
    assert teams.count_documents({"community": settings.community}) == 10  # seeded at start, not on a read

    with entrypoint_hook(volunteers, "list_teams") as list_teams:
        first = list_teams(settings.community)
        again = list_teams(settings.community)
        page_one = list_teams(settings.community, limit=4)
        page_two = list_teams(settings.community, cursor=page_one["next_cursor"], limit=4)
        page_three = list_teams(settings.community, cursor=page_two["next_cursor"], limit=4)
    assert len(first["items"]) == 10 and first == again and first["next_cursor"] is None
    assert [team["name"] for team in first["items"][:3]] == ["党员先锋", "百姓管家", "邻里互助"]
    assert page_one["items"] + page_two["items"] + page_three["items"] == first["items"]
    assert page_three["next_cursor"] is None and len(page_three["items"]) == 2


def test_a_read_never_writes(container_factory, service_config, settings, mongo_client):
    volunteers = container_factory(VolunteersService, service_config)
    volunteers.start()
    teams = mongo_client[settings.database_name("volunteers")].teams
    with entrypoint_hook(volunteers, "list_teams") as list_teams:
        assert list_teams("another-community") == {"items": [], "next_cursor": None}
    assert teams.count_documents({"community": "another-community"}) == 0


def test_a_second_instance_starting_leaves_the_teams_as_they_are(
        container_factory, service_config, settings, mongo_client):
    first = container_factory(VolunteersService, service_config)
    first.start()
    teams = mongo_client[settings.database_name("volunteers")].teams
    teams.update_one({"community": settings.community, "code": teams.find_one()["code"]}, {"$set": {"members": 7}})
    before = sorted(teams.find(), key=lambda team: team["_id"])

    second = container_factory(VolunteersService, service_config)
    second.start()

    assert sorted(teams.find(), key=lambda team: team["_id"]) == before

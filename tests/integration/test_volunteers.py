"""The volunteers service's team registry against the real broker and database."""

from __future__ import annotations

import pytest
from nameko.testing.services import entrypoint_hook

from services.volunteers.service import VolunteersService

pytestmark = pytest.mark.integration


def test_a_community_starts_with_its_ten_volunteer_teams(container_factory, service_config):
    volunteers = container_factory(VolunteersService, service_config)
    volunteers.start()
    with entrypoint_hook(volunteers, "list_teams") as list_teams:
        first = list_teams("xingqiao")
        again = list_teams("xingqiao")
        page_one = list_teams("xingqiao", limit=4)
        page_two = list_teams("xingqiao", cursor=page_one["next_cursor"], limit=4)
        page_three = list_teams("xingqiao", cursor=page_two["next_cursor"], limit=4)
    assert len(first["items"]) == 10 and first == again and first["next_cursor"] is None
    assert [team["name"] for team in first["items"][:3]] == ["党员先锋", "百姓管家", "邻里互助"]
    assert page_one["items"] + page_two["items"] + page_three["items"] == first["items"]
    assert page_three["next_cursor"] is None and len(page_three["items"]) == 2

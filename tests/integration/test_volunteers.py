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
    assert len(first) == 10 and first == again
    assert [team["name"] for team in first[:3]] == ["党员先锋", "百姓管家", "邻里互助"]

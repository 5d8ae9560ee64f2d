"""The ten volunteer teams a community starts with, given when the container starts (never on a read).

The community is ``HUISHENG_COMMUNITY``; ``data/default_teams.json`` lists the teams in their order.
Seeding only inserts teams that are missing, so a restart, or a second instance starting at the same
time, changes nothing.

>>> [team["name"] for team in DEFAULT_TEAMS[:3]]
['党员先锋', '百姓管家', '邻里互助']
"""

from __future__ import annotations

import json
from importlib import resources

from nameko.extensions import DependencyProvider

from kernel.config import settings_of
from kernel.logging import get_logger
from kernel.mongo import MongoClientProvider
from services.volunteers.repository import TeamRepository, ensure_indexes

DEFAULT_TEAMS: list[dict] = json.loads(resources.files("services.volunteers").joinpath("data/default_teams.json")
                                       .read_text(encoding="utf-8"))["teams"]
log = get_logger(__name__)


class SeedOnStart(DependencyProvider):
    """Gives the platform's community its default teams when the container starts."""

    mongo = MongoClientProvider()

    def start(self) -> None:
        db = self.mongo.db
        ensure_indexes(db)  # extensions start concurrently: the index may not exist yet
        community = settings_of(self.container.config).community
        TeamRepository(db).seed(community, DEFAULT_TEAMS)
        log.info("volunteers.seeded", community=community, teams=len(DEFAULT_TEAMS))

    def get_dependency(self, worker_ctx) -> None:
        return None

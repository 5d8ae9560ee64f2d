"""The volunteers service's entrypoints: the registry of volunteer teams of a community.

Matching, availability, check-in and hours build on this registry (DOMAIN.md, Volunteers). The teams
live in repository.py, their answer shape in schemas.py; the platform's community gets its default
teams at start-up (seed.py), so a read never writes.
"""

from __future__ import annotations

from kernel.context import Context
from kernel.health import HealthEndpoints
from kernel.mongo import Mongo
from kernel.pagination import decode_cursor, page, page_limit
from kernel.rpc import rpc
from services.volunteers.repository import TeamRepository, ensure_indexes
from services.volunteers.schemas import TEAMS
from services.volunteers.seed import SeedOnStart


class VolunteersService(HealthEndpoints):
    name = "volunteers"

    db = Mongo(indexes=ensure_indexes)
    seed = SeedOnStart()
    context = Context()

    @rpc
    def list_teams(self, community: str, cursor: str | None = None, limit: int | None = None) -> dict:
        """The community's teams in their order: ``{"items", "next_cursor"}``."""
        limit, after = page_limit(limit), decode_cursor(cursor, 1)
        found = TeamRepository(self.db).of_community(community, limit + 1, after)
        return page(found, limit, key=lambda team: (team["_id"],), dump=TEAMS.dump)

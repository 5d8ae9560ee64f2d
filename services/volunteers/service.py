"""The volunteers service's entrypoints: the registry of volunteer teams of a community.

Matching, availability, check-in and hours build on this registry (DOMAIN.md, Volunteers).
"""

from __future__ import annotations

import json
from importlib import resources

from marshmallow import EXCLUDE, Schema, fields
from pymongo import ASCENDING, UpdateOne
from pymongo.database import Database

from kernel.context import Context
from kernel.envelope import utcnow
from kernel.health import HealthEndpoints
from kernel.mongo import Mongo
from kernel.pagination import decode_cursor, keyset_filter, page, page_limit
from kernel.rpc import rpc

DEFAULT_TEAMS = json.loads(resources.files("services.volunteers").joinpath("data/default_teams.json")
                           .read_text(encoding="utf-8"))["teams"]


class TeamSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    code = fields.String()
    name = fields.String()
    skills = fields.List(fields.String())
    members = fields.Integer(dump_default=0)


TEAMS = TeamSchema(many=True)


class TeamRepository:
    def __init__(self, db: Database):
        self.collection = db.teams

    @staticmethod
    def ensure_indexes(db: Database) -> None:
        db.teams.create_index([("community", ASCENDING), ("code", ASCENDING)], unique=True, name="by_code")

    def of_community(self, community: str, limit: int = 0, after: tuple | None = None) -> list[dict]:
        sort = [("_id", ASCENDING)]
        return list(self.collection.find({"community": community, **keyset_filter(sort, after)}, sort=sort,
                                         limit=limit))

    def seed(self, community: str, teams: list[dict]) -> None:
        """Give a community its starting teams; existing teams are left as they are."""
        now = utcnow()
        self.collection.bulk_write([
            UpdateOne({"_id": f"{community}:{index:02d}:{team['code']}"},
                      {"$setOnInsert": {**team, "community": community, "members": 0, "created_at": now}},
                      upsert=True)
            for index, team in enumerate(teams)
        ])


class VolunteersService(HealthEndpoints):
    name = "volunteers"

    db = Mongo(indexes=TeamRepository.ensure_indexes)
    context = Context()

    @rpc
    def list_teams(self, community: str, cursor: str | None = None, limit: int | None = None) -> dict:
        """The community's teams in their order: ``{"items", "next_cursor"}``."""
        limit, after = page_limit(limit), decode_cursor(cursor, 1)
        teams = TeamRepository(self.db)
        if after is None and not teams.of_community(community, 1):
            teams.seed(community, DEFAULT_TEAMS)
        found = teams.of_community(community, limit + 1, after)
        return page(found, limit, key=lambda team: (team["_id"],), dump=TEAMS.dump)

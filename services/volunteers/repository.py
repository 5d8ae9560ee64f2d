"""The volunteers service's persistence: each community's teams, and their starting set."""

from __future__ import annotations

from pymongo import ASCENDING, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from kernel.envelope import utcnow
from kernel.pagination import keyset_filter

DUPLICATE_KEY = 11000


def ensure_indexes(db: Database) -> None:
    db.teams.create_index([("community", ASCENDING), ("code", ASCENDING)], unique=True, name="by_code")


class TeamRepository:
    def __init__(self, db: Database):
        self.collection = db.teams

    def of_community(self, community: str, limit: int = 0, after: tuple | None = None) -> list[dict]:
        sort = [("_id", ASCENDING)]
        return list(self.collection.find({"community": community, **keyset_filter(sort, after)}, sort=sort,
                                         limit=limit))

    def seed(self, community: str, teams: list[dict]) -> None:
        """Give a community its starting teams; existing teams are left as they are.

        Two instances seeding at once both upsert the same ids: the loser of a race gets a duplicate
        key on a team the winner inserted, which is the outcome it wanted.
        """
        now = utcnow()
        try:
            self.collection.bulk_write([
                UpdateOne({"_id": f"{community}:{index:02d}:{team['code']}"},
                          {"$setOnInsert": {**team, "community": community, "members": 0, "created_at": now}},
                          upsert=True)
                for index, team in enumerate(teams)
            ], ordered=False)
        except BulkWriteError as error:
            if any(failure.get("code") != DUPLICATE_KEY for failure in error.details.get("writeErrors", [])):
                raise

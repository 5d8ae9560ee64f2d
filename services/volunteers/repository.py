"""The volunteers service's persistence: teams, volunteers, tasks (with their outbox) and hour entries.

- ``teams``: each community's teams, seeded at start (leaders by person id);
- ``volunteers``: one document per person id: grid, skills, teams, availability, status, a keyed hash of
  the phone (duplicates are found by it; the phone itself stays in the directory) and its masked form;
- ``tasks``: one document per task, a ticket's or a 微心愿's, carrying its proposals, offers, check-in and
  check-out, rating and the events each step raised (``_outbox``): a step and its events are one write;
- ``hours``: manual entries and corrections, never deleted (credit minutes live on their tasks).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from kernel.envelope import Envelope, utcnow
from kernel.idempotency import ensure_idempotency_index
from kernel.outbox import OUTBOX, SINCE, push_events, with_events
from kernel.pagination import keyset_filter

DUPLICATE_KEY = 11000
TEAMS, VOLUNTEERS, TASKS, HOURS = "teams", "volunteers", "tasks", "hours"
HIDDEN = {OUTBOX: 0, SINCE: 0}  # the outbox is the relay's: reads leave it out, writes never $set it


def ensure_indexes(db: Database) -> None:
    db.teams.create_index([("community", ASCENDING), ("code", ASCENDING)], unique=True, name="by_code")
    db[VOLUNTEERS].create_index([("community", ASCENDING), ("phone_key", ASCENDING)], name="by_phone")
    db[VOLUNTEERS].create_index([("community", ASCENDING), ("teams", ASCENDING)], name="by_team")
    db[TASKS].create_index([("source_event", ASCENDING)], unique=True, sparse=True, name="by_source_event")
    db[TASKS].create_index([("state", ASCENDING), ("offer.expires_at", ASCENDING)], name="by_offer_expiry")
    db[TASKS].create_index([("state", ASCENDING), ("check_in_at", ASCENDING)], name="by_check_in")
    db[TASKS].create_index([("community", ASCENDING), ("volunteer", ASCENDING), ("accepted_at", DESCENDING)],
                           name="by_volunteer")
    db[TASKS].create_index([("community", ASCENDING), ("ticket_id", ASCENDING)], name="by_ticket")
    db[HOURS].create_index([("community", ASCENDING), ("volunteer", ASCENDING), ("date", ASCENDING)],
                           name="by_volunteer")
    ensure_idempotency_index(db)


class StaleTask(Exception):
    """The task changed since it was read (another answer, the timer): read again."""


class TeamRepository:
    def __init__(self, db: Database):
        self.collection = db.teams

    def of_community(self, community: str, limit: int = 0, after: tuple | None = None) -> list[dict]:
        sort = [("_id", ASCENDING)]
        return list(self.collection.find({"community": community, **keyset_filter(sort, after)}, sort=sort,
                                         limit=limit))

    def get(self, community: str, code: str) -> dict | None:
        return self.collection.find_one({"community": community, "code": code})

    def seed(self, community: str, teams: list[dict]) -> None:
        """Give a community its starting teams; existing teams are left as they are.

        Two instances seeding at once both upsert the same ids: the loser of a race gets a duplicate
        key on a team the winner inserted, which is the outcome it wanted.
        """
        now = utcnow()
        try:
            self.collection.bulk_write([
                UpdateOne({"_id": f"{community}:{index:02d}:{team['code']}"},
                          {"$setOnInsert": {**team, "community": community, "leaders": [], "created_at": now}},
                          upsert=True)
                for index, team in enumerate(teams)
            ], ordered=False)
        except BulkWriteError as error:
            if any(failure.get("code") != DUPLICATE_KEY for failure in error.details.get("writeErrors", [])):
                raise

    def set_leaders(self, community: str, code: str, leaders: list[str]) -> bool:
        return self.collection.update_one({"community": community, "code": code},
                                          {"$set": {"leaders": leaders}}).matched_count == 1


class VolunteerRepository:
    def __init__(self, db: Database):
        self.db = db
        self.volunteers, self.tasks, self.hours = db[VOLUNTEERS], db[TASKS], db[HOURS]

    # --- volunteers
    def get(self, community: str, volunteer_id: str) -> dict | None:
        return self.volunteers.find_one({"_id": volunteer_id, "community": community})

    def by_phone_key(self, community: str, phone_key: str) -> list[dict]:
        return list(self.volunteers.find({"community": community, "phone_key": phone_key, "status": {"$ne": "merged"}},
                                         sort=[("registered_at", ASCENDING)]))

    def save_volunteer(self, document: dict, events: Sequence[Envelope]) -> None:
        """Insert or replace a volunteer with the events of the change, in one write."""
        body = {key: value for key, value in document.items() if key not in ("_id", OUTBOX, SINCE)}
        self.volunteers.update_one({"_id": document["_id"]}, push_events({"$set": body}, events), upsert=True)

    def find(self, community: str, query: dict, limit: int = 0, after: str | None = None) -> list[dict]:
        condition = {"_id": {"$gt": after}} if after else {}
        return list(self.volunteers.find({"community": community, "status": {"$ne": "merged"}, **query, **condition},
                                         HIDDEN, sort=[("_id", ASCENDING)], limit=limit))

    def of_team(self, community: str, team: str) -> list[dict]:
        return self.find(community, {"teams": team})

    def member_counts(self, community: str) -> Counter:
        """Active volunteers per team."""
        counts: Counter = Counter()
        for volunteer in self.volunteers.find({"community": community, "status": "active"}, {"teams": 1}):
            counts.update(set(volunteer.get("teams") or ()))
        return counts

    def duplicate_groups(self, community: str) -> list[list[dict]]:
        """Registrations sharing a phone (by its keyed hash), oldest first in each group."""
        groups: dict[str, list[dict]] = {}
        for volunteer in self.volunteers.find({"community": community, "status": {"$ne": "merged"}},
                                              HIDDEN, sort=[("registered_at", ASCENDING)]):
            groups.setdefault(volunteer.get("phone_key"), []).append(volunteer)
        return [group for key, group in groups.items() if key and len(group) > 1]

    def merge(self, community: str, keep: str, drop: str, merged: dict, now: datetime) -> dict:
        """Move ``drop``'s tasks and hour entries to ``keep`` (nothing is lost) and mark ``drop`` merged.

        The moves are idempotent: a merge cut short is finished by running it again.
        """
        tasks = self.tasks.update_many({"community": community, "volunteer": drop}, {"$set": {"volunteer": keep}})
        hours = self.hours.update_many({"community": community, "volunteer": drop},
                                       {"$set": {"volunteer": keep, "merged_from": drop}})
        self.volunteers.update_one({"_id": keep, "community": community}, {"$set": {**merged, "updated_at": now}})
        self.volunteers.update_one({"_id": drop, "community": community},
                                   {"$set": {"status": "merged", "merged_into": keep, "updated_at": now}})
        return {"tasks_moved": tasks.modified_count, "hour_entries_moved": hours.modified_count}

    # --- tasks
    def insert_task(self, document: dict, events: Sequence[Envelope]) -> bool:
        """A new task with its events; False if its source event made it already (a redelivery)."""
        try:
            self.tasks.insert_one(with_events({**document, "version": 1}, events))
            return True
        except DuplicateKeyError:
            return False

    def task(self, community: str, task_id: str) -> dict | None:
        return self.tasks.find_one({"_id": task_id, "community": community}, HIDDEN)

    def save_task(self, document: dict, events: Sequence[Envelope]) -> dict:
        """Write a task read at ``document["version"]`` with its events; StaleTask if it moved meanwhile."""
        expected = document["version"]
        body = {key: value for key, value in document.items() if key not in ("_id", "version", OUTBOX, SINCE)}
        result = self.tasks.update_one({"_id": document["_id"], "version": expected},
                                       push_events({"$set": {**body, "version": expected + 1}}, events))
        if result.matched_count != 1:
            raise StaleTask(document["_id"])
        return {**document, "version": expected + 1}

    def expired_offers(self, now: datetime, limit: int = 100) -> list[dict]:
        return list(self.tasks.find({"state": "offering", "offer.expires_at": {"$lte": now}}, HIDDEN,
                                    limit=limit))

    def open_sessions_since(self, before: datetime, limit: int = 100) -> list[dict]:
        return list(self.tasks.find({"state": "checked_in", "check_in_at": {"$lte": before}}, HIDDEN,
                                    limit=limit))

    def tasks_of(self, community: str, volunteer: str, query: dict | None = None, limit: int = 0) -> list[dict]:
        return list(self.tasks.find({"community": community, "volunteer": volunteer, **(query or {})},
                                    HIDDEN, sort=[("accepted_at", DESCENDING)], limit=limit))

    def offers_to(self, community: str, volunteer: str) -> list[dict]:
        return list(self.tasks.find({"community": community, "state": "offering", "offer.volunteer": volunteer},
                                    HIDDEN))

    def loads(self, community: str, since: datetime) -> Counter:
        """Tasks each volunteer took since ``since`` (the fairness window)."""
        return Counter(task["volunteer"] for task in self.tasks.find(
            {"community": community, "accepted_at": {"$gte": since}}, {"volunteer": 1}) if task.get("volunteer"))

    def wishes(self, community: str, query: dict, limit: int, after: str | None = None) -> list[dict]:
        condition = {"_id": {"$gt": after}} if after else {}
        return list(self.tasks.find({"community": community, "subject": "wish", **query, **condition},
                                    HIDDEN, sort=[("_id", ASCENDING)], limit=limit))

    # --- hour entries (never deleted)
    def add_entry(self, entry: dict) -> None:
        self.hours.insert_one(entry)

    def entries_of(self, community: str, volunteer: str, query: dict | None = None) -> list[dict]:
        return list(self.hours.find({"community": community, "volunteer": volunteer, **(query or {})},
                                    sort=[("at", ASCENDING)]))

    def entry(self, community: str, entry_id: str) -> dict | None:
        return self.hours.find_one({"_id": entry_id, "community": community})

    def corrections_of(self, community: str, target: str) -> list[dict]:
        return list(self.hours.find({"community": community, "kind": "correction", "target": target}))


def ids(documents: Iterable[dict[str, Any]]) -> list[str]:
    return [document["_id"] for document in documents]

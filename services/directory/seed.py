"""The demo community an empty directory starts with: 兴乔社区 of 体育场街道, 张店区.

``data/demo_community.json`` holds its five grids (g1..g5) of four buildings
each, a grid worker per grid, the community's Party secretary 刘丽丽, an ops
person and some forty residents. Staff sign in with the demo password
``huisheng-demo`` (plus the SMS code): a demo only, never a deployment — set
``DIRECTORY_SEED=0`` there.

Seeding runs when the container starts (never on a read), only on an empty
database, and in one transaction that also inserts a marker document: when two
instances start together on an empty database one transaction commits and the
other collides on the marker (or the community) and changes nothing.

>>> data = load_demo()
>>> data["community"]["name"], len(data["grids"]), data["staff"][5]["name"]
('兴乔社区', 5, '刘丽丽')
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from nameko.extensions import DependencyProvider
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, OperationFailure

from kernel.config import settings_of
from kernel.envelope import utcnow
from kernel.logging import get_logger
from kernel.mongo import MongoClientProvider
from services.directory.people import RESIDENT, Address, Person
from services.directory.places import Community, Grid
from services.directory.repository import META, DirectoryRepository, ensure_indexes
from services.directory.sealing import Sealer
from services.directory.signin import hash_password

DEMO = Path(__file__).with_name("data") / "demo_community.json"
DEMO_PASSWORD = "huisheng-demo"
MARKER = "seed"
log = get_logger(__name__)


def load_demo(path: Path = DEMO) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def community_of(data: dict) -> Community:
    """The place tree of a seed file."""
    info = data["community"]
    community = Community(info["code"], info["name"], info.get("street", ""), info.get("district", ""))
    for grid in data["grids"]:
        community.grids.append(Grid.from_dict(grid))
    return community


def people_of(data: dict, now: datetime, password: str | None = DEMO_PASSWORD) -> list[Person]:
    """The staff (with the demo password, hashed) and the residents of a seed file."""
    code = data["community"]["code"]
    people = []
    for staff in data["staff"]:
        people.append(Person(
            id=staff["id"], community=code, name=staff["name"], phone=staff["phone"], roles=list(staff["roles"]),
            grids=list(staff.get("grids") or []), teams=list(staff.get("teams") or []),
            password_hash=hash_password(password) if password else None, created_at=now, updated_at=now))
    for resident in data["residents"]:
        people.append(Person(
            id=resident["id"], community=code, name=resident["name"], phone=resident["phone"], roles=[RESIDENT],
            address=Address(resident["building"], resident.get("unit", ""), resident["room"]),
            birth_year=resident.get("birth_year"), household=resident.get("household"),
            flags=list(resident.get("flags") or []), email=resident.get("email"), created_at=now, updated_at=now))
    return people


def seed(db: Database, sealer: Sealer, data: dict | None = None) -> bool:
    """Load the demo into an empty database in one transaction; True if this call seeded it."""
    repository = DirectoryRepository(db, sealer)
    ensure_indexes(db)  # collections must exist before a transaction writes to them
    if not repository.is_empty() or db[META].find_one({"_id": MARKER}):
        return False
    data = data or load_demo()
    now = utcnow()
    community, people = community_of(data), people_of(data, now)
    community.version = 1  # stored: the first import of places replaces version 1
    try:
        with db.client.start_session() as session, session.start_transaction():
            db[META].insert_one({"_id": MARKER, "community": community.code, "at": now}, session=session)
            db[repository.places.name].insert_one(community.to_document(), session=session)
            repository.insert_many(people, session=session)
    except (DuplicateKeyError, OperationFailure) as error:  # another instance seeded it meanwhile
        log.info("directory.seed_skipped", reason=type(error).__name__)
        return False
    log.info("directory.seeded", community=community.code, people=len(people))
    return True


class SeedOnStart(DependencyProvider):
    """Seeds an empty directory when the container starts, if ``DIRECTORY_SEED`` allows it."""

    mongo = MongoClientProvider()

    def start(self) -> None:
        settings = settings_of(self.container.config)
        if settings.directory_seed:
            seed(self.mongo.db, Sealer.from_settings(settings))

    def get_dependency(self, worker_ctx) -> None:
        return None

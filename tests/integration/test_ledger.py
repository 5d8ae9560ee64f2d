"""The ledger and the checkpoints on the real database: what the relay and `ops outbox` rely on."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from kernel.ledger import (
    LEDGER,
    LEDGER_RETENTION_SECONDS,
    LOOKUP_CHUNK,
    checkpoint,
    ensure_ledger_indexes,
    prune_ledger,
    published_among,
    record_published,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def db(mongo_client, settings):
    database = mongo_client[settings.database_name("ledger")]
    ensure_ledger_indexes(database)
    return database


def test_the_ledger_answers_for_more_ids_than_one_lookup_takes(db):
    published = [uuid.uuid4().hex for _ in range(LOOKUP_CHUNK + 20)]
    record_published(db, published[:LOOKUP_CHUNK])
    record_published(db, published[LOOKUP_CHUNK:])
    record_published(db, [])  # nothing to record: no document
    never = [uuid.uuid4().hex for _ in range(5)]

    assert published_among(db, [*never, *published, published[0]]) == set(published)
    assert db[LEDGER].count_documents({}) == 2


def test_old_entries_are_pruned_and_recent_ones_kept(db):
    now = datetime.now(UTC)
    record_published(db, ["old"], at=now - timedelta(seconds=LEDGER_RETENTION_SECONDS + 60))
    record_published(db, ["recent"], at=now - timedelta(seconds=60))

    assert prune_ledger(db, now) == 1
    assert published_among(db, ["old", "recent"]) == {"recent"}


def test_the_ledger_has_no_ttl_index(db):
    indexes = db[LEDGER].index_information()
    assert sorted(indexes) == ["_id_", "by_age", "by_event"]
    assert not any("expireAfterSeconds" in spec for spec in indexes.values())


def test_a_resume_point_only_moves_forward_by_cluster_time(db):
    from bson import Timestamp

    from kernel.ledger import FALLBACK_LOOKBACK, resume_point, save_resume_point

    wall = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
    assert save_resume_point(db, "things", {"_data": "b"}, Timestamp(200, 1), wall)
    assert not save_resume_point(db, "things", {"_data": "a"}, Timestamp(100, 1), wall)  # a slower relay
    assert resume_point(db, "things")["token"] == {"_data": "b"}
    assert checkpoint(resume_point(db, "things")) == wall - FALLBACK_LOOKBACK  # the scan's bound, a lookback before it
    assert save_resume_point(db, "things", {"_data": "c"}, Timestamp(200, 2), wall + timedelta(seconds=1))
    assert resume_point(db, "things")["token"] == {"_data": "c"}

"""kernel.idempotency's store on the real database: same key and body, another body, a concurrent retry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kernel.errors import Conflict, ValidationFailed
from kernel.idempotency import IdempotencyStore, ensure_idempotency_index, fingerprint

pytestmark = pytest.mark.integration


@pytest.fixture
def store(mongo_client, settings):
    db = mongo_client[settings.database_name("idem")]
    ensure_idempotency_index(db)
    return IdempotencyStore(db)


def test_same_key_same_body_answers_the_first_answer(store):
    call = fingerprint(["xingqiao", {"purpose": "sms", "granted": True}], {})
    assert store.begin("directory.record_consent", "p-1:k-1", call) is None
    store.finish("directory.record_consent", "p-1:k-1", {"purpose": "sms", "granted": True})
    assert store.begin("directory.record_consent", "p-1:k-1", call) == {"answer": {"purpose": "sms", "granted": True}}


def test_same_key_another_body_is_422(store):
    store.begin("s.m", "p-1:k-2", fingerprint({"a": 1}))
    store.finish("s.m", "p-1:k-2", {"ok": True})
    with pytest.raises(ValidationFailed) as caught:
        store.begin("s.m", "p-1:k-2", fingerprint({"a": 2}))
    assert caught.value.code == "idempotency_key_reused" and caught.value.status == 422


def test_a_retry_while_the_first_runs_is_409_and_a_failed_first_can_be_retried(store):
    call = fingerprint({"a": 1})
    assert store.begin("s.m", "p-1:k-3", call) is None
    with pytest.raises(Conflict) as caught:
        store.begin("s.m", "p-1:k-3", call)
    assert caught.value.code == "idempotency_in_flight" and caught.value.status == 409
    store.abandon("s.m", "p-1:k-3")  # the first call failed
    assert store.begin("s.m", "p-1:k-3", call) is None


def test_a_first_call_whose_worker_died_is_taken_over_once(store):
    call = fingerprint({"a": 1})
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    assert store.begin("s.m", "p-1:k-4", call, now=long_ago) is None
    assert store.begin("s.m", "p-1:k-4", call) is None  # stale: this retry runs it
    with pytest.raises(Conflict):
        store.begin("s.m", "p-1:k-4", call)


def test_keys_are_scoped_by_operation(store):
    call = fingerprint({"a": 1})
    assert store.begin("s.one", "p-1:k-5", call) is None
    assert store.begin("s.two", "p-1:k-5", fingerprint({"b": 2})) is None

"""``Idempotency-Key`` for the service that owns an effect (the gateway owns no database).

The gateway puts the client's key (prefixed with the caller, so two callers' keys never meet)
into the worker's context data, which nameko carries in the headers of every RPC call; a
service's RPC method wrapped in :func:`idempotent` reads it there and keeps a record per key
in its own database (collection :data:`COLLECTION`):

- the same key with the same arguments answers what the first call answered, without a second effect;
- the same key with other arguments answers 422 (``idempotency_key_reused``);
- the same key while the first call is still running answers 409 (``idempotency_in_flight``).

A call that fails leaves no record: the client may retry it. A record is kept
:data:`KEEP_SECONDS`; a record left "in flight" by a worker that died is taken over after
:data:`STALE_SECONDS` (the lease of its :class:`Claims`). A service's database gets the index
from :func:`ensure_idempotency_index`.

>>> fingerprint({"b": 1, "a": "兴"}) == fingerprint({"a": "兴", "b": 1})
True
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any

from pymongo import ASCENDING
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from kernel.errors import Conflict, ValidationFailed

COLLECTION = "idempotency_keys"
KEEP_SECONDS = 24 * 3600
STALE_SECONDS = 60


def fingerprint(*parts: Any) -> str:
    """A stable hash of JSON-ready ``parts`` (key order does not matter)."""
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def ensure_idempotency_index(db: Database) -> None:
    """The TTL index that forgets records after :data:`KEEP_SECONDS`."""
    db[COLLECTION].create_index([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expiry")


RUNNING, DONE = "processing", "done"


class Claims:
    """Claims with a lease on the keys of one collection: the one rule of "run it once" for a keyed RPC
    (:class:`IdempotencyStore`) and for an event per subscription (:mod:`kernel.handlers`).

    The first caller inserts the claim and goes ahead; a later one finds it running or done. A claim
    running past its lease lost its worker and is taken over, once; a failure releases it for a retry.
    """

    def __init__(self, collection: Collection, lease_seconds: float) -> None:
        self.collection = collection
        self.lease = timedelta(seconds=lease_seconds)

    def claim(self, key: str, now: datetime, **fields: Any) -> dict | None:
        """None if this caller now holds the claim; else the existing claim, as found."""
        try:
            self.collection.insert_one({"_id": key, "state": RUNNING, "until": now + self.lease, **fields})
            return None
        except DuplicateKeyError:
            existing = self.collection.find_one({"_id": key})
        # Done and forgotten (expired) between the two calls: claim it anew.
        return self.claim(key, now, **fields) if existing is None else existing

    def take_over(self, key: str, now: datetime) -> bool:
        """Take the claim if it is running past its lease (its worker died); True for one caller only."""
        expired = {"$or": [{"until": {"$lt": now}}, {"until": None}]}  # None: a record from before leases
        return self.collection.find_one_and_update({"_id": key, "state": {"$ne": DONE}, **expired},
                                                   {"$set": {"until": now + self.lease}}) is not None

    def done(self, key: str, **fields: Any) -> None:
        self.collection.update_one({"_id": key}, {"$set": {"state": DONE, **fields}, "$unset": {"until": ""}})

    def release(self, key: str) -> None:
        self.collection.delete_one({"_id": key, "state": {"$ne": DONE}})


class IdempotencyStore:
    """Records of keyed calls in ``db``; ``scope`` names the operation (``service.method``)."""

    def __init__(self, db: Database) -> None:
        self.claims = Claims(db[COLLECTION], STALE_SECONDS)

    def begin(self, scope: str, key: str, call_hash: str, now: datetime | None = None) -> dict | None:
        """None if this call should run (it is now "in flight"); the stored answer (``{"answer": ...}``) if it ran.

        :class:`ValidationFailed` if the key was used with other arguments, :class:`Conflict` while it runs.
        """
        now, record_id = now or datetime.now(UTC), fingerprint(scope, key)
        existing = self.claims.claim(record_id, now, scope=scope, hash=call_hash,
                                     expires_at=now + timedelta(seconds=KEEP_SECONDS))
        if existing is None:
            return None
        if existing["hash"] != call_hash:
            raise ValidationFailed("this Idempotency-Key was used with another request",
                                   {"Idempotency-Key": ["used with another request"]}, code="idempotency_key_reused")
        if existing["state"] == DONE:
            return {"answer": existing.get("answer")}
        if not self.claims.take_over(record_id, now):
            raise Conflict("a request with this Idempotency-Key is still being processed",
                           {"Idempotency-Key": ["in flight"]}, code="idempotency_in_flight")
        return None

    def finish(self, scope: str, key: str, answer: Any) -> None:
        self.claims.done(fingerprint(scope, key), answer=answer)

    def abandon(self, scope: str, key: str) -> None:
        self.claims.release(fingerprint(scope, key))


def idempotent(method):
    """Make an RPC method honour the caller's ``Idempotency-Key`` (see the module docstring); the service needs
    ``self.db`` and ``self.context`` (:class:`kernel.context.Context`, which reads the key)."""

    @wraps(method)
    def wrapper(self, *args, **kwargs):
        key = getattr(getattr(self, "context", None), "idempotency_key", None)  # kernel.context.RequestContext's
        if not key or not isinstance(key, str):
            return method(self, *args, **kwargs)
        scope = f"{type(self).__name__}.{method.__name__}"
        store = IdempotencyStore(self.db)
        earlier = store.begin(scope, key, fingerprint(args, kwargs))
        if earlier is not None:
            return earlier["answer"]
        try:
            answer = method(self, *args, **kwargs)
        except BaseException:
            store.abandon(scope, key)
            raise
        store.finish(scope, key, answer)
        return answer

    return wrapper

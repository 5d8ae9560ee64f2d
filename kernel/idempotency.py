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
:data:`STALE_SECONDS`.

Usage in a service (it needs a ``db`` dependency, :class:`kernel.mongo.Mongo`)::

    class DirectoryService:
        db = Mongo(indexes=ensure_idempotency_index)

        @rpc
        @idempotent
        def create_api_key(self, name, communities, actor): ...

>>> fingerprint({"b": 1, "a": "兴"}) == fingerprint({"a": "兴", "b": 1})
True
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any

from nameko.extensions import DependencyProvider
from pymongo import ASCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from kernel.errors import Conflict, ValidationFailed

CONTEXT_KEY = "idempotency_key"
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


class IdempotencyStore:
    """Records of keyed calls in ``db``; ``scope`` names the operation (``service.method``)."""

    def __init__(self, db: Database) -> None:
        self.collection = db[COLLECTION]

    def begin(self, scope: str, key: str, call_hash: str, now: datetime | None = None) -> dict | None:
        """None if this call should run (it is now "in flight"); the stored answer (``{"answer": ...}``) if it ran.

        :class:`ValidationFailed` if the key was used with other arguments, :class:`Conflict` while it runs.
        """
        now = now or datetime.now(UTC)
        record_id = fingerprint(scope, key)
        record = {"_id": record_id, "scope": scope, "hash": call_hash, "state": "in_flight", "started_at": now,
                  "expires_at": now + timedelta(seconds=KEEP_SECONDS)}
        try:
            self.collection.insert_one(record)
            return None
        except DuplicateKeyError:
            existing = self.collection.find_one({"_id": record_id})
        if existing is None:  # finished and forgotten between the two calls: run it
            return self.begin(scope, key, call_hash, now)
        if existing["hash"] != call_hash:
            raise ValidationFailed("this Idempotency-Key was used with another request",
                                   {"Idempotency-Key": ["used with another request"]}, code="idempotency_key_reused")
        if existing["state"] == "done":
            return {"answer": existing.get("answer")}
        started = existing["started_at"]
        started = started.replace(tzinfo=UTC) if started.tzinfo is None else started
        if now - started < timedelta(seconds=STALE_SECONDS):
            raise Conflict("a request with this Idempotency-Key is still being processed",
                           {"Idempotency-Key": ["in flight"]}, code="idempotency_in_flight")
        taken = self.collection.find_one_and_update(  # its worker died: take it over, once
            {"_id": record_id, "state": "in_flight", "started_at": existing["started_at"]},
            {"$set": {"started_at": now}})
        if taken is None:
            raise Conflict("a request with this Idempotency-Key is still being processed",
                           {"Idempotency-Key": ["in flight"]}, code="idempotency_in_flight")
        return None

    def finish(self, scope: str, key: str, answer: Any) -> None:
        self.collection.update_one({"_id": fingerprint(scope, key)},
                                   {"$set": {"state": "done", "answer": answer}})

    def abandon(self, scope: str, key: str) -> None:
        self.collection.delete_one({"_id": fingerprint(scope, key), "state": "in_flight"})


class IdempotencyKey(DependencyProvider):
    """The gateway's side: ``self.idempotency.adopt(caller, key)`` sends the key with every RPC this worker makes."""

    def get_dependency(self, worker_ctx) -> _Adopter:
        return _Adopter(worker_ctx)


class _Adopter:
    def __init__(self, worker_ctx) -> None:
        self._data = worker_ctx.data

    def adopt(self, caller: str, key: str | None) -> None:
        if key:
            self._data[CONTEXT_KEY] = f"{caller}:{key}"


def idempotent(method):
    """Make an RPC method honour the caller's ``Idempotency-Key`` (see the module docstring).

    The service needs ``self.db`` (a database) and ``self.context`` (:class:`kernel.context.Context`), through
    which the key is read from the worker's context data.
    Answers must be JSON-ready (they are, for an RPC method).
    """

    @wraps(method)
    def wrapper(self, *args, **kwargs):
        key = _key_of(self)
        if not key:
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


def _key_of(service) -> str | None:
    """The key in the running worker's context data, found through the service's ``context`` (kernel.context)."""
    context = getattr(service, "context", None)
    data = getattr(context, "_data", None)  # kernel.context.RequestContext keeps worker_ctx.data
    if isinstance(data, dict):
        key = data.get(CONTEXT_KEY)
        return key if isinstance(key, str) else None
    return None

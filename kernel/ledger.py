"""Which outbox events are published: the ledger, and each service database's resume point.

The relay never writes a document again: what the broker confirmed goes into the **ledger**, one document per
batch of ids. Writes are learnt in commit order from one change stream per service database
(:func:`outbox_pipeline`), resumed from its **resume point** (:data:`STREAM_POINT`), or found by a scan from
its ``since`` when the token is no longer usable: docs/architecture.md ("The relay never writes a document
again"). An event is *unpublished* when a change after the resume point carries it and no ledger document
lists it (:func:`unpublished`, what ``huisheng ops outbox`` asks; the relay answers the same as it tails).
This module has no eventlet or nameko in it, so the CLI can import it.

>>> from datetime import datetime, UTC
>>> checkpoint = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
>>> document = {"_outbox": [{"event_id": "old", STAGED: datetime(2026, 11, 27, 7, 0, tzinfo=UTC)},
...                         {"event_id": "new", STAGED: datetime(2026, 11, 27, 8, 0, 1, tzinfo=UTC)},
...                         {"event_id": "unstamped"}]}
>>> [event["event_id"] for event in staged_since(document, checkpoint)]
['new', 'unstamped']
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bson import Timestamp
from pymongo import ASCENDING
from pymongo.collection import Collection as MongoCollection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, OperationFailure

OUTBOX = "_outbox"
SINCE = "_outbox_since"
STAGED = "_staged"  # in each outbox entry: when it was written (the writer's clock); never published
OUTBOX_INDEX = "outbox_since"
LEDGER = "_outbox_published"
CHECKPOINTS = "_outbox_checkpoints"
# The resume point of a database's outbox stream.
STREAM_POINT = "outboxes"
# Ledger entries only matter between a resume point and the present; a point held back
# longer than this (an event the broker keeps refusing) costs duplicates once it moves, not losses.
LEDGER_RETENTION_SECONDS = 3600
LOOKUP_CHUNK = 500  # event ids per ledger query
# How far before its resume point the fallback scan reads, the one bound left (docs/architecture.md): shorter
# than the ledger's retention, so the ledger still knows what of it was published (few duplicates).
FALLBACK_LOOKBACK = timedelta(minutes=15)
# The server cannot resume from the token: ChangeStreamHistoryLost, ChangeStreamFatalError, InvalidResumeToken,
# FailedToParse (SecantusDB's answer to a token it cannot decode).
RESUME_LOST_CODES = frozenset({286, 280, 260, 9})
# Only writes can carry events, and an insert or replacement only if its document has an outbox (a broadcast's
# inbox messages have none).
STREAM_PIPELINE = [
    {"$match": {"$or": [
        {"operationType": "update"},
        {"operationType": {"$in": ["insert", "replace"]}, f"fullDocument.{OUTBOX}": {"$exists": True}},
    ]}},
]
# What a relay reads of a change: keeps large documents off the wire where the server projects cheaply
# (kernel.outbox.StreamReading says where it does not).
STREAM_PROJECTION = {"$project": {"operationType": 1, "clusterTime": 1, "wallTime": 1, "documentKey": 1, "ns": 1,
                                  f"fullDocument.{OUTBOX}": 1, "updateDescription.updatedFields": 1}}
STREAM_BATCH = 1000


class ResumePointLost(Exception):
    """The change stream cannot resume from the stored token: fall back to a scan."""


def ensure_ledger_indexes(db: Database) -> None:
    """The ledger is looked up by event id and pruned by age (:func:`prune_ledger`), not by a TTL index:
    SecantusDB's TTL monitor decodes every document under its global lock, which stalled every write."""
    ledger = db[LEDGER]
    ledger.create_index("ids", name="by_event")
    ledger.create_index("at", name="by_age")


def prune_ledger(db: Database, now: datetime | None = None) -> int:
    """Delete ledger entries older than the retention; how many."""
    cutoff = (now or datetime.now(UTC)) - timedelta(seconds=LEDGER_RETENTION_SECONDS)
    return db[LEDGER].delete_many({"at": {"$lt": cutoff}}).deleted_count


def record_published(db: Database, event_ids: Sequence[str], at: datetime | None = None) -> None:
    """Note that the broker confirmed ``event_ids``: one ledger document for all of them."""
    if event_ids:
        db[LEDGER].insert_one({"ids": list(event_ids), "at": at or datetime.now(UTC)})


def published_among(db: Database, event_ids: Iterable[str]) -> set[str]:
    """The ids among ``event_ids`` that the ledger lists as published (no query if there are none)."""
    wanted = list(dict.fromkeys(event_ids))
    found: set[str] = set()
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        chunk = wanted[start:start + LOOKUP_CHUNK]
        for entry in db[LEDGER].find({"ids": {"$in": chunk}}, {"ids": 1, "_id": 0}):
            found.update(entry["ids"])
    return found.intersection(wanted)


def unlisted(db: Database, outboxes: Sequence[list[dict]]) -> list[list[dict]]:
    """Each outbox's events that the ledger does not list as published."""
    listed = published_among(db, [event["event_id"] for events in outboxes for event in events])
    return [[event for event in events if event["event_id"] not in listed] for events in outboxes]


# --------------------------------------------------------------------------- resume points


def resume_point(db: Database, collection_name: str) -> dict | None:
    """The stored point of a collection: ``{"token", "at", "since"}`` (any may be missing), or None."""
    return db[CHECKPOINTS].find_one({"_id": collection_name})


def checkpoint(point: dict | None) -> datetime | None:
    """A stored point's fallback bound: no unpublished event was staged before it (None: scan everything)."""
    return _aware(point["since"]) if point and point.get("since") else None


def save_resume_point(db: Database, collection_name: str, token: dict, at: Timestamp, wall: datetime) -> bool:
    """Store ``token`` (the change at cluster time ``at``, at server time ``wall``, and all before it are
    published) unless a relay already stored a later one; True if stored.

    Two relays tail the same collection: the point only moves forward, by cluster time
    (a token is opaque), and the scan's bound with it.
    """
    update = {"$set": {"token": token, "at": at}, "$max": {"since": _aware(wall) - FALLBACK_LOOKBACK}}
    try:
        stored = db[CHECKPOINTS].update_one(
            {"_id": collection_name, "$or": [{"at": {"$lt": at}}, {"at": {"$exists": False}}]}, update, upsert=True)
    except DuplicateKeyError:  # the document exists with a later point: the upsert's insert collided
        return False
    return stored.modified_count + (1 if stored.upserted_id is not None else 0) > 0


@dataclass
class Change:
    """One committed write of an outbox collection, as the stream gives it."""

    token: dict
    at: Timestamp | None
    wall: datetime | None
    document_id: object
    events: list[dict]
    collection: str | None = None


def events_of(change: dict) -> list[dict]:
    """The outbox entries a change wrote: a new document's, or those an update appended.

    An update may name the array (its first events) or its new positions; a
    replacement gives the whole document (its older events too: the ledger filters them).

    >>> events_of({"operationType": "insert", "fullDocument": {"_id": 1, "_outbox": [{"event_id": "a"}]}})
    [{'event_id': 'a'}]
    >>> events_of({"operationType": "update", "updateDescription": {"updatedFields": {
    ...     "_outbox.2": {"event_id": "c"}, "_outbox.1": {"event_id": "b"}, "state": "x"}}})
    [{'event_id': 'b'}, {'event_id': 'c'}]
    >>> events_of({"operationType": "update", "updateDescription": {"updatedFields": {"state": "x"}}})
    []
    """
    if change.get("operationType") in ("insert", "replace"):
        return list((change.get("fullDocument") or {}).get(OUTBOX) or [])
    fields = (change.get("updateDescription") or {}).get("updatedFields") or {}
    found: list[tuple[int, list[dict]]] = []
    for key, value in fields.items():
        if key == OUTBOX:
            found.append((-1, list(value or [])))
        elif key.startswith(OUTBOX + ".") and key[len(OUTBOX) + 1:].isdigit() and isinstance(value, dict):
            found.append((int(key[len(OUTBOX) + 1:]), [value]))
    return [event for _, events in sorted(found, key=lambda item: item[0]) for event in events]


def as_change(raw: dict) -> Change:
    wall = raw.get("wallTime")
    return Change(raw["_id"], raw.get("clusterTime"), _aware(wall) if wall else None,
                  (raw.get("documentKey") or {}).get("_id"), events_of(raw), (raw.get("ns") or {}).get("coll"))


def outbox_pipeline(collection_names: Iterable[str], project: bool = True) -> list[dict]:
    """:data:`STREAM_PIPELINE` of a database's stream, for the writes of ``collection_names`` only
    (then :data:`STREAM_PROJECTION` if ``project``). One stream per database: docs/architecture.md says why.

    >>> outbox_pipeline(["tickets", "patrols"])[0]
    {'$match': {'ns.coll': {'$in': ['patrols', 'tickets']}}}
    """
    return [{"$match": {"ns.coll": {"$in": sorted(collection_names)}}}, *STREAM_PIPELINE,
            *([STREAM_PROJECTION] if project else [])]


def open_stream(source: MongoCollection | Database, token: dict | None, await_ms: int = 1,
                pipeline: Sequence[dict] = STREAM_PIPELINE):
    """A change stream of the collection's (or database's) writes that ``pipeline`` keeps, resumed after
    ``token`` (from now if None).

    Raises :class:`ResumePointLost` if the server cannot resume from the token.
    """
    try:
        stream = source.watch(list(pipeline), resume_after=token, batch_size=STREAM_BATCH,
                              max_await_time_ms=await_ms)
    except OperationFailure as error:
        if token is not None and error.code in RESUME_LOST_CODES:
            raise ResumePointLost(f"{source.name}: {error.details.get('codeName', error.code)}") from error
        raise
    return stream


def next_changes(stream, limit: int) -> Iterator[Change]:
    """The changes the stream has now, up to ``limit``; stops at the first empty answer (caught up).

    A resumed stream may only learn on its first read that its point is gone.
    """
    for _ in range(limit):
        try:
            raw = stream.try_next()
        except OperationFailure as error:
            if error.code in RESUME_LOST_CODES:
                raise ResumePointLost(str(error.details.get("codeName", error.code))) from error
            raise
        if raw is None:
            return
        yield as_change(raw)


# --------------------------------------------------------------------------- what is unpublished


def staged_since(document: dict, since: datetime | None) -> list[dict]:
    """The events of a document staged at or after ``since`` (the scan's bound).

    An entry without a stamp always counts.
    """
    events = document.get(OUTBOX) or []
    if since is None:
        return list(events)
    return [event for event in events if STAGED not in event or _aware(event[STAGED]) >= since]


def scan(db: Database, collection_name: str, since: datetime | None) -> list[dict]:
    """The fallback: documents staged at or after ``since`` (every one with an outbox if None), oldest first."""
    query = {SINCE: {"$gte": since} if since else {"$exists": True}}
    return list(db[collection_name].find(query, {OUTBOX: 1, SINCE: 1}).sort(SINCE, ASCENDING))


def unpublished(db: Database, collection_name: str) -> list[dict]:
    """Documents of the collection with events written after the resume point that the ledger does not list,
    each as ``{"_id", "_outbox_since", "_outbox": [its unpublished events]}``, oldest staging first.

    Read from the change stream after the stored token (commit order: a late commit is there); without one,
    or if the server cannot resume from it, from a scan from the point's ``since``.
    """
    point = resume_point(db, STREAM_POINT)
    documents, since = None, None
    if point and point.get("token"):
        merged: dict = {}
        pipeline = outbox_pipeline([collection_name])
        # The history was cut short: the scan below answers instead.
        with suppress(ResumePointLost), open_stream(db, point["token"], pipeline=pipeline) as stream:
            for change in next_changes(stream, 1_000_000):
                merged.setdefault(change.document_id, {"_id": change.document_id, OUTBOX: []})[OUTBOX] += change.events
            documents = [doc for doc in merged.values() if doc[OUTBOX]]
    if documents is None:
        since = checkpoint(point)
        documents = scan(db, collection_name, since)
    found = []
    for document, events in zip(documents, unlisted(db, [staged_since(doc, since) for doc in documents]), strict=True):
        if not events:
            continue
        stamps = [_aware(event[STAGED]) for event in events if STAGED in event]
        latest = _aware(document[SINCE]) if document.get(SINCE) else max(stamps, default=None)
        found.append({"_id": document["_id"], SINCE: latest, OUTBOX: events})
    return sorted(found, key=lambda d: d[SINCE] or datetime.min.replace(tzinfo=UTC))


def _aware(moment: datetime) -> datetime:
    """A stored time as UTC-aware (a client without ``tz_aware`` reads naive UTC)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

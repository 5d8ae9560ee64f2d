"""Which outbox events the broker confirmed: the ledger, and each outbox collection's checkpoint.

A document keeps the events it was written with (under ``_outbox``, each stamped with
the time it was staged) and the time of its latest staging (``_outbox_since``); the
relay never updates it again. What is published is recorded instead, one ledger
document per confirmed batch, and each collection has a checkpoint: every event
staged before it is published. So a state change costs the database one write, not
a write and a settle (on the embedded database an update costs two to three inserts).

An event of a document is *unpublished* when it was staged at or after its
collection's checkpoint and no ledger document lists it. The relay's sweep publishes
those older than the grace period and moves the checkpoint past them; ``huisheng ops
outbox``, the fault suite and the benchmarks ask :func:`unpublished` the same question.

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

from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime, timedelta

from pymongo import ASCENDING
from pymongo.database import Database

OUTBOX = "_outbox"
SINCE = "_outbox_since"
STAGED = "_staged"  # in each outbox entry: when it was written; never published
OUTBOX_INDEX = "outbox_since"
LEDGER = "_outbox_published"
CHECKPOINTS = "_outbox_checkpoints"
# Ledger entries only matter between a checkpoint and the present; a checkpoint held back
# longer than this (an event the broker keeps refusing) costs duplicates once it moves, not losses.
LEDGER_RETENTION_SECONDS = 3600
LOOKUP_CHUNK = 500  # event ids per ledger query


def ensure_ledger_indexes(db: Database) -> None:
    """The ledger is looked up by event id and pruned by age (:func:`prune_ledger`).

    Not a TTL index: SecantusDB's TTL monitor decodes every document of the collection
    under its global lock once a minute, which stalled every write for a fraction of a
    second under load.
    """
    ledger = db[LEDGER]
    ledger.create_index("ids", name="by_event")
    if "expiry" in ledger.index_information():  # the TTL index of an earlier version
        ledger.drop_index("expiry")
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
    """The ids among ``event_ids`` that the ledger lists as published."""
    wanted = list(dict.fromkeys(event_ids))
    found: set[str] = set()
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        chunk = wanted[start:start + LOOKUP_CHUNK]
        for entry in db[LEDGER].find({"ids": {"$in": chunk}}, {"ids": 1, "_id": 0}):
            found.update(entry["ids"])
    return found.intersection(wanted)


def checkpoint(db: Database, collection_name: str) -> datetime | None:
    """Every event of ``collection_name`` staged before this time is published (None: no sweep yet)."""
    document = db[CHECKPOINTS].find_one({"_id": collection_name})
    return _aware(document["since"]) if document else None


def advance_checkpoint(db: Database, collection_name: str, since: datetime) -> None:
    """Move the checkpoint forward to ``since``; never back (two relays may sweep at once)."""
    db[CHECKPOINTS].update_one({"_id": collection_name}, {"$max": {"since": since}}, upsert=True)


def staged_since(document: dict, since: datetime | None) -> list[dict]:
    """The events of a document staged at or after ``since``: the older ones are published.

    An entry without a stamp (written before the ledger existed) always counts.
    """
    events = document.get(OUTBOX) or []
    if since is None:
        return list(events)
    return [event for event in events if STAGED not in event or _aware(event[STAGED]) >= since]


def pending_events(db: Database, documents: Iterable[dict], since: datetime | None,
                   known: Collection[str] = frozenset()) -> list[tuple[dict, list[dict]]]:
    """The documents with events staged since ``since`` that neither ``known`` nor the ledger lists
    as published, each with those events (in the documents' order).

    ``known`` is what the caller saw confirmed itself (the relay's memory): those ids are
    not looked up.
    """
    candidates = [(document, [event for event in staged_since(document, since) if event["event_id"] not in known])
                  for document in documents]
    asked = [event["event_id"] for _, events in candidates for event in events]
    published = published_among(db, asked) if asked else set()
    pending = []
    for document, events in candidates:
        events = [event for event in events if event["event_id"] not in published]
        if events:
            pending.append((document, events))
    return pending


def unpublished(db: Database, collection_name: str, until: datetime | None = None) -> list[dict]:
    """Documents of the collection with events neither the ledger nor the checkpoint accounts for.

    Each comes back as ``{"_id", "_outbox_since", "_outbox": [its unpublished events]}``,
    oldest first; ``until`` leaves out documents staged later.
    """
    since = checkpoint(db, collection_name)
    query: dict = {SINCE: {"$gte": since} if since else {"$exists": True}}
    if until is not None:
        query[SINCE]["$lte"] = until
    documents = db[collection_name].find(query, {OUTBOX: 1, SINCE: 1}).sort(SINCE, ASCENDING)
    return [{"_id": document["_id"], SINCE: _aware(document[SINCE]), OUTBOX: events}
            for document, events in pending_events(db, documents, since)]


def _aware(moment: datetime) -> datetime:
    """A stored time as UTC-aware (a client without ``tz_aware`` reads naive UTC)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

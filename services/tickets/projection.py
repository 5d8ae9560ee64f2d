"""The reports' counters follow the tickets: the ``tickets`` collection's change stream, folded in batches.

Every write of a ticket (the one that stages its events in the outbox, the deadline timer's, an
anonymisation's) is a change in the database's commit order. The tickets service reads what
committed since its stored position, folds the tickets those changes name into the read model in one
transaction (:meth:`services.tickets.readmodel.ReadModel.fold`), and only then stores the position of
the last change it folded. After a crash it reads again from the stored position: folding a ticket
again finds no difference, so nothing is counted twice, and nothing committed is skipped.

It runs on a timer beside the service's work, never in it: a fold held up (a killed process's
transaction keeps its locks until the server reaps it, 60 s) makes the reports lag, while tickets are
still created, dispatched and echoed. One process of the service folds at a time (a lease, taken
again by another process when it lapses); two would only do the same work twice.

If the stored position is gone (the server's history was cut short, or there is none yet), the
tickets changed in the :data:`~kernel.ledger.FALLBACK_LOOKBACK` before it are folded from the
``by_updated`` index, and the stream starts again from now: logged, never silent.
"""

from __future__ import annotations

import os
import socket
import time
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

import pymongo
from nameko.extensions import DependencyProvider
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, PyMongoError

from kernel.ledger import FALLBACK_LOOKBACK, ResumePointLost, next_changes, open_stream
from kernel.logging import get_logger
from services.tickets.readmodel import ReadModel

CHECKPOINT = "report_checkpoint"  # one document: the stream's position, and who holds the lease
STREAM = "tickets"
FOLD_BATCH = 500  # changes one fold takes at most
MIN_FOLD_BATCH = 10  # ... and at least, however slow the database is
FOLD_SECONDS = 5.0  # one fold's deadline (pymongo.timeout): past it, the batch is read again next round
FOLD_INTERVAL = 0.5  # seconds between two folds (the service's timer)
LEASE_SECONDS = 10.0  # a folder that stopped renewing (killed) is replaced after this long
# Every write of a ticket, whatever it carries (kernel.ledger's stream keeps only those with outbox events).
EVERY_WRITE = [
    {"$match": {"operationType": {"$in": ["insert", "update", "replace", "delete"]}}},
    {"$project": {"operationType": 1, "clusterTime": 1, "wallTime": 1, "documentKey": 1}},
]
log = get_logger(__name__)


class ReportStream:
    """One process's reading of the ``tickets`` change stream, and its lease on folding it."""

    def __init__(self, holder: str | None = None) -> None:
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.stream: Any = None
        self.batch = FOLD_BATCH  # halved after a fold that ran out of time, doubled back after one that did not

    def fold(self, db: Database, model: ReadModel, now: datetime, limit: int = FOLD_BATCH,
             seconds: float = FOLD_SECONDS) -> int:
        """Fold what committed since the stored position (up to ``limit`` changes); how many changes were read.

        0 when nothing committed, or when another process holds the lease. Reading and folding share
        ``seconds``; the fold's transaction keeps its own deadline (:func:`services.tickets.readmodel.transaction`).
        """
        deadline = time.monotonic() + seconds
        with pymongo.timeout(seconds):
            if not self._lease(db):
                self.close()
                return 0
            lost = self._open(db) if self.stream is None else None
            if lost is None:
                try:
                    changes = list(next_changes(self.stream, min(limit, self.batch)))
                except ResumePointLost as error:
                    self.close()
                    lost = (str(error), None)
        if lost is not None:
            self._fall_back(db, model, now, *lost)
            return 0
        if not changes:
            return 0
        try:  # a ticket it cannot fold is logged there (reports.fold_failed, with its traceback) and skipped
            model.fold([change.document_id for change in changes], now, max(0.1, deadline - time.monotonic()))
        except PyMongoError:  # read again from the stored position, fewer at a time
            self.batch = max(MIN_FOLD_BATCH, self.batch // 2)
            raise
        self.batch = min(FOLD_BATCH, self.batch * 2)
        last = changes[-1]
        with pymongo.timeout(seconds):
            self._save(db, last.token, last.wall)
        return len(changes)

    def close(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            with suppress(PyMongoError):  # a dead connection has nothing to close
                stream.close()

    def _open(self, db: Database) -> tuple[str | None, datetime | None] | None:
        """Resume the stream from the stored position; else why not, and the position's time, for
        :meth:`_fall_back` (None for the reason: there is no position yet)."""
        point = db[CHECKPOINT].find_one({"_id": STREAM}) or {}
        if not point.get("token"):
            return None, point.get("wall")
        try:
            self.stream = open_stream(db[STREAM], point["token"], pipeline=EVERY_WRITE)
            return None
        except ResumePointLost as lost:
            return str(lost), point.get("wall")

    def _fall_back(self, db: Database, model: ReadModel, now: datetime, reason: str | None,
                   wall: datetime | None = None) -> None:
        """Open the stream at the present first, then fold what changed lately: a write lands in one or the other."""
        with pymongo.timeout(FOLD_SECONDS):
            self.stream = open_stream(db[STREAM], None, pipeline=EVERY_WRITE)
            since = (wall.replace(tzinfo=wall.tzinfo or UTC) if wall else now) - FALLBACK_LOOKBACK
            ids = [document["_id"] for community in db[STREAM].distinct("community")  # by_updated leads with it
                   for document in db[STREAM].find({"community": community, "updated_at": {"$gte": since}},
                                                   {"_id": 1})]
        for start in range(0, len(ids), FOLD_BATCH):
            model.fold(ids[start:start + FOLD_BATCH], now, FOLD_SECONDS)
        token = self.stream.resume_token
        if token is not None:
            with pymongo.timeout(FOLD_SECONDS):
                self._save(db, token, now)
        if reason is not None:
            log.warning("reports.resume_lost", reason=reason, refolded=len(ids), since=since.isoformat())
        else:
            log.info("reports.stream_started", refolded=len(ids), since=since.isoformat())

    def _save(self, db: Database, token: dict, wall: datetime | None) -> None:
        db[CHECKPOINT].update_one({"_id": STREAM, "holder": self.holder},
                                  {"$set": {"token": token, "wall": wall or datetime.now(UTC)}})

    def _lease(self, db: Database) -> bool:
        """Hold (or take over a lapsed) lease on folding; True if this process holds it now.

        The lease is kept on each holder's own clock: clocks that disagree can only make two processes
        fold at once for a while, which is safe (the folds collide and one retries), never make one skip.
        """
        now = time.time()
        taken = {"$set": {"holder": self.holder, "until": now + LEASE_SECONDS}}
        free = {"_id": STREAM, "$or": [{"holder": self.holder}, {"until": {"$lt": now}}, {"holder": None}]}
        try:
            db[CHECKPOINT].update_one(free, taken, upsert=True)  # matched or inserted: ours now
            return True
        except DuplicateKeyError:  # the document exists and another process holds a live lease
            return False


class ReportProjection(DependencyProvider):
    """Gives the tickets service's workers its container's :class:`ReportStream` (closed when it stops)."""

    def setup(self) -> None:
        self.reading = ReportStream()

    def stop(self) -> None:
        self.reading.close()

    kill = stop

    def get_dependency(self, worker_ctx) -> ReportStream:
        return self.reading

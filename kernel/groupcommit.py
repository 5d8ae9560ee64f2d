"""Group commit: the writes that concurrent workers make go to the database together.

A :class:`CommitQueue` commits one kind of write (say, inserts into one collection) in batches; :class:`GroupCommit`
holds a container's queues, one per kind, for its workers. Why (ten inserts in one ``insert_many`` cost SecantusDB
about a third of ten ``insert_one``) and how: docs/architecture.md, "Group commit".

>>> calls = []
>>> queue = CommitQueue("doubles", lambda items: calls.append(list(items)) or [item * 2 for item in items])
>>> list(eventlet.GreenPool().imap(queue.submit, [1, 2, 3])), calls  # concurrent submits, one run
([2, 4, 6], [[1, 2, 3]])
>>> queue.submit(5), calls[-1]  # alone, a write goes at once
(10, [5])
>>> queue.close()
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import eventlet
from eventlet.event import Event
from eventlet.queue import Empty, LightQueue
from nameko.extensions import DependencyProvider
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, DuplicateKeyError, WriteError

from kernel.metrics import GROUP_COMMIT_SIZE, labelled

BatchRun = Callable[[list], Sequence[Any]]
DUPLICATE_KEY_CODES = frozenset({11000, 11001, 12582})
DEFAULT_LIMIT = 100


class CommitQueueClosed(RuntimeError):
    """The container stopped before the write was sent."""


class CommitQueue:
    """Runs the items submitted by concurrent greenthreads in batches, one ``run`` per batch.

    ``run`` gets a list of items and returns one outcome per item, in order: a value,
    or an exception instance that is raised in that item's submitter. An exception
    raised by ``run`` itself is raised in every submitter of the batch.
    """

    def __init__(self, name: str, run: BatchRun, *, limit: int = DEFAULT_LIMIT):
        self.name = name
        self._run = run
        self._limit = limit
        self._queue: LightQueue = LightQueue()
        self._writer = None
        self._in_flight: list[tuple[Any, Event]] = []

    def submit(self, item: Any) -> Any:
        """Queue one item and wait for its outcome."""
        done = Event()
        self._queue.put((item, done))
        if self._writer is None:
            self._writer = eventlet.spawn(self._write_forever)
        return done.wait()

    def close(self) -> None:
        """Stop the writer; whoever still waits gets :class:`CommitQueueClosed`."""
        if self._writer is not None:
            self._writer.kill()
            self._writer = None
        waiting = self._in_flight
        self._in_flight = []
        while True:
            try:
                waiting.append(self._queue.get_nowait())
            except Empty:
                break
        for _, done in waiting:
            if not done.ready():
                done.send_exception(CommitQueueClosed(f"{self.name}: the service is stopping"))

    def _write_forever(self) -> None:
        while True:
            self._write(next_batch(self._queue, self._limit))

    def _write(self, batch: list[tuple[Any, Event]]) -> None:
        self._in_flight = batch
        labelled(GROUP_COMMIT_SIZE, self.name).observe(len(batch))
        try:
            outcomes = list(self._run([item for item, _ in batch]))
            if len(outcomes) != len(batch):
                raise RuntimeError(f"{self.name}: {len(outcomes)} outcomes for {len(batch)} writes")
        except Exception as error:  # the batch's submitters each raise it: nothing is lost unseen
            outcomes = [error] * len(batch)
        self._in_flight = []
        for (_, done), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                done.send_exception(outcome)
            else:
                done.send(outcome)


def next_batch(queue: LightQueue, limit: int) -> list:
    """Wait for one item, then take whatever else is queued already, up to ``limit`` items in all.

    >>> queue = LightQueue()
    >>> for n in range(5): queue.put(n)
    >>> next_batch(queue, 3), next_batch(queue, 3)
    ([0, 1, 2], [3, 4])
    """
    batch = [queue.get()]
    while len(batch) < limit:
        try:
            batch.append(queue.get_nowait())
        except Empty:
            break
    return batch


def insert_each(collection: Collection) -> BatchRun:
    """A batch run for inserts: one unordered ``insert_many``, an error per failed document.

    A duplicate key fails only its own document, as :class:`DuplicateKeyError`,
    exactly as ``insert_one`` would have raised it.
    """
    def run(documents: list[dict]) -> list[Exception | None]:
        if len(documents) == 1:  # the same statement count, and the server's own error
            try:
                collection.insert_one(documents[0])
                return [None]
            except WriteError as error:
                return [error]
        outcomes: list[Exception | None] = [None] * len(documents)
        try:
            collection.insert_many(documents, ordered=False)
        except BulkWriteError as error:
            if error.details.get("writeConcernErrors"):
                raise
            for failure in error.details.get("writeErrors", []):
                outcomes[failure["index"]] = _write_error(failure)
        return outcomes
    return run


def _write_error(failure: dict) -> WriteError:
    kind = DuplicateKeyError if failure.get("code") in DUPLICATE_KEY_CODES else WriteError
    return kind(failure.get("errmsg", "write failed"), failure.get("code"), failure)


class GroupCommit(DependencyProvider):
    """The container's commit queues, one per kind of write, shared by its workers and closed when the container
    stops: ``writes = GroupCommit()`` on a service, ``self.writes.insert(collection, document)`` in a worker (or a
    repository it hands them to)."""

    def __init__(self, **kwargs):
        self._queues: dict[str, CommitQueue] = {}
        super().__init__(**kwargs)

    def get_dependency(self, worker_ctx) -> GroupCommit:
        return self

    def insert(self, collection: Collection, document: dict) -> None:
        """Insert one document, committed together with concurrent inserts into the same collection (a duplicate
        key raises :class:`DuplicateKeyError`, as ``insert_one`` would)."""
        key = f"insert:{collection.full_name}"
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = CommitQueue(key, insert_each(collection))
        queue.submit(document)

    def stop(self) -> None:
        for queue in self._queues.values():
            queue.close()
        self._queues = {}

    kill = stop

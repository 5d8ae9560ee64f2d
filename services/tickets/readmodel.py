"""The reports' read model: counters per day × community × grid × category, kept from the events.

At a million tickets a full aggregation is too slow on the embedded database (~37 µs per
document scanned), so the rates and the repeat problems read small counters documents
instead: ``report_counters``, one per day × community × grid × category, with ``m`` (metric ->
count, reports.METRICS) and ``b`` (building -> tickets received). A month of one community is
a few thousand of them at most, read through the ``(community, day)`` index.

**Folded from the tickets' writes, in batches.** What a ticket adds is a pure function of the
ticket (:func:`services.tickets.reports.ticket_facts`). ``report_facts`` keeps, per ticket, the
facts last applied. The tickets service follows the ``tickets`` collection's change stream
(services/tickets/projection.py: the commit-ordered record of every write, the writes that stage the
ticket events included) and folds the tickets it names a batch at a time
(:meth:`ReadModel.fold`): in one transaction it reads them, adds the differences of their facts to
the counters and stores the new facts. A fold that finds no difference changes nothing, so a fold
repeated after a crash counts nothing twice; two processes folding one ticket at once collide on
its facts record and the transaction is retried.

**Rebuilt** by ``huisheng reports rebuild`` (services/tickets/cli.py): from the tickets
collection, facts and counters are written anew. Run it with the tickets service stopped or
quiet (an event applied while it runs may be counted twice; running it again repairs that).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from datetime import date, datetime
from typing import Any

import pymongo
from pymongo import ASCENDING, InsertOne, ReplaceOne, UpdateOne
from pymongo.database import Database
from pymongo.errors import PyMongoError

from kernel.logging import get_logger
from services.tickets import reports
from services.tickets.reports import BUILDING, Key

COUNTERS = "report_counters"
FACTS = "report_facts"
TICKETS = "tickets"
# What the facts read of a ticket (and what computing a missing response deadline needs).
FACT_FIELDS = {"community": 1, "grid": 1, "category": 1, "priority": 1, "created_at": 1, "building": 1,
               "response_due_at": 1, "first_response_at": 1, "timeline.type": 1, "timeline.at": 1,
               "timeline.reason": 1, "callbacks": 1, "state": 1, "bounce_count": 1}
# community (None: the ticket's own), ticket id, the clock's now
Change = tuple[str | None, str, datetime]
TRANSACTION_SECONDS = 120.0  # a fold's transaction, retries included, when its caller sets no limit
REBUILD_BATCH = 1000  # per read and per insert: each stays well within a socket timeout
log = get_logger(__name__)


def clock_response_due(catalogue, calendar) -> Callable[[Mapping[str, Any]], datetime | None]:
    """The first-response deadline of a stored ticket by its clocks: for tickets stored before ``response_due_at``."""
    from services.tickets import clocks

    def response_due(document: Mapping[str, Any]) -> datetime | None:
        policy = clocks.policy_for(catalogue, document.get("priority") or "normal", document.get("category"))
        return clocks.due_after(policy.first_response, document["created_at"], calendar)

    return response_due


def ensure_indexes(db: Database) -> None:
    """The counters are read by community and a range of days (the only secondary index they need)."""
    db[COUNTERS].create_index([("community", ASCENDING), ("day", ASCENDING)], name="by_day")
    # The weekly review reads the tickets marked for its week (reports.agenda_marks), not all that changed.
    db[FACTS].create_index([("community", ASCENDING), ("agenda.day", ASCENDING)], name="by_agenda_day")


def field_key(building: str) -> str:
    """A building code as a field name (MongoDB field names hold no dots and start with no ``$``).

    >>> field_key("b.09"), field_key("$x")
    ('b．09', '＄x')
    """
    return building.replace(".", "\uff0e").replace("$", "\uff04")


def facts_record(ticket_id: str, community: str, document: Mapping[str, Any] | None, facts: Mapping[Key, int],
                 agenda: list[dict[str, str]], now: datetime) -> dict[str, Any]:
    """What the read model keeps of one ticket: the facts it applied, the ticket's grid and its agenda marks."""
    return {"_id": ticket_id, "community": community, "grid": (document or {}).get("grid") or reports.UNPLACED,
            "facts": reports.encode_facts(facts), "agenda": agenda, "at": now}


def counter_updates(community: str, difference: Mapping[Key, int]) -> list[UpdateOne]:
    """The ``$inc`` of each counters document a difference of facts touches (upserted)."""
    grouped: dict[tuple[str, str, str], dict[str, int]] = defaultdict(dict)
    for (day, grid, category, metric), n in difference.items():
        field = f"b.{field_key(metric[len(BUILDING):])}" if metric.startswith(BUILDING) else f"m.{metric}"
        grouped[(day, grid, category)][field] = grouped[(day, grid, category)].get(field, 0) + n
    return [UpdateOne({"_id": reports.counter_id(community, day, grid, category)},
                      {"$inc": increments, "$setOnInsert": {"community": community, "day": day, "grid": grid,
                                                            "category": category}}, upsert=True)
            for (day, grid, category), increments in sorted(grouped.items())]


def counter_documents(community_totals: Mapping[str, Mapping[Key, int]]) -> list[dict[str, Any]]:
    """Whole counters documents from summed facts, per community (what a rebuild inserts)."""
    documents: dict[str, dict[str, Any]] = {}
    for community, totals in community_totals.items():
        for (day, grid, category, metric), n in totals.items():
            if not n:
                continue
            key = reports.counter_id(community, day, grid, category)
            document = documents.setdefault(key, {"_id": key, "community": community, "day": day, "grid": grid,
                                                  "category": category, "m": {}, "b": {}})
            if metric.startswith(BUILDING):
                document["b"][field_key(metric[len(BUILDING):])] = n
            else:
                document["m"][metric] = n
    return list(documents.values())


def transaction(db: Database, work: Callable[[Any], None], seconds: float | None) -> None:
    """Run ``work(session)`` in a transaction within ``seconds`` (None: 120, pymongo's own limit), again after
    a conflict (a ``TransientTransactionError``), and end every attempt on the server whatever happens.

    A transaction its client gives up on is not ended by the client's deadline: pymongo sends the abort
    under the same, expired, deadline, so it never leaves, and the server keeps the transaction, its
    locks and its snapshot until its own limit (60 s on MongoDB and SecantusDB). Every fold after it then
    collides with its writes and times out too, and on SecantusDB the pinned snapshots slowed every
    client of the server (docs/benchmarks.md, eleventh round). So the deadline covers the work and the
    commit only; the abort (or, if the commit's fate is unknown, a second commit) is sent after it.
    Nothing enclosing this may set a deadline of its own (``pymongo.timeout``): it would cap the end too.
    """
    deadline = time.monotonic() + (TRANSACTION_SECONDS if seconds is None else seconds)
    with db.client.start_session() as session:
        while True:
            session.start_transaction()
            try:
                with pymongo.timeout(max(0.001, deadline - time.monotonic())):
                    work(session)
                    session.commit_transaction()
                return
            except BaseException as error:
                _end(session)
                conflict = isinstance(error, PyMongoError) and error.has_error_label("TransientTransactionError")
                if not conflict or time.monotonic() >= deadline:
                    raise


def _end(session: Any) -> None:
    """End a transaction given up on: abort it, or if its commit was sent, commit again (commits are idempotent)."""
    with suppress(PyMongoError):  # the transaction's own error is the one to raise
        if session.in_transaction:
            session.abort_transaction()
        else:
            session.commit_transaction()


class ReadModel:
    """The counters and the facts behind them, in the tickets service's database."""

    def __init__(self, db: Database, response_due: Callable[[Mapping[str, Any]], datetime | None] | None = None):
        self.db = db
        self.counters = db[COUNTERS]
        self.facts = db[FACTS]
        self.tickets = db[TICKETS]
        self.response_due = response_due

    def apply(self, community: str, ticket_id: str, now: datetime) -> dict[Key, int]:
        """Bring the counters up to date with one ticket; the difference applied (empty: nothing changed)."""
        return self.apply_many([(community, ticket_id, now)])[0]

    def apply_many(self, changes: Sequence[Change], seconds: float | None = None) -> list[dict[Key, int]]:
        """Bring the counters up to date with a batch of tickets in one transaction; each one's difference.

        A ticket named twice in a batch is folded once (its facts are of the ticket, not of the event);
        each naming gets the difference that fold applied. ``seconds`` bounds the transaction (None:
        :data:`TRANSACTION_SECONDS`); called under no deadline of the caller's (:func:`transaction`).
        """
        latest: dict[tuple[str, str], datetime] = {}
        for community, ticket_id, now in changes:
            latest[(community, ticket_id)] = max(now, latest.get((community, ticket_id), now))
        applied: dict[tuple[str, str], dict[Key, int]] = {}

        def work(session) -> None:
            applied.clear()
            ids = sorted({ticket_id for _, ticket_id in latest})
            documents = {document["_id"]: document for document in
                         self.tickets.find({"_id": {"$in": ids}}, FACT_FIELDS, session=session)}
            stored = {record["_id"]: record for record in self.facts.find({"_id": {"$in": ids}}, session=session)}
            differences: dict[str, Counter] = defaultdict(Counter)
            records = []
            for (named, ticket_id), now in sorted(latest.items(), key=lambda item: (item[0][0] or "", item[0][1])):
                document, record = documents.get(ticket_id), stored.get(ticket_id)
                community = named or (document or record or {}).get("community")
                if community is None:
                    continue  # neither a ticket nor its facts: nothing was ever counted, nothing to count
                if document is not None and document.get("community") != community:
                    document = None  # a change names its community: another community's ticket is not this one
                difference, new_record = self._fold(ticket_id, community, document, record, now)
                applied[(named, ticket_id)] = difference
                differences[community].update(difference)
                if new_record is not None:  # a first record is inserted: on SecantusDB an upsert costs twice as much
                    records.append(InsertOne(new_record) if record is None
                                   else ReplaceOne({"_id": ticket_id}, new_record, upsert=True))
            updates = [update for community, difference in sorted(differences.items())
                       for update in counter_updates(community, {key: n for key, n in difference.items() if n})]
            if updates:
                self.counters.bulk_write(updates, ordered=False, session=session)
            # Written in the same transaction: a concurrent fold of the same ticket collides here and is retried
            # (a first record's duplicate key fails the batch, which is folded again and finds the record).
            if records:
                self.facts.bulk_write(records, ordered=False, session=session)

        transaction(self.db, work, seconds)
        return [applied.get((community, ticket_id), {}) for community, ticket_id, _ in changes]

    def fold(self, ticket_ids: Iterable[str], now: datetime, seconds: float | None = None) -> list[str]:
        """Fold these tickets (each in its own community) in one transaction; the ids that could not be folded.

        If the batch fails on a ticket (not on the database), each is folded alone: a ticket whose facts
        cannot be computed is logged and left out, and the others are counted.
        """
        changes: list[Change] = [(None, ticket_id, now) for ticket_id in dict.fromkeys(ticket_ids)]
        try:
            self.apply_many(changes, seconds)
            return []
        except PyMongoError:
            raise  # the database's trouble, not a ticket's: the whole batch is tried again
        except Exception:
            if len(changes) == 1:
                log.exception("reports.fold_failed", ticket_id=changes[0][1])
                return [changes[0][1]]
        failed = []
        for change in changes:
            try:
                self.apply_many([change], seconds)
            except PyMongoError:
                raise
            except Exception:  # said, with its traceback; `huisheng reports rebuild` counts it once it is fixed
                log.exception("reports.fold_failed", ticket_id=change[1])
                failed.append(change[1])
        return failed

    def _fold(self, ticket_id: str, community: str, document: Mapping[str, Any] | None,
              stored: Mapping[str, Any] | None, now: datetime) -> tuple[dict[Key, int], dict[str, Any] | None]:
        """What one ticket changes: its facts' difference, and its new facts record (None: nothing to write)."""
        before = reports.decode_facts(stored["facts"]) if stored else {}
        after = reports.ticket_facts(document, now, self.response_due) if document else {}
        agenda = reports.agenda_marks(document) if document else []
        difference = reports.facts_difference(before, after)
        if not difference and stored is not None and stored.get("agenda", []) == agenda:
            return {}, None
        return difference, facts_record(ticket_id, community, document, after, agenda, now)

    def rebuild(self, now: datetime, community: str | None = None, batch: int = REBUILD_BATCH,
                progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Counters and facts anew from the tickets collection (one community, or all); what was written."""
        started = time.monotonic()
        scope = {"community": community} if community else {}
        self.counters.delete_many(scope)
        self.facts.delete_many(scope)
        totals: dict[str, Counter] = defaultdict(Counter)
        pending: list[dict[str, Any]] = []
        tickets = 0
        for document in self._all_tickets(community, batch):
            facts = reports.ticket_facts(document, now, self.response_due)
            totals[document["community"]].update(facts)
            pending.append(facts_record(document["_id"], document["community"], document, facts,
                                        reports.agenda_marks(document), now))
            tickets += 1
            if len(pending) >= batch:
                self.facts.insert_many(pending, ordered=False)
                pending = []
                if progress is not None:
                    progress(tickets)
        if pending:
            self.facts.insert_many(pending, ordered=False)
        documents = counter_documents(totals)
        for start in range(0, len(documents), batch):
            self.counters.insert_many(documents[start:start + batch], ordered=False)
        return {"tickets": tickets, "counters": len(documents), "seconds": round(time.monotonic() - started, 3)}

    def _all_tickets(self, community: str | None, batch: int) -> Iterable[dict[str, Any]]:
        """Every ticket (of one community) through one cursor.

        One cursor, not pages: the embedded database reads a whole ``_id`` range before it applies a
        limit, so pages would cost the rest of the collection each. It also reads the whole range before
        its first batch (~100 µs a ticket): a rebuild needs a client that waits (services/tickets/cli.py).
        """
        return self.tickets.find({"community": community} if community else {}, FACT_FIELDS, batch_size=batch)

    # --- what the reports read --------------------------------------------------------------------

    @staticmethod
    def query(community: str, first: date, last: date) -> dict[str, Any]:
        """The filter of the counters of ``[first, last]`` (inclusive): the ``by_day`` index's range."""
        return {"community": community, "day": {"$gte": first.isoformat(), "$lte": last.isoformat()}}

    def read(self, community: str, first: date, last: date, grids: Sequence[str] | None = None,
             category: str | None = None, buildings: bool = False) -> list[dict[str, Any]]:
        """The counters of the days, within ``grids`` and ``category`` (kept in Python: one index range read)."""
        found = self.counters.find(self.query(community, first, last), None if buildings else {"b": 0})
        wanted = set(grids) if grids is not None else None
        return [document for document in found
                if (wanted is None or document.get("grid") in wanted)
                and (category is None or document.get("category") == category)]

    def marked(self, community: str, first: date, last: date, grids: Sequence[str] | None = None
               ) -> dict[str, list[dict[str, str]]]:
        """The tickets marked for a weekly review between ``first`` and ``last``: ticket id -> its marks."""
        query = {"community": community, "agenda.day": {"$gte": first.isoformat(), "$lte": last.isoformat()}}
        wanted = set(grids) if grids is not None else None
        return {record["_id"]: record.get("agenda") or [] for record in self.facts.find(query, {"agenda": 1, "grid": 1})
                if wanted is None or record.get("grid") in wanted}

    def totals(self, community: str, first: date, last: date, grids: Sequence[str] | None = None,
               category: str | None = None) -> Counter:
        return reports.totals_of(self.read(community, first, last, grids, category))

    def as_facts(self, community: str | None = None) -> Counter:
        """Every counter as ``{(day, grid, category, metric): n}`` (zeros left out): for comparisons."""
        found: Counter = Counter()
        for document in self.counters.find({"community": community} if community else {}):
            base = (document["day"], document["grid"], document["category"])
            for metric, n in (document.get("m") or {}).items():
                if n:
                    found[(*base, metric)] += n
            for building, n in (document.get("b") or {}).items():
                if n:
                    found[(*base, BUILDING + building)] += n
        return found


def facts_of(documents: Iterable[Mapping[str, Any]], now: datetime,
             response_due: Callable[[Mapping[str, Any]], datetime | None] | None = None) -> Counter:
    """A full aggregation of ticket documents, as :meth:`ReadModel.as_facts` shows the counters."""
    total: Counter = Counter()
    for document in documents:
        for (day, grid, category, metric), n in reports.ticket_facts(document, now, response_due).items():
            if metric.startswith(BUILDING):
                metric = BUILDING + field_key(metric[len(BUILDING):])
            total[(day, grid, category, metric)] += n
    return +total


"""The reports' answer times at 100,000 and 1,000,000 tickets (target: each under 2 s at a million).

    python -m bench.reports [--sizes 100000,1000000] [--repeat 3] [--keep]
    python -m bench --only reports          (the same, from the bench's entry point)

For each size, a SecantusDB of its own is filled straight with generated tickets (what the tickets
service stores: state, grid, building, category, deadlines, timeline, callbacks, next steps; about
900 a day, so a million spans three years of a street office), with the indexes the reports read;
the read model is built by ``huisheng reports rebuild``'s code (``--counters-from-load``: by the
same functions while loading, without reading the tickets back: a rebuild of a million tickets takes
the embedded database tens of minutes). Then each report is asked ``--repeat`` times through the
tickets service's own RPC methods (a worker of the real class on that database; no broker): the
daily clearance of today, the weekly review of this week, the rates of the last 30 days (and of one
grid). What is measured is the answer's time, median and worst; loading and rebuilding are shown
apart. Results go to ``var/bench/reports.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.infra import DatabaseServer

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "var" / "bench" / "reports.json"
COMMUNITY = "xingqiao"
PER_DAY = 900  # tickets a day: a busy street office
GRIDS = tuple(f"g{n}" for n in range(1, 9))
BUILDINGS = tuple(f"b{n:02d}" for n in range(1, 61))
OPEN_DAYS = 14  # tickets younger than this may still be open
BATCH = 10_000
TARGET_SECONDS = 2.0
REBUILD_UP_TO = 200_000  # larger loads build the read model while loading (a rebuild would take most of an hour)
SECRETARY = {"subject": "p-bench-secretary", "role": "secretary", "community": COMMUNITY, "grids": [], "teams": []}


# --- data ---------------------------------------------------------------------------------------------

def ticket_documents(count: int, now: datetime, seed: int = 7, community: str = COMMUNITY) -> Iterator[dict]:
    """``count`` tickets as the tickets service stores them, received over ``count / PER_DAY`` days up to ``now``.

    Older tickets are closed (mostly confirmed after a callback; some closed without a fix, some
    reopened once, a few whose callback nobody answered); the last two weeks' are in every state.
    """
    from services.tickets.catalogue import Catalogue

    services = [service for service in Catalogue.load().all()]
    rng = random.Random(seed)
    span = timedelta(days=max(count / PER_DAY, 1))
    for index in range(count):
        service = services[index % len(services)]
        created = now - span * rng.random()
        yield _ticket(rng, index, community, service, created, now)


def _ticket(rng: random.Random, index: int, community: str, service, created: datetime, now: datetime) -> dict:
    grid, building = rng.choice(GRIDS), rng.choice(BUILDINGS)
    worker = f"p-worker-{grid}"
    age = now - created
    response_due = created + timedelta(hours=2)
    responded = created + timedelta(minutes=rng.choice((10, 30, 60, 100, 150, 300)))
    timeline = [{"type": "ticket.received", "at": created, "state": "received", "by": None, "role": None}]
    callbacks: list[dict] = []
    doc: dict[str, Any] = {
        "_id": uuid.uuid4().hex, "community": community, "number": f"XQ-{created:%Y%m%d}-B{index:07d}",
        "service_code": service.code, "category": service.category, "priority": service.default_priority,
        "description": "生成的工单", "address_string": f"兴乔小区{building}", "source": "resident",
        "reporter": f"p-r{index % 5000:05d}", "attached_residents": [f"p-r{index % 5000:05d}"],
        "created_at": created, "updated_at": created, "state": "received", "grid": grid, "building": building,
        "suggested_owner": worker, "assignee": None, "bounce_count": 0, "reopen_count": 0, "callback_round": 0,
        "review_flags": [], "first_response_at": None, "response_due_at": response_due,
        "due_at": created + timedelta(days=rng.choice((1, 3, 5, 10, 20))), "next_step": None, "version": 1,
    }
    if age < timedelta(hours=1) and rng.random() < 0.7:
        return {**doc, "timeline": timeline, "callbacks": callbacks}  # just received
    if responded > now:
        responded = now
    doc.update(first_response_at=responded, state="dispatched", assignee={"kind": "worker", "id": worker},
               updated_at=responded)
    timeline.append({"type": "ticket.dispatched", "at": responded, "state": "dispatched", "by": "p-s",
                     "role": "secretary"})
    if rng.random() < 0.05:
        doc["bounce_count"] = rng.choice((1, 2))
    recent = age < timedelta(days=OPEN_DAYS)
    if recent and rng.random() < 0.45:  # still being worked
        state = rng.choice(("dispatched", "accepted", "in_progress", "in_progress", "paused", "reopened"))
        doc["state"] = state
        if rng.random() < 0.5:
            doc["next_step"] = {"note": "上门查看", "owner": worker, "due_at": now + timedelta(days=1),
                                "by": worker, "at": now - timedelta(hours=2)}
        return {**doc, "timeline": timeline, "callbacks": callbacks}
    if rng.random() < 0.08:  # closed without a fix
        closed = responded + timedelta(hours=4)
        timeline.append({"type": "ticket.closed", "at": closed, "state": "closed_not_fixed",
                         "reason": rng.choice(("not_responsible", "no_further_action", "duplicate"))})
        doc.update(state="closed_not_fixed", updated_at=closed, close_reason=timeline[-1]["reason"], due_at=None)
        return {**doc, "timeline": timeline, "callbacks": callbacks}
    resolved = responded + timedelta(hours=rng.choice((3, 20, 40, 70)))
    rounds = 2 if rng.random() < 0.06 else 1
    for round_number in range(1, rounds + 1):
        timeline.append({"type": "ticket.resolved", "at": resolved, "state": "resolved", "by": worker,
                         "role": "grid_worker"})
        answer = resolved + timedelta(days=1)
        if round_number < rounds:
            callbacks.append(_answer(doc, "not_fixed", "dissatisfied", answer, round_number))
            timeline.append({"type": "ticket.reopened", "at": answer, "state": "reopened"})
            resolved = answer + timedelta(days=1)
            continue
        if answer > now:
            doc.update(state="resolved", updated_at=resolved, callback_round=round_number, due_at=None,
                       callback_due_at=resolved + timedelta(days=1))
            break
        if rng.random() < 0.04:  # nobody answered
            callbacks += [_answer(doc, "no_answer", None, answer + timedelta(hours=h), round_number) for h in (0, 2, 4)]
            doc.update(state="resolved", updated_at=answer, review_flags=["callback_unanswered"], due_at=None)
            if not recent:  # the weekly review closed it: nobody could be reached
                closed = answer + timedelta(days=3)
                timeline.append({"type": "ticket.closed", "at": closed, "state": "closed_not_fixed",
                                 "reason": "no_further_action"})
                doc.update(state="closed_not_fixed", updated_at=closed, close_reason="no_further_action")
            break
        level = rng.choices(("satisfied", "basically_satisfied", "dissatisfied", None), (70, 18, 7, 5))[0]
        callbacks.append(_answer(doc, "fixed", level, answer, round_number))
        timeline.append({"type": "ticket.confirmed", "at": answer, "state": "confirmed"})
        doc.update(state="confirmed", updated_at=answer, due_at=None)
    doc.update(callback_round=rounds, reopen_count=rounds - 1)
    return {**doc, "timeline": timeline, "callbacks": callbacks}


def _answer(doc: dict, outcome: str, level: str | None, at: datetime, round_number: int) -> dict:
    return {"resident": doc["reporter"], "outcome": outcome, "note": "", "satisfaction": level, "at": at,
            "by": "p-s", "round": round_number, "attempt": 1}


def report_indexes(db) -> None:
    """The indexes the reports read (the service's, by the same names), the read model's, the seeded calendar.

    The tickets service's other indexes (a resident's list, staff lists, numbers, the SLA timer's) serve
    no report: they are left out of the load, which they would only slow (each index costs every insert).
    tests/integration/test_reports.py checks the plans with every index of the service present.
    """
    from pymongo import ASCENDING, DESCENDING

    from services.tickets import readmodel
    from services.tickets.repository import COLLECTION
    from services.tickets.sla import CalendarStore

    tickets = db[COLLECTION]
    tickets.create_index([("community", ASCENDING), ("state", ASCENDING), ("created_at", DESCENDING)],
                         name="staff_state")
    tickets.create_index([("community", ASCENDING), ("updated_at", DESCENDING)], name="by_updated")
    tickets.create_index([("community", ASCENDING), ("due_at", ASCENDING)], name="by_due")
    readmodel.ensure_indexes(db)
    CalendarStore(db).seed()


def load(db, count: int, now: datetime, progress: Callable[[str], None] = print, all_indexes: bool = False,
         counters: bool = False) -> float:
    """Insert ``count`` generated tickets in batches (indexes made first); the seconds it took.

    ``all_indexes``: every index of the tickets service, else those the reports read (:func:`report_indexes`).
    ``counters``: also write the read model as the load goes, with the rebuild's own functions (the same facts
    from the same documents, without reading them back): the counters, and the facts records of the tickets
    with agenda marks (those the weekly review reads; the others' records serve only the live handler).
    """
    from collections import Counter, defaultdict

    from services.tickets import readmodel
    from services.tickets import reports as rules
    from services.tickets.repository import COLLECTION, TicketRepository

    totals: dict[str, Counter] = defaultdict(Counter)
    marked: list[dict] = []

    if all_indexes:
        TicketRepository.ensure_indexes(db)
    else:
        report_indexes(db)
    started = time.monotonic()
    batch: list[dict] = []
    for document in ticket_documents(count, now):
        batch.append(document)
        if counters:
            facts = rules.ticket_facts(document, now)
            totals[document["community"]].update(facts)
            agenda = rules.agenda_marks(document)
            if agenda:
                marked.append(readmodel.facts_record(document["_id"], document["community"], document, facts,
                                                     agenda, now))
        if len(batch) >= BATCH:
            db[COLLECTION].insert_many(batch, ordered=False)
            batch = []
            done = db[COLLECTION].estimated_document_count()
            if done % 100_000 < BATCH:
                progress(f"  {done:,} tickets loaded ({time.monotonic() - started:.0f} s)")
    if batch:
        db[COLLECTION].insert_many(batch, ordered=False)
    if counters:
        for name, documents in ((readmodel.COUNTERS, readmodel.counter_documents(totals)), (readmodel.FACTS, marked)):
            for start in range(0, len(documents), BATCH):
                db[name].insert_many(documents[start:start + BATCH], ordered=False)
    return time.monotonic() - started


# --- the reports, as the service answers them -----------------------------------------------------------

class LoadedDatabase(DatabaseServer):
    """The bench's database without ``--sync-on-commit``: a generated load needs no durability, and the
    reports only read (what is measured does not depend on it)."""

    def start(self, log: Path, timeout: float = 60.0) -> DatabaseServer:
        import subprocess

        from kernel.cli.infra import secantus_argv

        self.storage.mkdir(parents=True, exist_ok=True)
        argv = [arg for arg in secantus_argv(self.port, self.storage) if arg != "--sync-on-commit"]
        with log.open("ab") as sink:
            self.process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready(timeout)
        return self


class NoVolunteers:
    """The volunteers service is not part of this measurement: coverage gaps answer "not reported"."""

    def coverage_gaps(self, community: str, week: str):
        from nameko.exceptions import UnknownService

        raise UnknownService("volunteers")


def service_worker(db):
    """A worker of the real TicketsService class on ``db`` (its dependencies given, no broker)."""
    from nameko.testing.services import worker_factory

    from kernel.groupcommit import GroupCommit
    from services.tickets.service import TicketsService

    return worker_factory(TicketsService, db=db, writes=GroupCommit(), volunteers=NoVolunteers(), config={})


def timed(call: Callable[[], Any], repeat: int) -> dict:
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return {"median_s": round(statistics.median(seconds), 3), "max_s": round(max(seconds), 3)}


def measure_size(count: int, work: Path, repeat: int, progress: Callable[[str], None] = print,
                 counters_from_load: bool = False) -> dict:
    """Load ``count`` tickets into a database of its own, rebuild the read model, time the three reports."""
    from kernel.envelope import utcnow
    from kernel.mongo import connect
    from services.tickets.cli import rebuild

    server = LoadedDatabase(work / f"reports-{count}")
    server.start(work / f"reports-{count}.log")
    client = connect(server.uri, timeout_ms=60_000)
    try:
        db = client["bench_tickets"]
        now = utcnow()
        progress(f"reports: loading {count:,} tickets ...")
        load_seconds = load(db, count, now, progress, counters=counters_from_load)
        worker = service_worker(db)
        if counters_from_load:
            rebuilt = {"seconds": None, "counters": db["report_counters"].estimated_document_count()}
        else:
            progress("reports: rebuilding the read model (huisheng reports rebuild) ...")
            rebuilt = rebuild(server.uri, db.name, quiet=True)
        from services.tickets.repository import TicketRepository

        # The open tickets through the staff_state index (a $nin of the closed states would scan every ticket).
        open_tickets = db["tickets"].count_documents(TicketRepository.report_open_query(COMMUNITY))
        timings = {
            "daily": timed(lambda: worker.daily_report(COMMUNITY, SECRETARY), repeat),
            "weekly": timed(lambda: worker.weekly_report(COMMUNITY, SECRETARY), repeat),
            "rates": timed(lambda: worker.rates_report(COMMUNITY, SECRETARY), repeat),
            "rates_one_grid": timed(lambda: worker.rates_report(COMMUNITY, SECRETARY, grid="g3"), repeat),
        }
        return {"tickets": count, "open_tickets": open_tickets, "load_s": round(load_seconds, 1),
                "counters_built_by": "load" if counters_from_load else "rebuild",
                "rebuild_s": rebuilt["seconds"], "counters": rebuilt["counters"], "reports": timings,
                "sample_rates": {name: value for name, value in worker.rates_report(COMMUNITY, SECRETARY).items()
                                 if name.endswith("_rate")}}
    finally:
        client.close()
        server.stop()


def render(results: list[dict]) -> str:
    """The table ``make bench`` prints."""
    lines = [f"Reports' answer time (median / worst of the repeats; target < {TARGET_SECONDS:g} s each)",
             f"{'tickets':>10} {'open':>7} {'daily':>15} {'weekly':>15} {'rates':>15} {'rates g3':>15} "
             f"{'rebuild':>9} {'load':>7}"]
    for result in results:
        cells = [f"{timing['median_s']:.3f}/{timing['max_s']:.3f} s" for timing in result["reports"].values()]
        lines.append(f"{result['tickets']:>10,} {result['open_tickets']:>7,} " + " ".join(f"{c:>15}" for c in cells)
                     + (f" {result['rebuild_s']:>7.0f} s" if result["rebuild_s"] is not None else "   (load)")
                     + f" {result['load_s']:>5.0f} s")
    passed = all(timing["max_s"] < TARGET_SECONDS for result in results if result["tickets"] >= 1_000_000
                 for timing in result["reports"].values())
    lines.append(f"target at a million: {'met' if passed else 'MISSED'}" if any(
        result["tickets"] >= 1_000_000 for result in results) else "(no million-ticket run)")
    return "\n".join(lines)


def run(sizes: list[int], work: Path, repeat: int = 3, output: Path = RESULTS,
        counters_from_load: bool = False) -> list[dict]:
    """Measure every size, print the table, write the results."""
    results = []
    output.parent.mkdir(parents=True, exist_ok=True)
    for size in sizes:  # each size's line and file as soon as it is measured
        results.append(measure_size(size, work, repeat,
                                    counters_from_load=counters_from_load or size > REBUILD_UP_TO))
        print(render(results), flush=True)
        output.write_text(json.dumps({"measured_at": datetime.now(UTC).isoformat(), "results": results},
                                     indent=2, ensure_ascii=False, default=str) + "\n")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reports", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=lambda text: [int(n) for n in text.split(",")], default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the databases' files")
    parser.add_argument("--counters-from-load", action="store_true",
                        help="build the read model while loading (the rebuild's functions, no read-back)")
    args = parser.parse_args(argv)
    work = REPO_ROOT / "var" / "bench" / time.strftime("reports-%Y%m%d-%H%M%S")
    work.mkdir(parents=True, exist_ok=True)
    try:
        run(args.sizes, work, args.repeat, counters_from_load=args.counters_from_load)
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The rows of the table, built from the raw results of a run. Pure, no I/O.

Each ``*_rows`` function reads one part of the raw results and returns its
figures; :data:`ROWS` is the order they are printed in. A missing part (a phase
that failed or did not run) gives rows without a value, shown as ``-`` and
``n/a``, never an invented number. A new capability adds a function here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bench.report import Figure, Target
from bench.stats import ratio

CREATION_TARGET = Target.ratio_at_least(0.75)
ECHO_P99_TARGET = Target.at_most(100.0, "ms")
DRAIN_TARGET = Target.ratio_at_least(0.5)
LOADGEN_TARGET = Target.at_most(0.25, "cores")
MEMORY_PROCESSES = ("gateway", "tickets", "notify", "volunteers", "supervisor")


def dig(raw: Mapping, *path: str) -> Any:
    """``raw[a][b][c]``, or ``None`` if any step is missing."""
    node: Any = raw
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def best_rate(raw: Mapping, stack: str, connections: tuple[int, ...] = (8, 32)) -> float | None:
    """The higher sustained creation rate of a stack over the connection counts measured."""
    rates = [dig(raw, stack, f"c{c}", "run", "rate") for c in connections]
    rates = [r for r in rates if r is not None]
    return max(rates) if rates else None


def creation_ratio(raw: Mapping) -> float | None:
    """Platform ÷ naive creation throughput, each at its best connection count."""
    return ratio(best_rate(raw, "platform"), best_rate(raw, "naive"))


def baseline_rows(raw: Mapping) -> list[Figure]:
    """The raw rates of the broker and the database (they are baselines; they have none)."""
    base = raw.get("baselines", {})
    return [
        Figure("baseline.publish_confirmed", "baseline: kombu publish, persistent, confirmed",
               dig(base, "publish_confirmed", "rate"), "msg/s"),
        Figure("baseline.consume_acked", "baseline: kombu consume + ack", dig(base, "consume_acked", "rate"),
               "msg/s"),
        Figure("baseline.insert_one", "baseline: pymongo insert_one (inbox doc)", dig(base, "insert_one", "rate"),
               "docs/s"),
        Figure("baseline.insert_many", "baseline: pymongo insert_many ×1000", dig(base, "insert_many", "rate"),
               "docs/s"),
    ]


def creation_rows(raw: Mapping) -> list[Figure]:
    """Sustained creation rates against the naive pipeline, and what a ticket costs each."""
    rows = []
    for c in (8, 32):
        naive = dig(raw, "naive", f"c{c}", "run", "rate")
        rows.append(Figure(f"naive.creation_c{c}", f"naive pipeline, {c} conn, echoed", naive, "req/s"))
    for c in (8, 32):
        rows.append(Figure(
            f"platform.creation_c{c}", f"ticket creation, {c} conn, echoed", dig(raw, "platform", f"c{c}", "run",
                                                                                   "rate"), "req/s",
            baseline=dig(raw, "naive", f"c{c}", "run", "rate"), baseline_label="naive", target=CREATION_TARGET,
            details={"drained": dig(raw, "platform", f"c{c}", "run", "drained"),
                     "non_2xx": dig(raw, "platform", f"c{c}", "wrk", "non_2xx")}))
    rows.append(Figure("platform.creation_ratio", "creation ratio (best of each)", creation_ratio(raw), "×"))
    for c in (8, 32):
        rows.append(Figure(f"platform.cpu_per_ticket_c{c}", f"CPU per echoed ticket, {c} conn (all processes)",
                           dig(raw, "platform", f"c{c}", "cpu_ms_per_ticket", "system"), "ms",
                           baseline=dig(raw, "naive", f"c{c}", "cpu_ms_per_ticket", "system"),
                           baseline_label="naive"))
    rows.append(Figure("platform.db_ops_per_ticket", "database operations per ticket (c32)",
                       dig(raw, "platform", "c32", "db_ops_per_ticket"), "ops",
                       baseline=dig(raw, "naive", "c32", "db_ops_per_ticket"), baseline_label="naive"))
    return rows


def latency_rows(raw: Mapping) -> list[Figure]:
    """HTTP and echo latency at the paced rate (100 req/s), against the naive pipeline at that rate."""
    rate = dig(raw, "platform", "paced", "rate") or 100

    def row(key: str, label: str, *path: str, target: Target | None = None) -> Figure:
        return Figure(key, f"{label} @ {rate:g} req/s", dig(raw, "platform", "paced", *path), "ms",
                      baseline=dig(raw, "naive", "paced", *path), baseline_label="naive", target=target)

    return [
        Figure("platform.paced_rate", f"accepted rate, paced @ {rate:g} req/s",
               dig(raw, "platform", "paced", "achieved_rate"), "req/s",
               baseline=dig(raw, "naive", "paced", "achieved_rate"), baseline_label="naive"),
        row("platform.http_p50", "HTTP latency p50", "http_ms", "p50"),
        row("platform.http_p99", "HTTP latency p99", "http_ms", "p99"),
        row("platform.echo_p50", "echo latency p50", "echo_ms", "p50"),
        row("platform.echo_p99", "echo latency p99", "echo_ms", "p99", target=ECHO_P99_TARGET),
        row("platform.echo_from_post_p99", "POST sent → echo p99", "echo_from_post_ms", "p99"),
    ]


def relay_rows(raw: Mapping) -> list[Figure]:
    """Outbox lag under the paced load, and the drain of a backlog against the raw publish rate."""
    publish_ms = dig(raw, "baselines", "publish_confirmed", "confirm_ms") or {}
    lag = dig(raw, "platform", "paced", "outbox_lag_ms", "all") or {}
    drain = dig(raw, "platform", "backlog") or {}
    events = drain.get("events") or 0
    # the raw publish rate measured right beside the drain (before and after it), else the run's first
    publish = drain.get("raw_publish_rate") or dig(raw, "baselines", "publish_confirmed", "rate")
    return [
        Figure("platform.outbox_lag_p50", "outbox lag p50 (write → published)", lag.get("p50"), "ms",
               baseline=publish_ms.get("p50"), baseline_label="one confirmed publish"),
        Figure("platform.outbox_lag_p99", "outbox lag p99 (write → published)", lag.get("p99"), "ms",
               baseline=publish_ms.get("p99"), baseline_label="one confirmed publish"),
        Figure("platform.backlog_drain_rate", f"backlog drain, {events:,} events", drain.get("rate"), "events/s",
               baseline=publish, baseline_label="raw publish, beside it",
               target=DRAIN_TARGET, details={"complete": drain.get("complete"),
                                             "relays_paused": drain.get("relays_paused")},
               note="" if drain.get("relays_paused", 1) else
               "no tickets process was paused while the backlog was written: the drain overlapped the writes"),
        Figure("platform.backlog_db_cpu_per_event", "backlog drain: SecantusDB CPU per event",
               dig(drain, "cpu_ms_per_event", "secantus"), "ms",
               details={"all_processes_ms": dig(drain, "cpu_ms_per_event", "system")}),
        Figure("platform.backlog_drain_seconds", f"backlog drain time, {events:,} events", drain.get("seconds"), "s",
               baseline=events / publish if events and publish else None, baseline_label="raw publish"),
    ]


def _mb(kb: float | None) -> float | None:
    return kb / 1024.0 if kb is not None else None


def memory_rows(raw: Mapping) -> list[Figure]:
    """Peak resident memory of each process after the load, against its naive counterpart."""
    rows = []
    for name in MEMORY_PROCESSES:
        value = _mb(dig(raw, "platform", "memory", name, "peak_rss_kb"))
        if value is None and name not in ("gateway", "tickets", "notify"):
            continue
        rows.append(Figure(f"platform.peak_rss.{name}", f"peak RSS: {name}", value, "MB",
                           baseline=_mb(dig(raw, "naive", "memory", name, "peak_rss_kb")), baseline_label="naive"))
    rows.append(Figure("platform.peak_rss.secantus", "peak RSS: SecantusDB (whole run)",
                       _mb(dig(raw, "platform", "memory", "secantus", "peak_rss_kb")), "MB"))
    return rows


def harness_rows(raw: Mapping) -> list[Figure]:
    """The load generator must not be what limits the figures; and how busy the neighbours were."""
    return [
        Figure("harness.wrk_cpu_c32", "load generator CPU: wrk, 32 conn",
               dig(raw, "platform", "c32", "wrk", "cpu_cores"), "cores", target=LOADGEN_TARGET),
        Figure("harness.paced_cpu", "load generator CPU: paced client",
               dig(raw, "platform", "paced", "cpu", "cores", "loadgen"), "cores", target=LOADGEN_TARGET),
        Figure("harness.other_cpu_c32", "other programs' CPU during c32",
               dig(raw, "platform", "c32", "cpu", "other_cores"), "cores",
               baseline=dig(raw, "naive", "c32", "cpu", "other_cores"), baseline_label="naive run"),
    ]


def light_rows(raw: Mapping) -> list[Figure]:
    """The same path at a rate the platform sustains: its latency when it is not queueing (full runs only)."""
    if dig(raw, "platform", "light") is None and dig(raw, "naive", "light") is None:
        return []
    rate = dig(raw, "platform", "light", "rate") or 40

    def row(key: str, label: str, *path: str) -> Figure:
        return Figure(key, f"{label} @ {rate:g} req/s", dig(raw, "platform", "light", *path), "ms",
                      baseline=dig(raw, "naive", "light", *path), baseline_label="naive")

    lag = dig(raw, "platform", "light", "outbox_lag_ms", "all") or {}
    return [
        row("platform.light_http_p99", "HTTP latency p99", "http_ms", "p99"),
        row("platform.light_echo_p50", "echo latency p50", "echo_ms", "p50"),
        row("platform.light_echo_p99", "echo latency p99", "echo_ms", "p99"),
        Figure("platform.light_outbox_lag_p99", f"outbox lag p99 @ {rate:g} req/s", lag.get("p99"), "ms",
               baseline=dig(raw, "baselines", "publish_confirmed", "confirm_ms", "p99"),
               baseline_label="one confirmed publish"),
    ]


ROWS: list[Callable[[Mapping], list[Figure]]] = [
    baseline_rows, creation_rows, latency_rows, light_rows, relay_rows, memory_rows, harness_rows,
]


def build_figures(raw: Mapping) -> list[Figure]:
    """Every row, in table order."""
    return [figure for rows in ROWS for figure in rows(raw)]

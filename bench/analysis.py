"""From raw observations to summaries: paced requests, echo latency, outbox lag, drains. Pure, no I/O."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from bench.stats import latencies_ms, per_second, summarize
from bench.tap import occurred_epoch


def paced_summary(records: Sequence[Mapping], created: Mapping[str, float], delivered: Mapping[str, float],
                  started: float) -> dict:
    """What a paced run measured.

    * ``http_ms``: scheduled send time -> answer, for 201 answers (queueing included);
    * ``echo_ms``: the ticket's ``created_at`` (the platform accepted it) -> its echo's delivery;
    * ``echo_from_post_ms``: the client's send -> the echo's delivery (what the resident sees);
    * ``achieved_rate``: 201 answers per second of the run.
    """
    accepted = [r for r in records if r["status"] == 201]
    statuses: dict[str, int] = defaultdict(int)
    for record in records:
        statuses[str(record["status"])] += 1
    last = max((r["done"] for r in records), default=started)
    ids = [r["id"] for r in accepted if r.get("id")]
    return {
        "requests": len(records),
        "accepted": len(accepted),
        "statuses": dict(statuses),
        "achieved_rate": per_second(len(accepted), last - started),
        "http_ms": summarize(latencies_ms((r["scheduled"], r["done"]) for r in accepted)),
        "echo_ms": summarize(latencies_ms((created[i], delivered.get(i)) for i in ids if i in created)),
        "echo_from_post_ms": summarize(latencies_ms((r["sent"], delivered.get(r["id"])) for r in accepted
                                                    if r.get("id"))),
        "missing_echoes": sum(1 for i in ids if i not in delivered),
    }


def outbox_lags(events: Iterable[tuple[float, Mapping]]) -> dict:
    """Arrival at the tap minus ``occurred_at``, in ms: over all events and per event type."""
    by_type: dict[str, list[float]] = defaultdict(list)
    for arrival, envelope in events:
        by_type[envelope["type"]].append((arrival - occurred_epoch(envelope["occurred_at"])) * 1000.0)
    everything = [lag for lags in by_type.values() for lag in lags]
    return {"all": summarize(everything), "by_type": {name: summarize(lags) for name, lags in by_type.items()}}


def first_arrivals(events: Iterable[tuple[float, Mapping]], correlation_prefix: str) -> dict[str, float]:
    """The first arrival of each distinct event whose correlation id starts with ``correlation_prefix``."""
    first: dict[str, float] = {}
    for arrival, envelope in events:
        if str(envelope.get("correlation_id", "")).startswith(correlation_prefix):
            first.setdefault(envelope["event_id"], arrival)
    return first


def drain_summary(expected: int, due: float, arrivals: Mapping[str, float], cleaned_at: float | None) -> dict:
    """How fast a backlog that became due at ``due`` was published (and accounted for by the checkpoint).

    >>> drain_summary(2, 10.0, {"a": 10.5, "b": 12.0}, 12.2)["rate"]
    1.0
    """
    published = len(arrivals)
    last = max(arrivals.values(), default=due)
    seconds = last - due
    return {
        "events": expected, "published": published, "complete": published >= expected,
        "first_published_after_seconds": (min(arrivals.values()) - due) if arrivals else None,
        "seconds": seconds, "rate": per_second(published, seconds),
        "outbox_clean_after_seconds": (cleaned_at - due) if cleaned_at is not None else None,
    }


def _weighted(values: Sequence[tuple[float | None, float]]) -> float | None:
    """Mean of ``value`` weighted by ``weight``, over the pairs that have a value."""
    known = [(value, weight) for value, weight in values if value is not None]
    total = sum(weight for _, weight in known)
    return sum(value * weight for value, weight in known) / total if total else None


def combine_slots(slots: Sequence[Mapping]) -> dict:
    """One sustained figure from several runs of it: totals over totals, CPU weighted by time.

    >>> combined = combine_slots([
    ...     {"run": {"created": 10, "echoed": 10, "seconds": 2.0, "drained": True, "drain_seconds": 0.5}},
    ...     {"run": {"created": 30, "echoed": 20, "seconds": 3.0, "drained": False, "drain_seconds": 1.0}}])
    >>> combined["run"]["rate"], combined["run"]["drained"], combined["run"]["slot_rates"]
    (6.0, False, [5.0, 6.666666666666667])
    """
    runs = [slot["run"] for slot in slots]
    created, echoed = sum(r["created"] for r in runs), sum(r["echoed"] for r in runs)
    seconds = sum(r["seconds"] for r in runs)
    combined: dict = {"run": {
        "created": created, "echoed": echoed, "seconds": seconds, "rate": per_second(echoed, seconds),
        "drained": all(r["drained"] for r in runs), "drain_seconds": max(r["drain_seconds"] for r in runs),
        "slot_rates": [per_second(r["echoed"], r["seconds"]) for r in runs]}, "slots": list(slots)}
    wrks = [slot["wrk"] for slot in slots if "wrk" in slot]
    if wrks:
        combined["wrk"] = {"requests": sum(w["requests"] for w in wrks), "non_2xx": sum(w["non_2xx"] for w in wrks),
                           "cpu_cores": max((w["cpu_cores"] or 0.0) for w in wrks),
                           "latency_us": wrks[-1].get("latency_us")}
    cpus = [slot["cpu"] for slot in slots if "cpu" in slot]
    if cpus:
        names = {name for cpu in cpus for name in cpu["cores"]}
        combined["cpu"] = {
            "seconds": sum(c["seconds"] for c in cpus),
            "cores": {name: _weighted([(c["cores"].get(name), c["seconds"]) for c in cpus]) for name in names},
            "other_cores": _weighted([(c["other_cores"], c["seconds"]) for c in cpus]),
            "machine_busy_cores": _weighted([(c["machine_busy_cores"], c["seconds"]) for c in cpus])}
    ops = [slot["db_ops"] for slot in slots if "db_ops" in slot]
    if ops:
        combined["db_ops"] = {name: sum(o.get(name, 0) for o in ops) for name in ops[0]}
        combined["db_ops_per_ticket"] = sum(combined["db_ops"].values()) / created if created else None
    per_ticket = [(slot.get("cpu_ms_per_ticket") or {}, slot["run"]["created"]) for slot in slots]
    names = {name for values, _ in per_ticket for name in values}
    combined["cpu_ms_per_ticket"] = {name: _weighted([(values.get(name), n) for values, n in per_ticket])
                                     for name in names}
    return combined

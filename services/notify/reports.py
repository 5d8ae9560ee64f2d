"""The proof, as reports: silent tickets and echo latency per stage. No I/O.

>>> from datetime import UTC, datetime, timedelta
>>> t0 = datetime(2026, 12, 6, tzinfo=UTC)
>>> echo = {"occurred_at": t0, "steps": [{"channel": "inbox", "sent_at": t0 + timedelta(seconds=1),
...         "delivered_at": t0 + timedelta(seconds=1), "read_at": t0 + timedelta(seconds=60)}]}
>>> latency([echo])["inbox"]["read"]
{'count': 1, 'p50': 60.0, 'p95': 60.0}
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

STAGES = ("sent", "delivered", "read")


def percentile(values: Sequence[float], share: float) -> float | None:
    """The nearest-rank percentile of ``values`` (None when empty).

    >>> percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.95), percentile([3.0], 0.5), percentile([], 0.5)
    (10, 3.0, None)
    """
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(share * len(ordered)) - 1, 0)]


def stage_seconds(echo: Mapping) -> Iterable[tuple[str, str, float]]:
    """(channel, stage, seconds since the ticket change) of every stage each step of ``echo`` reached."""
    for step in echo.get("steps", ()):
        for stage in STAGES:
            at = step.get(f"{stage}_at")
            if at is not None:
                yield step["channel"], stage, max((at - echo["occurred_at"]).total_seconds(), 0.0)


def latency(echoes: Iterable[Mapping]) -> dict[str, dict[str, dict]]:
    """``{channel: {stage: {"count", "p50", "p95"}}}`` over ``echoes`` (seconds from the ticket change)."""
    samples: dict[tuple[str, str], list[float]] = {}
    for echo in echoes:
        for channel, stage, seconds in stage_seconds(echo):
            samples.setdefault((channel, stage), []).append(seconds)
    answer: dict[str, dict[str, dict]] = {}
    for (channel, stage), values in sorted(samples.items()):
        answer.setdefault(channel, {})[stage] = {
            "count": len(values), "p50": round(percentile(values, 0.5), 3), "p95": round(percentile(values, 0.95), 3)}
    return answer


def silent_items(echoes: Iterable[Mapping]) -> list[dict]:
    """Silent echoes grouped by ticket, the longest silent first: what ``GET /api/v1/reports/silent`` lists.

    No names or contacts: a ticket, its number, and which change went unheard by whom (a person id).
    """
    tickets: dict[str, dict] = {}
    for echo in echoes:
        step = echo["steps"][echo["current"]]
        item = tickets.setdefault(echo["ticket_id"], {
            "ticket_id": echo["ticket_id"], "number": (echo.get("facts") or {}).get("number"),
            "silent_since": echo["proof_due_at"].isoformat(), "changes": []})
        item["silent_since"] = min(item["silent_since"], echo["proof_due_at"].isoformat())
        item["changes"].append({
            "echo_id": echo["_id"], "source_event_type": echo["source_event_type"], "recipient": echo["recipient"],
            "occurred_at": echo["occurred_at"].isoformat(), "status": echo["status"], "channel": step["channel"],
            "step_status": step["status"]})
    return sorted(tickets.values(), key=lambda item: item["silent_since"])

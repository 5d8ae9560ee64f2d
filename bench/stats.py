"""The harness's arithmetic: percentiles, rates and the sustained-rate clock. Pure, no I/O.

>>> percentile([1, 2, 3, 4], 50)
2.5
>>> summarize([10.0, 20.0, 30.0])["p50"]
20.0
>>> per_second(500, 2.0)
250.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

QUANTILES = (50, 90, 99)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100), interpolating linearly between ranks (numpy's default).

    ``None`` for no values: an empty run has no latency, not a latency of zero.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"a percentile is between 0 and 100, not {q}")
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    lower, upper = math.floor(position), math.ceil(position)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def summarize(values: Sequence[float]) -> dict[str, float | int | None]:
    """Count, mean, max and the percentiles of :data:`QUANTILES` (``p50``, ``p90``, ``p99``)."""
    summary: dict[str, float | int | None] = {"count": len(values)}
    for q in QUANTILES:
        summary[f"p{q}"] = percentile(values, q)
    summary["mean"] = sum(values) / len(values) if values else None
    summary["max"] = max(values) if values else None
    return summary


def per_second(count: float, seconds: float) -> float | None:
    """A rate; ``None`` when no time passed (a rate of a zero-length run is meaningless)."""
    return count / seconds if seconds > 0 else None


def ratio(value: float | None, baseline: float | None) -> float | None:
    """``value / baseline``, or ``None`` if either is missing or the baseline is zero."""
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline


def latencies_ms(pairs: Iterable[tuple[float, float | None]]) -> list[float]:
    """``end - start`` in milliseconds for each ``(start, end)`` in seconds; pairs without an end are skipped."""
    return [(end - start) * 1000.0 for start, end in pairs if end is not None]


@dataclass(frozen=True)
class SustainedRun:
    """Tickets created under load, and how many of them were echoed before the clock stopped.

    The clock starts when the load starts and stops when the last echo of the
    run was delivered (the backlog drained), never before the load ended, and at
    the latest at the drain deadline: a ticket not echoed by then does not count.
    """

    started: float
    load_ended: float
    stopped: float
    created: int
    echoed: int
    drained: bool

    @property
    def seconds(self) -> float:
        return self.stopped - self.started

    @property
    def rate(self) -> float | None:
        """Echoed tickets per second over the whole clock."""
        return per_second(self.echoed, self.seconds)

    @property
    def drain_seconds(self) -> float:
        """How long the echo backlog took to drain after the load stopped."""
        return max(0.0, self.stopped - self.load_ended)

    def to_dict(self) -> dict:
        return {**asdict(self), "seconds": self.seconds, "rate": self.rate, "drain_seconds": self.drain_seconds}


def sustained_run(started: float, load_ended: float, deadline: float, created: int,
                  delivered: Sequence[float]) -> SustainedRun:
    """Stop the clock at the last echo delivered by ``deadline`` (but not before ``load_ended``).

    ``delivered`` are the delivery times (epoch seconds) of the run's echoes, one
    per ticket. The run drained if every created ticket was echoed by the deadline.
    """
    in_time = [at for at in delivered if at <= deadline]
    drained = len(in_time) >= created
    stopped = max([load_ended, *in_time]) if drained else deadline
    return SustainedRun(started, load_ended, stopped, created, len(in_time), drained)

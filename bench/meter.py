"""CPU used by each process of interest during a phase, and by everything else on the machine.

On shared, noisy machines the "everything else" column says how much a figure
can be trusted: a phase during which another program used a core measured the
neighbour as much as the platform.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from bench.infra import cpu_seconds, machine_busy_seconds


def cpu_shares(before: Mapping[str, float | None], after: Mapping[str, float | None],
               wall_seconds: float) -> dict[str, float | None]:
    """Cores used by each named process between two readings (1.0 = one core fully busy).

    >>> cpu_shares({"a": 1.0}, {"a": 2.5}, 3.0)
    {'a': 0.5}
    """
    shares: dict[str, float | None] = {}
    for name, end in after.items():
        start = before.get(name)
        shares[name] = None if start is None or end is None or wall_seconds <= 0 else (end - start) / wall_seconds
    return shares


def others_share(machine_cores: float, ours: Mapping[str, float | None]) -> float:
    """Cores the machine was busy with beyond the processes we measured (never negative).

    >>> others_share(1.5, {"a": 0.5, "b": None})
    1.0
    """
    return max(0.0, machine_cores - sum(value for value in ours.values() if value is not None))


@dataclass
class CpuMeter:
    """Reads CPU time of named pids at :meth:`start` and :meth:`stop`."""

    pids: Mapping[str, int]
    _before: dict = field(default_factory=dict)
    _machine_before: float = 0.0
    _started: float = 0.0

    def start(self) -> CpuMeter:
        self._before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._machine_before = machine_busy_seconds()[0]
        self._started = time.monotonic()
        return self

    def stop(self, extra: Mapping[str, float] | None = None) -> dict:
        """Cores used per process over the phase; ``extra`` adds shares measured elsewhere (the load generator)."""
        wall = time.monotonic() - self._started
        after = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        shares = cpu_shares(self._before, after, wall)
        shares.update(extra or {})
        machine = (machine_busy_seconds()[0] - self._machine_before) / wall if wall > 0 else 0.0
        return {"seconds": wall, "cores": shares, "machine_busy_cores": machine,
                "other_cores": others_share(machine, shares)}

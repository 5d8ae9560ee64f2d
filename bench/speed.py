"""How fast the machine ran a fixed piece of work during each measured step: what a ratio cannot cancel out.

The naive pipeline and the platform are measured minutes apart on a shared machine, and its speed for the
same work moves by several percent within a minute (docs/benchmarks.md, thirteenth round): a slower stretch
that falls on one stack's slots moves a ratio, whatever the order of the slots. A thread of the harness
times a fixed piece of Python work every quarter second in its own CPU time (so waiting for a core does not
count, and a slower core does), and the run reports each measured step's median time against the median
of all of them: 1.05 is a step in which the same work took 5 % longer.

>>> relative({"naive: c8 #1": [1.0, 1.0, 1.1], "platform: c8 #1": [1.1, 1.2, 1.2]})
{'naive: c8 #1': 0.909, 'platform: c8 #1': 1.091}
>>> headline({"naive: c8 #1": 0.909, "platform: c8 #1": 1.091})
'0.909-1.091 of the median (slowest: platform: c8 #1)'
>>> headline({})
'not measured'
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence

PROBE_SECONDS = 0.25
WORK_STEPS = 20_000  # about 1 ms of one core: a probe costs the machine under 0.5 % of a core


def fixed_work(steps: int = WORK_STEPS) -> int:
    """The same arithmetic every time."""
    total = 0
    for number in range(steps):
        total += number * number % 7
    return total


class SpeedProbe:
    """Times :func:`fixed_work` from :meth:`start` to :meth:`stop`, filed under ``step`` (None: not measured)."""

    def __init__(self, interval: float = PROBE_SECONDS, steps: int = WORK_STEPS) -> None:
        self.step: str | None = None
        self.samples: dict[str, list[float]] = defaultdict(list)  # step -> milliseconds of CPU per probe
        self._interval, self._steps = interval, steps
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="speed-probe", daemon=True)

    def start(self) -> SpeedProbe:
        self._thread.start()
        return self

    def stop(self) -> dict:
        """``{"median_ms", "by_step": {step: its median against the median of all steps}}``."""
        self._stop.set()
        self._thread.join(5)
        middle = median_of_all(self.samples)
        return {"median_ms": round(middle, 3) if middle is not None else None, "by_step": relative(self.samples)}

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            step, started = self.step, time.thread_time()
            fixed_work(self._steps)
            if step is not None and step == self.step:  # a probe that straddled two steps is neither's
                self.samples[step].append((time.thread_time() - started) * 1000)


def median_of_all(samples: Mapping[str, Sequence[float]]) -> float | None:
    """The median of every sample of every step (None: there are none)."""
    every = [sample for these in samples.values() for sample in these]
    return statistics.median(every) if every else None


def relative(samples: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """Each step's median time for the work, against :func:`median_of_all`."""
    middle = median_of_all(samples)
    if middle is None:
        return {}
    return {step: round(statistics.median(these) / middle, 3) for step, these in samples.items() if these}


def headline(by_step: Mapping[str, float]) -> str:
    """One line for the report: the range over the measured steps, and the slowest."""
    if not by_step:
        return "not measured"
    slowest = max(by_step, key=by_step.__getitem__)
    return f"{min(by_step.values())}-{by_step[slowest]} of the median (slowest: {slowest})"

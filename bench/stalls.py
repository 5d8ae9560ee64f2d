"""Stalls of the shared database server, watched for the whole run.

Both stacks and the baselines share one SecantusDB server, and in the eighth to eleventh rounds it sometimes
stopped answering for 10-60 s while the machine idled, which spoiled whichever phase it hit. A probe now
writes a small document every half second on a connection of its own; a write that waits more than
``THRESHOLD_SECONDS`` is a stall, recorded with the step that was running and, the first few times, with the
server's threads as ``py-spy dump --native`` saw them while it waited (how the twelfth round found the TTL
sweeper's pinned snapshot: docs/benchmarks.md). The results carry every stall; the report prints them.

Those of measured steps are counted apart from those of the housekeeping between them (the baselines'
databases dropped, the stacks started and stopped):

>>> headline([])
'none'
>>> print(headline([{"step": "naive: c32 #1", "seconds": 27.3, "measured": True},
...                 {"step": "platform: starting", "seconds": 2.4, "measured": False}]))
1 in measured steps, the longest 27.3 s (naive: c32 #1); 1 between them, the longest 2.4 s (platform: starting)
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from pymongo import MongoClient

PROBE_SECONDS = 0.5
THRESHOLD_SECONDS = 2.0
MAX_DUMPS = 3
DATABASE = "bench_stallwatch"


class StallWatch:
    """Probes the server at ``mongo_uri`` (process ``server_pid``) from :meth:`start` to :meth:`stop`.

    ``step`` names what the run is doing and ``measured`` whether it is a measurement; set both as the run
    moves on. ``py_spy`` is the py-spy executable (None: no dumps).
    """

    def __init__(self, mongo_uri: str, server_pid: int | None, dumps: Path, py_spy: str | None) -> None:
        self.step, self.measured = "starting", False
        self.stalls: list[dict] = []
        self._client = MongoClient(mongo_uri, socketTimeoutMS=600_000, serverSelectionTimeoutMS=10_000)
        self._pid, self._dumps, self._py_spy = server_pid, dumps, py_spy
        self._stop = threading.Event()
        self._in_flight: tuple[tuple[str, bool], float] | None = None  # the probe write's step and start
        self._dumped: dict[float, str] = {}  # the dump of a stall, by the start of its write
        self._threads = [threading.Thread(target=self._probe, name="stall-probe", daemon=True),
                         threading.Thread(target=self._watch, name="stall-dump", daemon=True)]

    def start(self) -> StallWatch:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> list[dict]:
        """Every stall seen, in order; a write still waiting counts as one that lasted until now."""
        self._stop.set()
        in_flight = self._in_flight
        if in_flight is not None and time.monotonic() - in_flight[1] > THRESHOLD_SECONDS:
            self._record(*in_flight)
        self._threads[1].join(5)
        self._client.close()  # ends a write still waiting, and with it the probe's thread
        self._threads[0].join(5)
        return list(self.stalls)

    def _probe(self) -> None:
        probes = self._client[DATABASE]["probes"]
        while not self._stop.is_set():
            step, started = (self.step, self.measured), time.monotonic()
            self._in_flight = step, started
            try:
                probes.insert_one({"at": time.time()})
            except Exception:  # noqa: BLE001 - the server going away at the end of the run is no stall
                return
            finally:
                self._in_flight = None
            if time.monotonic() - started > THRESHOLD_SECONDS and not self._stop.is_set():  # stop() counted it
                self._record(step, started)
            self._stop.wait(PROBE_SECONDS)

    def _record(self, step: tuple[str, bool], started: float) -> None:
        seconds = time.monotonic() - started
        self.stalls.append({"step": step[0], "measured": step[1], "seconds": round(seconds, 1),
                            "at": time.strftime("%H:%M:%S", time.localtime(time.time() - seconds)),
                            "dump": self._dumped.pop(started, None)})

    def _watch(self) -> None:
        dumps = 0
        while not self._stop.wait(0.2):
            in_flight = self._in_flight
            since = in_flight[1] if in_flight is not None else None
            stalled = since is not None and time.monotonic() - since > THRESHOLD_SECONDS
            if stalled and since not in self._dumped and dumps < MAX_DUMPS and self._py_spy and self._pid:
                dumps += 1
                path = self._dumps / f"stall-{dumps}.txt"
                self._dumped[since] = str(path)  # named before it is taken: the stall may end meanwhile
                self._dump(path, in_flight[0][0])

    def _dump(self, path: Path, step: str) -> None:
        answer = subprocess.run([self._py_spy, "dump", "--native", "--pid", str(self._pid)],
                                capture_output=True, text=True, timeout=60, check=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"step: {step}\n{answer.stdout}{answer.stderr}")


def headline(stalls: Sequence[dict]) -> str:
    """One line for the report: how many in measured steps and between them, and the longest of each."""
    if not stalls:
        return "none"
    parts = []
    for measured, where in ((True, "in measured steps"), (False, "between them")):
        these = [stall for stall in stalls if stall["measured"] is measured]
        if these:
            longest = max(these, key=lambda stall: stall["seconds"])
            parts.append(f"{len(these)} {where}, the longest {longest['seconds']} s ({longest['step']})")
    return "; ".join(parts)

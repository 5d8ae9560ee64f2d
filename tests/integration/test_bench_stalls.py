"""The benchmark's stall watch sees a database server that stops answering, and names the step it hit."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from bench.infra import py_spy
from bench.stalls import THRESHOLD_SECONDS, StallWatch, headline
from kernel.cli.infra import EMBEDDED_SERVER
from tests.conftest import free_port, wait_for_mongo

pytestmark = pytest.mark.integration


def test_a_server_that_stops_answering_is_a_stall_of_the_step_it_hit(tmp_path) -> None:
    port = free_port()
    server = subprocess.Popen([*EMBEDDED_SERVER, "--host", "127.0.0.1", "--port", str(port), "--storage-path",
                               ":memory:", "--log-level", "WARNING"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    try:
        wait_for_mongo(uri)
        watch = StallWatch(uri, server.pid, tmp_path / "stalls", py_spy()).start()
        watch.step = "quiet"
        time.sleep(1.5)
        watch.step, watch.measured = "naive: c32 #1", True
        os.kill(server.pid, signal.SIGSTOP)  # the whole server waits, as in the stalls the watch is for
        time.sleep(THRESHOLD_SECONDS + 1.5)
        os.kill(server.pid, signal.SIGCONT)
        time.sleep(1.5)
        watch.step, watch.measured = "after", False
        stalls = watch.stop()
    finally:
        os.kill(server.pid, signal.SIGCONT)
        server.terminate()
        server.wait(10)
    assert [stall["step"] for stall in stalls] == ["naive: c32 #1"]
    assert THRESHOLD_SECONDS < stalls[0]["seconds"] < THRESHOLD_SECONDS + 3
    assert stalls[0]["measured"] is True
    assert headline(stalls).startswith("1 in measured steps, the longest ")
    if py_spy():  # the bench extra: what py-spy said of the server as it waited (of a stopped one: that it can't)
        assert Path(stalls[0]["dump"]).read_text().startswith("step: naive: c32 #1\nProcess ")
    else:
        assert stalls[0]["dump"] is None


def test_a_run_without_stalls_says_none() -> None:
    assert headline([]) == "none"
    between = [{"step": "baselines: dropping their databases", "seconds": 2.4, "measured": False},
               {"step": "platform: starting", "seconds": 3.1, "measured": False}]
    assert headline(between) == "2 between them, the longest 3.1 s (platform: starting)"

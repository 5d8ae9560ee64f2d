"""schemathesis against the running gateway: every check, every operation of ``/openapi.json``.

The gateway, tickets, notify, volunteers and directory run as containers on the real broker and
database (the directory seeds the demo community). schemathesis runs in a subprocess (its own
threads and event loop do not belong in this eventlet-patched process), once per caller: a resident
and an admin (the document's other roles differ only in their 403s). Rate limits are raised through
the settings, as a load test raises them.

Bounded here (a fixed seed, a few examples per operation, well under 90 s); ``make fuzz`` sets
``HUISHENG_FUZZ=1`` for the full run (every phase, many examples).

Every check runs on every operation, Open311's included: schemathesis.toml only declares which answers
count as accepting valid data (a 422 of a rule stated in words; for Open311 the spec's 400, which stands
for every request it cannot fulfil) and which as rejecting invalid data (413, and the web server's 414).
tests/integration/test_open311.py is the Open311 face's conformance test, written from the spec.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import eventlet
import pytest

from kernel.auth import issue_token
from services.directory.service import DirectoryService
from services.notify.service import NotifyService
from services.tickets.service import TicketsService
from services.volunteers.service import VolunteersService
from tests.integration.harness import start_gateway

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FULL = os.environ.get("HUISHENG_FUZZ") == "1"
SEED = 20261206
RESIDENT = "p-719c962237dd"  # 王秀英 of services/directory/data/demo_community.json
ADMIN = "p-0000000000ad"


@pytest.fixture
def platform(container_factory, settings):
    settings = dataclasses.replace(settings, rate_limit_per_minute=1_000_000,
                                   rate_limit_address_per_minute=1_000_000, auth_code_per_minute=1_000_000,
                                   directory_seed=True)
    return start_gateway(container_factory, settings, TicketsService, NotifyService, VolunteersService,
                         DirectoryService), settings


def schemathesis(base: str, token: str, report: Path, budget: float) -> tuple[int, str]:
    """Run the schemathesis CLI on the document; its exit code and output."""
    examples = "100" if FULL else "4"
    command = [str(Path(sys.executable).with_name("schemathesis")), "--no-color", "--config-file",
               str(Path(__file__).with_name("schemathesis.toml")), "run", f"{base}/openapi.json",
               "--checks", "all", "--seed", str(SEED), "--max-examples", examples, "--workers", "1",
               "-H", f"Authorization: Bearer {token}", "--request-timeout", "10",
               "--report", "junit", "--report-junit-path", str(report)]
    if not FULL:
        command += ["--phases", "examples,coverage,fuzzing", "--max-time", str(int(budget)), "--no-shrink"]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"}
    output = report.with_suffix(".log")
    with output.open("w") as sink:
        process = subprocess.Popen(command, cwd=report.parent, env=env, stdout=sink, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + (3600 if FULL else budget + 30)
        while process.poll() is None:  # the containers serve in this process: wait without blocking the hub
            if time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"schemathesis ran past its budget; see {output}")
            eventlet.sleep(0.1)
    return process.returncode, output.read_text()


@pytest.mark.parametrize("role, subject", [("resident", RESIDENT), ("admin", ADMIN)])
def test_every_operation_conforms_under_schemathesis(platform, tmp_path, role, subject):
    base, settings = platform
    token = issue_token(settings, role, subject, community="xingqiao")
    started = time.monotonic()
    code, output = schemathesis(base, token, tmp_path / f"{role}.xml", budget=35)
    print(output[-6000:])
    assert "operations" in output.lower() or "Operations" in output, output[-3000:]  # it did run the document
    assert code == 0, output[-8000:]
    assert FULL or time.monotonic() - started < 60

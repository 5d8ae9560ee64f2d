"""Fixtures of the fault suite: the suite's own RabbitMQ node, a database server per test, the platform
with two instances of every process, the naive pipeline, and the tallies printed at the end.

Tests marked ``chaos_smoke`` run in every ``pytest`` run (the bounded CI subset);
tests marked ``chaos`` are skipped unless asked for: ``make chaos``, ``-m chaos``
or ``HUISHENG_CHAOS=1``.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.chaos.processes import DatabaseServer
from tests.chaos.rabbit import RabbitNode, free_ports, server_script
from tests.chaos.relays import Verdict
from tests.chaos.systems import NaivePipeline, Platform
from tests.chaos.tally import Tally, summary_table

MARKERS = (
    "chaos: fault-injection scenario of the full fault suite (make chaos; skipped unless selected)",
    "chaos_smoke: bounded fault-injection scenario that also runs in CI",
)
_TALLIES: list[tuple[str, Tally | Verdict]] = []  # (test id, what it recorded), in the order they ran
_OUTCOMES: dict[str, str] = {}  # test id -> passed / failed / error / skipped


def pytest_configure(config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)


def chaos_selected(config) -> bool:
    """The full suite runs when asked for by marker expression or environment."""
    return "chaos" in (config.getoption("markexpr", "") or "").replace("chaos_smoke", "") \
        or os.environ.get("HUISHENG_CHAOS") == "1"


def pytest_collection_modifyitems(config, items) -> None:
    if chaos_selected(config):
        return
    skip = pytest.mark.skip(reason="full fault suite: run `make chaos` (or -m chaos, or HUISHENG_CHAOS=1)")
    for item in items:
        if "chaos" in item.keywords and "chaos_smoke" not in item.keywords:
            item.add_marker(skip)


def pytest_runtest_logreport(report) -> None:
    """A scenario's outcome for the summary: failed if any phase failed, else what its call did."""
    if report.failed or report.when == "call":
        previous = _OUTCOMES.get(report.nodeid)
        _OUTCOMES[report.nodeid] = previous if previous in ("failed", "error") else (
            "error" if report.failed and report.when != "call" else report.outcome)


def pytest_terminal_summary(terminalreporter) -> None:
    if not _TALLIES:
        return
    terminalreporter.section("chaos tallies")
    rows = [{**tally.summary(), "test": _OUTCOMES.get(nodeid, "?")} for nodeid, tally in _TALLIES]
    text = summary_table(rows) + "\n\n" + "\n\n".join(tally.render() for _, tally in _TALLIES)
    terminalreporter.write_line(text)
    destination = os.environ.get("HUISHENG_CHAOS_REPORT")
    if destination:
        Path(destination).parent.mkdir(parents=True, exist_ok=True)
        Path(destination).write_text(text + "\n")
        terminalreporter.write_line(f"(also written to {destination})")


@pytest.fixture
def record(request):
    """Print a tally now (shown with -s, or on failure) and again in the end-of-run summary."""

    def keep(tally: Tally) -> Tally:
        _TALLIES.append((request.node.nodeid, tally))
        print("\n" + tally.render(), flush=True)
        return tally

    return keep


@pytest.fixture(scope="session")
def chaos_node(tmp_path_factory):
    """The suite's own RabbitMQ node, for the whole session (tests that kill it restart it)."""
    if server_script() is None:
        pytest.skip("rabbitmq-server is not installed: the fault suite needs a RabbitMQ node of its own")
    node = RabbitNode(tmp_path_factory.mktemp("rabbit"))
    # A SIGTERM (a CI timeout) becomes a KeyboardInterrupt, so fixtures tear down what they started.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        node.start()
        yield node
    finally:
        # SIGKILL, not `rabbitmqctl stop` (about 6 s): nothing is checked of the node's last stop, and its
        # data is the session's own (atexit would kill it too, should the session itself be killed).
        node.kill()
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def node(chaos_node):
    """The session's node, brought back if an earlier test left it dead."""
    if not chaos_node.alive():
        chaos_node.start()
    return chaos_node


@pytest.fixture
def database(tmp_path):
    """A SecantusDB of this test's own, its data on disk (it survives being killed)."""
    server = DatabaseServer(tmp_path / "db", free_ports(1)[0], tmp_path / "secantusdb.log")
    server.start(timeout=30)
    yield server
    server.kill()  # its data is this test's own, and nothing checks its stop: no graceful shutdown (~2 s)


@pytest.fixture
def platform(tmp_path, node, database):
    """``huisheng up -d`` plus a second instance of tickets, notify, volunteers and the gateway."""
    system = Platform(tmp_path, node, database)
    try:
        system.up()
        system.start_extras()
        yield system
    finally:
        system.close()
        node.delete_vhost(system.vhost)


@pytest.fixture
def naive(tmp_path, node, database):
    """The naive pipeline of bench/naive, two instances of each of its processes."""
    pytest.importorskip("bench.naive.services", reason="bench/naive is not in this checkout")
    system = NaivePipeline(tmp_path, node, database)
    try:
        system.start()
        yield system
    finally:
        system.close()
        node.delete_vhost(system.vhost)

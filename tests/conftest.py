"""Shared fixtures: a real SecantusDB server, a fresh RabbitMQ vhost per test, platform settings.

The eventlet monkey-patch happens first, in the repository's root conftest.py.
"""

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import eventlet
import pytest

from kernel.cli.infra import EMBEDDED_SERVER
from kernel.cli.supervisor import pid_alive, read_state
from kernel.config import Settings

ROOT = Path(__file__).resolve().parent.parent


_GIVEN_PORTS: set[int] = set()


def _ephemeral_low(default: int = 32768) -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def free_port() -> int:
    """A port nobody listens on, below the kernel's ephemeral range, not handed out before in this run.

    A port the kernel gave for port 0 is an ephemeral one: between this call and the server's own bind, an
    outgoing connection (a service reaching RabbitMQ) may take it as its local port, and the server fails
    with "Address already in use" (the e2e platform's SecantusDB did, once, in a full run).
    """
    low = _ephemeral_low()
    while True:
        port = random.randrange(10_000, low)
        if port in _GIVEN_PORTS:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN_PORTS.add(port)
        return port


def kill_platform(home: Path, timeout: float = 15.0) -> None:
    """SIGKILL what ``huisheng up -d`` started in ``home``, where nothing checks how it stops (``huisheng down``
    stops it layer after layer, gracefully: 5 to 15 s). Its runner first, supervisord frozen (it may not restart
    a child any more), each child's process group (those in the state file and any supervisord started since it
    was written), supervisord; then wait until none of them is left."""
    state = read_state(home)
    if state is None:
        return
    runner, daemon = state.get("supervisor") or {}, state.get("supervisord") or {}
    pids = [record["pid"] for record in (runner, daemon, *state.get("children", []))
            if pid_alive(record.get("pid"), record.get("identity"))]
    if runner.get("pid") in pids:
        _kill_group(runner["pid"])
    if daemon.get("pid") in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(daemon["pid"], signal.SIGSTOP)
        pids += [pid for pid in _children_of(daemon["pid"]) if pid not in pids]
    for pid in reversed(pids):  # the children, then supervisord
        _kill_group(pid)
    deadline = time.monotonic() + timeout
    while any(map(pid_alive, pids)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"huisheng up's processes outlived SIGKILL for {timeout:g} s: {pids}")
        time.sleep(0.05)


def _kill_group(pid: int) -> None:
    """SIGKILL ``pid``'s process group if it leads one (``huisheng up``'s processes each do), else ``pid``."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)


def _children_of(parent: int) -> list[int]:
    """The processes whose parent is ``parent`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rpartition(")")[2].split()[1]) == parent:
                found.append(int(stat.parent.name))
    return found


def secantus_executable() -> str:
    candidate = Path(sys.executable).with_name("secantusd-py")
    return str(candidate) if candidate.exists() else "secantusd-py"


def wait_for_mongo(uri: str, timeout: float = 20.0) -> None:
    from pymongo import MongoClient

    deadline = time.monotonic() + timeout
    while True:
        client = MongoClient(uri, serverSelectionTimeoutMS=500)
        try:
            client.admin.command("ping")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
        finally:
            client.close()


@contextmanager
def secantus_server():
    """A fresh in-memory SecantusDB server on a free port; yields its URI."""
    port = free_port()
    server = subprocess.Popen(
        [*EMBEDDED_SERVER, "--host", "127.0.0.1", "--port", str(port), "--storage-path", ":memory:",
         "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    uri = f"mongodb://127.0.0.1:{port}/?retryWrites=false&directConnection=true"
    try:
        wait_for_mongo(uri)
        yield uri
    finally:
        server.kill()  # in memory, and nothing checks its stop: a graceful one takes about 2 s
        server.wait(10)


@pytest.fixture(scope="session")
def mongo_uri():
    """A SecantusDB server for the whole session (or ``TEST_MONGO_URI`` if given)."""
    given = os.environ.get("TEST_MONGO_URI")
    if given:
        yield given
        return
    with secantus_server() as uri:
        yield uri


@pytest.fixture
def settings(rabbit_config, mongo_uri) -> Settings:
    """Settings for one test: its own vhost, its own databases, fast retries and sweeps."""
    from kernel.topology import declare_all

    settings = Settings(
        amqp_uri=rabbit_config["AMQP_URI"], mongo_uri=mongo_uri,
        mongo_db_prefix=f"t{uuid.uuid4().hex[:10]}_", retry_delays_ms=(50, 150),
        outbox_sweep_seconds=0.2, outbox_grace_seconds=0.3, rpc_timeout=5.0,
    )
    declare_all(settings)
    return settings


@pytest.fixture
def service_config(settings):
    """A nameko container config for one service (its /health listens on a free port)."""
    return settings.nameko_config(web_address=f"127.0.0.1:{free_port()}")


@pytest.fixture
def mongo_client(mongo_uri):
    from kernel.mongo import connect

    client = connect(mongo_uri)
    yield client
    client.close()


def eventually(check, timeout: float = 10.0, interval: float = 0.05):
    """Poll ``check`` until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s; last value: {value!r}")
        eventlet.sleep(interval)


@pytest.fixture
def wait_until():
    return eventually

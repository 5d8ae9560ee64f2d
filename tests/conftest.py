"""Shared fixtures: a real SecantusDB server, a fresh RabbitMQ vhost per test, platform settings.

The eventlet monkey-patch happens first, in the repository's root conftest.py.
"""

import os
import random
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
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


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

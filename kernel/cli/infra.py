"""The infrastructure ``huisheng up`` needs before any service: a broker and a database.

RabbitMQ is shared machine infrastructure: we only probe it, start a local one that is installed
(``rabbitmq-server -detached``), and never stop it. The database is the embedded SecantusDB, one of ``up``'s
supervised children unless ``MONGO_URI`` is set. kombu and pymongo are imported lazily (``huisheng token`` stays fast).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0", ""})
BROKER_START_WAIT = 30.0


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages.

    >>> redact("mongodb://u:secret@h:1/"), redact("amqp://127.0.0.1/")
    ('mongodb://u:***@h:1/', 'amqp://127.0.0.1/')
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{netloc}"))


class InfraError(RuntimeError):
    """Infrastructure is missing or unusable; the message says what to do."""


def amqp_endpoint(amqp_uri: str) -> tuple[str, int]:
    """Host and port of an ``amqp://`` URI (port defaults to 5672)."""
    parts = urlsplit(amqp_uri)
    return parts.hostname or "127.0.0.1", parts.port or 5672


def is_local(host: str) -> bool:
    """True for loopback names: only a local broker is ours to start."""
    return host in LOCAL_HOSTS or host.startswith("127.")


def broker_answers(amqp_uri: str, timeout: float = 3.0) -> bool:
    """True if an AMQP broker completes a handshake (including login) at ``amqp_uri``."""
    from kombu import Connection  # lazy: keeps the CLI quick to start

    try:
        with Connection(amqp_uri, connect_timeout=timeout) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
        return True
    except Exception:  # noqa: BLE001 - any failure means "no usable broker here"
        return False


def broker_help(amqp_uri: str) -> str:
    """What to tell a user who has no broker."""
    host, port = amqp_endpoint(amqp_uri)
    return (f"No RabbitMQ broker answers at {host}:{port} (AMQP_URI={amqp_uri}).\nGet one, then run the command "
            "again:\n  - Debian/Ubuntu:  apt-get install rabbitmq-server && rabbitmq-server -detached\n"
            "  - Docker:         docker run -d --name rabbitmq -p 5672:5672 -p 15672:15672 rabbitmq:3.13-management\n"
            "  - or point AMQP_URI at a broker you already have.")


def ensure_broker(amqp_uri: str, *, probe: Callable[[str], bool] = broker_answers,
                  which: Callable[[str], str | None] = shutil.which, run: Callable[..., object] = subprocess.run,
                  wait_seconds: float = BROKER_START_WAIT, say: Callable[[str], None] = print) -> str:
    """Make sure a broker answers; return ``"running"`` or ``"started"``, else raise :class:`InfraError`."""
    if probe(amqp_uri):
        return "running"
    server = which("rabbitmq-server")
    if not is_local(amqp_endpoint(amqp_uri)[0]) or server is None:
        raise InfraError(broker_help(amqp_uri))
    say(f"huisheng: no broker at {amqp_uri}; starting {server} -detached")
    run([server, "-detached"], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if probe(amqp_uri):
            return "started"
        time.sleep(0.5)
    raise InfraError(f"rabbitmq-server was started but no broker answered at {amqp_uri} within {wait_seconds:.0f} s; "
                     "see /var/log/rabbitmq/ for why.\n" + broker_help(amqp_uri))


def find_secantusd() -> str | None:
    """The ``secantusd-py`` executable: next to our interpreter (the venv) first, then PATH."""
    beside = Path(sys.executable).parent / "secantusd-py"
    return str(beside) if beside.is_file() else shutil.which("secantusd-py")


def secantus_uri(port: int, host: str = "127.0.0.1") -> str:
    """The MONGO_URI children get; retryWrites=false avoids SecantusDB's 15x slow-down."""
    return f"mongodb://{host}:{port}/?retryWrites=false&directConnection=true"


# The embedded database as the platform runs it: SecantusDB through standins/mongodb.py, the one seam for its costs.
EMBEDDED_SERVER = [sys.executable, str(Path(__file__).resolve().parents[2] / "standins" / "mongodb.py")]


def secantus_argv(port: int, storage: Path, host: str = "127.0.0.1") -> list[str]:
    """Command line of the embedded database: never ``--standalone`` (change streams need the replica set),
    always ``--sync-on-commit`` (an acknowledged write must survive a SIGKILL: docs/architecture.md)."""
    return [*EMBEDDED_SERVER, "--host", host, "--port", str(port), "--storage-path", str(storage), "--sync-on-commit"]


def admin_command(mongo_uri: str, command: str, timeout: float = 5.0, **options: object) -> dict:
    """The answer of the server at ``mongo_uri`` to an admin ``command``, waiting ``timeout`` seconds for it."""
    from pymongo import MongoClient  # lazy: pymongo is slow to import

    client = MongoClient(mongo_uri, serverSelectionTimeoutMS=int(timeout * 1000), connectTimeoutMS=int(timeout * 1000))
    try:
        return client.admin.command(command, **options)
    finally:
        client.close()


def mongo_ping(mongo_uri: str, timeout: float = 1.0) -> bool:
    """True if a MongoDB-speaking server answers ``ping`` at ``mongo_uri``."""
    try:
        return bool(admin_command(mongo_uri, "ping", timeout))
    except Exception:  # noqa: BLE001 - any failure means "not ready"
        return False


def port_in_use(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False

"""What the benchmark needs around the platform: its own vhost, its own database server, tools, /proc.

Everything here is started and stopped by the harness itself, on loopback
addresses only, and is cleaned up even when a run fails.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from kernel.cli.infra import find_secantusd, secantus_argv, secantus_uri

MANAGEMENT_API = os.environ.get("BENCH_RABBIT_API", "http://127.0.0.1:15672/api")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class BenchError(RuntimeError):
    """The benchmark cannot run; the message says what to do."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS considers free right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- tools


def py_spy() -> str | None:
    """The py-spy executable (the ``bench`` extra), on PATH or beside this Python; None if not installed."""
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


def ensure_wrk() -> str:
    """The ``wrk`` executable; installed from Debian's packages when missing and we are root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise BenchError("wrk is needed as the load generator: run `sudo apt-get install -y wrk`")
    print("bench: installing wrk (apt-get install -y wrk) ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "install", "-y", "-qq", "wrk"], ["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "wrk"]):
        subprocess.run(command, env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=300)
        if shutil.which("wrk"):
            return shutil.which("wrk")
    raise BenchError("could not install wrk: run `apt-get update && apt-get install -y wrk` and retry")


def tool_version(argv: list[str]) -> str:
    """The first line a tool prints about its version, or ``"unknown"``."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


# --------------------------------------------------------------------------- RabbitMQ


def _management(method: str, path: str, body: dict | None = None, timeout: float = 10.0) -> bytes:
    request = urllib.request.Request(f"{MANAGEMENT_API}{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
    request.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    request.add_header("Content-Type", "application/json")
    with _NO_PROXY.open(request, timeout=timeout) as response:
        return response.read()


@dataclass
class Vhost:
    """A RabbitMQ vhost of our own, so the run neither sees nor disturbs anyone else's queues."""

    name: str
    host: str = "127.0.0.1"
    port: int = 5672

    @property
    def quoted(self) -> str:
        return urllib.parse.quote(self.name, safe="")

    @property
    def amqp_uri(self) -> str:
        return f"amqp://guest:guest@{self.host}:{self.port}/{self.quoted}"

    def create(self) -> Vhost:
        """Create the vhost and give guest every permission on it."""
        try:
            _management("PUT", f"/vhosts/{self.quoted}", {})
            _management("PUT", f"/permissions/{self.quoted}/guest",
                        {"configure": ".*", "write": ".*", "read": ".*"})
        except OSError as error:
            raise BenchError(f"the RabbitMQ management API ({MANAGEMENT_API}) did not let us create a vhost: "
                             f"{error}; run scripts/ensure-rabbitmq.sh") from error
        return self

    def delete(self) -> None:
        """Delete the vhost and everything in it (nothing if it is gone)."""
        with contextlib.suppress(OSError):
            _management("DELETE", f"/vhosts/{self.quoted}")

    def queue_depths(self) -> dict[str, int]:
        """Messages per queue (the management API's view: up to a few seconds old)."""
        queues = json.loads(_management("GET", f"/queues/{self.quoted}?columns=name,messages"))
        return {queue["name"]: int(queue.get("messages") or 0) for queue in queues}


def rabbitmq_version() -> str:
    """The broker's version, from its management API."""
    try:
        return json.loads(_management("GET", "/overview")).get("rabbitmq_version", "unknown")
    except (OSError, ValueError):
        return "unknown"


# --------------------------------------------------------------------------- SecantusDB


class DatabaseServer:
    """A SecantusDB of the benchmark's own, on a free port, with its data in ``storage``."""

    def __init__(self, storage: Path, port: int | None = None):
        self.storage = storage
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return secantus_uri(self.port)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self, log: Path, timeout: float = 30.0) -> DatabaseServer:
        """Start the server and wait until it answers ``ping``."""
        if find_secantusd() is None:
            raise BenchError("secantusd-py not found: run `make install` (it comes with the dev extras)")
        self.storage.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as sink:
            self.process = subprocess.Popen(secantus_argv(self.port, self.storage),
                                            stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        from kernel.cli.infra import mongo_ping

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"SecantusDB exited at start with {self.process.returncode}")
            if mongo_ping(self.uri):
                return
            time.sleep(0.2)
        raise BenchError(f"SecantusDB did not answer on port {self.port} within {timeout:g} s")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, and SIGKILL if it has not stopped within ``timeout``."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def opcounters(client) -> dict[str, int]:
    """The database server's operation counters (insert, query, update, delete, command ...)."""
    counters = client.admin.command("serverStatus").get("opcounters", {})
    return {name: int(value) for name, value in counters.items()}


def counter_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """How much each counter moved between two readings of :func:`opcounters`."""
    return {name: after.get(name, 0) - before.get(name, 0) for name in after}


# --------------------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used so far, or ``None`` if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def status_kb(pid: int, key: str) -> int | None:
    """A ``kB`` line of ``/proc/<pid>/status``, such as ``VmHWM`` (peak RSS) or ``VmRSS``."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def machine_busy_seconds() -> tuple[float, float]:
    """CPU seconds spent busy and in total, summed over every core, since boot."""
    values = [int(part) for part in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


def start_ticks(pid: int) -> int:
    """When a process started, in clock ticks since boot (large if it is gone)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return 2**63


def pids_named(command_name: str) -> list[int]:
    """Processes whose ``comm`` is ``command_name``, oldest first (RabbitMQ's ``beam.smp``: ``rabbitmqctl``
    runs short-lived ones beside the broker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == command_name:
                    found.append(int(entry.name))
            except OSError:
                continue
    return sorted(found, key=start_ticks)

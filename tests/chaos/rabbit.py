"""A RabbitMQ node of the fault suite's own: its own name, ports, data and cookie, on loopback only.

The machine's shared node (127.0.0.1:5672) is never touched: this node is started
from the package's scripts with every location redirected into a temporary
directory (``/etc/rabbitmq``'s config, env file and plugins file would otherwise
make it bind 5672). It runs in the foreground as our child, in a process group of
its own, so "the broker was killed" is a real ``SIGKILL`` of ``beam.smp``; a
restart reuses the same node name and data directory, so durable queues and
persistent messages survive exactly as they would in production.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from urllib.error import HTTPError, URLError

SCRIPTS = Path("/usr/lib/rabbitmq/bin")
PORT_FLOOR = 20000  # free_ports draws from here up to the ephemeral range
START_TIMEOUT = 90.0
SCHEDULER_ARGS = "+sbwt none +sbwtdcpu none +sbwtdio none"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_LIVE_NODES: set[RabbitNode] = set()


class BrokerUnavailable(RuntimeError):
    """The suite's own node could not be started (RabbitMQ missing, or it failed to boot)."""


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' source ports (Linux's default if unreadable)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on loopback right now (all bound at once, so none repeats).

    Drawn below the ephemeral range, never with ``bind(0)``: a port the kernel hands out there
    is one any outgoing connection on the machine may take as its source port before our server
    binds it, or while it is down between a kill and its restart on the same port (it happened:
    SecantusDB failed with ``EADDRINUSE`` with other suites running beside this one).
    """
    top = min(ephemeral_range()[0], 65536)
    sockets: list[socket.socket] = []
    try:
        for _ in range(count * 200):
            if len(sockets) == count:
                break
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", random.randrange(PORT_FLOOR, top)))
            except OSError:  # in use: draw again
                sock.close()
                continue
            sockets.append(sock)
        if len(sockets) < count:
            raise OSError(f"no {count} free ports between {PORT_FLOOR} and {top}")
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def server_script() -> Path | None:
    """The real ``rabbitmq-server`` script (not Debian's wrapper, which would ``su`` to another user)."""
    candidates = [Path(os.environ.get("HUISHENG_CHAOS_RABBITMQ_BIN", SCRIPTS))]
    found = shutil.which("rabbitmq-server")
    if found:
        candidates.append(Path(found).resolve().parent)
    for directory in candidates:
        script = directory / "rabbitmq-server"
        if script.is_file() and os.access(script, os.X_OK) and (directory / "rabbitmq-env").is_file():
            return script
    return None


class RabbitNode:
    """One RabbitMQ node: ``start``, ``kill`` (SIGKILL), ``restart``, ``stop``, and its management API."""

    def __init__(self, root: Path, name: str | None = None, cookie: str | None = None, prometheus: bool = False):
        """``name``, ``cookie`` and ``prometheus`` are for a cluster's nodes (:mod:`tests.chaos.cluster`): a node
        name of their own, one Erlang cookie for all, and the Prometheus plugin on a port of each node's own."""
        self.root = Path(root)
        self.name = name or f"huisheng-chaos-{uuid.uuid4().hex[:8]}@localhost"
        self.prometheus = prometheus
        self._pick_ports()
        self.cookie = cookie
        self.process: subprocess.Popen | None = None
        self.script = server_script()
        self.starts = 0

    def _pick_ports(self) -> None:
        self.amqp_port, self.management_port, self.dist_port, prometheus_port = free_ports(4)
        self.prometheus_port = prometheus_port if self.prometheus else None

    def ports(self) -> tuple[int, ...]:
        return tuple(p for p in (self.amqp_port, self.management_port, self.dist_port, self.prometheus_port) if p)

    # ------------------------------------------------------------------ files and environment

    def _write_files(self) -> None:
        for sub in ("mnesia", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
            f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {self.management_port}\n"
            "collect_statistics_interval = 500\n"
            "log.console = false\nlog.file.level = warning\n"
            + (f"prometheus.tcp.ip = 127.0.0.1\nprometheus.tcp.port = {self.prometheus_port}\n"
               if self.prometheus_port else "")
        )
        plugins = "rabbitmq_management" + (",rabbitmq_prometheus" if self.prometheus_port else "")
        (self.root / "enabled_plugins").write_text(f"[{plugins}].\n")
        (self.root / "rabbitmq-env.conf").write_text("ERL_EPMD_ADDRESS=127.0.0.1\n")
        if self.cookie is not None:  # nodes of one cluster (and their rabbitmqctl) share it
            cookie = self.root / ".erlang.cookie"
            if not cookie.exists():
                cookie.write_text(self.cookie)
                cookie.chmod(0o400)

    def env(self) -> dict[str, str]:
        """Every location of the node inside ``root``; HOME too, so its Erlang cookie is ours."""
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))},
            "HOME": str(self.root), "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port), "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"), "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_PID_FILE": str(self.root / "rabbitmq.pid"),
            # Loopback only; and schedulers that sleep when idle instead of busy-waiting (on 2 shared cores,
            # three nodes spinning would take CPU from everything else).
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1} " + SCHEDULER_ARGS,
        }

    @property
    def amqp_base(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}"

    def amqp_uri(self, vhost: str = "/") -> str:
        return f"{self.amqp_base}/{urllib.parse.quote(vhost, safe='')}"

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = START_TIMEOUT) -> RabbitNode:
        """Boot the node (same name and data as before, if it ran already) and wait until it serves."""
        if self.script is None:
            raise BrokerUnavailable("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
        if self.starts == 0 and any(port_open(port) for port in self.ports()):
            # Picked free at construction, taken since (an outgoing connection's ephemeral port, say): a node
            # that never ran can take others, nobody knows its ports yet. A restart keeps them.
            self._pick_ports()
        for port in self.ports():
            if port_open(port):
                raise BrokerUnavailable(f"port {port} of the chaos node is taken by another program")
        self._write_files()
        log = (self.root / "log" / f"console-{self.starts}.log").open("ab")
        self.process = subprocess.Popen([str(self.script)], env=self.env(), stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.starts += 1
        _LIVE_NODES.add(self)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise BrokerUnavailable(f"the chaos node exited while starting; see {self.root / 'log'}")
            if port_open(self.amqp_port) and self._management_ok():
                return
            time.sleep(0.25)
        raise BrokerUnavailable(f"the chaos node did not answer within {timeout:g} s; see {self.root / 'log'}")

    def _management_ok(self) -> bool:
        try:
            self.api("GET", "/overview", timeout=2)
            return True
        except (OSError, ValueError):
            return False

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ctl(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        """``rabbitmqctl -n NODE ARGS`` with the node's environment (its cookie)."""
        return subprocess.run([str(self.script.parent / "rabbitmqctl"), "-n", self.name, *args], env=self.env(),
                              capture_output=True, text=True, timeout=timeout, check=False)

    def kill(self) -> None:
        """SIGKILL the whole node (the script and ``beam.smp``): no goodbye to clients, no flush."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(15)
        self._wait_ports_closed(15)

    def _wait_ports_closed(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(port_open(p) for p in (self.amqp_port, self.management_port)):
            time.sleep(0.1)

    def restart(self, timeout: float = START_TIMEOUT) -> RabbitNode:
        self.kill()
        return self.start(timeout)

    def stop(self) -> None:
        """Stop for good: ask politely (``rabbitmqctl stop``), then SIGKILL the group."""
        if self.alive():
            ctl = self.script.parent / "rabbitmqctl"
            try:
                subprocess.run([str(ctl), "-n", self.name, "stop"], env=self.env(), timeout=30,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        _LIVE_NODES.discard(self)

    # ------------------------------------------------------------------ management API

    def api(self, method: str, path: str, body: dict | None = None, timeout: float = 10.0):
        """Call the node's management API; the decoded JSON answer (or None)."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.management_port}/api{path}", method=method,
            data=json.dumps(body).encode() if body is not None else None)
        request.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
        request.add_header("Content-Type", "application/json")
        with _NO_PROXY.open(request, timeout=timeout) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def add_vhost(self, name: str) -> str:
        """Create a vhost guest may use; its AMQP URI."""
        quoted = urllib.parse.quote(name, safe="")
        self.api("PUT", f"/vhosts/{quoted}", {})
        self.api("PUT", f"/permissions/{quoted}/guest", {"configure": ".*", "write": ".*", "read": ".*"})
        return self.amqp_uri(name)

    def delete_vhost(self, name: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.api("DELETE", f"/vhosts/{urllib.parse.quote(name, safe='')}")

    def queues(self, vhost: str) -> dict[str, dict]:
        """Every queue of ``vhost``: ready and unacked messages and consumers, by name.

        Asked of the queues themselves through ``rabbitmqctl`` (about a second): the
        management API's statistics lag by several seconds, too late to judge a drain.
        """
        columns = ("messages_ready", "messages_unacknowledged", "consumers")
        done = subprocess.run(
            [str(self.script.parent / "rabbitmqctl"), "-n", self.name, "list_queues", "-p", vhost, "-q",
             "--formatter", "json", "name", *columns],
            env=self.env(), capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            raise BrokerUnavailable(f"rabbitmqctl list_queues failed: {done.stderr.strip()[-500:]}")
        rows = json.loads(done.stdout or "[]")
        return {row["name"]: {key: int(row.get(key) or 0) for key in columns} for row in rows}

    def set_policy(self, vhost: str, name: str, pattern: str, definition: dict, priority: int = 10) -> None:
        self.api("PUT", f"/policies/{urllib.parse.quote(vhost, safe='')}/{name}",
                 {"pattern": pattern, "definition": definition, "apply-to": "queues", "priority": priority})

    def clear_policy(self, vhost: str, name: str) -> None:
        try:
            self.api("DELETE", f"/policies/{urllib.parse.quote(vhost, safe='')}/{name}")
        except HTTPError as error:
            if error.code != 404:
                raise
        except URLError:
            pass


@atexit.register
def _kill_leftover_nodes() -> None:
    """Whatever happens to the test run, no chaos node outlives it."""
    for node in list(_LIVE_NODES):
        node.kill()

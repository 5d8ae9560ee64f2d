"""Supervision of the platform's processes: health-gated start, restarts with back-off, run state.

A :class:`Supervisor` starts a list of :class:`ChildSpec` in layers (database,
then services, then the gateway), waits for each layer to be healthy, then
watches them. A child that dies is started again after a back-off (1 s, 2 s,
4 s ... up to 30 s, :class:`RestartPolicy`); after ``max_crashes`` crashes within
``window`` seconds the supervisor gives up on it, says so in its log and in
``huisheng status`` (state ``gave up``), and if the child is essential stops the
platform and exits 1, so a broken platform never looks half alive.

Each child runs in its own session (``start_new_session=True``) so that a
Ctrl-C in the terminal reaches only the supervisor, which then stops the
children in order: SIGTERM, and SIGKILL after ``stop_timeout`` (nameko ignores
SIGTERM while it reconnects to a dead broker).

Run state is written to ``$HUISHENG_HOME/run/platform.json`` so that
``huisheng status`` and ``huisheng down`` work from another shell, and so that
``down`` can still stop the children if the supervisor itself was killed.
The process list is injected, so tests supervise tiny stand-in processes.

Why not supervisord, circus or honcho: honcho stops everything when one process
dies (what this module did before it restarted children); supervisord and circus
restart with back-off but start programs by priority without waiting for health
(the services must not start before the database answers, the gateway not before
the services are ready), run as their own daemon with their own config file,
control socket and log files (``up``'s foreground mode with prefixed output, and
``down`` finding the children of a killed supervisor from the run state, would be
rebuilt around them), and none is installed here (circus also needs ZeroMQ). What
they would replace is the restart loop in :meth:`Supervisor.monitor`, about sixty
lines; the platform's own part (health gating, the embedded database, the run
state) would stay whichever manager ran the processes.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import ProxyHandler, build_opener

STATE_VERSION = 1
POLL_SECONDS = 0.2
TAIL_LINES = 20
SUPERVISOR_LOG = "supervisor"
# An empty ProxyHandler: health probes of 127.0.0.1 must never go through $http_proxy.
_OPENER = build_opener(ProxyHandler({}))


# --------------------------------------------------------------------------- specs and errors


@dataclass(frozen=True)
class ChildSpec:
    """One process to supervise.

    ``health`` says how readiness is probed at ``address``: ``"http"`` (GET
    ``/health`` and ``/ready`` must both answer 200), ``"live"`` (GET ``/health``
    must answer 200: a stand-in with no dependencies has no ``/ready``),
    ``"mongo"`` (a ``ping`` must answer) or ``"none"``. Lower ``layer`` starts
    first and stops last.
    """

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] | None = None
    address: str | None = None
    health: str = "http"
    layer: int = 1
    essential: bool = True  # giving up on it stops the platform

    def port(self) -> tuple[str, int] | None:
        """Host and port this child will listen on, if its address names one."""
        if not self.address:
            return None
        parts = urlsplit(self.address)
        return (parts.hostname or "127.0.0.1", parts.port) if parts.port else None


@dataclass(frozen=True)
class RestartPolicy:
    """When a dead child is started again, and when the supervisor gives up on it.

    >>> policy = RestartPolicy()
    >>> [policy.delay(n) for n in range(1, 8)]
    [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    """

    first_delay: float = 1.0
    max_delay: float = 30.0
    max_crashes: int = 5  # within `window` seconds: then give up
    window: float = 120.0

    def delay(self, crashes: int) -> float:
        """Seconds to wait before the restart that follows the ``crashes``-th crash in the window."""
        return min(self.max_delay, self.first_delay * 2 ** max(0, crashes - 1))

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> RestartPolicy:
        """``HUISHENG_RESTART_DELAY``, ``HUISHENG_RESTART_MAX_DELAY``, ``HUISHENG_RESTART_LIMIT``, ``..._WINDOW``."""
        defaults = cls()
        return cls(
            float(environ.get("HUISHENG_RESTART_DELAY", defaults.first_delay)),
            float(environ.get("HUISHENG_RESTART_MAX_DELAY", defaults.max_delay)),
            int(environ.get("HUISHENG_RESTART_LIMIT", defaults.max_crashes)),
            float(environ.get("HUISHENG_RESTART_WINDOW", defaults.window)),
        )


class StartError(RuntimeError):
    """A child did not come up; carries its name and the tail of its log."""

    def __init__(self, name: str, reason: str, log_tail: str = "") -> None:
        self.name = name
        self.reason = reason
        self.log_tail = log_tail
        super().__init__(format_failure(name, reason, log_tail))


class AlreadyRunning(RuntimeError):
    """Another supervisor holds the lock of this HUISHENG_HOME."""


class _StopRequested(Exception):
    """A signal asked us to stop while we were still starting."""


def format_failure(name: str, reason: str, log_tail: str) -> str:
    """The human report of a failed child: what happened and its last log lines."""
    text = f"{name}: {reason}"
    if log_tail:
        text += f"\n--- last lines of {name}'s log ---\n{log_tail}\n--- end of {name}'s log ---"
    return text


# --------------------------------------------------------------------------- files


def run_dir(home: Path) -> Path:
    """Where run state lives."""
    return Path(home) / "run"


def log_path(home: Path, name: str) -> Path:
    """The append-only log of one child (or of the detached supervisor)."""
    return Path(home) / "log" / f"{name}.log"


def state_path(home: Path) -> Path:
    """``$HUISHENG_HOME/run/platform.json``."""
    return run_dir(home) / "platform.json"


def read_state(home: Path) -> dict | None:
    """The recorded run state, or None if nothing was started (or the file is unreadable)."""
    try:
        return json.loads(state_path(home).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_state(home: Path, state: dict) -> None:
    """Replace the state file atomically, so readers never see half a file."""
    path = state_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    os.replace(tmp, path)


def clear_state(home: Path) -> None:
    """Forget the run state (nothing runs any more)."""
    state_path(home).unlink(missing_ok=True)


def log_tail(path: Path, lines: int = TAIL_LINES, offset: int = 0) -> str:
    """The last ``lines`` lines written to ``path`` after byte ``offset`` (this run's part)."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(offset, size - 64 * 1024))
            data = handle.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- processes


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 0 is the state letter)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def process_identity(pid: int) -> str | None:
    """The process's start time in clock ticks: with the pid, it tells a recycled pid apart."""
    stat = _proc_stat(pid)
    return stat[19] if stat and len(stat) > 19 else None


def pid_alive(pid: int | None, identity: str | None = None) -> bool:
    """True if ``pid`` runs, is not a zombie and (if given) still has start time ``identity``."""
    if not pid:
        return False
    stat = _proc_stat(pid)
    if stat is None:
        if Path("/proc/self/stat").exists():
            return False
        try:  # no /proc (macOS): signal 0 is the best we have
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    if stat[0] in ("Z", "X"):
        return False
    return identity is None or process_identity(pid) == identity


def _signal(pid: int, sig: int, group: bool = True) -> None:
    """Signal a child's whole process group (it leads one), or just the pid if it does not."""
    try:
        if group and os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class Target:
    """Something to stop: a name, a pid, and how to tell whether it is still alive.

    ``group`` signals the whole process group the pid leads (children run in
    their own sessions); a foreground supervisor's group may include the user's
    shell pipeline (``huisheng up | tee``), so it is signalled alone.
    """

    name: str
    pid: int
    alive: Callable[[], bool]
    group: bool = True


def terminate(
    targets: Sequence[Target],
    timeout: float,
    say: Callable[[str], None] = print,
    hurry: threading.Event | None = None,
) -> list[str]:
    """SIGTERM every target, wait up to ``timeout`` for all, SIGKILL the rest; return the names killed."""
    living = [t for t in targets if t.alive()]
    for target in living:
        _signal(target.pid, signal.SIGTERM, target.group)
    deadline = time.monotonic() + timeout
    while living and time.monotonic() < deadline and not (hurry and hurry.is_set()):
        time.sleep(0.05)
        living = [t for t in living if t.alive()]
    for target in living:
        say(f"{target.name} (pid {target.pid}) did not stop within {timeout:g} s: sending SIGKILL")
        _signal(target.pid, signal.SIGKILL, target.group)
    deadline = time.monotonic() + 5.0  # SIGKILL cannot be refused; this only covers reaping
    while any(t.alive() for t in living) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [t.name for t in living]


# --------------------------------------------------------------------------- health


def http_health(address: str, timeout: float = 1.0, paths: Sequence[str] = ("/health", "/ready")) -> tuple[bool, str]:
    """GET ``address``/health and ``address``/ready (or ``paths``); healthy only if each answers 200."""
    for path in paths:
        try:
            with _OPENER.open(address.rstrip("/") + path, timeout=timeout) as response:
                code = response.status
        except HTTPError as exc:
            code = exc.code
        except (URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return False, f"GET {path}: {reason}"
        if code != 200:
            return False, f"GET {path} -> {code}"
    return True, f"GET {', '.join(paths)} -> 200"


def probe(health: str, address: str | None, timeout: float = 1.0) -> tuple[bool, str]:
    """Probe one child's readiness according to its ``health`` kind."""
    if health == "http" and address:
        return http_health(address, timeout)
    if health == "live" and address:
        return http_health(address, timeout, ("/health",))
    if health == "mongo" and address:
        from kernel.cli.infra import mongo_ping  # lazy: pymongo is slow to import

        return (True, "ping ok") if mongo_ping(address, timeout) else (False, "no answer to ping")
    return True, "not probed"


# --------------------------------------------------------------------------- the supervisor


@dataclass
class _Child:
    spec: ChildSpec
    popen: subprocess.Popen
    identity: str | None
    log_offset: int
    started_at: str
    pump: threading.Thread | None = None
    state: str = "running"  # "restarting" after a crash, "gave up" after too many
    restarts: int = 0
    crashes: deque = field(default_factory=deque)  # monotonic times of recent crashes
    restart_at: float = 0.0


class Supervisor:
    """Starts, watches and stops a list of children; see the module docstring."""

    def __init__(
        self,
        home: Path,
        specs: Sequence[ChildSpec],
        *,
        stop_timeout: float = 10.0,
        echo: bool = True,
        out: IO[str] | None = None,
        info: Mapping[str, object] | None = None,
        restart: RestartPolicy | None = None,
    ) -> None:
        self.home = Path(home).absolute()
        self.specs = sorted(specs, key=lambda s: s.layer)  # stable: keeps the given order in a layer
        self.stop_timeout = stop_timeout
        self.echo = echo
        self.out = out or sys.stdout
        self.info = dict(info or {})
        self.restart = restart or RestartPolicy()
        self.stop_event = threading.Event()
        self.hurry = threading.Event()
        self.children: dict[str, _Child] = {}
        self.phase = "starting"
        self._out_lock = threading.Lock()
        self._width = max([len(s.name) for s in self.specs] + [len("huisheng")])
        self._lock_handle: IO[str] | None = None

    # -- output

    def emit(self, name: str, line: str) -> None:
        """Write one line, prefixed with its source, to the supervisor's output."""
        with self._out_lock:
            try:
                self.out.write(f"{name:<{self._width}} | {line}\n")
                self.out.flush()
            except (BrokenPipeError, ValueError):
                self.echo = False  # our reader went away; children keep logging to files

    def say(self, message: str) -> None:
        """A message of the supervisor itself."""
        for line in message.splitlines() or [""]:
            self.emit("huisheng", line)

    # -- lifecycle

    def run(self, health_timeout: float, before_layer: Callable[[int], None] | None = None) -> int:
        """Start everything, watch until a signal or a death, stop everything; the exit code.

        Must be called from the main thread (it installs SIGINT/SIGTERM/SIGHUP handlers).
        """
        self.acquire_lock()  # before anything else: a second supervisor must not touch the first's state
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            try:
                self.start(health_timeout, before_layer)
            except _StopRequested:
                return 0
            except StartError as exc:
                self.say(f"!!! startup failed: {exc}")
                return 1
            except Exception as exc:  # noqa: BLE001 - report any startup failure, then clean up
                self.say(f"!!! startup failed: {type(exc).__name__}: {exc}")
                return 1
            self.say(self.summary())
            return self.monitor()
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.release_lock()

    def acquire_lock(self) -> None:
        """Hold ``run/supervisor.lock`` for our lifetime: one supervisor per HUISHENG_HOME."""
        run_dir(self.home).mkdir(parents=True, exist_ok=True)
        handle = open(run_dir(self.home) / "supervisor.lock", "w")  # noqa: SIM115 - held until stop
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise AlreadyRunning(f"another huisheng supervisor is running in {self.home}") from None
        self._lock_handle = handle

    def release_lock(self) -> None:
        """Let another supervisor start."""
        if self._lock_handle:
            self._lock_handle.close()
            self._lock_handle = None

    def start(self, health_timeout: float, before_layer: Callable[[int], None] | None = None) -> None:
        """Start each layer and wait until it is healthy; raise :class:`StartError` if one is not."""
        (self.home / "log").mkdir(parents=True, exist_ok=True)
        self.write_state()
        for layer in sorted({s.layer for s in self.specs}):
            self._check_stop()
            if before_layer:
                before_layer(layer)
            batch = [s for s in self.specs if s.layer == layer]
            for spec in batch:
                self.spawn(spec)
            self.write_state()
            self.wait_healthy(batch, health_timeout)
        self.phase = "running"
        self.write_state()

    def spawn(self, spec: ChildSpec, previous: _Child | None = None) -> None:
        """Start one child in its own session, its output to its log (and our output if echoing)."""
        path = log_path(self.home, spec.name)
        with open(path, "ab") as log:
            log.write(f"=== huisheng: starting {spec.name} at {_now()}: {' '.join(spec.argv)}\n".encode())
            log.flush()  # before the child shares the file descriptor, or the header lands after its output
            offset = log.tell()
            # Detached: the child writes its log itself, so it survives a dead supervisor.
            # Foreground: a pipe, so a thread can copy each line to the log and to the terminal.
            stdout = subprocess.PIPE if self.echo else log
            popen = subprocess.Popen(
                list(spec.argv),
                env=dict(spec.env) if spec.env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = _Child(spec, popen, process_identity(popen.pid), offset, _now())
        if previous is not None:  # a restart keeps the count and the recent crashes
            child.restarts, child.crashes = previous.restarts + 1, previous.crashes
        if self.echo:
            child.pump = threading.Thread(target=self._pump, args=(child, path), name=f"log-{spec.name}", daemon=True)
            child.pump.start()
        self.children[spec.name] = child
        self.say(f"started {spec.name} (pid {popen.pid}){' at ' + spec.address if spec.address else ''}")

    def _pump(self, child: _Child, path: Path) -> None:
        """Copy a child's output line by line to its log file and, prefixed, to our output."""
        with open(path, "ab") as log:
            for raw in iter(child.popen.stdout.readline, b""):
                log.write(raw)
                log.flush()
                if self.echo:
                    self.emit(child.spec.name, raw.decode("utf-8", "replace").rstrip("\r\n"))
        child.popen.stdout.close()

    def wait_healthy(self, specs: Iterable[ChildSpec], timeout: float) -> None:
        """Block until every spec is healthy; fail at once if one dies, or after ``timeout``."""
        pending = {s.name: "not probed yet" for s in specs}
        deadline = time.monotonic() + timeout
        while pending:
            self._check_stop()
            for name in list(pending):
                child = self.children[name]
                code = child.popen.poll()
                if code is not None:
                    raise StartError(name, f"exited with code {code} while starting", self.tail(name))
                ok, detail = probe(child.spec.health, child.spec.address)
                if ok:
                    del pending[name]
                    self.say(f"{name} is healthy ({detail})")
                else:
                    pending[name] = detail
            if pending and time.monotonic() >= deadline:
                name, detail = next(iter(pending.items()))
                raise StartError(name, f"not healthy within {timeout:g} s ({detail})", self.tail(name))
            if pending:
                self.stop_event.wait(POLL_SECONDS)

    def monitor(self) -> int:
        """Watch until a stop is requested (exit 0) or the supervisor gives up on an essential child (exit 1).

        A dead child is started again after the policy's back-off; one that crashed ``max_crashes``
        times within ``window`` seconds is given up on.
        """
        while not self.stop_event.wait(POLL_SECONDS):
            for child in list(self.children.values()):
                if child.state == "running" and child.popen.poll() is not None:
                    if not self._crashed(child):
                        return 1
                elif child.state == "restarting" and time.monotonic() >= child.restart_at:
                    self.spawn(child.spec, previous=child)
                    self.write_state()
        return 0

    def _crashed(self, child: _Child) -> bool:
        """Record a child's crash and schedule its restart, or give up on it; False to stop the platform."""
        name, code, now = child.spec.name, child.popen.poll(), time.monotonic()
        if child.pump:
            child.pump.join(1.0)  # let its last lines reach the log first
        self.say(f"!!! {name} (pid {child.popen.pid}) exited unexpectedly with code {code}")
        self.say(format_failure(name, "its last output", self.tail(name)))
        child.crashes.append(now)
        while child.crashes and child.crashes[0] < now - self.restart.window:
            child.crashes.popleft()
        crashes = len(child.crashes)
        if crashes >= self.restart.max_crashes:
            child.state = "gave up"
            self.say(f"!!! giving up on {name}: {crashes} crashes within {self.restart.window:g} s")
            self.write_state()
            if child.spec.essential:
                self.say(f"!!! {name} is essential: stopping the platform")
                return False
            return True
        delay = self.restart.delay(crashes)
        child.state, child.restart_at = "restarting", now + delay
        self.say(f"restarting {name} in {delay:g} s ({crashes} crash(es) within {self.restart.window:g} s)")
        self.write_state()
        return True

    def request_stop(self) -> None:
        """Ask the supervisor to stop; asking a second time skips the SIGTERM grace period."""
        if self.stop_event.is_set():
            self.hurry.set()
        self.stop_event.set()

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.request_stop()

    def _check_stop(self) -> None:
        if self.stop_event.is_set():
            raise _StopRequested()

    def stop(self) -> None:
        """Stop the children, last layer first: SIGTERM, then SIGKILL after ``stop_timeout``."""
        self.phase = "stopping"
        if self.children:
            self.write_state()
            self.say("stopping ...")
        for layer in sorted({c.spec.layer for c in self.children.values()}, reverse=True):
            batch = [c for c in self.children.values() if c.spec.layer == layer]
            targets = [Target(c.spec.name, c.popen.pid, lambda c=c: c.popen.poll() is None) for c in batch
                       if c.state == "running"]
            terminate(targets, self.stop_timeout, self.say, self.hurry)
            for child in batch:
                child.popen.wait()
                if child.pump:
                    child.pump.join(1.0)
        if self.children:
            self.say("stopped")
        self.children.clear()
        clear_state(self.home)

    # -- reporting

    def tail(self, name: str) -> str:
        """This run's last log lines of one child."""
        child = self.children.get(name)
        return log_tail(log_path(self.home, name), offset=child.log_offset if child else 0)

    def summary(self) -> str:
        """What is up and where, printed once everything is healthy."""
        lines = [f"all {len(self.children)} processes are healthy:"]
        for spec in self.specs:
            pid = self.children[spec.name].popen.pid
            lines.append(f"  {spec.name:<{self._width}}  pid {pid:<7}  {spec.address or ''}")
        return "\n".join(lines)

    def write_state(self) -> None:
        """Record what runs, for ``status`` and ``down`` in other shells."""
        children = []
        for spec in self.specs:
            child = self.children.get(spec.name)
            record = {k: v for k, v in asdict(spec).items() if k != "env"}
            record.update(
                pid=child.popen.pid if child else None,
                identity=child.identity if child else None,
                log=str(log_path(self.home, spec.name)),
                log_offset=child.log_offset if child else 0,
                started_at=child.started_at if child else None,
                state=child.state if child else "pending",
                restarts=child.restarts if child else 0,
            )
            children.append(record)
        state = {
            "version": STATE_VERSION,
            "home": str(self.home),
            "supervisor": {"pid": os.getpid(), "identity": process_identity(os.getpid())},
            "started_at": self.info.get("started_at") or _now(),
            "stop_timeout": self.stop_timeout,
            "phase": self.phase,
            "children": children,
            **{k: v for k, v in self.info.items() if k != "started_at"},
        }
        self.info["started_at"] = state["started_at"]
        write_state(self.home, state)


# --------------------------------------------------------------------------- from another shell


def child_report(record: Mapping) -> dict:
    """Name, pid, alive, health (healthy/unhealthy/down), state, restarts and address of one recorded child."""
    state = record.get("state", "running")
    alive = state == "running" and pid_alive(record.get("pid"), record.get("identity"))
    if alive:
        ok, detail = probe(record.get("health", "http"), record.get("address"))
        health = "healthy" if ok else "unhealthy"
    else:
        health = "down"
        detail = {"restarting": "crashed; restarting", "gave up": "crashed too often; the supervisor gave up"}.get(
            state, "not running")
    return {
        "name": record["name"],
        "pid": record.get("pid"),
        "alive": alive,
        "health": health,
        "state": state,
        "restarts": record.get("restarts", 0),
        "detail": detail,
        "address": record.get("address"),
    }


def platform_status(home: Path, planned: Sequence[ChildSpec] = ()) -> dict:
    """The status of the platform in ``home``; ``planned`` names what would run when nothing does."""
    state = read_state(home)
    if state is None:
        rows = [
            {"name": s.name, "pid": None, "alive": False, "health": "down", "state": "stopped", "restarts": 0,
             "detail": "not running", "address": s.address}
            for s in planned
        ]
        return {"running": False, "healthy": False, "supervisor": None, "processes": rows}
    with ThreadPoolExecutor(max_workers=8) as pool:  # probes time out independently
        rows = list(pool.map(child_report, state.get("children", [])))
    supervisor = dict(state.get("supervisor") or {})
    supervisor["alive"] = pid_alive(supervisor.get("pid"), supervisor.get("identity"))
    running = supervisor["alive"] or any(r["alive"] for r in rows)
    return {
        "running": running,
        # Without its supervisor nobody would notice the next crash: that is not healthy.
        "healthy": supervisor["alive"] and bool(rows) and all(r["health"] == "healthy" for r in rows),
        "supervisor": supervisor,
        "phase": state.get("phase"),
        "started_at": state.get("started_at"),
        "mongo_uri": state.get("mongo_uri"),
        "processes": rows,
    }


def stop_platform(home: Path, say: Callable[[str], None] = print, wait: float | None = None) -> bool:
    """Stop what ``up`` started in ``home``; False if nothing was running.

    The supervisor is asked first (SIGTERM) since it knows the stop order. If it
    is dead, or does not finish within ``wait`` seconds, the recorded children
    are stopped directly with the same SIGTERM-then-SIGKILL policy.
    """
    state = read_state(home)
    if state is None:
        return False
    stop_timeout = float(state.get("stop_timeout", 10.0))
    children = state.get("children", [])
    supervisor = state.get("supervisor") or {}
    sup_alive = pid_alive(supervisor.get("pid"), supervisor.get("identity"))
    leftovers = [c for c in children if pid_alive(c.get("pid"), c.get("identity"))]
    if not sup_alive and not leftovers:
        clear_state(home)
        return False
    if sup_alive:
        layers = len({c.get("layer", 1) for c in children}) or 1
        budget = wait if wait is not None else layers * stop_timeout + 5.0
        say(f"stopping the supervisor (pid {supervisor['pid']}) ...")
        identity = supervisor.get("identity")
        sup = Target("supervisor", supervisor["pid"], lambda: pid_alive(supervisor["pid"], identity), group=False)
        terminate([sup], budget, say)
    _stop_leftovers(children, stop_timeout, say)
    clear_state(home)
    return True


def _stop_leftovers(children: Sequence[Mapping], stop_timeout: float, say: Callable[[str], None]) -> None:
    """Stop recorded children still alive (their supervisor is gone), last layer first."""
    alive = [c for c in children if pid_alive(c.get("pid"), c.get("identity"))]
    if alive:
        names = ", ".join(c["name"] for c in alive)
        say(f"the supervisor is gone; stopping {len(alive)} process(es) directly: {names}")
    for layer in sorted({c.get("layer", 1) for c in alive}, reverse=True):
        targets = [
            Target(c["name"], c["pid"], lambda c=c: pid_alive(c["pid"], c.get("identity")))
            for c in alive
            if c.get("layer", 1) == layer
        ]
        terminate(targets, stop_timeout, say)


def running_problem(home: Path) -> str | None:
    """Why ``up`` must not start in ``home`` (something still runs there), or None; drops stale state."""
    state = read_state(home)
    if state is None:
        return None
    supervisor = state.get("supervisor") or {}
    if pid_alive(supervisor.get("pid"), supervisor.get("identity")):
        return f"the platform is already running (supervisor pid {supervisor['pid']}); see `huisheng status`"
    leftovers = [c["name"] for c in state.get("children", []) if pid_alive(c.get("pid"), c.get("identity"))]
    if leftovers:
        return f"processes of a previous run are still alive ({', '.join(leftovers)}); run `huisheng down` first"
    clear_state(home)
    return None


# --------------------------------------------------------------------------- detached start


def spawn_daemon(home: Path, argv: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen:
    """Start a detached supervisor (its own session, output to ``log/supervisor.log``)."""
    path = log_path(home, SUPERVISOR_LOG)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as log:
        log.write(f"=== huisheng: detached supervisor starting at {_now()}\n".encode())
        log.flush()  # before the daemon shares the file descriptor
        return subprocess.Popen(
            list(argv),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_until_healthy(home: Path, daemon: subprocess.Popen, timeout: float, offset: int = 0) -> tuple[bool, str]:
    """Wait until every child recorded by the detached ``daemon`` is healthy.

    Returns ``(True, "")``, or ``(False, reason)`` where the reason names the
    first child that is not healthy and quotes its last log lines (or the
    supervisor's own log if the supervisor gave up first).
    """
    deadline = time.monotonic() + timeout
    rows: list[dict] = []
    while time.monotonic() < deadline:
        code = daemon.poll()
        if code is not None:
            tail = log_tail(log_path(home, SUPERVISOR_LOG), lines=40, offset=offset)
            return False, format_failure("supervisor", f"exited with code {code} before the platform was up", tail)
        state = read_state(home) or {}
        records = state.get("children") or []
        rows = [child_report(r) for r in records]
        # Our own probes must pass, and the supervisor must have finished starting (phase "running"),
        # so that what we report is what it now watches.
        if rows and all(r["health"] == "healthy" for r in rows) and state.get("phase") == "running":
            return True, ""
        time.sleep(POLL_SECONDS)
    return False, _not_healthy_reason(read_state(home) or {}, rows, timeout)


def _not_healthy_reason(state: Mapping, rows: Sequence[dict], timeout: float) -> str:
    records = {r["name"]: r for r in state.get("children") or []}
    for row in rows:
        if row["health"] != "healthy":
            record = records.get(row["name"], {})
            reason = f"not healthy within {timeout:g} s ({row['detail']})"
            if not record.get("pid"):
                reason = f"not started within {timeout:g} s (earlier processes were not healthy)"
            tail = (
                log_tail(Path(record.get("log", "")), offset=record.get("log_offset", 0)) if record.get("pid") else ""
            )
            return format_failure(row["name"], reason, tail)
    return f"the supervisor recorded no processes within {timeout:g} s"

"""``huisheng up``'s runner over supervisord: layers behind health probes, the run state
(``$HUISHENG_HOME/run/platform.json``) and the stop on an essential child given up on (docs/architecture.md).

Every spawn goes through :func:`launch`, which counts it: polling supervisord would miss a quick crash.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xmlrpc.client
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import ProxyHandler, build_opener

if TYPE_CHECKING:
    from kernel.config import Settings

POLL_SECONDS = 0.2
SUPERVISOR_LOG = "supervisor"
# An empty ProxyHandler: health probes of 127.0.0.1 must never go through $http_proxy.
_OPENER = build_opener(ProxyHandler({}))
# supervisord's process states, as `huisheng status` names them.
STATES = {"STARTING": "running", "RUNNING": "running", "BACKOFF": "restarting", "EXITED": "restarting",
          "FATAL": "gave up", "STOPPING": "stopping", "STOPPED": "stopped", "UNKNOWN": "unknown"}


@dataclass(frozen=True)
class ChildSpec:
    """One process to run. Lower ``layer`` starts first and stops last.

    ``health`` says how readiness is probed at ``address``: ``"http"`` (GET ``/health`` and ``/ready`` both
    200), ``"live"`` (``/health`` alone: a stand-in with no dependencies has no ``/ready``), ``"mongo"`` (a
    ``ping``) or ``"none"``.
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
        parts = urlsplit(self.address or "")
        return (parts.hostname or "127.0.0.1", parts.port) if parts.port else None

    @property
    def program(self) -> str:
        """Its name in supervisord: ``layer1:tickets-2`` (``#`` starts a comment in supervisord's config)."""
        return f"layer{self.layer}:{self.name.replace('#', '-')}"


class StartError(RuntimeError):
    """A child did not come up; carries its name and the tail of its log."""

    def __init__(self, name: str, reason: str, log_tail: str = "") -> None:
        super().__init__(format_failure(name, reason, log_tail))


class AlreadyRunning(RuntimeError):
    """Another ``up`` holds the lock of this HUISHENG_HOME."""


def format_failure(name: str, reason: str, log_tail: str) -> str:
    """The human report of a failed child: what happened and its last log lines."""
    text = f"{name}: {reason}"
    if log_tail:
        text += f"\n--- last lines of {name}'s log ---\n{log_tail}\n--- end of {name}'s log ---"
    return text


def run_dir(home: Path) -> Path:
    return Path(home) / "run"


def log_path(home: Path, name: str) -> Path:
    """The append-only log of one child (or ``supervisor``: the runner's and supervisord's own)."""
    return Path(home) / "log" / f"{name}.log"


def state_path(home: Path) -> Path:
    return run_dir(home) / "platform.json"


def socket_path(home: Path) -> str:
    """supervisord's control socket: under the temp dir, as a unix socket's path must stay short."""
    digest = hashlib.sha1(str(Path(home).absolute()).encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"huisheng-{digest}.sock")


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


def log_tail(path: Path, lines: int = 20, offset: int = 0) -> str:
    """The last ``lines`` lines written to ``path`` after byte ``offset`` (this run's part)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(offset, handle.seek(0, os.SEEK_END) - 64 * 1024))
            data = handle.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def process_identity(pid: int) -> str | None:
    """The process's start time in clock ticks: with the pid, it tells a recycled pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return stat[19] if stat[0] not in ("Z", "X") else None


def pid_alive(pid: int | None, identity: str | None = None) -> bool:
    """True if ``pid`` runs, is not a zombie and (if given) still has start time ``identity``."""
    now = process_identity(pid) if pid else None
    return now is not None and (identity is None or now == identity)


def _alive(record: Mapping) -> bool:
    return pid_alive(record.get("pid"), record.get("identity"))


def terminate(name: str, pid: int, alive: Callable[[], bool], timeout: float, say: Callable[[str], None]) -> None:
    """SIGTERM ``pid``, and SIGKILL it if it is still ``alive`` after ``timeout`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if sig == signal.SIGKILL:
            say(f"{name} (pid {pid}) did not stop within {timeout:g} s: sending SIGKILL")
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not alive():
            return


def launch(program_file: str) -> None:
    """What supervisord runs for a child (``python -m kernel.cli.supervisor exec FILE``): count the start, mark
    the log, then become the child. FILE holds its argv and environment: supervisord's own ``environment=``
    would need every value quoted for its config syntax."""
    program = json.loads(Path(program_file).read_text())
    log = Path(program["log"])
    offset = log.stat().st_size if log.exists() else 0
    with open(program_file + ".starts", "a") as starts:
        starts.write(json.dumps({"pid": os.getpid(), "at": _now(), "log_offset": offset}) + "\n")
    print(f"=== huisheng: starting {program['name']} at {_now()}: {' '.join(program['argv'])}", flush=True)
    os.execvpe(program["argv"][0], program["argv"], program["env"] if program["env"] is not None else os.environ)


def http_health(address: str, timeout: float = 1.0, paths: Sequence[str] = ("/health", "/ready")) -> tuple[bool, str]:
    """GET ``address``/health and ``address``/ready (or ``paths``); healthy only if each answers 200."""
    for path in paths:
        try:
            with _OPENER.open(address.rstrip("/") + path, timeout=timeout) as response:
                code = response.status
        except HTTPError as exc:
            code = exc.code
        except (URLError, OSError) as exc:
            return False, f"GET {path}: {getattr(exc, 'reason', exc)}"
        if code != 200:
            return False, f"GET {path} -> {code}"
    return True, f"GET {', '.join(paths)} -> 200"


def probe(health: str, address: str | None) -> tuple[bool, str]:
    """Probe one child's readiness according to its ``health`` kind (a second at most)."""
    if health in ("http", "live") and address:
        return http_health(address, 1.0, ("/health", "/ready") if health == "http" else ("/health",))
    if health == "mongo" and address:
        from kernel.cli.infra import mongo_ping  # lazy: pymongo is slow to import

        return (True, "ping ok") if mongo_ping(address, 1.0) else (False, "no answer to ping")
    return True, "not probed"


def restart_policy(environ: Mapping[str, str]) -> tuple[int, int]:
    """``(startretries, startsecs)`` from ``HUISHENG_RESTART_LIMIT`` (5) and ``HUISHENG_START_SECONDS`` (10).

    >>> restart_policy({"HUISHENG_RESTART_LIMIT": "2"})
    (2, 10)
    """
    retries, seconds = int(environ.get("HUISHENG_RESTART_LIMIT", 5)), int(environ.get("HUISHENG_START_SECONDS", 10))
    if retries < 0 or seconds < 0:
        raise ValueError("HUISHENG_RESTART_LIMIT and HUISHENG_START_SECONDS must not be negative")
    return retries, seconds


def supervisord_config(home: Path, specs: Sequence[ChildSpec], stop_timeout: float, environ: Mapping[str, str],
                       silent: bool) -> str:
    """supervisord's configuration: every program declared, none started (the runner gates them)."""
    home = Path(home).absolute()
    retries, start_seconds = restart_policy(environ)

    def path(value: object) -> str:  # %-signs would be read as supervisord's %(here)s-style expansions
        return str(value).replace("%", "%%")

    sock = socket_path(home)
    lines = [
        f"[unix_http_server]\nfile={sock}\nchmod=0700",
        f"[supervisord]\nnodaemon=true\nsilent={str(silent).lower()}\nlogfile={path(log_path(home, SUPERVISOR_LOG))}"
        f"\nlogfile_maxbytes=0\npidfile={path(run_dir(home) / 'supervisord.pid')}\nidentifier=huisheng",
        "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory=supervisor.rpcinterface:make_main_rpcinterface",
        f"[supervisorctl]\nserverurl=unix://{sock}",
    ]
    for layer in sorted({s.layer for s in specs}):
        names = ",".join(s.program.partition(":")[2] for s in specs if s.layer == layer)
        lines.append(f"[group:layer{layer}]\nprograms={names}\npriority={100 + layer}")
    for spec in specs:
        lines.append(
            f"[program:{spec.program.partition(':')[2]}]\n"
            f"command={path(f'{sys.executable} -m {__name__} exec {program_file(home, spec)}')}\n"
            f"directory={path(os.getcwd())}\nautostart=false\nautorestart=true\nstartsecs={start_seconds}\n"
            f"startretries={retries}\nstopsignal=TERM\nstopwaitsecs={math.ceil(stop_timeout)}\nstopasgroup=true\n"
            f"killasgroup=true\nredirect_stderr=true\nstdout_logfile={path(log_path(home, spec.name))}\n"
            "stdout_logfile_maxbytes=0\nstdout_logfile_backups=0"
        )
    return "\n\n".join(lines) + "\n"


def program_file(home: Path, spec: ChildSpec) -> str:
    return str(run_dir(home) / "programs" / f"{spec.program.partition(':')[2]}.json")


def control(home: Path) -> Any:
    """An XML-RPC proxy of the supervisord of ``home``; a new one each time, as one is not reusable after an
    error."""
    from supervisor.xmlrpc import SupervisorTransport  # lazy: only `up` talks to supervisord

    transport = SupervisorTransport(None, None, f"unix://{socket_path(home)}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor


def starts(home: Path, spec: ChildSpec) -> list[dict]:
    """Every start of the child this run, as :func:`launch` recorded it."""
    try:
        return [json.loads(line) for line in Path(program_file(home, spec) + ".starts").read_text().splitlines()]
    except FileNotFoundError:
        return []


class Runner:
    """Starts supervisord, starts its programs layer by layer behind health, watches, stops; see above."""

    def __init__(self, home: Path, specs: Sequence[ChildSpec], *, stop_timeout: float = 10.0, echo: bool = True,
                 info: Mapping[str, object] | None = None) -> None:
        self.home = Path(home).absolute()
        self.specs = sorted(specs, key=lambda s: s.layer)  # stable: keeps the given order in a layer
        self.layers = sorted({s.layer for s in self.specs})
        self.stop_timeout, self.echo = stop_timeout, echo
        self.info = {"started_at": _now(), **(info or {})}
        self.stop_event = threading.Event()
        self.phase = "starting"
        self.daemon: subprocess.Popen | None = None  # supervisord
        self.rows: dict[str, dict] = {}  # name -> pid, identity, state, restarts, log_offset
        self.before: dict[str, dict] = {}  # the rows as the previous refresh left them
        self._width = max([len(s.name) for s in self.specs] + [len("huisheng")])
        self._echoed: dict[str, int] = {}  # bytes of each child's log already copied to our output

    def say(self, message: str) -> None:
        for line in message.splitlines() or [""]:
            print(f"{'huisheng':<{self._width}} | {line}", flush=True)

    def run(self, health_timeout: float, before_layer: Callable[[int], None] | None = None) -> int:
        """Start everything, watch until a signal or an essential child is given up on, stop; the exit code."""
        run_dir(self.home).mkdir(parents=True, exist_ok=True)
        lock = open(run_dir(self.home) / "supervisor.lock", "w")  # noqa: SIM115 - held while we run
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise AlreadyRunning(f"another huisheng supervisor is running in {self.home}") from None
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda *_: self.stop_event.set())
        try:
            try:
                self.start(health_timeout, before_layer)
            except Exception as exc:  # noqa: BLE001 - report any startup failure, then clean up
                reason = str(exc) if isinstance(exc, StartError) else f"{type(exc).__name__}: {exc}"
                self.say(f"!!! startup failed: {reason}")
                return 1
            if self.stop_event.is_set():
                return 0
            self.say(f"all {len(self.specs)} processes are healthy:")
            for spec in self.specs:
                self.say(f"  {spec.name:<{self._width}}  pid {self.rows[spec.name]['pid']!s:<7}  {spec.address or ''}")
            return self.monitor()
        finally:
            self.stop()
            lock.close()

    def start(self, health_timeout: float, before_layer: Callable[[int], None] | None) -> None:
        """Start supervisord, then each layer once the previous one is healthy, all within ``health_timeout``."""
        deadline = time.monotonic() + health_timeout
        (self.home / "log").mkdir(parents=True, exist_ok=True)
        (run_dir(self.home) / "programs").mkdir(parents=True, exist_ok=True)
        for spec in self.specs:
            self.rows[spec.name] = {"pid": None, "identity": None, "state": "pending", "restarts": 0, "log_offset": 0}
            file, log = Path(program_file(self.home, spec)), log_path(self.home, spec.name)
            Path(f"{file}.starts").unlink(missing_ok=True)
            file.touch(mode=0o600)  # the environment holds the platform's secret
            file.write_text(json.dumps({"name": spec.name, "argv": list(spec.argv), "log": str(log),
                                        "env": dict(spec.env) if spec.env is not None else None}))
            self._echoed[spec.name] = log.stat().st_size if log.exists() else 0
        conf = run_dir(self.home) / "supervisord.conf"
        conf.write_text(supervisord_config(self.home, self.specs, self.stop_timeout, os.environ, not self.echo))
        Path(socket_path(self.home)).unlink(missing_ok=True)
        # Its own session: a Ctrl-C reaches only us, and we stop the layers in order.
        self.daemon = subprocess.Popen([sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)],
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        self.write_state()
        while not self.stop_event.is_set():
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                raise StartError("supervisord", f"did not answer on {socket_path(self.home)} (exit code "
                                 f"{self.daemon.poll()})", log_tail(log_path(self.home, SUPERVISOR_LOG)))
            try:
                control(self.home).getState()
                break
            except OSError:
                time.sleep(POLL_SECONDS)
        for layer in self.layers:
            if self.stop_event.is_set():
                return
            if before_layer:
                before_layer(layer)
            batch = [s for s in self.specs if s.layer == layer]
            for spec in batch:
                control(self.home).startProcess(spec.program, False)
                self.say(f"started {spec.name}{' at ' + spec.address if spec.address else ''}")
            self.wait_healthy(batch, deadline, health_timeout)
        self.phase = "running"
        self.write_state()

    def wait_healthy(self, batch: Sequence[ChildSpec], deadline: float, timeout: float) -> None:
        """Block until every child of ``batch`` is healthy; fail at once if one exits, or at ``deadline``."""
        pending = {s.name: "not probed yet" for s in batch}
        while pending and not self.stop_event.is_set():
            infos = self.refresh()
            for spec in (s for s in batch if s.name in pending):
                info = infos[spec.program]
                if info["statename"] in ("BACKOFF", "EXITED", "FATAL"):
                    raise StartError(spec.name, f"exited with code {info['exitstatus']} while starting",
                                     self.tail(spec.name))
                ok, pending[spec.name] = probe(spec.health, spec.address)
                if ok:
                    self.say(f"{spec.name} is healthy ({pending.pop(spec.name)})")
            if pending and time.monotonic() >= deadline:
                name, detail = next(iter(pending.items()))
                raise StartError(name, f"not healthy within {timeout:g} s ({detail})", self.tail(name))
            self.stop_event.wait(POLL_SECONDS)

    def monitor(self) -> int:
        """Watch until a stop is requested (0) or an essential child is given up on (1)."""
        while not self.stop_event.wait(POLL_SECONDS):
            if self.daemon is not None and self.daemon.poll() is not None:
                self.say(f"!!! supervisord exited with code {self.daemon.returncode}: stopping")
                return 1
            try:
                self.refresh()
            except (OSError, xmlrpc.client.Error) as exc:  # a busy or restarting supervisord: ask again next time
                self.say(f"supervisord did not answer ({type(exc).__name__}: {exc})")
                continue
            for spec in self.specs:
                row, before = self.rows[spec.name], self.before[spec.name]
                if row["state"] == "gave up" and before["state"] != "gave up":
                    self.say(format_failure(spec.name, "its last output", self.tail(spec.name)))
                    self.say(f"!!! giving up on {spec.name}: it kept exiting as it started ({row['restarts']} "
                             "restarts)")
                    if spec.essential:
                        self.say(f"!!! {spec.name} is essential: stopping the platform")
                        return 1
                elif row["restarts"] > before["restarts"]:
                    self.say(f"!!! {spec.name} exited unexpectedly; supervisord restarts it ({row['restarts']} "
                             "restarts)")
        return 0

    def refresh(self) -> dict[str, dict]:
        """Read supervisord's view into the run state (and, in the foreground, echo new output); it, by program."""
        infos = {f"{i['group']}:{i['name']}": i for i in control(self.home).getAllProcessInfo()}
        self.before = {name: dict(row) for name, row in self.rows.items()}
        for spec in self.specs:
            info, row, began = infos[spec.program], self.rows[spec.name], starts(self.home, spec)
            pid = info["pid"] or row["pid"]  # between two starts: the last one's, shown as not alive
            row.update(state=STATES.get(info["statename"], "unknown") if began else "pending", pid=pid,
                       restarts=max(0, len(began) - 1), log_offset=began[-1]["log_offset"] if began else 0,
                       identity=process_identity(pid) if pid and pid != row["pid"] else row["identity"])
        if self.rows != self.before:
            self.write_state()
        if self.echo:
            self.copy_output()
        return infos

    def copy_output(self) -> None:
        """Foreground: each child's new log lines, prefixed with its name."""
        for spec in self.specs:
            try:
                with open(log_path(self.home, spec.name), "rb") as log:
                    log.seek(self._echoed[spec.name])
                    data = log.read()
            except FileNotFoundError:
                continue
            complete = data[: data.rfind(b"\n") + 1]
            self._echoed[spec.name] += len(complete)
            for line in complete.decode("utf-8", "replace").splitlines():
                print(f"{spec.name:<{self._width}} | {line}", flush=True)

    def stop(self) -> None:
        """SIGTERM supervisord: it stops the layers last first, a layer at a time (SIGTERM, SIGKILL after
        ``stop_timeout``), then exits; it is killed if it has not within that budget."""
        self.phase = "stopping"
        if self.daemon is None:
            return
        self.write_state()
        self.say("stopping ...")
        budget = len(self.layers) * self.stop_timeout + 5
        terminate("supervisord", self.daemon.pid, lambda: self.daemon.poll() is None, budget, self.say)
        if self.echo:
            self.copy_output()
        self.say("stopped")
        state_path(self.home).unlink(missing_ok=True)

    def tail(self, name: str) -> str:
        return log_tail(log_path(self.home, name), offset=self.rows[name]["log_offset"])

    def write_state(self) -> None:
        """Record what runs, for ``status`` and ``down`` in other shells."""
        daemon = self.daemon.pid if self.daemon else None
        write_state(self.home, {
            **self.info, "home": str(self.home), "phase": self.phase, "stop_timeout": self.stop_timeout,
            "supervisor": {"pid": os.getpid(), "identity": process_identity(os.getpid())},
            "supervisord": {"pid": daemon, "identity": process_identity(daemon) if daemon else None},
            "children": [{"name": s.name, "address": s.address, "health": s.health, "layer": s.layer,
                          "essential": s.essential, "log": str(log_path(self.home, s.name)), **self.rows[s.name]}
                         for s in self.specs],
        })


# --------------------------------------------------------------------------- from another shell


def child_report(record: Mapping) -> dict:
    """Name, pid, alive, health (healthy/unhealthy/down), state, restarts and address of one recorded child."""
    state = record.get("state", "running")
    alive = state == "running" and _alive(record)
    if alive:
        ok, detail = probe(record.get("health", "http"), record.get("address"))
    else:
        ok, detail = False, {"restarting": "crashed; restarting",
                             "gave up": "crashed too often; the supervisor gave up"}.get(state, "not running")
    return {"name": record["name"], "pid": record.get("pid"), "alive": alive,
            "health": ("healthy" if ok else "unhealthy") if alive else "down", "state": state,
            "restarts": record.get("restarts", 0), "detail": detail, "address": record.get("address")}


def platform_status(home: Path, planned: Sequence[ChildSpec] = ()) -> dict:
    """The status of the platform in ``home``; ``planned`` names what would run when nothing does."""
    state = read_state(home)
    if state is None:
        rows = [{"name": s.name, "pid": None, "alive": False, "health": "down", "state": "stopped", "restarts": 0,
                 "detail": "not running", "address": s.address} for s in planned]
        return {"running": False, "healthy": False, "supervisor": None, "processes": rows}
    with ThreadPoolExecutor(max_workers=8) as pool:  # probes time out independently
        rows = list(pool.map(child_report, state.get("children", [])))
    supervisor = dict(state.get("supervisor") or {})
    supervisor["alive"] = _alive(supervisor)
    return {
        "running": supervisor["alive"] or any(r["alive"] for r in rows),
        # Without its runner nobody would notice an essential child given up on: that is not healthy.
        "healthy": supervisor["alive"] and bool(rows) and all(r["health"] == "healthy" for r in rows),
        "supervisor": supervisor,
        **{key: state.get(key) for key in ("phase", "started_at", "mongo_uri")},
        "processes": rows,
    }


def stop_platform(home: Path, say: Callable[[str], None] = print, wait: float | None = None) -> bool:
    """Stop what ``up`` started in ``home``; False if nothing was running.

    The runner is asked first (SIGTERM) since it stops the layers in order. If it is gone, supervisord is (it
    stops its children the same way); if that is gone too, the recorded children are stopped directly.
    """
    state = read_state(home)
    if state is None:
        return False
    timeout = float(state.get("stop_timeout", 10.0))
    children = sorted(state.get("children", []), key=lambda c: -c.get("layer", 1))
    runner, daemon = state.get("supervisor") or {}, state.get("supervisord") or {}
    budget = len({c.get("layer", 1) for c in children}) * timeout + 5
    if _alive(runner):
        say(f"stopping the supervisor (pid {runner['pid']}) ...")
        terminate("the supervisor", runner["pid"], lambda: _alive(runner), budget if wait is None else wait, say)
    elif _alive(daemon) or any(_alive(c) for c in children):
        say("the supervisor is gone; stopping what it started directly")
    else:
        state_path(home).unlink(missing_ok=True)
        return False
    if _alive(daemon):  # it stops its children in order, as the runner would have asked it to
        terminate("supervisord", daemon["pid"], lambda: _alive(daemon), budget, say)
    for child in filter(_alive, children):
        terminate(child["name"], child["pid"], lambda c=child: _alive(c), timeout, say)
    state_path(home).unlink(missing_ok=True)
    return True


def resolve_uri(settings: Settings, given: str | None = None) -> tuple[str | None, str]:
    """The database URI and where it came from: ``given`` (``--to-uri``, ``--uri``), ``MONGO_URI`` or the
    ``huisheng up`` running in ``settings.home`` (its runner or one of its processes alive); else ``(None, "")``."""
    if given or settings.mongo_uri:
        return (given, "--to-uri") if given else (settings.mongo_uri, "MONGO_URI")
    state = read_state(Path(settings.home).absolute()) or {}
    if state.get("mongo_uri") and any(map(_alive, [state.get("supervisor") or {}, *state.get("children", [])])):
        return state["mongo_uri"], "the running platform"
    return None, ""


def running_problem(home: Path) -> str | None:
    """Why ``up`` must not start in ``home`` (something still runs there), or None; drops stale state."""
    state = read_state(home) or {}
    if _alive(state.get("supervisor") or {}):
        return f"the platform is already running (supervisor pid {state['supervisor']['pid']}); see `huisheng status`"
    records = [{"name": "supervisord", **(state.get("supervisord") or {})}, *state.get("children", [])]
    leftovers = [record["name"] for record in records if _alive(record)]
    if leftovers:
        return f"processes of a previous run are still alive ({', '.join(leftovers)}); run `huisheng down` first"
    state_path(home).unlink(missing_ok=True)
    return None


def start_detached(home: Path, argv: Sequence[str], env: Mapping[str, str], timeout: float) -> bool:
    """Start a detached runner (its own session, output to ``log/supervisor.log``) and wait until it has every
    child healthy. The runner keeps the deadline and says what failed; if it exits first, its output is shown on
    stderr and False returned."""
    from kernel.cli import complain, say

    path = log_path(home, SUPERVISOR_LOG)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as log:
        offset = log.seek(0, os.SEEK_END)
        log.write(f"=== huisheng: detached supervisor starting at {_now()}\n".encode())
        log.flush()  # before the daemon shares the file descriptor
        daemon = subprocess.Popen(list(argv), env=dict(env), stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    say(f"supervisor started (pid {daemon.pid}); waiting up to {timeout:g} s for health")
    deadline = time.monotonic() + timeout + 15  # the runner's own deadline comes first, unless it hangs
    while daemon.poll() is None and time.monotonic() < deadline:
        if (read_state(home) or {}).get("phase") == "running":
            return True
        time.sleep(POLL_SECONDS)
    why = f"exited with code {daemon.returncode}" if daemon.poll() is not None else "hung"
    lines = log_tail(path, 400, offset).splitlines()
    # From the runner's own diagnosis (its child's log tail included); what supervisord logged before says less.
    first = max([i for i, line in enumerate(lines) if "!!! startup failed" in line] or [max(0, len(lines) - 60)])
    complain(f"the platform did not come up:\n{format_failure('supervisor', why, chr(10).join(lines[first:]))}")
    complain("stopping what was started ...")
    stop_platform(home, say=complain)
    # It may not have recorded anything yet: stop it by its Popen as well.
    terminate("supervisor", daemon.pid, lambda: daemon.poll() is None, timeout + 5, complain)
    daemon.wait()
    complain("stopped")
    return False


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "exec":
        launch(sys.argv[2])
    print("usage: python -m kernel.cli.supervisor exec PROGRAM_FILE (supervisord runs this)", file=sys.stderr)
    sys.exit(2)

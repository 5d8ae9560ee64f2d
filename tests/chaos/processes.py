"""Processes the fault suite starts itself and may kill: a database server and service instances.

Each runs in a process group of its own (so a ``SIGKILL`` takes all of it, and a
Ctrl-C in the terminal does not), logs to a file under the test's directory, and
is remembered so that whatever happens to the run nothing outlives it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kernel.cli.infra import find_secantusd, mongo_ping, secantus_argv, secantus_uri
from kernel.cli.supervisor import http_health, pid_alive

ROOT = Path(__file__).resolve().parents[2]
_LIVE: set[Process] = set()


class ProcessFailed(RuntimeError):
    """A process did not come up; the message quotes its log."""


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def signal_pid(pid: int, sig: int) -> None:
    """Signal a process we did not start (one of ``huisheng up``'s children); gone is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


class Process:
    """One child process: start and wait until ready, SIGKILL, SIGTERM with a timed exit, pause."""

    def __init__(self, label: str, argv: list[str], env: dict[str, str], log: Path):
        self.label = label
        self.argv = argv
        self.env = env
        self.log = log
        self.popen: subprocess.Popen | None = None
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def ready(self) -> bool:  # pragma: no cover - overridden
        return True

    def start(self, timeout: float = 60.0) -> Process:
        """Launch and wait until ready."""
        self.launch()
        self.wait_ready(timeout)
        return self

    def launch(self) -> Process:
        """Start the process without waiting for it to be ready."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as sink:
            sink.write(f"=== chaos: starting {self.label} ({self.starts})\n".encode())
            sink.flush()
            self.popen = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdin=subprocess.DEVNULL,
                                          stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        self.starts += 1
        _LIVE.add(self)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise ProcessFailed(f"{self.label} exited with {self.popen.returncode} while starting:\n"
                                    f"{log_tail(self.log)}")
            if self.ready():
                return
            time.sleep(0.1)
        raise ProcessFailed(f"{self.label} was not ready within {timeout:g} s:\n{log_tail(self.log)}")

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL, no warning: whatever the process was doing stops mid-instruction."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)

    def terminate(self, timeout: float) -> tuple[int | None, float]:
        """SIGTERM and wait up to ``timeout``: (exit code, or None if it had to be killed; seconds)."""
        if not self.alive():
            return self.popen.returncode if self.popen else None, 0.0
        started = time.monotonic()
        self.popen.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout), time.monotonic() - started

    def wait_exit(self, timeout: float) -> int | None:
        """The exit code within ``timeout``; else SIGKILL and None."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def pause(self) -> None:
        signal_pid(self.popen.pid, signal.SIGSTOP)

    def resume(self) -> None:
        signal_pid(self.popen.pid, signal.SIGCONT)

    def stop(self, timeout: float = 15.0) -> None:
        if self.alive():
            self.resume()
            self.terminate(timeout)
        _LIVE.discard(self)


class DatabaseServer(Process):
    """SecantusDB on a fixed port with its data on disk, so a restart finds what was written."""

    def __init__(self, storage: Path, port: int, log: Path):
        if find_secantusd() is None:
            raise ProcessFailed("secantusd-py not found: `pip install secantusdb==0.7.0b3` (make install)")
        # Exactly as `huisheng up` runs it (with --sync-on-commit: acknowledged writes survive a SIGKILL).
        argv = [*secantus_argv(port, storage), "--log-level", "WARNING"]
        super().__init__("secantusdb", argv, dict(os.environ), log)
        self.port = port
        self.uri = secantus_uri(port)

    def ready(self) -> bool:
        return mongo_ping(self.uri, timeout=0.5)


class ServiceInstance(Process):
    """One ``huisheng service NAME`` (or any nameko runner) answering ``/health`` and ``/ready`` on a port."""

    def __init__(self, label: str, argv: list[str], env: dict[str, str], port: int, log: Path):
        super().__init__(label, argv, env, log)
        self.port = port
        self.address = f"http://127.0.0.1:{port}"

    def ready(self) -> bool:
        return http_health(self.address, timeout=1.0)[0]


class Supervised:
    """A process ``huisheng up`` runs: what ``huisheng status --json`` says of it (pid, state, restarts)."""

    def __init__(self, label: str, pid: int, address: str | None, log: Path, state: str = "running",
                 restarts: int = 0, health: str | None = None):
        self.label = label
        self.pid = pid
        self.address = address
        self.log = log
        self.state = state  # "running", "restarting" (crashed, back-off), "gave up"
        self.restarts = restarts
        self.health = health

    def alive(self) -> bool:
        return self.state == "running" and self.pid is not None and pid_alive(self.pid)

    def kill(self) -> None:
        """SIGKILL its process group (each child runs in a session of its own), as the OOM killer would."""
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    def pause(self) -> None:
        signal_pid(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        signal_pid(self.pid, signal.SIGCONT)


def start_all(processes: list[Process], timeout: float = 60.0) -> None:
    """Launch every process, then wait until all are ready within one ``timeout``: they boot side by side
    (each mostly waits on imports and connections), so N of them take about as long as the slowest."""
    for process in processes:
        process.launch()
    deadline = time.monotonic() + timeout
    for process in processes:
        process.wait_ready(max(0.1, deadline - time.monotonic()))


def kill_all(processes: list[Process]) -> None:
    """SIGKILL each of ``processes`` (a paused one too) and reap it: the end of a test, where nothing checks
    how they stop (a graceful stop costs each one seconds)."""
    for process in processes:
        process.kill()
        _LIVE.discard(process)


def huisheng_argv(*args: str) -> list[str]:
    """The ``huisheng`` CLI of this checkout."""
    return [sys.executable, "-m", "kernel.cli.main", *args]


@atexit.register
def _kill_leftovers() -> None:
    for process in list(_LIVE):
        if process.alive():
            process.kill()  # SIGKILL also ends a paused (SIGSTOPped) process

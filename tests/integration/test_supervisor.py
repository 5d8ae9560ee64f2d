"""The supervisor behind ``huisheng up/down/status``, with tiny real child processes.

Each child is a few lines of ``http.server`` answering /health and /ready, told
by its environment how to misbehave (start slowly, never be ready, ignore
SIGTERM). The CLI itself runs as a real subprocess, exactly as a user runs it,
with ``--procfile`` injecting the children and ``--no-infra`` skipping the
broker and the database.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.request import ProxyHandler, build_opener

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = "kernel.cli.main"

CHILD = """
import http.server, os, signal, sys, time
mode = os.environ.get("CHILD_MODE", "ok")
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # like nameko reconnecting to a dead broker
booted = os.environ["CHILD_PIDFILE"] + ".booted"
if mode == "crash-on-restart" and os.path.exists(booted):
    print(f"child {os.environ['CHILD_NAME']} cannot start again", flush=True)
    sys.exit(3)
open(booted, "w").close()
with open(os.environ["CHILD_PIDFILE"], "w") as f:
    f.write(str(os.getpid()))
print(f"child {os.environ['CHILD_NAME']} booting in mode {mode}", flush=True)
time.sleep(float(os.environ.get("CHILD_DELAY", "0")))

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ready = not (mode == "unready" and self.path == "/ready")
        self.send_response(200 if ready else 503)
        self.end_headers()
        self.wfile.write(b"ok" if ready else b"not ready")

    def log_message(self, *args):
        pass

print(f"child {os.environ['CHILD_NAME']} listening", flush=True)
http.server.HTTPServer(("127.0.0.1", int(os.environ["CHILD_PORT"])), Handler).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def alive(pid: int) -> bool:
    """True unless the process is gone or a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


def healthy(port: int) -> bool:
    opener = build_opener(ProxyHandler({}))  # never through a proxy from the environment
    for path in ("/health", "/ready"):
        with opener.open(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            if response.status != 200:
                return False
    return True


class Platform:
    """A temporary HUISHENG_HOME, a procfile of stand-in children, and the CLI to drive them."""

    def __init__(self, tmp_path: Path):
        self.dir = tmp_path
        self.home = tmp_path / "home"
        self.script = tmp_path / "child.py"
        self.script.write_text(CHILD)
        self.ports: dict[str, int] = {}
        self.entries: list[dict] = []
        self.extra_env: dict[str, str] = {}

    def child(self, name: str, mode: str = "ok", delay: float = 0.0, layer: int = 1,
              health: str | None = None, essential: bool = True) -> "Platform":
        port = self.ports[name] = free_port()
        env = {
            "CHILD_NAME": name,
            "CHILD_MODE": mode,
            "CHILD_DELAY": str(delay),
            "CHILD_PORT": str(port),
            "CHILD_PIDFILE": str(self.dir / f"{name}.pid"),
        }
        self.entries.append(
            {
                "name": name,
                "argv": [sys.executable, str(self.script)],
                "port": port,
                "env": env,
                "layer": layer,
                "essential": essential,
                **({"health": health} if health else {}),
            }
        )
        return self

    def procfile(self) -> str:
        path = self.dir / "procfile.json"
        path.write_text(json.dumps(self.entries))
        return str(path)

    def pid(self, name: str) -> int:
        return int(
            wait_for(lambda: (self.dir / f"{name}.pid").exists(), 10, f"{name} pidfile")
            and (self.dir / f"{name}.pid").read_text()
        )

    def env(self) -> dict:
        return dict(os.environ, HUISHENG_HOME=str(self.home), **self.extra_env)

    def cli(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", CLI, *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def up(self, *extra: str) -> subprocess.CompletedProcess:
        return self.cli("up", "-d", "--no-infra", "--procfile", self.procfile(), *extra)

    def state(self) -> dict | None:
        path = self.home / "run" / "platform.json"
        return json.loads(path.read_text()) if path.exists() else None

    def status(self) -> dict:
        """``status --json``: one object, its processes by name."""
        report = json.loads(self.cli("status", "--json").stdout)
        return {**report, "processes": {row["name"]: row for row in report["processes"]}}

    def log(self, name: str) -> str:
        path = self.home / "log" / f"{name}.log"
        return path.read_text() if path.exists() else ""


@pytest.fixture
def platform(tmp_path):
    platform = Platform(tmp_path)
    yield platform
    platform.cli("down", "--timeout", "5")  # never leave children behind, whatever the test did


def test_up_detached_waits_for_health_then_status_and_down(platform):
    platform.child("alpha", delay=1.0).child("beta", layer=2)

    started = time.monotonic()
    result = platform.up()

    assert result.returncode == 0, result.stdout + result.stderr
    assert time.monotonic() - started >= 1.0  # alpha took a second to listen: up waited for it
    assert healthy(platform.ports["alpha"]) and healthy(platform.ports["beta"])
    pids = {name: platform.pid(name) for name in ("alpha", "beta")}

    status = platform.cli("status", "--json")
    assert status.returncode == 0, status.stdout
    report = json.loads(status.stdout)
    assert report["running"] and report["healthy"] and report["supervisor"]["alive"]
    rows = {row["name"]: row for row in report["processes"]}
    assert {name: row["pid"] for name, row in rows.items()} == pids
    assert all(row["alive"] and row["health"] == "healthy" for row in rows.values())
    assert rows["beta"]["address"] == f"http://127.0.0.1:{platform.ports['beta']}"
    assert "child alpha listening" in platform.log("alpha")

    table = platform.cli("status")
    assert table.returncode == 0
    assert any(
        line.startswith("beta") and str(pids["beta"]) in line and "healthy" in line
        for line in table.stdout.splitlines()
    )

    down = platform.cli("down")
    assert down.returncode == 0 and "stopped" in down.stdout
    assert not any(alive(pid) for pid in pids.values())
    assert platform.state() is None
    assert platform.cli("status").returncode == 3
    again = platform.cli("down")
    assert again.returncode == 0 and "not running" in again.stdout


def test_second_up_is_refused_while_running(platform):
    platform.child("alpha")
    assert platform.up().returncode == 0

    second = platform.up()

    assert second.returncode != 0
    assert "already running" in second.stderr


def test_sigterm_ignoring_child_is_killed_after_the_stop_timeout(platform):
    platform.child("alpha").child("stubborn", mode="stubborn")
    assert platform.up("--stop-timeout", "1").returncode == 0
    stubborn = platform.pid("stubborn")

    started = time.monotonic()
    down = platform.cli("down")
    elapsed = time.monotonic() - started

    assert down.returncode == 0
    assert 1.0 <= elapsed < 8.0
    assert not alive(stubborn) and not alive(platform.pid("alpha"))
    assert "stubborn" in platform.log("supervisor") and "SIGKILL" in platform.log("supervisor")


def test_child_that_never_becomes_healthy_fails_the_start_with_its_name_and_log(platform):
    platform.child("alpha").child("lazy", mode="unready").child("gateway", layer=2)

    started = time.monotonic()
    result = platform.up("--timeout", "4")  # supervisord itself takes a second to start

    assert result.returncode != 0
    assert time.monotonic() - started < 15
    assert "lazy: not healthy within 4 s (GET /ready -> 503)" in result.stderr
    assert "child lazy booting in mode unready" in result.stderr  # the tail of its log
    assert not alive(platform.pid("alpha")) and not alive(platform.pid("lazy"))
    assert not (platform.dir / "gateway.pid").exists()  # the last layer never started
    assert platform.state() is None


def test_a_live_probed_child_needs_only_health_like_the_sms_standin(platform):
    # The SMS stand-in has no dependencies and no /ready: `up` probes it with GET /health alone.
    platform.child("standin", mode="unready", layer=0, health="live").child("alpha")

    result = platform.up("--timeout", "10")

    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(platform.cli("status", "--json").stdout)
    rows = {row["name"]: row for row in report["processes"]}
    assert rows["standin"]["health"] == "healthy" and rows["standin"]["detail"] == "GET /health -> 200"
    assert rows["alpha"]["detail"] == "GET /health, /ready -> 200"
    assert report["healthy"]


def test_a_sigkilled_child_is_restarted_and_healthy_again_without_a_hand_on_it(platform):
    platform.child("alpha").child("beta")
    assert platform.up().returncode == 0
    supervisor = platform.state()["supervisor"]["pid"]
    first = platform.pid("alpha")
    (platform.dir / "alpha.pid").unlink()
    assert platform.status()["processes"]["alpha"]["restarts"] == 0

    os.kill(first, signal.SIGKILL)

    second = platform.pid("alpha")  # the restarted child writes its pidfile again
    assert second != first and not alive(first)
    wait_for(lambda: platform.cli("status").returncode == 0, 15, "the platform is healthy again")
    report = platform.status()
    alpha = report["processes"]["alpha"]
    assert (alpha["pid"], alpha["restarts"], alpha["state"], alpha["health"]) == (second, 1, "running", "healthy")
    assert report["processes"]["beta"]["restarts"] == 0
    assert healthy(platform.ports["alpha"]) and alive(supervisor)
    log = platform.log("supervisor")
    assert "alpha exited unexpectedly; supervisord restarts it (1 restarts)" in log


def test_a_child_that_keeps_crashing_is_given_up_on_visibly_and_the_rest_runs_on(platform):
    platform.child("alpha").child("flaky", mode="crash-on-restart", essential=False)
    platform.extra_env = {"HUISHENG_RESTART_LIMIT": "2"}  # supervisord backs off 1 s, then 2 s
    assert platform.up().returncode == 0
    supervisor = platform.state()["supervisor"]["pid"]

    os.kill(platform.pid("flaky"), signal.SIGKILL)

    wait_for(lambda: platform.status()["processes"]["flaky"]["state"] == "gave up", 15, "the supervisor gives up")
    report = platform.status()
    flaky = report["processes"]["flaky"]
    assert (flaky["health"], flaky["restarts"], flaky["alive"]) == ("down", 2, False)
    assert "gave up" in flaky["detail"]
    assert not report["healthy"] and report["processes"]["alpha"]["health"] == "healthy" and alive(supervisor)
    assert platform.cli("status").returncode == 1
    assert "giving up on flaky: it kept exiting as it started (2 restarts)" in platform.log("supervisor")
    assert "child flaky cannot start again" in platform.log("flaky")


def test_giving_up_on_an_essential_child_stops_the_platform_and_up_exits_non_zero(platform):
    platform.child("alpha", mode="crash-on-restart").child("beta")
    platform.extra_env = {"HUISHENG_RESTART_LIMIT": "1"}
    output = platform.dir / "foreground.out"
    with open(output, "w") as out:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", CLI, "up", "--no-infra", "--procfile", platform.procfile()],
            cwd=ROOT, env=platform.env(), stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: "processes are healthy" in output.read_text(), 15, "foreground up healthy")
        beta = platform.pid("beta")
        os.kill(platform.pid("alpha"), signal.SIGKILL)
        assert supervisor.wait(20) == 1
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
    text = output.read_text()
    assert "giving up on alpha: it kept exiting as it started" in text
    assert "alpha is essential: stopping the platform" in text
    assert not alive(beta) and platform.state() is None


def test_down_stops_the_children_of_a_killed_supervisor(platform):
    platform.child("alpha").child("stubborn", mode="stubborn")
    assert platform.up("--stop-timeout", "1").returncode == 0
    supervisor = platform.state()["supervisor"]["pid"]
    os.kill(supervisor, signal.SIGKILL)
    wait_for(lambda: not alive(supervisor), 5, "supervisor killed")

    status = platform.cli("status", "--json")
    report = json.loads(status.stdout)
    assert status.returncode == 1  # the children run, but nobody watches them
    assert report["running"] and not report["supervisor"]["alive"]

    down = platform.cli("down")

    assert down.returncode == 0
    assert "supervisor is gone" in down.stdout  # supervisord still runs: it stops the children in order
    assert "killing 'stubborn'" in platform.log("supervisor") and "SIGKILL" in platform.log("supervisor")
    assert not alive(platform.pid("alpha")) and not alive(platform.pid("stubborn"))
    assert platform.state() is None


def test_foreground_up_prefixes_output_logs_it_and_stops_on_ctrl_c(platform):
    platform.child("alpha").child("beta", layer=2)
    output = platform.dir / "foreground.out"
    with open(output, "w") as out:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", CLI, "up", "--no-infra", "--procfile", platform.procfile()],
            cwd=ROOT,
            env=platform.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: "processes are healthy" in output.read_text(), 15, "foreground up healthy")
        supervisor.send_signal(signal.SIGINT)
        assert supervisor.wait(10) == 0
    finally:
        if supervisor.poll() is None:
            supervisor.kill()

    text = output.read_text()
    assert any(line.startswith("alpha") and line.endswith("| child alpha listening") for line in text.splitlines())
    assert any(line.startswith("beta ") and "| child beta listening" in line for line in text.splitlines())
    assert "child beta listening" in platform.log("beta")
    assert not alive(platform.pid("alpha")) and not alive(platform.pid("beta"))
    assert platform.state() is None

"""The whole platform as a user runs it: ``huisheng up -d``, the echo loop over HTTP, ``huisheng down``.

It runs on ports and a RabbitMQ vhost of its own, so a platform a developer has
running on the default ports is left alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from kernel.platform import LOCAL_PORT_VARIABLES, PROCESSES
from tests.conftest import free_port

pytestmark = pytest.mark.e2e
HUISHENG = [sys.executable, "-m", "kernel.cli.main"]
ROOT = Path(__file__).resolve().parents[2]
REPORT = {"service_code": "blocked_drain", "description": "3号楼下水道堵了，污水漫到楼道",
          "address_string": "兴乔小区3号楼2单元", "lat": 36.8, "long": 118.05,
          "attributes": {"overflowing": "yes"}}  # blocked_drain's required answer


def huisheng(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*HUISHENG, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def platform_env(rabbit_config, tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "MONGO_URI"}
    env.update({
        "HUISHENG_HOME": str(tmp_path / "var"), "AMQP_URI": rabbit_config["AMQP_URI"],
        "HUISHENG_SECRET": "e2e-secret-e2e-secret-e2e-secret-e2e",
        "SECANTUS_PORT": str(free_port()), "GATEWAY_PORT": str(free_port()),
        **{name: str(free_port()) for name in LOCAL_PORT_VARIABLES},
    })
    yield env
    huisheng(env, "down")


def start(env: dict) -> str:
    started = huisheng(env, "up", "-d", "--timeout", "90")
    assert started.returncode == 0, started.stdout + started.stderr
    return f"http://127.0.0.1:{env['GATEWAY_PORT']}"


def token(env: dict, subject: str) -> dict:
    minted = huisheng(env, "token", "--role", "resident", "--subject", subject)
    assert minted.returncode == 0, minted.stderr
    return {"Authorization": f"Bearer {minted.stdout.strip()}"}


# What each process (its own /metrics, in its own OS process) must show after one ticket's echo loop: notify
# also answered for the echoes on the ticket's timeline (tickets asks it when it shows the ticket).
OWN_SERIES = {
    "tickets": ('huisheng_outbox_published_total{collection="tickets",service="tickets"}',),
    "notify": ('huisheng_events_handled_total{outcome="ok",subscription="notify.ticket_events"}',
               'huisheng_worker_seconds_count{entrypoint="echo_outcomes",outcome="ok",service="notify"}'),
    "gateway": ('huisheng_http_requests_total{route="create_ticket",service="gateway",status="201"}',),
}


def every_process_exposes_metrics_of_what_it_did(rows: list[dict]) -> None:
    """Read each platform process's /metrics: each shows its own workers, and only its own."""
    ours = {process.name for process in PROCESSES}  # not the database or the providers' stand-ins
    processes = [row for row in rows if row["name"].split("#")[0] in ours]
    for row in processes:
        name = row["name"]
        response = requests.get(f"{row['address']}/metrics", timeout=10)
        assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain"), name
        text = response.text
        assert f'entrypoint="readiness_check",outcome="ok",service="{name}"' in text, name  # the supervisor's probes
        for series in OWN_SERIES.get(name, ()):
            assert series in text, f"{name}: {series}"
        others = [other for other in processes if other["name"] != name]
        assert not any(f'outcome="ok",service="{other["name"]}"' in text for other in others), name


def a_sigkilled_service_comes_back_healthy_on_its_own(env: dict, gateway: str, resident: dict) -> None:
    """SIGKILL tickets: the supervisor restarts it, status shows ``restarts: 1``, and it serves again."""
    def tickets_row() -> dict:
        report = json.loads(huisheng(env, "status", "--json").stdout)
        return next(row for row in report["processes"] if row["name"] == "tickets")

    before = tickets_row()
    os.kill(before["pid"], signal.SIGKILL)
    deadline, row = time.monotonic() + 60, before
    while time.monotonic() < deadline:
        row = tickets_row()
        if row["restarts"] == 1 and row["health"] == "healthy" and row["pid"] != before["pid"]:
            break
        time.sleep(0.5)
    assert (row["restarts"], row["health"], row["state"]) == (1, "healthy", "running"), row
    assert huisheng(env, "status").returncode == 0  # everything healthy again, nobody touched it
    created = requests.post(f"{gateway}/api/v1/tickets", json=REPORT, headers=resident, timeout=10)
    assert created.status_code == 201, created.text


def test_up_echo_loop_down_and_data_survives_a_restart(platform_env):
    env = platform_env
    gateway = start(env)

    status = huisheng(env, "status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    report = json.loads(status.stdout)  # one shape: an object whose "processes" lists one row per process
    assert report["running"] and report["healthy"] and isinstance(report["processes"], list)
    rows = report["processes"]
    assert {row["name"] for row in rows} >= {"tickets", "notify", "volunteers", "directory", "gateway"}
    assert all(row["health"] == "healthy" and row["pid"] and row["restarts"] == 0 for row in rows)

    resident = token(env, "r-e2e")
    posted_at = time.monotonic()
    created = requests.post(f"{gateway}/api/v1/tickets", json=REPORT, headers=resident, timeout=10)
    assert created.status_code == 201, created.text
    ticket_id = created.json()["id"]

    echo_seconds = None
    while time.monotonic() - posted_at < 10:
        ticket = requests.get(f"{gateway}/api/v1/tickets/{ticket_id}", headers=resident, timeout=10).json()
        if any(entry["type"] == "echo.delivered" for entry in ticket["timeline"]):
            echo_seconds = time.monotonic() - posted_at
            break
        time.sleep(0.02)
    assert echo_seconds is not None, f"no echo on the timeline within 10 s: {ticket['timeline']}"
    print(f"\necho on the timeline {echo_seconds * 1000:.0f} ms after the POST")
    [echo] = [entry for entry in ticket["timeline"] if entry["type"].startswith("echo.")]
    assert (echo["channel"], echo["recipient"], echo["source_event_type"]) == ("inbox", "r-e2e", "ticket.received")
    assert "echoes_unavailable" not in ticket
    inbox = requests.get(f"{gateway}/api/v1/me/inbox", headers=resident, timeout=10).json()
    assert [message["ticket_id"] for message in inbox["items"]] == [ticket_id] and inbox["unread"] == 1
    assert requests.get(f"{gateway}/api/v1/tickets/{ticket_id}", headers=token(env, "r-other"),
                        timeout=10).status_code == 404
    every_process_exposes_metrics_of_what_it_did(rows)
    a_sigkilled_service_comes_back_healthy_on_its_own(env, gateway, resident)

    stopped = huisheng(env, "down")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{gateway}/health", timeout=2)
    assert huisheng(env, "status").returncode != 0

    gateway = start(env)  # the same HUISHENG_HOME: the embedded database kept its data
    again = requests.get(f"{gateway}/api/v1/tickets/{ticket_id}", headers=resident, timeout=10)
    assert again.status_code == 200 and again.json()["id"] == ticket_id

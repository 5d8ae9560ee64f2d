"""The whole platform as a user runs it: ``huisheng up -d``, the echo loop over HTTP, ``huisheng down``.

It runs on ports and a RabbitMQ vhost of its own, so a platform a developer has
running on the default ports is left alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from kernel.platform import LOCAL_PORT_VARIABLES
from tests.conftest import free_port

pytestmark = pytest.mark.e2e
HUISHENG = [sys.executable, "-m", "kernel.cli.main"]
ROOT = Path(__file__).resolve().parents[2]
REPORT = {"service_code": "blocked_drain", "description": "3号楼下水道堵了，污水漫到楼道",
          "address_string": "兴乔小区3号楼2单元", "lat": 36.8, "long": 118.05}


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


def test_up_echo_loop_down_and_data_survives_a_restart(platform_env):
    env = platform_env
    gateway = start(env)

    status = huisheng(env, "status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    rows = json.loads(status.stdout)
    rows = rows["processes"] if isinstance(rows, dict) else rows
    assert {row["name"] for row in rows} >= {"tickets", "notify", "volunteers", "gateway"}
    assert all(row["health"] == "healthy" and row["pid"] for row in rows)

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
    inbox = requests.get(f"{gateway}/api/v1/me/inbox", headers=resident, timeout=10).json()
    assert [message["ticket_id"] for message in inbox["items"]] == [ticket_id] and inbox["unread"] == 1
    assert requests.get(f"{gateway}/api/v1/tickets/{ticket_id}", headers=token(env, "r-other"),
                        timeout=10).status_code == 404

    stopped = huisheng(env, "down")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{gateway}/health", timeout=2)
    assert huisheng(env, "status").returncode != 0

    gateway = start(env)  # the same HUISHENG_HOME: the embedded database kept its data
    again = requests.get(f"{gateway}/api/v1/tickets/{ticket_id}", headers=resident, timeout=10)
    assert again.status_code == 200 and again.json()["id"] == ticket_id

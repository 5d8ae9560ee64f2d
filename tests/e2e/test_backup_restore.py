"""Back up a running platform, restore it into a fresh home, and run the platform on that.

Platform A runs (``huisheng up -d``) in a home of its own; a resident's ticket
gets its echo; ``huisheng backup`` finds A's database in its run state and has
SecantusDB write its own archive; A stops. Platform B has a new home and
MONGO_URI unset: ``huisheng restore`` extracts the archive into B's data
directory (B is not running, as the restore requires), then ``huisheng up -d``
runs B on it. Over HTTP, B shows the same ticket, timeline and inbox, and a new
ticket gets its echo as well.
"""

from __future__ import annotations

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
ROOT = Path(__file__).resolve().parents[2]
HUISHENG = [sys.executable, "-m", "kernel.cli.main"]
REPORT = {"service_code": "blocked_drain", "description": "3号楼下水道堵了，污水漫到楼道",
          "address_string": "兴乔小区3号楼2单元", "lat": 36.8, "long": 118.05,
          "attributes": {"overflowing": "yes"}}  # blocked_drain's required answer


def run(command: list[str], env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*command, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def platform_env(rabbit_config, home: Path) -> dict:
    """A platform of its own: home, ports and (shared by A and B) the test's RabbitMQ vhost; MONGO_URI unset."""
    env = {key: value for key, value in os.environ.items() if key != "MONGO_URI"}
    env.update({
        "HUISHENG_HOME": str(home), "AMQP_URI": rabbit_config["AMQP_URI"],
        "HUISHENG_SECRET": "e2e-secret-e2e-secret-e2e-secret-e2e",
        "SECANTUS_PORT": str(free_port()), "GATEWAY_PORT": str(free_port()),
        **{name: str(free_port()) for name in LOCAL_PORT_VARIABLES},
    })
    return env


@pytest.fixture
def platforms(rabbit_config, tmp_path):
    envs = [platform_env(rabbit_config, tmp_path / name) for name in ("a", "b")]
    yield envs
    for env in envs:
        run(HUISHENG, env, "down")


def up(env: dict) -> str:
    started = run(HUISHENG, env, "up", "-d", "--timeout", "90")
    assert started.returncode == 0, started.stdout + started.stderr
    return f"http://127.0.0.1:{env['GATEWAY_PORT']}"


def resident(env: dict, subject: str) -> dict:
    minted = run(HUISHENG, env, "token", "--role", "resident", "--subject", subject)
    assert minted.returncode == 0, minted.stderr
    return {"Authorization": f"Bearer {minted.stdout.strip()}"}


def echoed_ticket(gateway: str, headers: dict) -> dict:
    """Report a ticket and wait for the echo on its timeline; the ticket as the API shows it then."""
    created = requests.post(f"{gateway}/api/v1/tickets", json=REPORT, headers=headers, timeout=10)
    assert created.status_code == 201, created.text
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        ticket = requests.get(f"{gateway}/api/v1/tickets/{created.json()['id']}", headers=headers, timeout=10).json()
        if any(entry["type"] == "echo.delivered" for entry in ticket["timeline"]):
            return ticket
        time.sleep(0.05)
    raise AssertionError(f"no echo within 15 s: {ticket['timeline']}")


def inbox(gateway: str, headers: dict) -> list[dict]:
    answer = requests.get(f"{gateway}/api/v1/me/inbox", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]


def test_a_backup_restored_into_a_fresh_database_runs_the_platform_with_its_tickets(platforms, tmp_path):
    a, b = platforms
    gateway = up(a)
    headers = resident(a, "r-backup")
    ticket = echoed_ticket(gateway, headers)
    messages = inbox(gateway, headers)
    assert [message["ticket_id"] for message in messages] == [ticket["id"]]

    archive = tmp_path / "huisheng.secantus.tar.gz"
    made = run(HUISHENG, a, "backup", "--out", str(archive))
    assert made.returncode == 0, made.stdout + made.stderr
    assert "the running platform" in made.stdout and archive.stat().st_size > 0
    refused = run(HUISHENG, a, "restore", str(archive))
    assert refused.returncode == 1 and "huisheng down" in refused.stderr  # never under a running platform
    stopped = run(HUISHENG, a, "down")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr

    restored = run(HUISHENG, b, "restore", str(archive))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert (Path(b["HUISHENG_HOME"]) / "data" / "mongo").is_dir()

    gateway = up(b)
    again = requests.get(f"{gateway}/api/v1/tickets/{ticket['id']}", headers=headers, timeout=10)
    assert again.status_code == 200, again.text
    assert again.json() == ticket  # state, timeline with ticket.received and echo.delivered
    assert inbox(gateway, headers) == messages
    second = echoed_ticket(gateway, headers)  # the platform runs on the restored database
    assert [message["ticket_id"] for message in inbox(gateway, headers)] == [second["id"], ticket["id"]]

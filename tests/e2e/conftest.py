"""One running platform shared by the end-to-end tests that do not start and stop it themselves.

``huisheng up -d`` runs it exactly as a user would, on free ports, a RabbitMQ vhost and a
HUISHENG_HOME of its own, so a platform a developer has running is left alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from pymongo import MongoClient

from kernel.platform import LOCAL_PORT_VARIABLES
from tests.conftest import free_port, kill_platform

HUISHENG = [sys.executable, "-m", "kernel.cli.main"]
ROOT = Path(__file__).resolve().parents[2]


def huisheng(env: dict, *args: str, timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*HUISHENG, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, input=input)


@dataclass
class RunningPlatform:
    env: dict
    gateway: str  # http://127.0.0.1:<port>

    @property
    def sms_standin(self) -> str:
        return f"http://127.0.0.1:{self.env['HUISHENG_PORT_SMS']}"

    def database(self, service: str):
        """A service's own database on the embedded server (for checks no API offers, e.g. erasure)."""
        client = MongoClient(f"mongodb://127.0.0.1:{self.env['SECANTUS_PORT']}/?retryWrites=false"
                             "&directConnection=true", tz_aware=True)
        return client[f"huisheng_{service}"]

    def token(self, role: str, subject: str, *extra: str) -> dict:
        minted = huisheng(self.env, "token", "--role", role, "--subject", subject, *extra)
        assert minted.returncode == 0, minted.stderr
        return {"Authorization": f"Bearer {minted.stdout.strip()}"}

    def sent_sms(self, phone: str) -> list[dict]:
        """What the SMS provider stand-in was asked to send to ``phone``, oldest first."""
        answer = requests.get(f"{self.sms_standin}/_standin/messages", params={"phone": phone}, timeout=5)
        answer.raise_for_status()
        return answer.json()["items"]


def platform_env(amqp_uri: str, home: Path) -> dict:
    env = {key: value for key, value in os.environ.items() if key != "MONGO_URI"}
    env.update({
        "HUISHENG_HOME": str(home), "AMQP_URI": amqp_uri,
        "HUISHENG_SECRET": "e2e-secret-e2e-secret-e2e-secret-e2e",
        "SECANTUS_PORT": str(free_port()), "GATEWAY_PORT": str(free_port()),
        **{name: str(free_port()) for name in LOCAL_PORT_VARIABLES},
    })
    return env


@pytest.fixture(scope="session")
def running_platform(vhost_pipeline, tmp_path_factory, request):
    """``huisheng up -d`` once for the session; SIGKILLed at its end (nothing checks that stop; ``huisheng down``
    would take 15 s over the layers; the tests of ``down`` itself run platforms of their own)."""
    from urllib.parse import urlparse

    with vhost_pipeline.get() as vhost:
        broker = urlparse(request.config.getoption("RABBIT_AMQP_URI"))
        env = platform_env(f"{broker.scheme}://{broker.netloc}/{vhost}", tmp_path_factory.mktemp("platform") / "var")
        started = huisheng(env, "up", "-d", "--timeout", "120", timeout=180)
        assert started.returncode == 0, started.stdout + started.stderr
        try:
            yield RunningPlatform(env, f"http://127.0.0.1:{env['GATEWAY_PORT']}")
        finally:
            kill_platform(Path(env["HUISHENG_HOME"]))

"""The two systems under test, both started and stopped by the ``huisheng`` CLI.

* the platform: ``huisheng up -d`` as it ships (gateway, tickets, notify, volunteers);
* the naive pipeline: ``huisheng up -d --procfile naive.json --no-infra``, the same
  supervisor running ``bench.naive.runner`` processes.

Each gets its own ``HUISHENG_HOME``, free ports, database prefix and secret, on the
run's vhost and database server, so a run never touches a platform someone else
has up. :class:`Stack` also says how to load it (URL, headers) and where its
tickets and echoes are stored.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bench.documents import COMMUNITY, HOME_BUILDING, TICKET_BODY
from bench.infra import BenchError, free_port
from bench.loadgen import Request
from bench.naive.services import RESIDENT_HEADER
from kernel.auth import issue_token
from kernel.config import ENVIRONMENT, Settings
from kernel.platform import LOCAL_PORT_VARIABLES

REPO_ROOT = Path(__file__).resolve().parents[1]
CLI_TIMEOUT = 150
NAIVE_PROCESSES = (("notify", 1), ("tickets", 1), ("gateway", 2))


RATE_LIMIT_OFF = 100_000_000  # requests a minute: more than any run here sends


def clean_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """Our environment without any platform setting (the run sets each one itself)."""
    names = set(ENVIRONMENT) | set(LOCAL_PORT_VARIABLES)
    return {key: value for key, value in environ.items() if key not in names}


@dataclass
class Stack:
    """One system under test and the ``huisheng`` CLI that runs it."""

    kind: str  # "platform" or "naive"
    root: Path  # the checkout whose CLI (and code) runs it
    home: Path
    amqp_uri: str
    mongo_uri: str
    secret: str
    tickets_db: str
    inbox_db: str
    gateway_port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    _pids: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.env = {
            **clean_environment(os.environ), "HUISHENG_HOME": str(self.home), "AMQP_URI": self.amqp_uri,
            "MONGO_URI": self.mongo_uri, "HUISHENG_SECRET": self.secret, "GATEWAY_PORT": str(self.gateway_port),
            "MONGO_DB_PREFIX": f"bench_{self.kind}_", "PYTHONPATH": str(REPO_ROOT),  # after the CLI's root
            **{name: str(free_port()) for name in LOCAL_PORT_VARIABLES},
            # The load comes from one address and a few residents: the gateway's per-caller and per-address
            # limits (600 and 1,200 a minute) would answer 429 after the first 1,200 requests and the figures
            # would measure the limiter (the full run's platform fell to 22 req/s). A load test raises them.
            "RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT_OFF), "RATE_LIMIT_ADDRESS_PER_MINUTE": str(RATE_LIMIT_OFF),
        }

    # ----------------------------------------------------------------------- the CLI

    def cli(self, *args: str, timeout: float = CLI_TIMEOUT, check: bool = True) -> subprocess.CompletedProcess:
        """``huisheng ARGS`` in this stack's environment; :class:`BenchError` if it fails and ``check``."""
        done = subprocess.run([sys.executable, "-m", "kernel.cli.main", *args], cwd=self.root, env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise BenchError(f"`huisheng {' '.join(args)}` for the {self.kind} failed ({done.returncode}):\n"
                             f"{done.stdout[-3000:]}{done.stderr[-3000:]}")
        return done

    def up_args(self) -> list[str]:
        return ["up", "-d", "--timeout", "90"]

    def up(self) -> None:
        """``huisheng up -d``: returns once every process is healthy."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.cli(*self.up_args())
        self._pids = self.pids(refresh=True)

    def down(self) -> None:
        """``huisheng down`` (idempotent)."""
        self.cli("down", timeout=90, check=False)

    def status(self) -> dict:
        """``huisheng status --json``."""
        return json.loads(self.cli("status", "--json", check=False).stdout)

    def pids(self, refresh: bool = False) -> dict[str, int]:
        """Every process of this stack by name, and the supervisor that pumps their logs.

        Read once after ``up`` (``huisheng status`` probes every process: not something to do under load).
        """
        if self._pids and not refresh:
            return dict(self._pids)
        report = self.status()
        pids = {p["name"]: p["pid"] for p in report.get("processes", []) if p.get("pid")}
        supervisor = (report.get("supervisor") or {}).get("pid")
        return {**pids, "supervisor": supervisor} if supervisor else pids

    # ----------------------------------------------------------------------- load

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}/api/v1/tickets"

    def request(self, subject: str) -> Request:
        """The POST every load generator sends: the same body and headers for both stacks."""
        # as a sign-in's token: a resident's carries their home building (3号楼, of the demo community)
        token = issue_token(Settings(secret=self.secret, community=COMMUNITY), "resident", subject, ttl=3600,
                            home=HOME_BUILDING)
        headers = {"Authorization": f"Bearer {token}", RESIDENT_HEADER: subject,
                   "Content-Type": "application/json"}
        return Request(self.url, json.dumps(TICKET_BODY, ensure_ascii=False), headers)


def platform_stack(root: Path, work: Path, amqp_uri: str, mongo_uri: str, secret: str) -> Stack:
    """The platform of the checkout ``root``, with its home under ``work``."""
    return Stack("platform", root, work / "platform-home", amqp_uri, mongo_uri, secret,
                 tickets_db="bench_platform_tickets", inbox_db="bench_platform_notify")


@dataclass
class NaiveStack(Stack):
    """The naive pipeline, supervised by the same CLI through a procfile."""

    procfile: Path | None = None

    def up_args(self) -> list[str]:
        self.procfile = self.home / "naive-procfile.json"
        self.home.mkdir(parents=True, exist_ok=True)
        entries = []
        for name, layer in NAIVE_PROCESSES:
            port = self.gateway_port if name == "gateway" else free_port()
            entries.append({"name": name, "argv": [sys.executable, "-m", "bench.naive.runner", name],
                            "port": port, "health": "http", "layer": layer, "env": {"HTTP_PORT": str(port)}})
        self.procfile.write_text(json.dumps(entries, indent=2))
        return [*super().up_args(), "--procfile", str(self.procfile), "--no-infra"]


def naive_stack(root: Path, work: Path, amqp_uri: str, mongo_uri: str, secret: str) -> NaiveStack:
    """The naive pipeline, run by the CLI of the checkout ``root``, with its home under ``work``."""
    return NaiveStack("naive", root, work / "naive-home", amqp_uri, mongo_uri, secret,
                      tickets_db="bench_naive_naive_tickets", inbox_db="bench_naive_naive_notify")

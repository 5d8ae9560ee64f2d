"""The two systems the fault suite runs: the platform (``huisheng up -d`` plus a second instance of
every process) and the naive pipeline of ``bench/naive`` (no outbox, no idempotency, no retries).

Both run against the suite's own RabbitMQ node (a vhost each) and a SecantusDB
server of the test's own, on free loopback ports. Each process has two
instances competing on the same queues: for the platform, the one ``huisheng
up`` supervises and an *extra* one the suite starts with ``huisheng service
NAME``. Most faults kill and restart the extras, so that the suite chooses when
an instance comes back: the supervised instance keeps serving, as a surviving
replica does in production, and picks up whatever the killed one left
unacknowledged. The supervisor restarts a crashed child itself, with back-off
(giving up after repeated crashes): a scenario may SIGKILL a supervised instance
and let ``huisheng up`` bring it back (:func:`tests.chaos.faults.kill_supervised`);
any other restart the supervisor reports (``restarts`` in ``huisheng status
--json``) is a crash nobody caused, and fails the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from kernel.auth import issue_token
from kernel.cli.main import STAND_INS
from kernel.config import ENVIRONMENT, Settings
from kernel.ledger import unpublished
from kernel.mongo import connect
from kernel.platform import PROCESSES, Process
from tests.chaos.load import Target
from tests.chaos.processes import (
    ROOT,
    DatabaseServer,
    ProcessFailed,
    ServiceInstance,
    Supervised,
    huisheng_argv,
    kill_all,
    start_all,
)
from tests.chaos.rabbit import RabbitNode, free_ports
from tests.conftest import kill_platform

COMMUNITY = "xingqiao"
REPORT = {"service_code": "blocked_drain", "address_string": "兴乔小区3号楼2单元",
          "attributes": {"overflowing": "yes"}}  # blocked_drain's required answer
# Fast enough for a test, the same code paths as production: 5 attempts, then the dead-letter queue.
CHAOS_SETTINGS = {
    "RETRY_DELAYS_MS": "100,300,1000,2000", "OUTBOX_SWEEP_SECONDS": "0.5", "OUTBOX_GRACE_SECONDS": "1",
    "RPC_TIMEOUT": "5", "HUISHENG_STOP_TIMEOUT": "8", "LOG_LEVEL": "INFO", "HUISHENG_COMMUNITY": COMMUNITY,
    # notify's proof window, short enough that the silent-tickets count read after every scenario covers
    # every ticket the load created (with production's 15 minutes it would be 0 whatever happened).
    "ECHO_PROOF_SECONDS": "10", "NOTIFY_TIMER_SECONDS": "2",
}
PLATFORM_PROCESSES = ("tickets", "notify", "volunteers", "gateway")
NAIVE_PROCESSES = ("notify", "tickets", "gateway")
CLI_TIMEOUT = 150.0
SILENT_TICKS = 3  # timer periods to allow for a reconciler pass after the last proof deadline (a slow timer
# under load): an upper bound, the wait ends with the first pass that began after the deadline
SILENT_READ_ATTEMPTS = 5


def description(key: str) -> str:
    """The report's text carries its key, so even a system without idempotency keys can be tallied."""
    return f"chaos {key}: 3号楼下水道堵了，污水漫到楼道"


def port_variable(process: Process) -> str:
    """The variable ``huisheng up`` reads a process's port from (``kernel.cli.main.process_port``)."""
    return "GATEWAY_PORT" if process.is_gateway else f"HUISHENG_PORT_{process.name.upper()}"


def clean_environ() -> dict[str, str]:
    """Our environment without any platform setting, port, scale or proxy (the suite sets each itself)."""
    proxies = {"http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"}
    ports = re.compile(r"(HUISHENG_PORT_\w+|GATEWAY_PORT(_\d+)?|HUISHENG_SCALE)")
    return {k: v for k, v in os.environ.items() if k not in set(ENVIRONMENT) | proxies and not ports.fullmatch(k)}


class Store:
    """Read what a system wrote: tickets by logical key, inbox messages and echo records by ticket, pending
    outboxes."""

    def __init__(self, mongo_uri: str, tickets_db: str, inbox_db: str, key_field: str):
        self.client = connect(mongo_uri)
        self.tickets = self.client[tickets_db]["tickets"]
        self.inbox = self.client[inbox_db]["inbox"]
        # notify's echo records that no inbox message carries (the naive pipeline keeps none)
        self.echoes = self.client[inbox_db]["echoes"]
        self.key_field = key_field  # "request_key", or "description" for the naive pipeline

    def key_of(self, document: dict) -> str | None:
        value = document.get(self.key_field)
        if self.key_field == "description" and value:
            match = re.match(r"chaos (\S+):", value)
            return match.group(1) if match else None
        return value

    def tickets_by_key(self, keys: list[str]) -> dict[str, list[dict]]:
        values = keys if self.key_field == "request_key" else [description(k) for k in keys]
        found: dict[str, list[dict]] = {}
        projection = {"_id": 1, "reporter": 1, "created_at": 1, self.key_field: 1}
        for document in self.tickets.find({self.key_field: {"$in": values}}, projection):
            found.setdefault(self.key_of(document), []).append(document)
        return found

    def inbox_by_ticket(self, ticket_ids: list[str]) -> dict[str, list[dict]]:
        found: dict[str, list[dict]] = {}
        projection = {"ticket_id": 1, "recipient": 1, "source_event_type": 1, "source_event_id": 1}
        for document in self.inbox.find({"ticket_id": {"$in": ticket_ids}}, projection):
            found.setdefault(document["ticket_id"], []).append(document)
        return found

    def echoes_by_ticket(self, ticket_ids: list[str]) -> dict[str, list[dict]]:
        """notify's echo records of the tickets, what their timelines show (``notify.echo_outcomes``): those
        an inbox message carries and those in ``echoes``, each ``{recipient, source_event_type, status}``."""
        found: dict[str, list[dict]] = {}
        query = {"ticket_id": {"$in": ticket_ids}}
        for message in self.inbox.find({**query, "echo": {"$exists": True}}, {"ticket_id": 1, "echo": 1}):
            found.setdefault(message["ticket_id"], []).append(message["echo"])
        for echo in self.echoes.find(query, {"ticket_id": 1, "recipient": 1, "source_event_type": 1, "status": 1}):
            found.setdefault(echo["ticket_id"], []).append(echo)
        return found

    def outbox_pending(self) -> int:
        """Documents whose events are not all confirmed by the broker yet.

        A document keeps its events once they are published, so this is the relay's own
        question (:func:`kernel.ledger.unpublished`), not a field to count. The naive
        pipeline has no outbox: it always has none.
        """
        return sum(len(unpublished(c.database, c.name)) for c in (self.tickets, self.inbox))

    def close(self) -> None:
        self.client.close()


class System:
    """What the scenarios need of a system under test, whichever it is."""

    kind = "system"
    records_echoes = False
    consumer_queue_pattern = re.compile(".*")

    def __init__(self, root: Path, node: RabbitNode, db: DatabaseServer):
        self.root = root
        self.node = node
        self.db = db
        token = uuid.uuid4().hex[:8]
        self.vhost = f"chaos-{self.kind}-{token}"
        self.amqp_uri = node.add_vhost(self.vhost)
        self.prefix = f"chaos{token}_"
        self.secret = f"chaos-secret-{uuid.uuid4().hex}"
        self.env = {**clean_environ(), **CHAOS_SETTINGS, "AMQP_URI": self.amqp_uri, "MONGO_URI": db.uri,
                    "MONGO_DB_PREFIX": self.prefix, "HUISHENG_SECRET": self.secret,
                    "HUISHENG_HOME": str(root / "home"), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        self.extras: dict[str, ServiceInstance] = {}

    # ------------------------------------------------------------------ what tests look at

    def instances(self, name: str) -> list:
        """Every running instance of one process, extras last."""
        return [self.extras[name]] if name in self.extras else []

    def store(self) -> Store:  # pragma: no cover - overridden
        raise NotImplementedError

    def target(self) -> Target:  # pragma: no cover - overridden
        raise NotImplementedError

    def backlog(self) -> dict[str, int]:
        """Messages (ready + unacked) per queue that must be empty once drained."""
        queues = self.node.queues(self.vhost)
        return {name: q["messages_ready"] + q["messages_unacknowledged"]
                for name, q in queues.items() if self.consumer_queue_pattern.fullmatch(name)}

    def all_instances(self) -> list:
        return list(self.extras.values())

    def dead(self) -> list[str]:
        """Instances that are not running (a crashed one, or one a supervisor stopped)."""
        return [instance.label for instance in self.all_instances() if not instance.alive()]

    def crashes(self) -> list[str]:
        """Why containers died, from the processes' logs (``process.container_died``)."""
        found = []
        for instance in self.all_instances():
            for line in lines_with(instance.log, '"event": "process.container_died"'):
                found.append(f"{instance.label}: {json.loads(line).get('error', line)[:160]}")
        return found

    def broker(self) -> str:
        """The RabbitMQ this system runs on, as the tallies name it."""
        nodes = getattr(self.node, "nodes", None)
        return f"{len(nodes)}-node cluster" if nodes else "1 node"

    def silent_tickets(self, load_stopped: float) -> tuple[int | None, str | None]:
        """The silent-tickets count and a note; (None, None) for a system without notify's reconciler."""
        return None, None

    def consumers(self) -> dict[str, int]:
        return {name: q["consumers"] for name, q in self.node.queues(self.vhost).items()}

    def close(self) -> None:
        """The end of a test: SIGKILL every instance (nothing checks how they stop, a graceful stop costs
        seconds each; a scenario that checks a stop, ``test_shutdown``, makes that stop itself)."""
        kill_all(list(self.extras.values()))


class Platform(System):
    """``huisheng up -d`` against the suite's node and database, plus an extra instance of every process."""

    kind = "platform"
    records_echoes = True
    # Consumer queues and retry tiers; dead-letter queues keep what they hold on purpose.
    consumer_queue_pattern = re.compile(r"huisheng\.(?!.*\.dlq$).*")

    def __init__(self, root: Path, node: RabbitNode, db: DatabaseServer, scale: int = 1):
        super().__init__(root, node, db)
        # Every port `up` opens is the suite's own, every stand-in's included (read from the CLI's own lists, so
        # a new process or stand-in never falls back to its fixed default port, which another run may hold).
        variables = [port_variable(process) for process in PROCESSES] + [
            f"HUISHENG_PORT_{stand_in.name.upper()}" for stand_in in STAND_INS]
        self.env.update(zip(variables, map(str, free_ports(len(variables))), strict=True))
        self.gateway_port = int(self.env["GATEWAY_PORT"])
        # `up --scale NAME=n`: instance k of each process on a port of the suite's own (GATEWAY_PORT_k ...).
        self.scale = scale
        scaled = [f"{port_variable(process)}_{instance}" for process in PROCESSES
                  if process.name in PLATFORM_PROCESSES for instance in range(2, scale + 1)]
        self.env.update(zip(scaled, map(str, free_ports(len(scaled))), strict=True))
        self.supervised: dict[str, Supervised] = {}
        self.killed: dict[str, int] = {}  # supervised children a fault SIGKILLed on purpose, by name
        self._tokens: dict[str, str] = {}

    # ------------------------------------------------------------------ the CLI

    def cli(self, *args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess:
        return subprocess.run(huisheng_argv(*args), env=self.env, cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def up(self) -> None:
        scale = ["--scale", ",".join(f"{name}={self.scale}" for name in PLATFORM_PROCESSES)] if self.scale > 1 else []
        done = self.cli("up", "-d", "--timeout", "90", *scale)
        if done.returncode != 0:
            raise ProcessFailed(f"huisheng up -d failed ({done.returncode}):\n{done.stdout[-3000:]}"
                                f"\n{done.stderr[-3000:]}")
        self.supervised = self.read_status()

    def read_status(self) -> dict[str, Supervised]:
        report = json.loads(self.cli("status", "--json").stdout)
        logs = self.root / "home" / "log"
        return {p["name"]: Supervised(p["name"], p["pid"], p["address"], logs / f"{p['name']}.log",
                                      state=p.get("state", "running"), restarts=int(p.get("restarts") or 0),
                                      health=p.get("health"))
                for p in report["processes"]}

    def refresh(self) -> dict[str, Supervised]:
        """Read the supervisor's view again (pids change when it restarts a child); the old one if it cannot."""
        with contextlib.suppress(ValueError, KeyError, TypeError, OSError, subprocess.SubprocessError):
            self.supervised = self.read_status()
        return self.supervised

    def dead(self) -> list[str]:
        if self.supervised:
            self.refresh()
        return super().dead()

    def crashes(self) -> list[str]:
        """The extras' dead containers, and restarts of supervised children that no fault caused."""
        found = super().crashes()
        for name, child in (self.refresh() if self.supervised else {}).items():
            unexplained = child.restarts - self.killed.get(name, 0)
            if unexplained > 0:
                found.append(f"{name}: restarted {unexplained} time(s) by the supervisor after a crash nobody caused")
        return found

    def down(self) -> tuple[float, subprocess.CompletedProcess]:
        """``huisheng down``: how long it took and what it said."""
        started = time.monotonic()
        done = self.cli("down", timeout=120)
        return time.monotonic() - started, done

    def restart(self) -> None:
        """What an operator does when the platform did not heal itself: ``huisheng down``, ``huisheng up -d``,
        restart dead extras."""
        self.down()
        self.up()
        self.start_extras([name for name, instance in self.extras.items() if not instance.alive()])

    # ------------------------------------------------------------------ extra instances

    def start_extras(self, names=PLATFORM_PROCESSES) -> None:
        """Start an extra instance of each of ``names``, side by side (each is in ``extras`` from its launch,
        so :meth:`close` stops it even if another failed to come up)."""
        for name in names:
            self.extras[name] = self.extra(name)
        start_all([self.extras[name] for name in names])

    def extra(self, name: str, crash_after: int | None = None) -> ServiceInstance:
        """A second instance of ``name``; with ``crash_after``, one that dies after that many writes."""
        port = free_ports(1)[0]
        env = {**self.env, "GATEWAY_PORT" if name == "gateway" else "HTTP_PORT": str(port)}
        log = self.root / "home" / "log" / f"{name}-extra.log"
        if crash_after is None:
            return ServiceInstance(f"{name}#2", huisheng_argv("service", name), env, port, log)
        argv = [sys.executable, "-m", "tests.chaos.crashpoint", name, str(crash_after)]
        return ServiceInstance(f"{name}#2 (crashes after {crash_after} writes)", argv, env, port, log)

    def instances(self, name: str) -> list:
        """``name``, ``name#2`` ... as ``huisheng up`` runs them, then the suite's extra."""
        supervised = [child for label, child in sorted(self.supervised.items()) if label.split("#")[0] == name]
        return supervised + super().instances(name)

    def all_instances(self) -> list:
        return list(self.supervised.values()) + super().all_instances()

    # ------------------------------------------------------------------ load and tallies

    def token(self, subject: str) -> str:
        if subject not in self._tokens:
            settings = Settings(secret=self.secret, community=COMMUNITY)
            self._tokens[subject] = issue_token(settings, "resident", subject, ttl=3600)
        return self._tokens[subject]

    def target(self) -> Target:
        urls = [f"http://127.0.0.1:{self.gateway_port}/api/v1/tickets"]
        urls += [f"{child.address}/api/v1/tickets" for child in self.instances("gateway")[1:]
                 if isinstance(child, Supervised)]  # up --scale's gateway#2 ...
        if "gateway" in self.extras:
            urls.append(f"http://127.0.0.1:{self.extras['gateway'].port}/api/v1/tickets")
        return Target(
            urls=urls,
            headers=lambda subject, key: {"Authorization": f"Bearer {self.token(subject)}", "Idempotency-Key": key,
                                          "X-Correlation-Id": key},  # the key in every log line of the request
            body=lambda key: {**REPORT, "description": description(key)},
            ticket_id=lambda answer: answer["id"],
        )

    def store(self) -> Store:
        return Store(self.db.uri, f"{self.prefix}tickets", f"{self.prefix}notify", "request_key")

    def silent_tickets(self, load_stopped: float) -> tuple[int | None, str | None]:
        """notify's silent-tickets count as staff read it (``GET /api/v1/reports/silent``), once the proof
        deadline of the last ticket the load created has passed and the reconciler has had time to run.

        The count only grows with time for an echo never delivered, so one read after the deadline is enough.
        (None, why) if the report cannot be read: the run then fails, it does not pass unchecked.
        """
        time.sleep(max(0.0, load_stopped + float(CHAOS_SETTINGS["ECHO_PROOF_SECONDS"]) - time.time()))
        self.wait_reconciler_pass(SILENT_TICKS * float(CHAOS_SETTINGS["NOTIFY_TIMER_SECONDS"]))
        settings = Settings(secret=self.secret, community=COMMUNITY)
        headers = {"Authorization": f"Bearer {issue_token(settings, 'secretary', 'chaos-secretary', ttl=600)}"}
        url = f"http://127.0.0.1:{self.gateway_port}/api/v1/reports/silent"
        problem = "no attempt"
        for _ in range(SILENT_READ_ATTEMPTS):
            try:
                answer = requests.get(url, headers=headers, timeout=10)
                if answer.status_code == 200:
                    report = answer.json()
                    tickets = [item.get("ticket_id") for item in report["items"]]
                    return report["count"], (f"silent tickets: {', '.join(map(str, tickets[:6]))}"
                                             if report["count"] else None)
                problem = f"{answer.status_code} {answer.text[:200]}"
            except (requests.RequestException, ValueError, KeyError) as error:
                problem = repr(error)[:200]
            time.sleep(1.0)
        return None, f"SILENT REPORT NOT READ: GET /api/v1/reports/silent: {problem}"

    def wait_reconciler_pass(self, timeout: float) -> None:
        """Until a pass of notify's reconciler that began from now on has ended, on any notify instance: its
        timer runs one pass at a time, so the second pass it ends from now on began after now. At most
        ``timeout`` (the margin of :data:`SILENT_TICKS` passes, a slow timer's), as when this was a fixed wait."""
        addresses = [instance.address for instance in self.instances("notify") if instance.address]
        before = [reconciler_passes(address) for address in addresses]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.25)
            now = [reconciler_passes(address) for address in addresses]
            if any(None not in (old, new) and new >= old + 2 for old, new in zip(before, now, strict=True)):
                return

    def close(self) -> None:
        """The extras and everything ``huisheng up`` started, SIGKILLed: ``huisheng down`` stops the layers
        one after the other, gracefully (5 to 10 s), which nothing here checks."""
        super().close()
        kill_platform(self.root / "home")


class NaivePipeline(System):
    """``bench/naive``: gateway -> RPC -> insert -> event -> handler -> insert, two instances of each."""

    kind = "naive"
    consumer_queue_pattern = re.compile(r"evt-.*")

    def start(self, copies: int = 2) -> None:
        for name in NAIVE_PROCESSES:
            for copy in range(1, copies + 1):
                label = name if copy == 1 else f"{name}#{copy}"
                self.extras[label] = self.instance(label, name).start()

    def instance(self, label: str, name: str) -> ServiceInstance:
        port = free_ports(1)[0]
        log = self.root / "home" / "log" / f"naive-{label.replace('#', '-')}.log"
        argv = [sys.executable, "-m", "bench.naive.runner", name]
        return ServiceInstance(f"naive {label}", argv, {**self.env, "HTTP_PORT": str(port)}, port, log)

    def instances(self, name: str) -> list:
        return [instance for label, instance in self.extras.items() if label.split("#")[0] == name]

    def target(self) -> Target:
        from bench.naive.services import RESIDENT_HEADER

        urls = [f"{instance.address}/api/v1/tickets" for instance in self.instances("gateway")]
        return Target(
            urls=urls,
            headers=lambda subject, key: {RESIDENT_HEADER: subject},  # no idempotency: the naive has none
            body=lambda key: {**REPORT, "description": description(key)},
            ticket_id=lambda answer: answer["_id"],
        )

    def store(self) -> Store:
        return Store(self.db.uri, f"{self.prefix}naive_tickets", f"{self.prefix}naive_notify", "description")


def reconciler_passes(address: str) -> int | None:
    """How many passes of notify's reconciler (its timer's ``tick`` workers) ended well in the notify instance
    at ``address``, from its ``/metrics``; None if they cannot be read."""
    try:
        answer = requests.get(f"{address}/metrics", timeout=2)
        answer.raise_for_status()
        return sum(int(sample.value) for family in text_string_to_metric_families(answer.text)
                   for sample in family.samples if sample.name == "huisheng_worker_seconds_count"
                   and sample.labels.get("entrypoint") == "tick" and sample.labels.get("outcome") == "ok")
    except (requests.RequestException, ValueError):
        return None


def lines_with(path: Path, needle: str) -> list[str]:
    try:
        with path.open(errors="replace") as lines:
            return [line for line in lines if needle in line]
    except OSError:
        return []


def logged(path: Path, event: str) -> int:
    """How many times a process logged ``event`` (its JSON log lines carry ``"event": ...``)."""
    return len(lines_with(path, f'"event": "{event}"'))

"""A three-node RabbitMQ cluster on loopback with the production queue policy (issue #16, part 3).

Three nodes of the installed server (:class:`tests.chaos.rabbit.RabbitNode`), each
with its own node name, data, and ports (AMQP, Erlang distribution, management,
Prometheus), one Erlang cookie, schedulers that do not busy-wait; the second and
third join the first with ``rabbitmqctl join_cluster``. Clients reach the cluster
through a **balancer** on one loopback port that hands each new connection to the
next node that accepts it, as a Kubernetes Service does: when a node is killed its
clients reconnect and land on a live one.

Each vhost is created as production's is (``deploy/k8s/20-rabbitmq.yaml``): its
default queue type is quorum, so the queues the kernel declares without a type
(kernel/topology.py) and nameko's RPC queues are quorum queues replicated to all
three nodes, and the manifest's policy (delivery limit, at-least-once
dead-lettering, reject-publish) is applied as written there.

A :class:`RabbitCluster` offers what :class:`tests.chaos.systems.Platform` asks of a
node (``add_vhost``, ``delete_vhost``, ``queues``...), so the platform runs on it unchanged.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.parse
import uuid
from pathlib import Path
from urllib.error import HTTPError

import yaml

from tests.chaos.processes import ROOT
from tests.chaos.rabbit import BrokerUnavailable, RabbitNode, free_ports

MANIFEST = ROOT / "deploy" / "k8s" / "20-rabbitmq.yaml"
JOIN_TIMEOUT = 120.0

BALANCER_SCRIPT = r"""
import itertools, socket, sys, threading
listen_port, backends = int(sys.argv[1]), [int(p) for p in sys.argv[2].split(",")]
turn = itertools.count()

def pipe(source, sink):
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

def connect():
    first = next(turn)
    for step in range(len(backends)):
        try:
            upstream = socket.create_connection(("127.0.0.1", backends[(first + step) % len(backends)]), timeout=2)
            upstream.settimeout(None)
            return upstream
        except OSError:
            continue
    return None

server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", listen_port))
server.listen(128)
print("ready", flush=True)
while True:
    client, _ = server.accept()
    upstream = connect()
    if upstream is None:
        client.close()
        continue
    threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
    threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
"""


def production_policy() -> dict:
    """The quorum-queue policy of the k8s manifest: ``{"name", "pattern", "definition", "priority"}``."""
    for document in yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8")):
        if document and document.get("kind") == "Policy":
            spec = document["spec"]
            return {"name": spec["name"], "pattern": spec["pattern"], "definition": dict(spec["definition"]),
                    "priority": int(spec.get("priority", 0)), "apply-to": spec.get("applyTo", "queues")}
    raise LookupError(f"no Policy in {MANIFEST}")


def default_queue_type() -> str:
    """The ``defaultQueueType`` of the manifest's Vhost (quorum)."""
    for document in yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8")):
        if document and document.get("kind") == "Vhost":
            return document["spec"]["defaultQueueType"]
    raise LookupError(f"no Vhost in {MANIFEST}")


class Balancer:
    """One loopback port in front of the nodes: each new connection goes to the next node that accepts it."""

    def __init__(self, backends: list[int]):
        self.backends = backends
        self.port = free_ports(1)[0]
        self.process: subprocess.Popen | None = None

    def start(self) -> Balancer:
        self.process = subprocess.Popen(
            [sys.executable, "-c", BALANCER_SCRIPT, str(self.port), ",".join(map(str, self.backends))],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if self.process.stdout.readline().strip() != "ready":
            raise BrokerUnavailable(f"the cluster's balancer could not listen on {self.port}")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


class RabbitCluster:
    """Three :class:`RabbitNode` joined into one cluster, behind a :class:`Balancer`."""

    def __init__(self, root: Path, size: int = 3):
        token = uuid.uuid4().hex[:8]
        cookie = uuid.uuid4().hex.upper()  # the same for every node and its rabbitmqctl
        self.nodes = [RabbitNode(Path(root) / f"node{index}", name=f"huisheng-cluster-{token}-{index}@localhost",
                                 cookie=cookie, prometheus=True) for index in range(1, size + 1)]
        self.balancer: Balancer | None = None  # made once the nodes run: a node's ports are final then
        self.policy = production_policy()
        self.queue_type = default_queue_type()
        self.notes: list[str] = []  # where this server differs from the manifest

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> RabbitCluster:
        """Boot the first node, then each other one and join it to the first; then the balancer."""
        seed = self.nodes[0].start()
        for node in self.nodes[1:]:
            node.start()
            for args in (("stop_app",), ("join_cluster", seed.name), ("start_app",)):
                done = node.ctl(*args, timeout=JOIN_TIMEOUT)
                if done.returncode != 0:
                    raise BrokerUnavailable(f"{node.name}: rabbitmqctl {' '.join(args)} failed: "
                                            f"{(done.stderr or done.stdout).strip()[-500:]}")
            node.wait_ready(JOIN_TIMEOUT)
        self.balancer = Balancer([node.amqp_port for node in self.nodes]).start()
        self.wait_members(len(self.nodes), JOIN_TIMEOUT)
        return self

    def running_members(self) -> list[str]:
        """Node names the cluster reports running (asked of a live node)."""
        for node in self.live():
            done = node.ctl("cluster_status", "--formatter", "json", timeout=30)
            if done.returncode == 0:
                with contextlib.suppress(ValueError):
                    return sorted(json.loads(done.stdout).get("running_nodes", []))
        return []

    def wait_members(self, count: int, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            members = self.running_members()
            if len(members) >= count:
                return members
            time.sleep(1)
        raise BrokerUnavailable(f"the cluster has {self.running_members()} running, not {count} nodes")

    def live(self) -> list[RabbitNode]:
        return [node for node in self.nodes if node.alive()]

    def alive(self) -> bool:
        return all(node.alive() for node in self.nodes)

    def stop(self) -> None:
        if self.balancer is not None:
            self.balancer.stop()
        for node in reversed(self.nodes):
            node.stop()

    # ------------------------------------------------------------------ what Platform asks of a node

    @property
    def amqp_base(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.balancer.port}"

    def amqp_uri(self, vhost: str = "/") -> str:
        return f"{self.amqp_base}/{urllib.parse.quote(vhost, safe='')}"

    def api(self, method: str, path: str, body: dict | None = None, timeout: float = 10.0):
        """The management API of the first live node (any node answers for the whole cluster)."""
        return self.live()[0].api(method, path, body, timeout)

    def add_vhost(self, name: str) -> str:
        """A vhost as production's: quorum by default, the manifest's policy applied; its AMQP URI."""
        quoted = urllib.parse.quote(name, safe="")
        self.api("PUT", f"/vhosts/{quoted}", {"defaultqueuetype": self.queue_type})  # 3.10 spells it so
        self.api("PUT", f"/permissions/{quoted}/guest", {"configure": ".*", "write": ".*", "read": ".*"})
        policy = self.policy
        body = {"pattern": policy["pattern"], "definition": policy["definition"], "apply-to": policy["apply-to"],
                "priority": policy["priority"]}
        try:
            self.api("PUT", f"/policies/{quoted}/{policy['name']}", body)
        except HTTPError as error:
            # RabbitMQ 3.10 knows only apply-to queues/exchanges/all ("quorum_queues" came with 3.12): the same
            # definition applied to queues reaches the same quorum queues (the keys are quorum-only or shared).
            if error.code != 400 or policy["apply-to"] == "queues":
                raise
            self.notes.append(f"policy {policy['name']}: apply-to {policy['apply-to']!r} refused by this server "
                              f"({error.read().decode(errors='replace')[:160]}); applied to 'queues'")
            self.api("PUT", f"/policies/{quoted}/{policy['name']}", {**body, "apply-to": "queues"})
        return self.amqp_uri(name)

    def delete_vhost(self, name: str) -> None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            self.api("DELETE", f"/vhosts/{urllib.parse.quote(name, safe='')}")

    def queues(self, vhost: str) -> dict[str, dict]:
        """Ready and unacked messages and consumers per queue, asked of a live node."""
        errors = []
        for node in self.live():
            try:
                return node.queues(vhost)
            except BrokerUnavailable as error:
                errors.append(str(error))
        raise BrokerUnavailable("; ".join(errors) or "no node of the cluster is running")

    def queue_types(self, vhost: str) -> dict[str, dict]:
        """Each queue's type, effective policy, leader and members (quorum queues)."""
        for node in self.live():
            done = node.ctl("list_queues", "-p", vhost, "-q", "--formatter", "json", "name", "type", "policy",
                            "leader", "members", timeout=30)
            if done.returncode == 0:
                return {row["name"]: row for row in json.loads(done.stdout or "[]")}
        raise BrokerUnavailable("no node of the cluster answered list_queues")

    def leaders(self, vhost: str) -> dict[str, int]:
        """How many quorum queues of ``vhost`` each node leads."""
        counts = {node.name: 0 for node in self.nodes}
        for row in self.queue_types(vhost).values():
            if row.get("leader") in counts:
                counts[row["leader"]] += 1
        return counts

    def busiest(self, vhost: str) -> RabbitNode:
        """The node that leads the most queues of ``vhost``: killing it forces the most leader elections."""
        leaders = self.leaders(vhost)
        return max(self.nodes, key=lambda node: leaders.get(node.name, 0))

"""The platform on a three-node RabbitMQ cluster with production's quorum queues (issue #16, part 3).

Three nodes of the installed server on loopback (:mod:`tests.chaos.cluster`), the
vhost created as the k8s manifest creates it (default queue type quorum) with the
manifest's policy (delivery limit, at-least-once dead-lettering, reject-publish),
the platform with two instances of every process (``huisheng up -d --scale tickets=2,...``)
connected through a balancer. Under load: the node leading the most queues is SIGKILLed
with a backlog in its queues and restarted (it rejoins), then the second instance of
each service (``tickets#2`` ...) is SIGKILLed and ``huisheng up`` brings it back without a
hand on it. Nothing lost, nothing applied twice, no ticket silent; the tally is printed
in one table with the single-node scenarios' (``make chaos``).
"""

from __future__ import annotations

import re

import pytest

from tests.chaos.cluster import RabbitCluster
from tests.chaos.faults import in_sequence, kill_cluster_node, kill_supervised
from tests.chaos.harness import Scenario, assert_clean, run
from tests.chaos.rabbit import server_script
from tests.chaos.systems import PLATFORM_PROCESSES, Platform

# The queues the kernel declares (kernel/topology.py), which the manifest's policy names (not the DLQs
# nor huisheng.unrouted): each must be a quorum queue with a member on every node and the policy.
POLICED = re.compile(r"huisheng\.(retry\.\d+ms|[a-z_]+\.[a-z_]+)")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if server_script() is None:
        pytest.skip("rabbitmq-server is not installed: the cluster scenario needs three nodes of its own")
    nodes = RabbitCluster(tmp_path_factory.mktemp("cluster"))
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
def clustered(tmp_path, cluster, database):
    """The platform with two instances of every process (``huisheng up --scale``), on the cluster."""
    for node in cluster.nodes:
        if not node.alive():
            node.start()
    system = Platform(tmp_path, cluster, database, scale=2)
    try:
        system.up()
        yield system
    finally:
        system.close()
        cluster.delete_vhost(system.vhost)


def queue_shape(cluster: RabbitCluster, vhost: str) -> list[str]:
    """What differs from production's shape: every declared queue quorum on three nodes, the policy on each."""
    problems = []
    for name, row in sorted(cluster.queue_types(vhost).items()):
        if not name.startswith("huisheng."):
            continue
        if row.get("type") != "quorum":
            problems.append(f"{name} is {row.get('type')}, not quorum")
        elif len(row.get("members") or []) != len(cluster.nodes):
            problems.append(f"{name} has members {row.get('members')}")
        if POLICED.fullmatch(name) and not name.endswith(".dlq") and row.get("policy") != cluster.policy["name"]:
            problems.append(f"{name} has policy {row.get('policy')!r}, not {cluster.policy['name']}")
    return problems


@pytest.mark.chaos
def test_a_broker_node_of_three_then_one_instance_of_each_service_killed(clustered, cluster, record):
    shape = queue_shape(cluster, clustered.vhost)
    assert not shape, "the queues are not production's: " + "; ".join(shape)
    notes = list(cluster.notes)
    second = tuple(f"{name}#2" for name in PLATFORM_PROCESSES)
    missing = [name for name in second if name not in clustered.supervised]
    assert not missing, f"huisheng up --scale did not start {missing}: {sorted(clustered.supervised)}"
    fault = in_sequence(kill_cluster_node(clustered, cluster, notes), kill_supervised(clustered, second, notes))
    scenario = Scenario("3-node cluster: broker node, then one instance of each, killed", fault, rate=20.0,
                        recovery=6.0, notes=notes)
    tally = record(run(scenario, clustered))
    healed = [n for n in notes if n.startswith("SIGKILLed supervised") and "healthy again" in n]
    assert_clean(tally, *([] if any("SIGKILLed at" in n and "node " in n for n in notes)
                          else ["no broker node was killed"]),
                 *([] if len(healed) == len(second) else [f"only {len(healed)} of {second} were brought back"]))
    assert not queue_shape(cluster, clustered.vhost), "the queues changed shape after the faults"

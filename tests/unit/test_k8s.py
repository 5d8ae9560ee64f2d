"""The Kubernetes manifests agree with the code.

No cluster runs where the tests run, so ``deploy/k8s/*.yaml`` are parsed and held
against :data:`kernel.platform.PROCESSES` (a Deployment, Service and
PodDisruptionBudget per process, probed and scraped on its port),
:data:`kernel.config.ENVIRONMENT` (every environment variable name),
:class:`kernel.config.Settings` (the stop timeout the grace period must outlast,
the databases the MongoDB user needs) and :mod:`kernel.topology` (the queues the
RabbitMQ policy must cover). Nothing here touches the network.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from kernel.config import ENVIRONMENT, Settings
from kernel.events import SUBSCRIPTIONS
from kernel.platform import PROCESSES, Process
from kernel.topology import UNROUTED_QUEUE, consumer_queues

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "deploy" / "k8s"
NAMESPACE = "huisheng"
PLACEHOLDER = "CHANGE-ME"

# The longest a handler can keep a worker busy once it runs: every wait in it is bounded, the
# longest being pymongo's socket timeout (kernel.mongo.connect: socketTimeoutMS 10 s); RPC calls
# wait at most RPC_TIMEOUT (5 s by default).
SLOWEST_HANDLER_SECONDS = 10.0

by_process = pytest.mark.parametrize("proc", PROCESSES, ids=lambda p: p.name)


# ---------------------------------------------------------------------- loading


def load_manifests() -> list[tuple[str, dict]]:
    assert K8S_DIR.is_dir(), "deploy/k8s is missing"
    found = []
    for path in sorted(K8S_DIR.glob("*.y*ml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document is not None:
                assert isinstance(document, dict), f"{path.name}: a document is not a mapping"
                found.append((path.name, document))
    assert found, "deploy/k8s has no manifests"
    return found


MANIFESTS = load_manifests()


def of_kind(kind: str) -> list[dict]:
    return [doc for _, doc in MANIFESTS if doc.get("kind") == kind]


def named(kind: str, name: str) -> dict:
    found = [doc for doc in of_kind(kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} named {name!r} in deploy/k8s, found {len(found)}"
    return found[0]


def deployment_of(proc: Process) -> dict:
    return named("Deployment", proc.name)


def pod_spec(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]


def container_of(proc: Process) -> dict:
    containers = pod_spec(deployment_of(proc))["containers"]
    assert len(containers) == 1, f"{proc.name}: expected one container, found {len(containers)}"
    return containers[0]


def pod_labels(deployment: dict) -> dict:
    return deployment["spec"]["template"]["metadata"].get("labels") or {}


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def container_port(container: dict, port: Any) -> int:
    """A probe's or Service's port (a number or a named container port) as a number."""
    if isinstance(port, int):
        return port
    if str(port).isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    pytest.fail(f"container {container['name']!r} has no port named {port!r}")


def config_data(kind: str, name: str) -> dict[str, str]:
    document = named(kind, name)
    data = dict(document.get("data") or {})
    data.update(document.get("stringData") or {})
    return {str(k): str(v) for k, v in data.items()}


def environment(proc: Process) -> dict[str, str | None]:
    """Every variable the container gets: envFrom sources first, then env (which wins)."""
    container = container_of(proc)
    env: dict[str, str | None] = {}
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            env.update(config_data("ConfigMap", source["configMapRef"]["name"]))
        if "secretRef" in source:
            env.update(config_data("Secret", source["secretRef"]["name"]))
    for item in container.get("env") or []:
        env[item["name"]] = item.get("value")
    return env


def shared_secret_value(key: str) -> str:
    for doc in of_kind("Secret"):
        value = {**(doc.get("data") or {}), **(doc.get("stringData") or {})}.get(key)
        if value:
            return str(value)
    pytest.fail(f"no Secret in deploy/k8s holds {key}")


def topology_queue_names() -> list[str]:
    return [queue.name for queue in consumer_queues(Settings().retry_delays_ms)]


# ------------------------------------------------------------------- every manifest


def test_manifests_have_kind_name_and_namespace():
    problems = []
    for filename, doc in MANIFESTS:
        if not doc.get("apiVersion") or not doc.get("kind") or not (doc.get("metadata") or {}).get("name"):
            problems.append(f"{filename}: a document without apiVersion, kind or metadata.name")
        elif doc["kind"] != "Namespace" and doc["metadata"].get("namespace") != NAMESPACE:
            problems.append(f"{filename}: {doc['kind']} {doc['metadata']['name']} is not in namespace {NAMESPACE!r}")
    assert not problems, "\n".join(problems)
    named("Namespace", NAMESPACE)


def test_only_known_processes_are_deployed():
    unknown = sorted({d["metadata"]["name"] for d in of_kind("Deployment")} - {p.name for p in PROCESSES})
    assert not unknown, f"Deployments that are not processes of kernel.platform.PROCESSES: {unknown}"


# ---------------------------------------------------------------------- processes


@by_process
def test_process_runs_its_own_command(proc):
    deployment = deployment_of(proc)
    assert selects(deployment["spec"]["selector"]["matchLabels"], pod_labels(deployment)), (
        f"{proc.name}: the Deployment's selector does not match its pod labels"
    )
    assert container_of(proc).get("command") == ["huisheng", "service", proc.name], (
        f"{proc.name} must run `huisheng service {proc.name}`"
    )


@by_process
def test_process_listens_where_it_is_probed_and_scraped(proc):
    container = container_of(proc)
    env = environment(proc)
    port = env.get(proc.http_port_env)
    assert port and int(port) == proc.default_port, (
        f"{proc.name} must set {proc.http_port_env}={proc.default_port}, sets {port!r}"
    )
    host_env = proc.http_port_env.replace("_PORT", "_HOST")
    assert env.get(host_env) == "0.0.0.0", f"{proc.name} must set {host_env}=0.0.0.0 to be reachable in its pod"
    declared = [int(p["containerPort"]) for p in container.get("ports") or []]
    assert declared == [int(port)], f"{proc.name} declares container ports {declared}, listens on {port}"
    for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health")):
        spec = (container.get(probe) or {}).get("httpGet") or {}
        assert spec.get("path") == path, f"{proc.name}: {probe} must GET {path}, has {spec}"
        assert container_port(container, spec.get("port")) == int(port), (
            f"{proc.name}: {probe} probes port {spec.get('port')!r}, the process listens on {port}"
        )
    annotations = deployment_of(proc)["spec"]["template"]["metadata"].get("annotations") or {}
    assert annotations.get("prometheus.io/scrape") == "true", f"{proc.name}: pods are not annotated for scraping"
    assert annotations.get("prometheus.io/port") == str(port), (
        f"{proc.name}: prometheus.io/port is {annotations.get('prometheus.io/port')!r}, /metrics is on {port}"
    )
    assert annotations.get("prometheus.io/path", "/metrics") == "/metrics"


@by_process
def test_process_has_a_service(proc):
    deployment = deployment_of(proc)
    service = named("Service", proc.name)
    assert selects(service["spec"].get("selector") or {}, pod_labels(deployment)), (
        f"Service {proc.name} does not select the {proc.name} pods"
    )
    container = container_of(proc)
    targets = [container_port(container, p.get("targetPort", p["port"])) for p in service["spec"]["ports"]]
    assert targets == [proc.default_port], f"Service {proc.name} targets ports {targets}, not {proc.default_port}"


@by_process
def test_process_has_a_disruption_budget(proc):
    labels = pod_labels(deployment_of(proc))
    budgets = [pdb for pdb in of_kind("PodDisruptionBudget")
               if selects((pdb["spec"].get("selector") or {}).get("matchLabels") or {}, labels)]
    assert len(budgets) == 1, f"{proc.name}: expected one PodDisruptionBudget selecting its pods, found {len(budgets)}"
    spec = budgets[0]["spec"]
    assert spec.get("minAvailable", 0) >= 1 or "maxUnavailable" in spec, (
        f"{proc.name}: the PodDisruptionBudget allows every pod to go at once"
    )


@pytest.mark.parametrize("proc", [p for p in PROCESSES if not p.is_gateway], ids=lambda p: p.name)
def test_services_run_competing_instances(proc):
    replicas = deployment_of(proc)["spec"].get("replicas", 1)
    assert replicas >= 2, f"{proc.name} runs {replicas} instance(s): run two to compete on its queues"


@by_process
def test_process_outlives_its_slowest_handler_when_stopped(proc):
    spec = pod_spec(deployment_of(proc))
    container = container_of(proc)
    grace = spec.get("terminationGracePeriodSeconds", 30)
    stop_timeout = float(environment(proc).get("HUISHENG_STOP_TIMEOUT") or Settings().stop_timeout)
    pre_stop = (container.get("lifecycle") or {}).get("preStop") or {}
    if "sleep" in pre_stop:
        drain = float(pre_stop["sleep"]["seconds"])
    else:
        command = (pre_stop.get("exec") or {}).get("command") or []
        assert len(command) == 2 and command[0] in ("sleep", "/bin/sleep"), (
            f"{proc.name}: preStop must sleep so the pod leaves its Service's endpoints first; has {pre_stop}"
        )
        drain = float(command[1])
    needed = drain + stop_timeout + SLOWEST_HANDLER_SECONDS
    assert grace > needed, (
        f"{proc.name}: terminationGracePeriodSeconds {grace} must exceed preStop {drain:g} s + "
        f"HUISHENG_STOP_TIMEOUT {stop_timeout:g} s + the slowest handler {SLOWEST_HANDLER_SECONDS:g} s"
    )


@by_process
def test_process_runs_as_non_root(proc):
    pod = pod_spec(deployment_of(proc)).get("securityContext") or {}
    container = container_of(proc).get("securityContext") or {}
    merged = {**pod, **container}
    assert merged.get("runAsNonRoot") is True, f"{proc.name}: runAsNonRoot is not set"
    assert merged.get("runAsUser", 10001) != 0, f"{proc.name}: runs as uid 0"
    assert container.get("allowPrivilegeEscalation") is False, f"{proc.name}: allowPrivilegeEscalation is not false"


@by_process
def test_process_has_resources(proc):
    resources = container_of(proc).get("resources") or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    assert requests.get("cpu") and requests.get("memory"), f"{proc.name}: no cpu/memory requests"
    assert limits.get("memory"), f"{proc.name}: no memory limit"


@by_process
def test_environment_names_are_known_to_the_code(proc):
    names = set(environment(proc))  # envFrom keys and env names
    unknown = sorted(names - set(ENVIRONMENT))
    assert not unknown, (
        f"{proc.name} gets environment variables the code never reads (not in kernel.config.ENVIRONMENT): "
        f"{unknown}"
    )
    for needed in ("AMQP_URI", "MONGO_URI", "HUISHENG_SECRET"):
        assert environment(proc).get(needed), f"{proc.name} does not get {needed}"


def test_config_maps_and_secrets_hold_only_known_names():
    for kind in ("ConfigMap", "Secret"):
        for doc in of_kind(kind):
            referenced = any(
                (source.get("configMapRef") or source.get("secretRef") or {}).get("name") == doc["metadata"]["name"]
                for d in of_kind("Deployment") for c in pod_spec(d)["containers"] for source in c.get("envFrom") or []
            )
            if referenced:
                data = config_data(kind, doc["metadata"]["name"])
                unknown = sorted(set(data) - set(ENVIRONMENT))
                assert not unknown, f"{kind} {doc['metadata']['name']} holds names not in ENVIRONMENT: {unknown}"


# ------------------------------------------------------------------------ RabbitMQ


def rabbitmq_cluster() -> dict:
    clusters = of_kind("RabbitmqCluster")
    assert len(clusters) == 1, f"expected one RabbitmqCluster in deploy/k8s, found {len(clusters)}"
    assert clusters[0]["apiVersion"] == "rabbitmq.com/v1beta1"
    return clusters[0]


def amqp_uri() -> Any:
    return urlsplit(shared_secret_value("AMQP_URI"))


def test_rabbitmq_is_a_cluster_of_three_with_its_plugins():
    spec = rabbitmq_cluster()["spec"]
    replicas = spec.get("replicas", 1)
    assert replicas >= 3 and replicas % 2 == 1, f"RabbitmqCluster replicas is {replicas}: use an odd number >= 3"
    plugins = set((spec.get("rabbitmq") or {}).get("additionalPlugins") or [])
    assert {"rabbitmq_management", "rabbitmq_prometheus"} <= plugins, f"RabbitmqCluster plugins: {sorted(plugins)}"
    config = (spec.get("rabbitmq") or {}).get("additionalConfig") or ""
    assert re.search(r"^\s*prometheus\.return_per_object_metrics\s*=\s*true\s*$", config, re.M), (
        "RabbitmqCluster must set prometheus.return_per_object_metrics = true (per-queue metrics)"
    )
    assert (spec.get("tls") or {}).get("secretName"), "RabbitmqCluster has no TLS"


def test_processes_reach_the_cluster_over_tls():
    uri = amqp_uri()
    cluster = rabbitmq_cluster()["metadata"]["name"]
    assert uri.scheme == "amqps", f"AMQP_URI must use amqps:// (TLS), uses {uri.scheme}://"
    assert uri.hostname in (cluster, f"{cluster}.{NAMESPACE}", f"{cluster}.{NAMESPACE}.svc",
                            f"{cluster}.{NAMESPACE}.svc.cluster.local"), (
        f"AMQP_URI points at {uri.hostname}, not the RabbitmqCluster {cluster!r}"
    )
    assert uri.port == 5671, f"AMQP_URI uses port {uri.port}; amqps is 5671"


def test_event_queues_are_quorum_queues_with_safe_dead_lettering():
    vhost = amqp_uri().path.lstrip("/") or "/"
    vhosts = [v for v in of_kind("Vhost") if v["spec"]["name"] == vhost]
    assert vhosts and vhosts[0]["spec"].get("defaultQueueType") == "quorum", (
        f"the vhost {vhost!r} of AMQP_URI must exist with defaultQueueType: quorum "
        "(kernel/topology.py declares no queue type)"
    )
    policies = [p for p in of_kind("Policy") if p["spec"].get("vhost", "/") == vhost]
    assert len(policies) == 1, f"expected one Policy in vhost {vhost!r}, found {len(policies)}"
    spec = policies[0]["spec"]
    definition = spec["definition"]
    assert isinstance(definition.get("delivery-limit"), int) and definition["delivery-limit"] > 0, (
        "the policy must set a delivery-limit (quorum queues in 3.13 have none by default)"
    )
    assert definition.get("dead-letter-strategy") == "at-least-once", "dead-letter-strategy must be at-least-once"
    assert definition.get("overflow") == "reject-publish", (
        "at-least-once dead-lettering needs overflow: reject-publish (else RabbitMQ falls back to at-most-once)"
    )
    assert spec.get("applyTo") in ("queues", "quorum_queues", "all")
    pattern = spec["pattern"]
    queues = topology_queue_names()
    covered = [sub.queue for sub in SUBSCRIPTIONS] + [q for q in queues if q.startswith("huisheng.retry.")]
    missed = sorted(q for q in covered if not re.search(pattern, q))
    assert not missed, f"the policy pattern {pattern!r} misses {missed}"
    # A delivery limit on a queue nothing dead-letters out of would drop messages instead.
    excluded = [sub.dead_letter_queue for sub in SUBSCRIPTIONS] + [UNROUTED_QUEUE.name]
    wrongly = sorted(q for q in excluded if re.search(pattern, q))
    assert not wrongly, f"the policy pattern {pattern!r} also matches {wrongly}"


def test_rabbitmq_user_is_granted_the_vhost():
    uri = amqp_uri()
    vhost = uri.path.lstrip("/") or "/"
    users = {u["metadata"]["name"]: u for u in of_kind("User")}
    permissions = [p for p in of_kind("Permission") if p["spec"]["vhost"] == vhost]
    granted = {(p["spec"].get("userReference") or {}).get("name") or p["spec"].get("user") for p in permissions}
    assert granted & set(users), f"no User of deploy/k8s is granted the vhost {vhost!r}"
    credentials = [config_data("Secret", u["spec"]["importCredentialsSecret"]["name"]) for u in users.values()
                   if u["spec"].get("importCredentialsSecret")]
    assert any(c.get("username") == uri.username for c in credentials), (
        f"AMQP_URI logs in as {uri.username!r}, which no User's credentials Secret names"
    )
    # `huisheng ops` reads queues through the management API with AMQP_URI's credentials.
    tags = {tag for u in users.values() for tag in u["spec"].get("tags") or []}
    assert tags & {"management", "monitoring", "administrator"}, (
        "the platform's RabbitMQ user has no management tag: `huisheng ops` cannot use the management API"
    )


# ------------------------------------------------------------------------- MongoDB


def test_mongo_uri_names_the_replica_set_with_majority_writes_over_tls():
    uri = urlsplit(shared_secret_value("MONGO_URI"))
    query = {k: v[-1] for k, v in parse_qs(uri.query).items()}
    assert query.get("w") == "majority", f"MONGO_URI must set w=majority, has w={query.get('w')!r}"
    assert query.get("tls") == "true", "MONGO_URI must set tls=true"
    (database,) = of_kind("MongoDBCommunity")
    assert database["spec"]["type"] == "ReplicaSet" and database["spec"]["members"] >= 3, (
        "MongoDB must be a replica set of at least three members"
    )
    assert query.get("replicaSet") == database["metadata"]["name"], (
        f"MONGO_URI names replica set {query.get('replicaSet')!r}, the MongoDBCommunity is "
        f"{database['metadata']['name']!r}"
    )
    hosts = uri.netloc.rpartition("@")[2].split(",")
    assert len(hosts) == database["spec"]["members"], f"MONGO_URI lists {len(hosts)} hosts for a replica set"
    ca_file = query.get("tlsCAFile")
    if ca_file:
        for proc in PROCESSES:
            mounts = [m["mountPath"] for m in container_of(proc).get("volumeMounts") or []]
            assert any(ca_file.startswith(m.rstrip("/") + "/") for m in mounts), (
                f"{proc.name} does not mount {ca_file} (MONGO_URI's tlsCAFile)"
            )


def test_mongo_user_may_write_every_service_database():
    (database,) = of_kind("MongoDBCommunity")
    uri = urlsplit(shared_secret_value("MONGO_URI"))
    users = [u for u in database["spec"].get("users") or [] if u["name"] == uri.username]
    assert users, f"MONGO_URI logs in as {uri.username!r}, which the MongoDBCommunity does not define"
    writable = {role["db"] for role in users[0].get("roles") or [] if role["name"] in ("readWrite", "dbOwner")}
    needed = {Settings().database_name(p.name) for p in PROCESSES if not p.is_gateway}
    assert needed <= writable, f"the MongoDB user cannot write {sorted(needed - writable)}"


# ------------------------------------------------------------------------- secrets


def test_secrets_in_the_repository_are_placeholders():
    """A real credential must never be committed: every secret value here is CHANGE-ME."""
    problems = []
    for doc in of_kind("Secret"):
        for key, value in config_data("Secret", doc["metadata"]["name"]).items():
            if key in ("AMQP_URI", "MONGO_URI"):
                password = urlsplit(value).password
                if password != PLACEHOLDER:
                    problems.append(f"{doc['metadata']['name']}.{key}: the password is not {PLACEHOLDER}")
            elif key != "username" and value != PLACEHOLDER:
                problems.append(f"{doc['metadata']['name']}.{key} is not {PLACEHOLDER}")
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------- the directory and SMS


@by_process
def test_only_the_directory_gets_the_data_key(proc):
    gets = "HUISHENG_DATA_KEY" in environment(proc)
    assert gets == (proc.name == "directory"), (
        f"{proc.name}: HUISHENG_DATA_KEY (it decrypts residents' personal data) must reach the directory's pods "
        "and no other"
    )


def test_notify_sends_sign_in_codes_through_a_provider_over_https():
    notify = next(p for p in PROCESSES if p.name == "notify")
    env = environment(notify)
    assert (env.get("SMS_PROVIDER_URL") or "").startswith("https://"), (
        "in a cluster notify must send through the real provider (not the compose stand-in), over https"
    )
    for name in ("SMS_ACCESS_KEY_ID", "SMS_ACCESS_KEY_SECRET"):
        assert env.get(name), f"notify does not get {name}"
    others = [p for p in PROCESSES if p.name != "notify" and "SMS_ACCESS_KEY_SECRET" in environment(p)]
    assert not others, f"the SMS account's secret reaches {[p.name for p in others]}"


def test_notify_trusts_public_certificates_as_well_as_the_cluster_ca():
    notify = next(p for p in PROCESSES if p.name == "notify")
    mounts = {m["mountPath"]: m for m in container_of(notify).get("volumeMounts") or []}
    bundle = mounts.get("/etc/ssl/certs/ca-certificates.crt")
    assert bundle, "notify's system CA bundle is not set (amqps:// verifies the broker against it)"
    spec = pod_spec(deployment_of(notify))
    writers = [c for c in spec.get("initContainers") or []
               if any(m["name"] == bundle["name"] for m in c.get("volumeMounts") or [])]
    assert writers, (
        "notify's CA bundle must hold the public CAs too (it calls the SMS provider over public TLS): "
        "an init container must write it"
    )
    script = " ".join(writers[0].get("command") or [])
    assert "/etc/ssl/certs/ca-certificates.crt" in script and "ca.crt" in script

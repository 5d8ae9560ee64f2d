"""The monitoring configuration agrees with the code.

No Prometheus or Grafana runs where the tests run, so ``deploy/prometheus/``,
``deploy/grafana/`` and the observability part of ``docker-compose.yml`` are parsed
and held against :data:`kernel.platform.PROCESSES` (who is scraped, on which port),
:mod:`kernel.metrics`, notify's and the gateway's (which ``huisheng_*`` metrics exist), :mod:`kernel.topology`
(which queues the alerts' patterns must cover) and ``docs/operations.md`` (every
alert has its section). Nothing here touches the network.

Metric names a query may use:

* ours: what the prometheus_client objects of :mod:`kernel.metrics`,
  :mod:`services.notify.outcomes` and :mod:`gateway.http` expose, read
  from their ``_name`` and ``_type`` (a Counter's ``_name`` drops ``_total``; a
  Histogram exposes ``_bucket``, ``_count`` and ``_sum``);
* RabbitMQ's: :data:`RABBITMQ_METRICS`, the rabbitmq_prometheus names the files use,
  each checked against the plugin's collectors of RabbitMQ 3.13
  (``deps/rabbitmq_prometheus/src/collectors/prometheus_rabbitmq_core_metrics_collector.erl``
  and ``..._alarm_metrics_collector.erl``); add a name here only after checking it there;
* Prometheus's own per-target series (:data:`PROMETHEUS_METRICS`);
* in alert rules only, :data:`PENDING_METRICS`: metrics a later issue adds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from nameko.rpc import RPC_QUEUE_TEMPLATE, RPC_REPLY_QUEUE_TEMPLATE
from prometheus_client.metrics import MetricWrapperBase

import gateway.http as gateway_metrics
import kernel.metrics as kernel_metrics
import services.notify.outcomes as notify_metrics
from kernel.config import Settings
from kernel.events import SUBSCRIPTIONS
from kernel.platform import PROCESSES, Process
from kernel.topology import UNROUTED_QUEUE, consumer_queues

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTS_FILE = PROMETHEUS_DIR / "alerts.yml"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARDS_DIR = GRAFANA_DIR / "dashboards"
DATASOURCES_DIR = GRAFANA_DIR / "provisioning" / "datasources"
DASHBOARD_PROVIDERS_DIR = GRAFANA_DIR / "provisioning" / "dashboards"
RABBITMQ_CONF = ROOT / "deploy" / "rabbitmq" / "rabbitmq.conf"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"

PROMETHEUS_PORT = 9090
RABBITMQ_PROMETHEUS_PORT = 15692
RABBITMQ_MANAGEMENT_PORT = 15672
SEVERITIES = ("critical", "warning")

# Metrics a later issue adds: allowed in alert rules that say so in a `pending` annotation.
PENDING_METRICS: frozenset[str] = frozenset()  # every metric the rules name exists now

# rabbitmq_prometheus (RabbitMQ 3.13), per object with prometheus.return_per_object_metrics = true.
RABBITMQ_METRICS = frozenset({
    # queue_coarse_metrics / queue_metrics: labels vhost, queue
    "rabbitmq_queue_messages", "rabbitmq_queue_messages_ready", "rabbitmq_queue_messages_unacked",
    "rabbitmq_queue_consumers",
    # channel_queue_exchange_metrics: labels channel, queue_vhost, queue, exchange_vhost, exchange
    "rabbitmq_queue_messages_published_total",
    # channel_queue_metrics: labels channel, vhost, queue
    "rabbitmq_channel_messages_delivered_ack_total", "rabbitmq_channel_messages_acked_total",
    "rabbitmq_channel_messages_redelivered_total",
    # totals
    "rabbitmq_connections", "rabbitmq_channels", "rabbitmq_queues",
    # prometheus_rabbitmq_alarm_metrics_collector: 1 while the alarm is in effect
    "rabbitmq_alarms_memory_used_watermark", "rabbitmq_alarms_free_disk_space_watermark",
    "rabbitmq_alarms_file_descriptor_limit",
})

# Series Prometheus records for every scrape target.
PROMETHEUS_METRICS = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})

# The alerts the platform must have, and a metric each must be built on.
REQUIRED_ALERTS = {
    "HuishengDeadLetterQueueNotEmpty": "rabbitmq_queue_messages",
    "HuishengQueueWithoutConsumers": "rabbitmq_queue_consumers",
    "HuishengOutboxStuck": "huisheng_outbox_oldest_seconds",
    "HuishengEchoLatencyHigh": "huisheng_echo_latency_seconds_bucket",
    "HuishengHandlerDeadLettering": "huisheng_events_handled_total",
    "HuishengInstanceDown": "up",
    "HuishengProcessMissing": "up",
    "HuishengHttpServerErrors": "huisheng_http_requests_total",
    "HuishengSilentTickets": "huisheng_silent_tickets",
}

# The dashboards, and metrics each must show.
REQUIRED_DASHBOARDS = {
    "huisheng-queues": {
        "rabbitmq_queue_messages_ready", "rabbitmq_queue_consumers", "rabbitmq_queue_messages_published_total",
    },
    "huisheng-services": {
        "huisheng_worker_seconds_bucket", "huisheng_worker_seconds_count", "huisheng_http_requests_total",
        "huisheng_events_handled_total", "huisheng_outbox_oldest_seconds", "huisheng_outbox_pending_documents",
    },
    "huisheng-echo-latency": {"huisheng_echo_latency_seconds_bucket", "huisheng_echoes_total"},
}

by_process = pytest.mark.parametrize("proc", PROCESSES, ids=lambda p: p.name)
SCALABLE = tuple(p for p in PROCESSES if not p.is_gateway)


# ------------------------------------------------------------------- metric names


EXPOSED_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "enum": ("",),
}


def kernel_metric_names() -> set[str]:
    """Every series name the metrics of kernel/metrics.py (and notify's, services/notify/outcomes.py, and the
    gateway's, gateway/http.py) expose."""
    names: set[str] = set()
    for value in [*vars(kernel_metrics).values(), *vars(notify_metrics).values(), *vars(gateway_metrics).values()]:
        if isinstance(value, MetricWrapperBase):
            names |= {value._name + suffix for suffix in EXPOSED_SUFFIXES[value._type]}
    return names


OURS = kernel_metric_names()

PROMQL_KEYWORDS = frozenset({
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
    "offset", "inf", "nan",
})
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (or a Grafana label_values() query) selects."""
    text = re.sub(r"label_values\(\s*([^,()]*(?:\{[^}]*\})?)\s*,\s*\w+\s*\)", r"\1", expr)
    text = re.sub(r"label_values\(\s*\w+\s*\)", " ", text)
    text = _STRING.sub('""', text)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\boffset\s+\S+", " ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name = match.group(0)
        if name.lower() in PROMQL_KEYWORDS or text[match.end():].lstrip().startswith("("):
            continue  # a keyword, or a function / aggregation
        names.add(name)
    return names


def unknown_metrics(expr: str, *, allow_pending: bool = False) -> list[str]:
    allowed = OURS | RABBITMQ_METRICS | PROMETHEUS_METRICS | (PENDING_METRICS if allow_pending else set())
    return sorted(metric_names(expr) - allowed)


def matcher_values(expr: str, label: str, op: str = "=~") -> list[str]:
    """The (unescaped) values of every ``label<op>"..."`` matcher in ``expr``."""
    pattern = re.compile(rf'\b{label}\s*{re.escape(op)}\s*"((?:[^"\\]|\\.)*)"')
    return [re.sub(r"\\(.)", r"\1", raw) for raw in pattern.findall(expr)]


def prom_regex_matches(regex: str, value: str) -> bool:
    """PromQL regex matchers are fully anchored (RE2; these patterns mean the same in Python)."""
    return re.fullmatch(regex, value) is not None


def duration_seconds(text: Any) -> float:
    units = {"y": 31536000, "w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+)(ms|y|w|d|h|m|s)", str(text))
    assert parts and "".join(n + u for n, u in parts) == str(text), f"not a Prometheus duration: {text!r}"
    return sum(int(n) * units[u] for n, u in parts)


@pytest.mark.parametrize(("expr", "names"), [
    ("up == 0", {"up"}),
    ('histogram_quantile(0.99, sum by (le, channel) (rate(huisheng_echo_latency_seconds_bucket{le!="x"}[5m])))',
     {"huisheng_echo_latency_seconds_bucket"}),
    ('sum(rate(a_total{status=~"5.."}[$__rate_interval])) / sum(rate(a_total[1m] offset 1h)) > bool 1e3',
     {"a_total"}),
    ('absent(up{job="tickets"} == 1) or max by (queue) (rabbitmq_queue_messages{queue=~"x\\\\.dlq"}) > 0',
     {"up", "rabbitmq_queue_messages"}),
    ("label_values(rabbitmq_queue_messages, queue)", {"rabbitmq_queue_messages"}),
    ('label_values(huisheng_echoes_total{channel="inbox"}, outcome)', {"huisheng_echoes_total"}),
    ("a + on (queue) group_left (x) b", {"a", "b"}),
])
def test_metric_names_are_read_from_promql(expr, names):
    assert metric_names(expr) == names


def test_kernel_metric_names_are_read_from_the_module():
    assert {"huisheng_events_handled_total", "huisheng_echo_latency_seconds_bucket",
            "huisheng_outbox_oldest_seconds", "huisheng_worker_seconds_count"} <= OURS
    assert "huisheng_events_handled" not in OURS, "a Counter is exposed with _total"
    assert "huisheng_echo_latency_seconds" not in OURS, "a Histogram is exposed as _bucket/_count/_sum"


def test_pending_metrics_are_still_pending():
    landed = sorted(name for name in PENDING_METRICS if name in OURS)
    assert not landed, (
        f"{landed} now exist in kernel/metrics.py: drop them from PENDING_METRICS and the `pending` "
        "annotation of their alert rules"
    )


# ---------------------------------------------------------------------- fixtures


def load_yaml(path: Path) -> Any:
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing"
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose_services() -> dict[str, dict]:
    return load_yaml(COMPOSE_FILE)["services"]


@pytest.fixture(scope="module")
def prometheus() -> dict:
    config = load_yaml(PROMETHEUS_CONFIG)
    assert isinstance(config, dict) and config.get("scrape_configs"), "prometheus.yml has no scrape_configs"
    return config


@pytest.fixture(scope="module")
def scrape_jobs(prometheus) -> dict[str, dict]:
    names = [job.get("job_name") for job in prometheus["scrape_configs"]]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    assert not duplicated, f"prometheus.yml has duplicate job names: {duplicated}"
    return {job["job_name"]: job for job in prometheus["scrape_configs"]}


@pytest.fixture(scope="module")
def rules() -> list[dict]:
    document = load_yaml(ALERTS_FILE)
    assert isinstance(document, dict) and document.get("groups"), "alerts.yml has no groups"
    found = [rule for group in document["groups"] for rule in group.get("rules") or []]
    assert found, "alerts.yml has no rules"
    return found


@pytest.fixture(scope="module")
def alerts(rules) -> list[dict]:
    return [rule for rule in rules if "alert" in rule]


def alerts_named(alerts: list[dict], name: str) -> list[dict]:
    found = [rule for rule in alerts if rule["alert"] == name]
    assert found, f"alerts.yml has no alert {name!r}"
    return found


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS_DIR.glob("*.json"))


def load_dashboard(path: Path) -> dict:
    try:
        board = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        pytest.fail(f"{path.relative_to(ROOT)} is not valid JSON: {error}")
    assert isinstance(board, dict), f"{path.name} is not a JSON object"
    return board


def all_panels(panels: list[dict]) -> list[dict]:
    """Panels, including those nested in (collapsed) rows."""
    result = []
    for panel in panels or []:
        result.append(panel)
        result += all_panels(panel.get("panels") or [])
    return result


def dashboard_queries(board: dict) -> list[tuple[str, str]]:
    """(where, query) of every panel target and every templating query of a dashboard."""
    queries = []
    for panel in all_panels(board.get("panels") or []):
        for target in panel.get("targets") or []:
            if target.get("expr"):
                queries.append((f"panel {panel.get('title')!r} target {target.get('refId')}", target["expr"]))
    for variable in (board.get("templating") or {}).get("list") or []:
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        for text in {query, variable.get("definition")} - {None, ""}:
            queries.append((f"variable ${variable.get('name')}", text))
    return queries


def compose_mounts(service: dict) -> dict[str, str]:
    """Container path -> host path of a compose service's bind mounts (short or long syntax)."""
    mounts = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            source, target = str(volume.get("source", "")), str(volume.get("target", ""))
        else:
            parts = str(volume).split(":")
            source, target = parts[0], parts[1] if len(parts) > 1 else parts[0]
        if source.startswith((".", "/")):
            mounts[target.rstrip("/")] = source
    return mounts


def host_path(source: str) -> Path:
    return (ROOT / source).resolve()


def published_ports(service: dict) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) of a compose service's `ports:`."""
    result = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            result.append((str(entry.get("host_ip", "")), int(entry.get("published", 0)), int(entry["target"])))
            continue
        parts = str(entry).split("/")[0].split(":")
        if len(parts) == 3:
            result.append((parts[0], int(parts[1]), int(parts[2])))
        elif len(parts) == 2:
            result.append(("", int(parts[0]), int(parts[1])))
        else:
            result.append(("", 0, int(parts[0])))
    return result


def compose_port_of(services: dict, proc: Process) -> int:
    env = services[proc.name].get("environment") or {}
    if isinstance(env, list):
        env = dict(str(item).partition("=")[::2] for item in env)
    return int(env.get(proc.http_port_env) or proc.default_port)


def scrape_targets(job: dict) -> list[tuple[str, int]]:
    """(host, port) of a job's static targets and DNS-discovered names."""
    targets = []
    for static in job.get("static_configs") or []:
        for target in static.get("targets") or []:
            host, _, port = str(target).rpartition(":")
            targets.append((host, int(port)))
    for dns in job.get("dns_sd_configs") or []:
        targets += [(str(name), int(dns["port"])) for name in dns.get("names") or []]
    return targets


def doc_anchors() -> set[str]:
    """GitHub's anchors of docs/operations.md's headings."""
    assert OPERATIONS_DOC.is_file(), "docs/operations.md is missing"
    anchors = set()
    for line in OPERATIONS_DOC.read_text(encoding="utf-8").splitlines():
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            heading = re.sub(r"`", "", match.group(1)).strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", heading).replace(" ", "-"))
    return anchors


# ------------------------------------------------------------------- prometheus.yml


@by_process
def test_every_process_is_scraped_on_its_port(scrape_jobs, compose_services, proc):
    assert proc.name in scrape_jobs, (
        f"prometheus.yml has no job {proc.name!r}: every process of kernel.platform.PROCESSES serves /metrics"
    )
    job = scrape_jobs[proc.name]
    port = compose_port_of(compose_services, proc)
    assert port == proc.default_port, f"{proc.name} listens on {port} in compose, {proc.default_port} by default"
    targets = scrape_targets(job)
    assert targets, f"job {proc.name!r} has no targets"
    wrong = [t for t in targets if t != (proc.name, port)]
    assert not wrong, (
        f"job {proc.name!r} must scrape the compose service {proc.name!r} on {proc.http_port_env}={port}; "
        f"has targets {wrong}"
    )
    assert job.get("metrics_path", "/metrics") == "/metrics", f"job {proc.name!r} scrapes {job['metrics_path']}"
    assert job.get("scheme", "http") == "http", f"job {proc.name!r}: the processes serve plain HTTP"


@pytest.mark.parametrize("proc", SCALABLE, ids=lambda p: p.name)
def test_scalable_processes_are_found_by_dns(scrape_jobs, proc):
    job = scrape_jobs.get(proc.name) or {}
    kinds = [dns.get("type", "SRV") for dns in job.get("dns_sd_configs") or []]
    assert kinds == ["A"] and not job.get("static_configs"), (
        f"job {proc.name!r} must find its instances with dns_sd_configs type A: a static target "
        f"reaches one random instance once `docker compose up --scale {proc.name}=2` runs"
    )


def test_rabbitmq_metrics_are_scraped(scrape_jobs, compose_services):
    assert "rabbitmq" in scrape_jobs, "prometheus.yml has no job 'rabbitmq'"
    assert scrape_targets(scrape_jobs["rabbitmq"]) == [("rabbitmq", RABBITMQ_PROMETHEUS_PORT)], (
        f"job 'rabbitmq' must scrape rabbitmq:{RABBITMQ_PROMETHEUS_PORT} (rabbitmq_prometheus)"
    )
    assert scrape_jobs["rabbitmq"].get("metrics_path", "/metrics") == "/metrics"
    assert "rabbitmq" in compose_services


def test_prometheus_loads_the_alert_rules(prometheus, compose_services):
    mounts = compose_mounts(compose_services["prometheus"])
    loaded = []
    for rule_file in prometheus.get("rule_files") or []:
        path = PurePosixPath(rule_file)
        for target, source in mounts.items():
            if path.is_relative_to(target):
                loaded.append(host_path(source) / path.relative_to(target))
    assert ALERTS_FILE.resolve() in loaded, (
        f"prometheus.yml's rule_files {prometheus.get('rule_files')} do not reach deploy/prometheus/alerts.yml "
        f"through the prometheus service's mounts {mounts}"
    )


# ------------------------------------------------------------------------ alerts.yml


def test_every_alert_rule_is_complete(alerts):
    anchors = doc_anchors()
    problems = []
    for rule in alerts:
        name = rule["alert"]
        if not str(rule.get("expr", "")).strip():
            problems.append(f"{name}: no expr")
        if "for" not in rule:
            problems.append(f"{name}: no `for`")
        else:
            duration_seconds(rule["for"])
        severity = (rule.get("labels") or {}).get("severity")
        if severity not in SEVERITIES:
            problems.append(f"{name}: labels.severity is {severity!r}, not one of {SEVERITIES}")
        annotations = rule.get("annotations") or {}
        if not str(annotations.get("summary", "")).strip():
            problems.append(f"{name}: no annotations.summary")
        runbook = str(annotations.get("runbook", ""))
        page, _, anchor = runbook.partition("#")
        if page != "docs/operations.md" or anchor not in anchors:
            problems.append(f"{name}: annotations.runbook {runbook!r} is not a heading of docs/operations.md")
    assert not problems, "incomplete alert rules:\n" + "\n".join(problems)


def test_alert_rules_use_metrics_that_exist(alerts):
    problems = []
    for rule in alerts:
        names = metric_names(rule["expr"])
        unknown = unknown_metrics(rule["expr"], allow_pending=True)
        if unknown:
            problems.append(f"{rule['alert']}: unknown metrics {unknown}")
        pending = sorted(names & PENDING_METRICS)
        if pending and not str((rule.get("annotations") or {}).get("pending", "")).strip():
            problems.append(f"{rule['alert']}: uses {pending}, which no process exports yet, "
                            "without a `pending` annotation saying so")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("name", "metric"), REQUIRED_ALERTS.items())
def test_required_alert_exists(alerts, name, metric):
    for rule in alerts_named(alerts, name):
        assert metric in metric_names(rule["expr"]), f"{name} must be built on {metric}: {rule['expr']}"


def topology_queue_names() -> list[str]:
    return [queue.name for queue in consumer_queues(Settings().retry_delays_ms)]


def test_dead_letter_alert_covers_every_dead_letter_queue(alerts):
    (rule,) = alerts_named(alerts, "HuishengDeadLetterQueueNotEmpty")
    (regex,) = matcher_values(rule["expr"], "queue")
    dead_letter_queues = {sub.dead_letter_queue for sub in SUBSCRIPTIONS}
    missed = sorted(q for q in dead_letter_queues if not prom_regex_matches(regex, q))
    assert not missed, f"HuishengDeadLetterQueueNotEmpty's queue=~{regex!r} misses {missed}"
    others = sorted(q for q in topology_queue_names() if q not in dead_letter_queues and prom_regex_matches(regex, q))
    assert not others, f"HuishengDeadLetterQueueNotEmpty's queue=~{regex!r} also matches {others}"


def test_no_consumer_alert_covers_every_consumed_queue(alerts):
    (rule,) = alerts_named(alerts, "HuishengQueueWithoutConsumers")
    (regex,) = matcher_values(rule["expr"], "queue")
    consumed = {sub.queue for sub in SUBSCRIPTIONS}
    consumed |= {RPC_QUEUE_TEMPLATE.format(p.name) for p in PROCESSES if not p.is_gateway}
    missed = sorted(q for q in consumed if not prom_regex_matches(regex, q))
    assert not missed, f"HuishengQueueWithoutConsumers's queue=~{regex!r} misses {missed}"
    idle_by_design = [q for q in topology_queue_names() if q not in consumed]
    idle_by_design.append(RPC_REPLY_QUEUE_TEMPLATE.format("gateway", "0b4c1f0e"))
    wrongly = sorted(q for q in idle_by_design if prom_regex_matches(regex, q))
    assert not wrongly, (
        f"HuishengQueueWithoutConsumers's queue=~{regex!r} matches queues nobody consumes by design: {wrongly}"
    )
    assert UNROUTED_QUEUE.name in idle_by_design


def test_a_missing_process_is_noticed(alerts):
    """`up == 0` misses a process with no instance left (no target, no series): absent() catches it."""
    rules = alerts_named(alerts, "HuishengProcessMissing")
    covered = {}
    for rule in rules:
        (job,) = matcher_values(rule["expr"], "job", "=") or [None]
        assert rule["expr"].replace(" ", "").startswith("absent(up{"), f"unexpected expr {rule['expr']!r}"
        assert (rule.get("labels") or {}).get("job") == job, (
            f"HuishengProcessMissing for {job!r} must carry labels.job={job!r}: absent() yields no labels"
        )
        covered[job] = rule
    expected = {p.name for p in PROCESSES} | {"rabbitmq"}
    assert set(covered) == expected, f"HuishengProcessMissing covers {sorted(covered)}, needs {sorted(expected)}"
    (rule,) = alerts_named(alerts, "HuishengInstanceDown")
    (regex,) = matcher_values(rule["expr"], "job")
    assert all(prom_regex_matches(regex, job) for job in expected), (
        f"HuishengInstanceDown's job=~{regex!r} does not cover {sorted(expected)}"
    )


def test_every_alert_is_documented(alerts):
    text = OPERATIONS_DOC.read_text(encoding="utf-8")
    missing = sorted({rule["alert"] for rule in alerts if rule["alert"] not in text})
    assert not missing, f"docs/operations.md does not explain {missing}"


# --------------------------------------------------------------------------- Grafana


def test_the_dashboards_exist():
    uids = {load_dashboard(path).get("uid") for path in dashboard_files()}
    missing = sorted(set(REQUIRED_DASHBOARDS) - uids)
    assert not missing, f"deploy/grafana/dashboards has no dashboard with uid {missing}"


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_dashboard_is_well_formed(path):
    board = load_dashboard(path)
    uid, title = board.get("uid"), board.get("title")
    assert isinstance(uid, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid), f"{path.name}: bad uid {uid!r}"
    assert isinstance(title, str) and title.strip(), f"{path.name}: no title"
    panels = all_panels(board.get("panels") or [])
    ids = [panel.get("id") for panel in panels]
    assert len(ids) == len(set(ids)) and None not in ids, f"{path.name}: panel ids missing or repeated"
    empty = [p.get("title") for p in panels if p.get("type") != "row" and not p.get("targets")]
    assert not empty, f"{path.name}: panels without queries: {empty}"
    assert dashboard_queries(board), f"{path.name}: no queries"


def test_dashboard_uids_are_unique():
    uids = [load_dashboard(path).get("uid") for path in dashboard_files()]
    assert len(uids) == len(set(uids)), f"dashboard uids repeat: {uids}"


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_dashboard_queries_use_metrics_that_exist(path):
    problems = [f"{where}: {unknown_metrics(query)} in {query!r}"
                for where, query in dashboard_queries(load_dashboard(path)) if unknown_metrics(query)]
    assert not problems, f"{path.name} queries unknown metrics:\n" + "\n".join(problems)


@pytest.mark.parametrize(("uid", "needed"), REQUIRED_DASHBOARDS.items())
def test_dashboard_shows_its_subject(uid, needed):
    boards = [load_dashboard(path) for path in dashboard_files()]
    board = next((b for b in boards if b.get("uid") == uid), None)
    assert board is not None, f"no dashboard with uid {uid!r}"
    used = set().union(*(metric_names(query) for _, query in dashboard_queries(board)))
    missing = sorted(needed - used)
    assert not missing, f"dashboard {uid!r} does not show {missing}"


def test_echo_dashboard_shows_p50_p95_p99():
    boards = [load_dashboard(path) for path in dashboard_files()]
    board = next(b for b in boards if b.get("uid") == "huisheng-echo-latency")
    quantiles = set()
    for _, query in dashboard_queries(board):
        if "huisheng_echo_latency_seconds_bucket" in query:
            quantiles |= set(re.findall(r"histogram_quantile\(\s*([0-9.]+)", query))
    assert {"0.5", "0.95", "0.99"} <= quantiles, f"echo latency quantiles shown: {sorted(quantiles)}"


@pytest.fixture(scope="module")
def datasources() -> list[dict]:
    found = []
    for path in sorted(DATASOURCES_DIR.glob("*.y*ml")):
        found += (load_yaml(path) or {}).get("datasources") or []
    assert found, "deploy/grafana/provisioning/datasources provisions no data source"
    return found


def test_datasource_is_the_compose_prometheus(datasources, compose_services):
    prometheus_sources = [ds for ds in datasources if ds.get("type") == "prometheus"]
    assert len(prometheus_sources) == 1, f"expected one prometheus data source, have {prometheus_sources}"
    source = prometheus_sources[0]
    assert source.get("url") == f"http://prometheus:{PROMETHEUS_PORT}", (
        f"the data source must point at the compose service prometheus:{PROMETHEUS_PORT}, has {source.get('url')!r}"
    )
    assert "prometheus" in compose_services, "docker-compose.yml has no prometheus service"
    assert source.get("access", "proxy") == "proxy", "the browser cannot reach prometheus:9090; use access: proxy"
    uids = {source.get("uid")}
    for path in dashboard_files():
        board = load_dashboard(path)
        users = [(f"variable ${v.get('name')}", v) for v in (board.get("templating") or {}).get("list") or []]
        for panel in all_panels(board.get("panels") or []):
            users += [(f"panel {panel.get('title')!r}", item) for item in [panel, *(panel.get("targets") or [])]]
        for where, item in users:
            datasource = item.get("datasource")
            if isinstance(datasource, dict) and datasource.get("type") == "prometheus":
                assert datasource.get("uid") in uids, (
                    f"{path.name} {where} uses data source uid {datasource.get('uid')!r}, "
                    f"provisioned: {sorted(map(str, uids))}"
                )


def test_dashboards_are_provisioned_from_the_repository(compose_services):
    grafana = compose_services.get("grafana") or {}
    mounts = compose_mounts(grafana)
    provisioning = mounts.get("/etc/grafana/provisioning")
    assert provisioning and host_path(provisioning) == (GRAFANA_DIR / "provisioning").resolve(), (
        f"grafana must mount ./deploy/grafana/provisioning at /etc/grafana/provisioning; mounts {mounts}"
    )
    providers = []
    for path in sorted(DASHBOARD_PROVIDERS_DIR.glob("*.y*ml")):
        providers += (load_yaml(path) or {}).get("providers") or []
    assert providers, "deploy/grafana/provisioning/dashboards has no provider"
    for provider in providers:
        path = (provider.get("options") or {}).get("path", "")
        source = mounts.get(str(path).rstrip("/"))
        assert source and host_path(source) == DASHBOARDS_DIR.resolve(), (
            f"dashboard provider {provider.get('name')!r} reads {path!r}, where grafana does not mount "
            f"deploy/grafana/dashboards; mounts {mounts}"
        )


# -------------------------------------------------------------------- docker-compose


@pytest.mark.parametrize("name", ["prometheus", "grafana"])
def test_compose_runs_the_observability_services(compose_services, name):
    service = compose_services.get(name)
    assert service, f"docker-compose.yml has no {name!r} service"
    assert service.get("image"), f"{name} has no image"
    assert service.get("restart") in ("unless-stopped", "always"), f"{name} does not restart"
    check = service.get("healthcheck") or {}
    assert check.get("test") and not check.get("disable") and check["test"][0] != "NONE", (
        f"{name} has no enabled healthcheck"
    )


def test_compose_prometheus_reads_the_repository_config(compose_services):
    service = compose_services["prometheus"]
    command = service.get("command") or []
    command = command.split() if isinstance(command, str) else [str(c) for c in command]
    config_flags = [c.partition("=")[2] for c in command if c.startswith("--config.file=")]
    config = PurePosixPath(config_flags[0] if config_flags else "/etc/prometheus/prometheus.yml")
    source = compose_mounts(service).get(str(config.parent))
    assert source and host_path(source) / config.name == PROMETHEUS_CONFIG.resolve(), (
        f"prometheus reads {config}, which is not deploy/prometheus/prometheus.yml; mounts {compose_mounts(service)}"
    )


def test_rabbitmq_returns_per_queue_metrics(compose_services):
    mounts = compose_mounts(compose_services["rabbitmq"])
    config_targets = [t for t, s in mounts.items() if host_path(s) == RABBITMQ_CONF.resolve()]
    assert config_targets and all(
        t == "/etc/rabbitmq/rabbitmq.conf" or re.fullmatch(r"/etc/rabbitmq/conf\.d/[\w.-]+\.conf", t)
        for t in config_targets
    ), f"rabbitmq must load deploy/rabbitmq/rabbitmq.conf (as rabbitmq.conf or in conf.d/); mounts {mounts}"
    settings = {}
    for line in RABBITMQ_CONF.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.split("#", 1)[0].partition("=")
        if sep:
            settings[key.strip()] = value.strip()
    assert settings.get("prometheus.return_per_object_metrics") == "true", (
        "deploy/rabbitmq/rabbitmq.conf must set prometheus.return_per_object_metrics = true: without it "
        "rabbitmq_queue_* series carry no queue label"
    )


@pytest.mark.parametrize("port", [RABBITMQ_MANAGEMENT_PORT, RABBITMQ_PROMETHEUS_PORT])
def test_rabbitmq_management_and_metrics_reach_the_host_loopback(compose_services, port):
    published = [p for p in published_ports(compose_services["rabbitmq"]) if p[2] == port]
    assert published == [("127.0.0.1", port, port)], (
        f"rabbitmq must publish {port} as 127.0.0.1:{port}:{port}, publishes {published}"
    )


@pytest.mark.parametrize("name", ["rabbitmq", "prometheus", "grafana"])
def test_operator_ports_are_loopback_only(compose_services, name):
    open_ports = [p for p in published_ports(compose_services.get(name) or {}) if p[0] != "127.0.0.1"]
    assert not open_ports, f"{name} publishes {open_ports} beyond 127.0.0.1"


def test_dashboards_that_list_the_processes_list_every_one():
    """A panel that picks processes by a job regex (instances up) must not forget a new process."""
    listing = []
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        text = path.read_text(encoding="utf-8")
        for expr in re.findall(r'"expr":\s*"((?:[^"\\]|\\.)*)"', text):
            expr = json.loads(f'"{expr}"')
            for regex in matcher_values(expr, "job"):
                if prom_regex_matches(regex, "gateway"):  # a regex over the platform's processes
                    listing.append((path.name, regex))
    assert listing, "no dashboard panel lists the processes by job (the Services dashboard's instances up)"
    for name, regex in listing:
        missing = [p.name for p in PROCESSES if not prom_regex_matches(regex, p.name)]
        assert not missing, f"{name}: job=~{regex!r} leaves out {missing}"

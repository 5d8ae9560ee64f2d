"""The deployment files agree with the code.

No Docker engine runs where the tests run, so ``docker-compose.yml``, the
``Dockerfile`` and ``.dockerignore`` are parsed and held against
:data:`kernel.platform.PROCESSES` (what runs, on which port) and
:data:`kernel.config.ENVIRONMENT` (every environment variable the code reads).
Nothing here touches the network or starts a process.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from kernel.config import DEFAULT_SECRET, ENVIRONMENT
from kernel.platform import PROCESSES, Process

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

INFRA = ("rabbitmq", "mongo")
# Observability services that may join the compose file later.
ALLOWED_EXTRA = ("prometheus", "grafana")
# Demo stand-ins for outside providers: run from the one image, replaced in production by the provider's endpoint.
# compose name -> (module, the notify setting that points at it)
STANDINS = {
    "sms-standin": ("standins.sms", "SMS_PROVIDER_URL"),
    "wechat-standin": ("standins.wechat", "WECHAT_API_URL"),
}
PROCESS_NAMES = tuple(p.name for p in PROCESSES)

MIN_STOP_GRACE_SECONDS = 30  # longer than one handler plus the outbox relay's flush
RABBITMQ_MANAGEMENT_PORT = 15672
RABBITMQ_PROMETHEUS_PORT = 15692

by_name = pytest.mark.parametrize("proc", PROCESSES, ids=lambda p: p.name)
# Processes `docker compose up --scale NAME=N` may run several of: all but the gateway, which publishes its port.
scalable = pytest.mark.parametrize("proc", [p for p in PROCESSES if not p.is_gateway], ids=lambda p: p.name)


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def compose() -> dict:
    assert COMPOSE_FILE.is_file(), f"{COMPOSE_FILE} is missing"
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(document, dict), "docker-compose.yml is not a mapping"
    assert isinstance(document.get("services"), dict) and document["services"], (
        "docker-compose.yml has no `services:` mapping"
    )
    return document


@pytest.fixture(scope="module")
def services(compose: dict) -> dict[str, dict]:
    return compose["services"]


def service_of(services: dict, name: str) -> dict:
    assert name in services, (
        f"docker-compose.yml has no service {name!r} "
        f"(kernel.platform.PROCESSES names it); services: {sorted(services)}"
    )
    definition = services[name]
    assert isinstance(definition, dict), f"service {name!r} is not a mapping"
    return definition


def environment_of(service: dict) -> dict[str, str | None]:
    """``environment:`` in either of compose's forms, as a dict."""
    env = service.get("environment") or {}
    if isinstance(env, dict):
        return {str(k): (None if v is None else str(v)) for k, v in env.items()}
    result: dict[str, str | None] = {}
    for item in env:
        name, sep, value = str(item).partition("=")
        result[name] = value if sep else None
    return result


def words(value: Any) -> list[str]:
    """A compose command (list or string) as a list of words."""
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def depends_on_of(service: dict) -> dict[str, str]:
    """``depends_on:`` as {service: condition}; the short list form means service_started."""
    depends = service.get("depends_on") or {}
    if isinstance(depends, list):
        return {str(name): "service_started" for name in depends}
    return {str(name): (spec or {}).get("condition", "service_started") for name, spec in depends.items()}


def healthcheck_text(service: dict) -> str:
    """The healthcheck command as one string ('' when there is none)."""
    check = service.get("healthcheck")
    if not isinstance(check, dict) or check.get("disable"):
        return ""
    test = check.get("test")
    if isinstance(test, str):
        return test
    if not test or test[0] == "NONE":
        return ""
    return " ".join(str(part) for part in test[1:] if part not in ("CMD", "CMD-SHELL"))


def probe_ports(text: str) -> list[int]:
    return [int(port) for port in re.findall(r"//(?:127\.0\.0\.1|localhost):(\d+)/ready\b", text)]


def interpolated_names(value: Any) -> set[str]:
    """Variables compose substitutes (``$NAME``, ``${NAME...}``) anywhere in ``value``."""
    if isinstance(value, dict):
        return set().union(set(), *(interpolated_names(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(set(), *(interpolated_names(v) for v in value))
    if not isinstance(value, str):
        return set()
    text = value.replace("$$", "")  # $$ is a literal dollar
    return set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text))


def container_ports(entries: list) -> set[int]:
    """Container-side ports of ``ports:`` or ``expose:`` entries, short or long syntax."""
    result: set[int] = set()
    for entry in entries or []:
        if isinstance(entry, dict):
            result.add(int(entry["target"]))
            continue
        spec = str(entry).split("/")[0]  # drop /tcp
        result.add(int(spec.rsplit(":", 1)[-1]))
    return result


def duration_seconds(text: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)", str(text))
    assert parts and "".join(n + u for n, u in parts) == str(text).replace(" ", ""), (
        f"cannot read duration {text!r}"
    )
    return sum(float(n) * units[u] for n, u in parts)


def host_env_of(proc: Process) -> str:
    return proc.http_port_env.replace("_PORT", "_HOST")


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    assert DOCKERFILE.is_file(), f"{DOCKERFILE} is missing"
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comment lines inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


# ------------------------------------------------------------------ compose: services


def test_compose_has_no_version_key(compose):
    assert "version" not in compose, "`version:` is obsolete in the compose spec; remove it"


def test_every_process_has_a_service(services):
    missing = [name for name in PROCESS_NAMES if name not in services]
    assert not missing, (
        f"processes in kernel.platform.PROCESSES without a service in docker-compose.yml: {missing}"
    )


def test_no_unknown_services(services):
    known = set(PROCESS_NAMES) | set(INFRA) | set(ALLOWED_EXTRA) | set(STANDINS)
    unknown = sorted(set(services) - known)
    assert not unknown, (
        f"unknown services in docker-compose.yml: {unknown}; a service must be a process of "
        f"kernel.platform.PROCESSES or one of {sorted((*INFRA, *ALLOWED_EXTRA, *STANDINS))}"
    )


@by_name
def test_process_runs_its_own_command(services, proc):
    command = words(service_of(services, proc.name).get("command"))
    assert command == ["huisheng", "service", proc.name], (
        f"service {proc.name!r} must run `huisheng service {proc.name}`, runs {command}"
    )


@by_name
def test_processes_are_built_from_the_one_image(services, proc):
    service = service_of(services, proc.name)
    build = service.get("build")
    context = build.get("context") if isinstance(build, dict) else build
    assert context in (".", "./"), (
        f"service {proc.name!r} must be built from the repository's Dockerfile (`build: .`), has {build!r}"
    )
    if isinstance(build, dict):
        assert build.get("dockerfile", "Dockerfile") == "Dockerfile", (
            f"service {proc.name!r} uses another Dockerfile: {build.get('dockerfile')!r}"
        )
    images = {services[p.name].get("image") for p in PROCESSES if p.name in services}
    assert len(images) == 1, f"the processes must share one image name, have {sorted(map(str, images))}"


# --------------------------------------------------------------- compose: environment


@by_name
def test_environment_names_are_known_to_the_code(services, proc):
    service = service_of(services, proc.name)
    unknown = sorted(set(environment_of(service)) - set(ENVIRONMENT))
    assert not unknown, (
        f"service {proc.name!r} sets environment variables the code never reads "
        f"(not in kernel.config.ENVIRONMENT): {unknown}"
    )
    substituted = sorted(interpolated_names(service) - set(ENVIRONMENT))
    assert not substituted, (
        f"service {proc.name!r} substitutes variables that are not in kernel.config.ENVIRONMENT: "
        f"{substituted}"
    )


@by_name
def test_broker_and_database_are_set(services, proc):
    env = environment_of(service_of(services, proc.name))
    for name, host in (("AMQP_URI", "rabbitmq"), ("MONGO_URI", "mongo")):
        assert env.get(name), f"service {proc.name!r} does not set {name}"
        assert f"@{host}:" in env[name] or f"//{host}:" in env[name], (
            f"service {proc.name!r}: {name}={env[name]!r} does not point at the {host!r} service"
        )


def test_mongo_is_a_replica_set_the_processes_name(services):
    command = words(service_of(services, "mongo").get("command"))
    assert "--replSet" in command, (
        f"mongo must run as a replica set (transactions, change streams): command is {command}"
    )
    replica_set = command[command.index("--replSet") + 1]
    assert "rs.initiate" in healthcheck_text(services["mongo"]) or "rs.initiate" in str(services), (
        "nothing initiates mongo's replica set (e.g. rs.initiate in its healthcheck)"
    )
    for proc in PROCESSES:
        uri = environment_of(service_of(services, proc.name)).get("MONGO_URI") or ""
        assert f"replicaSet={replica_set}" in uri, (
            f"service {proc.name!r}: MONGO_URI={uri!r} does not name replica set {replica_set!r}"
        )


@by_name
def test_mongo_writes_wait_for_a_majority(services, proc):
    uri = environment_of(service_of(services, proc.name)).get("MONGO_URI") or ""
    assert re.search(r"[?&]w=majority(&|$)", uri), (
        f"service {proc.name!r}: MONGO_URI={uri!r} must set w=majority (docs/operations.md, replica set)"
    )


@by_name
def test_secret_comes_from_the_operator(services, proc):
    value = environment_of(service_of(services, proc.name)).get("HUISHENG_SECRET")
    assert value, f"service {proc.name!r} does not set HUISHENG_SECRET (tokens would use the dev default)"
    assert value.startswith("${") and value != DEFAULT_SECRET, (
        f"service {proc.name!r}: HUISHENG_SECRET must be substituted from the operator's environment, "
        f"not written into docker-compose.yml (is {value!r})"
    )


@by_name
def test_process_binds_all_interfaces(services, proc):
    env = environment_of(service_of(services, proc.name))
    host_env = host_env_of(proc)
    assert env.get(host_env) == "0.0.0.0", (
        f"service {proc.name!r} must set {host_env}=0.0.0.0 to be reachable in its container, "
        f"has {env.get(host_env)!r}"
    )


# ---------------------------------------------------------------- compose: lifecycle


@pytest.mark.parametrize("name", PROCESS_NAMES + INFRA)
def test_every_service_has_a_healthcheck(services, name):
    assert healthcheck_text(service_of(services, name)).strip(), (
        f"service {name!r} has no (enabled) healthcheck"
    )


def test_extra_services_have_healthchecks(services):
    without = [n for n in services if not healthcheck_text(services[n]).strip()]
    assert not without, f"services without an enabled healthcheck: {without}"


@by_name
def test_healthcheck_probes_ready_on_the_process_port(services, proc):
    service = service_of(services, proc.name)
    env = environment_of(service)
    assert env.get(proc.http_port_env), (
        f"service {proc.name!r} does not set {proc.http_port_env}, the port its process listens on"
    )
    port = int(env[proc.http_port_env])
    text = healthcheck_text(service)
    ports = probe_ports(text)
    assert ports == [port], (
        f"service {proc.name!r}: the healthcheck must GET http://127.0.0.1:{port}/ready "
        f"({proc.http_port_env}={port}); it probes ports {ports} in {text!r}"
    )
    assert "curl" not in text and "wget" not in text, (
        f"service {proc.name!r}: python:3.11-slim has neither curl nor wget; probe with python"
    )


@by_name
def test_process_waits_for_healthy_infrastructure(services, proc):
    depends = depends_on_of(service_of(services, proc.name))
    for infra in INFRA:
        assert depends.get(infra) == "service_healthy", (
            f"service {proc.name!r} must depend on {infra!r} with condition service_healthy, "
            f"has {depends.get(infra)!r}"
        )


def test_gateway_waits_for_healthy_services(services):
    gateway = next(p for p in PROCESSES if p.is_gateway)
    depends = depends_on_of(service_of(services, gateway.name))
    for proc in PROCESSES:
        if proc.is_gateway:
            continue
        assert depends.get(proc.name) == "service_healthy", (
            f"the gateway must depend on {proc.name!r} with condition service_healthy, "
            f"has {depends.get(proc.name)!r}"
        )


def test_dependencies_exist(services):
    for name, service in services.items():
        missing = sorted(set(depends_on_of(service)) - set(services))
        assert not missing, f"service {name!r} depends on undefined services {missing}"


@by_name
def test_process_restarts_and_stops_gracefully(services, proc):
    service = service_of(services, proc.name)
    assert service.get("restart") in ("unless-stopped", "always"), (
        f"service {proc.name!r} must restart on failure (restart: unless-stopped), "
        f"has {service.get('restart')!r}"
    )
    grace = service.get("stop_grace_period")
    assert grace and duration_seconds(grace) >= MIN_STOP_GRACE_SECONDS, (
        f"service {proc.name!r}: stop_grace_period {grace!r} is shorter than {MIN_STOP_GRACE_SECONDS}s; "
        "in-flight handlers would be killed"
    )


def test_the_directory_s_data_key_comes_from_the_operator(services):
    value = environment_of(service_of(services, "directory")).get("HUISHENG_DATA_KEY") or ""
    assert re.fullmatch(r"\$\{HUISHENG_DATA_KEY:\?[^}]+\}", value), (
        "the directory must get HUISHENG_DATA_KEY from the operator and refuse to start without it "
        f"(${{HUISHENG_DATA_KEY:?...}}); it would otherwise derive it from HUISHENG_SECRET; is {value!r}"
    )


def test_only_the_directory_holds_the_data_key(services):
    holders = sorted(name for name, service in services.items()
                     if "HUISHENG_DATA_KEY" in environment_of(service) or "HUISHENG_DATA_KEY" in str(service))
    assert holders == ["directory"], f"the key that decrypts personal data is given to {holders}"


# --------------------------------------------------------------------- compose: the SMS stand-in


def standin_port(service: dict) -> int:
    command = words(service.get("command"))
    return int(command[command.index("--port") + 1])


@pytest.mark.parametrize("name", sorted(STANDINS))
def test_a_standin_runs_its_module_from_the_one_image(services, name):
    standin = service_of(services, name)
    command = words(standin.get("command"))
    assert command[:3] == ["python", "-m", STANDINS[name][0]], f"{name} runs {command}"
    assert command[command.index("--host") + 1] == "0.0.0.0", "the stand-in must listen beyond its container"
    images = {services[p.name].get("image") for p in PROCESSES}
    assert standin.get("image") in images and standin.get("build") in (".", "./")
    assert standin_port(standin) in container_ports(standin.get("expose"))
    assert not standin.get("ports"), "the stand-in is for the compose network only"


def test_the_sms_standin_keeps_a_journal(services):
    assert "--journal" in words(service_of(services, "sms-standin").get("command"))


@pytest.mark.parametrize("name", sorted(STANDINS))
def test_a_standin_is_probed_on_health(services, name):
    standin = service_of(services, name)
    text = healthcheck_text(standin)
    assert f"//127.0.0.1:{standin_port(standin)}/health" in text and "curl" not in text and "wget" not in text


@pytest.mark.parametrize("name", sorted(STANDINS))
def test_a_standin_sets_only_variables_the_code_knows(services, name):
    standin = service_of(services, name)
    unknown = sorted((set(environment_of(standin)) | interpolated_names(standin)) - set(ENVIRONMENT))
    assert not unknown, f"{name} sets or substitutes unknown variables: {unknown}"


@pytest.mark.parametrize("name", sorted(STANDINS))
def test_notify_sends_through_the_standin_unless_a_provider_is_given(services, name):
    standin, variable = service_of(services, name), STANDINS[name][1]
    url = environment_of(service_of(services, "notify")).get(variable) or ""
    assert url.startswith(f"${{{variable}:-http://{name}:{standin_port(standin)}"), (
        f"notify's {variable} must default to the stand-in and be the operator's to replace; is {url!r}"
    )


# --------------------------------------------------------------------- compose: ports


def test_rabbitmq_exposes_management_and_metrics(services):
    rabbitmq = service_of(services, "rabbitmq")
    ports = container_ports(rabbitmq.get("expose")) | container_ports(rabbitmq.get("ports"))
    for port, what in (
        (5672, "AMQP"),
        (RABBITMQ_MANAGEMENT_PORT, "management"),
        (RABBITMQ_PROMETHEUS_PORT, "prometheus"),
    ):
        assert port in ports, f"rabbitmq does not expose its {what} port {port}; exposes {sorted(ports)}"


def test_rabbitmq_enables_management_and_prometheus_plugins(services):
    rabbitmq = service_of(services, "rabbitmq")
    sources = [str(rabbitmq.get("image", "")), " ".join(words(rabbitmq.get("command")))]
    for volume in rabbitmq.get("volumes") or []:
        source, _, target = str(volume).partition(":")
        if target.split(":")[0] == "/etc/rabbitmq/enabled_plugins":
            plugins_file = ROOT / source
            assert plugins_file.is_file(), f"rabbitmq mounts {source}, which does not exist"
            sources.append(plugins_file.read_text(encoding="utf-8"))
    text = "\n".join(sources)
    assert "rabbitmq_prometheus" in text, "rabbitmq does not enable the rabbitmq_prometheus plugin"
    assert "rabbitmq_management" in text or "-management" in text, (
        "rabbitmq does not enable the management plugin (nameko's test fixtures and ops need it)"
    )


@by_name
def test_process_has_no_fixed_container_name(services, proc):
    name = service_of(services, proc.name).get("container_name")
    assert name is None, (
        f"service {proc.name!r} has container_name {name!r}: a fixed name forbids a second instance "
        "(docker compose up --scale) and a second project on the host"
    )


@scalable
def test_scalable_process_publishes_no_host_port(services, proc):
    published = service_of(services, proc.name).get("ports")
    assert not published, (
        f"service {proc.name!r} publishes {published}: a host port lets only one instance start under "
        f"`docker compose up --scale {proc.name}=2`; use `expose:` (Prometheus finds instances by DNS)"
    )


def test_gateway_publishes_its_port(services):
    gateway = next(p for p in PROCESSES if p.is_gateway)
    service = service_of(services, gateway.name)
    port = int(environment_of(service).get(gateway.http_port_env) or gateway.default_port)
    published = container_ports(service.get("ports"))
    assert port in published, (
        f"the gateway listens on {gateway.http_port_env}={port} but publishes {sorted(published)}"
    )


# ------------------------------------------------------------------------ Dockerfile


def test_dockerfile_base_is_python_311():
    instructions = dockerfile_instructions()
    stages: set[str] = set()
    bases = []
    for keyword, args in instructions:
        if keyword != "FROM":
            continue
        parts = [p for p in args.split() if not p.startswith("--")]
        image = parts[0]
        if len(parts) >= 3 and parts[1].upper() == "AS":
            stages.add(parts[2].lower())
        if image.lower() not in stages:
            bases.append(image)
    assert bases, "the Dockerfile has no FROM"
    wrong = [b for b in bases if not b.startswith("python:3.11")]
    assert not wrong, f"the image must be based on python:3.11 (slim); FROM {wrong}"


def test_dockerfile_runs_as_a_non_root_user():
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    users = [args for keyword, args in instructions[last_from:] if keyword == "USER"]
    assert users, "the Dockerfile's final stage never switches to a non-root USER"
    user = users[-1].split(":")[0].strip()
    assert user not in ("root", "0", ""), f"the Dockerfile's final USER is root ({users[-1]!r})"


def test_dockerfile_installs_with_the_constraints_file():
    runs = [args for keyword, args in dockerfile_instructions() if keyword == "RUN"]
    installs = [r for r in runs if re.search(r"\bpip\d?(\.\d+)? install\b", r)]
    assert installs, "the Dockerfile never runs `pip install`"
    pinned = [r for r in installs if re.search(r"(-c|--constraint)[ =]\S*constraints\.txt\b", r)]
    assert pinned, f"`pip install` must use the pins (`-c constraints.txt`); installs are {installs}"
    copies = " ".join(args for keyword, args in dockerfile_instructions() if keyword in ("COPY", "ADD"))
    assert "constraints.txt" in copies or re.search(r"(^|\s)\.\s", copies + " "), (
        "the Dockerfile does not copy constraints.txt into the build"
    )


def test_dockerfile_environment_names_are_known():
    names: set[str] = set()
    for keyword, args in dockerfile_instructions():
        if keyword == "ENV":
            names |= set(re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", args))
    ours = {n for n in names if not n.startswith(("PYTHON", "PIP_"))}
    unknown = sorted(ours - set(ENVIRONMENT))
    assert not unknown, f"the Dockerfile sets variables not in kernel.config.ENVIRONMENT: {unknown}"


def test_dockerignore_keeps_local_state_out_and_the_build_inputs_in():
    assert DOCKERIGNORE.is_file(), ".dockerignore is missing (the venv and .git would enter the image)"
    patterns = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for needed in (".git", ".venv"):
        assert needed in patterns, f".dockerignore does not exclude {needed}"
    kept = {"pyproject.toml", "constraints.txt"}
    pyproject = ROOT / "pyproject.toml"
    if pyproject.is_file():  # what `pip install .` reads: the readme and the packages it finds
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        readme = project.get("project", {}).get("readme")
        if isinstance(readme, str):
            kept.add(readme)
        find = project.get("tool", {}).get("setuptools", {}).get("packages", {}).get("find", {})
        kept |= {pattern.rstrip("*").rstrip(".") for pattern in find.get("include", [])}
    excluded = sorted(name for name in kept if name in patterns)
    assert not excluded, f".dockerignore excludes {excluded}, which `pip install .` needs"

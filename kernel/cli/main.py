"""The ``huisheng`` command line: ``up``, ``down``, ``status``, ``token`` and ``service`` here; the commands of
:data:`COMMAND_MODULES` (ops, backup, restore, and the services' own) register themselves.

``service`` imports ``kernel.runner`` lazily: it monkey-patches eventlet, which the supervisor must never do.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from kernel.auth import DEFAULT_TTL, TOKEN_ROLES, issue_token
from kernel.cli import complain, infra, say, table
from kernel.cli.supervisor import (
    AlreadyRunning,
    ChildSpec,
    Runner,
    platform_status,
    restart_policy,
    running_problem,
    start_detached,
    stop_platform,
)
from kernel.config import DEFAULT_SECRET, Settings
from kernel.platform import PROCESSES, Process

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DB_NAME = "secantus"
DEFAULT_STOP_TIMEOUT = 10.0
EXIT_NOT_RUNNING = 3  # as LSB init scripts' "status": program is not running


def load_settings() -> Settings:
    """Settings from the environment, with HUISHENG_HOME made absolute (children and daemons share it)."""
    settings = Settings.from_env()
    return replace(settings, home=settings.home.absolute())


def process_port(process: Process, environ: Mapping[str, str], instance: int = 1) -> int:
    """The port of a process: ``GATEWAY_PORT`` for the gateway, ``HUISHENG_PORT_<NAME>`` for a service.

    Instance ``n`` > 1 listens on that variable suffixed ``_<n>``, else on the first instance's port + 10 × (n - 1).
    """
    variable = "GATEWAY_PORT" if process.is_gateway else f"HUISHENG_PORT_{process.name.upper()}"
    if instance > 1 and environ.get(f"{variable}_{instance}"):
        return int(environ[f"{variable}_{instance}"])
    first = int(environ[variable]) if environ.get(variable) else process.default_port
    return first + 10 * (instance - 1)


def python_path(environ: Mapping[str, str]) -> str:
    """PYTHONPATH for children: they run `python -m kernel.cli.main`, so this checkout must import."""
    return os.pathsep.join([str(PROJECT_ROOT)] + ([environ["PYTHONPATH"]] if environ.get("PYTHONPATH") else []))


def child_env(settings: Settings, environ: Mapping[str, str], extra: Mapping[str, str] = ()) -> dict[str, str]:
    """The environment of a child: ours plus where the broker, database and home are."""
    env = dict(environ, AMQP_URI=settings.amqp_uri, HUISHENG_HOME=str(settings.home), PYTHONUNBUFFERED="1",
               PYTHONPATH=python_path(environ))
    if settings.mongo_uri:
        env["MONGO_URI"] = settings.mongo_uri
    env.update(extra)
    return env


def resolve_stop_timeout(given: float | None, environ: Mapping[str, str]) -> float:
    """Seconds from SIGTERM to SIGKILL: as given, else 10, or longer than an explicit HUISHENG_STOP_TIMEOUT."""
    if given is not None:
        return given
    explicit = environ.get("HUISHENG_STOP_TIMEOUT")
    return max(DEFAULT_STOP_TIMEOUT, float(explicit) + 2.0) if explicit else DEFAULT_STOP_TIMEOUT


def parse_scale(text: str | Sequence[str] | None) -> dict[str, int]:
    """``"tickets=2,notify=2"`` (or a list of such) -> ``{"tickets": 2, "notify": 2}``; bad input raises ValueError.

    >>> parse_scale(["tickets=2", "notify=3,gateway=1"])
    {'tickets': 2, 'notify': 3, 'gateway': 1}
    """
    scale: dict[str, int] = {}
    for item in ",".join([text] if isinstance(text, str) else list(text or [])).split(","):
        if not item.strip():
            continue
        name, _, count = (part.strip() for part in item.partition("="))
        if name not in {p.name for p in PROCESSES} or not count.isdigit() or int(count) < 1:
            raise ValueError(f"bad scale {item.strip()!r}: want NAME=COUNT, NAME one of "
                             f"{', '.join(p.name for p in PROCESSES)}, COUNT at least 1")
        scale[name] = int(count)
    return scale


def process_spec(process: Process, settings: Settings, environ: Mapping[str, str],
                 stop_timeout: float = DEFAULT_STOP_TIMEOUT, instance: int = 1) -> ChildSpec:
    """How the supervisor launches one instance of a platform process (``huisheng service NAME``); the second
    instance of ``tickets`` is ``tickets#2``."""
    port = process_port(process, environ, instance)
    name = process.name if instance == 1 else f"{process.name}#{instance}"
    extra = {process.http_port_env: str(port), "HUISHENG_INSTANCE": name}
    if not environ.get("HUISHENG_STOP_TIMEOUT"):  # unless the user chose one: a graceful stop before our SIGKILL
        extra["HUISHENG_STOP_TIMEOUT"] = f"{max(1.0, stop_timeout - 2.0):g}"
    host = settings.gateway_host if process.is_gateway else settings.http_host
    probe_host = "127.0.0.1" if host in ("0.0.0.0", "") else host  # a wildcard bind is probed on loopback
    return ChildSpec(name, (sys.executable, "-m", "kernel.cli.main", "service", process.name),
                     child_env(settings, environ, extra), f"http://{probe_host}:{port}",
                     layer=2 if process.is_gateway else 1)  # the gateway opens the doors last


def database_spec(settings: Settings) -> ChildSpec:
    """The embedded SecantusDB, data kept in ``$HUISHENG_HOME/data/mongo`` across restarts."""
    argv = infra.secantus_argv(settings.secantus_port, settings.home / "data" / "mongo")
    return ChildSpec(DB_NAME, tuple(argv), None, infra.secantus_uri(settings.secantus_port), "mongo", layer=0)


@dataclass(frozen=True)
class StandIn:
    """A local stand-in of an outside provider (standins/), in layer 0, run by ``up`` unless ``url_variable`` is set.

    No dependencies, hence no ``/ready``. Not essential: without it only that channel fails (notify falls back).
    """

    name: str
    module: str
    default_port: int
    url_variable: str  # the setting that names the provider
    journal: bool = False  # keeps a journal in $HUISHENG_HOME/data (what it was asked to send)

    def spec(self, settings: Settings, environ: Mapping[str, str]) -> ChildSpec:
        port = int(environ.get(f"HUISHENG_PORT_{self.name.upper()}") or self.default_port)
        argv = [sys.executable, "-m", self.module, "--host", "127.0.0.1", "--port", str(port)]
        if self.journal:
            argv += ["--journal", str(settings.home / "data" / f"{self.name}-journal.jsonl")]
        return ChildSpec(self.name, tuple(argv), child_env(settings, environ), f"http://127.0.0.1:{port}", "live",
                         layer=0, essential=False)


STAND_INS: tuple[StandIn, ...] = (
    StandIn("sms", "standins.sms", 8190, "SMS_PROVIDER_URL", journal=True),
    StandIn("wechat", "standins.wechat", 8191, "WECHAT_API_URL"),
)


def platform_plan(settings: Settings, environ: Mapping[str, str], infra_enabled: bool = True,
                  stop_timeout: float = DEFAULT_STOP_TIMEOUT,
                  scale: Mapping[str, int] | None = None) -> tuple[Settings, list[ChildSpec]]:
    """The settings children get and the specs to supervise (the database and the stand-ins first if we run them).

    ``scale`` runs that many instances of a process (default: ``HUISHENG_SCALE``, else one each).
    """
    scale = parse_scale(environ.get("HUISHENG_SCALE")) if scale is None else scale
    specs: list[ChildSpec] = []
    if infra_enabled and not settings.mongo_uri:
        specs.append(database_spec(settings))
        settings = replace(settings, mongo_uri=specs[0].address)
    for stand_in in STAND_INS:
        if infra_enabled and not environ.get(stand_in.url_variable):  # else: the provider configured
            specs.append(stand_in.spec(settings, environ))
            # notify reaches the provider through its URL setting: point the children's at the stand-in.
            environ = {**environ, stand_in.url_variable: f"{specs[-1].address}/"}
    specs += [process_spec(p, settings, environ, stop_timeout, n)
              for p in PROCESSES for n in range(1, scale.get(p.name, 1) + 1)]
    return settings, specs


def procfile_specs(path: str, settings: Settings, environ: Mapping[str, str]) -> list[ChildSpec]:
    """Specs from a JSON list of ``{name, argv, port | address, health, layer, env}`` (tests, experiments)."""
    specs = []
    for entry in json.loads(Path(path).read_text()):
        address = entry.get("address") or (f"http://127.0.0.1:{entry['port']}" if entry.get("port") else None)
        specs.append(ChildSpec(entry["name"], tuple(entry["argv"]), child_env(settings, environ, entry.get("env", {})),
                               address, entry.get("health", "http" if address else "none"),
                               int(entry.get("layer", 1)), bool(entry.get("essential", True))))
    return specs


def check_ports_free(specs: Sequence[ChildSpec]) -> None:
    """Fail before starting if a port we need is taken: its owner would answer our health probes."""
    for spec in specs:
        endpoint = spec.port()
        if not endpoint or not infra.port_in_use(*endpoint):
            continue
        if spec.name == DB_NAME:
            hint = "set SECANTUS_PORT to a free port, or MONGO_URI to use that server"
        elif stand_in := next((s for s in STAND_INS if s.name == spec.name), None):
            hint = (f"set HUISHENG_PORT_{spec.name.upper()} to a free port, or {stand_in.url_variable} "
                    "to use that provider")
        else:
            hint = f"stop it, or choose another port (HUISHENG_PORT_{spec.name.upper()} / GATEWAY_PORT)"
        raise infra.InfraError(f"port {endpoint[1]} needed by {spec.name} is already in use by another program "
                               f"(not started by this huisheng); {hint}")


def cmd_up(args: argparse.Namespace) -> int:
    """``huisheng up [-d]``: check infrastructure, then supervise (or daemonise and wait)."""
    settings = load_settings()
    args.stop_timeout = resolve_stop_timeout(args.stop_timeout, os.environ)
    problem = running_problem(settings.home)
    if problem:
        complain(problem)
        return 1
    try:
        scale = parse_scale([os.environ.get("HUISHENG_SCALE", ""), *args.scale])
        restart_policy(os.environ)
    except ValueError as exc:
        complain(str(exc))
        return 2
    if args.procfile:
        specs = procfile_specs(args.procfile, settings, os.environ)
    else:
        settings, specs = platform_plan(settings, os.environ, not args.no_infra, args.stop_timeout, scale)
    if not args.no_infra:
        infra.ensure_broker(settings.amqp_uri, say=say)
        if any(s.name == DB_NAME for s in specs) and infra.find_secantusd() is None:
            raise infra.InfraError("secantusd-py not found: `pip install secantusdb==0.7.0b3`, or set MONGO_URI")
    check_ports_free(specs)
    return up_detached(args, settings) if args.detach else up_foreground(args, settings, specs)


def up_foreground(args: argparse.Namespace, settings: Settings, specs: Sequence[ChildSpec]) -> int:
    """Run the platform from this process until Ctrl-C, SIGTERM or an essential child given up on."""
    (settings.home / "data" / "mongo").mkdir(parents=True, exist_ok=True)  # the database's, the stand-ins' journals
    runner = Runner(settings.home, specs, stop_timeout=args.stop_timeout, echo=not args.daemon_child,
                    info={"mongo_uri": settings.mongo_uri})

    def declare_topology(layer: int) -> None:
        """After the database and before the services: no event is published before its queue exists."""
        if layer == 1:
            from kernel.topology import declare_all  # lazy: the broker client

            runner.say("declaring the broker topology ...")
            declare_all(settings)

    return runner.run(args.timeout, None if args.no_infra else declare_topology)


def up_detached(args: argparse.Namespace, settings: Settings) -> int:
    """Start a daemonised supervisor and return once every process is healthy (or fail and clean up)."""
    argv = [sys.executable, "-m", "kernel.cli.main", "up", "--daemon-child", "--timeout", str(args.timeout),
            "--stop-timeout", str(args.stop_timeout), *(["--no-infra"] if args.no_infra else [])]
    if args.procfile:
        argv += ["--procfile", str(Path(args.procfile).absolute())]
    for item in args.scale:
        argv += ["--scale", item]
    # Our own environment, not child_env(): the daemon must decide about MONGO_URI exactly as we did.
    env = dict(os.environ, HUISHENG_HOME=str(settings.home), PYTHONUNBUFFERED="1", PYTHONPATH=python_path(os.environ))
    if not start_detached(settings.home, argv, env, args.timeout):
        return 1
    print(format_status(platform_status(settings.home)))
    say(f"the platform is up; logs in {settings.home / 'log'}; stop it with `huisheng down`")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    """``huisheng down``: stop the supervisor (or, if it is gone, its children); idempotent."""
    say("stopped" if stop_platform(load_settings().home, say=say, wait=args.timeout) else "not running")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """``huisheng status [--json]``: 0 if all healthy, 3 if nothing runs, 1 otherwise.

    ``--json`` prints one object: ``{"running", "healthy", "supervisor", "phase", "started_at", "mongo_uri",
    "processes": [{"name", "pid", "alive", "health", "state", "restarts", "detail", "address"}, ...]}``.
    """
    settings = load_settings()
    report = platform_status(settings.home, platform_plan(settings, os.environ)[1])
    print(json.dumps(report, indent=2) if args.json else format_status(report))
    if not report["running"]:
        return EXIT_NOT_RUNNING
    return 0 if report["healthy"] else 1


def format_status(report: Mapping) -> str:
    """The human table of :func:`platform_status`."""
    supervisor = report.get("supervisor") or {}
    head = "huisheng: not running"
    if report["running"]:
        alive = "alive" if supervisor.get("alive") else "DEAD: nothing restarts or stops these; run `huisheng down`"
        head = f"huisheng: running since {report.get('started_at')} (supervisor pid {supervisor.get('pid')}, {alive})"
    rows = [("NAME", "PID", "ALIVE", "HEALTH", "RESTARTS", "ADDRESS", "DETAIL")]
    rows += [(p["name"], str(p["pid"] or "-"), "yes" if p["alive"] else "no", p["health"], str(p.get("restarts", 0)),
              p["address"] or "-", p["detail"]) for p in report["processes"]]
    return "\n".join([head, *table(rows)])


def cmd_token(args: argparse.Namespace) -> int:
    """``huisheng token``: print a signed bearer token (and nothing else on stdout)."""
    settings = load_settings()
    try:
        token = issue_token(settings, args.role, args.subject, args.community, args.ttl, args.name, grids=args.grid,
                            teams=args.team, home=args.home)
    except ValueError as exc:
        complain(f"token: {exc}")
        return 2
    if settings.secret == DEFAULT_SECRET:
        complain("warning: signed with the development secret; set HUISHENG_SECRET outside development")
    print(token)
    return 0


def cmd_service(args: argparse.Namespace) -> int:
    """``huisheng service NAME``: run one process in the foreground (``up`` launches these)."""
    from kernel.runner import main as run_process  # lazy: kernel.runner monkey-patches eventlet

    return run_process(args.name)


# Each has ``register(commands)`` (argparse's sub-parsers): it adds its parsers, each setting ``func(args) -> exit
# code``. A service's commands come from its Process's ``cli_module``: the kernel never imports it by hand.
COMMAND_MODULES: tuple[str, ...] = ("kernel.cli.ops", "kernel.cli.backup",
                                    *(p.cli_module for p in PROCESSES if p.cli_module))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(prog="huisheng", description="Run and operate the Huisheng platform.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="run the whole platform (Ctrl-C stops it)")
    up.add_argument("-d", "--detach", action="store_true", help="run in the background; return once healthy")
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for health, all layers (default 60)")
    up.add_argument("--stop-timeout", type=float, default=None,
                    help="seconds between SIGTERM and SIGKILL when stopping (default 10, or HUISHENG_STOP_TIMEOUT + 2)")
    up.add_argument("--procfile", metavar="FILE", help="JSON list of processes to run instead of the platform's")
    up.add_argument("--scale", action="append", default=[], metavar="NAME=N",
                    help="run N instances of a process, the second named NAME#2 "
                    "(repeatable; also HUISHENG_SCALE=a=2,b=2)")
    up.add_argument("--no-infra", action="store_true",
                    help="do not check the broker, start the database or declare topology")
    up.add_argument("--daemon-child", action="store_true", help=argparse.SUPPRESS)
    up.set_defaults(func=cmd_up)

    down = commands.add_parser("down", help="stop what `up` started")
    down.add_argument("--timeout", type=float, default=None,
                      help="seconds to wait for the supervisor before killing it")
    down.set_defaults(func=cmd_down)

    status = commands.add_parser("status", help="list processes and their health (exit 0 if all healthy)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    token = commands.add_parser("token", help="print a signed bearer token")
    token.add_argument("--role", required=True, metavar="ROLE", help=f"one of: {', '.join(TOKEN_ROLES)}")
    token.add_argument("--subject", required=True, metavar="ID", help="who the token is for (the `sub` claim)")
    token.add_argument("--community", help="community id (default HUISHENG_COMMUNITY)")
    token.add_argument("--ttl", type=int, default=DEFAULT_TTL, metavar="SECONDS",
                       help=f"lifetime (default {DEFAULT_TTL})")
    token.add_argument("--name", help="display name")
    token.add_argument("--grid", action="append", default=[], metavar="G",
                       help="a grid the bearer works (repeatable; `grids` claim)")
    token.add_argument("--team", action="append", default=[], metavar="T",
                       help="a volunteer team of the bearer (repeatable)")
    token.add_argument("--home", metavar="BUILDING",
                       help="a resident's home building (`home` claim: places their tickets without a directory call)")
    token.set_defaults(func=cmd_token)

    service = commands.add_parser("service", help="run one process in the foreground")
    names = [p.name for p in PROCESSES]
    service.add_argument("name", metavar="NAME", choices=names, help=f"one of: {', '.join(names)}")
    service.set_defaults(func=cmd_service)

    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``huisheng`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (infra.InfraError, AlreadyRunning) as exc:
        complain(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

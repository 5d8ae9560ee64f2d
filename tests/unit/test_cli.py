"""The ``huisheng`` command line, without starting the real platform."""

import io
import json
import os
import socket
import subprocess
import sys
import types
from pathlib import Path

import jwt
import pytest

from gateway.auth import verify_token
from kernel.cli import infra
from kernel.cli.main import (
    check_ports_free,
    load_settings,
    main,
    platform_plan,
    resolve_stop_timeout,
)
from kernel.config import Settings
from kernel.platform import PROCESSES
from services.directory import cli as directory

ROOT = Path(__file__).resolve().parents[2]
SECRET = "cli-test-secret-that-is-long-enough-for-hs256"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Every test gets its own HUISHENG_HOME and none of the caller's platform settings."""
    for name in ("MONGO_URI", "AMQP_URI", "GATEWAY_PORT", "SECANTUS_PORT", "HUISHENG_COMMUNITY", "SMS_PROVIDER_URL",
                 "HUISHENG_PORT_SMS", "HUISHENG_ADMIN_PASSWORD", "HUISHENG_SCALE"):
        monkeypatch.delenv(name, raising=False)
    for process in PROCESSES:
        monkeypatch.delenv(f"HUISHENG_PORT_{process.name.upper()}", raising=False)
    monkeypatch.setenv("HUISHENG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HUISHENG_SECRET", SECRET)
    return tmp_path


def closed_port() -> int:
    """A local port nothing listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- token


def test_token_prints_only_a_token_the_gateway_accepts(capsys):
    code = main(
        [
            "token",
            "--role",
            "volunteer",
            "--subject",
            "v-7",
            "--community",
            "dongcheng",
            "--ttl",
            "120",
            "--name",
            "Zhang Wei",
        ]
    )

    out = capsys.readouterr().out
    assert code == 0
    assert out.count("\n") == 1
    principal = verify_token(Settings(secret=SECRET), out.strip())
    assert (principal.subject, principal.role, principal.community, principal.name) == (
        "v-7",
        "volunteer",
        "dongcheng",
        "Zhang Wei",
    )
    claims = jwt.decode(out.strip(), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 120


def test_token_uses_the_configured_community_by_default(capsys, monkeypatch):
    monkeypatch.setenv("HUISHENG_COMMUNITY", "nanshan")

    assert main(["token", "--role", "resident", "--subject", "r-1"]) == 0

    assert verify_token(Settings(secret=SECRET), capsys.readouterr().out.strip()).community == "nanshan"


def test_token_with_unknown_role_fails_with_the_list_of_roles(capsys):
    code = main(["token", "--role", "mayor", "--subject", "m-1"])

    captured = capsys.readouterr()
    assert code != 0
    assert captured.out == ""
    assert "unknown role 'mayor'" in captured.err
    assert "resident, grid_worker, volunteer, secretary, ops, admin" in captured.err


def test_token_carries_the_grids_and_teams_given(capsys):
    code = main(["token", "--role", "grid_worker", "--subject", "gw-3", "--grid", "g3", "--grid", "g4",
                 "--team", "t-elderly"])

    out = capsys.readouterr().out.strip()
    assert code == 0
    principal = verify_token(Settings(secret=SECRET), out)
    assert (principal.grids, principal.teams) == (("g3", "g4"), ("t-elderly",))


def test_token_without_grids_or_teams_has_empty_claims(capsys):
    assert main(["token", "--role", "resident", "--subject", "r-2"]) == 0

    claims = jwt.decode(capsys.readouterr().out.strip(), options={"verify_signature": False})
    assert (claims["grids"], claims["teams"]) == ([], [])
    assert "home" not in claims


def test_token_carries_a_residents_home_building(capsys):
    assert main(["token", "--role", "resident", "--subject", "r-3", "--home", "b03"]) == 0

    principal = verify_token(Settings(secret=SECRET), capsys.readouterr().out.strip())
    assert (principal.home, principal.viewer()["home"]) == ("b03", "b03")


def test_token_refuses_the_integrator_role(capsys):
    assert main(["token", "--role", "integrator", "--subject", "k-1"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "API keys only" in captured.err


def test_token_warns_about_the_development_secret(capsys, monkeypatch):
    monkeypatch.delenv("HUISHENG_SECRET")

    assert main(["token", "--role", "ops", "--subject", "o-1"]) == 0

    captured = capsys.readouterr()
    assert "development secret" in captured.err
    assert verify_token(Settings(), captured.out.strip()).role == "ops"


# --------------------------------------------------------------------------- status and down


def test_status_when_nothing_runs_lists_every_process_as_down(capsys):
    code = main(["status"])

    out = capsys.readouterr().out
    assert code == 3
    assert "not running" in out
    for process in PROCESSES:
        line = next(line for line in out.splitlines() if line.startswith(process.name + " "))
        assert " down " in line
        assert f":{process.default_port}" in line


def test_status_json_when_nothing_runs(capsys):
    code = main(["status", "--json"])

    report = json.loads(capsys.readouterr().out)
    assert code != 0
    assert report["running"] is False and report["healthy"] is False
    rows = {row["name"]: row for row in report["processes"]}
    assert {p.name for p in PROCESSES} <= set(rows)
    assert all(row["health"] == "down" and row["pid"] is None and row["alive"] is False for row in rows.values())


def test_down_when_nothing_runs_is_a_quiet_success(capsys):
    assert main(["down"]) == 0
    assert "not running" in capsys.readouterr().out
    assert main(["down"]) == 0


# --------------------------------------------------------------------------- broker


def test_up_without_a_broker_and_without_rabbitmq_server_explains_how_to_get_one(capsys, monkeypatch, tmp_path):
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))  # no rabbitmq-server to start
    monkeypatch.setenv("AMQP_URI", f"amqp://guest:guest@127.0.0.1:{closed_port()}/")

    code = main(["up", "--timeout", "5"])

    err = capsys.readouterr().err
    assert code != 0
    assert "No RabbitMQ broker answers" in err
    assert "apt-get install rabbitmq-server" in err
    assert "docker run" in err and "rabbitmq:3.13-management" in err
    assert not (tmp_path / "home" / "run" / "platform.json").exists()


def test_ensure_broker_does_not_try_to_start_a_remote_broker():
    started = []

    with pytest.raises(infra.InfraError, match="apt-get install rabbitmq-server"):
        infra.ensure_broker(
            "amqp://u:p@broker.example:5672/",
            probe=lambda uri: False,
            which=lambda name: "/usr/sbin/rabbitmq-server",
            run=lambda *a, **k: started.append(a),
        )

    assert started == []


def test_ensure_broker_starts_a_local_rabbitmq_server_and_waits_for_it():
    runs, answers = [], iter([False, False, True])

    result = infra.ensure_broker(
        "amqp://guest:guest@127.0.0.1:5672/",
        probe=lambda uri: next(answers),
        which=lambda name: "/opt/rabbit/rabbitmq-server",
        run=lambda argv, **kw: runs.append(argv),
        say=lambda message: None,
    )

    assert result == "started"
    assert runs == [["/opt/rabbit/rabbitmq-server", "-detached"]]


def test_ensure_broker_gives_up_when_the_started_server_never_answers():
    with pytest.raises(infra.InfraError, match="within"):
        infra.ensure_broker(
            "amqp://guest:guest@localhost/",
            probe=lambda uri: False,
            which=lambda name: "/x/rabbitmq-server",
            run=lambda *a, **k: None,
            wait_seconds=0.2,
            say=lambda message: None,
        )


def test_ensure_broker_accepts_a_running_broker_without_starting_anything():
    assert infra.ensure_broker("amqp://x/", probe=lambda uri: True, which=lambda name: None) == "running"


def test_broker_probe_reports_a_closed_port_as_no_broker():
    assert infra.broker_answers(f"amqp://guest:guest@127.0.0.1:{closed_port()}/", timeout=1.0) is False


# --------------------------------------------------------------------------- what up launches


def test_plan_starts_the_database_first_and_the_gateway_last(monkeypatch):
    monkeypatch.setenv("SECANTUS_PORT", "27555")
    monkeypatch.setenv("HUISHENG_PORT_TICKETS", "19101")
    monkeypatch.setenv("GATEWAY_PORT", "19000")

    settings, specs = platform_plan(load_settings(), os.environ)

    by_name = {spec.name: spec for spec in specs}
    assert [s.name for s in specs] == ["secantus", "sms", "wechat"] + [p.name for p in PROCESSES]
    db = by_name["secantus"]
    assert db.layer == 0 and db.health == "mongo"
    assert db.argv[:2] == tuple(infra.EMBEDDED_SERVER)  # SecantusDB through its one seam, standins/mongodb.py
    assert db.argv[2:] == (
        "--host",
        "127.0.0.1",
        "--port",
        "27555",
        "--storage-path",
        str(settings.home / "data" / "mongo"),
        "--sync-on-commit",
    )
    assert settings.mongo_uri == "mongodb://127.0.0.1:27555/?retryWrites=false&directConnection=true"
    assert {by_name[p.name].layer for p in PROCESSES if not p.is_gateway} == {1}
    assert by_name["gateway"].layer == 2
    tickets, gateway = by_name["tickets"], by_name["gateway"]
    assert tickets.argv == (sys.executable, "-m", "kernel.cli.main", "service", "tickets")
    assert tickets.address == "http://127.0.0.1:19101" and tickets.env["HTTP_PORT"] == "19101"
    assert by_name["notify"].env["HTTP_PORT"] == "8102"
    assert gateway.address == "http://127.0.0.1:19000" and gateway.env["GATEWAY_PORT"] == "19000"
    for spec in specs[1:]:  # the stand-in too: it shares the children's environment
        assert spec.env["MONGO_URI"] == settings.mongo_uri
        assert spec.env["PYTHONUNBUFFERED"] == "1"
        assert spec.env["HUISHENG_HOME"] == str(settings.home) and settings.home.is_absolute()
        assert spec.env["AMQP_URI"] == settings.amqp_uri


def test_scale_runs_a_second_instance_named_with_a_hash_on_its_own_port(monkeypatch):
    monkeypatch.setenv("HUISHENG_PORT_TICKETS", "19101")
    monkeypatch.setenv("GATEWAY_PORT_2", "19500")

    _, specs = platform_plan(load_settings(), os.environ, scale={"tickets": 2, "gateway": 2})

    by_name = {spec.name: spec for spec in specs}
    assert [s.name for s in specs if s.name.startswith(("tickets", "gateway"))] == [
        "tickets", "tickets#2", "gateway", "gateway#2"]
    second = by_name["tickets#2"]
    assert second.argv == by_name["tickets"].argv  # the same service: the broker shares its queues out
    assert second.address == "http://127.0.0.1:19111" and second.env["HTTP_PORT"] == "19111"
    assert (second.env["HUISHENG_INSTANCE"], by_name["tickets"].env["HUISHENG_INSTANCE"]) == ("tickets#2", "tickets")
    assert by_name["gateway#2"].address == "http://127.0.0.1:19500" and by_name["gateway#2"].layer == 2
    assert "notify#2" not in by_name


def test_scale_comes_from_the_environment_too(monkeypatch):
    monkeypatch.setenv("HUISHENG_SCALE", "notify=3")

    _, specs = platform_plan(load_settings(), os.environ)

    assert [s.name for s in specs if s.name.startswith("notify")] == ["notify", "notify#2", "notify#3"]


@pytest.mark.parametrize("scale", ["tickets", "tickets=0", "nobody=2", "tickets=two"])
def test_a_bad_scale_is_refused_before_anything_starts(scale, capsys):
    assert main(["up", "--no-infra", "--scale", scale]) == 2
    assert "bad scale" in capsys.readouterr().err


def test_status_shows_restarts_per_process(capsys, isolated_env):
    from kernel.cli.supervisor import write_state

    home = isolated_env / "home"
    write_state(home, {"version": 1, "supervisor": {"pid": None}, "children": [
        {"name": "tickets#2", "pid": None, "state": "gave up", "restarts": 4, "address": None, "health": "none"}]})

    assert main(["status", "--json"]) == 3  # nothing runs: the state is all that is left
    report = json.loads(capsys.readouterr().out)
    row = report["processes"][0]
    assert (row["name"], row["restarts"], row["state"], row["health"]) == ("tickets#2", 4, "gave up", "down")
    main(["status"])
    table = capsys.readouterr().out
    assert "RESTARTS" in table and any(line.startswith("tickets#2") and " 4 " in line for line in table.splitlines())


def test_plan_uses_a_given_mongo_uri_and_starts_no_database(monkeypatch):
    monkeypatch.setenv("MONGO_URI", "mongodb://db.example:27017/?replicaSet=rs0")

    _, specs = platform_plan(load_settings(), os.environ)

    assert "secantus" not in [s.name for s in specs]
    assert all(s.env["MONGO_URI"] == "mongodb://db.example:27017/?replicaSet=rs0" for s in specs)


def test_a_taken_database_port_fails_clearly(monkeypatch):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        monkeypatch.setenv("SECANTUS_PORT", str(squatter.getsockname()[1]))

        _, specs = platform_plan(load_settings(), os.environ)

        with pytest.raises(infra.InfraError, match="already in use.*SECANTUS_PORT"):
            check_ports_free(specs)


def test_service_command_delegates_to_the_runner(monkeypatch):
    calls = []
    fake = types.ModuleType("kernel.runner")
    fake.main = lambda name: calls.append(name) or 0
    monkeypatch.setitem(sys.modules, "kernel.runner", fake)

    assert main(["service", "tickets"]) == 0
    assert calls == ["tickets"]


def test_the_cli_never_imports_eventlet_or_nameko():
    # In a fresh interpreter: this test process has eventlet already (conftest monkey-patches).
    script = "import sys, kernel.cli.main; print(sorted({'eventlet', 'nameko'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_children_stop_gracefully_before_the_supervisor_kills_them(monkeypatch):
    monkeypatch.delenv("HUISHENG_STOP_TIMEOUT", raising=False)
    assert resolve_stop_timeout(None, os.environ) == 10.0
    _, specs = platform_plan(load_settings(), os.environ, stop_timeout=10.0)
    names = {p.name for p in PROCESSES}
    assert {s.env["HUISHENG_STOP_TIMEOUT"] for s in specs if s.name in names} == {"8"}

    monkeypatch.setenv("HUISHENG_STOP_TIMEOUT", "20")  # the user's choice wins, and we wait for it
    assert resolve_stop_timeout(None, os.environ) == 22.0
    assert resolve_stop_timeout(3.0, os.environ) == 3.0
    _, specs = platform_plan(load_settings(), os.environ, stop_timeout=22.0)
    assert {s.env["HUISHENG_STOP_TIMEOUT"] for s in specs if s.name in names} == {"20"}


# --------------------------------------------------------------------------- the SMS stand-in


def test_plan_runs_the_sms_standin_beside_the_database_and_points_notify_at_it(monkeypatch):
    monkeypatch.setenv("HUISHENG_PORT_SMS", "19190")

    settings, specs = platform_plan(load_settings(), os.environ)

    by_name = {spec.name: spec for spec in specs}
    sms = by_name["sms"]
    journal = settings.home / "data" / "sms-journal.jsonl"
    assert sms.argv == (sys.executable, "-m", "standins.sms", "--host", "127.0.0.1", "--port", "19190",
                        "--journal", str(journal))
    assert (sms.layer, sms.health, sms.address) == (0, "live", "http://127.0.0.1:19190")
    assert sms.env["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT)  # `-m standins.sms` imports from this checkout
    for process in PROCESSES:  # the children's setting names the stand-in
        assert by_name[process.name].env["SMS_PROVIDER_URL"] == "http://127.0.0.1:19190/"


def test_the_sms_standin_listens_on_8190_by_default():
    _, specs = platform_plan(load_settings(), os.environ)

    assert next(s for s in specs if s.name == "sms").address == "http://127.0.0.1:8190"


def test_a_given_sms_provider_is_used_and_no_standin_runs(monkeypatch):
    monkeypatch.setenv("SMS_PROVIDER_URL", "https://dysmsapi.aliyuncs.com/")

    settings, specs = platform_plan(load_settings(), os.environ)

    assert "sms" not in [s.name for s in specs]
    assert settings.sms_provider_url == "https://dysmsapi.aliyuncs.com/"
    assert {s.env["SMS_PROVIDER_URL"] for s in specs if s.env} == {"https://dysmsapi.aliyuncs.com/"}


def test_without_infrastructure_no_standin_runs():
    _, specs = platform_plan(load_settings(), os.environ, infra_enabled=False)

    assert [s.name for s in specs] == [p.name for p in PROCESSES]
    assert all("SMS_PROVIDER_URL" not in s.env for s in specs)


def test_a_taken_sms_port_fails_clearly(monkeypatch):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        monkeypatch.setenv("HUISHENG_PORT_SMS", str(squatter.getsockname()[1]))

        _, specs = platform_plan(load_settings(), os.environ)

        with pytest.raises(infra.InfraError, match="already in use.*HUISHENG_PORT_SMS.*SMS_PROVIDER_URL"):
            check_ports_free([s for s in specs if s.name == "sms"])


def test_the_wechat_standin_runs_unless_a_wechat_api_is_named(monkeypatch):
    monkeypatch.setenv("HUISHENG_PORT_WECHAT", "19191")
    _, specs = platform_plan(load_settings(), os.environ)
    wechat = next(s for s in specs if s.name == "wechat")
    assert wechat.argv[1:] == ("-m", "standins.wechat", "--host", "127.0.0.1", "--port", "19191")
    assert not wechat.essential and wechat.layer == 0
    assert all(s.env["WECHAT_API_URL"] == "http://127.0.0.1:19191/" for s in specs if s.env and s.layer > 0)

    monkeypatch.setenv("WECHAT_API_URL", "https://api.weixin.qq.com")
    _, specs = platform_plan(load_settings(), os.environ)
    assert "wechat" not in [s.name for s in specs]


def test_status_lists_the_standin_when_nothing_runs(capsys):
    assert main(["status"]) == 3

    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("sms "))
    assert " down " in line and ":8190" in line


# --------------------------------------------------------------------------- apikey, admin, directory


@pytest.mark.parametrize("argv", [
    ["apikey", "create"],  # --name is required
    ["apikey", "revoke"],
    ["admin", "create", "--name", "王芳"],  # --phone is required
    ["admin", "create", "--name", "王芳", "--phone", "13812345678", "--password", "x"],  # never an argument
    ["directory", "import", "buildings", "f.csv"],
])
def test_bad_usage_exits_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert "usage: huisheng" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["apikey", "create", "--name", "open311"],
    ["apikey", "list"],
    ["apikey", "revoke", "open311"],
    ["directory", "import", "places", str(ROOT / "pyproject.toml")],
])
def test_without_a_broker_the_commands_say_the_platform_is_not_running(argv, capsys, monkeypatch):
    monkeypatch.setenv("AMQP_URI", f"amqp://guest:secret@127.0.0.1:{closed_port()}/")

    code = main(argv)

    captured = capsys.readouterr()
    assert code == 3
    assert captured.out == ""
    assert "is the platform running?" in captured.err and "huisheng up -d" in captured.err
    assert "secret" not in captured.err  # the broker's password is never shown


def test_admin_create_without_a_password_and_no_terminal_asks_for_the_variable(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO())  # not a terminal

    code = main(["admin", "create", "--name", "王芳", "--phone", "13812345678"])

    assert code == 2
    assert "HUISHENG_ADMIN_PASSWORD" in capsys.readouterr().err


def test_the_admin_password_comes_from_the_environment_first():
    asked = []
    password = directory.admin_password({"HUISHENG_ADMIN_PASSWORD": "s3cret-Pass"}, prompt=asked.append)
    assert password == "s3cret-Pass" and asked == []


def test_the_admin_password_is_asked_twice_and_must_match():
    answers = iter(["correct horse", "correct horse"])
    assert directory.admin_password({}, prompt=lambda _: next(answers), interactive=True) == "correct horse"

    answers = iter(["correct horse", "battery staple"])
    with pytest.raises(directory.CommandFailed, match="differ") as failure:
        directory.admin_password({}, prompt=lambda _: next(answers), interactive=True)
    assert failure.value.code == 2


def test_an_import_of_a_missing_file_exits_2_before_any_call(capsys, tmp_path):
    code = main(["directory", "import", "residents", str(tmp_path / "nowhere.csv")])

    assert code == 2
    assert "cannot read" in capsys.readouterr().err


def test_an_import_report_lists_every_rejected_row_and_why():
    report = {"imported": 0, "rejected": [
        {"row": 3, "errors": {"phone": ["not a mobile number"], "building": ["unknown building b99"]}},
        {"row": 7, "errors": {"birth_year": ["must be between 1900 and 2026"]}},
    ]}
    text = directory.format_import("residents", report)
    assert text.splitlines() == [
        "2 row(s) rejected; nothing was imported:",
        "  row 3: phone: not a mobile number; building: unknown building b99",
        "  row 7: birth_year: must be between 1900 and 2026",
    ]
    assert directory.format_import("places", {"imported": 12, "rejected": []}) == "imported 12 places"


def test_the_key_list_never_shows_a_key_and_says_never_for_unused_keys():
    table = directory.format_keys([
        {"name": "hotline-12345", "key_id": "9f8e7d6c", "communities": ["xingqiao", "nanshan"],
         "created_at": "2026-12-01T08:00:00+00:00", "last_used_at": None, "revoked_at": None,
         "key": "hsk_9f8e7d6c_must-not-show"},
    ])
    header, row = table.splitlines()
    assert header.split() == ["NAME", "KEY", "ID", "COMMUNITIES", "CREATED", "LAST", "USED", "REVOKED"]
    assert row.split() == ["hotline-12345", "9f8e7d6c", "xingqiao,nanshan", "2026-12-01T08:00:00+00:00", "never",
                           "-"]
    assert "hsk_" not in table

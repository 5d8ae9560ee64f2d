"""``huisheng apikey``, ``admin`` and ``directory import`` against a real DirectoryService.

The directory runs in a nameko container on the test's own RabbitMQ vhost and
SecantusDB databases (seeded with the demo community at start). The commands run
as a user runs them: ``huisheng`` in its own interpreter (no eventlet patching),
its environment pointing at that vhost, through the real broker; a few run
in-process where only their output and exit codes are checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from nameko.testing.services import entrypoint_hook

from kernel.cli.main import main
from kernel.errors import Unauthorized
from services.directory.service import DirectoryService
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

COMMUNITY = "xingqiao"
PHONE = "13912345678"


@pytest.fixture
def cli_env(settings, tmp_path, monkeypatch) -> dict:
    """The environment of `huisheng`: the test's broker vhost and databases, a home of its own."""
    env = {key: value for key, value in os.environ.items() if key not in ("MONGO_URI", "HUISHENG_ADMIN_PASSWORD")}
    env.update(AMQP_URI=settings.amqp_uri, HUISHENG_HOME=str(tmp_path / "home"), HUISHENG_COMMUNITY=COMMUNITY,
               MONGO_DB_PREFIX=settings.mongo_db_prefix, RPC_TIMEOUT="10", PYTHONPATH=str(ROOT))
    for key in ("AMQP_URI", "HUISHENG_HOME", "HUISHENG_COMMUNITY", "RPC_TIMEOUT"):  # for in-process runs
        monkeypatch.setenv(key, env[key])
    monkeypatch.delenv("HUISHENG_ADMIN_PASSWORD", raising=False)
    return env


@pytest.fixture
def directory(container_factory, service_config, wait_until):
    container = container_factory(DirectoryService, service_config)
    container.start()

    def seeded() -> bool:
        with entrypoint_hook(container, "list_communities") as communities:
            return any(c["code"] == COMMUNITY for c in communities()["items"])

    wait_until(seeded, timeout=30)
    return container


def huisheng(env: dict, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kernel.cli.main", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def ours(out: str) -> list[str]:
    """The command's lines of an in-process run's stdout, without the in-process directory's log lines."""
    return [line for line in out.splitlines() if "directory." not in line or line.startswith("  row ")]


def keys_listed(env: dict) -> dict[str, dict]:
    done = huisheng(env, "apikey", "list", "--json")
    assert done.returncode == 0, done.stderr
    return {item["name"]: item for item in json.loads(done.stdout)["items"]}


# --------------------------------------------------------------------------- API keys


def test_a_key_is_created_printed_once_listed_without_it_and_revoked(directory, cli_env):
    created = huisheng(cli_env, "apikey", "create", "--name", "open311-hotline", "--community", COMMUNITY)

    assert created.returncode == 0, created.stderr
    key = created.stdout.split()[-1]  # the last word of standard output
    assert key.startswith("hsk_")
    # One warning on stderr, nothing else (no deprecation chatter of the libraries the command imports).
    assert created.stderr.strip().splitlines() == [
        "huisheng: warning: the key is shown only this once and cannot be recovered; store it now"]
    with entrypoint_hook(directory, "verify_api_key") as verify:
        principal = verify(key)
    assert (principal["subject"], principal["role"], principal["communities"]) == (
        "key:open311-hotline", "integrator", [COMMUNITY])

    table = huisheng(cli_env, "apikey", "list")
    assert table.returncode == 0, table.stderr
    assert key not in table.stdout and "hsk_" not in table.stdout
    row = next(line for line in table.stdout.splitlines() if line.startswith("open311-hotline "))
    assert COMMUNITY in row.split() and row.split()[1] == key.split("_")[1]  # the key id, not the key
    listed = keys_listed(cli_env)["open311-hotline"]
    assert listed["revoked_at"] is None and "key" not in listed
    assert listed["created_by"] and listed["created_by"].startswith("cli:")

    revoked = huisheng(cli_env, "apikey", "revoke", "open311-hotline")
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked API key open311-hotline" in revoked.stdout
    assert keys_listed(cli_env)["open311-hotline"]["revoked_at"]
    with entrypoint_hook(directory, "verify_api_key") as verify, pytest.raises(Unauthorized):
        verify(key)


def test_a_second_key_of_the_same_name_is_refused_with_the_directory_s_reason(directory, cli_env, capsys):
    assert main(["apikey", "create", "--name", "hotline-12345"]) == 0
    first_key = capsys.readouterr().out.split()[-1]

    assert main(["apikey", "create", "--name", "hotline-12345"]) == 1

    captured = capsys.readouterr()
    assert captured.out == ""
    assert "the directory refused" in captured.err and "exists already" in captured.err and "conflict" in captured.err
    with entrypoint_hook(directory, "verify_api_key") as verify:
        assert verify(first_key)["subject"] == "key:hotline-12345"  # the first key is untouched


def test_a_key_for_an_unknown_community_and_revoking_an_unknown_key_exit_1(directory, cli_env, capsys):
    assert main(["apikey", "create", "--name", "nowhere", "--community", "atlantis"]) == 1
    assert "unknown community 'atlantis'" in capsys.readouterr().err
    assert main(["apikey", "revoke", "never-made"]) == 1
    assert "no API key named 'never-made'" in capsys.readouterr().err
    assert main(["apikey", "list"]) == 0
    assert "nowhere" not in capsys.readouterr().out


# --------------------------------------------------------------------------- the first admin


def test_the_first_admin_is_created_with_the_password_from_the_environment(directory, cli_env):
    env = {**cli_env, "HUISHENG_ADMIN_PASSWORD": "first-admin-Passw0rd"}

    done = huisheng(env, "admin", "create", "--name", "李管理", "--phone", PHONE)

    assert done.returncode == 0, done.stderr
    assert "139****5678" in done.stdout and PHONE not in done.stdout + done.stderr
    person_id = next(word.strip("()") for word in done.stdout.split() if word.startswith("(p-"))
    viewer = {"subject": person_id, "role": "admin", "community": COMMUNITY, "grids": [], "teams": []}
    with entrypoint_hook(directory, "get_person") as get_person:
        admin = get_person(COMMUNITY, person_id, viewer)
    assert admin["name"] == "李管理" and "admin" in admin["roles"]
    assert "first-admin-Passw0rd" not in json.dumps(admin, ensure_ascii=False)


def test_without_a_password_no_admin_is_created(directory, cli_env, mongo_client, settings):
    people = mongo_client[settings.database_name("directory")].people
    before = people.count_documents({})

    done = huisheng(cli_env, "admin", "create", "--name", "李管理", "--phone", PHONE)

    assert done.returncode == 2
    assert "HUISHENG_ADMIN_PASSWORD" in done.stderr
    assert before > 0 and people.count_documents({}) == before


# --------------------------------------------------------------------------- imports


def test_an_import_is_all_or_nothing_and_reports_every_rejected_row(directory, cli_env, tmp_path, capsys):
    bad = tmp_path / "places-bad.csv"
    bad.write_text("网格编号,网格名称,楼栋编号,楼栋名称,地址,单元,房号\n"
                   "g9,第九网格,b90,90号楼,兴乔路90号,1,101 102\n"
                   ",第九网格,b91,91号楼,兴乔路91号,1,101\n"
                   "g9,第九网格,,92号楼,兴乔路92号,1,101\n", encoding="utf-8")

    assert main(["directory", "import", "places", str(bad)]) == 1

    out = ours(capsys.readouterr().out)
    assert out[0] == "2 row(s) rejected; nothing was imported:"
    assert out[1].startswith("  row 3: grid:") and out[2].startswith("  row 4: building:")
    with entrypoint_hook(directory, "locate") as locate, pytest.raises(Exception, match="b90"):
        locate(COMMUNITY, "b90")  # the good row was not written either

    good = tmp_path / "places.csv"
    good.write_text("网格编号,网格名称,楼栋编号,楼栋名称,地址,单元,房号\n"
                    "g9,第九网格,b90,90号楼,兴乔路90号,1,101 102\n", encoding="utf-8")
    assert main(["directory", "import", "places", str(good)]) == 0
    assert ours(capsys.readouterr().out) == ["imported 1 places"]
    with entrypoint_hook(directory, "locate") as locate:
        assert locate(COMMUNITY, "b90")["grid"] == "g9"


def test_residents_are_imported_into_the_tree(directory, cli_env, tmp_path, capsys):
    residents = tmp_path / "residents.csv"
    residents.write_text("姓名,手机号,楼栋,单元,房号,出生年份,标记\n"
                         "赵六,13700001111,b01,1,101,1948,独居\n", encoding="utf-8")

    assert main(["directory", "import", "residents", str(residents)]) == 0

    assert ours(capsys.readouterr().out) == ["imported 1 residents"]
    with entrypoint_hook(directory, "segment") as segment:
        found = segment(COMMUNITY, {"building": "b01", "flags": ["lives_alone"]}, None, 200)["items"]
    assert "赵六" in [item["name"] for item in found]


# --------------------------------------------------------------------------- not running


def test_without_a_directory_the_commands_say_it_is_not_running(cli_env):
    # Nothing ever consumed rpc-directory on this vhost: the broker returns the call at once.
    started = time.monotonic()
    done = huisheng(cli_env, "apikey", "list")

    assert done.returncode == 3, done.stderr
    assert "the directory service is not running" in done.stderr and "huisheng up -d" in done.stderr
    assert done.stdout == ""
    assert time.monotonic() - started < 30


def test_a_stopped_directory_is_told_apart_from_a_slow_one_and_never_acts_late(
        directory, cli_env, capsys, container_factory, service_config):
    directory.stop()  # its durable queue stays: the call waits out its deadline, then the broker is asked

    assert main(["apikey", "create", "--name", "late", "--timeout", "1"]) == 3

    captured = capsys.readouterr()
    assert "the directory service is not running" in captured.err
    assert captured.out == ""
    time.sleep(1.5)
    # The request expired in the queue at its deadline: a directory that comes back creates no key nobody saw.
    again = container_factory(DirectoryService, service_config)
    again.start()
    with entrypoint_hook(again, "list_api_keys") as list_api_keys:
        assert "late" not in [item["name"] for item in list_api_keys()["items"]]

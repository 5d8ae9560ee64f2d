"""``huisheng backup`` / ``huisheng restore`` against real SecantusDB servers, and MongoDB's tools' command lines.

The database is filled by the real tickets, notify and volunteers services (the echo loop) and the directory
(its demo seed, personal data encrypted), plus a collection with options, a large document and unicode. The
backup is SecantusDB's own (``secantusAdmin.backupArchive``); it is restored with SecantusDB's own
``secantus-restore-archive`` into a fresh HUISHENG_HOME, a server started on that directory, and every
collection's options, indexes and documents (byte for byte) compared with the source.

mongodump and mongorestore cannot be installed here: stand-in scripts of those names on PATH record the
command lines ``huisheng`` builds for MongoDB, which docs/operations.md documents.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tarfile
from pathlib import Path

import eventlet
import pytest
from bson import Binary
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from nameko.testing.services import entrypoint_hook

from kernel.cli import backup
from kernel.cli.main import main
from kernel.cli.supervisor import process_identity, write_state
from kernel.config import Settings
from kernel.ledger import unpublished
from kernel.mongo import connect
from services.directory.service import DirectoryService
from services.notify.service import NotifyService
from services.tickets.service import TicketsService
from services.volunteers.service import VolunteersService
from tests.conftest import free_port, secantus_executable, wait_for_mongo

pytestmark = pytest.mark.integration

SERVICES = ("tickets", "notify", "volunteers", "directory")
SEED = json.loads((Path(__file__).resolve().parents[2] / "services" / "directory" / "data" / "demo_community.json")
                  .read_text(encoding="utf-8"))
REPORT = {"service_code": "blocked_drain", "description": "3号楼下水道堵了，污水漫到楼道",
          "address_string": "兴乔小区3号楼2单元", "attributes": {"overflowing": "yes"}}


@pytest.fixture(scope="module")
def mongo_uri(tmp_path_factory):
    """This module's own SecantusDB, on disk: an in-memory server has no files to archive."""
    storage = tmp_path_factory.mktemp("secantus")
    port = free_port()
    server = subprocess.Popen(
        [secantus_executable(), "--host", "127.0.0.1", "--port", str(port), "--storage-path", str(storage),
         "--log-level", "WARNING"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"mongodb://127.0.0.1:{port}/?retryWrites=false&directConnection=true"
    try:
        wait_for_mongo(uri)
        yield uri
    finally:
        server.kill()  # its files are this module's own, and nothing checks its stop (a graceful one: ~2 s)
        server.wait(10)


@pytest.fixture
def restored_server(tmp_path):
    """Start a SecantusDB on a restored data directory; yields a function of the directory returning its URI."""
    servers = []

    def start(storage: Path) -> str:
        port = free_port()
        servers.append(subprocess.Popen(
            [secantus_executable(), "--host", "127.0.0.1", "--port", str(port), "--storage-path", str(storage),
             "--log-level", "WARNING"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        uri = f"mongodb://127.0.0.1:{port}/?retryWrites=false&directConnection=true"
        wait_for_mongo(uri)
        return uri

    yield start
    for server in servers:
        server.kill()  # a copy of the test's, and nothing checks its stop (a graceful one: ~2 s)
        server.wait(10)


@pytest.fixture
def cli_env(monkeypatch, tmp_path, settings):
    """The environment `huisheng backup` reads: the test's database and prefix, a home of its own."""
    monkeypatch.setenv("MONGO_URI", settings.mongo_uri)
    monkeypatch.setenv("MONGO_DB_PREFIX", settings.mongo_db_prefix)
    monkeypatch.setenv("HUISHENG_HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.fixture
def filled(container_factory, settings, service_config, mongo_client, wait_until):
    """The services' databases after a few echo loops and the directory's seed, quiet, services stopped."""
    configs = [service_config] + [settings.nameko_config(web_address=f"127.0.0.1:{free_port()}") for _ in range(3)]
    containers = [container_factory(cls, config) for cls, config in
                  zip((TicketsService, NotifyService, VolunteersService, DirectoryService), configs, strict=True)]
    for container in containers:
        container.start()
    tickets = containers[0]
    residents = ("r-1", "r-1", "r-2")
    with entrypoint_hook(tickets, "create") as create:
        ids = [create("xingqiao", resident, REPORT)["id"] for resident in residents]
    with entrypoint_hook(containers[2], "list_teams") as list_teams:
        teams = list_teams("xingqiao", None, 50)  # seeded when the service started
        assert len(teams["items"] if isinstance(teams, dict) else teams) == 10
    with entrypoint_hook(containers[3], "list_communities") as list_communities:
        wait_until(lambda: list_communities()["items"])  # the directory seeds an empty database at start
    databases = {name: mongo_client[settings.database_name(name)] for name in SERVICES}

    def echoed() -> int:
        """Echoes on the tickets' timelines, as the service shows them (wherever it keeps them)."""
        with entrypoint_hook(tickets, "get") as get:
            return sum(entry["type"] == "echo.delivered" for ticket_id, resident in zip(ids, residents, strict=True)
                       for entry in get("xingqiao", ticket_id, {"subject": resident, "role": "resident"})["timeline"])

    wait_until(lambda: echoed() == 3)
    # Documents keep their events once published: the ledger and the checkpoints say what went out.
    wait_until(lambda: not any(unpublished(databases[name], collection)
                               for name, collection in (("tickets", "tickets"), ("notify", "inbox"))))
    # Stopped side by side: each stop waits seconds on its own entrypoints and threads, not on the others'.
    for stopping in [eventlet.spawn(container.stop) for container in containers]:
        stopping.wait()
    add_extras(databases["tickets"])
    return databases, ids


def add_extras(db) -> None:
    """What the services do not make yet but a backup must keep: options, big and unicode documents, empty ones."""
    db.create_collection("extras", capped=True, size=8 * 1024 * 1024)
    db.extras.insert_many([
        {"_id": "big", "blob": Binary(os.urandom(200 * 1024)), "text": "回声" * 20_000},
        {"_id": "兴乔-1", "描述": "3号楼下水道堵了 🚰"},
    ])
    db.extras.create_index([("描述", 1)], name="按描述")
    db.create_collection("empty")
    db.empty.create_index("code", unique=True, name="by_code")


def snapshot(client, name: str) -> dict:
    """Every collection of a database: options, indexes, and its documents' raw BSON."""
    db = client[name]
    found = {}
    for listing in db.list_collections():
        collection = db.get_collection(listing["name"], codec_options=CodecOptions(document_class=RawBSONDocument))
        found[listing["name"]] = {
            "options": listing.get("options"),
            "indexes": sorted((dict(index) for index in collection.list_indexes()), key=lambda index: index["name"]),
            "documents": sorted(bytes(document.raw) for document in collection.find()),
        }
    return found


def run(*argv: str) -> int:
    return main(list(argv))


def test_a_backup_restores_every_document_option_and_index_into_a_fresh_home(
        filled, cli_env, settings, mongo_client, restored_server, monkeypatch, capsys):
    databases, ids = filled
    archive = cli_env / "platform.secantus.tar.gz"
    assert run("backup", "--out", str(archive)) == 0
    assert f"backup written to {archive}" in capsys.readouterr().out
    assert tarfile.is_tarfile(archive)

    fresh = cli_env / "fresh"  # another platform's home: MONGO_URI unset, nothing running
    monkeypatch.delenv("MONGO_URI")
    monkeypatch.setenv("HUISHENG_HOME", str(fresh))
    monkeypatch.setenv("SECANTUS_PORT", str(free_port()))
    assert run("restore", str(archive)) == 0
    assert "huisheng up -d" in capsys.readouterr().out

    target = connect(restored_server(fresh / "data" / "mongo"))
    try:
        for name in SERVICES:
            db_name = settings.database_name(name)
            assert snapshot(target, db_name) == snapshot(mongo_client, db_name), db_name
        restored = target[settings.database_name("tickets")]
        assert sorted(t["_id"] for t in restored.tickets.find()) == sorted(ids)
        indexes = {index["name"]: index for index in restored.processed_events.list_indexes()}
        assert indexes["at_1"]["expireAfterSeconds"] > 0  # TTL
        volunteers = target[settings.database_name("volunteers")]
        assert volunteers.teams.index_information()["by_code"]["unique"] is True
        # Documents keep their published events: the restored ledger and checkpoints keep them published.
        assert unpublished(restored, "tickets") == []
        assert unpublished(target[settings.database_name("notify")], "inbox") == []
        assert restored.extras.options() == {"capped": True, "size": 8 * 1024 * 1024}
    finally:
        target.close()


def test_a_restore_keeps_the_previous_data_directory_and_refuses_a_running_database(
        filled, cli_env, settings, monkeypatch, capsys):
    archive = cli_env / "platform.secantus.tar.gz"
    assert run("backup", "--out", str(archive)) == 0
    home = cli_env / "other"
    old = home / "data" / "mongo"
    old.mkdir(parents=True)
    (old / "WiredTiger").write_text("the data before the restore")
    monkeypatch.delenv("MONGO_URI")
    monkeypatch.setenv("HUISHENG_HOME", str(home))
    monkeypatch.setenv("SECANTUS_PORT", str(free_port()))
    capsys.readouterr()

    assert run("restore", str(archive)) == 0

    kept = [path for path in (home / "data").iterdir() if path.name.startswith("mongo.before-restore-")]
    assert len(kept) == 1 and (kept[0] / "WiredTiger").read_text() == "the data before the restore"
    assert (old / "WiredTiger").read_text() != "the data before the restore"
    assert str(kept[0]) in capsys.readouterr().out
    monkeypatch.setenv("SECANTUS_PORT", settings.mongo_uri.split(":")[2].split("/")[0])  # a server listens there
    assert run("restore", str(archive)) == 1
    assert "stop it first" in capsys.readouterr().err


def test_the_directory_is_backed_up_with_its_personal_data_still_encrypted(filled, cli_env, settings, capsys):
    archive = cli_env / "platform.secantus.tar.gz"
    assert run("backup", "--out", str(archive)) == 0
    with tarfile.open(archive) as tar:
        data = b"".join(tar.extractfile(member).read() for member in tar.getmembers() if member.isfile())
    assert "兴乔小区".encode() in data  # positive control: the tickets' addresses are stored in clear
    people = [*SEED["residents"], *SEED["staff"]]
    assert len(people) > 10
    for person in people:  # neither the phone (in any spelling) nor the name is readable in the archive
        for text in (person["phone"], f"{person['phone'][:3]}-{person['phone'][3:7]}-{person['phone'][7:]}",
                     person["name"]):
            assert text.encode("utf-8") not in data, f"{text!r} is in the backup in clear"


def test_a_damaged_archive_is_refused_and_nothing_is_changed(cli_env, monkeypatch, capsys):
    damaged = cli_env / "damaged.tar.gz"
    with tarfile.open(damaged, "w:gz") as tar:
        tar.add(__file__, arcname="not-a-wiredtiger-home.py")
    monkeypatch.delenv("MONGO_URI")
    monkeypatch.setenv("SECANTUS_PORT", str(free_port()))
    home = Path(os.environ["HUISHENG_HOME"])

    assert run("restore", str(damaged)) == 1
    assert "secantus-restore-archive refused" in capsys.readouterr().err
    assert not (home / "data" / "mongo").exists() and not (home / "data" / "mongo.restoring").exists()


# --------------------------------------------------------------------------- MongoDB: mongodump and mongorestore

STAND_IN = """#!/bin/sh
printf '%s\n' "$0" "$@" > "$RECORD.$(basename "$0")"
"""


@pytest.fixture
def mongo_tools(tmp_path, monkeypatch):
    """mongodump and mongorestore stand-ins on PATH; they record their argv. Returns a reader of the record."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("mongodump", "mongorestore"):
        (bin_dir / tool).write_text(STAND_IN)
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("RECORD", str(tmp_path / "argv"))
    monkeypatch.setattr(backup, "is_secantus", lambda uri: False)  # as a real MongoDB answers buildInfo
    return lambda tool: (tmp_path / f"argv.{tool}").read_text().splitlines()[1:]


def test_a_mongodb_backup_and_restore_run_mongodump_and_mongorestore(mongo_tools, cli_env, monkeypatch, capsys):
    uri = "mongodb://backup:secret@db.example:27017/?replicaSet=rs0"
    monkeypatch.setenv("MONGO_URI", uri)
    archive = cli_env / "prod.archive.gz"
    archive.write_bytes(b"")  # the stand-in writes nothing; the report reads the size

    assert run("backup", "--out", str(archive), "--service", "tickets") == 0
    prefix = Settings.from_env().database_name("tickets")
    assert mongo_tools("mongodump") == [f"--uri={uri}", f"--archive={archive}", "--gzip", f"--db={prefix}"]
    assert run("restore", str(archive), "--drop") == 0
    assert mongo_tools("mongorestore") == [f"--uri={uri}", f"--archive={archive}", "--gzip", "--drop"]
    assert "secret" not in capsys.readouterr().out  # the password is never shown


def test_without_the_mongodb_tools_the_error_says_where_to_get_them(cli_env, monkeypatch, capsys):
    monkeypatch.setenv("MONGO_URI", "mongodb://db.example:27017/")
    monkeypatch.setenv("PATH", str(cli_env))  # no mongodump there
    monkeypatch.setattr(backup, "is_secantus", lambda uri: False)
    assert run("backup") == 1
    assert "mongodump not found" in capsys.readouterr().err


# --------------------------------------------------------------------------- finding the database


def test_without_a_database_the_error_says_what_to_do(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("MONGO_URI", raising=False)
    monkeypatch.setenv("HUISHENG_HOME", str(tmp_path / "home"))
    assert run("backup") == 1
    assert "set MONGO_URI" in capsys.readouterr().err
    assert not (tmp_path / "home" / "backups").exists()


def test_the_database_of_a_running_platform_comes_from_its_run_state(tmp_path):
    home = tmp_path / "home"
    uri = "mongodb://127.0.0.1:1/?retryWrites=false"
    write_state(home, {"supervisor": {"pid": os.getpid(), "identity": process_identity(os.getpid())},
                       "mongo_uri": uri, "children": []})
    settings = Settings(home=home)
    assert backup.resolve_uri(settings) == (uri, "the running platform")
    assert backup.resolve_uri(Settings(home=home, mongo_uri="mongodb://x/")) == ("mongodb://x/", "MONGO_URI")
    assert backup.resolve_uri(settings, "mongodb://y/") == ("mongodb://y/", "--to-uri")
    write_state(home, {"supervisor": {"pid": 1, "identity": "not-it"}, "mongo_uri": uri, "children": []})
    assert backup.resolve_uri(settings) == (None, "")  # a stale run state is no database


def test_register_adds_both_commands_and_the_default_archive_names(tmp_path):
    parser = argparse.ArgumentParser(prog="huisheng")
    backup.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["backup", "--service", "tickets", "--embedded"])
    assert args.service == ["tickets"] and args.embedded and callable(args.func)
    args = parser.parse_args(["restore", "x.archive", "--drop", "--to-uri", "mongodb://h/"])
    assert (args.file, args.drop, args.to_uri) == ("x.archive", True, "mongodb://h/")
    with pytest.raises(SystemExit):
        parser.parse_args(["backup", "--service", "gateway"])  # the gateway owns no database
    secantus = backup.default_backup_path(Path(tmp_path), secantus=True)
    assert secantus.parent == tmp_path / "backups" and secantus.name.startswith("huisheng-")
    assert secantus.name.endswith("Z.secantus.tar.gz")
    assert backup.default_backup_path(Path(tmp_path), secantus=False).name.endswith("Z.archive.gz")

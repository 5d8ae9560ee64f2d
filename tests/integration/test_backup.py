"""``huisheng backup`` / ``huisheng restore`` against real SecantusDB servers.

The databases are filled by the real tickets, notify and volunteers services
(the echo loop) and the directory (its demo seed, personal data encrypted), plus
a collection with options, a large document and unicode.
The archive is restored into a second, fresh server and every collection's
options, indexes and documents (byte for byte) are compared.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
from pathlib import Path

import pytest
from bson import Binary
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from nameko.testing.services import entrypoint_hook

from kernel.cli import backup
from kernel.cli.supervisor import process_identity, write_state
from kernel.config import Settings
from kernel.ledger import unpublished
from kernel.mongo import connect
from services.directory.service import DirectoryService
from services.notify.service import NotifyService
from services.tickets.service import TicketsService
from services.volunteers.service import VolunteersService
from tests.conftest import free_port, secantus_server

pytestmark = pytest.mark.integration

SERVICES = ("tickets", "notify", "volunteers", "directory")
SEED = json.loads((Path(__file__).resolve().parents[2] / "services" / "directory" / "data" / "demo_community.json")
                  .read_text(encoding="utf-8"))
REPORT = {"service_code": "blocked_drain", "description": "3号楼下水道堵了，污水漫到楼道",
          "address_string": "兴乔小区3号楼2单元"}


@pytest.fixture
def second_mongo():
    """A fresh SecantusDB server of this test's own: the restore target."""
    with secantus_server() as uri:
        yield uri


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
        teams = list_teams("xingqiao", None, 50)  # the first call seeds the ten teams
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
    for container in containers:
        container.stop()
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
    return backup.main(list(argv))


def test_a_backup_restores_every_document_option_and_index_into_a_fresh_server(
        filled, cli_env, settings, second_mongo, mongo_client, capsys):
    databases, ids = filled
    archive = cli_env / "platform.archive"
    assert run("backup", "--out", str(archive)) == 0
    assert f"{settings.database_name('tickets')}.tickets: 3 documents" in capsys.readouterr().out

    assert run("restore", str(archive), "--to-uri", second_mongo) == 0
    out = capsys.readouterr().out
    assert "intact: " in out and f"{settings.database_name('volunteers')}.teams: 10 documents, 1 index" in out

    target = connect(second_mongo)
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
        assert restored.tickets.index_information()["outbox_since"]["sparse"] is True
        # Documents keep their published events: the restored ledger and checkpoints keep them published.
        assert unpublished(restored, "tickets") == []
        assert unpublished(target[settings.database_name("notify")], "inbox") == []
        assert restored.extras.options() == {"capped": True, "size": 8 * 1024 * 1024}
    finally:
        target.close()


def test_the_directory_is_backed_up_with_its_personal_data_still_encrypted(filled, cli_env, settings, capsys):
    archive = cli_env / "platform.archive"
    assert run("backup", "--out", str(archive)) == 0
    assert f"{settings.database_name('directory')}.people: " in capsys.readouterr().out

    data = archive.read_bytes()
    people = [*SEED["residents"], *SEED["staff"]]
    assert len(people) > 10
    for person in people:  # neither the phone (in any spelling) nor the name is readable in the archive
        for text in (person["phone"], f"{person['phone'][:3]}-{person['phone'][3:7]}-{person['phone'][7:]}",
                     person["name"]):
            assert text.encode("utf-8") not in data, f"{text!r} is in the backup in clear"


def test_restore_refuses_collections_that_hold_documents_unless_dropped(
        filled, cli_env, settings, second_mongo, capsys):
    archive = cli_env / "platform.archive.gz"
    assert run("backup", "--gzip", "--out", str(archive)) == 0
    assert archive.read_bytes()[:2] == b"\x1f\x8b"
    assert run("restore", str(archive), "--to-uri", second_mongo) == 0
    capsys.readouterr()

    assert run("restore", str(archive), "--to-uri", second_mongo) == 1
    assert "refusing to restore into collections that hold documents" in capsys.readouterr().err
    assert run("restore", str(archive), "--to-uri", second_mongo, "--drop") == 1  # stdin is no terminal
    assert "add --yes" in capsys.readouterr().err

    assert run("restore", str(archive), "--to-uri", second_mongo, "--drop", "--yes") == 0
    target = connect(second_mongo)
    try:
        assert target[settings.database_name("tickets")].tickets.count_documents({}) == 3  # replaced, not doubled
        assert target[settings.database_name("volunteers")].teams.count_documents({}) == 10
    finally:
        target.close()


def test_a_damaged_archive_is_refused_before_anything_is_written(filled, cli_env, settings, second_mongo, capsys):
    archive = cli_env / "platform.archive.gz"
    assert run("backup", "--gzip", "--service", "tickets", "--out", str(archive)) == 0
    data = bytearray(gzip.decompress(archive.read_bytes()))
    at = data.index("兴乔小区".encode())
    data[at:at + 3] = "回".encode()  # same length: still valid BSON, only the CRC can tell
    damaged = cli_env / "damaged.archive"
    damaged.write_bytes(bytes(data))
    capsys.readouterr()

    assert run("restore", str(damaged), "--to-uri", second_mongo) == 1
    assert f"CRC mismatch for {settings.database_name('tickets')}.tickets" in capsys.readouterr().err
    target = connect(second_mongo)
    try:
        assert settings.database_name("tickets") not in target.list_database_names()
    finally:
        target.close()


def test_backup_of_one_service_holds_only_its_database(filled, cli_env, settings, capsys):
    from kernel.mongo_archive import verify_archive

    archive = cli_env / "volunteers.archive"
    assert run("backup", "--service", "volunteers", "--out", str(archive)) == 0
    with open(archive, "rb") as stream:
        prelude, counts = verify_archive(stream)
    assert {c.db for c in prelude.collections} == {settings.database_name("volunteers")}
    assert counts == {f"{settings.database_name('volunteers')}.teams": 10}


# --------------------------------------------------------------------------- finding the database


def test_without_a_database_the_error_says_what_to_do(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("MONGO_URI", raising=False)
    monkeypatch.setenv("HUISHENG_HOME", str(tmp_path / "home"))
    assert run("backup") == 1
    assert "set MONGO_URI" in capsys.readouterr().err
    assert not (tmp_path / "home" / "backups").exists() or not any((tmp_path / "home" / "backups").iterdir())


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


def test_register_adds_both_commands_and_the_default_archive_name(tmp_path):
    parser = argparse.ArgumentParser(prog="huisheng")
    backup.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["backup", "--gzip", "--service", "tickets", "--service", "notify"])
    assert args.service == ["tickets", "notify"] and args.gzip and callable(args.func)
    args = parser.parse_args(["restore", "x.archive", "--drop", "--yes", "--to-uri", "mongodb://h/"])
    assert (args.file, args.drop, args.yes, args.to_uri) == ("x.archive", True, True, "mongodb://h/")
    with pytest.raises(SystemExit):
        parser.parse_args(["backup", "--service", "gateway"])  # the gateway owns no database
    path = backup.default_backup_path(Path(tmp_path), compressed=True)
    assert path.parent == tmp_path / "backups" and path.name.startswith("huisheng-")
    assert path.name.endswith("Z.archive.gz")
    assert backup.redact("mongodb://u:secret@h:1/") == "mongodb://u:***@h:1/"

"""Personal data at rest: no phone number of the register in plain text in any database file.

A SecantusDB server with its storage on disk holds the seeded register and a staff
member created over RPC; after it stops, every file under its storage directory is
scanned for each phone number. A phone written in plain text to another collection
is the positive control: the scan must find it, so it can fail.
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from kernel.mongo import connect
from services.directory.seed import load_demo
from services.directory.service import DirectoryService
from tests.conftest import free_port, secantus_executable, wait_for_mongo

pytestmark = pytest.mark.integration

CONTROL_PHONE = "13800009999"
CREATED_PHONE = "13800001088"


@pytest.fixture
def disk_server(tmp_path):
    """A SecantusDB server storing to ``tmp_path/db``; yields (uri, storage path, stop)."""
    storage = tmp_path / "db"
    storage.mkdir()
    port = free_port()
    server = subprocess.Popen(
        [secantus_executable(), "--host", "127.0.0.1", "--port", str(port), "--storage-path", str(storage),
         "--log-level", "WARNING"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"mongodb://127.0.0.1:{port}/?retryWrites=false&directConnection=true"

    def stop() -> None:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(5)

    wait_for_mongo(uri)
    yield uri, storage, stop
    stop()


def occurrences(storage: Path, needles: list[bytes]) -> dict[bytes, list[str]]:
    """Each needle → the files under ``storage`` whose bytes contain it."""
    found: dict[bytes, list[str]] = {}
    for path in storage.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            for needle in needles:
                if needle in content:
                    found.setdefault(needle, []).append(str(path.relative_to(storage)))
    return found


def test_no_phone_number_of_the_register_is_stored_in_plain_text(container_factory, settings, disk_server):
    uri, storage, stop = disk_server
    on_disk = dataclasses.replace(settings, mongo_uri=uri)
    directory = container_factory(DirectoryService, on_disk.nameko_config(web_address=f"127.0.0.1:{free_port()}"))
    directory.start()
    with ClusterRpcProxy({"AMQP_URI": settings.amqp_uri, "serializer": "json"}, timeout=20) as proxy:
        created = proxy.directory.create_staff("xingqiao", {"name": "钱多多", "phone": CREATED_PHONE,
                                                            "roles": ["volunteer"], "email": "qian@example.cn"})
        assert proxy.directory.contacts("xingqiao", [created["id"]])[created["id"]]["phone"] == CREATED_PHONE
    client = connect(uri)
    try:
        client["huisheng_control"]["notes"].insert_one({"_id": "control", "phone": CONTROL_PHONE})
        people = client[on_disk.database_name("directory")]["people"]
        assert people.count_documents({}) > 40  # the register is there to be scanned
    finally:
        client.close()
    directory.stop()
    stop()

    demo = load_demo()
    phones = [p["phone"] for p in demo["staff"] + demo["residents"]] + [CREATED_PHONE]
    emails = [p["email"] for p in demo["residents"] if p.get("email")] + ["qian@example.cn"]
    needles = [value.encode() for value in phones + emails] + [CONTROL_PHONE.encode()]
    found = occurrences(storage, needles)
    assert CONTROL_PHONE.encode() in found, "the scan did not find the plain-text control: it proves nothing"
    leaked = {needle.decode(): files for needle, files in found.items() if needle != CONTROL_PHONE.encode()}
    assert leaked == {}

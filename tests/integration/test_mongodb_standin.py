"""standins/mongodb.py changes how fast SecantusDB answers, never what: the same script against the patched
server (as the platform runs it) and against SecantusDB as shipped gives the same answers.

The script leans on what the patches touch: index specifications read after every kind of catalog change
(an index built, dropped, rebuilt with other options, a collection dropped and renamed), unique and partial
indexes, arrays turning an index multikey inside a transaction that aborts and one that commits, and change
streams of one database while another one is written.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from pymongo import ASCENDING, MongoClient
from pymongo.errors import DuplicateKeyError, OperationFailure

from kernel.cli.infra import EMBEDDED_SERVER
from tests.conftest import free_port, secantus_executable, wait_for_mongo

pytestmark = pytest.mark.integration


@contextmanager
def server(command: list[str]) -> Iterator[MongoClient]:
    port = free_port()
    process = subprocess.Popen([*command, "--host", "127.0.0.1", "--port", str(port), "--storage-path", ":memory:",
                                "--log-level", "WARNING"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"mongodb://127.0.0.1:{port}/?retryWrites=false&directConnection=true"
    try:
        wait_for_mongo(uri)
        with MongoClient(uri) as client:
            yield client
    finally:
        process.terminate()
        process.wait(10)


def attempt(action: Callable[[], Any]) -> Any:
    try:
        result = action()
        return ("inserted", result.inserted_id) if hasattr(result, "inserted_id") else result
    except (DuplicateKeyError, OperationFailure) as error:
        return f"{type(error).__name__} {error.code}"


def script(client: MongoClient) -> list[Any]:
    """Every answer the script gets, in order."""
    db, other = client.standin, client.elsewhere
    db.create_collection("tickets")
    stream = db.watch([{"$match": {"operationType": {"$in": ["insert", "update"]}}}], max_await_time_ms=1)
    tickets = db.tickets
    answers: list[Any] = []
    tickets.create_index([("grid", ASCENDING), ("state", ASCENDING)], name="grid_state")
    tickets.create_index("number", unique=True, name="number")
    tickets.create_index("key", unique=True, name="key", partialFilterExpression={"key": {"$exists": True}})
    for n in range(30):
        tickets.insert_one({"_id": n, "grid": f"g{n % 3}", "state": "received", "number": n,
                            **({"key": f"k{n}"} if n % 2 else {})})
        other.noise.insert_one({"n": n})  # another database's writes: never in this database's stream
    answers.append(attempt(lambda: tickets.insert_one({"_id": 100, "number": 5})))
    answers.append(attempt(lambda: tickets.insert_one({"_id": 101, "number": 101, "key": "k1"})))
    answers.append(attempt(lambda: tickets.insert_one({"_id": 102, "number": 102})))  # no key: not in the index
    answers.append(sorted(d["_id"] for d in tickets.find({"grid": "g1", "state": "received"})))
    with client.start_session() as session:  # an array in an aborted transaction: the index stays usable
        session.start_transaction()
        tickets.insert_one({"_id": 200, "grid": ["g1", "g2"], "state": "received", "number": 200}, session=session)
        session.abort_transaction()
    answers.append(sorted(d["_id"] for d in tickets.find({"grid": "g2"})))
    with client.start_session() as session:  # ... and in a committed one: it turns multikey
        session.with_transaction(lambda s: tickets.insert_one(
            {"_id": 201, "grid": ["g1", "g2"], "state": "received", "number": 201}, session=s))
    answers.append(sorted(d["_id"] for d in tickets.find({"grid": "g2", "state": "received"})))
    answers.append([d["_id"] for d in tickets.find({"grid": {"$in": ["g0", "g2"]}}).sort("grid", 1).limit(5)])
    tickets.drop_index("number")  # the unique rule goes with its index ...
    answers.append(attempt(lambda: tickets.insert_one({"_id": 103, "number": 5})))
    answers.append(attempt(lambda: tickets.create_index("number", unique=True, name="number")))
    tickets.delete_one({"_id": 103})
    tickets.create_index("number", unique=True, name="number")  # ... and comes back with it
    answers.append(attempt(lambda: tickets.insert_one({"_id": 104, "number": 5})))
    tickets.update_one({"_id": 3}, {"$set": {"state": "dispatched"}})
    answers.append(sorted((i["name"], sorted(i["key"].items()), i.get("unique", False))
                          for i in tickets.list_indexes()))
    tickets.rename("renamed")
    answers.append(attempt(lambda: db.renamed.insert_one({"_id": 105, "number": 6})))
    db.renamed.drop()
    db.renamed.insert_one({"_id": 1, "number": 1})
    answers.append(attempt(lambda: db.renamed.insert_one({"_id": 2, "number": 1})))  # no index left: no rule
    changes = []
    while (change := stream.try_next()) is not None:
        changes.append((change["operationType"], change["ns"]["coll"], change["documentKey"]["_id"]))
    answers.append(changes)
    return answers


def test_the_patched_server_answers_as_secantusdb_does() -> None:
    with server(EMBEDDED_SERVER) as patched:
        expected_build = patched.admin.command("buildInfo").get("version")
        got = script(patched)
    with server([secantus_executable()]) as shipped:
        assert shipped.admin.command("buildInfo").get("version") == expected_build
        expected = script(shipped)
    assert got == expected
    # the script did exercise what the patches change (a sanity check on the script, not on the server)
    assert got[0] == "DuplicateKeyError 11000" and got[-1] and len(got[-1]) > 30


def test_the_patches_refuse_another_secantusdb_version() -> None:
    from secantus import storage

    from standins.mongodb import install

    with pytest.raises(RuntimeError, match="0.7.0b3"):
        install(storage, "0.8.0")
    assert sys.modules["secantus.storage"].Storage._iter_indexes.__name__ == "_iter_indexes"  # untouched

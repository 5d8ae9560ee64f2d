"""standins/mongodb.py changes how fast SecantusDB answers, never what: the same script against the patched
server (as the platform runs it) and against SecantusDB as shipped gives the same answers.

The script leans on what the patches touch: index specifications read after every kind of catalog change
(an index built, dropped, rebuilt with other options, a collection dropped and renamed), unique and partial
indexes, arrays turning an index multikey inside a transaction that aborts and one that commits, change
streams of one database while another one is written, and profiling settings changed after every command
has read them.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import SimpleNamespace
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
    answers.append(db.command("profile", 0, slowms=7)["slowms"])  # the settings it replaced: every command read them
    answers.append(db.command("profile", -1)["slowms"])  # the new ones, not a copy of the old
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
    people = db.people  # string ids and fields, as the reports' fold and notify read them by $in
    people.insert_many([{"_id": f"p{n}", "community": "x" if n % 2 else "y", "name": "Alice" if n % 3 else "ALICE",
                         "tags": ["a", "b"] if n % 4 == 0 else ("a" if n % 4 == 1 else n)} for n in range(12)])
    people.insert_one({"_id": 7.5, "community": "x"})
    wanted = ["p1", "p3", "p4", "p9", "nobody"]
    for query, options in [({"_id": {"$in": wanted}}, {}), ({"_id": {"$in": wanted}, "community": "x"}, {}),
                           ({"_id": {"$in": [*wanted, 7.5]}}, {}), ({"_id": {"$in": []}}, {}),
                           ({"tags": {"$in": ["a"]}}, {}), ({"tags": "a", "community": "y"}, {}),
                           ({"tags": {"$in": ["a", None]}}, {}),
                           ({"name": {"$in": ["alice"]}}, {"collation": {"locale": "en", "strength": 2}})]:
        answers.append(sorted(str(d["_id"]) for d in people.find(query, **options)))
    with client.start_session() as session:
        session.start_transaction()
        answers.append(sorted(d["_id"] for d in people.find({"_id": {"$in": wanted}}, {"_id": 1}, session=session)))
        session.commit_transaction()
    answers.append(people.count_documents({"community": {"$in": ["x"]}}))
    answers.append(people.update_many({"_id": {"$in": wanted}}, {"$set": {"seen": True}}).modified_count)
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
    assert got[:3] == [100, 7, "DuplicateKeyError 11000"] and got[-1] and len(got[-1]) > 30


def test_the_patches_refuse_another_secantusdb_version() -> None:
    from secantus import storage

    from standins.mongodb import install

    with pytest.raises(RuntimeError, match="0.7.0b3"):
        install(storage, "0.8.0")
    assert sys.modules["secantus.storage"].Storage._iter_indexes.__name__ == "_iter_indexes"  # untouched


def storage_class(patched: bool) -> type:
    """SecantusDB's ``Storage``, as shipped or with the stand-in's patches on a subclass of its own (the shipped
    class stays as it is for the rest of the test run)."""
    import secantus
    from secantus import storage

    from standins.mongodb import install

    module = SimpleNamespace(**vars(storage))
    module.Storage = type("Storage", (storage.Storage,), {})
    if patched:
        install(module, secantus.__version__)
    return module.Storage


@pytest.mark.parametrize("patched", [False, True], ids=["shipped", "patched"])
def test_the_ttl_sweeper_lets_go_of_its_snapshot_after_a_sweep(patched: bool) -> None:
    """Patch 3: a sweeper that keeps the snapshot it swept with pins everything written after it (here: a
    collection created later is invisible to its session) until its next sweep, a minute on."""
    from secantus.storage import _COLL_TABLE

    store = storage_class(patched)(":memory:", ttl_sweep_seconds=3600)
    store.create_index("db", "claims", "at_ttl", {"at": 1}, {"expireAfterSeconds": 3600})
    store.insert("db", "claims", [{"_id": n, "at": datetime.now(UTC)} for n in range(50)])
    swept, written, seen = threading.Event(), threading.Event(), []

    def sweeper_thread() -> None:
        store.prune_ttl_all_collections()
        swept.set()
        written.wait(5)
        cursor = store._tls.session.open_cursor(_COLL_TABLE, None, None)
        cursor.set_key("db", "later")
        seen.append(cursor.search() == 0)
        cursor.close()

    sweeper = threading.Thread(target=sweeper_thread)
    try:
        sweeper.start()
        assert swept.wait(5)
        store.insert("db", "later", [{"_id": 1}])
        written.set()
        sweeper.join(5)
    finally:
        store.close()
    assert seen == [patched]  # shipped: still pinned (an upgrade that fixes it makes this fail: drop the patch)


def test_a_thread_lets_go_of_its_cursors_while_another_holds_the_server_lock() -> None:
    """Patch 3: after a command, a connection thread reads the profiling level and resets its session without
    waiting for ``Storage._lock``, which a slow read may hold for as long as it waits on WiredTiger."""
    store = storage_class(patched=True)(":memory:")
    ready, held, done, answers = threading.Event(), threading.Event(), threading.Event(), []

    def connection_thread() -> None:
        store.insert("db", "tickets", [{"_id": n} for n in range(3)])
        answers.append(store.find_matching("db", "tickets", {}))  # this thread's session now holds its cursors
        answers.append(store.get_profile("db"))  # read once, under the lock
        ready.set()
        held.wait(5)
        answers.append(store.get_profile("db"))
        store.release_thread_snapshot()
        done.set()

    worker = threading.Thread(target=connection_thread)
    try:
        worker.start()
        assert ready.wait(5)
        with store._lock:
            held.set()
            assert done.wait(5), "the thread waited for the server's lock"
        worker.join(5)
        assert len(answers[0]) == 3
        assert answers[1] == answers[2] == {"level": 0, "slowms": 100, "sampleRate": 1.0}
    finally:
        store.close()
    assert store._closed

"""``huisheng backup`` and ``huisheng restore``: every service's database in one mongodump archive.

    huisheng backup [--out FILE] [--gzip] [--service NAME ...] [--embedded]
    huisheng restore FILE [--drop] [--yes] [--to-uri URI] [--embedded]

The archive is the format of ``mongodump --archive`` (``--gzip``), written and
read by :mod:`kernel.mongo_archive`: a backup made here restores with
``mongorestore --archive=FILE [--gzip]`` into production's MongoDB, and a
``mongodump --archive`` of production restores here. Each collection keeps
its options and indexes (unique, partial, sparse, TTL).

The database is ``--to-uri`` (restore only), else ``MONGO_URI``, else the one
the running ``huisheng up`` of ``$HUISHENG_HOME`` uses (its run state). With
``--embedded`` and none of those, the command starts the embedded SecantusDB of
``$HUISHENG_HOME`` itself for its own duration, so a stopped platform can be
backed up or restored: ``huisheng down; huisheng restore FILE --drop --embedded;
huisheng up -d``.

Consistency: like ``mongodump`` without ``--oplog``, a backup reads one
collection after another, not one point in time. Each service keeps a change
and the events it causes in one document (the outbox), so every document in
the archive is whole: an event not yet published is in its document and a
restored service publishes it. Events already published but still queued in
RabbitMQ at backup time are not in the archive; stop the services first
(keeping the database) for a backup that is exact across services.

Documents are streamed in batches, never a whole collection in memory.
"""

from __future__ import annotations

import argparse
import functools
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from kernel.cli import infra
from kernel.cli.main import DB_NAME, complain, database_spec, load_settings, say
from kernel.cli.supervisor import log_path, pid_alive, read_state
from kernel.config import Settings
from kernel.platform import PROCESSES

if TYPE_CHECKING:
    from pymongo import MongoClient
    from pymongo.collection import Collection
    from pymongo.database import Database

    from kernel.mongo_archive import CollectionDump, CollectionMetadata, Header, Prelude

SERVICES: tuple[str, ...] = tuple(p.name for p in PROCESSES if not p.is_gateway)  # the gateway owns no database
BATCH_SIZE = 1000
DATABASE_START_TIMEOUT = 30.0
DATABASE_STOP_TIMEOUT = 20.0
SYSTEM_DATABASES = frozenset({"admin", "local", "config"})
NO_DATABASE = (
    "no database to use: set MONGO_URI, start the platform (`huisheng up -d`), pass --to-uri (restore), "
    "or pass --embedded to start the embedded database of HUISHENG_HOME for this command"
)


class BackupError(RuntimeError):
    """A backup or restore cannot go on; the message says why and what to do."""


# --------------------------------------------------------------------------- the database


def redact(uri: str) -> str:
    """A URI fit to print: its password hidden."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def running_platform_uri(home: Path) -> str | None:
    """The MONGO_URI of the ``huisheng up`` running in ``home`` (its supervisor or its database alive), or None."""
    state = read_state(home) or {}
    supervisor = state.get("supervisor") or {}
    database_alive = any(
        child.get("name") == DB_NAME and pid_alive(child.get("pid"), child.get("identity"))
        for child in state.get("children") or []
    )
    if pid_alive(supervisor.get("pid"), supervisor.get("identity")) or database_alive:
        return state.get("mongo_uri")
    return None


def resolve_uri(settings: Settings, given: str | None = None) -> tuple[str | None, str]:
    """The database URI and where it came from: ``--to-uri``, ``MONGO_URI`` or the running platform."""
    if given:
        return given, "--to-uri"
    if settings.mongo_uri:
        return settings.mongo_uri, "MONGO_URI"
    uri = running_platform_uri(settings.home)
    return (uri, "the running platform") if uri else (None, "")


@contextmanager
def database(settings: Settings, given: str | None = None, embedded: bool = False) -> Iterator[tuple[str, str]]:
    """Yield ``(uri, source)`` of the database to use, starting the embedded one if allowed and needed."""
    uri, source = resolve_uri(settings, given)
    if uri:
        yield uri, source
        return
    if not embedded:
        raise BackupError(NO_DATABASE)
    with embedded_database(settings) as uri:
        yield uri, "the embedded database"


@contextmanager
def embedded_database(settings: Settings) -> Iterator[str]:
    """Run the SecantusDB of ``$HUISHENG_HOME/data/mongo`` (on SECANTUS_PORT) while the block runs."""
    spec = database_spec(settings)
    if infra.find_secantusd() is None:
        raise BackupError("secantusd-py not found: `pip install secantusdb==0.7.0b3`, or set MONGO_URI")
    host, port = spec.port() or ("127.0.0.1", settings.secantus_port)
    if infra.port_in_use(host, port):
        raise BackupError(f"port {port} (SECANTUS_PORT) is in use: if the platform of another HUISHENG_HOME "
                          "runs there, set MONGO_URI to its database instead of --embedded")
    (settings.home / "data" / "mongo").mkdir(parents=True, exist_ok=True)
    say(f"starting the embedded database of {settings.home} on port {port} ...")
    process = _spawn(spec.argv, log_path(settings.home, DB_NAME))
    try:
        _wait_for_database(spec.address, process)
        yield spec.address
    finally:
        _stop(process)
        say("stopped the embedded database")


def _spawn(argv: Sequence[str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _wait_for_database(uri: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + DATABASE_START_TIMEOUT
    while not infra.mongo_ping(uri):
        if process.poll() is not None:
            raise BackupError(f"the embedded database exited with code {process.returncode}; see its log")
        if time.monotonic() > deadline:
            raise BackupError(f"the embedded database did not answer within {DATABASE_START_TIMEOUT:g} s")
        time.sleep(0.1)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(DATABASE_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def connect(uri: str) -> MongoClient:
    """A pymongo client with bounded waits (pymongo is imported here: the CLI stays quick for other commands)."""
    from pymongo import MongoClient

    return MongoClient(uri, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000, appname="huisheng-backup")


def server_version(client: MongoClient) -> str:
    """``X.Y.Z`` of the server, the form mongorestore parses from an archive header."""
    info = client.server_info()
    parts = [int(part) for part in (info.get("versionArray") or [])[:3]]
    return ".".join(map(str, parts)) if len(parts) == 3 else "0.0.0"


# --------------------------------------------------------------------------- backup


def _raw_documents(collection: Collection, batch_size: int = BATCH_SIZE) -> Iterator[bytes]:
    """A collection's documents as the server stores them (raw BSON), fetched in batches."""
    from bson.codec_options import CodecOptions
    from bson.raw_bson import RawBSONDocument

    raw = collection.with_options(codec_options=CodecOptions(document_class=RawBSONDocument))
    for document in raw.find({}, batch_size=batch_size):
        yield document.raw


def _uuid_hex(listing: dict) -> str:
    uuid = (listing.get("info") or {}).get("uuid")
    return uuid.hex() if isinstance(uuid, bytes) and getattr(uuid, "subtype", None) == 4 else ""


def database_dumps(db: Database) -> list[CollectionDump]:
    """One :class:`~kernel.mongo_archive.CollectionDump` per collection of ``db``, documents read lazily."""
    from kernel.mongo_archive import CollectionDump, collection_metadata

    dumps = []
    for listing in sorted(db.list_collections(), key=lambda entry: entry["name"]):
        name, kind = listing["name"], listing.get("type", "collection")
        if name.startswith("system."):
            continue
        is_view = kind == "view"
        indexes = [] if is_view else list(db[name].list_indexes())
        info = collection_metadata(db.name, name, options=listing.get("options") or {}, indexes=indexes,
                                   uuid=_uuid_hex(listing), type=kind)
        dumps.append(CollectionDump(info, () if is_view else _raw_documents(db[name])))
    return dumps


def default_backup_path(home: Path, compressed: bool, now: datetime | None = None) -> Path:
    """``$HUISHENG_HOME/backups/huisheng-<UTC timestamp>.archive[.gz]``, not yet taken."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    suffix = ".archive.gz" if compressed else ".archive"
    path, n = home / "backups" / f"huisheng-{stamp}{suffix}", 1
    while path.exists():
        path, n = home / "backups" / f"huisheng-{stamp}-{n}{suffix}", n + 1
    return path


def write_backup(path: Path, dumps: list[CollectionDump], header: Header, compressed: bool) -> dict[str, int]:
    """Write the archive to ``path.partial`` and rename it into place only once it is complete."""
    import gzip

    from kernel.mongo_archive import write_archive

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        with open(partial, "wb") as raw:
            stream: IO[bytes] = gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) if compressed else raw
            with stream:
                counts = write_archive(stream, dumps, header)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return counts


def backup(uri: str, databases: Sequence[str], path: Path, compressed: bool) -> dict[str, int]:
    """Dump ``databases`` (those that exist) at ``uri`` into one archive at ``path``; documents per namespace."""
    from kernel.mongo_archive import Header

    client = connect(uri)
    try:
        present = set(client.list_database_names())
        missing = [name for name in databases if name not in present]
        for name in missing:
            say(f"{name}: no such database at {redact(uri)} (has its service never run?); skipped")
        if len(missing) == len(databases):
            raise BackupError(f"none of {', '.join(databases)} exists at {redact(uri)}: nothing to back up "
                              "(check MONGO_URI and MONGO_DB_PREFIX)")
        dumps = [dump for name in databases if name in present for dump in database_dumps(client[name])]
        return write_backup(path, dumps, Header(server_version(client)), compressed)
    finally:
        client.close()


def cmd_backup(args: argparse.Namespace) -> int:
    """``huisheng backup``: every service's database (or ``--service`` ones) into one archive."""
    settings = load_settings()
    services = args.service or list(SERVICES)
    databases = [settings.database_name(name) for name in services]
    path = Path(args.out).absolute() if args.out else default_backup_path(settings.home, args.gzip)
    with database(settings, embedded=args.embedded) as (uri, source):
        say(f"backing up {', '.join(databases)} from {redact(uri)} ({source}) ...")
        started = time.monotonic()
        counts = backup(uri, databases, path, args.gzip)
    for namespace, count in counts.items():
        say(f"  {namespace}: {_documents(count)}")
    size = path.stat().st_size
    say(f"wrote {path} ({_size(size)}, {_documents(sum(counts.values()))}) in {time.monotonic() - started:.1f} s")
    return 0


# --------------------------------------------------------------------------- restore


@dataclass
class RestorePlan:
    """What a restore writes (by the namespace its documents have in the archive) and what it leaves out."""

    collections: dict[str, CollectionMetadata] = field(default_factory=dict)  # by data namespace
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (namespace, why)


def skip_reason(info: CollectionMetadata) -> str | None:
    """Why a collection of an archive is not restored (server internals, oplog, time series), or None."""
    if not info.db:
        return "an oplog (restoring one is mongorestore --oplogReplay's job)"
    if info.db in SYSTEM_DATABASES:
        return f"the server's own {info.db} database"
    if info.collection.startswith("system."):
        return "a system collection"
    if info.type == "timeseries":
        return "a time-series collection (not supported by huisheng restore)"
    return None


def plan_restore(prelude: Prelude) -> RestorePlan:
    """Split the archive's collections into those to restore and those to skip."""
    from kernel.mongo_archive import data_namespace

    plan = RestorePlan()
    for info in prelude.collections:
        reason = skip_reason(info)
        if reason:
            plan.skipped.append((info.namespace, reason))
        else:
            plan.collections[data_namespace(info, prelude.header.server_version)] = info
    return plan


def occupied(client: MongoClient, plan: RestorePlan) -> list[str]:
    """The target collections of ``plan`` that hold documents already."""
    return [
        namespace
        for namespace, info in plan.collections.items()
        if info.type != "view" and client[info.db][info.collection].find_one({}, {"_id": 1}) is not None
    ]


def confirmed(namespaces: Sequence[str], uri: str, yes: bool) -> bool:
    """Whether dropping these non-empty collections was agreed to: ``--yes``, or an answer on a terminal."""
    if yes:
        return True
    listing = ", ".join(namespaces)
    if not sys.stdin.isatty():
        complain(f"--drop would delete the documents of {listing} at {redact(uri)}; add --yes to confirm")
        return False
    answer = input(f"huisheng: drop {listing} at {redact(uri)} and restore them from the archive? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def prepare_collection(client: MongoClient, info: CollectionMetadata, drop: bool) -> None:
    """Drop the target collection if asked, and create it with the archive's options if it does not exist."""
    db = client[info.db]
    exists = info.collection in db.list_collection_names(filter={"name": info.collection})
    if exists and drop:
        db.drop_collection(info.collection)
    if drop or not exists:
        db.command({"create": info.collection, **info.options})


def create_indexes(client: MongoClient, info: CollectionMetadata) -> int:
    """Create the archive's indexes of one collection (like mongorestore: without ``v`` and ``ns``)."""
    indexes = [
        {key: value for key, value in index.items() if key not in ("v", "ns")}
        for index in info.indexes
        if index.get("name") != "_id_"
    ]
    if indexes and info.type != "view":
        client[info.db].command("createIndexes", info.collection, indexes=indexes)
    return len(indexes)


def restore(client: MongoClient, path: Path, plan: RestorePlan, drop: bool) -> dict[str, tuple[int, int]]:
    """Stream the archive's documents into the target; ``(documents, indexes)`` per namespace restored."""
    from bson.raw_bson import RawBSONDocument

    from kernel.mongo_archive import Batch, End, read_archive

    for info in plan.collections.values():
        prepare_collection(client, info, drop)
    inserted: dict[str, int] = dict.fromkeys(plan.collections, 0)
    results: dict[str, tuple[int, int]] = {}
    with open(path, "rb") as archive:
        for item in read_archive(archive, batch_size=BATCH_SIZE):
            info = plan.collections.get(getattr(item, "namespace", ""))
            if info is None:
                continue
            if isinstance(item, Batch):
                documents = [RawBSONDocument(raw) for raw in item.documents]
                client[info.db][info.collection].insert_many(documents)  # ordered: raises unless all went in
                inserted[item.namespace] += len(documents)
            elif isinstance(item, End):
                if inserted[item.namespace] != item.count:
                    raise BackupError(f"{item.namespace}: {inserted[item.namespace]} documents inserted, "
                                      f"the archive has {item.count}")
                results[item.namespace] = (item.count, create_indexes(client, info))
    return results


def _check_target(client: MongoClient, plan: RestorePlan, uri: str, args: argparse.Namespace) -> bool:
    """Refuse to mix the archive into non-empty collections; with --drop, have the drop confirmed."""
    full = occupied(client, plan)
    if full and not args.drop:
        complain(f"refusing to restore into collections that hold documents: {', '.join(full)} at {redact(uri)}; "
                 "add --drop to replace them with the archive's")
        return False
    return not full or confirmed(full, uri, args.yes)


def cmd_restore(args: argparse.Namespace) -> int:
    """``huisheng restore FILE``: check the archive whole, then restore it into the database."""
    from kernel.mongo_archive import verify_archive

    settings = load_settings()
    path = Path(args.file)
    if not path.is_file():
        raise BackupError(f"no archive at {path}")
    say(f"checking {path} ...")
    with open(path, "rb") as archive:
        prelude, counts = verify_archive(archive)
    header = prelude.header
    say(f"intact: {_plural(len(counts), 'collection')}, {_documents(sum(counts.values()))}; "
        f"made by {header.tool_version} from a server {header.server_version}")
    plan = plan_restore(prelude)
    for namespace, reason in plan.skipped:
        say(f"  skipping {namespace}: {reason}")
    with database(settings, args.to_uri, args.embedded) as (uri, source):
        return _restore_into(uri, source, path, plan, args)


def _restore_into(uri: str, source: str, path: Path, plan: RestorePlan, args: argparse.Namespace) -> int:
    if source == "the running platform":
        say("note: the platform is running and its services see the restored data at once; "
            "for a quiet restore stop it (`huisheng down`) and pass --embedded")
    client = connect(uri)
    try:
        if not _check_target(client, plan, uri, args):
            return 1
        say(f"restoring into {redact(uri)} ({source}) ...")
        results = restore(client, path, plan, args.drop)
    finally:
        client.close()
    for namespace, (documents, indexes) in results.items():
        say(f"  {namespace}: {_documents(documents)}, {_plural(indexes, 'index', 'indexes')}")
    say(f"restored {_plural(len(results), 'collection')}, {_documents(sum(d for d, _ in results.values()))}")
    return 0


# --------------------------------------------------------------------------- command line


def _plural(count: int, noun: str, plural: str = "") -> str:
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def _documents(count: int) -> str:
    return _plural(count, "document")


def _size(size: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} bytes"


def _reporting(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn the errors a user can act on into one line on stderr and exit code 1."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        from pymongo.errors import PyMongoError

        from kernel.mongo_archive import ArchiveError

        try:
            return command(args)
        except ArchiveError as exc:
            complain(f"the archive is not usable: {exc}")
        except (BackupError, infra.InfraError, OSError) as exc:
            complain(str(exc))
        except PyMongoError as exc:
            complain(f"database error: {exc}")
        return 1

    return run


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``backup`` and ``restore`` to the ``huisheng`` sub-commands."""
    backup_parser = commands.add_parser("backup", help="dump every service's database into one mongodump archive")
    backup_parser.add_argument("--out", metavar="FILE",
                               help="where to write (default $HUISHENG_HOME/backups/huisheng-<UTC time>.archive)")
    backup_parser.add_argument("--gzip", action="store_true", help="compress the archive (as mongodump --gzip)")
    backup_parser.add_argument("--service", action="append", choices=SERVICES, metavar="NAME",
                               help=f"only this service's database; repeatable (one of: {', '.join(SERVICES)})")
    _add_embedded(backup_parser)
    backup_parser.set_defaults(func=_reporting(cmd_backup))

    restore_parser = commands.add_parser("restore", help="restore a mongodump archive (checked whole first)")
    restore_parser.add_argument("file", metavar="FILE", help="the archive, plain or gzip-compressed")
    restore_parser.add_argument("--drop", action="store_true",
                                help="replace target collections that hold documents (refused otherwise)")
    restore_parser.add_argument("--yes", action="store_true", help="do not ask before --drop deletes documents")
    restore_parser.add_argument("--to-uri", metavar="URI", help="restore into this database instead of MONGO_URI")
    _add_embedded(restore_parser)
    restore_parser.set_defaults(func=_reporting(cmd_restore))


def _add_embedded(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--embedded", action="store_true",
                        help="with no MONGO_URI and no running platform, start HUISHENG_HOME's embedded database "
                             "for this command")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``backup`` or ``restore`` alone: ``python -m kernel.cli.backup backup ...``."""
    parser = argparse.ArgumentParser(prog="huisheng", description="Back up and restore the platform's databases.")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

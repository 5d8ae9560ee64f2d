"""``huisheng backup`` and ``huisheng restore``: a thin layer over the database's own tools.

    huisheng backup [--out FILE] [--service NAME ...] [--embedded]
    huisheng restore FILE [--drop] [--to-uri URI]

SecantusDB's ``secantusAdmin.backupArchive`` and ``secantus-restore-archive`` (offline) for the embedded database,
``mongodump``/``mongorestore`` for MongoDB: docs/operations.md ("Backups") tells which runs when, and why a backup
is consistent.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from kernel.cli import infra, say
from kernel.cli.infra import redact
from kernel.cli.main import DB_NAME, database_spec, load_settings
from kernel.cli.supervisor import log_path, resolve_uri, running_problem, terminate
from kernel.config import Settings
from kernel.platform import PROCESSES

SERVICES: tuple[str, ...] = tuple(p.name for p in PROCESSES if not p.is_gateway)  # the gateway owns no database
DATABASE_START_TIMEOUT = 30.0
NO_DATABASE = "no database to use: set MONGO_URI, start the platform (`huisheng up -d`), pass --to-uri (restore)"
EMBEDDED_HINT = ", or pass --embedded to start the embedded database of HUISHENG_HOME for this command"


class BackupError(infra.InfraError):
    """A backup or restore cannot go on; the message says why and what to do (``huisheng`` prints it, exit 1)."""


@contextmanager
def embedded_database(settings: Settings) -> Iterator[str]:
    """Run the SecantusDB of ``$HUISHENG_HOME/data/mongo`` (on SECANTUS_PORT) while the block runs."""
    spec = database_spec(settings)
    host, port = spec.port() or ("127.0.0.1", settings.secantus_port)
    if infra.find_secantusd() is None:
        raise BackupError("secantusd-py not found: `pip install secantusdb==0.7.0b3`, or set MONGO_URI")
    if infra.port_in_use(host, port):
        raise BackupError(f"port {port} (SECANTUS_PORT) is in use: set MONGO_URI to the database running there")
    (settings.home / "data" / "mongo").mkdir(parents=True, exist_ok=True)
    say(f"starting the embedded database of {settings.home} on port {port} ...")
    with open(log_path(settings.home, DB_NAME), "ab") as log:
        process = subprocess.Popen(list(spec.argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + DATABASE_START_TIMEOUT
        while not infra.mongo_ping(spec.address, 1.0):
            if process.poll() is not None or time.monotonic() > deadline:
                raise BackupError(f"the embedded database did not start; see {log_path(settings.home, DB_NAME)}")
            time.sleep(0.1)
        yield spec.address
    finally:
        terminate("the embedded database", process.pid, lambda: process.poll() is None, 20, say)
        say("stopped the embedded database")


def is_secantus(uri: str) -> bool:
    """Whether the server at ``uri`` is SecantusDB (its ``buildInfo`` says so), not MongoDB."""
    return "secantusVersion" in infra.admin_command(uri, "buildInfo")


def run_tool(argv: list[str], uri: str) -> None:
    """Run ``mongodump`` or ``mongorestore``, its output passed through; raise if it is missing or fails."""
    if shutil.which(argv[0]) is None:
        raise BackupError(f"{argv[0]} not found: install MongoDB's database tools "
                          "(https://www.mongodb.com/docs/database-tools/), see docs/operations.md")
    say(" ".join(argv).replace(uri, redact(uri)))
    done = subprocess.run(argv, check=False)
    if done.returncode != 0:
        raise BackupError(f"{argv[0]} failed with exit status {done.returncode} against {redact(uri)}")


def default_backup_path(home: Path, secantus: bool) -> Path:
    """``$HUISHENG_HOME/backups/huisheng-<UTC time>.secantus.tar.gz`` (or ``.archive.gz`` for mongodump)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path(home) / "backups" / f"huisheng-{stamp}.{'secantus.tar.gz' if secantus else 'archive.gz'}"


def backup(uri: str, settings: Settings, out: str | None, services: Sequence[str]) -> Path:
    """Back up the database at ``uri`` with its own tool; the archive's path."""
    secantus = is_secantus(uri)
    path = Path(out).absolute() if out else default_backup_path(settings.home, secantus)
    path.parent.mkdir(parents=True, exist_ok=True)
    if secantus and services:
        raise BackupError("a SecantusDB backup holds every service's database: drop --service")
    if secantus and not infra.is_local(urlsplit(uri).hostname or ""):
        raise BackupError(f"{redact(uri)} is a SecantusDB on another host: it writes the archive on its own disk; "
                          "run `huisheng backup` there")
    if secantus:
        infra.admin_command(uri, "secantusAdmin.backupArchive", outputPath=str(path))
    elif len(services) > 1:
        raise BackupError("mongodump takes one --service (one database) or none (all of them)")
    else:
        run_tool(["mongodump", f"--uri={uri}", f"--archive={path}", "--gzip",
                  *(f"--db={settings.database_name(name)}" for name in services)], uri)
    return path


def cmd_backup(args: argparse.Namespace) -> int:
    """``huisheng backup``: back up the platform's database with the database's own tool."""
    settings = load_settings()
    uri, source = resolve_uri(settings)
    if uri:
        say(f"backing up {redact(uri)} ({source}) ...")
        path = backup(uri, settings, args.out, args.service)
    elif args.embedded:
        with embedded_database(settings) as uri:
            path = backup(uri, settings, args.out, args.service)
    else:
        raise BackupError(NO_DATABASE + EMBEDDED_HINT)
    say(f"backup written to {path} ({path.stat().st_size:,} bytes)")
    return 0


def restore_embedded(settings: Settings, archive: Path) -> Path:
    """Extract a SecantusDB archive into ``$HUISHENG_HOME/data/mongo`` (the platform stopped); the old data kept."""
    problem = running_problem(settings.home)
    if problem:
        raise BackupError(f"stop the platform first (`huisheng down`): {problem}")
    if infra.port_in_use("127.0.0.1", settings.secantus_port):
        raise BackupError(f"a database listens on SECANTUS_PORT {settings.secantus_port}: stop it first")
    data = settings.home / "data" / "mongo"
    staging = data.with_name("mongo.restoring")
    shutil.rmtree(staging, ignore_errors=True)
    tool = Path(sys.executable).with_name("secantus-restore-archive")
    done = subprocess.run([str(tool), "--archive", str(archive), "--target-dir", str(staging)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise BackupError(f"secantus-restore-archive refused {archive}: {(done.stderr or done.stdout).strip()}")
    if data.exists() and any(data.iterdir()):
        kept = data.with_name(f"mongo.before-restore-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
        data.rename(kept)
        say(f"the previous data directory is kept as {kept}")
    elif data.exists():
        data.rmdir()
    staging.rename(data)
    return data


def cmd_restore(args: argparse.Namespace) -> int:
    """``huisheng restore FILE``: a SecantusDB archive into the embedded database, else mongorestore."""
    settings = load_settings()
    archive = Path(args.file).absolute()
    if not archive.is_file():
        raise BackupError(f"{archive}: no such file")
    if tarfile.is_tarfile(archive):
        data = restore_embedded(settings, archive)
        say(f"restored {archive.name} into {data}; start the platform with `huisheng up -d`")
        return 0
    uri, source = resolve_uri(settings, args.to_uri)
    if not uri:
        raise BackupError(NO_DATABASE)
    say(f"restoring {archive.name} into {redact(uri)} ({source}) ...")
    run_tool(["mongorestore", f"--uri={uri}", f"--archive={archive}", "--gzip", *(["--drop"] if args.drop else [])],
             uri)
    say("restored")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``backup`` and ``restore`` to the ``huisheng`` command line."""
    made = commands.add_parser("backup", help="back up every service's database with the database's own tool")
    made.add_argument("--out", metavar="FILE", help="where to write (default $HUISHENG_HOME/backups/huisheng-...)")
    made.add_argument("--service", action="append", default=[], choices=SERVICES,
                      help="only this service's database (MongoDB only)")
    made.add_argument("--embedded", action="store_true",
                      help="with no MONGO_URI and no running platform, start HUISHENG_HOME's database for the backup")
    made.set_defaults(func=cmd_backup)

    restored = commands.add_parser("restore", help="restore a backup (SecantusDB archive or mongodump archive)")
    restored.add_argument("file", metavar="FILE")
    restored.add_argument("--drop", action="store_true", help="mongorestore: drop each collection before restoring it")
    restored.add_argument("--to-uri", metavar="URI", help="mongorestore into this MongoDB instead of MONGO_URI")
    restored.set_defaults(func=cmd_restore)

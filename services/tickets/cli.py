"""``huisheng reports rebuild``: the reports' read model anew from the tickets collection.

    huisheng reports rebuild [--community C] [--uri URI]

The counters behind ``GET /api/v1/reports/rates`` and the weekly review's repeat problems
(services/tickets/readmodel.py) are kept from the events as tickets change. This command
computes them again from every ticket, straight on the tickets service's database (``--uri``,
else ``MONGO_URI``, else the database of the running ``huisheng up``): after a restore, after
the rules of what counts changed, or when they are in doubt. Run it with the tickets service
stopped or quiet (an event applied while it runs may count twice; running it again repairs that).

Exit codes: 0 done; 2 no database to use.

>>> parser = argparse.ArgumentParser(prog="huisheng")
>>> register(parser.add_subparsers(dest="command"))
>>> parser.parse_args(["reports", "rebuild", "--community", "xingqiao"]).community
'xingqiao'
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from kernel.cli import complain, say
from kernel.cli.main import load_settings

EXIT_NO_DATABASE = 2
SERVICE = "tickets"


def rebuild(uri: str, database: str, community: str | None = None, quiet: bool = False) -> dict:
    """Rebuild the read model in ``database`` at ``uri``; what was written (tickets, counters, seconds)."""
    from pymongo import MongoClient  # lazy: the services' modules import pymongo and nameko

    from kernel.envelope import utcnow
    from services.tickets.catalogue import Catalogue
    from services.tickets.readmodel import ReadModel, clock_response_due
    from services.tickets.sla import CALENDARS_CACHE

    # kernel.mongo.connect's options, but a socket that waits: the database reads every ticket before it
    # answers the rebuild's first batch (minutes at a million tickets on the embedded database).
    client = MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=10_000, connectTimeoutMS=10_000,
                         socketTimeoutMS=None, appname="huisheng-reports-rebuild")
    try:
        db = client[database]
        catalogue = Catalogue.load()
        calendar = CALENDARS_CACHE.get(db, catalogue)
        progress = None if quiet else (lambda done: say(f"{done} tickets read"))
        return ReadModel(db, clock_response_due(catalogue, calendar)).rebuild(utcnow(), community, progress=progress)
    finally:
        client.close()


def cmd_rebuild(args: argparse.Namespace) -> int:
    from kernel.cli.supervisor import resolve_uri

    settings = load_settings()
    uri, _ = resolve_uri(settings, args.uri)
    if not uri:
        complain("no database to use: set MONGO_URI, start the platform (`huisheng up -d`) or pass --uri")
        return EXIT_NO_DATABASE
    result = rebuild(uri, settings.database_name(SERVICE), args.community, quiet=args.json)
    if args.json:
        print(json.dumps(result))
    else:
        say(f"rebuilt the reports from {result['tickets']} tickets: {result['counters']} counters "
            f"in {result['seconds']} s")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``reports rebuild`` to the ``huisheng`` command line."""
    reports = commands.add_parser("reports", help="the reports' read model (日清周议, the three rates)")
    actions = reports.add_subparsers(dest="reports_command", required=True, metavar="ACTION")
    made = actions.add_parser("rebuild", help="recompute the reports' counters from the tickets")
    made.add_argument("--community", help="only this community's (default: all)")
    made.add_argument("--uri", metavar="URI", help="the database (default MONGO_URI, else the running platform's)")
    made.add_argument("--json", action="store_true", help="print the result as JSON, no progress")
    made.set_defaults(func=cmd_rebuild)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m services.tickets.cli rebuild ...`` (the same as ``huisheng reports rebuild``)."""
    parser = argparse.ArgumentParser(prog="huisheng")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

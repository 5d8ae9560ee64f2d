"""``huisheng apikey``, ``huisheng admin`` and ``huisheng directory``: the register of the running platform.

    huisheng apikey create --name NAME [--community C ...]   print a new API key, once, as the last word
    huisheng apikey list [--json]                           names, communities, creation, last use; never a key
    huisheng apikey revoke NAME
    huisheng admin create --name NAME --phone PHONE [--community C]
    huisheng directory import places|residents FILE [--community C]

Each command is one RPC to the ``directory`` service of the platform that ``AMQP_URI``
reaches (docs/directory.md names the RPCs), through nameko's standalone
``ClusterRpcProxy``, with a deadline: the request expires in the broker when its
deadline passes, so a directory that comes back later never acts on a request
nobody waits for (an API key nobody saw, an admin nobody asked for any more).

Exit codes: 0 done; 1 the directory refused (its error is shown) or an import
rejected rows (nothing was imported); 2 bad usage (a file that cannot be read, no
password); 3 the platform is not running (no broker, or no directory consuming
its queue); 4 the directory consumes its queue but did not answer in time.

The admin's password is never a command-line argument (it would be in the shell's
history and in every ``ps``): it comes from ``HUISHENG_ADMIN_PASSWORD``, or is asked
for on the terminal.

nameko is imported inside the functions that call: building the parser (every
``huisheng`` command does) must not load it.

>>> last_word("name: feed\\nkey (shown once): hsk_0a1b2c3d_x\\n")
'hsk_0a1b2c3d_x'
>>> format_keys([{"name": "open311", "key_id": "0a1b2c3d", "communities": ["xingqiao"],
...               "created_at": "2026-12-06T08:00:00+00:00", "last_used_at": None, "revoked_at": None}])
... # doctest: +NORMALIZE_WHITESPACE
'NAME     KEY ID    COMMUNITIES  CREATED                    LAST USED  REVOKED\\nopen311  0a1b2c3d  xingqiao
 2026-12-06T08:00:00+00:00  never      -'
"""

from __future__ import annotations

import argparse
import base64
import getpass
import json
import os
import sys
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kernel.cli import complain, table
from kernel.cli.infra import redact
from kernel.cli.main import EXIT_NOT_RUNNING, load_settings
from kernel.config import Settings

SERVICE = "directory"
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_NO_ANSWER = 4
IMPORT_TIMEOUT = 120.0  # an import validates every row before it writes: give a large register time
MAX_IMPORT_BYTES = 20 * 1024 * 1024  # one AMQP message carries the whole file
PASSWORD_ENV = "HUISHENG_ADMIN_PASSWORD"
IMPORT_KINDS = ("places", "residents")


class CommandFailed(Exception):
    """A command cannot go on; ``code`` is its exit code and the message says why."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- calling the directory


def actor() -> str:
    """Who asks, as the directory records it: the operator's login on this machine."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for our uid (a bare container)
        user = str(os.getuid())
    return f"cli:{user}"


def call_directory(settings: Settings, method: str, *args: Any, timeout: float | None = None) -> Any:
    """``directory.<method>(*args)`` on the running platform; :class:`CommandFailed` with a clear message if not.

    A :class:`kernel.errors.PlatformError` raised by the directory comes back as itself (the
    classes are registered with nameko), so callers can show its code, message and details.
    """
    from kernel.cli.infra import broker_answers  # lazy: kombu

    deadline = timeout if timeout is not None else settings.rpc_timeout
    if not broker_answers(settings.amqp_uri):
        raise CommandFailed(
            f"no RabbitMQ broker answers at {redact(settings.amqp_uri)}: is the platform running? "
            "(`huisheng status`; start it with `huisheng up -d`, or set AMQP_URI to its broker)",
            EXIT_NOT_RUNNING,
        )
    quiet_imports()
    from nameko.exceptions import RpcTimeout, UnknownService
    from nameko.standalone.rpc import ClusterRpcProxy

    import kernel.errors  # noqa: F401 - registers the platform's errors, so they arrive as themselves
    from kernel.patches import expiring_service_proxy

    config = {"AMQP_URI": settings.amqp_uri, "serializer": "json"}
    # The correlation id ties the directory's log lines of this command together.
    context = {"correlation_id": f"cli-{uuid.uuid4().hex}"}
    cluster = ClusterRpcProxy(config, context_data=context, timeout=deadline)
    proxy = cluster.start()
    try:
        # ClusterProxy makes its ServiceProxy without publish options; ours expires in the broker
        # at the deadline (seconds), as the platform's own RpcClient does.
        directory = expiring_service_proxy(proxy, SERVICE, deadline)
        return getattr(directory, method)(*args)
    except UnknownService as error:
        raise CommandFailed(not_running(settings), EXIT_NOT_RUNNING) from error
    except RpcTimeout as error:
        from kernel.rpc import has_listeners  # lazy: eventlet, nameko

        if has_listeners(settings.amqp_uri, SERVICE) is False:
            raise CommandFailed(not_running(settings), EXIT_NOT_RUNNING) from error
        raise CommandFailed(
            f"the directory did not answer {method} within {deadline:g} s (it runs, but is slow or stuck: "
            "see its log); nothing is known about the outcome",
            EXIT_NO_ANSWER,
        ) from error
    finally:
        cluster.stop()


def quiet_imports() -> None:
    """Keep the warnings of importing eventlet (its deprecation; dnspython's use of DSA) off the user's terminal.

    They concern our dependencies, not the command, and would bury its one line of output on stderr.
    """
    warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")
    warnings.filterwarnings("ignore", message=r"DSA is deprecated", module=r"dns\.")


def not_running(settings: Settings) -> str:
    return (
        f"the directory service is not running on the broker at {redact(settings.amqp_uri)} "
        "(`huisheng status`; start the platform with `huisheng up -d`)"
    )


def refused(error: Exception) -> CommandFailed:
    """A :class:`CommandFailed` for an error the directory raised, with its code and details."""
    from kernel.errors import PlatformError

    if isinstance(error, PlatformError):
        text = f"the directory refused: {error.message} ({error.code})"
        if error.details:
            text += "\n" + json.dumps(error.details, ensure_ascii=False, indent=2)
        return CommandFailed(text, EXIT_REFUSED)
    return CommandFailed(f"the directory failed: {error}", EXIT_REFUSED)


def ask(settings: Settings, method: str, *args: Any, timeout: float | None = None) -> Any:
    """:func:`call_directory`, with the directory's own errors turned into :class:`CommandFailed`."""
    quiet_imports()
    from nameko.exceptions import RemoteError

    from kernel.errors import PlatformError

    try:
        return call_directory(settings, method, *args, timeout=timeout)
    except (PlatformError, RemoteError) as error:
        raise refused(error) from error


# --------------------------------------------------------------------------- output


def last_word(text: str) -> str:
    """The last whitespace-separated word of ``text`` (how scripts take the key from ``apikey create``)."""
    return text.split()[-1]


def format_keys(items: Sequence[Mapping]) -> str:
    """The table of ``apikey list``: never a key, only what identifies one."""
    rows = [("NAME", "KEY ID", "COMMUNITIES", "CREATED", "LAST USED", "REVOKED")]
    for item in items:
        rows.append((
            str(item.get("name")),
            str(item.get("key_id") or "-"),
            ",".join(item.get("communities") or []) or "-",
            str(item.get("created_at") or "-"),
            str(item.get("last_used_at") or "never"),
            str(item.get("revoked_at") or "-"),
        ))
    return "\n".join(table(rows))


def format_import(kind: str, report: Mapping) -> str:
    """The report of an import: what was imported, or every rejected row and why (nothing was imported)."""
    rejected = report.get("rejected") or []
    if not rejected:
        return f"imported {report.get('imported', 0)} {kind}"
    lines = [f"{len(rejected)} row(s) rejected; nothing was imported:"]
    for entry in rejected:
        errors = entry.get("errors")
        if isinstance(errors, Mapping):
            reasons = "; ".join(f"{column}: {_reason(why)}" for column, why in errors.items())
        else:
            reasons = _reason(errors)
        lines.append(f"  row {entry.get('row')}: {reasons}")
    return "\n".join(lines)


def _reason(why: Any) -> str:
    if isinstance(why, list | tuple):
        return ", ".join(str(part) for part in why)
    return str(why)


def mask_phone(phone: str) -> str:
    """A phone fit for a terminal's scrollback: 138****5678."""
    from kernel.logging import mask_value  # lazy: structlog

    return mask_value("phone", phone)


# --------------------------------------------------------------------------- commands


def cmd_apikey_create(args: argparse.Namespace) -> int:
    settings = load_settings()
    communities = list(dict.fromkeys(args.community or [settings.community]))
    created = ask(settings, "create_api_key", args.name, communities, actor(), timeout=args.timeout)
    complain("warning: the key is shown only this once and cannot be recovered; store it now")
    print(f"name: {created.get('name')}")
    print(f"key id: {created.get('key_id')}")
    print(f"communities: {','.join(created.get('communities') or communities)}")
    print(f"created: {created.get('created_at')}")
    print(f"key: {created['key']}", flush=True)  # the last word of stdout, for scripts
    return 0


def cmd_apikey_list(args: argparse.Namespace) -> int:
    settings = load_settings()
    answer = ask(settings, "list_api_keys", timeout=args.timeout)
    items = answer.get("items", []) if isinstance(answer, Mapping) else list(answer)
    items = [{k: v for k, v in item.items() if k != "key"} for item in items]  # never a key, whatever came
    if args.json:
        print(json.dumps({"items": items}, ensure_ascii=False, indent=2))
    elif items:
        print(format_keys(items))
    else:
        print("no API keys")
    return 0


def cmd_apikey_revoke(args: argparse.Namespace) -> int:
    settings = load_settings()
    record = ask(settings, "revoke_api_key", args.name, timeout=args.timeout)
    print(f"revoked API key {record.get('name', args.name)} (key id {record.get('key_id')}) "
          f"at {record.get('revoked_at')}")
    return 0


def admin_password(environ: Mapping[str, str], prompt: Callable[[str], str] = getpass.getpass,
                   interactive: bool | None = None) -> str:
    """The first admin's password: ``HUISHENG_ADMIN_PASSWORD``, else asked twice on the terminal."""
    given = environ.get(PASSWORD_ENV)
    if given:
        return given
    if interactive is None:
        interactive = sys.stdin.isatty()
    if not interactive:
        raise CommandFailed(f"no password: set {PASSWORD_ENV}, or run on a terminal to be asked for it", EXIT_USAGE)
    first = prompt("password of the new admin: ")
    if not first:
        raise CommandFailed("no password given", EXIT_USAGE)
    if prompt("the same password again: ") != first:
        raise CommandFailed("the two passwords differ; nothing was created", EXIT_USAGE)
    return first


def cmd_admin_create(args: argparse.Namespace) -> int:
    settings = load_settings()
    community = args.community or settings.community
    password = admin_password(os.environ)
    data = {"name": args.name, "phone": args.phone, "roles": ["admin"], "password": password}
    staff = ask(settings, "create_staff", community, data, timeout=args.timeout)
    phone = staff.get("phone") or args.phone
    print(f"created admin {staff.get('name', args.name)} ({staff.get('id')}) in community {community}, "
          f"phone {mask_phone(str(phone))}")
    print("they sign in with their phone, this password and a code sent by SMS (POST /api/v1/auth/code)")
    return 0


def read_import_file(path: str) -> bytes:
    file = Path(path)
    try:
        size = file.stat().st_size
        if size > MAX_IMPORT_BYTES:
            raise CommandFailed(f"{path} is {size} bytes; at most {MAX_IMPORT_BYTES} can be imported at once",
                                EXIT_USAGE)
        return file.read_bytes()
    except OSError as error:
        raise CommandFailed(f"cannot read {path}: {error.strerror or error}", EXIT_USAGE) from error


def cmd_directory_import(args: argparse.Namespace) -> int:
    settings = load_settings()
    community = args.community or settings.community
    content = base64.b64encode(read_import_file(args.file)).decode("ascii")
    method = f"import_{args.kind}"
    report = ask(settings, method, community, Path(args.file).name, content, actor(), timeout=args.timeout)
    print(format_import(args.kind, report))
    return EXIT_REFUSED if report.get("rejected") else 0


def _reporting(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run a command; a :class:`CommandFailed` becomes its message on stderr and its exit code."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except CommandFailed as failure:
            complain(str(failure))
            return failure.code

    run.__doc__ = command.__doc__
    return run


# --------------------------------------------------------------------------- parsing


def _timeout(parser: argparse.ArgumentParser, default: float | None, what: str) -> None:
    parser.add_argument("--timeout", type=float, default=default, metavar="SECONDS", help=what)


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``apikey``, ``admin`` and ``directory`` to the ``huisheng`` command line."""
    rpc_default = "seconds to wait for the directory (default RPC_TIMEOUT)"

    apikey = commands.add_parser("apikey", help="create, list and revoke integrators' API keys")
    keys = apikey.add_subparsers(dest="apikey_command", required=True, metavar="ACTION")
    create = keys.add_parser("create", help="create a key and print it once, as the last word of the output")
    create.add_argument("--name", required=True, help="who the key is for (unique), e.g. open311-hotline")
    create.add_argument("--community", action="append", metavar="C",
                        help="a community the key may act in (repeatable; default HUISHENG_COMMUNITY)")
    create.set_defaults(func=_reporting(cmd_apikey_create))
    listing = keys.add_parser("list", help="names, communities, creation and last use (never a key)")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=_reporting(cmd_apikey_list))
    revoke = keys.add_parser("revoke", help="revoke a key: refused by every gateway within a second")
    revoke.add_argument("name", metavar="NAME")
    revoke.set_defaults(func=_reporting(cmd_apikey_revoke))

    admin = commands.add_parser("admin", help="create an admin account (the first one, typically)")
    admins = admin.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    make = admins.add_parser(
        "create", help=f"create an admin; the password comes from {PASSWORD_ENV} or is asked for",
    )
    make.add_argument("--name", required=True, help="the admin's name")
    make.add_argument("--phone", required=True, help="their mobile number: sign-in codes are sent there")
    make.add_argument("--community", help="their community (default HUISHENG_COMMUNITY)")
    make.set_defaults(func=_reporting(cmd_admin_create))

    directory = commands.add_parser("directory", help="the register: import places and residents")
    actions = directory.add_subparsers(dest="directory_command", required=True, metavar="ACTION")
    importing = actions.add_parser(
        "import", help="import places or residents from CSV or .xlsx: all rows or none; exit 1 on rejected rows",
    )
    importing.add_argument("kind", choices=IMPORT_KINDS, help="what the file holds")
    importing.add_argument("file", metavar="FILE", help="a .csv or .xlsx file (docs/directory.md)")
    importing.add_argument("--community", help="the community to import into (default HUISHENG_COMMUNITY)")
    _timeout(importing, IMPORT_TIMEOUT, f"seconds to wait for the import (default {IMPORT_TIMEOUT:g})")
    importing.set_defaults(func=_reporting(cmd_directory_import))

    for parser in (create, listing, revoke, make):
        _timeout(parser, None, rpc_default)

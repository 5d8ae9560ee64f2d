"""huisheng ops: the platform's queues, dead letters and outboxes, for operators and monitoring.

    huisheng ops queues [--json]                  every queue: depth, consumers, rates, dead letters
    huisheng ops dlq show QUEUE [--limit N]       dead-lettered messages with their error and attempts
    huisheng ops dlq replay QUEUE [--limit N] [--yes]   back to the consumer's queue, after a fix
    huisheng ops dlq purge QUEUE [--yes]          drop them (on a terminal: type the queue name)
    huisheng ops outbox [--json] [--max-lag S]    unpublished outbox events and relay lag per service

QUEUE names a subscription (notify.ticket_events), its queue (huisheng.notify.ticket_events)
or its dead-letter queue (huisheng.notify.ticket_events.dlq).

Exit codes, so that `queues` and `outbox` can serve as monitoring checks:
0 healthy (or done); 1 a problem was found (a dead letter, an unrouted event, a queue without
consumer, a missing queue, an outbox lagging, a replay cut short); 2 the check could not be made
(broker, management API or database unreachable, unknown queue, no confirmation).

>>> resolve_subscription("huisheng.notify.ticket_events.dlq").name
'notify.ticket_events'
>>> replay_headers({"x-huisheng-attempt": 3, "x-huisheng-error": "boom"})
{'x-huisheng-attempt': 1, 'x-huisheng-replayed': 1}
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

from kernel.cli import complain, table
from kernel.cli.supervisor import resolve_uri
from kernel.config import Settings

if TYPE_CHECKING:
    from kernel.cli.management import ManagementClient
    from kernel.events import Subscription

# Every command builds this module's parser: kombu, requests, pymongo and the catalogue are imported lazily.

PLATFORM_PREFIX = "huisheng."  # every queue kernel.topology declares
RPC_PREFIX = "rpc-"  # nameko's service queues: rpc-<service>
EXIT_OK, EXIT_PROBLEM, EXIT_CANNOT_CHECK = 0, 1, 2
DEFAULT_SHOW_LIMIT = 20
DEFAULT_MAX_LAG = 10.0
TRACEBACK_LINES = 6
BROKER_TIMEOUT = 5.0


class OpsError(Exception):
    """A reason the command cannot do its job; printed, exit code 2."""


def _int(value: Any, default: int | None = None) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def emit(args: argparse.Namespace, report: Mapping, human: Callable[[Mapping], str]) -> int:
    """Print a report as JSON (``--json``) or as ``human`` text; 0 if it says healthy (or says nothing), else 1."""
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else human(report))
    return EXIT_OK if report.get("healthy", True) else EXIT_PROBLEM


def resolve_subscription(name: str) -> Subscription:
    """The subscription a QUEUE argument names: the subscription itself, its queue or its DLQ."""
    from kernel.events import SUBSCRIPTIONS

    for sub in SUBSCRIPTIONS:
        if name in (sub.name, sub.queue, sub.dead_letter_queue):
            return sub
    raise OpsError(f"no subscription has a queue called {name!r}; known: {', '.join(s.name for s in SUBSCRIPTIONS)} "
                   "(or their queues huisheng.<subscription>[.dlq])")


# --------------------------------------------------------------------------- ops queues


def platform_queues(retry_delays_ms: Iterable[int]) -> dict[str, str]:
    """Every queue the topology declares, in its order, with its kind (consumer, dlq, retry, unrouted)."""
    from kernel.events import SUBSCRIPTIONS
    from kernel.topology import UNROUTED_QUEUE, consumer_queues

    kinds = {UNROUTED_QUEUE.name: "unrouted"}
    for sub in SUBSCRIPTIONS:
        kinds.update({sub.queue: "consumer", sub.dead_letter_queue: "dlq"})
    return {queue.name: kinds.get(queue.name, "retry") for queue in consumer_queues(retry_delays_ms)}


@dataclass
class QueueRow:
    """One queue as ``ops queues`` reports it."""

    name: str
    kind: str  # consumer, dlq, retry, unrouted, rpc, other
    exists: bool = True
    messages: int = 0
    ready: int = 0
    unacked: int = 0
    consumers: int = 0
    publish_rate: float | None = None  # messages/s in, as the management API last sampled
    deliver_rate: float | None = None  # messages/s out (deliveries and gets)
    dead_letters: int | None = None  # a consumer queue's .dlq depth
    problem: str | None = None


def _row(name: str, kind: str, info: Mapping | None, live: Mapping[str, tuple[int, int]] | None) -> QueueRow:
    """A row from the management API's queue object, with live ready/consumer counts when we have them."""
    if info is None:
        return QueueRow(name, kind, exists=False)
    stats = info.get("message_stats") or {}

    def rate(key: str) -> float | None:
        details = stats.get(f"{key}_details")
        return float(details["rate"]) if isinstance(details, Mapping) and "rate" in details else None

    ready, unacked = _int(info.get("messages_ready"), 0), _int(info.get("messages_unacknowledged"), 0)
    ready, consumers = (live or {}).get(name) or (ready, _int(info.get("consumers"), 0))
    return QueueRow(name, kind, messages=ready + unacked, ready=ready, unacked=unacked, consumers=consumers,
                    publish_rate=rate("publish"), deliver_rate=rate("deliver_get"))


def problem_of(row: QueueRow) -> str | None:
    """What is wrong with a queue, or None. Retry tiers and DLQs are meant to have no consumer."""
    if not row.exists:
        return ("missing: the topology is not declared, or RETRY_DELAYS_MS differs from the services'"
                if row.kind == "retry" else "missing: the topology is not declared (`huisheng up` declares it)")
    if row.kind == "dlq" and row.messages:
        return f"{row.messages} dead-lettered: `huisheng ops dlq show {row.name}`"
    if row.kind == "unrouted" and row.messages:
        return f"{row.messages} event(s) of a type no queue is bound to"
    if row.kind in ("consumer", "rpc") and row.consumers == 0:
        service = row.name[len(RPC_PREFIX):] if row.kind == "rpc" else row.name.split(".")[1]
        return f"no consumer: is {service} running?"
    return None


def is_ours(name: str) -> bool:
    """A queue of the platform: declared by its topology (huisheng.*) or a nameko service's (rpc-*)."""
    return name.startswith((PLATFORM_PREFIX, RPC_PREFIX))


def queue_rows(expected: Mapping[str, str], listed: Iterable[Mapping],
               live: Mapping[str, tuple[int, int]] | None = None) -> list[QueueRow]:
    """The rows of ``ops queues``: the topology's queues in order, then other huisheng.* and rpc-* queues.

    ``listed`` is the management API's list of queues; ``live`` maps a queue to its (ready, consumers) read
    over AMQP just now, which wins over the API's sampled counts. Other huisheng.* queues (a retry tier of
    another RETRY_DELAYS_MS) are shown, not judged.
    """
    by_name = {queue["name"]: queue for queue in listed}
    extra = {name: "rpc" if name.startswith(RPC_PREFIX) else "retry" if name.startswith(f"{PLATFORM_PREFIX}retry.")
             else "other" for name in sorted(by_name) if is_ours(name) and name not in expected}
    rows = [_row(name, kind, by_name.get(name), live) for name, kind in {**expected, **extra}.items()]
    index = {row.name: row for row in rows}
    for row in rows:
        dlq = index.get(f"{row.name}.dlq")
        if row.kind == "consumer" and dlq is not None and dlq.exists:
            row.dead_letters = dlq.messages
        row.problem = problem_of(row)
    return rows


def format_queues(report: Mapping) -> str:
    """The human table of ``ops queues``."""
    head = [("QUEUE", "KIND", "MSGS", "READY", "UNACKED", "CONSUMERS", "IN/s", "OUT/s", "DLQ", "STATUS")]
    for row in report["queues"]:
        cells = [row["name"], row["kind"], *["-"] * 7]
        if row["exists"]:
            rates = ["-" if rate is None else f"{rate:.1f}" for rate in (row["publish_rate"], row["deliver_rate"])]
            cells[2:] = [*map(str, (row["messages"], row["ready"], row["unacked"], row["consumers"])), *rates,
                         "-" if row["dead_letters"] is None else str(row["dead_letters"])]
        head.append((*cells, row["problem"] or "ok"))
    counts = "live over AMQP" if report["live_counts"] else "from the management API (up to its 5 s sample old)"
    problems = sum(1 for row in report["queues"] if row["problem"])
    return "\n".join([f"vhost {report['vhost']!r} at {report['management_api']}; ready/consumer counts {counts}",
                      *table(head, right=range(2, 9)), f"{problems} problem(s)" if problems else "healthy"])


def management_client(settings: Settings) -> ManagementClient:
    """The management API client of ``settings`` (RABBITMQ_MANAGEMENT_URL, else derived from AMQP_URI)."""
    from kernel.cli.management import ManagementClient, endpoint_for

    return ManagementClient(endpoint_for(settings.amqp_uri, settings.management_url))


def live_counts(settings: Settings, names: Iterable[str]) -> dict[str, tuple[int, int]] | None:
    """(ready, consumers) of each queue, read over AMQP now; None if the broker does not answer.

    The management API's counters are sampled every 5 s (its statistics interval): right after a replay or a
    purge they would still show the old depth.
    """
    from amqp.exceptions import ChannelError

    counts: dict[str, tuple[int, int]] = {}
    try:
        with broker(settings) as connection:
            channel = connection.channel()
            for name in names:
                try:
                    counts[name] = channel.queue_declare(name, passive=True)[1:]
                except ChannelError:  # deleted since it was listed; the broker closed the channel
                    channel = connection.channel()
    except OpsError:
        return None
    return counts


def queues_report(settings: Settings) -> dict:
    """Everything ``ops queues`` shows, as a JSON-able dict (raises ManagementError)."""
    client = management_client(settings)
    listed = client.queues()
    live = live_counts(settings, [q["name"] for q in listed if is_ours(q["name"])])
    rows = queue_rows(platform_queues(settings.retry_delays_ms), listed, live)
    return {"vhost": client.endpoint.vhost, "management_api": client.endpoint.api, "live_counts": live is not None,
            "healthy": not any(row.problem for row in rows),
            "problems": [f"{row.name}: {row.problem}" for row in rows if row.problem],
            "queues": [asdict(row) for row in rows]}


def cmd_queues(args: argparse.Namespace, settings: Settings) -> int:
    """``ops queues [--json]``: 0 healthy, 1 a problem, 2 the management API did not answer."""
    from kernel.cli.management import ManagementError

    try:
        return emit(args, queues_report(settings), format_queues)
    except ManagementError as error:
        if args.json:
            print(json.dumps({"healthy": False, "error": str(error)}, indent=2))
        complain(str(error))
        return EXIT_CANNOT_CHECK


# --------------------------------------------------------------------------- dead letters: reading


def _when(value: Any) -> str | None:
    """A header time (ISO text, or epoch seconds from the management API) as ISO text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC).isoformat()
    return str(value) if value else None


def _decode_body(message: Mapping) -> tuple[dict | None, str | None]:
    """The envelope in a message of the management API's get, or None and why not."""
    payload = message.get("payload", "")
    if message.get("payload_encoding") != "string":
        return None, f"undecodable body ({message.get('payload_bytes', '?')} bytes, not UTF-8)"
    try:
        body = json.loads(payload)
    except ValueError:
        return None, f"undecodable body (not JSON): {payload[:80]!r}"
    return (body, None) if isinstance(body, dict) else (None, f"not an event envelope: {payload[:80]!r}")


def describe_dead_letter(message: Mapping) -> dict:
    """What an operator needs of one dead-lettered message (from the management API's get).

    Addresses, names and mobile numbers are masked as in the logs.
    """
    from kernel.logging import mask_text, mask_value
    from kernel.topology import ATTEMPT, ERROR, FAILED_AT, REPLAYED, TRACEBACK

    properties = message.get("properties") or {}
    headers = properties.get("headers") or {}
    body, problem = _decode_body(message)
    body = body or {}
    # The latest x-death entry: how the broker itself dead-lettered a message (rejected, expired ...).
    deaths = headers.get("x-death")
    death = deaths[0] if isinstance(deaths, list) and deaths and isinstance(deaths[0], Mapping) else {}
    error = headers.get(ERROR)
    if error is None and death:
        error = f"dead-lettered by the broker: {death.get('reason')} from {death.get('queue')}"
    return {
        "event_id": body.get("event_id") or properties.get("message_id"),
        "type": body.get("type"),
        "version": body.get("version"),
        "community": body.get("community"),
        "correlation_id": body.get("correlation_id") or properties.get("correlation_id"),
        "attempts": _int(headers.get(ATTEMPT)),
        "replayed": _int(headers.get(REPLAYED), 0),
        "error": mask_text(str(error)) if error is not None else problem or "no reason recorded",
        "failed_at": _when(headers.get(FAILED_AT)) or _when(death.get("time")),
        "traceback": mask_text(str(headers.get(TRACEBACK) or "")),
        "payload": mask_value("payload", body["payload"]) if "payload" in body else None,
        "body_problem": problem,
    }


def format_dead_letters(queue: str, total: int, entries: list[dict], traceback_lines: int = TRACEBACK_LINES) -> str:
    """The human listing of ``dlq show``: one block per message."""
    lines = [f"{queue}: {total} message(s)" + (f", showing the first {len(entries)}" if len(entries) < total else "")]
    for number, entry in enumerate(entries, 1):
        kind = f"{entry['type']} v{entry['version']}" if entry["type"] else "(no envelope)"
        lines.append(f"#{number}  event {entry['event_id'] or '-'}  {kind}  community {entry['community'] or '-'}  "
                     f"correlation {entry['correlation_id'] or '-'}")
        replayed = f"  (replayed {entry['replayed']} time(s) before)" if entry["replayed"] else ""
        lines.append(f"    attempts {entry['attempts'] or '-'}  failed at {entry['failed_at'] or '-'}{replayed}")
        lines.append(f"    error: {entry['error']}")
        # The innermost frames say where the handler raised; the outer ones are nameko's worker. Blank lines
        # and Python 3.11's ^^^ markers say nothing.
        trace = [line for line in entry["traceback"].splitlines() if line.strip(" ^~")]
        trace = trace[-traceback_lines:] if traceback_lines > 0 else []
        if trace:
            lines += [f"    traceback (last {len(trace)} lines):", *(f"      {line}" for line in trace)]
        if entry["payload"] is not None:
            text = json.dumps(entry["payload"], ensure_ascii=False)
            lines.append(f"    payload: {text if len(text) <= 300 else text[:297] + '...'}")
    return "\n".join(lines)


def cmd_dlq_show(args: argparse.Namespace, settings: Settings) -> int:
    """``ops dlq show QUEUE``: the messages stay in the queue, in their order."""
    sub = resolve_subscription(args.queue)
    messages = management_client(settings).peek(sub.dead_letter_queue, args.limit)
    # Each message of a get carries how many remain after it: the last one tells the total.
    total = len(messages) + (_int(messages[-1].get("message_count"), 0) if messages else 0)
    report = {"queue": sub.dead_letter_queue, "subscription": sub.name, "total": total,
              "messages": [describe_dead_letter(message) for message in messages]}
    return emit(args, report, lambda r: format_dead_letters(r["queue"], total, r["messages"], args.traceback_lines))


# --------------------------------------------------------------------------- dead letters: replay, purge


def replay_headers(headers: Mapping | None) -> dict:
    """The headers of a replayed copy: a fresh first attempt, one more replay, no stale failure."""
    from kernel.topology import ATTEMPT, ERROR, FAILED_AT, REPLAYED, TRACEBACK

    kept = {key: value for key, value in (headers or {}).items() if key not in (ERROR, TRACEBACK, FAILED_AT)}
    return {**kept, ATTEMPT: 1, REPLAYED: _int(kept.get(REPLAYED), 0) + 1}


@contextmanager
def broker(settings: Settings, *, confirms: bool = False) -> Iterator[Any]:
    """A connection to the broker (publisher confirms on every channel if asked); errors become OpsError."""
    from amqp.exceptions import AMQPError
    from kombu import Connection
    from kombu.exceptions import KombuError

    from kernel.cli.infra import redact

    options = {"confirm_publish": True} if confirms else {}
    try:
        with Connection(settings.amqp_uri, connect_timeout=BROKER_TIMEOUT, transport_options=options) as connection:
            connection.ensure_connection(max_retries=1)
            yield connection
    except (OSError, AMQPError, KombuError) as error:
        raise OpsError(f"broker {redact(settings.amqp_uri)}: {type(error).__name__}: {error}") from error


def queue_depth(channel: Any, name: str) -> int:
    """Messages ready in ``name`` now; OpsError if the queue does not exist."""
    from amqp.exceptions import NotFound

    try:
        return channel.queue_declare(name, passive=True)[1]
    except NotFound as error:
        raise OpsError(f"queue {name} does not exist: the topology is not declared "
                       "(`huisheng up` declares it)") from error


def confirmed(question: str, *, yes: bool, expected: str = "y", stdin: IO[str] | None = None) -> bool:
    """True with ``--yes``; else only on a terminal, when the answer typed is ``expected``."""
    if yes:
        return True
    stream = stdin or sys.stdin
    if not stream.isatty():
        complain("not a terminal to confirm on: pass --yes to go ahead")
        return False
    print(f"{question} ", end="", flush=True)
    answer = stream.readline().strip()
    if answer == expected or (expected == "y" and answer.lower() == "yes"):
        return True
    complain("not confirmed; nothing done")
    return False


def cmd_dlq_replay(args: argparse.Namespace, settings: Settings) -> int:
    """``ops dlq replay QUEUE``: 0 all moved, 1 stopped partway, 2 nothing could be done.

    Each DLQ message is acked only after the broker confirmed its copy (the connection has publisher
    confirms), so a failure leaves at most a duplicate, which consumers dedupe.
    """
    import amqp

    from kernel.topology import REQUEUE

    sub = resolve_subscription(args.queue)
    moved, error = 0, None
    with broker(settings, confirms=True) as connection:
        channel = connection.channel()
        waiting = queue_depth(channel, sub.dead_letter_queue)
        queue_depth(channel, sub.queue)  # the copies need somewhere to go
        # Only what is there now: a handler still failing would otherwise feed the loop forever.
        count = waiting if args.limit is None else min(args.limit, waiting)
        if count == 0:
            print(f"nothing to replay: {sub.dead_letter_queue} is empty")
            return EXIT_OK
        if not confirmed(f"replay {count} message(s) from {sub.dead_letter_queue} to {sub.queue}? [y/N]",
                         yes=args.yes):
            return EXIT_CANNOT_CHECK
        try:
            while moved < count and (message := channel.basic_get(sub.dead_letter_queue, no_ack=False)) is not None:
                properties = {**message.properties, "delivery_mode": 2,
                              "application_headers": replay_headers(message.properties.get("application_headers"))}
                # mandatory: if the copy cannot be routed the broker returns it and this raises, so the
                # original stays unacked and goes back to the DLQ when the channel closes.
                channel.basic_publish(amqp.Message(message.body, **properties), exchange=REQUEUE.name,
                                      routing_key=sub.queue, mandatory=True)
                channel.basic_ack(message.delivery_tag)
                moved += 1
        except (OSError, amqp.exceptions.AMQPError) as failure:
            error = failure
    print(f"replayed {moved} message(s) from {sub.dead_letter_queue} to {sub.queue}")
    if error is not None:
        complain(f"replay stopped after {moved} of {count}: {type(error).__name__}: {error}; "
                 "the rest is still in the dead-letter queue")
        return EXIT_PROBLEM
    return EXIT_OK


def cmd_dlq_purge(args: argparse.Namespace, settings: Settings) -> int:
    """``ops dlq purge QUEUE``: on a terminal, type the queue's name to confirm; else --yes."""
    sub = resolve_subscription(args.queue)
    with broker(settings) as connection:
        channel = connection.channel()
        waiting = queue_depth(channel, sub.dead_letter_queue)
        if waiting == 0:
            print(f"nothing to purge: {sub.dead_letter_queue} is empty")
            return EXIT_OK
        question = f"purge {waiting} message(s) from {sub.dead_letter_queue}? type its name to confirm:"
        if not confirmed(question, yes=args.yes, expected=sub.dead_letter_queue):
            return EXIT_CANNOT_CHECK
        purged = channel.queue_purge(sub.dead_letter_queue)
    print(f"purged {purged} message(s) from {sub.dead_letter_queue}")
    return EXIT_OK


# --------------------------------------------------------------------------- outbox


def backlog(documents: Iterable[Mapping], now: datetime) -> dict:
    """Pending documents, events and the age of the oldest event (the relay's lag) of one collection.

    ``documents`` carry only their unpublished events (:func:`kernel.ledger.unpublished`). An event ages from
    its own ``_staged``: the document's ``_outbox_since`` (its latest staging) is only a stamp-less entry's.
    """
    from kernel.ledger import OUTBOX, SINCE, STAGED

    count = events = 0
    oldest: datetime | None = None
    for document in documents:
        entries = document.get(OUTBOX) or []
        count, events = count + 1, events + len(entries)
        for moment in [entry.get(STAGED) or document.get(SINCE) for entry in entries] or [document.get(SINCE)]:
            if isinstance(moment, datetime):
                moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
                oldest = moment if oldest is None else min(oldest, moment)
    lag = max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
    return {"documents": count, "events": events, "oldest": oldest.isoformat() if oldest else None,
            "lag_seconds": round(lag, 3)}


def outbox_collections(database: Any) -> list[str]:
    """The outbox collections of a service's database: those with the relay's ``outbox_since`` index.

    The ledger and the checkpoints live beside them but are bookkeeping, never outboxes: left out by name,
    whatever indexes they carry.
    """
    from kernel.ledger import CHECKPOINTS, LEDGER, OUTBOX_INDEX

    return [name for name in sorted(database.list_collection_names())
            if name not in (LEDGER, CHECKPOINTS) and OUTBOX_INDEX in database[name].index_information()]


def outbox_report(settings: Settings, max_lag: float) -> dict:
    """Every outbox collection of every service's database (MONGO_URI's, else the running platform's), with what
    :func:`kernel.ledger.unpublished` (the relay's own question) finds unconfirmed; OpsError if there is no
    database, or it does not answer."""
    import warnings

    with warnings.catch_warnings():  # kernel.mongo imports nameko, hence eventlet and its warning
        warnings.simplefilter("ignore")
        from kernel.mongo import connect
    from pymongo.errors import PyMongoError

    from kernel.cli.infra import redact
    from kernel.ledger import unpublished
    from kernel.platform import PROCESSES

    uri, _ = resolve_uri(settings)
    if not uri:
        raise OpsError(f"no database to look at: set MONGO_URI, or start the platform with `huisheng up` "
                       f"(nothing runs with HUISHENG_HOME={settings.home})")
    client, now, rows = connect(uri, timeout_ms=3000), datetime.now(UTC), []
    try:
        for process in (p for p in PROCESSES if not p.is_gateway):  # the gateway owns no database
            database = client[settings.database_name(process.name)]
            for name in outbox_collections(database) or [None]:  # a service without an outbox still gets its line
                found = backlog(unpublished(database, name) if name else (), now)
                rows.append({"service": process.name, "database": database.name, "collection": name, **found,
                             "lagging": found["lag_seconds"] > max_lag})
    except PyMongoError as error:
        reason = str(error).split(", Timeout: ")[0][:300]  # pymongo appends its whole topology description
        raise OpsError(f"database {redact(uri)}: {type(error).__name__}: {reason}") from error
    finally:
        client.close()
    return {"max_lag_seconds": max_lag, "healthy": not any(row["lagging"] for row in rows), "outboxes": rows}


def format_outbox(report: Mapping) -> str:
    """The human table of ``ops outbox``."""
    head = [("SERVICE", "DATABASE", "COLLECTION", "DOCS", "EVENTS", "LAG s", "OLDEST", "STATUS")]
    head += [(row["service"], row["database"], row["collection"] or "(no outbox)", str(row["documents"]),
              str(row["events"]), f"{row['lag_seconds']:.1f}", row["oldest"] or "-",
              f"LAGGING (> {report['max_lag_seconds']:g} s)" if row["lagging"] else "ok") for row in report["outboxes"]]
    lagging = sum(1 for row in report["outboxes"] if row["lagging"])
    return "\n".join([*table(head, right=range(3, 6)), f"{lagging} lagging" if lagging else "healthy"])


def cmd_outbox(args: argparse.Namespace, settings: Settings) -> int:
    """``ops outbox``: 0 every relay keeps up, 1 one lags more than --max-lag, 2 no database."""
    return emit(args, outbox_report(settings, args.max_lag), format_outbox)


# --------------------------------------------------------------------------- parsing


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def register(commands: Any) -> None:
    """Add ``ops`` to the ``huisheng`` command line (``commands`` is its sub-parsers); each of its sub-commands
    sets ``ops_func(args, settings) -> exit code``, which :func:`dispatch` runs."""
    parser = commands.add_parser("ops", help="queues, dead letters and outboxes (exit 1 on a problem)",
                                 description=(__doc__ or "").split("\n\n>>>")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(func=dispatch)
    sub = parser.add_subparsers(dest="ops_command", required=True, metavar="OPS_COMMAND")

    queues = sub.add_parser("queues", help="every queue: depth, consumers, rates, dead letters (exit 1 on a problem)")
    queues.add_argument("--json", action="store_true", help="machine-readable output")
    queues.set_defaults(ops_func=cmd_queues)

    dlq = sub.add_parser("dlq", help="show, replay or purge a dead-letter queue")
    actions = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    queue_help = "subscription (notify.ticket_events), its queue or its .dlq queue"

    show = actions.add_parser("show", help="dead-lettered messages with their error and attempts (kept in place)")
    show.add_argument("queue", metavar="QUEUE", help=queue_help)
    show.add_argument("--limit", type=_positive, default=DEFAULT_SHOW_LIMIT, metavar="N",
                      help=f"at most N (default {DEFAULT_SHOW_LIMIT})")
    show.add_argument("--traceback-lines", type=int, default=TRACEBACK_LINES, metavar="N",
                      help=f"last lines of each traceback to show (default {TRACEBACK_LINES})")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(ops_func=cmd_dlq_show)

    replay = actions.add_parser("replay", help="move dead letters back to their consumer's queue, after a fix")
    replay.add_argument("queue", metavar="QUEUE", help=queue_help)
    replay.add_argument("--limit", type=_positive, default=None, metavar="N", help="at most N (default: all there now)")
    replay.add_argument("--yes", action="store_true", help="do not ask (required without a terminal)")
    replay.set_defaults(ops_func=cmd_dlq_replay)

    purge = actions.add_parser("purge", help="delete every message of a dead-letter queue")
    purge.add_argument("queue", metavar="QUEUE", help=queue_help)
    purge.add_argument("--yes", action="store_true", help="do not ask (required without a terminal)")
    purge.set_defaults(ops_func=cmd_dlq_purge)

    outbox = sub.add_parser("outbox", help="unpublished outbox events and relay lag per service (exit 1 if lagging)")
    outbox.add_argument("--max-lag", type=float, default=DEFAULT_MAX_LAG, metavar="SECONDS",
                        help=f"oldest unpublished event allowed (default {DEFAULT_MAX_LAG:g})")
    outbox.add_argument("--json", action="store_true", help="machine-readable output")
    outbox.set_defaults(ops_func=cmd_outbox)


def dispatch(args: argparse.Namespace, settings: Settings | None = None) -> int:
    """Run the parsed ``ops`` command; a reason it cannot run is printed and gives exit code 2."""
    from kernel.cli.management import ManagementError

    try:
        return args.ops_func(args, settings or Settings.from_env())
    except (OpsError, ManagementError) as error:
        complain(str(error))
        return EXIT_CANNOT_CHECK

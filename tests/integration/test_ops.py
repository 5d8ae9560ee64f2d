"""``huisheng ops`` against the real broker (a vhost per test) and SecantusDB."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from kombu import Connection, Producer

from kernel.cli import ops
from kernel.cli.main import build_parser
from kernel.config import Settings
from kernel.envelope import Envelope, utcnow
from kernel.events import SUBSCRIPTIONS, subscription
from kernel.handlers import ATTEMPT, ERROR, TRACEBACK, handles
from kernel.ledger import CHECKPOINTS, OUTBOX, SINCE, STAGED, STREAM_POINT, ensure_ledger_indexes, record_published
from kernel.mongo import Mongo
from kernel.outbox import ensure_indexes, with_events
from kernel.platform import PROCESSES
from kernel.topology import DEAD, REPLAYED, REQUEUE
from tests.conftest import ROOT, free_port
from tests.support.broker import depth, drain, publish_event
from tests.support.events import ticket_received

SUB = subscription("notify.ticket_events")
pytestmark = pytest.mark.integration


def ignoring(service: str, *, but: tuple[str, ...] = ()) -> type:
    """A base for a fake ``service`` that consumes (and ignores) each of its subscriptions except ``but``.

    A healthy platform has a consumer on every queue: the fakes follow the catalogue, so a new
    subscription does not turn into a "no consumer" problem in these reports.
    """
    def a_handler_that_ignores(name: str):
        def ignore(self, event: Envelope) -> None:
            pass
        return handles(name)(ignore)  # one function per subscription: an entrypoint marks its function

    attributes = {"name": service, "db": Mongo()}
    for sub in SUBSCRIPTIONS:
        if sub.service == service and sub.name not in but:
            attributes["on_" + sub.name.replace(".", "_")] = a_handler_that_ignores(sub.name)
    return type(f"Ignoring{service.title()}", (), attributes)


class Broken(ignoring("notify", but=(SUB.name,))):
    """notify with a poison bug: every ticket event makes its handler raise."""

    @handles("notify.ticket_events")
    def on_ticket_event(self, event: Envelope):
        raise RuntimeError("the SMS gateway is down")


class Fixed(ignoring("notify", but=(SUB.name,))):
    """notify after the fix: the same subscription, a handler that works."""

    @handles("notify.ticket_events")
    def on_ticket_event(self, event: Envelope):
        self.db.echoes.insert_one({"_id": event.event_id})


# Every other service's subscriptions, consumed so that every queue has a consumer.
OTHERS = [ignoring(name) for name in sorted({sub.service for sub in SUBSCRIPTIONS} - {"notify"})]


def run_ops(capsys, settings: Settings, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = ops.dispatch(build_parser().parse_args(["ops", *argv]), settings)
    out, err = capsys.readouterr()
    return code, out, err


def queues_json(capsys, settings: Settings) -> tuple[int, dict]:
    code, out, _ = run_ops(capsys, settings, "queues", "--json")
    report = json.loads(out)
    return code, {row["name"]: row for row in report["queues"]} | {"problems": report["problems"]}


def dead_letter(amqp_uri: str, wire: dict, attempt: int = 3) -> None:
    """Put a message in the DLQ the way the reliable handler does after its last attempt."""
    with Connection(amqp_uri) as connection:
        connection.default_channel.confirm_select()
        Producer(connection.default_channel).publish(
            wire, exchange=DEAD, routing_key=SUB.queue, serializer="json", delivery_mode=2,
            message_id=wire["event_id"], correlation_id=wire["correlation_id"],
            headers={ATTEMPT: attempt, ERROR: "RuntimeError: boom", TRACEBACK: "Traceback ...\nRuntimeError: boom"})


def test_a_poison_message_is_reported_shown_and_replayed_once_the_handler_is_fixed(
        container_factory, service_config, settings, mongo_client, wait_until, capsys):
    for other in OTHERS:
        container_factory(other, service_config).start()
    broken = container_factory(Broken, service_config)
    broken.start()
    event = ticket_received()

    publish_event(settings.amqp_uri, event.to_wire())
    wait_until(lambda: depth(settings.amqp_uri, SUB.dead_letter_queue) == 1)

    code, rows = queues_json(capsys, settings)
    assert code == ops.EXIT_PROBLEM
    assert rows[SUB.dead_letter_queue]["messages"] == 1 and rows[SUB.queue]["dead_letters"] == 1
    assert rows["problems"] == [f"{SUB.dead_letter_queue}: 1 dead-lettered: "
                                f"`huisheng ops dlq show {SUB.dead_letter_queue}`"]

    # The same check as an operator runs it: the real command line, configured by AMQP_URI only.
    env = {k: v for k, v in os.environ.items() if k != "RABBITMQ_MANAGEMENT_URL"}
    env.update(AMQP_URI=settings.amqp_uri, RETRY_DELAYS_MS=",".join(map(str, settings.retry_delays_ms)))
    cli = subprocess.run([sys.executable, "-m", "kernel.cli.main", "ops", "queues"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=30)
    transcript = [cli.stdout]
    assert cli.returncode == 1, cli.stderr
    assert re.search(rf"^{re.escape(SUB.dead_letter_queue)} +dlq ", cli.stdout, re.M), cli.stdout
    assert "1 dead-lettered" in cli.stdout
    assert cli.stdout.splitlines()[-1] == "1 problem(s)"

    code, out, _ = run_ops(capsys, settings, "dlq", "show", "notify.ticket_events")
    transcript.append(out)
    assert code == 0
    assert f"event {event.event_id}  ticket.received v{event.version}  community xingqiao" in out
    assert f"attempts {len(settings.retry_delays_ms) + 1}" in out
    assert "error: RuntimeError: the SMS gateway is down" in out
    assert "in on_ticket_event" in out  # the traceback's innermost frame
    assert "3号楼2单元401" not in out  # the address is masked
    assert depth(settings.amqp_uri, SUB.dead_letter_queue) == 1  # showing consumed nothing

    broken.stop()
    container_factory(Fixed, service_config).start()
    code, out, _ = run_ops(capsys, settings, "dlq", "replay", SUB.dead_letter_queue, "--yes")
    assert code == 0
    assert out.strip() == f"replayed 1 message(s) from {SUB.dead_letter_queue} to {SUB.queue}"

    echoes = mongo_client[settings.database_name("notify")].echoes
    wait_until(lambda: echoes.count_documents({"_id": event.event_id}) == 1)
    assert depth(settings.amqp_uri, SUB.dead_letter_queue) == 0
    wait_until(lambda: queues_json(capsys, settings)[0] == ops.EXIT_OK)
    transcript.append(run_ops(capsys, settings, "queues")[1])
    print("\n".join(transcript))  # what an operator sees, for `pytest -rP`


def test_replay_resets_the_attempts_and_counts_replays(settings, capsys):
    event = ticket_received()
    dead_letter(settings.amqp_uri, event.to_wire())

    code, out, _ = run_ops(capsys, settings, "dlq", "replay", "notify.ticket_events", "--yes")

    assert code == 0 and "replayed 1 message(s)" in out
    [(body, headers)] = drain(settings.amqp_uri, SUB.queue)
    assert body == event.to_wire()
    assert headers[ATTEMPT] == 1 and headers[REPLAYED] == 1
    assert ERROR not in headers and TRACEBACK not in headers
    assert depth(settings.amqp_uri, SUB.dead_letter_queue) == 0


def test_a_copy_the_broker_cannot_route_leaves_the_dead_letter_in_place(settings, capsys):
    dead_letter(settings.amqp_uri, ticket_received().to_wire())
    with Connection(settings.amqp_uri) as connection:  # break the way back: no route from huisheng.requeue
        connection.default_channel.queue_unbind(SUB.queue, REQUEUE.name, SUB.queue)

    code, out, err = run_ops(capsys, settings, "dlq", "replay", "notify.ticket_events", "--yes")

    assert code == ops.EXIT_PROBLEM
    assert "replayed 0 message(s)" in out and "NO_ROUTE" in err and "still in the dead-letter queue" in err
    assert depth(settings.amqp_uri, SUB.dead_letter_queue) == 1


def test_purge_asks_for_yes_without_a_terminal_then_empties_the_dlq(settings, capsys, monkeypatch):
    for _ in range(2):
        dead_letter(settings.amqp_uri, ticket_received().to_wire())
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))

    code, _, err = run_ops(capsys, settings, "dlq", "purge", "notify.ticket_events")
    assert code == ops.EXIT_CANNOT_CHECK and "pass --yes" in err
    assert depth(settings.amqp_uri, SUB.dead_letter_queue) == 2

    code, out, _ = run_ops(capsys, settings, "dlq", "purge", "notify.ticket_events", "--yes")
    assert code == 0 and out.strip() == f"purged 2 message(s) from {SUB.dead_letter_queue}"
    assert depth(settings.amqp_uri, SUB.dead_letter_queue) == 0


def staged_at(ticket_id: str, now: datetime, *ages: float) -> dict:
    """A ticket with one event per age, each stamped ``now - age``, as the relay's repository wrote it."""
    document = with_events({"_id": ticket_id, "state": "received"}, [ticket_received(ticket_id) for _ in ages])
    for event, age in zip(document[OUTBOX], ages, strict=True):
        event[STAGED] = now - timedelta(seconds=age)
    return {**document, SINCE: max(event[STAGED] for event in document[OUTBOX])}  # the latest staging


def ids(document: dict, *positions: int) -> list[str]:
    return [document[OUTBOX][position]["event_id"] for position in positions]


def test_outbox_reports_what_neither_the_ledger_nor_the_checkpoint_accounts_for(settings, mongo_client, capsys):
    db = mongo_client[settings.database_name("tickets")]
    ensure_indexes(db.tickets)  # as the service's Outbox does at start: the ledger's collections come with it
    now = utcnow()
    # A resume point whose token is gone (the oplog was cut short): only the fallback scan's bound is left.
    db[CHECKPOINTS].insert_one({"_id": STREAM_POINT, "since": now - timedelta(seconds=60)})
    before = staged_at("T-before", now, 90)  # staged before the checkpoint: published
    confirmed = staged_at("T-confirmed", now, 45, 40)  # after it, both in the ledger
    waiting = staged_at("T-waiting", now, 50, 30)  # the older one in the ledger, the newer one not
    db.tickets.insert_many([before, confirmed, waiting])
    record_published(db, ids(confirmed, 0, 1))
    record_published(db, ids(waiting, 0))
    # The volunteers' database has the ledger's collections but no outbox: still "no outbox".
    volunteers = mongo_client[settings.database_name("volunteers")]
    ensure_ledger_indexes(volunteers)
    volunteers[CHECKPOINTS].insert_one({"_id": STREAM_POINT, "since": now})

    code, out, _ = run_ops(capsys, settings, "outbox", "--json")
    report = json.loads(out)
    assert code == ops.EXIT_PROBLEM and not report["healthy"]
    rows = {(row["service"], row["collection"]): row for row in report["outboxes"]}
    others = [p.name for p in PROCESSES if not p.is_gateway and p.name != "tickets"]  # notify, volunteers, directory
    assert len(rows) == len(report["outboxes"]) == 1 + len(others)  # one row each: the ledger's are none
    assert set(rows) == {("tickets", "tickets")} | {(name, None) for name in others}
    row = rows["tickets", "tickets"]
    assert (row["documents"], row["events"], row["lagging"]) == (1, 1, True)
    # from T-waiting's unpublished event (30 s), not its published one (50 s) nor anything older
    assert 30 <= row["lag_seconds"] < 40

    code, out, _ = run_ops(capsys, settings, "outbox", "--max-lag", "60")
    print(out)
    assert code == 0 and out.splitlines()[-1] == "healthy"

    record_published(db, ids(waiting, 1))  # the broker confirms the last one: the documents keep their events
    code, out, _ = run_ops(capsys, settings, "outbox", "--json", "--max-lag", "0")
    row = next(row for row in json.loads(out)["outboxes"] if row["collection"] == "tickets")
    assert code == 0 and (row["documents"], row["events"], row["oldest"], row["lag_seconds"]) == (0, 0, None, 0.0)
    assert db.tickets.count_documents({SINCE: {"$exists": True}}) == 3


def test_an_unreachable_management_api_exits_2(settings, capsys):
    unreachable = replace(settings, management_url=f"http://127.0.0.1:{free_port()}")
    code, out, err = run_ops(capsys, unreachable, "queues", "--json")
    assert code == ops.EXIT_CANNOT_CHECK
    assert json.loads(out)["healthy"] is False and "unreachable" in err

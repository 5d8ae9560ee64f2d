"""``huisheng ops`` without a broker or a database: verdicts, tables, names, headers."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
import requests

from kernel.cli import management, ops
from kernel.cli.infra import redact
from kernel.cli.main import build_parser, main
from kernel.cli.management import Endpoint, ManagementClient, ManagementError, endpoint_for
from kernel.cli.supervisor import process_identity, resolve_uri, write_state
from kernel.config import Settings
from kernel.events import SUBSCRIPTIONS
from kernel.ledger import CHECKPOINTS, LEDGER, OUTBOX, OUTBOX_INDEX, SINCE, STAGED
from kernel.topology import ATTEMPT, ERROR, FAILED_AT, REPLAYED, TRACEBACK
from tests.conftest import ROOT

RETRY = (200, 1000)
NOTIFY = "huisheng.notify.ticket_events"
TICKETS = "huisheng.tickets.volunteer_events"
OTHER_SUBSCRIPTIONS = tuple(sub for sub in SUBSCRIPTIONS if sub.queue not in (NOTIFY, TICKETS))


def api_queue(name: str, messages: int = 0, consumers: int = 0, unacked: int = 0, rates: bool = True) -> dict:
    """A queue as GET /api/queues/{vhost} returns it (the fields ops reads, and some it does not)."""
    queue = {
        "name": name, "vhost": "/", "durable": True, "state": "running",
        "messages": messages + unacked, "messages_ready": messages, "messages_unacknowledged": unacked,
        "consumers": consumers,
    }
    if rates:
        queue["message_stats"] = {"publish": 10, "publish_details": {"rate": 2.5},
                                  "deliver_get": 9, "deliver_get_details": {"rate": 2.0}}
    return queue


def healthy_sample() -> list[dict]:
    return [
        api_queue("huisheng.unrouted"),
        api_queue("huisheng.retry.200ms", rates=False),
        api_queue("huisheng.retry.1000ms", rates=False),
        api_queue(NOTIFY, consumers=2),
        api_queue(f"{NOTIFY}.dlq"),
        api_queue(TICKETS, consumers=1),
        api_queue(f"{TICKETS}.dlq"),
        # Every other subscription of the catalogue (the directory's erasures ...), consumed and empty.
        *[queue for sub in OTHER_SUBSCRIPTIONS for queue in (api_queue(sub.queue, consumers=1),
                                                             api_queue(sub.dead_letter_queue))],
        api_queue("rpc-tickets", consumers=1),
        api_queue("rpc.reply-gateway-1f2e", consumers=1),  # a reply queue: not the platform's to judge
        api_queue("evt-someone-else", messages=5),
    ]


def rows_of(sample, live=None):
    return ops.queue_rows(ops.platform_queues(RETRY), sample, live)


def by_name(rows):
    return {row.name: row for row in rows}


# --------------------------------------------------------------------------- kept equal to the kernel


def test_outbox_names_are_those_of_the_relay():
    """ops reads outboxes through kernel.ledger: the relay must stage and index under the same names."""
    from kernel import ledger, outbox

    created = []

    class Collection:
        def __init__(self, database, name):
            self.database, self.name = database, name

        def create_index(self, key, **options):
            key = key if isinstance(key, str) else key[0][0]
            created.append((self.name, key, options.get("name")))

        def index_information(self):
            return {}

    class Database:
        def __getitem__(self, name):
            return Collection(self, name)

    outbox.ensure_indexes(Database()["tickets"])
    assert (outbox.OUTBOX, outbox.SINCE) == (ledger.OUTBOX, ledger.SINCE)
    assert ("tickets", ledger.SINCE, ledger.OUTBOX_INDEX) in created
    # the ledger's collections sit beside the outbox, and nothing marks them as outboxes
    assert not [name for name, _, index in created if name in (LEDGER, CHECKPOINTS) and index == OUTBOX_INDEX]


def test_the_parser_loads_no_pymongo_and_the_ledger_no_eventlet():
    # In a fresh interpreter: this one has eventlet already (conftest monkey-patches). Every CLI command
    # builds the ops parser, so kernel.ledger (and pymongo with it) is imported only by ``ops outbox``.
    script = ("import sys, kernel.cli.main as m; m.build_parser(); before = 'pymongo' in sys.modules; "
              "import kernel.ledger; print(before, sorted({'eventlet', 'nameko'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False []"


# --------------------------------------------------------------------------- queue names


@pytest.mark.parametrize("name", ["notify.ticket_events", NOTIFY, f"{NOTIFY}.dlq"])
def test_a_queue_argument_may_name_the_subscription_its_queue_or_its_dlq(name):
    sub = ops.resolve_subscription(name)
    assert (sub.name, sub.queue, sub.dead_letter_queue) == ("notify.ticket_events", NOTIFY, f"{NOTIFY}.dlq")


def test_an_unknown_queue_names_the_known_subscriptions():
    with pytest.raises(ops.OpsError, match="notify.ticket_events, tickets.erasures"):
        ops.resolve_subscription("huisheng.retry.200ms")


def test_platform_queues_are_the_topology_s_with_their_kinds():
    kinds = ops.platform_queues(RETRY)
    assert kinds == {
        "huisheng.unrouted": "unrouted",
        "huisheng.retry.200ms": "retry",
        "huisheng.retry.1000ms": "retry",
        NOTIFY: "consumer",
        f"{NOTIFY}.dlq": "dlq",
        TICKETS: "consumer",
        f"{TICKETS}.dlq": "dlq",
        **{sub.queue: "consumer" for sub in OTHER_SUBSCRIPTIONS},
        **{sub.dead_letter_queue: "dlq" for sub in OTHER_SUBSCRIPTIONS},
    }


# --------------------------------------------------------------------------- the verdict


def test_a_healthy_sample_exits_0_and_retry_tiers_and_dlqs_need_no_consumer():
    rows = rows_of(healthy_sample())
    assert [row.problem for row in rows] == [None] * len(rows)
    assert [row.name for row in rows][-1] == "rpc-tickets"
    assert "evt-someone-else" not in by_name(rows) and "rpc.reply-gateway-1f2e" not in by_name(rows)


def test_a_dead_letter_is_a_problem_shown_on_the_dlq_and_beside_its_consumer_queue():
    sample = healthy_sample()
    sample[4] = api_queue(f"{NOTIFY}.dlq", messages=1)
    rows = by_name(rows_of(sample))
    assert any(row.problem for row in rows.values())
    assert rows[f"{NOTIFY}.dlq"].problem == f"1 dead-lettered: `huisheng ops dlq show {NOTIFY}.dlq`"
    assert rows[NOTIFY].dead_letters == 1 and rows[NOTIFY].problem is None
    assert rows[TICKETS].dead_letters == 0


def test_an_unrouted_event_is_a_problem():
    sample = healthy_sample()
    sample[0] = api_queue("huisheng.unrouted", messages=3)
    rows = by_name(rows_of(sample))
    assert rows["huisheng.unrouted"].problem == "3 event(s) of a type no queue is bound to"


@pytest.mark.parametrize("name,service", [(NOTIFY, "notify"), ("rpc-tickets", "tickets")])
def test_a_consumer_or_rpc_queue_without_consumer_is_a_problem(name, service):
    sample = [api_queue(name, consumers=0) if q["name"] == name else q for q in healthy_sample()]
    rows = by_name(rows_of(sample))
    assert rows[name].problem == f"no consumer: is {service} running?"
    assert any(row.problem for row in rows.values())


def test_a_missing_topology_queue_is_a_problem():
    sample = [queue for queue in healthy_sample() if queue["name"] != f"{TICKETS}.dlq"]
    rows = by_name(rows_of(sample))
    assert not rows[f"{TICKETS}.dlq"].exists
    assert "topology is not declared" in rows[f"{TICKETS}.dlq"].problem
    assert rows[TICKETS].dead_letters is None


def test_queues_of_another_retry_setting_are_shown_and_the_expected_ones_missing():
    sample = [q for q in healthy_sample() if not q["name"].startswith("huisheng.retry.")]
    sample += [api_queue("huisheng.retry.50ms", messages=2), api_queue("huisheng.old.queue")]
    rows = by_name(rows_of(sample))
    assert "RETRY_DELAYS_MS differs" in rows["huisheng.retry.200ms"].problem
    assert (rows["huisheng.retry.50ms"].kind, rows["huisheng.retry.50ms"].problem) == ("retry", None)
    assert (rows["huisheng.old.queue"].kind, rows["huisheng.old.queue"].problem) == ("other", None)


def test_live_counts_win_over_the_sampled_ones():
    sample = healthy_sample()
    sample[4] = api_queue(f"{NOTIFY}.dlq", messages=1)  # the API still shows a message replayed since
    rows = by_name(rows_of(sample, live={f"{NOTIFY}.dlq": (0, 0), NOTIFY: (4, 2)}))
    assert rows[f"{NOTIFY}.dlq"].messages == 0 and rows[f"{NOTIFY}.dlq"].problem is None
    assert (rows[NOTIFY].ready, rows[NOTIFY].consumers, rows[NOTIFY].dead_letters) == (4, 2, 0)


def test_rates_come_from_message_stats_when_present():
    rows = by_name(rows_of(healthy_sample()))
    assert (rows[NOTIFY].publish_rate, rows[NOTIFY].deliver_rate) == (2.5, 2.0)
    assert rows["huisheng.retry.200ms"].publish_rate is None


def test_a_new_queue_without_counters_yet_counts_as_empty():
    sample = healthy_sample()
    sample[4] = {"name": f"{NOTIFY}.dlq", "vhost": "/"}  # just declared: no statistics sampled yet
    row = by_name(rows_of(sample))[f"{NOTIFY}.dlq"]
    assert (row.exists, row.messages, row.consumers, row.problem) == (True, 0, 0, None)


def report_of(rows) -> dict:
    from dataclasses import asdict

    return {"vhost": "/", "management_api": "http://127.0.0.1:15672/api", "live_counts": True,
            "healthy": not any(row.problem for row in rows), "queues": [asdict(row) for row in rows]}


def test_the_table_has_a_header_aligned_columns_and_a_verdict():
    sample = healthy_sample()
    sample[4] = api_queue(f"{NOTIFY}.dlq", messages=1)
    text = ops.format_queues(report_of(rows_of(sample)))
    lines = text.splitlines()
    assert lines[0].startswith("vhost '/' at http://127.0.0.1:15672/api")
    assert lines[1].split() == ["QUEUE", "KIND", "MSGS", "READY", "UNACKED", "CONSUMERS", "IN/s", "OUT/s", "DLQ",
                                "STATUS"]
    dlq_line = next(line for line in lines if line.startswith(f"{NOTIFY}.dlq "))
    assert dlq_line.split()[:9] == [f"{NOTIFY}.dlq", "dlq", "1", "1", "0", "0", "2.5", "2.0", "-"]
    assert "1 dead-lettered" in dlq_line
    status = lines[1].index("STATUS")  # every status starts under its header
    assert all(line[status - 2:status] == "  " and line[status] != " " for line in lines[2:-1])
    assert lines[-1] == "1 problem(s)"


def test_the_table_says_healthy_and_shows_missing_queues_with_dashes():
    rows = rows_of(healthy_sample())
    assert ops.format_queues(report_of(rows)).splitlines()[-1] == "healthy"
    missing = rows_of([q for q in healthy_sample() if q["name"] != "huisheng.unrouted"])
    line = ops.format_queues(report_of(missing)).splitlines()[2]
    assert line.split()[:9] == ["huisheng.unrouted", "unrouted", *["-"] * 7]


# --------------------------------------------------------------------------- dead letters


def dead_letter(headers: dict, body: object = None, encoding: str = "string") -> dict:
    """A message as POST /api/queues/{vhost}/{queue}/get returns it."""
    if body is None:
        body = {"event_id": "ev-1", "type": "ticket.received", "version": 2, "community": "xingqiao",
                "correlation_id": "corr-1", "occurred_at": "2026-11-26T08:00:00+00:00",
                "payload": {"ticket_id": "T1", "address_string": "兴乔小区3号楼2单元401",
                            "description": "call 13812345678", "phone": "13912345678"}}
    payload = json.dumps(body, ensure_ascii=False) if encoding == "string" else body
    return {"payload": payload, "payload_encoding": encoding, "payload_bytes": 10, "message_count": 0,
            "redelivered": False, "exchange": "huisheng.dead", "routing_key": NOTIFY,
            "properties": {"message_id": "ev-1", "correlation_id": "corr-1", "delivery_mode": 2, "headers": headers}}


TRACE = ("Traceback (most recent call last):\n  File \"nameko/containers.py\", line 392, in _run_worker\n"
         "    result = method(*worker_ctx.args)\n  File \"services/notify/service.py\", line 40, in on_ticket_event\n"
         "    raise RuntimeError(\"the SMS gateway is down\")\n    ^^^^^^^^^^^^^^^^^^\n\n"
         "RuntimeError: the SMS gateway is down\n")
FAILED = {ATTEMPT: 3, ERROR: "RuntimeError: the SMS gateway is down", TRACEBACK: TRACE,
          FAILED_AT: "2026-11-26T08:00:02.123000+00:00"}


def test_a_dead_letter_is_described_with_its_failure_and_a_masked_payload():
    entry = ops.describe_dead_letter(dead_letter(FAILED))
    assert {key: entry[key] for key in ("event_id", "type", "version", "community", "correlation_id", "attempts",
                                        "replayed", "error", "failed_at")} == {
        "event_id": "ev-1", "type": "ticket.received", "version": 2, "community": "xingqiao",
        "correlation_id": "corr-1", "attempts": 3, "replayed": 0, "error": "RuntimeError: the SMS gateway is down",
        "failed_at": "2026-11-26T08:00:02.123000+00:00"}
    assert entry["payload"]["address_string"] == "兴乔小区***"
    assert entry["payload"]["description"] == "call 138****5678"
    assert entry["payload"]["phone"] == "139****5678"
    assert entry["payload"]["ticket_id"] == "T1"


def test_a_message_the_broker_rejected_is_explained_by_its_x_death():
    death = [{"reason": "rejected", "queue": NOTIFY, "count": 1, "exchange": "huisheng.events",
              "time": 1_795_680_000, "routing-keys": ["ticket.received"]}]
    raw = base64.b64encode(b"\xff not json").decode()
    entry = ops.describe_dead_letter(dead_letter({"x-death": death, ATTEMPT: 1}, raw, encoding="base64"))
    assert entry["error"] == f"dead-lettered by the broker: rejected from {NOTIFY}"
    assert entry["failed_at"] == datetime.fromtimestamp(1_795_680_000, UTC).isoformat()
    assert entry["body_problem"].startswith("undecodable body")
    assert entry["payload"] is None and entry["event_id"] == "ev-1"  # from the message id


def test_a_body_that_is_json_but_no_envelope_says_so():
    entry = ops.describe_dead_letter(dead_letter({}, body=[1, 2]))
    assert entry["error"].startswith("not an event envelope")
    assert entry["attempts"] is None


def test_the_listing_shows_error_attempts_the_innermost_frames_and_no_raw_address():
    text = ops.format_dead_letters(f"{NOTIFY}.dlq", 3, [ops.describe_dead_letter(dead_letter(FAILED))],
                                   traceback_lines=3)
    assert text.splitlines()[0] == f"{NOTIFY}.dlq: 3 message(s), showing the first 1"
    assert "#1  event ev-1  ticket.received v2  community xingqiao  correlation corr-1" in text
    assert "attempts 3  failed at 2026-11-26T08:00:02.123000+00:00" in text
    assert "error: RuntimeError: the SMS gateway is down" in text
    assert "traceback (last 3 lines):" in text and "services/notify/service.py" in text
    assert "nameko/containers.py" not in text and "^^^" not in text
    assert "3号楼2单元401" not in text and "13812345678" not in text


def test_replayed_headers_start_a_fresh_attempt_and_count_replays():
    headers = {**FAILED, "x-custom": "kept", REPLAYED: 1}
    assert ops.replay_headers(headers) == {"x-custom": "kept", ATTEMPT: 1, REPLAYED: 2}
    assert ops.replay_headers(None) == {ATTEMPT: 1, REPLAYED: 1}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_confirmation_needs_yes_or_the_expected_answer_on_a_terminal(capsys):
    assert ops.confirmed("go?", yes=True, stdin=io.StringIO(""))
    assert not ops.confirmed("go?", yes=False, stdin=io.StringIO("y\n"))  # not a terminal
    assert "pass --yes" in capsys.readouterr().err
    assert ops.confirmed("go?", yes=False, stdin=Terminal("yes\n"))
    assert ops.confirmed("name?", yes=False, expected="q.dlq", stdin=Terminal("q.dlq\n"))
    assert not ops.confirmed("name?", yes=False, expected="q.dlq", stdin=Terminal("y\n"))


# --------------------------------------------------------------------------- the management endpoint


@pytest.mark.parametrize("amqp_uri,management_url,expected", [
    ("amqp://guest:guest@127.0.0.1:5672/", None, Endpoint("http://127.0.0.1:15672/api", "guest", "guest", "/")),
    ("pyamqp://u:p%40ss@rabbit:5672/nameko_test_abc", None,
     Endpoint("http://rabbit:15672/api", "u", "p@ss", "nameko_test_abc")),
    ("amqp://u:p@rabbit/%2F", None, Endpoint("http://rabbit:15672/api", "u", "p", "/")),
    ("amqp://rabbit", None, Endpoint("http://rabbit:15672/api", "guest", "guest", "/")),
    ("amqps://u:p@rabbit:5671/prod", None, Endpoint("https://rabbit:15671/api", "u", "p", "prod")),
    ("amqp://u:p@[::1]:5672/", None, Endpoint("http://[::1]:15672/api", "u", "p", "/")),
    ("amqp://u:p@rabbit/prod", "http://mq.internal:8080/rabbit/", Endpoint("http://mq.internal:8080/rabbit/api", "u",
                                                                           "p", "prod")),
    ("amqp://u:p@rabbit/prod", "https://ops:s3@mq.example.org/api", Endpoint("https://mq.example.org/api", "ops",
                                                                             "s3", "prod")),
])
def test_the_management_endpoint_is_derived_from_amqp_uri_unless_given(amqp_uri, management_url, expected):
    assert endpoint_for(amqp_uri, management_url) == expected


def test_the_management_url_setting_is_used():
    client = ops.management_client(Settings(amqp_uri="amqp://a:b@h/v", management_url="http://m:1234"))
    assert (client.endpoint.api, client.endpoint.vhost) == ("http://m:1234/api", "v")


def test_the_default_vhost_is_quoted_whole_in_paths():
    client = ManagementClient(endpoint_for("amqp://127.0.0.1/"))
    assert client._url("queues", "/", "a.b") == "http://127.0.0.1:15672/api/queues/%2F/a.b"
    assert client.session.trust_env is False  # a local broker is never asked through a proxy
    assert ManagementClient(endpoint_for("amqp://rabbit.example.org/")).session.trust_env is True


def response(status: int, body: bytes) -> requests.Response:
    answer = requests.Response()
    answer.status_code, answer._content, answer.reason = status, body, "Reason"
    return answer


@pytest.mark.parametrize("answer,error,message", [
    (requests.ConnectionError("... [Errno 111] Connection refused')"), ManagementError,
     r"unreachable \(\[Errno 111\] Connection refused\).*RABBITMQ_MANAGEMENT_URL"),
    (requests.ReadTimeout("slow"), ManagementError, "did not answer within 5 s"),
    (response(401, b'{"error":"not_authorized","reason":"Login failed"}'), ManagementError,
     "refused user 'guest' \\(401 Login failed\\)"),
    (response(404, b'{"error":"Object Not Found","reason":"Not Found"}'), ManagementError, "not found"),
    (response(500, b"oops"), ManagementError, "answered 500"),
    (response(200, b"<html>"), ManagementError, "not JSON"),
])
def test_management_errors_say_what_went_wrong(monkeypatch, answer, error, message):
    client = ManagementClient(endpoint_for("amqp://127.0.0.1/"))

    def request(*args, **kwargs):
        assert kwargs["timeout"] == management.DEFAULT_TIMEOUT
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(client.session, "request", request)
    with pytest.raises(error, match=message):
        client.queues()


def test_redact_hides_passwords_only():
    assert redact("mongodb://u:pw@db:27017/?x=1") == "mongodb://u:***@db:27017/?x=1"
    assert redact("amqp://127.0.0.1/") == "amqp://127.0.0.1/"


# --------------------------------------------------------------------------- outbox


def test_the_database_is_mongo_uri_else_the_run_state_else_an_error(tmp_path):
    given = resolve_uri(Settings(mongo_uri="mongodb://given/", home=tmp_path))
    assert given == ("mongodb://given/", "MONGO_URI")
    with pytest.raises(ops.OpsError, match="set MONGO_URI"):
        ops.outbox_report(Settings(home=tmp_path), ops.DEFAULT_MAX_LAG)
    uri = "mongodb://127.0.0.1:27018/?retryWrites=false"
    write_state(tmp_path, {"supervisor": {"pid": 1, "identity": "not-it"}, "children": [], "mongo_uri": uri})
    with pytest.raises(ops.OpsError, match="set MONGO_URI"):  # a stale run state names no database
        ops.outbox_report(Settings(home=tmp_path), ops.DEFAULT_MAX_LAG)
    write_state(tmp_path, {"supervisor": {"pid": os.getpid(), "identity": process_identity(os.getpid())},
                           "children": [], "mongo_uri": uri})
    assert resolve_uri(Settings(home=tmp_path)) == (uri, "the running platform")


def test_backlog_counts_documents_events_and_the_oldest_age():
    """Documents as kernel.ledger.unpublished returns them: only their unpublished events."""
    now = datetime(2026, 11, 26, 8, 0, 30, tzinfo=UTC)
    documents = [
        {"_id": 1, OUTBOX: [{"event_id": "a", STAGED: now - timedelta(seconds=12)},
                            {"event_id": "b", STAGED: now - timedelta(seconds=5)}], SINCE: now - timedelta(seconds=5)},
        {"_id": 2, OUTBOX: [{"event_id": "c", STAGED: (now - timedelta(seconds=3)).replace(tzinfo=None)}],
         SINCE: (now - timedelta(seconds=3)).replace(tzinfo=None)},
    ]
    assert ops.backlog(documents, now) == {"documents": 2, "events": 3, "oldest": "2026-11-26T08:00:18+00:00",
                                           "lag_seconds": 12.0}
    assert ops.backlog([], now) == {"documents": 0, "events": 0, "oldest": None, "lag_seconds": 0.0}


def test_the_lag_runs_from_the_oldest_unpublished_event_not_the_document_s_latest_staging():
    now = datetime(2026, 11, 26, 8, 0, 30, tzinfo=UTC)
    # _outbox_since is the latest staging: an older event still waiting beside a newer one sets the lag.
    waiting = {"_id": 1, SINCE: now - timedelta(seconds=2),
               OUTBOX: [{"event_id": "old", STAGED: now - timedelta(seconds=40)},
                        {"event_id": "new", STAGED: now - timedelta(seconds=2)}]}
    assert ops.backlog([waiting], now)["lag_seconds"] == 40.0
    # An entry staged before the ledger existed has no stamp: its document's mark stands for it.
    legacy = {"_id": 2, SINCE: now - timedelta(seconds=7), OUTBOX: [{"event_id": "x"}]}
    assert ops.backlog([legacy], now) == {"documents": 1, "events": 1, "oldest": "2026-11-26T08:00:23+00:00",
                                          "lag_seconds": 7.0}
    # A document staged a moment in the future (another machine's clock) is no negative lag.
    later = now + timedelta(seconds=1)
    ahead = {"_id": 3, SINCE: later, OUTBOX: [{"event_id": "y", STAGED: later}]}
    assert ops.backlog([ahead], now)["lag_seconds"] == 0.0


def test_only_collections_with_the_relay_s_index_are_outboxes_never_the_ledger():
    class Database:
        indexes = {"tickets": {"_id_": {}, OUTBOX_INDEX: {}}, "processed_events": {"_id_": {}, "at_1": {}},
                   LEDGER: {"_id_": {}, "by_event": {}, "expiry": {}},
                   CHECKPOINTS: {"_id_": {}, OUTBOX_INDEX: {}}}  # even were it indexed like an outbox

        def list_collection_names(self):
            return list(self.indexes)

        def __getitem__(self, name):
            return type("Collection", (), {"index_information": lambda _: self.indexes[name]})()

    assert ops.outbox_collections(Database()) == ["tickets"]


def test_the_outbox_table_flags_a_lagging_relay():
    rows = [
        {"service": "tickets", "database": "huisheng_tickets", "collection": "tickets", "documents": 2, "events": 3,
         "oldest": "2026-11-26T08:00:18+00:00", "lag_seconds": 12.0, "lagging": True},
        {"service": "volunteers", "database": "huisheng_volunteers", "collection": None, "documents": 0,
         "events": 0, "oldest": None, "lag_seconds": 0.0, "lagging": False},
    ]
    lines = ops.format_outbox({"max_lag_seconds": 10.0, "healthy": False, "outboxes": rows}).splitlines()
    assert lines[0].split() == ["SERVICE", "DATABASE", "COLLECTION", "DOCS", "EVENTS", "LAG", "s", "OLDEST", "STATUS"]
    assert lines[1].split() == ["tickets", "huisheng_tickets", "tickets", "2", "3", "12.0",
                                "2026-11-26T08:00:18+00:00", "LAGGING", "(>", "10", "s)"]
    assert lines[2].split() == ["volunteers", "huisheng_volunteers", "(no", "outbox)", "0", "0", "0.0", "-", "ok"]
    assert lines[-1] == "1 lagging"


# --------------------------------------------------------------------------- the command line


def test_ops_is_a_command_of_huisheng():
    args = build_parser().parse_args(["ops", "dlq", "replay", "notify.ticket_events", "--limit", "5", "--yes"])
    assert args.func is ops.dispatch and args.ops_func is ops.cmd_dlq_replay
    assert (args.queue, args.limit, args.yes) == ("notify.ticket_events", 5, True)
    args = build_parser().parse_args(["ops", "outbox", "--max-lag", "30", "--json"])
    assert (args.ops_func, args.max_lag, args.json) == (ops.cmd_outbox, 30.0, True)


@pytest.mark.parametrize("limit", ["0", "-1", "many"])
def test_a_limit_is_a_positive_number(limit, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ops", "dlq", "show", "notify.ticket_events", "--limit", limit])


def test_an_unknown_queue_exits_2_before_touching_the_broker(capsys):
    assert main(["ops", "dlq", "show", "nope"]) == ops.EXIT_CANNOT_CHECK
    assert "no subscription has a queue called 'nope'" in capsys.readouterr().err


def test_outbox_without_a_database_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MONGO_URI", raising=False)
    monkeypatch.setenv("HUISHENG_HOME", str(tmp_path))
    assert main(["ops", "outbox"]) == ops.EXIT_CANNOT_CHECK
    assert "set MONGO_URI" in capsys.readouterr().err

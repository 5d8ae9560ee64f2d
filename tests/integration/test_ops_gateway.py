"""``GET /api/v1/ops/overview`` over real HTTP, on the real broker (a vhost per test) and SecantusDB: the queues
and the outboxes as ``huisheng ops`` reports them, for ops and admins only; a half that cannot be looked at
says why while the other still answers."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
import requests

from kernel.envelope import utcnow
from kernel.ledger import OUTBOX, SINCE, STAGED
from kernel.outbox import ensure_indexes, with_events
from tests.conftest import free_port
from tests.integration.harness import bearer, start_gateway
from tests.integration.test_ops import SUB, dead_letter
from tests.support.events import ticket_received

pytestmark = pytest.mark.integration

OVERVIEW = "/api/v1/ops/overview"


def test_ops_see_queue_depths_dead_letters_and_outbox_lag(container_factory, settings, mongo_client):
    db = mongo_client[settings.database_name("tickets")]
    ensure_indexes(db.tickets)
    stale = with_events({"_id": "T-stale", "state": "received"}, [ticket_received("T-stale")])
    stale[OUTBOX][0][STAGED] = utcnow() - timedelta(seconds=120)  # staged two minutes ago, never confirmed
    db.tickets.insert_one({**stale, SINCE: stale[OUTBOX][0][STAGED]})
    dead_letter(settings.amqp_uri, ticket_received("T-poison").to_wire())
    overview = start_gateway(container_factory, settings) + OVERVIEW

    answer = requests.get(overview, headers=bearer(settings, "ops", "ops-1"), timeout=30)
    assert answer.status_code == 200, answer.text
    queues, outbox = answer.json()["queues"], answer.json()["outbox"]
    rows = {row["name"]: row for row in queues["queues"]}
    assert rows[SUB.queue]["dead_letters"] == 1 and rows[f"{SUB.queue}.dlq"]["messages"] == 1
    assert queues["healthy"] is False  # a dead letter and no consumers: the page shows the problems
    assert any(SUB.queue in problem for problem in queues["problems"])
    tickets = next(row for row in outbox["outboxes"] if row["collection"] == "tickets")
    assert tickets["lagging"] and tickets["events"] == 1 and tickets["lag_seconds"] >= 120
    assert outbox["healthy"] is False
    assert requests.get(overview, headers=bearer(settings, "admin", "admin-1"), timeout=30).status_code == 200


@pytest.mark.parametrize("role", ["resident", "grid_worker", "secretary", "volunteer"])
def test_other_roles_are_refused(container_factory, settings, role):
    overview = start_gateway(container_factory, settings) + OVERVIEW
    refused = requests.get(overview, headers=bearer(settings, role, f"{role}-1"), timeout=10)
    assert refused.status_code == 403 and refused.json()["status"] == 403
    assert requests.get(overview, timeout=10).status_code == 401


def test_an_unreachable_management_api_is_said_and_the_outbox_still_answers(container_factory, settings):
    unreachable = replace(settings, management_url=f"http://127.0.0.1:{free_port()}")
    overview = start_gateway(container_factory, unreachable) + OVERVIEW
    answer = requests.get(overview, headers=bearer(unreachable, "ops", "ops-1"), timeout=30)
    assert answer.status_code == 200, answer.text
    queues, outbox = answer.json()["queues"], answer.json()["outbox"]
    assert queues["healthy"] is False and "unreachable" in queues["error"]
    assert outbox["outboxes"] and outbox["healthy"] is True  # nothing staged in this test's databases

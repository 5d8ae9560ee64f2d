"""The proof: notify's reconciler reports every ticket change whose echo was neither delivered nor accounted for
in time — and a positive control shows it can fail: an SMS provider that accepts messages and never sends a
receipt black-holes the echo, with no reason recorded, and the ticket is reported silent.
"""

from __future__ import annotations

import time

import pytest
from nameko.testing.services import entrypoint_hook
from prometheus_client import REGISTRY

from tests.conftest import free_port
from tests.integration.test_notify_echoes import (  # noqa: F401  (fixtures)
    EchoRecords,
    TableNotify,
    echo_settings,
    no_faults,
    prefer,
    resolved,
    standins,
)
from tests.support.broker import publish_event

pytestmark = pytest.mark.integration

PROOF_SECONDS = 1.5


@pytest.fixture
def notify(container_factory, settings, standins):  # noqa: F811
    config = echo_settings(settings, standins, echo_proof_seconds=PROOF_SECONDS,
                           notify_step_deadlines=(("sms", 600.0), ("human", 3600.0)))
    container = container_factory(TableNotify, config.nameko_config(web_address=f"127.0.0.1:{free_port()}"))
    container.start()
    return container


def report(container) -> dict:
    with entrypoint_hook(container, "silent_report") as silent_report:
        return silent_report("xingqiao")


def gauge() -> float:
    return REGISTRY.get_sample_value("huisheng_silent_tickets")


def test_a_black_holed_channel_without_a_reason_is_reported_silent(notify, settings, mongo_client, wait_until):
    prefer(notify, "r-late", channels=["sms"])  # accepted by the provider, never a receipt: a black hole
    event = resolved("r-late", number="XQ-0404")
    publish_event(settings.amqp_uri, event.to_wire())

    assert wait_until(lambda: report(notify)["count"] == 1, timeout=10)
    [item] = report(notify)["items"]
    assert item["ticket_id"] == event.payload["ticket_id"] and item["number"] == "XQ-0404"
    [change] = item["changes"]
    assert (change["source_event_type"], change["channel"], change["step_status"]) == ("ticket.resolved", "sms",
                                                                                       "sent")
    assert wait_until(lambda: gauge() == 1)
    echo = mongo_client[settings.database_name("notify")].echoes.find_one({"_id": f"{event.event_id}:r-late"})
    assert [e["type"] for e in echo["_outbox"]] == ["ticket.silent"]


def test_delivered_echoes_and_recorded_reasons_are_not_silent(notify, settings, mongo_client, wait_until):
    from tests.integration.test_notify_echoes import _quiet_now

    prefer(notify, "r-quiet", channels=["sms"], quiet_hours=_quiet_now())  # held back, with its reason recorded
    delivered, held = resolved("r-inbox"), resolved("r-quiet")
    publish_event(settings.amqp_uri, delivered.to_wire())
    publish_event(settings.amqp_uri, held.to_wire())
    echoes = EchoRecords(mongo_client[settings.database_name("notify")])
    assert wait_until(lambda: echoes.count_documents({"source_event_id": {"$in": [delivered.event_id,
                                                                                  held.event_id]}}) == 2)
    time.sleep(PROOF_SECONDS + 1)  # past the proof window, several timer passes later

    with entrypoint_hook(notify, "reconcile") as reconcile:
        reconcile()
    assert report(notify) == {"count": 0, "items": []}
    assert gauge() == 0
    assert echoes.find_one({"_id": f"{held.event_id}:r-quiet"})["reason"] == "quiet_hours"


def test_a_silent_ticket_leaves_the_report_once_its_echo_is_delivered(notify, settings, mongo_client, wait_until):
    prefer(notify, "r-human", channels=["sms"])
    event = resolved("r-human")
    publish_event(settings.amqp_uri, event.to_wire())
    assert wait_until(lambda: report(notify)["count"] == 1, timeout=10)

    echoes = mongo_client[settings.database_name("notify")].echoes
    echo_id = f"{event.event_id}:r-human"
    # the SMS deadline passes (moved here rather than waited for): the human step opens; the worker calls
    echoes.update_one({"_id": echo_id}, {"$set": {"steps.0.deadline_at": echoes.find_one({"_id": echo_id})[
        "steps"][0]["sent_at"], "due_at": echoes.find_one({"_id": echo_id})["steps"][0]["sent_at"]}})
    assert wait_until(lambda: echoes.find_one({"_id": echo_id})["steps"][1]["status"] == "sent")
    worker = {"subject": "gw-1", "role": "secretary", "community": "xingqiao", "grids": [], "teams": []}
    with entrypoint_hook(notify, "complete_task") as complete:
        complete("xingqiao", f"{echo_id}:human", worker, {})
    assert report(notify)["count"] == 0
    with entrypoint_hook(notify, "reconcile") as reconcile:
        assert reconcile()["silent_tickets"] == 0

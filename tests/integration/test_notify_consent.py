"""Consent: the directory's ``contacts`` carries each person's consents, and notify never sends on a channel the
person withdrew consent for. The step is skipped with the reason recorded ("consent withdrawn"), so the next
step is tried and the reconciler counts the echo accounted for, not silent.

The real directory answers here (its demo community), with the SMS provider's stand-in behind notify.
"""

from __future__ import annotations

import time

import pytest
from nameko.standalone.rpc import ClusterRpcProxy
from nameko.testing.services import entrypoint_hook

from services.directory.seed import load_demo
from services.directory.service import DirectoryService
from services.notify.service import NotifyService
from tests.conftest import free_port
from tests.integration.test_notify_echoes import (  # noqa: F401  (fixtures)
    EchoRecords,
    echo_settings,
    http,
    no_faults,
    prefer,
    resolved,
    standins,
)
from tests.support.broker import publish_event

pytestmark = pytest.mark.integration

PROOF_SECONDS = 1.0
RESIDENTS = [person for person in load_demo()["residents"] if person.get("phone")]


@pytest.fixture
def platform(container_factory, settings, standins):  # noqa: F811
    config = echo_settings(settings, standins, echo_proof_seconds=PROOF_SECONDS,
                           notify_step_deadlines=(("sms", 600.0), ("human", 3600.0)))
    directory = container_factory(DirectoryService, config.nameko_config(web_address=f"127.0.0.1:{free_port()}"))
    directory.start()
    notify = container_factory(NotifyService, config.nameko_config(web_address=f"127.0.0.1:{free_port()}"))
    notify.start()
    with ClusterRpcProxy({"AMQP_URI": settings.amqp_uri, "serializer": "json"}, timeout=20) as proxy:
        yield notify, proxy


def test_no_sms_is_sent_to_a_person_who_withdrew_consent(platform, settings, standins, mongo_client,  # noqa: F811
                                                         wait_until):
    notify, proxy = platform
    withdrawn, plain = RESIDENTS[0], RESIDENTS[1]
    proxy.directory.record_consent("xingqiao", withdrawn["id"], "sms", False)
    proxy.directory.record_consent("xingqiao", plain["id"], "sms", True)
    contacts = proxy.directory.contacts("xingqiao", [withdrawn["id"], plain["id"]])
    assert contacts[withdrawn["id"]]["consents"] == {"sms": False}
    assert contacts[plain["id"]]["consents"] == {"sms": True}

    for person in (withdrawn, plain):
        prefer(notify, person["id"], channels=["sms"])  # the plan: an SMS, then a grid worker's call
    events = {person["id"]: resolved(person["id"]) for person in (withdrawn, plain)}
    for event in events.values():
        publish_event(settings.amqp_uri, event.to_wire())

    echoes = EchoRecords(mongo_client[settings.database_name("notify")])
    refused_id, sent_id = (f"{events[p['id']].event_id}:{p['id']}" for p in (withdrawn, plain))
    assert wait_until(lambda: (echoes.find_one({"_id": refused_id}) or {}).get("reason") == "consent_withdrawn")
    assert wait_until(lambda: (echoes.find_one({"_id": sent_id}) or {"steps": [{}]})["steps"][0].get("status")
                      == "sent")
    refused = echoes.find_one({"_id": refused_id})
    sms, human = refused["steps"]
    assert (sms["status"], sms["answers"][0]["reason"]) == ("skipped", "consent withdrawn")
    assert human["channel"] == "human"  # the next step is tried: a grid worker may still call or visit
    assert http("GET", f"{standins['sms']}/_standin/messages?phone={withdrawn['phone']}")["items"] == []
    assert len(http("GET", f"{standins['sms']}/_standin/messages?phone={plain['phone']}")["items"]) == 1

    time.sleep(PROOF_SECONDS + 0.5)  # past the proof window: the plain one, never receipted, is silent
    with entrypoint_hook(notify, "reconcile") as reconcile:
        reconcile()
    with entrypoint_hook(notify, "silent_report") as silent_report:
        silent = silent_report("xingqiao")
    changes = [change for item in silent["items"] for change in item["changes"]]
    assert events[withdrawn["id"]].payload["ticket_id"] not in [item["ticket_id"] for item in silent["items"]]
    assert events[plain["id"]].payload["ticket_id"] in [item["ticket_id"] for item in silent["items"]], changes

"""Digests: a person who asked for a daily digest gets the echoes held for it as one message at the digest time
(a critical ticket's goes at once), each echo's record pointing at the digest's delivery; the provider's receipt
for the digest delivers every echo it carried.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from nameko.testing.services import entrypoint_hook

from services.notify.service import NotifyService
from tests.conftest import free_port
from tests.integration.test_notify_echoes import (  # noqa: F401  (fixtures)
    EchoRecords,
    echo_settings,
    http,
    no_faults,
    prefer,
    resolved,
    signed_receipts,
    standins,
)
from tests.support.broker import publish_event

pytestmark = pytest.mark.integration

PHONE = "13900000301"


class DigestNotify(NotifyService):
    def lookup_contacts(self, community: str, person: str) -> dict:
        return {"phone": PHONE} if person == "r-digest" else {}


@pytest.fixture
def notify(container_factory, settings, standins):  # noqa: F811
    config = echo_settings(settings, standins, sms_receipt_secret="receipts-secret",
                           notify_step_deadlines=(("sms", 600.0), ("human", 3600.0)))
    container = container_factory(DigestNotify, config.nameko_config(web_address=f"127.0.0.1:{free_port()}"))
    container.start()
    return container


def test_held_echoes_go_as_one_digest_and_its_receipt_delivers_them_all(notify, settings, standins, mongo_client,  # noqa: F811
                                                                        wait_until):
    in_two_hours = (datetime.now(ZoneInfo("Asia/Shanghai")) + timedelta(hours=2)).strftime("%H:%M")
    prefer(notify, "r-digest", channels=["sms", "inbox"], digest={"at": in_two_hours})
    events = [resolved("r-digest", number=f"XQ-070{n}") for n in range(3)]
    critical = resolved("r-digest", priority="critical", number="XQ-0799")
    for event in [*events, critical]:
        publish_event(settings.amqp_uri, event.to_wire())

    echoes = EchoRecords(mongo_client[settings.database_name("notify")])
    ids = [f"{event.event_id}:r-digest" for event in events]
    assert wait_until(lambda: all((echoes.find_one({"_id": i}) or {}).get("reason") == "digest_pending" for i in ids))
    assert wait_until(lambda: (echoes.find_one({"_id": f"{critical.event_id}:r-digest"}) or {"steps": [{}]})[
        "steps"][0].get("status") == "sent")  # critical: not held
    held = [echoes.find_one({"_id": i}) for i in ids]
    digest_at = held[0]["not_before"]
    assert {echo["not_before"] for echo in held} == {digest_at} and digest_at > datetime.now(UTC)
    assert len(http("GET", f"{standins['sms']}/_standin/messages?phone={PHONE}")["items"]) == 1  # the critical one

    with entrypoint_hook(notify, "reconcile") as reconcile:  # the timer's pass at the digest time
        reconcile((digest_at + timedelta(seconds=1)).isoformat())
    texts = http("GET", f"{standins['sms']}/_standin/messages?phone={PHONE}")["items"]
    assert len(texts) == 2, texts  # the critical echo's, and one digest for the three
    digest_text = texts[-1]
    sent = [echoes.find_one({"_id": i}) for i in ids]
    [digest_id] = {echo["digest_id"] for echo in sent}
    assert digest_text["out_id"] == f"{digest_id}:sms" and digest_text["template_param"]["ticket_id"] == "3条"
    assert all(echo["steps"][0]["status"] == "sent" and echo["steps"][0]["digest_id"] == digest_id for echo in sent)
    digest = mongo_client[settings.database_name("notify")].digests.find_one({"_id": digest_id})
    assert sorted(digest["echo_ids"]) == sorted(ids) and digest["status"] == "sent"
    assert digest["title"] == "您有 3 条诉求进展" and "XQ-0702" in digest["body"]

    with entrypoint_hook(notify, "reconcile") as reconcile:  # a second pass sends nothing more
        reconcile((digest_at + timedelta(seconds=5)).isoformat())
    assert len(http("GET", f"{standins['sms']}/_standin/messages?phone={PHONE}")["items"]) == 2

    raw, stamp, signature = signed_receipts([{"out_id": digest_text["out_id"], "success": True,
                                              "err_code": "DELIVERED", "report_time": datetime.now(UTC).isoformat()}])
    with entrypoint_hook(notify, "sms_receipts") as receipts:
        assert receipts(raw, stamp, signature)["applied"] == 3
    time.sleep(0.2)
    delivered = [echoes.find_one({"_id": i}) for i in ids]
    assert all(echo["status"] == "delivered" and echo["steps"][0]["status"] == "delivered" for echo in delivered)
    with entrypoint_hook(notify, "echo_outcomes") as echo_outcomes:  # what each ticket's timeline shows
        shown = echo_outcomes("xingqiao", [event.payload["ticket_id"] for event in events])
    assert [[(e["type"], e["channel"]) for e in entries] for entries in shown.values()] == [
        [("echo.delivered", "sms")]] * 3

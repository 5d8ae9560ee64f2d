"""notify's routes through the gateway over real HTTP: preferences, the inbox read receipt, echoes for staff,
the silent-tickets and echo-latency reports, roles."""

from __future__ import annotations

import pytest
import requests

from services.directory.service import DirectoryService
from services.notify.service import NotifyService
from services.tickets.service import TicketsService
from tests.integration.harness import bearer, start_gateway, start_service

pytestmark = pytest.mark.integration

REPORT = {"service_code": "roof_leak", "description": "顶楼漏雨，客厅天花板滴水", "address_string": "兴乔小区5号楼",
          "attributes": {"floor": 5, "still_leaking": "yes"}}  # roof_leak's required answers


@pytest.fixture
def gateway(container_factory, settings):
    return start_gateway(container_factory, settings, TicketsService, NotifyService)


def test_preferences_round_trip_and_bad_ones_are_422(gateway, settings):
    me = bearer(settings, subject="r-prefs")
    assert requests.get(f"{gateway}/api/v1/me/preferences", headers=me, timeout=5).json()["channels"] == ["inbox"]
    saved = requests.put(f"{gateway}/api/v1/me/preferences", headers=me, timeout=5,
                         json={"channels": ["wechat", "inbox"], "digest": {"at": "18:00"}})
    assert saved.status_code == 200, saved.text
    assert requests.get(f"{gateway}/api/v1/me/preferences", headers=me, timeout=5).json()["digest"] == {"at": "18:00"}
    bad = requests.put(f"{gateway}/api/v1/me/preferences", headers=me, timeout=5,
                       json={"channels": ["inbox"], "role": "admin"})
    assert bad.status_code == 422 and "role" in bad.json()["errors"]
    other = requests.get(f"{gateway}/api/v1/me/preferences", headers=bearer(settings, subject="r-other"), timeout=5)
    assert other.json()["channels"] == ["inbox"]  # one person's preferences are theirs alone


def test_a_resident_reads_an_echo_and_staff_see_its_steps(gateway, settings, wait_until):
    me = bearer(settings, subject="r-read")
    created = requests.post(f"{gateway}/api/v1/tickets", json=REPORT, headers=me, timeout=5)
    assert created.status_code == 201, created.text
    ticket_id = created.json()["id"]
    assert wait_until(lambda: requests.get(f"{gateway}/api/v1/me/inbox", headers=me, timeout=5).json()["items"])
    [message] = requests.get(f"{gateway}/api/v1/me/inbox", headers=me, timeout=5).json()["items"]

    stranger = requests.post(f"{gateway}/api/v1/me/inbox/{message['id']}/read",
                             headers=bearer(settings, subject="r-stranger"), timeout=5)
    assert stranger.status_code == 404
    read = requests.post(f"{gateway}/api/v1/me/inbox/{message['id']}/read", headers=me, timeout=5)
    assert read.status_code == 200 and read.json()["read_at"]
    assert requests.get(f"{gateway}/api/v1/me/inbox", headers=me, timeout=5).json()["unread"] == 0

    staff = bearer(settings, role="secretary", subject="s-1")
    [echo] = requests.get(f"{gateway}/api/v1/echoes", params={"ticket_id": ticket_id}, headers=staff,
                          timeout=5).json()["items"]
    assert echo["status"] == "delivered" and echo["steps"][0]["status"] == "read"
    assert [step["channel"] for step in echo["steps"]] == ["inbox", "human"]

    def timeline() -> list[str]:
        ticket = requests.get(f"{gateway}/api/v1/tickets/{ticket_id}", headers=me, timeout=5).json()
        return [entry["type"] for entry in ticket["timeline"]]

    assert wait_until(lambda: "echo.read" in timeline())
    assert requests.get(f"{gateway}/api/v1/echoes", params={"ticket_id": ticket_id}, headers=me,
                        timeout=5).status_code == 403  # residents see their inbox, not the plan


def test_reports_answer_staff_and_refuse_residents(gateway, settings):
    staff = bearer(settings, role="secretary", subject="s-1")
    silent = requests.get(f"{gateway}/api/v1/reports/silent", headers=staff, timeout=5)
    assert silent.status_code == 200 and silent.json() == {"count": 0, "items": []}
    latency = requests.get(f"{gateway}/api/v1/reports/echo-latency", headers=staff, timeout=5)
    assert latency.status_code == 200 and set(latency.json()) == {"since", "channels"}
    for path in ("/api/v1/reports/silent", "/api/v1/reports/echo-latency", "/api/v1/echo-tasks"):
        assert requests.get(f"{gateway}{path}", headers=bearer(settings), timeout=5).status_code == 403


def test_echoes_need_a_ticket_and_tasks_a_known_status(gateway, settings):
    staff = bearer(settings, role="secretary", subject="s-1")
    assert requests.get(f"{gateway}/api/v1/echoes", headers=staff, timeout=5).status_code == 422
    assert requests.get(f"{gateway}/api/v1/echo-tasks?status=lost", headers=staff, timeout=5).status_code == 422
    tasks = requests.get(f"{gateway}/api/v1/echo-tasks", headers=staff, timeout=5)
    assert tasks.status_code == 200 and tasks.json()["items"] == []
    missing = requests.post(f"{gateway}/api/v1/echo-tasks/nope/done", headers=staff, timeout=5)
    assert missing.status_code == 404


def test_sms_receipts_need_no_token_but_a_valid_signature(gateway, settings):
    import json
    import time

    from services.notify.channels import signature_of

    raw = json.dumps([{"out_id": "nobody:r-1:sms", "success": True, "report_time": "2026-12-06 10:00:00"}])
    stamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", "X-Huisheng-Timestamp": stamp}
    forged = requests.post(f"{gateway}/api/v1/receipts/sms", data=raw, timeout=5,
                           headers={**headers, "X-Huisheng-Signature": signature_of("wrong", stamp, raw.encode())})
    assert forged.status_code == 401 and forged.json()["code"] == "bad_signature"
    signed = requests.post(f"{gateway}/api/v1/receipts/sms", data=raw, timeout=5, headers={
        **headers, "X-Huisheng-Signature": signature_of(settings.sms_receipt_secret, stamp, raw.encode())})
    assert signed.status_code == 200 and signed.json() == {"code": 0, "msg": "成功", "applied": 0}


def test_only_staff_may_name_a_webhook(gateway, settings):
    body = {"channels": ["webhook", "inbox"], "webhook_url": "http://127.0.0.1:9/internal"}
    resident = requests.put(f"{gateway}/api/v1/me/preferences", json=body, headers=bearer(settings, subject="r-w"),
                            timeout=5)
    assert resident.status_code == 422 and "channels" in resident.json()["errors"]
    staff = requests.put(f"{gateway}/api/v1/me/preferences", json={**body, "webhook_url": "https://ops.example/hook"},
                         headers=bearer(settings, role="secretary", subject="s-w"), timeout=5)
    assert staff.status_code == 200 and staff.json()["webhook_url"] == "https://ops.example/hook"


def test_a_retried_broadcast_with_its_idempotency_key_is_one_broadcast(gateway, settings, mongo_client,
                                                                        container_factory):
    start_service(container_factory, settings, DirectoryService)
    keyed = {**bearer(settings, "secretary", "s-1"), "Idempotency-Key": "notice-2026-12-06"}
    notice = {"title": "停水通知", "body": "明天上午9点到12点停水检修。", "segment": {"grid": "g1"}}
    first = requests.post(f"{gateway}/api/v1/broadcasts", json=notice, headers=keyed, timeout=10)
    again = requests.post(f"{gateway}/api/v1/broadcasts", json=notice, headers=keyed, timeout=10)
    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert again.json()["id"] == first.json()["id"]
    broadcasts = mongo_client[settings.database_name("notify")]["broadcasts"]
    assert broadcasts.count_documents({}) == 1

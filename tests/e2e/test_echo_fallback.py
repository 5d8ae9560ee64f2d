"""An echo through the running platform when the SMS provider fails: notify retries with back-off, falls back
to the next channel of the resident's plan, and the echo is still delivered; staff see every step, the ticket's
timeline records the delivery, and no ticket is silent.
"""

from __future__ import annotations

import pytest
import requests

from services.directory.seed import load_demo
from tests.e2e.test_directory import eventually, sign_in

pytestmark = pytest.mark.e2e
REPORT = {"service_code": "blocked_drain", "description": "5号楼下水道堵了", "address_string": "兴乔小区5号楼1单元",
          "attributes": {"overflowing": "no"}}  # blocked_drain's required answer
SMS_ATTEMPTS = 3  # NOTIFY_MAX_ATTEMPTS's default; back-off 5 s then 30 s (NOTIFY_RETRY_DELAYS)


def a_resident_of_our_own() -> dict:
    """A demo resident with a phone whom the other e2e tests leave alone (they take the first, and the last)."""
    return [person for person in load_demo()["residents"] if person.get("phone")][-2]


def test_a_failing_sms_provider_falls_back_and_the_echo_is_still_delivered(running_platform):
    platform, resident = running_platform, a_resident_of_our_own()
    tokens = sign_in(platform, resident["phone"])
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    staff = platform.token("secretary", "e2e-secretary")

    preferences = requests.put(f"{platform.gateway}/api/v1/me/preferences", json={"channels": ["sms", "inbox"]},
                               headers=bearer, timeout=10)
    assert preferences.status_code == 200, preferences.text
    assert preferences.json()["channels"] == ["sms", "inbox"]
    texts_before = len(platform.sent_sms(resident["phone"]))
    faults = requests.post(f"{platform.sms_standin}/_standin/faults",
                           json={"fail": SMS_ATTEMPTS, "code": "ServiceUnavailable"}, timeout=5)
    assert faults.status_code == 200, faults.text
    try:
        created = requests.post(f"{platform.gateway}/api/v1/tickets", json=REPORT, headers=bearer, timeout=10)
        assert created.status_code == 201, created.text
        ticket_id = created.json()["id"]

        def echoes() -> list[dict]:
            answer = requests.get(f"{platform.gateway}/api/v1/echoes", params={"ticket_id": ticket_id},
                                  headers=staff, timeout=10)
            assert answer.status_code == 200, answer.text
            return [echo for echo in answer.json()["items"]
                    if echo["status"] == "delivered" and echo["source_event_type"] == "ticket.received"]

        [echo] = eventually(echoes, timeout=90)
    finally:
        requests.delete(f"{platform.sms_standin}/_standin/faults", timeout=5)

    sms, inbox = echo["steps"][0], echo["steps"][1]
    assert (sms["channel"], sms["status"], sms["attempts"]) == ("sms", "failed", SMS_ATTEMPTS)
    assert {answer["code"] for answer in sms["answers"]} == {"ServiceUnavailable"}
    assert (inbox["channel"], inbox["status"]) == ("inbox", "delivered")
    assert len(platform.sent_sms(resident["phone"])) == texts_before  # the provider sent nothing

    messages = requests.get(f"{platform.gateway}/api/v1/me/inbox", headers=bearer, timeout=10).json()["items"]
    assert ticket_id in [message["ticket_id"] for message in messages]

    def timeline_echoes() -> list[dict]:
        ticket = requests.get(f"{platform.gateway}/api/v1/tickets/{ticket_id}", headers=bearer, timeout=10).json()
        return [entry for entry in ticket["timeline"] if entry["type"] == "echo.delivered"]

    assert [entry["channel"] for entry in eventually(timeline_echoes, timeout=10)] == ["inbox"]

    silent = requests.get(f"{platform.gateway}/api/v1/reports/silent", headers=staff, timeout=10)
    assert silent.status_code == 200, silent.text
    assert silent.json() == {"count": 0, "items": []}
    metrics = requests.get(f"{platform.gateway}/api/v1/reports/echo-latency", headers=staff, timeout=10)
    assert metrics.status_code == 200 and "inbox" in metrics.json()["channels"]

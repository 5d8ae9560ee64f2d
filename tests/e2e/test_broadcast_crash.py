"""A broadcast survives the notify process being SIGKILLed in the middle of its fan-out.

The notice goes to grid g4 (the other tests of the shared platform use g1's residents): six of its residents
prefer SMS, the others the inbox. The SMS provider (the stand-in) holds its first answers back, so the fan-out
is still sending when notify is killed, some texts accepted and not yet recorded; the runner restarts notify,
the broadcast's request is delivered again and the fan-out resumes. Every resident of the grid has exactly one
inbox message of the notice, every SMS resident exactly one text under the echo's idempotency key (nothing sent
twice), and the stand-in's delivery receipts, pushed to the gateway, make every SMS "delivered" without the
test calling the receipt endpoint.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter

import pytest
import requests

from kernel.auth import issue_token
from kernel.config import Settings
from services.directory.seed import load_demo
from tests.e2e.conftest import huisheng
from tests.e2e.test_directory import eventually

# A fault scenario (a process SIGKILLed, a minute long): `make chaos` runs it, beside the fault suite.
pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

GRID = "g4"
BUILDINGS = {b["code"] for g in load_demo()["grids"] if g["code"] == GRID for b in g["buildings"]}
MEMBERS = [person for person in load_demo()["residents"] if person.get("building") in BUILDINGS]
TEXTED = MEMBERS[:6]
SLOW = {"delay_seconds": 2.0, "count": 3}  # the provider's first three answers come 2 s late


def notify_row(env: dict) -> dict:
    report = json.loads(huisheng(env, "status", "--json").stdout)
    return next(row for row in report["processes"] if row["name"] == "notify")


def test_a_broadcast_resumes_after_notify_is_killed_and_sends_nothing_twice(running_platform):
    platform = running_platform
    settings = Settings.from_env(platform.env)
    staff = platform.token("secretary", "e2e-broadcaster")
    for person in TEXTED:
        bearer = {"Authorization": f"Bearer {issue_token(settings, 'resident', person['id'])}"}
        saved = requests.put(f"{platform.gateway}/api/v1/me/preferences", json={"channels": ["sms", "inbox"]},
                             headers=bearer, timeout=10)
        assert saved.status_code == 200, saved.text

    slow = requests.post(f"{platform.sms_standin}/_standin/faults", json=SLOW, timeout=5)
    assert slow.status_code == 200, slow.text
    before = notify_row(platform.env)
    try:
        created = requests.post(f"{platform.gateway}/api/v1/broadcasts", headers={**staff, "Idempotency-Key":
                                f"e2e-crash-{time.time_ns()}"}, json={"title": "停水通知",
                                "body": "明日9时至12时停水，请提前储水。", "segment": {"grid": GRID}}, timeout=10)
        assert created.status_code == 201, created.text
        broadcast = created.json()["id"]

        def texted() -> list[dict]:
            everything = requests.get(f"{platform.sms_standin}/_standin/messages", timeout=5).json()["items"]
            return [m for m in everything if (m.get("out_id") or "").startswith(f"{broadcast}:")]

        assert eventually(texted, timeout=20), "the fan-out sent no text"
        broadcasts = platform.database("notify").broadcasts
        assert broadcasts.find_one({"_id": broadcast})["status"] != "done", "the fan-out was over too soon"
        os.kill(before["pid"], signal.SIGKILL)  # mid-broadcast: three texts still waiting for their answers
    finally:
        requests.delete(f"{platform.sms_standin}/_standin/faults", timeout=5)

    row = eventually(lambda: (r := notify_row(platform.env))["pid"] != before["pid"] and r["health"] == "healthy"
                     and r, timeout=40)
    assert row and row["restarts"] == before["restarts"] + 1, row

    def progress() -> dict:
        answer = requests.get(f"{platform.gateway}/api/v1/broadcasts/{broadcast}", headers=staff, timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()

    # a send the killed process had leased waits out its lease (30 s) before the timer takes it up again
    done = eventually(lambda: (p := progress())["status"] == "done" and p["delivered"] == p["targeted"] and p,
                      timeout=60)
    assert done, progress()
    assert done["failed"] == 0

    inbox = platform.database("notify").inbox
    received = Counter(m["recipient"] for m in inbox.find({"broadcast_id": broadcast}, {"recipient": 1}))
    assert received == Counter(person["id"] for person in MEMBERS), received  # each exactly once
    assert done["targeted"] == len(MEMBERS)

    texts = texted()
    keys = Counter(m["out_id"] for m in texts)
    assert set(keys.values()) == {1}, keys  # no idempotency key sent twice
    assert sorted(keys) == sorted(f"{broadcast}:{person['id']}:sms" for person in TEXTED)
    for person in TEXTED:
        assert [m["phone"] for m in texts if m["out_id"].endswith(f":{person['id']}:sms")] == [person["phone"]]

"""Volunteering through the gateway of a running platform (issue #13), each step by the role that does it.

A resident's ticket is dispatched to the 邻里互助 team; the best-ranked volunteer declines, the next accepts
(the resident hears that help is on the way, with the check-in code), checks in with that code and out an
hour later; the resident rates the help; the hours and the rating are on the volunteer's record, and the
exported PDF names the volunteer in Chinese with its CJK font embedded.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

pytestmark = pytest.mark.e2e

RESIDENT = "p-719c962237dd"  # services/directory/data/demo_community.json: resident-01, building b01 (grid g1)
SECRETARY = "p-60b58c2b932b"
TEAM = "neighbour_help"
ALL_WEEK = [{"day": day, "start": "00:00", "end": "24:00"} for day in range(7)]
VOLUNTEERS = (("欧阳志远", "13700137001"), ("司马光华", "13700137002"))


def eventually(check, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"not true within {timeout} s: {value!r}"
        time.sleep(0.2)


def test_a_team_ticket_is_declined_accepted_served_rated_and_on_the_volunteer_s_record(running_platform, tmp_path):
    platform = running_platform
    gateway = platform.gateway
    resident = platform.token("resident", RESIDENT)
    secretary = platform.token("secretary", SECRETARY)

    names = {}
    for name, phone in VOLUNTEERS:
        registered = requests.post(f"{gateway}/api/v1/volunteers", headers=secretary, timeout=10, json={
            "name": name, "phone": phone, "grid": "g1", "skills": ["plumbing", "repairs"], "teams": [TEAM],
            "availability": ALL_WEEK})
        assert registered.status_code in (200, 201), registered.text
        assert registered.json()["phone"] == f"{phone[:3]}****{phone[-4:]}"
        names[registered.json()["id"]] = name
    teams = requests.get(f"{gateway}/api/v1/volunteer-teams", headers=secretary, timeout=10).json()["items"]
    assert next(t for t in teams if t["code"] == TEAM)["members"] >= 2

    created = requests.post(f"{gateway}/api/v1/tickets", headers=resident, timeout=10, json={
        "service_code": "blocked_drain", "description": "楼下下水道堵了，污水外溢", "address_string": "1号楼",
        "attributes": {"overflowing": "yes"}})
    assert created.status_code == 201, created.text
    ticket = created.json()
    dispatched = requests.post(f"{gateway}/api/v1/tickets/{ticket['id']}/actions/dispatch", headers=secretary,
                               json={"kind": "team", "id": TEAM}, timeout=10)
    assert dispatched.status_code == 200, dispatched.text

    def the_task():
        answer = requests.get(f"{gateway}/api/v1/tickets/{ticket['id']}/volunteer-tasks", headers=secretary,
                              timeout=10)
        return answer.status_code == 200 and answer.json()["items"]

    [task] = eventually(the_task)
    first = task["offer"]["volunteer"]
    assert first in names and all(p["reasons"] for p in task["proposals"])
    first_token = platform.token("volunteer", first, "--team", TEAM)
    mine = requests.get(f"{gateway}/api/v1/me/volunteering", headers=first_token, timeout=10).json()
    assert [offer["id"] for offer in mine["offers"]] == [task["id"]]

    declined = requests.post(f"{gateway}/api/v1/volunteer-tasks/{task['id']}/answer", headers=first_token,
                             json={"answer": "decline"}, timeout=10)
    assert declined.status_code == 200, declined.text
    second = declined.json()["offer"]["volunteer"]
    assert second != first and second in names
    second_token = platform.token("volunteer", second, "--team", TEAM)
    accepted = requests.post(f"{gateway}/api/v1/volunteer-tasks/{task['id']}/answer", headers=second_token,
                             json={"answer": "accept"}, timeout=10)
    assert accepted.status_code == 200 and accepted.json()["state"] == "accepted", accepted.text

    def inbox_titled(title: str):
        items = requests.get(f"{gateway}/api/v1/me/inbox", headers=resident, timeout=10).json()["items"]
        return [m for m in items if m["title"] == title and m["ticket_id"] == ticket["id"]]

    [on_the_way] = eventually(lambda: inbox_titled("志愿者正在赶来"))
    code = requests.get(f"{gateway}/api/v1/volunteer-tasks/{task['id']}", headers=resident,
                        timeout=10).json()["check_in_code"]
    assert code in on_the_way["body"]

    wrong = requests.post(f"{gateway}/api/v1/volunteer-tasks/{task['id']}/check-in", headers=second_token,
                          json={"code": "000000" if code != "000000" else "111111"}, timeout=10)
    assert wrong.status_code == 422, wrong.text
    checked_in = requests.post(f"{gateway}/api/v1/volunteer-tasks/{task['id']}/check-in", headers=second_token,
                               json={"code": code}, timeout=10)
    assert checked_in.status_code == 200 and checked_in.json()["state"] == "checked_in", checked_in.text
    # an hour at the task: the check-in is moved back rather than the test waiting an hour
    platform.database("volunteers").tasks.update_one(
        {"_id": task["id"]}, {"$set": {"check_in_at": datetime.now(UTC) - timedelta(minutes=60)}})
    checked_out = requests.post(f"{gateway}/api/v1/volunteer-tasks/{task['id']}/check-out", headers=second_token,
                                timeout=10)
    assert checked_out.status_code == 200 and checked_out.json()["minutes"] == 60, checked_out.text
    eventually(lambda: inbox_titled("志愿服务已完成"))

    rated = requests.post(f"{gateway}/api/v1/volunteer-tasks/{task['id']}/rating", headers=resident,
                          json={"rating": 5, "comment": "来得很快，修得很好"}, timeout=10)
    assert rated.status_code == 200 and rated.json()["rating"] == 5, rated.text

    def volunteer_steps():
        seen = requests.get(f"{gateway}/api/v1/tickets/{ticket['id']}", headers=secretary, timeout=10).json()
        return [e["type"] for e in seen["timeline"] if e["type"].startswith("volunteer.")]

    expected = ["volunteer.offered", "volunteer.declined", "volunteer.offered", "volunteer.accepted",
                "volunteer.checked_in", "volunteer.checked_out"]
    assert eventually(lambda: volunteer_steps() == expected and expected)

    today = datetime.now(UTC).date()
    period = {"from": (today - timedelta(days=1)).isoformat(), "to": (today + timedelta(days=1)).isoformat()}
    record = requests.get(f"{gateway}/api/v1/volunteers/{second}/record", params=period, headers=second_token,
                          timeout=10)
    assert record.status_code == 200, record.text
    assert record.json()["totals"]["credit_minutes"] == 60
    assert record.json()["ratings"] == {"count": 1, "average": 5.0}
    assert [t["id"] for t in record.json()["tasks"]] == [task["id"]]
    others = requests.get(f"{gateway}/api/v1/volunteers/{second}/record", params=period, headers=first_token,
                          timeout=10)
    assert others.status_code == 404  # a volunteer sees their own record only

    pdf = requests.get(f"{gateway}/api/v1/volunteers/{second}/record", params={**period, "format": "pdf"},
                       headers=secretary, timeout=30)
    assert pdf.status_code == 200 and pdf.json()["content_type"] == "application/pdf", pdf.text
    path = tmp_path / pdf.json()["filename"]
    path.write_bytes(base64.b64decode(pdf.json()["content_base64"]))
    if not (shutil.which("pdftotext") and shutil.which("pdffonts")):
        pytest.fail("poppler-utils (pdftotext, pdffonts) must be installed: apt-get install -y poppler-utils")
    text = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout
    assert names[second] in text and "1.0 小时" in text
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True).stdout
    [cjk] = [line for line in fonts.splitlines() if "WenQuanYi" in line]
    assert cjk.split()[-5:-3] == ["yes", "yes"]  # embedded (a subset)

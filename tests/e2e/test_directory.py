"""The directory through the running platform: SMS sign-in, a ticket, export, erasure; API keys.

A resident of the demo community signs in with the code the SMS provider stand-in
was asked to send, files a ticket, exports what is held about them and asks to be
forgotten: their personal data leaves the directory, their ticket stays (anonymised),
their inbox is emptied. An integrator's key is created, used, revoked and refused.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import requests

from services.directory.seed import load_demo
from tests.e2e.conftest import huisheng

pytestmark = pytest.mark.e2e
REPORT = {"service_code": "blocked_drain", "description": "3号楼下水道堵了，污水漫到楼道",
          "address_string": "兴乔小区3号楼2单元", "attributes": {"overflowing": "yes"}}  # blocked_drain's answer


def a_seeded_resident() -> dict:
    """A resident of the demo community, with a phone, whom no other test of the shared platform uses.

    This test erases them; the other e2e tests take the first residents of the demo file.
    """
    return [person for person in load_demo()["residents"] if person.get("phone")][-1]


def sign_in(platform, phone: str, password: str | None = None) -> dict:
    sent_before = len(platform.sent_sms(phone))
    asked = requests.post(f"{platform.gateway}/api/v1/auth/code", json={"phone": phone}, timeout=10)
    assert asked.status_code == 202, asked.text
    # The directory answers first and texts the code after (a known number must not answer slower).
    sent = eventually(lambda: platform.sent_sms(phone)[sent_before:], timeout=5)
    assert sent, "no code reached the SMS provider"
    code = sent[-1]["template_param"]["code"]
    body = {"phone": phone, "code": code, **({"password": password} if password else {})}
    tokens = requests.post(f"{platform.gateway}/api/v1/auth/token", json=body, timeout=10)
    assert tokens.status_code == 200, tokens.text
    return tokens.json()


def eventually(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_a_resident_signs_in_files_exports_and_is_forgotten(running_platform):
    platform, resident = running_platform, a_seeded_resident()
    tokens = sign_in(platform, resident["phone"])
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}

    me = requests.get(f"{platform.gateway}/api/v1/me", headers=bearer, timeout=10)
    assert me.status_code == 200, me.text
    person_id = me.json()["id"]
    assert me.json()["name"] == resident["name"]

    created = requests.post(f"{platform.gateway}/api/v1/tickets", json=REPORT, headers=bearer, timeout=10)
    assert created.status_code == 201, created.text
    ticket_id = created.json()["id"]
    # placed by the home building the sign-in put in the token (REPORT names none): its grid, its worker
    home_grid = next(grid["code"] for grid in load_demo()["grids"]
                     if resident["building"] in [building["code"] for building in grid["buildings"]])
    assert (created.json()["building"], created.json()["grid"]) == (resident["building"], home_grid)
    inbox = eventually(lambda: requests.get(f"{platform.gateway}/api/v1/me/inbox", headers=bearer,
                                            timeout=10).json()["items"])
    assert [message["ticket_id"] for message in inbox] == [ticket_id]

    exported = requests.get(f"{platform.gateway}/api/v1/me/export", headers=bearer, timeout=10)
    assert exported.status_code == 200, exported.text
    text = exported.text
    assert resident["name"] in text and resident["phone"] in text and ticket_id in text

    erased = requests.delete(f"{platform.gateway}/api/v1/me", headers=bearer, timeout=10)
    assert erased.status_code in (200, 204), erased.text

    # Gone from the directory: no name, no phone, in any form it could be searched by.
    directory = platform.database("directory")
    raw = json.dumps(list(directory.people.find({"_id": person_id})), default=str)
    assert resident["name"] not in raw and resident["phone"] not in raw
    # Anonymised in tickets, and the ticket stays: no reporter id that leads back, no free text.
    tickets = platform.database("tickets").tickets

    def anonymised():
        ticket = tickets.find_one({"_id": ticket_id})
        return ticket if ticket and person_id not in json.dumps(ticket, default=str) else None

    ticket = eventually(anonymised)
    assert ticket is not None, "the ticket still names the resident"
    assert REPORT["description"] not in json.dumps(ticket, default=str, ensure_ascii=False)
    assert ticket["state"] == "received" and ticket["service_code"] == REPORT["service_code"]
    # Removed from notify: the resident's inbox messages.
    inbox_left = eventually(lambda: platform.database("notify").inbox.count_documents({"recipient": person_id}) == 0)
    assert inbox_left, "the erased resident's inbox messages are still there"
    # Signed out everywhere: the access token no longer opens anything.
    assert eventually(lambda: requests.get(f"{platform.gateway}/api/v1/me", headers=bearer,
                                           timeout=10).status_code == 401, timeout=3)
    # An erased person gets no code and the same answer as anyone.
    again = requests.post(f"{platform.gateway}/api/v1/auth/code", json={"phone": resident["phone"]}, timeout=10)
    assert again.status_code == 202
    time.sleep(1.0)  # the time a code takes to go out when it does (sign_in above waits for it)
    assert len(platform.sent_sms(resident["phone"])) == 1


def test_an_api_key_is_created_used_revoked_and_refused(running_platform):
    platform = running_platform
    created = huisheng(platform.env, "apikey", "create", "--name", "hotline-12345", "--community", "xingqiao")
    assert created.returncode == 0, created.stdout + created.stderr
    key = created.stdout.split()[-1]
    assert re.fullmatch(r"hsk_[0-9a-f]{8}_[A-Za-z0-9_-]{20,}", key), created.stdout

    used = requests.get(f"{platform.gateway}/api/v1/services", headers={"X-API-Key": key}, timeout=10)
    assert used.status_code == 200, used.text
    listed = huisheng(platform.env, "apikey", "list")
    assert listed.returncode == 0 and "hotline-12345" in listed.stdout and key not in listed.stdout

    revoked = huisheng(platform.env, "apikey", "revoke", "hotline-12345")
    assert revoked.returncode == 0, revoked.stdout + revoked.stderr
    revoked_at = time.monotonic()
    refused = eventually(lambda: requests.get(f"{platform.gateway}/api/v1/services", headers={"X-API-Key": key},
                                              timeout=10).status_code == 401, timeout=3)
    assert refused, "the revoked key still works"
    assert time.monotonic() - revoked_at < 1.5
    wrong = requests.get(f"{platform.gateway}/api/v1/services", headers={"X-API-Key": key + "x"}, timeout=10)
    assert wrong.status_code == 401

"""The directory's routes through the gateway over real HTTP: sign-in, revocation within a second, API keys.

The directory, notify and the SMS stand-in run as in ``test_directory_signin`` (whose fixtures are reused).
"""

from __future__ import annotations

import time

import pytest
import requests

from tests.conftest import eventually
from tests.integration.harness import bearer, start_gateway
from tests.integration.test_directory_signin import (  # noqa: F401 (fixtures)
    RESIDENT_PHONE,
    directory,
    people,
    signin_settings,
    sms_codes,
    sms_standin,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def gateway(container_factory, signin_settings, directory):  # noqa: F811
    return start_gateway(container_factory, signin_settings)


def admin(settings) -> dict:
    return bearer(settings, "admin", "p-0000000000ad", community="xingqiao")


def sign_in(gateway: str, sms_url: str) -> dict:
    before = len(sms_codes(sms_url, RESIDENT_PHONE))
    asked = requests.post(f"{gateway}/api/v1/auth/code", json={"phone": RESIDENT_PHONE}, timeout=5)
    assert asked.status_code == 202 and asked.json() == {"sent": True}
    # The directory answers before it texts the code (a known number must not answer slower).
    code = eventually(lambda: sms_codes(sms_url, RESIDENT_PHONE)[before:], timeout=10)[-1]
    tokens = requests.post(f"{gateway}/api/v1/auth/token", json={"phone": RESIDENT_PHONE, "code": code}, timeout=5)
    assert tokens.status_code == 200, tokens.text
    return {"Authorization": f"Bearer {tokens.json()['access_token']}"}


def refused_within(url: str, headers: dict, seconds: float) -> float:
    """Seconds until ``url`` answers 401 to ``headers``; fails if that takes longer than ``seconds``."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if requests.get(url, headers=headers, timeout=5).status_code == 401:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{url} still served after {seconds} s")


def test_sign_in_me_and_sign_out_refuses_the_token_within_a_second(gateway, sms_standin):  # noqa: F811
    resident = sign_in(gateway, sms_standin)
    me = requests.get(f"{gateway}/api/v1/me", headers=resident, timeout=5)
    assert me.status_code == 200 and me.json()["id"] == "p-00000000000a"

    assert requests.post(f"{gateway}/api/v1/auth/logout", headers=resident, timeout=5).status_code == 204
    refused_within(f"{gateway}/api/v1/me", resident, 1.0)
    answer = requests.get(f"{gateway}/api/v1/me", headers=resident, timeout=5)
    assert answer.json()["code"] == "token_revoked"


def test_an_admin_revocation_refuses_the_residents_token_within_a_second(gateway, sms_standin,  # noqa: F811
                                                                          signin_settings):  # noqa: F811
    resident = sign_in(gateway, sms_standin)
    assert requests.get(f"{gateway}/api/v1/me", headers=resident, timeout=5).status_code == 200
    revoked = requests.post(f"{gateway}/api/v1/admin/people/p-00000000000a/revoke", headers=admin(signin_settings),
                            timeout=5)
    assert revoked.status_code == 200, revoked.text
    refused_within(f"{gateway}/api/v1/me", resident, 1.0)
    not_admin = requests.post(f"{gateway}/api/v1/admin/people/p-00000000000a/revoke", headers=resident, timeout=5)
    assert not_admin.status_code == 401  # revoked first; a live resident would get 403


def test_a_key_is_created_used_revoked_and_refused(gateway, signin_settings):  # noqa: F811
    created = requests.post(f"{gateway}/api/v1/apikeys", json={"name": "hotline-12345"}, headers=admin(signin_settings),
                            timeout=5)
    assert created.status_code == 201, created.text
    key = {"X-API-Key": created.json()["key"]}
    listed = requests.get(f"{gateway}/api/v1/apikeys", headers=admin(signin_settings), timeout=5).json()
    assert [item["name"] for item in listed["items"]] == ["hotline-12345"] and "key" not in listed["items"][0]

    used = requests.get(f"{gateway}/api/v1/places/communities", headers=key, timeout=5)
    assert used.status_code == 200 and "xingqiao" in {item["code"] for item in used.json()["items"]}
    not_theirs = requests.get(f"{gateway}/api/v1/residents", headers=key, timeout=5)
    assert not_theirs.status_code == 403  # an integrator reads no register

    revoked = requests.delete(f"{gateway}/api/v1/apikeys/hotline-12345", headers=admin(signin_settings), timeout=5)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    refused_within(f"{gateway}/api/v1/places/communities", key, 1.0)  # its cached verification included
    wrong = requests.get(f"{gateway}/api/v1/places/communities", headers={"X-API-Key": "hsk_nonsense"}, timeout=5)
    assert wrong.status_code == 401 and wrong.headers["Content-Type"].startswith("application/problem+json")


def test_roles_on_the_directorys_routes(gateway, signin_settings):  # noqa: F811
    def status(method, path, role, **claims):
        headers = bearer(signin_settings, role, f"p-00000000{role[:4]:0>4}", community="xingqiao", **claims)
        return requests.request(method, gateway + path, headers=headers, timeout=5).status_code

    # written from docs/directory.md and issue #10: only admins manage keys and read the audit,
    # residents never list the register, ops run machines and read no personal data
    assert status("GET", "/api/v1/apikeys", "admin") == 200
    for role in ("resident", "grid_worker", "volunteer", "secretary", "ops"):
        assert status("GET", "/api/v1/apikeys", role) == 403
        assert status("GET", "/api/v1/audit", role) == 403
    assert status("GET", "/api/v1/residents", "secretary") == 200
    assert status("GET", "/api/v1/residents", "grid_worker", grids=["g3"]) == 200
    for role in ("resident", "volunteer", "ops"):
        assert status("GET", "/api/v1/residents", role) == 403
    assert status("GET", "/api/v1/residents?limit=500", "secretary") == 422
    assert status("POST", "/api/v1/staff", "secretary") == 403
    assert status("DELETE", "/api/v1/me", "secretary") == 403


def test_sign_in_codes_are_rate_limited_per_client_address(gateway):
    answers = [requests.post(f"{gateway}/api/v1/auth/code", json={"phone": "13700009999"}, timeout=5)
               for _ in range(6)]
    assert [answer.status_code for answer in answers[:5]] == [202] * 5
    assert answers[5].status_code == 429 and int(answers[5].headers["Retry-After"]) >= 1
    assert answers[5].json()["code"] == "rate_limited"


def test_sign_in_bodies_refuse_unknown_members(gateway):
    response = requests.post(f"{gateway}/api/v1/auth/token", json={"phone": RESIDENT_PHONE, "code": "123456",
                                                                  "role": "admin"}, timeout=5)
    assert response.status_code == 422 and "role" in response.json()["errors"]

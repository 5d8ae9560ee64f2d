"""Sign-in, sessions, revocation and API keys through the directory service, on the real broker and database.

The directory asks the real notify service (``notify.send_code``) to text the code, and notify
sends it to the SMS stand-in, a separate HTTP process: the test reads the code from the stand-in's
journal, as a resident reads it from their phone.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import eventlet
import pytest
import requests
from argon2 import PasswordHasher
from nameko.testing.services import entrypoint_hook

from gateway.auth import verify_token
from kernel.errors import Conflict, NotFound, TooManyRequests, Unauthorized, ValidationFailed
from services.directory.credentials import revoked_filter
from services.directory.people import Address, Person
from services.directory.places import Community
from services.directory.repository import DirectoryRepository
from services.directory.sealing import Sealer
from services.directory.service import DirectoryService
from services.directory.signin import hash_password, password_needs_rehash, verify_password
from services.notify.service import NotifyService
from tests.conftest import eventually, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RESIDENT_PHONE, STAFF_PHONE, UNKNOWN_PHONE = "13800001111", "13900002222", "13700003333"
STAFF_PASSWORD = "网格员-correct-horse-42"
SMS_KEY_ID, SMS_KEY_SECRET = "LTAI-directory-test", "directory-test-sms-secret"


@pytest.fixture
def sms_standin(tmp_path):
    """The SMS stand-in as its own process; yields its base URL."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [sys.executable, "-m", "standins.sms", "--host", "127.0.0.1", "--port", str(port),
         "--journal", str(tmp_path / "sms.jsonl"), "--access-key-id", SMS_KEY_ID,
         "--access-key-secret", SMS_KEY_SECRET, "--rate-per-minute", "100"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    try:
        while True:
            try:
                if requests.get(f"{url}/health", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the SMS stand-in did not start")
            eventlet.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def sms_codes(url: str, phone: str) -> list[str]:
    """The codes the stand-in was asked to text to ``phone``, oldest first."""
    items = requests.get(f"{url}/_standin/messages", params={"phone": phone}, timeout=5).json()["items"]
    return [item["template_param"]["code"] for item in items]


@pytest.fixture
def signin_settings(settings, sms_standin):
    return dataclasses.replace(settings, sms_provider_url=f"{sms_standin}/", sms_access_key_id=SMS_KEY_ID,
                               sms_access_key_secret=SMS_KEY_SECRET, directory_seed=False)


@pytest.fixture
def people(signin_settings, mongo_client):
    """A community with a resident and a grid worker (who has a password), written as the directory writes."""
    db = mongo_client[signin_settings.database_name("directory")]
    repository = DirectoryRepository(db, Sealer.from_settings(signin_settings))
    repository.save_community(Community("xingqiao", "兴乔社区", street="体育场街道"))
    resident = Person("p-00000000000a", "xingqiao", "李华", RESIDENT_PHONE, address=Address("b03", "2", "401"))
    staff = Person("p-00000000000b", "xingqiao", "王芳", STAFF_PHONE, roles=["grid_worker"], grids=["g3"],
                   password_hash=hash_password(STAFF_PASSWORD))
    repository.insert(resident)
    repository.insert(staff)
    return {"resident": resident, "staff": staff, "db": db}


@pytest.fixture
def directory(container_factory, signin_settings, people):
    notify = container_factory(NotifyService, signin_settings.nameko_config(web_address=f"127.0.0.1:{free_port()}"))
    notify.start()
    container = container_factory(DirectoryService,
                                  signin_settings.nameko_config(web_address=f"127.0.0.1:{free_port()}"))
    container.start()
    return container


def call(container, method: str, *args, **kwargs):
    with entrypoint_hook(container, method) as entrypoint:
        return entrypoint(*args, **kwargs)


def code_for(container, sms_url: str, phone: str) -> str:
    """Ask for a code and read it from the stand-in's journal (the directory sends it after answering)."""
    before = len(sms_codes(sms_url, phone))
    assert call(container, "request_code", phone) == {"sent": True}
    codes = eventually(lambda: sms_codes(sms_url, phone)[before:], timeout=10)
    assert len(codes) == 1, "the stand-in was asked to send more than one code"
    return codes[0]


def test_a_resident_signs_in_with_the_texted_code_refreshes_and_signs_out(
        directory, sms_standin, signin_settings, people):
    started = time.time()
    code = code_for(directory, sms_standin, RESIDENT_PHONE)
    assert len(code) == 6 and code.isdigit()
    # only an HMAC of the code is stored
    stored = people["db"]["signin_codes"].find_one({})
    assert stored is not None and code not in repr(stored) and RESIDENT_PHONE not in repr(stored)

    tokens = call(directory, "sign_in", "+86 138-0000-1111", code)
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == signin_settings.access_token_ttl
    principal = verify_token(signin_settings, tokens["access_token"])
    assert (principal.subject, principal.role, principal.community) == ("p-00000000000a", "resident", "xingqiao")
    assert principal.session and principal.name == "李华"
    assert principal.home == "b03"  # a resident's token names their home building: tickets are placed by it

    with pytest.raises(Unauthorized) as replay:  # a code is used once
        call(directory, "sign_in", RESIDENT_PHONE, code)
    assert replay.value.code == "invalid_credentials"

    renewed = call(directory, "refresh", tokens["refresh_token"])
    assert renewed["refresh_token"] != tokens["refresh_token"]
    assert verify_token(signin_settings, renewed["access_token"]).session == principal.session

    assert call(directory, "sign_out", principal.session)["revoked_at"] is not None
    revoked = call(directory, "revocations", started)
    assert principal.session in revoked["sessions"] and revoked["until"] >= started
    with pytest.raises(Unauthorized):
        call(directory, "refresh", renewed["refresh_token"])
    # a later look does not list it again (beyond the short overlap that covers late commits)
    assert principal.session not in call(directory, "revocations", revoked["until"] + 5)["sessions"]


def test_an_unknown_phone_gets_the_same_answer_and_no_code(directory, sms_standin):
    assert call(directory, "request_code", UNKNOWN_PHONE) == {"sent": True}
    eventlet.sleep(0.5)
    assert sms_codes(sms_standin, UNKNOWN_PHONE) == []
    with pytest.raises(Unauthorized) as refused:
        call(directory, "sign_in", UNKNOWN_PHONE, "123456")
    assert refused.value.code == "invalid_credentials"


def test_a_known_phone_is_answered_without_waiting_for_the_sms_provider(directory, sms_standin):
    """Waiting for the provider would make a known phone's answer slower than an unknown one's."""
    requests.post(f"{sms_standin}/_standin/faults", json={"delay_seconds": 2.0, "count": 1}, timeout=5)
    started = time.monotonic()
    assert call(directory, "request_code", RESIDENT_PHONE) == {"sent": True}
    assert time.monotonic() - started < 1.0
    assert len(eventually(lambda: sms_codes(sms_standin, RESIDENT_PHONE), timeout=10)) == 1  # sent all the same


def test_a_malformed_phone_is_a_validation_error(directory):
    with pytest.raises(ValidationFailed) as invalid:
        call(directory, "request_code", "12345")
    assert "phone" in invalid.value.details


def test_five_wrong_codes_burn_it_and_a_second_code_within_a_minute_is_not_sent(directory, sms_standin):
    code = code_for(directory, sms_standin, RESIDENT_PHONE)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(4):
        with pytest.raises(Unauthorized):
            call(directory, "sign_in", RESIDENT_PHONE, wrong)
    with pytest.raises(TooManyRequests) as fifth:
        call(directory, "sign_in", RESIDENT_PHONE, wrong)
    assert fifth.value.code == "too_many_attempts" and fifth.value.status == 429
    with pytest.raises(TooManyRequests):
        call(directory, "sign_in", RESIDENT_PHONE, code)  # burnt: the right code no longer works
    assert call(directory, "request_code", RESIDENT_PHONE) == {"sent": True}
    eventlet.sleep(0.5)  # time enough for a send that should not happen
    assert len(sms_codes(sms_standin, RESIDENT_PHONE)) == 1  # the resend limit held


def test_staff_must_give_their_password_too(directory, sms_standin, signin_settings):
    code = code_for(directory, sms_standin, STAFF_PHONE)
    with pytest.raises(Unauthorized) as missing:
        call(directory, "sign_in", STAFF_PHONE, code)
    with pytest.raises(Unauthorized) as wrong:
        call(directory, "sign_in", STAFF_PHONE, code, "not-the-password")
    assert missing.value.code == wrong.value.code == "invalid_credentials"
    tokens = call(directory, "sign_in", STAFF_PHONE, code, STAFF_PASSWORD)
    principal = verify_token(signin_settings, tokens["access_token"])
    assert (principal.subject, principal.role, principal.grids) == ("p-00000000000b", "grid_worker", ("g3",))
    assert principal.home is None  # staff have no home in their token, whatever address they have


def test_a_password_hashed_with_old_parameters_is_rehashed_at_sign_in(directory, sms_standin, people):
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(STAFF_PASSWORD)
    people["db"]["people"].update_one({"_id": "p-00000000000b"}, {"$set": {"password_hash": weak}})
    call(directory, "sign_in", STAFF_PHONE, code_for(directory, sms_standin, STAFF_PHONE), STAFF_PASSWORD)
    stored = people["db"]["people"].find_one({"_id": "p-00000000000b"})["password_hash"]
    assert stored != weak and not password_needs_rehash(stored) and verify_password(stored, STAFF_PASSWORD)


def test_reusing_a_spent_refresh_token_revokes_the_session(directory, sms_standin, signin_settings):
    started = time.time()
    tokens = call(directory, "sign_in", RESIDENT_PHONE, code_for(directory, sms_standin, RESIDENT_PHONE))
    session = verify_token(signin_settings, tokens["access_token"]).session
    renewed = call(directory, "refresh", tokens["refresh_token"])
    with pytest.raises(Unauthorized):
        call(directory, "refresh", tokens["refresh_token"])  # a stolen copy of the spent token
    assert session in call(directory, "revocations", started)["sessions"]
    with pytest.raises(Unauthorized):
        call(directory, "refresh", renewed["refresh_token"])  # the whole session is gone


def test_an_admin_revokes_every_session_of_a_person(directory, sms_standin, signin_settings, people):
    started = time.time()
    first = call(directory, "sign_in", RESIDENT_PHONE, code_for(directory, sms_standin, RESIDENT_PHONE))
    people["db"]["signin_codes"].update_many({}, {"$set": {"sent_at": []}})  # as if a minute had passed
    second = call(directory, "sign_in", RESIDENT_PHONE, code_for(directory, sms_standin, RESIDENT_PHONE))
    sessions = {verify_token(signin_settings, t["access_token"]).session for t in (first, second)}
    assert len(sessions) == 2

    answer = call(directory, "revoke_person", "xingqiao", "p-00000000000a", {"subject": "p-admin", "role": "admin"})
    assert set(answer["sessions"]) == sessions
    assert sessions <= set(call(directory, "revocations", started)["sessions"])
    for tokens in (first, second):
        with pytest.raises(Unauthorized):
            call(directory, "refresh", tokens["refresh_token"])
    with pytest.raises(NotFound):
        call(directory, "revoke_person", "xingqiao", "p-0000000000ff", "cli:test")


def test_api_keys_are_created_verified_listed_without_the_key_revoked_and_refused(directory, people):
    started = time.time()
    created = call(directory, "create_api_key", "open311-client", ["xingqiao"], {"subject": "p-admin"})
    key = created["key"]
    assert key.startswith(f"hsk_{created['key_id']}_") and created["communities"] == ["xingqiao"]
    stored = people["db"]["api_keys"].find_one({"_id": created["key_id"]})
    assert key not in repr(stored)

    principal = call(directory, "verify_api_key", key)
    assert principal == {"subject": "key:open311-client", "role": "integrator", "community": "xingqiao",
                         "communities": ["xingqiao"], "key_id": created["key_id"]}

    listed = call(directory, "list_api_keys")
    assert listed["next_cursor"] is None
    [item] = listed["items"]
    assert item["name"] == "open311-client" and item["last_used_at"] is not None and item["revoked_at"] is None
    assert key not in repr(listed) and "digest" not in item

    with pytest.raises(Conflict):
        call(directory, "create_api_key", "open311-client", ["xingqiao"], "cli:test")
    with pytest.raises(ValidationFailed) as unknown:
        call(directory, "create_api_key", "other", ["nowhere"], "cli:test")
    assert "communities" in unknown.value.details

    revoked = call(directory, "revoke_api_key", "open311-client")
    assert revoked["revoked_at"] is not None
    assert created["key_id"] in call(directory, "revocations", started)["api_keys"]
    for presented in (key, key[:-1] + ("a" if key[-1] != "a" else "b"), "not-a-key"):
        with pytest.raises(Unauthorized) as refused:
            call(directory, "verify_api_key", presented)
        assert refused.value.code == "invalid_api_key"
    with pytest.raises(NotFound):
        call(directory, "revoke_api_key", "no-such-key")


def index_of(plan: dict) -> str | None:
    """The index a winning plan scans, None for a collection scan."""
    stage = plan.get("queryPlanner", {}).get("winningPlan", {})
    while stage:
        if stage.get("stage") == "IXSCAN":
            return stage.get("indexName")
        stage = stage.get("inputStage")
    return None


def test_the_half_second_revocation_poll_and_refresh_lookups_are_index_scans(directory, people):
    db = people["db"]
    since = time.time() - 60
    assert index_of(db["sessions"].find(revoked_filter(since), {"_id": 1}).explain()) == "by_revoked"
    assert index_of(db["api_keys"].find(revoked_filter(since), {"_id": 1}).explain()) == "keys_by_revoked"
    assert index_of(db["sessions"].find({"refresh_digest": "0" * 64}).explain()) == "by_refresh"
    assert index_of(db["sessions"].find({"spent_digests": "0" * 64}).explain()) == "by_spent_refresh"

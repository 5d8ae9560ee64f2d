"""Sign-in rules without I/O: codes (limits, expiry, replay, burning, resends), passwords, sessions."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from services.directory.signin import (
    CODE_TTL,
    CODES_PER_HOUR,
    HOUR,
    MAX_WRONG_TRIES,
    RESEND_INTERVAL,
    CodeChallenge,
    CodeRefused,
    ResendRefused,
    Session,
    SessionRefused,
    code_digest,
    hash_password,
    new_code,
    new_refresh_token,
    password_needs_rehash,
    refresh_digest,
    verify_password,
    verify_password_or_decoy,
)

KEY = b"\x01" * 32
PHONE = "ph-13800001234"
T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC


def digest(code: str, phone: str = PHONE, key: bytes = KEY) -> str:
    return code_digest(key, phone, code)


def issued(code: str = "123456", at: float = T0) -> CodeChallenge:
    challenge = CodeChallenge(PHONE)
    challenge.issue(digest(code), at)
    return challenge


# --- passwords


def test_password_hash_is_argon2id_salted_and_verifies():
    first, second = hash_password("s3cret-pass"), hash_password("s3cret-pass")
    assert first.startswith("$argon2id$")
    assert first != second  # a random salt each time
    assert "s3cret-pass" not in first
    assert verify_password(first, "s3cret-pass") and verify_password(second, "s3cret-pass")
    assert not verify_password(first, "s3cret-Pass")


@pytest.mark.parametrize("hashed, password", [(None, "x"), ("", "x"), ("$argon2id$garbage", "x"),
                                              ("plain", "plain")])
def test_verify_password_refuses_malformed_input_without_raising(hashed, password):
    assert verify_password(hashed, password) is False


def test_empty_password_is_refused_when_hashing():
    with pytest.raises(ValueError):
        hash_password("")


def test_weak_hash_needs_rehash_and_still_verifies():
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("pw")
    assert verify_password(weak, "pw")
    assert password_needs_rehash(weak)
    assert not password_needs_rehash(hash_password("pw"))


def test_decoy_verification_never_accepts():
    assert verify_password_or_decoy(None, "anything") is False
    assert verify_password_or_decoy(hash_password("pw"), "pw") is True


# --- codes


def test_codes_are_six_digits_and_vary():
    codes = {new_code() for _ in range(200)}
    assert all(len(code) == 6 and code.isdigit() for code in codes)
    assert len(codes) > 150  # 200 draws from a million collide rarely


def test_code_digest_is_keyed_and_bound_to_the_phone():
    assert digest("123456") == digest("123456")
    assert digest("123456") != digest("123457")
    assert digest("123456") != digest("123456", phone="ph-other")
    assert digest("123456") != digest("123456", key=b"\x02" * 32)
    assert "123456" not in digest("123456")


def test_right_code_within_five_minutes_is_accepted_once():
    challenge = issued()
    challenge.redeem(digest("123456"), T0 + CODE_TTL - 1)
    assert challenge.spent
    with pytest.raises(CodeRefused) as refused:
        challenge.redeem(digest("123456"), T0 + CODE_TTL - 1)
    assert refused.value.reason == "no_code" and not refused.value.too_many


def test_code_expires_after_five_minutes():
    challenge = issued()
    with pytest.raises(CodeRefused) as refused:
        challenge.redeem(digest("123456"), T0 + CODE_TTL)
    assert refused.value.reason == "expired"
    assert not challenge.spent


def test_no_code_issued_is_refused():
    with pytest.raises(CodeRefused) as refused:
        CodeChallenge(PHONE).redeem(digest("123456"), T0)
    assert refused.value.reason == "no_code"


def test_five_wrong_tries_burn_the_code():
    challenge = issued()
    for attempt in range(1, MAX_WRONG_TRIES + 1):
        with pytest.raises(CodeRefused) as refused:
            challenge.redeem(digest("000000"), T0 + attempt)
        assert refused.value.reason == "wrong"
        assert refused.value.too_many is (attempt == MAX_WRONG_TRIES)
    assert challenge.wrong_tries == MAX_WRONG_TRIES
    # the right code no longer works either
    with pytest.raises(CodeRefused) as refused:
        challenge.redeem(digest("123456"), T0 + 10)
    assert refused.value.reason == "burnt" and refused.value.too_many
    assert not challenge.spent


def test_four_wrong_tries_leave_the_right_code_usable():
    challenge = issued()
    for attempt in range(MAX_WRONG_TRIES - 1):
        with pytest.raises(CodeRefused):
            challenge.redeem(digest("999999"), T0 + attempt)
    challenge.redeem(digest("123456"), T0 + 10)
    assert challenge.spent


def test_a_failed_second_factor_counts_as_a_wrong_try():
    challenge = issued()
    with pytest.raises(CodeRefused) as refused:
        challenge.redeem(digest("123456"), T0 + 1, second_factor=False)
    assert refused.value.reason == "wrong" and challenge.wrong_tries == 1 and not challenge.spent
    challenge.redeem(digest("123456"), T0 + 2, second_factor=True)
    assert challenge.spent


def test_a_new_code_replaces_the_old_one_and_resets_tries():
    challenge = issued("111111")
    with pytest.raises(CodeRefused):
        challenge.redeem(digest("000000"), T0 + 1)
    challenge.issue(digest("222222"), T0 + RESEND_INTERVAL)
    assert challenge.wrong_tries == 0
    with pytest.raises(CodeRefused) as refused:
        challenge.redeem(digest("111111"), T0 + RESEND_INTERVAL + 1)
    assert refused.value.reason == "wrong"
    challenge.redeem(digest("222222"), T0 + RESEND_INTERVAL + 2)
    assert challenge.spent


def test_a_new_code_at_most_once_a_minute():
    challenge = issued()
    with pytest.raises(ResendRefused) as refused:
        challenge.issue(digest("222222"), T0 + RESEND_INTERVAL - 1)
    assert refused.value.retry_after == 1
    assert challenge.matches(digest("123456"))  # the refused resend changed nothing
    challenge.issue(digest("222222"), T0 + RESEND_INTERVAL)
    assert challenge.matches(digest("222222"))


def test_at_most_five_codes_an_hour():
    challenge = CodeChallenge(PHONE)
    times = [T0 + index * RESEND_INTERVAL for index in range(CODES_PER_HOUR)]
    for at in times:
        challenge.issue(digest("123456"), at)
    sixth = times[-1] + RESEND_INTERVAL
    with pytest.raises(ResendRefused) as refused:
        challenge.issue(digest("654321"), sixth)
    assert refused.value.retry_after == int(times[0] + HOUR - sixth)
    challenge.issue(digest("654321"), times[0] + HOUR)  # the first has left the hour
    assert challenge.matches(digest("654321"))
    assert len(challenge.sent_at) == CODES_PER_HOUR  # the history keeps only the last hour


def test_retry_after_is_zero_for_a_fresh_phone():
    assert CodeChallenge(PHONE).retry_after(T0) == 0


# --- sessions


def test_refresh_token_is_32_random_bytes_stored_as_a_digest():
    token = new_refresh_token()
    assert len(token) == 43 and token != new_refresh_token()
    session, first = Session.open("p-000000000001", "xingqiao", now=T0, ttl=3600)
    assert session.refresh_digest == refresh_digest(first) and first not in session.refresh_digest


def test_every_refresh_rotates_the_token():
    session, first = Session.open("p-000000000001", "xingqiao", now=T0, ttl=3600)
    second = session.rotate(refresh_digest(first), now=T0 + 10)
    third = session.rotate(refresh_digest(second), now=T0 + 20)
    assert len({first, second, third}) == 3
    assert session.refresh_digest == refresh_digest(third)
    assert session.spent_digests == [refresh_digest(first), refresh_digest(second)]
    assert session.active(T0 + 20) and session.refreshed_at == T0 + 20


def test_reusing_a_spent_token_revokes_the_session():
    session, first = Session.open("p-000000000001", "xingqiao", now=T0, ttl=3600)
    second = session.rotate(refresh_digest(first), now=T0 + 10)
    with pytest.raises(SessionRefused) as refused:
        session.rotate(refresh_digest(first), now=T0 + 20)  # the thief, or the victim: nobody can tell
    assert refused.value.reason == "reused"
    assert session.revoked_at == T0 + 20 and session.revoked_reason == "refresh_token_reused"
    with pytest.raises(SessionRefused) as refused:
        session.rotate(refresh_digest(second), now=T0 + 30)  # the current token dies with the session
    assert refused.value.reason == "revoked"


def test_an_expired_session_cannot_refresh():
    session, first = Session.open("p-000000000001", "xingqiao", now=T0, ttl=100)
    with pytest.raises(SessionRefused) as refused:
        session.rotate(refresh_digest(first), now=T0 + 100)
    assert refused.value.reason == "expired" and not session.active(T0 + 100)


def test_an_unknown_token_is_refused_without_revoking():
    session, _ = Session.open("p-000000000001", "xingqiao", now=T0, ttl=100)
    with pytest.raises(SessionRefused) as refused:
        session.rotate(refresh_digest("not-the-token"), now=T0 + 1)
    assert refused.value.reason == "unknown" and session.revoked_at is None


def test_revocation_is_idempotent_and_first_reason_stands():
    session, first = Session.open("p-000000000001", "xingqiao", now=T0, ttl=100)
    assert session.revoke(T0 + 1, "signed_out")
    assert not session.revoke(T0 + 2, "revoked_by_admin")
    assert (session.revoked_at, session.revoked_reason) == (T0 + 1, "signed_out")
    with pytest.raises(SessionRefused):
        session.rotate(refresh_digest(first), now=T0 + 3)


def test_access_tokens_do_not_outlive_the_session():
    session, _ = Session.open("p-000000000001", "xingqiao", now=T0, ttl=1000)
    assert session.access_ttl(T0, 900) == 900
    assert session.access_ttl(T0 + 800, 900) == 200

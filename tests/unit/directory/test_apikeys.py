"""API keys without I/O: format, hashing, verification, revocation, scope, last-use notes, parse errors."""

from __future__ import annotations

import hashlib

import pytest

from services.directory.apikeys import (
    LAST_USE_INTERVAL,
    ApiKey,
    InvalidKeySpec,
    KeyRefused,
    check_spec,
    key_digest,
    new_key,
    parse_key,
)

T0 = 1_767_225_600.0


def test_key_format_is_prefix_hex_id_and_32_url_safe_characters():
    for _ in range(50):
        key_id, key = new_key()
        prefix, middle, secret = key.split("_", 2)
        assert prefix == "hsk" and middle == key_id
        assert len(key_id) == 8 and int(key_id, 16) >= 0
        assert len(secret) == 32 and all(c.isalnum() or c in "-_" for c in secret)
        assert parse_key(key) == key_id


def test_keys_differ():
    assert len({new_key()[1] for _ in range(100)}) == 100


def test_record_keeps_a_sha256_of_the_whole_key_and_never_the_key():
    key, record = ApiKey.create("open311", ["xingqiao"], actor="p-000000000001", now=T0)
    assert record.digest == hashlib.sha256(key.encode()).hexdigest() == key_digest(key)
    assert key not in repr(record) and key.split("_", 2)[2] not in repr(record)
    assert record.key_id == parse_key(key) and record.created_by == "p-000000000001"


def test_the_right_key_verifies_to_an_integrator_principal():
    key, record = ApiKey.create("hotline-12345", ["xingqiao", "qingbo"], actor=None, now=T0)
    assert record.verify(key, now=T0 + 1) == {
        "subject": "key:hotline-12345", "role": "integrator", "community": "xingqiao",
        "communities": ["xingqiao", "qingbo"], "key_id": record.key_id,
    }


def test_a_key_with_one_character_changed_is_refused():
    key, record = ApiKey.create("open311", ["xingqiao"], actor=None, now=T0)
    forged = key[:-1] + ("a" if key[-1] != "a" else "b")
    with pytest.raises(KeyRefused) as refused:
        record.verify(forged, now=T0)
    assert refused.value.reason == "mismatch"


def test_another_records_key_is_refused():
    key, _ = ApiKey.create("one", ["xingqiao"], actor=None, now=T0)
    _, other = ApiKey.create("two", ["xingqiao"], actor=None, now=T0)
    with pytest.raises(KeyRefused):
        other.verify(key, now=T0)


def test_a_revoked_key_is_refused_and_first_revocation_stands():
    key, record = ApiKey.create("open311", ["xingqiao"], actor=None, now=T0)
    assert record.revoke(T0 + 5) and not record.revoke(T0 + 6)
    assert record.revoked_at == T0 + 5
    with pytest.raises(KeyRefused) as refused:
        record.verify(key, now=T0 + 7)
    assert refused.value.reason == "revoked"


@pytest.mark.parametrize("text", [
    None, 42, "", "hsk", "hsk_0123abcd", "hsk_0123ABCD_" + "a" * 32, "hsk_0123abc_" + "a" * 32,
    "hsk_0123abcd_" + "a" * 31, "hsk_0123abcd_" + "a" * 33, "sk_0123abcd_" + "a" * 32,
    "hsk_0123abcd_" + "a" * 31 + "!", " hsk_0123abcd_" + "a" * 32, "hsk_0123abcd_" + "a" * 32 + "\n",
])
def test_malformed_keys_fail_to_parse(text):
    with pytest.raises(KeyRefused) as refused:
        parse_key(text)
    assert refused.value.reason == "malformed"


def test_scope_is_the_keys_communities():
    _, record = ApiKey.create("open311", ["xingqiao"], actor=None, now=T0)
    assert record.allows("xingqiao") and not record.allows("qingbo")


def test_spec_validation_reports_per_field():
    with pytest.raises(InvalidKeySpec) as invalid:
        check_spec("Has Spaces", ["Xing Qiao"])
    assert set(invalid.value.errors) == {"name", "communities"}
    with pytest.raises(InvalidKeySpec) as invalid:
        check_spec("ok-name", None)
    assert set(invalid.value.errors) == {"communities"}
    with pytest.raises(InvalidKeySpec):
        check_spec("x" * 65, ["xingqiao"])
    with pytest.raises(InvalidKeySpec):
        check_spec("open311\n", ["xingqiao\n"])  # "$" would have let a trailing newline through
    assert check_spec("ok.name_1", "xingqiao") == ("ok.name_1", ["xingqiao"])


def test_last_use_is_noted_at_most_once_a_minute():
    _, record = ApiKey.create("open311", ["xingqiao"], actor=None, now=T0)
    assert record.due_for_use_note(T0)
    record.last_used_at = T0
    assert not record.due_for_use_note(T0 + LAST_USE_INTERVAL - 1)
    assert record.due_for_use_note(T0 + LAST_USE_INTERVAL)

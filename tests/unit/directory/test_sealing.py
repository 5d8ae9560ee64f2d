"""Field encryption: a round trip, no plaintext in the ciphertext, keys bound to fields and to the key."""

from __future__ import annotations

import base64

import pytest

from kernel.config import Settings
from services.directory.sealing import Sealer, SealingError, master_key

PHONE = "13800002001"


def test_a_sealed_phone_opens_to_itself_and_holds_none_of_its_digits_in_a_run():
    sealer = Sealer.from_settings(Settings(data_key=base64.b64encode(bytes(range(32))).decode()))
    sealed = sealer.seal("phone", PHONE)
    assert sealer.open("phone", sealed) == PHONE
    text = sealed.decode("latin-1")
    # no run of 5 of the phone's consecutive digits survives (a random match is ~1e-9 per position)
    assert not any(PHONE[i:i + 5] in text for i in range(len(PHONE) - 4))
    assert sealer.seal("phone", PHONE) != sealed  # a fresh nonce every time


def test_a_value_sealed_for_one_field_or_key_does_not_open_as_another():
    sealer, other = Sealer(bytes(32)), Sealer(bytes([1] * 32))
    sealed = sealer.seal("phone", PHONE)
    with pytest.raises(SealingError):
        sealer.open("name", sealed)
    with pytest.raises(SealingError):
        other.open("phone", sealed)
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(SealingError):
        sealer.open("phone", tampered)


def test_lookup_hashes_are_keyed_and_stable():
    one, two = Sealer(bytes(32)), Sealer(bytes([7] * 32))
    assert one.lookup_hash("phone", PHONE) == one.lookup_hash("phone", PHONE)
    assert one.lookup_hash("phone", PHONE) != two.lookup_hash("phone", PHONE)
    assert one.lookup_hash("phone", PHONE) != one.lookup_hash("phone", "13800002002")
    assert PHONE not in one.lookup_hash("phone", PHONE)


def test_the_master_key_comes_from_the_data_key_or_else_the_secret():
    assert master_key(Settings(secret="a")) != master_key(Settings(secret="b"))
    with pytest.raises(ValueError, match="32 bytes"):
        master_key(Settings(data_key=base64.b64encode(b"short").decode()))
    with pytest.raises(ValueError, match="base64"):
        master_key(Settings(data_key="not base64 at all!"))

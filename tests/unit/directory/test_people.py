"""Phones, masks, ids, roles, consents, erasure and who may see whom."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.directory.people import (
    Address,
    InvalidPhone,
    Person,
    is_person_id,
    mask_phone,
    may_read_full,
    new_person_id,
    normalise_phone,
    primary_role,
    resident_scope,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize("text", ["13800005678", "+8613800005678", "+86 138 0000 5678", "0086-138-0000-5678",
                                  "86 13800005678", " 138-0000-5678 "])
def test_mainland_mobiles_are_normalised_with_or_without_the_country_code(text):
    assert normalise_phone(text) == "13800005678"


@pytest.mark.parametrize("text", ["12800005678", "1380000567", "138000056789", "+1 13800005678", "0531-8888888",
                                  "", "abc"])
def test_anything_else_is_not_a_mobile(text):
    with pytest.raises(InvalidPhone):
        normalise_phone(text)


def test_masking_keeps_three_and_four_digits():
    assert mask_phone("13800005678") == "138****5678"
    assert "0000" not in mask_phone("13800005678")


def test_ids_are_opaque_and_distinct():
    ids = {new_person_id() for _ in range(200)}
    assert len(ids) == 200 and all(is_person_id(i) and len(i) == 14 for i in ids)


def test_the_token_role_is_the_widest():
    assert primary_role(["resident", "volunteer", "secretary"]) == "secretary"
    assert primary_role(["resident"]) == "resident"


def resident(**changes) -> Person:
    person = Person("p-00000000000a", "xingqiao", "王秀英", "13800002001", address=Address("b09", "1", "101"),
                    birth_year=1940, household="H0911", flags=["elderly", "lives_alone"], email="w@example.cn")
    for key, value in changes.items():
        setattr(person, key, value)
    return person


def test_a_masked_view_hides_phone_name_and_room_a_full_view_shows_them():
    masked, full = resident().view(full=False), resident().view(full=True)
    assert masked["phone"] == "138****2001" and masked["name"] == "王**" and masked["address"]["room"] is None
    assert "contacts" not in masked and masked["household"] is None
    assert full["phone"] == "13800002001" and full["address"]["room"] == "101"
    assert full["contacts"]["email"] == "w@example.cn"


def test_erasure_keeps_a_tombstone_with_nothing_personal():
    tomb = resident().erased(NOW)
    assert (tomb.id, tomb.community, tomb.erased_at) == ("p-00000000000a", "xingqiao", NOW)
    personal = (tomb.name, tomb.phone, tomb.address, tomb.birth_year, tomb.household, tomb.email,
                tomb.wechat_openid, tomb.password_hash)
    assert personal == (None,) * 8 and tomb.flags == [] and tomb.consents == {}
    assert "13800002001" not in repr(tomb.view(full=True))


def test_consents_keep_the_latest_decision_per_purpose():
    person = resident()
    person.record_consent("sms", True, NOW)
    person.record_consent("sms", False, NOW + timedelta(days=1))
    assert person.consents["sms"].granted is False and person.consents["sms"].at == NOW + timedelta(days=1)


def test_retention_erases_only_who_moved_out_long_enough_ago():
    assert resident(moved_out_at=NOW - timedelta(days=400)).due_for_erasure(NOW)
    assert not resident(moved_out_at=NOW - timedelta(days=30)).due_for_erasure(NOW)
    assert not resident().due_for_erasure(NOW)
    assert not resident(moved_out_at=NOW - timedelta(days=400), erased_at=NOW).due_for_erasure(NOW)


WORKER_G3 = {"subject": "p-0000000000w3", "role": "grid_worker", "community": "xingqiao", "grids": ["g3"]}
SECRETARY = {"subject": "p-0000000000s1", "role": "secretary", "community": "xingqiao", "grids": []}


def test_a_grid_worker_lists_their_grids_a_secretary_the_community_nobody_another_community():
    assert resident_scope(WORKER_G3, "xingqiao") == {"g3"}
    assert resident_scope(SECRETARY, "xingqiao") is None
    for viewer in ({**SECRETARY, "community": "dongcheng"}, {**WORKER_G3, "role": "resident"},
                   {**SECRETARY, "role": "ops"}):
        with pytest.raises(PermissionError):
            resident_scope(viewer, "xingqiao")


def test_full_records_are_for_the_person_and_staff_whose_scope_covers_them():
    person = resident()
    assert may_read_full({"subject": person.id, "role": "resident", "community": "xingqiao"}, "xingqiao",
                         person, "g3")
    assert not may_read_full({"subject": "p-0000000000zz", "role": "resident", "community": "xingqiao"},
                             "xingqiao", person, "g3")
    assert may_read_full(WORKER_G3, "xingqiao", person, "g3")
    assert not may_read_full(WORKER_G3, "xingqiao", person, "g4")
    assert may_read_full(SECRETARY, "xingqiao", person, "g4")
    assert not may_read_full({**SECRETARY, "community": "dongcheng"}, "xingqiao", person, "g4")

"""The anonymising rule of the ticket (PIPL erasure and retention), without I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from services.tickets.catalogue import Service
from services.tickets.domain import (
    ERASED_NOTE,
    Actor,
    State,
    Ticket,
    anonymised_payload,
    impersonal_address,
)

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=2)
LEAK = Service("roof_leak", "房屋漏水", "屋顶漏水", "房屋设施", "urgent", ("漏水",), False)
SECRETARY = Actor("s-1", "secretary")
WORKER = Actor("w-1", "grid_worker")


def closed_ticket() -> Ticket:
    """Reported by p-1 (phone in the text), p-2 attached, resolved, both answered; p-1's note is personal."""
    ticket = Ticket.receive("T1", "xingqiao", LEAK, "我家卫生间漏水，电话13812345678，张三", "兴乔小区3号楼2单元401",
                            "p-1", "resident", NOW, lat=30.27, long=120.15)
    ticket.attach_resident("p-2", NOW, Actor("p-2", "resident"))
    ticket.dispatch({"kind": "worker", "id": "w-1"}, NOW, SECRETARY)
    ticket.accept(NOW, WORKER)
    ticket.start(NOW, WORKER)
    ticket.resolve("已更换防水层", NOW, WORKER)
    ticket.record_callback("fixed", "修好了，谢谢王师傅，我住401", NOW, Actor("p-1", "resident"),
                           satisfaction="satisfied")
    ticket.record_callback("fixed", "楼上不漏了", NOW, Actor("p-2", "resident"))
    ticket.pull_events()
    return ticket


def text_of(ticket: Ticket) -> str:
    return json.dumps(ticket.to_document(), ensure_ascii=False, default=str)


def test_erasing_the_reporter_removes_their_id_text_room_and_place():
    ticket = closed_ticket()
    before = ticket.to_document()
    assert ticket.anonymise({"p-1": "anon-a"}, LATER) is True
    text = text_of(ticket)
    assert "p-1" not in text
    assert "13812345678" not in text and "张三" not in text and "401" not in text and "我住" not in text
    assert ticket.reporter == "anon-a" and ticket.attached_residents == ["anon-a", "p-2"]
    assert ticket.description == ERASED_NOTE
    assert ticket.address_string == "兴乔小区3号楼"
    assert (ticket.lat, ticket.long) == (None, None)
    assert [entry["note"] for entry in ticket.callbacks] == [ERASED_NOTE, "楼上不漏了"]  # p-2's own words stay
    # What keeps it counting stays: state, category, priority, times, assignee, the timeline's entries.
    for name in ("state", "category", "priority", "service_code", "created_at", "updated_at", "assignee",
                 "first_response_at", "callback_round"):
        assert ticket.to_document()[name] == before[name], name
    assert [entry["type"] for entry in ticket.timeline] == [entry["type"] for entry in before["timeline"]]
    assert ticket.state is State.CONFIRMED
    assert ticket.version == before["version"] + 1
    assert ticket.anonymised_at is None  # only the retention rule marks a whole ticket


def test_erasing_an_attached_resident_leaves_the_reporters_report():
    ticket = closed_ticket()
    assert ticket.anonymise({"p-2": "anon-b"}, LATER)
    assert "p-2" not in text_of(ticket) and "楼上不漏了" not in text_of(ticket)
    assert ticket.attached_residents == ["p-1", "anon-b"]
    assert ticket.description.startswith("我家卫生间漏水") and ticket.address_string == "兴乔小区3号楼2单元401"
    attached = [entry for entry in ticket.timeline if entry["type"] == "ticket.attached"]
    assert attached[0]["resident"] == "anon-b" and attached[0]["by"] == "anon-b"


def test_anonymising_twice_changes_nothing_more():
    ticket = closed_ticket()
    assert ticket.anonymise({"p-1": "anon-a"}, LATER)
    once = ticket.to_document()
    assert ticket.anonymise({"p-1": "anon-c"}, LATER + timedelta(hours=1)) is False
    assert ticket.to_document() == once


def test_a_resident_the_ticket_does_not_name_changes_nothing():
    ticket = closed_ticket()
    version = ticket.version
    assert ticket.anonymise({"p-9": "anon-z"}, LATER) is False
    assert ticket.version == version


def test_the_retention_rule_anonymises_everyone_and_marks_the_ticket():
    ticket = closed_ticket()
    assert ticket.anonymise({who: f"anon-{i}" for i, who in enumerate(ticket.people)}, LATER, whole=True)
    text = text_of(ticket)
    assert "p-1" not in text and "p-2" not in text and "楼上不漏了" not in text and "401" not in text
    assert ticket.anonymised_at == LATER
    assert ticket.anonymise({}, LATER + timedelta(days=1), whole=True) is False  # marked once, then stable
    assert ticket.anonymised_at == LATER


def test_a_ticket_round_trips_its_anonymised_mark():
    ticket = closed_ticket()
    ticket.anonymise({"p-1": "a", "p-2": "b"}, LATER, whole=True)
    assert Ticket.from_document(ticket.to_document()).anonymised_at == LATER


@pytest.mark.parametrize(("address", "kept"), [
    ("兴乔小区3号楼2单元401", "兴乔小区3号楼"),
    ("3-2-401", "3号楼"),
    ("体育场街道兴乔社区12幢1单元302室", "体育场街道兴乔社区12幢"),
    ("兴乔小区3号楼", "兴乔小区3号楼"),
    ("王大妈家楼下", "（地址已隐去）"),
    (None, None),
])
def test_an_address_is_cut_to_its_building(address, kept):
    assert impersonal_address(address) == kept
    assert impersonal_address(kept) == kept  # cutting again changes nothing


def test_event_payloads_of_the_outbox_follow_the_same_rule():
    received = {"ticket_id": "T1", "reporter": "p-1", "attached_residents": ["p-1"], "description": "张三家漏水",
                "address_string": "3-2-401", "lat": 30.0, "long": 120.0, "state": "received"}
    payload = anonymised_payload(received, {"p-1": "anon-a"})
    assert payload == {**received, "reporter": "anon-a", "attached_residents": ["anon-a"],
                       "description": ERASED_NOTE, "address_string": "3号楼", "lat": None, "long": None}
    callback = {"ticket_id": "T1", "resident": "p-2", "note": "我住402",
                "actor": {"subject": "p-2", "role": "resident"}, "attached_residents": ["p-1", "p-2"]}
    erased = anonymised_payload(callback, {"p-2": "anon-b"})
    assert erased["resident"] == "anon-b" and erased["note"] == ERASED_NOTE
    assert erased["actor"] == {"subject": "anon-b", "role": "resident"}
    assert erased["attached_residents"] == ["p-1", "anon-b"]
    assert anonymised_payload(callback, {"p-1": "anon-a"})["note"] == "我住402"  # not p-1's words


def test_an_erased_resident_no_longer_names_the_photos_they_attached():
    photo = {"url": "/api/v1/photos/" + "a" * 32, "content_type": "image/jpeg", "size": 2048}
    ticket = Ticket.receive("T2", "xingqiao", LEAK, "顶楼漏水，见照片", "兴乔小区3号楼", "p-1", "resident", NOW,
                            attachments=[photo])
    assert [entry["by"] for entry in ticket.attachments] == ["p-1"]
    ticket.anonymise({"p-1": "anon-1"}, LATER)
    assert [entry["by"] for entry in ticket.attachments] == ["anon-1"]
    assert "p-1" not in json.dumps(ticket.to_document(), default=str)


def test_the_answers_to_the_category_s_questions_go_with_the_description():
    erased = Ticket.receive("T3", "xingqiao", LEAK, "顶楼漏水", "兴乔小区3号楼", "p-1", "resident", NOW,
                            attributes={"floor": 6, "detail": "我是张三，电话13812345678"})
    kept = Ticket.receive("T4", "xingqiao", LEAK, "顶楼漏水", "兴乔小区3号楼", "p-2", "resident", NOW,
                          attributes={"floor": 6})
    erased.anonymise({"p-1": "anon-1"}, LATER)
    kept.anonymise({"p-1": "anon-1"}, LATER)  # someone else's ticket keeps its answers
    assert erased.attributes == {} and kept.attributes == {"floor": 6}
    kept.anonymise({}, LATER, whole=True)  # retention
    assert kept.attributes == {}

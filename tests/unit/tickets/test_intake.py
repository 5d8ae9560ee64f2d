"""Intake's rules: the category's questions (one rule for the native API and Open311), attachments, photo uploads."""

from __future__ import annotations

import pytest
from marshmallow import ValidationError

from kernel.contracts import (
    MAX_ATTACHMENT_BYTES,
    AttachmentSchema,
    CreateTicketSchema,
    StaffCreateTicketSchema,
)
from kernel.errors import ValidationFailed
from services.tickets import intake
from services.tickets.catalogue import shipped_catalogue
from services.tickets.open311 import Open311RequestSchema
from services.tickets.photos import check_upload, sniffed_type
from tests.support.images import tiny_png

LEAK = shipped_catalogue().get("roof_leak")  # floor (number, required), still_leaking (list, required), leak_spots
BASE = {"service_code": "roof_leak", "description": "楼顶漏水", "address_string": "9号楼"}
PHOTO = "/api/v1/photos/" + "0123456789abcdef" * 2


def failure(call, *args, **kwargs) -> dict:
    with pytest.raises(ValidationFailed) as caught:
        call(*args, **kwargs)
    return caught.value.details


# --- the request schemas -----------------------------------------------------------------------------

@pytest.mark.parametrize("schema", [CreateTicketSchema(), StaffCreateTicketSchema()])
def test_both_create_bodies_take_answers_in_open311_s_shape(schema):
    answers = {"floor": "6", "still_leaking": "yes", "leak_spots": ["ceiling", "wall"]}
    assert schema.load({**BASE, "attributes": answers})["attributes"] == answers
    assert "attributes" not in schema.load(BASE)  # left out: intake.answers holds it to the required questions


@pytest.mark.parametrize("attributes", [["floor"], {"floor": {"nested": 1}}, {"floor": True},
                                        {"floor": "x" * 1001}, {"": "6"}, {f"q{i}": "1" for i in range(65)}])
def test_an_answer_is_a_short_value_or_a_list_of_them(attributes):
    with pytest.raises(ValidationError) as caught:
        CreateTicketSchema().load({**BASE, "attributes": attributes})
    assert "attributes" in caught.value.messages


def test_open311_and_the_native_body_share_the_shape_rule():
    for schema in (CreateTicketSchema(), Open311RequestSchema()):
        with pytest.raises(ValidationError) as caught:
            schema.load({**BASE, "attributes": {"floor": [{"a": 1}]}})
        assert caught.value.messages["attributes"] == [
            "each attribute is a value or a list of values (1000 characters at most)"]


@pytest.mark.parametrize("url", [PHOTO, "https://img.example.cn/leak.jpg"])
def test_an_attachment_is_an_https_url_or_a_photo_uploaded_here(url):
    reference = {"url": url, "content_type": "image/png", "size": 73}
    assert AttachmentSchema().load(reference) == reference


@pytest.mark.parametrize("url", ["http://img.example.cn/leak.jpg", "/api/v1/photos/xyz", PHOTO + "/../x",
                                 "/api/v1/tickets/" + "0" * 32, PHOTO.upper(), "javascript:alert(1)", ""])
def test_any_other_address_is_refused(url):
    with pytest.raises(ValidationError) as caught:
        AttachmentSchema().load({"url": url, "content_type": "image/png", "size": 73})
    assert set(caught.value.messages) == {"url"}


# --- the category's questions: intake.answers ----------------------------------------------------------

def test_answers_are_cleaned_by_their_datatype():
    assert intake.answers(LEAK, {"floor": "6", "still_leaking": "no", "leak_spots": ["wall"]}) == {
        "floor": 6, "still_leaking": "no", "leak_spots": ["wall"]}


def test_every_bad_answer_is_listed_at_once_under_the_body_s_path():
    errors = failure(intake.answers, LEAK, {"floor": "six", "still_leaking": "maybe", "colour": "red"})
    assert errors == {"attributes.floor": ["must be a number"],
                      "attributes.still_leaking": ["must be one of yes, no, rain_only"],
                      "attributes.colour": ["not an attribute of this service"]}


def test_a_body_that_answers_must_answer_every_required_question():
    assert failure(intake.answers, LEAK, {"floor": "6"}) == {"attributes.still_leaking": ["required"]}
    assert set(failure(intake.answers, LEAK, {})) == {"attributes.floor", "attributes.still_leaking"}


def test_a_body_that_does_not_answer_at_all_must_still_answer_the_required_questions():
    assert failure(intake.answers, LEAK, None) == {"attributes.floor": ["required"],
                                                   "attributes.still_leaking": ["required"]}


def test_the_drain_s_required_question_is_asked_in_either_spelling():
    drain = shipped_catalogue().get("blocked_drain")
    assert failure(intake.answers, drain, None) == {"attributes.overflowing": ["required"]}
    assert failure(intake.answers, drain, {}, field=intake.OPEN311_FIELD) == {
        "attribute[overflowing]": ["required"]}


@pytest.mark.parametrize("code", ["sanitation", "street_light", "noise"])
def test_a_category_without_required_questions_takes_a_body_without_answers(code):
    assert intake.answers(shipped_catalogue().get(code), None) == {}
    assert intake.answers(shipped_catalogue().get(code), {}) == {}


def test_open311_names_the_same_problems_in_its_own_spelling():
    errors = failure(intake.answers, LEAK, {"floor": "six"}, field=intake.OPEN311_FIELD)
    assert errors == {"attribute[floor]": ["must be a number"], "attribute[still_leaking]": ["required"]}


# --- photo uploads: the bytes must be what the type says ---------------------------------------------

@pytest.mark.parametrize("content_type, data", [
    ("image/png", tiny_png()),
    ("image/jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"),
    ("image/webp", b"RIFF\x24\x00\x00\x00WEBPVP8 "),
    ("image/heic", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"),
    ("application/pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"),
])
def test_each_accepted_type_is_recognised_by_its_first_bytes(content_type, data):
    assert sniffed_type(data) == content_type
    check_upload(content_type, data)  # raises on refusal


@pytest.mark.parametrize("content_type, data, field", [
    ("image/jpeg", "一段文字，不是照片".encode(), "body"),
    ("image/jpeg", tiny_png(), "body"),  # a PNG sent as a JPEG
    ("image/png", b"", "body"),
    ("image/png", tiny_png() + bytes(MAX_ATTACHMENT_BYTES), "body"),
    ("image/gif", b"GIF89a\x01\x00", "content_type"),
    ("text/plain", b"hello", "content_type"),
])
def test_anything_else_is_refused_with_what_is_wrong(content_type, data, field):
    assert set(failure(check_upload, content_type, data)) == {field}

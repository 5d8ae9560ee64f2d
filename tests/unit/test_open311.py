"""Open311 GeoReport v2 without I/O: rendering, the error format, form arguments, attributes, the 90-day window.

Expectations are written from the published spec (wiki.open311.org/GeoReport_v2), not from the code.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree

import pytest
from marshmallow import ValidationError

from gateway.http import BadRequest
from gateway.open311 import error_answer, open311_status, parse_form, render, request_arguments
from kernel.errors import NotFound, TooManyRequests, Unauthorized, ValidationFailed
from kernel.permissions import allowed
from services.tickets.catalogue import DEFAULT_PATH, Catalogue, CatalogueError
from services.tickets.domain import Ticket
from services.tickets.open311 import Open311QuerySchema, Open311RequestSchema, open311_view, open311_window

# The spec's element order of a request (GET requests and GET requests/{id}).
SPEC_REQUEST_ORDER = ["service_request_id", "status", "status_notes", "service_name", "service_code", "description",
                      "agency_responsible", "service_notice", "requested_datetime", "updated_datetime",
                      "expected_datetime", "address", "address_id", "zipcode", "lat", "long", "media_url"]
SPEC_ATTRIBUTE_ORDER = ["variable", "code", "datatype", "required", "datatype_description", "order", "description",
                        "values"]


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load()


# --- rendering ---------------------------------------------------------------------------------------------

def test_services_in_xml_have_the_specs_elements_under_services_service(catalogue):
    content_type, body = render("services", [s.to_open311() for s in catalogue.all()], "xml")
    assert content_type == "text/xml; charset=utf-8"
    assert body.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    root = ElementTree.fromstring(body)
    assert root.tag == "services" and {child.tag for child in root} == {"service"}
    first = root[0]
    assert [child.tag for child in first] == ["service_code", "service_name", "description", "metadata", "type",
                                              "keywords", "group"]
    assert first.findtext("metadata") == "true" and first.findtext("service_code") == "roof_leak"
    assert first.findtext("service_name") == "房屋漏水"  # UTF-8 text, not escapes


def test_a_service_definition_in_json_and_xml(catalogue):
    definition = catalogue.get("roof_leak").to_open311_definition()
    as_json = json.loads(render("service_definition", definition, "json")[1])
    assert as_json["service_code"] == "roof_leak"
    assert list(as_json["attributes"][0]) == SPEC_ATTRIBUTE_ORDER
    still = as_json["attributes"][1]
    assert still["datatype"] == "singlevaluelist" and still["required"] is True
    assert {"key": "yes", "name": "还在漏"} in still["values"]
    root = ElementTree.fromstring(render("service_definition", definition, "xml")[1])
    assert root.tag == "service_definition" and [c.tag for c in root] == ["service_code", "attributes"]
    attribute = root.find("attributes/attribute[code='still_leaking']")
    assert [c.tag for c in attribute] == SPEC_ATTRIBUTE_ORDER
    assert [v.findtext("key") for v in attribute.findall("values/value")] == ["yes", "no", "rain_only"]
    assert root.find("attributes/attribute[code='floor']").findtext("datatype_description") == "楼层数字，如 6"


def test_a_missing_value_is_null_in_json_and_an_empty_element_in_xml():
    entry = {"service_request_id": "t1", "status": "open", "description": None, "lat": 30.274}
    assert json.loads(render("requests", [entry], "json")[1]) == [entry]
    request = ElementTree.fromstring(render("requests", [entry], "xml")[1]).find("request")
    assert request.find("description") is not None and request.findtext("description") == ""
    assert request.findtext("lat") == "30.274"


def test_members_outside_the_spec_never_reach_the_wire():
    entry = {"service_request_id": "t1", "status": "open", "reporter": "p-1", "phone": "13800001111"}
    body = render("requests", [entry], "json")[1] + render("requests", [entry], "xml")[1]
    assert b"13800001111" not in body and b"reporter" not in body


def test_a_created_request_answers_id_and_notice_but_a_token_answer_has_no_id():
    created = json.loads(render("created", [{"service_request_id": "t1", "service_notice": "n", "account_id": None,
                                             "token": "x"}], "json")[1])
    assert created == [{"service_request_id": "t1", "service_notice": "n", "account_id": None}]
    root = ElementTree.fromstring(render("accepted", [{"token": "x", "service_notice": "n", "account_id": None,
                                                       "service_request_id": "t1"}], "xml")[1])
    assert root.tag == "service_requests" and root.find("request/service_request_id") is None
    assert root.findtext("request/token") == "x"


# --- errors ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("error, status", [
    (Unauthorized("the API key is not valid"), 403),  # the spec: 403 for a missing or invalid api_key
    (NotFound("no service x"), 404),
    (ValidationFailed("bad", {"lat": ["not a number"]}), 400),
    (BadRequest("bad"), 400),
    (TooManyRequests("slow down"), 429),
])
def test_errors_use_the_specs_statuses_and_format(error, status):
    code, content_type, body = error_answer(error, "xml")
    assert code == status and content_type.startswith("text/xml")
    root = ElementTree.fromstring(body)
    assert root.tag == "errors" and [c.tag for c in root[0]] == ["code", "description"]
    assert root[0].findtext("code") == str(status) and root[0].findtext("description")
    as_json = json.loads(error_answer(error, "json")[2])
    assert isinstance(as_json, list) and as_json[0]["code"] == status and as_json[0]["description"]


def test_each_field_problem_is_its_own_error():
    body = json.loads(error_answer(ValidationFailed("bad", {"attribute[floor]": ["required"],
                                                            "lat": ["too big", "not a number"]}), "json")[2])
    assert sorted(e["description"] for e in body) == ["attribute[floor]: required", "lat: not a number",
                                                      "lat: too big"]


def test_no_input_status_becomes_a_5xx():
    assert all(open311_status(status) < 500 for status in (400, 401, 403, 404, 409, 413, 415, 422, 429))


# --- arguments of POST requests ------------------------------------------------------------------------------

def test_the_form_of_the_specs_example_request_is_read():
    raw = (b"api_key=xyz&jurisdiction_id=city.gov&service_code=001&lat=37.76524078&long=-122.4212043"
           b"&address_string=1234+5th+street&email=smit333%40sfgov.edu&device_id=tt222111&account_id=123456"
           b"&first_name=john&last_name=smith&phone=111111111&description=A+large+sinkhole+is+destroying+the+street"
           b"&media_url=http%3A%2F%2Ffarm3.static.flickr.com%2F2002%2F2212426634_5ed477a060.jpg"
           b"&attribute[WHISPAWN]=123456&attribute[WHISDORN]=COISL001")
    data, own = request_arguments(parse_form(raw))
    assert own == {"api_key": "xyz", "jurisdiction_id": "city.gov"}
    assert data["address_string"] == "1234 5th street" and data["attributes"] == {"WHISPAWN": "123456",
                                                                                  "WHISDORN": "COISL001"}
    loaded = Open311RequestSchema().load(data)
    assert loaded["lat"] == pytest.approx(37.76524078) and loaded["media_url"].startswith("http://farm3")


def test_a_multivaluelist_comes_as_repeated_bracketed_attributes():
    data, _ = request_arguments(parse_form(b"attribute[code1][]=v1&attribute[code1][]=v2&attribute[code1][]=v3"))
    assert data["attributes"] == {"code1": ["v1", "v2", "v3"]}


def test_empty_optional_arguments_count_as_absent_and_unknown_ones_are_refused():
    data, own = request_arguments([("service_code", "noise"), ("lat", ""), ("api_key", "")])
    assert data == {"service_code": "noise"} and own == {}
    with pytest.raises(BadRequest) as refused:
        request_arguments([("service_code", "noise"), ("state", "closed")])
    assert "state" in refused.value.details
    with pytest.raises(BadRequest):
        request_arguments([("service_code", "noise"), ("service_code", "other")])


def test_a_request_needs_a_location_and_lat_goes_with_long():
    with pytest.raises(ValidationError) as nowhere:
        Open311RequestSchema().load({"service_code": "noise"})
    assert "address_string" in nowhere.value.messages
    with pytest.raises(ValidationError):
        Open311RequestSchema().load({"service_code": "noise", "lat": "91", "long": "120"})
    with pytest.raises(ValidationError):
        Open311RequestSchema().load({"service_code": "noise", "address_string": "x", "description": "d" * 4001})


# --- attributes against the service definition -----------------------------------------------------------------

def test_required_attributes_datatypes_and_value_lists_are_checked(catalogue):
    leak = catalogue.get("roof_leak")
    _, errors = leak.check_attributes({})
    assert set(errors) == {"attribute[floor]", "attribute[still_leaking]"}
    _, errors = leak.check_attributes({"floor": "二楼", "still_leaking": "maybe", "leak_spots": ["wall", "roof"],
                                       "colour": "red"})
    assert set(errors) == {"attribute[floor]", "attribute[still_leaking]", "attribute[leak_spots]",
                           "attribute[colour]"}
    values, errors = leak.check_attributes({"floor": "6", "still_leaking": "no", "leak_spots": ["wall", "pipe"]})
    assert errors == {} and values == {"floor": 6, "still_leaking": "no", "leak_spots": ["wall", "pipe"]}


def test_datetime_and_string_attributes(catalogue):
    noise = catalogue.get("noise")
    assert noise.check_attributes({"noticed_at": "2026-11-26T22:30:00+08:00"}) == (
        {"noticed_at": "2026-11-26T22:30:00+08:00"}, {})
    assert "attribute[noticed_at]" in noise.check_attributes({"noticed_at": "昨晚"})[1]
    assert "attribute[noticed_at]" in noise.check_attributes({"noticed_at": "2026-11-26T22:30:00"})[1]  # no zone
    light = catalogue.get("street_light")
    assert "attribute[pole_number]" in light.check_attributes({"pole_number": "A\nB"})[1]
    assert light.check_attributes({"light_kind": ["street", "stairwell"]})[1]  # a single value list takes one


def test_private_categories_are_marked_and_a_bad_definition_fails_at_load(catalogue):
    assert {s.code for s in catalogue.all() if s.private} == {"elderly_care_emergency", "elderly_care",
                                                               "neighbour_dispute"}
    data = json.loads(DEFAULT_PATH.read_text(encoding="utf-8"))
    data["services"][0]["attributes"][1]["values"] = []
    with pytest.raises(CatalogueError, match="values are given exactly"):
        Catalogue.from_dict(data)


# --- GET requests: the window ----------------------------------------------------------------------------------

def test_the_default_window_is_the_most_recent_90_days():
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    start, end = open311_window(None, None, now)
    assert end == now and end - start == timedelta(days=90)
    start, end = open311_window(None, datetime(2026, 6, 1, tzinfo=UTC), now)
    assert start == datetime(2026, 3, 3, tzinfo=UTC)


def test_a_window_may_not_span_more_than_90_days_or_run_backwards():
    now = datetime(2026, 12, 1, tzinfo=UTC)
    with pytest.raises(ValidationError):
        open311_window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 4, 2, tzinfo=UTC), now)
    with pytest.raises(ValidationError):
        open311_window(datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC), now)


def test_the_query_schema_wants_w3_dates_with_a_zone_and_known_statuses():
    loaded = Open311QuerySchema().load({"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-01-31T00:00:00+08:00"})
    assert loaded["start_date"] == datetime(2026, 1, 1, tzinfo=UTC)
    for bad in ({"start_date": "2026-01-01T00:00:00"}, {"status": ["pending"]}, {"start_date": "yesterday"}):
        with pytest.raises(ValidationError):
            Open311QuerySchema().load(bad)
    ids = Open311QuerySchema().load({"service_request_id": ["a", "b"], "start_date": "2020-01-01T00:00:00Z",
                                     "end_date": "2026-01-01T00:00:00Z"})
    assert ids["service_request_id"] == ["a", "b"]  # ids override every other argument: no window check


# --- the public view of a ticket -------------------------------------------------------------------------------

def _document(catalogue, **changes) -> dict:
    ticket = Ticket.receive("t1", "xingqiao", catalogue.get("roof_leak"), "李华家卫生间漏水，电话13800001111",
                            "兴乔小区3号楼2单元401", "key:hotline", "open311", datetime(2026, 11, 26, tzinfo=UTC),
                            lat=30.274321, long=120.155678)
    return {**ticket.to_document(), "media_url": "https://img.example/1.jpg", "address_id": "3-2-401", **changes}


def test_the_public_view_has_public_fields_only(catalogue):
    view = open311_view(_document(catalogue), full=False)
    assert list(view) == SPEC_REQUEST_ORDER
    assert view["status"] == "open" and view["service_name"] == "房屋漏水"
    assert view["description"] is None and view["media_url"] is None and view["address_id"] is None
    assert view["address"] == "兴乔小区3号楼"  # the building, never the room
    assert (view["lat"], view["long"]) == (30.274, 120.156)
    assert view["requested_datetime"] == "2026-11-26T00:00:00Z"
    assert "13800001111" not in json.dumps(view, ensure_ascii=False) and "key:hotline" not in json.dumps(view)


def test_the_keyed_view_is_whole(catalogue):
    view = open311_view(_document(catalogue), full=True)
    assert view["description"].startswith("李华") and view["address"] == "兴乔小区3号楼2单元401"
    assert (view["lat"], view["media_url"]) == (30.274321, "https://img.example/1.jpg")


def test_status_is_open_or_closed_as_the_domain_maps_it(catalogue):
    closed = open311_view(_document(catalogue, state="closed_not_fixed", close_reason="duplicate"), full=False)
    assert closed["status"] == "closed" and closed["status_notes"] == "已关闭：重复诉求，已合并"
    assert closed["expected_datetime"] is None
    assert open311_view(_document(catalogue, state="resolved"), full=False)["status"] == "open"


def test_only_integrators_may_file_and_read_whole():
    assert allowed("open311.create", "integrator") and allowed("open311.read_scoped", "integrator")
    for role in ("resident", "grid_worker", "volunteer", "secretary", "ops", "admin"):
        assert not allowed("open311.create", role)

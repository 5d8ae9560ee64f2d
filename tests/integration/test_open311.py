"""Open311 GeoReport v2 conformance over real HTTP, written from the published spec (wiki.open311.org/GeoReport_v2).

The gateway, tickets, notify and the directory run on the real broker and database; the API key is a
directory key. Every route is exercised in both formats, the XML parsed with the standard library.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree

import pytest
import requests

from gateway.routes.open311 import _token
from services.tickets.service import TicketsService
from tests.integration.harness import bearer, start_gateway
from tests.integration.test_directory_signin import (  # noqa: F401 (fixtures)
    call,
    directory,
    people,
    signin_settings,
    sms_standin,
)

pytestmark = pytest.mark.integration

V2 = "/open311/v2"
REQUEST_ELEMENTS = ["service_request_id", "status", "status_notes", "service_name", "service_code", "description",
                    "agency_responsible", "service_notice", "requested_datetime", "updated_datetime",
                    "expected_datetime", "address", "address_id", "zipcode", "lat", "long", "media_url"]
SERVICE_ELEMENTS = ["service_code", "service_name", "description", "metadata", "type", "keywords", "group"]
LEAK = {"service_code": "roof_leak", "description": "顶楼卫生间漏水，住户李华 13800001111", "lat": "30.274321",
        "long": "120.155678", "address_string": "兴乔小区3号楼2单元401", "attribute[floor]": "6",
        "attribute[still_leaking]": "yes", "attribute[leak_spots][]": ["ceiling", "wall"],
        "media_url": "https://img.example/leak.jpg", "first_name": "华", "phone": "13800001111"}


@pytest.fixture
def platform(container_factory, signin_settings, directory):  # noqa: F811
    url = start_gateway(container_factory, signin_settings, TicketsService)
    key = call(directory, "create_api_key", "hotline-12345", ["xingqiao"], "p-0000000000ad")["key"]
    return {"url": url, "key": key, "settings": signin_settings}


def get(platform, path: str, **params) -> requests.Response:
    return requests.get(platform["url"] + V2 + path, params=params, timeout=10)


def post(platform, fmt: str = "json", headers: dict | None = None, **form) -> requests.Response:
    form.setdefault("api_key", platform["key"])
    return requests.post(f"{platform['url']}{V2}/requests.{fmt}", data=form, headers=headers, timeout=10)


def xml(response: requests.Response) -> ElementTree.Element:
    assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert response.content.startswith(b"<?xml") and b"encoding='utf-8'" in response.content.split(b"\n")[0]
    return ElementTree.fromstring(response.content)


def as_json(response: requests.Response):
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    return response.json()


def json_error(response: requests.Response, status: int) -> list:
    assert response.status_code == status, response.text
    errors = as_json(response)
    assert isinstance(errors, list) and errors and all(set(e) == {"code", "description"} for e in errors)
    return errors


def xml_error(response: requests.Response, status: int) -> ElementTree.Element:
    assert response.status_code == status, response.text
    root = xml(response)
    assert root.tag == "errors" and [c.tag for c in root[0]] == ["code", "description"]
    return root


def file_leak(platform, **changes) -> str:
    created = post(platform, **{**LEAK, **changes})
    assert created.status_code == 201, created.text
    return as_json(created)[0]["service_request_id"]


# --- GET services and service definitions ------------------------------------------------------------------------

def test_get_services_in_json_and_xml_public_without_private_categories(platform):
    services = as_json(get(platform, "/services.json", jurisdiction_id="xingqiao"))
    assert all(list(entry) == SERVICE_ELEMENTS for entry in services)
    codes = [entry["service_code"] for entry in services]
    assert "roof_leak" in codes and "gas_smell" in codes
    assert not {"elderly_care", "elderly_care_emergency", "neighbour_dispute"} & set(codes)
    leak = next(entry for entry in services if entry["service_code"] == "roof_leak")
    assert leak["metadata"] is True and leak["type"] in ("realtime", "batch", "blackbox")

    root = xml(get(platform, "/services.xml"))
    assert root.tag == "services" and [s.findtext("service_code") for s in root.findall("service")] == codes
    assert [c.tag for c in root.find("service")] == SERVICE_ELEMENTS
    assert root.find("service[service_code='roof_leak']").findtext("metadata") == "true"

    keyed = as_json(get(platform, "/services.json", api_key=platform["key"]))
    assert "elderly_care" in [entry["service_code"] for entry in keyed]  # a key sees what it may file


def test_get_a_service_definition_in_json_and_xml(platform):
    definition = as_json(get(platform, "/services/roof_leak.json"))
    assert list(definition) == ["service_code", "attributes"] and definition["service_code"] == "roof_leak"
    floor = definition["attributes"][0]
    assert list(floor) == ["variable", "code", "datatype", "required", "datatype_description", "order",
                           "description", "values"]
    assert (floor["code"], floor["datatype"], floor["required"], floor["order"]) == ("floor", "number", True, 1)
    orders = [a["order"] for a in definition["attributes"]]
    assert orders == sorted(orders) and len(set(orders)) == len(orders)

    root = xml(get(platform, "/services/roof_leak.xml"))
    assert root.tag == "service_definition" and root.findtext("service_code") == "roof_leak"
    spots = root.find("attributes/attribute[code='leak_spots']")
    assert spots.findtext("datatype") == "multivaluelist" and spots.findtext("required") == "false"
    assert [(v.findtext("key"), v.findtext("name")) for v in spots.findall("values/value")][0] == ("ceiling", "天花板")


def test_unknown_and_private_services_are_404_in_the_error_format(platform):
    assert json_error(get(platform, "/services/nothing_here.json"), 404)[0]["code"] == 404
    xml_error(get(platform, "/services/nothing_here.xml"), 404)
    json_error(get(platform, "/services/elderly_care.json"), 404)  # private by nature: not public
    assert get(platform, "/services/elderly_care.json", api_key=platform["key"]).status_code == 200
    xml_error(get(platform, "/services.csv"), 404)
    xml_error(get(platform, "/no/such/thing"), 404)


# --- POST requests ---------------------------------------------------------------------------------------------

def test_post_a_request_answers_its_id_and_notice_and_is_the_native_ticket(platform):
    created = post(platform, jurisdiction_id="xingqiao", **LEAK)
    assert created.status_code == 201, created.text
    [answer] = as_json(created)
    assert list(answer) == ["service_request_id", "service_notice", "account_id"] and "token" not in answer
    assert answer["service_notice"]

    staff = bearer(platform["settings"], "secretary", "p-0000000000se", community="xingqiao")
    native = requests.get(f"{platform['url']}/api/v1/tickets/{answer['service_request_id']}", headers=staff,
                          timeout=10)
    assert native.status_code == 200, native.text
    ticket = native.json()
    assert ticket["source"] == "open311" and ticket["reporter"] == "key:hotline-12345"
    assert ticket["service_code"] == "roof_leak" and ticket["description"] == LEAK["description"]

    root = xml(post(platform, "xml", **LEAK))
    assert root.tag == "service_requests" and [c.tag for c in root.find("request")][:2] == ["service_request_id",
                                                                                            "service_notice"]


def test_post_without_a_key_or_with_a_bad_key_is_403(platform):
    form = {key: value for key, value in LEAK.items()}
    json_error(requests.post(f"{platform['url']}{V2}/requests.json", data=form, timeout=10), 403)
    bad = post(platform, "xml", **{**LEAK, "api_key": "hsk_0badbad0_nottherightsecretatall"})
    assert xml_error(bad, 403).findtext("error/code") == "403"
    json_error(post(platform, **{**LEAK, "api_key": "nonsense"}), 403)
    json_error(post(platform, jurisdiction_id="dongcheng", **LEAK), 403)  # not one of the key's communities


def test_attributes_are_validated_against_the_definition(platform):
    missing = json_error(post(platform, **{k: v for k, v in LEAK.items() if k != "attribute[floor]"}), 400)
    assert any("attribute[floor]" in e["description"] for e in missing)
    wrong = json_error(post(platform, **{**LEAK, "attribute[floor]": "six", "attribute[still_leaking]": "maybe",
                                         "attribute[leak_spots][]": ["roof"], "attribute[colour]": "red"}), 400)
    described = " ".join(e["description"] for e in wrong)
    for code in ("floor", "still_leaking", "leak_spots", "colour"):
        assert f"attribute[{code}]" in described
    json_error(post(platform, **{**LEAK, "service_code": "no_such_service"}), 404)
    json_error(post(platform, service_code="noise", description="楼上装修"), 400)  # no location
    json_error(post(platform, **{**LEAK, "status": "closed"}), 400)  # not an argument of the spec
    xml_error(post(platform, "xml", **{**LEAK, "lat": "north"}), 400)


def test_bad_bodies_are_4xx_never_5xx(platform):
    url = f"{platform['url']}{V2}/requests.json"
    as_json_body = requests.post(url, json={"service_code": "noise"}, timeout=10)
    assert as_json_body.status_code == 415 and as_json(as_json_body)[0]["code"] == 415
    huge = requests.post(url, data=b"description=" + b"x" * 70_000, timeout=10,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert huge.status_code == 413
    latin = requests.post(url, data=b"description=%FF%FE", timeout=10,
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert latin.status_code == 400


def test_a_retry_with_the_same_idempotency_key_is_one_request_and_its_token_finds_it(platform):
    headers = {"Idempotency-Key": "hotline-call-77"}
    first = as_json(post(platform, headers=headers, **LEAK))[0]["service_request_id"]
    again = as_json(post(platform, headers=headers, **LEAK))[0]["service_request_id"]
    assert first == again
    token = _token("key:hotline-12345", "hotline-call-77")
    found = as_json(get(platform, f"/tokens/{token}.json"))
    assert found == [{"service_request_id": first, "token": token}]
    root = xml(get(platform, f"/tokens/{token}.xml"))
    assert root.tag == "service_requests" and [c.tag for c in root.find("request")] == ["service_request_id",
                                                                                        "token"]
    json_error(get(platform, "/tokens/0000000000.json"), 404)


# --- GET requests and GET requests/{id} --------------------------------------------------------------------------

def test_get_a_request_public_view_and_keyed_view(platform):
    ticket_id = file_leak(platform)
    [public] = as_json(get(platform, f"/requests/{ticket_id}.json"))
    assert list(public) == REQUEST_ELEMENTS
    assert public["status"] == "open" and public["service_code"] == "roof_leak" and public["service_name"] == "房屋漏水"
    assert public["address"] == "兴乔小区3号楼" and (public["lat"], public["long"]) == (30.274, 120.156)
    # the random hex id may hold "401" by chance (b84015...): the room must not be anywhere else
    text = json.dumps({**public, "service_request_id": None}, ensure_ascii=False)
    for secret in ("13800001111", "李华", "401", "key:hotline", "leak.jpg"):
        assert secret not in text
    assert public["requested_datetime"].endswith("Z") and datetime.fromisoformat(public["requested_datetime"])

    [keyed] = as_json(get(platform, f"/requests/{ticket_id}.json", api_key=platform["key"]))
    assert keyed["description"] == LEAK["description"] and keyed["address"] == LEAK["address_string"]
    assert keyed["media_url"] == LEAK["media_url"]

    root = xml(get(platform, f"/requests/{ticket_id}.xml"))
    assert root.tag == "service_requests" and [c.tag for c in root.find("request")] == REQUEST_ELEMENTS
    assert root.findtext("request/status") == "open" and root.findtext("request/description") == ""
    json_error(get(platform, "/requests/nope.json"), 404)
    xml_error(get(platform, "/requests/nope.xml"), 404)
    json_error(get(platform, f"/requests/{ticket_id}.json", api_key="hsk_0badbad0_nottherightsecretatall"), 403)


def test_a_private_category_never_appears_in_public_answers(platform):
    private = file_leak(platform, service_code="elderly_care", description="独居老人需要上门", **{
        "attribute[floor]": "", "attribute[still_leaking]": "", "attribute[leak_spots][]": []})
    public_ids = [r["service_request_id"] for r in as_json(get(platform, "/requests.json"))]
    assert private not in public_ids
    json_error(get(platform, f"/requests/{private}.json"), 404)
    assert private not in [r["service_request_id"]
                           for r in as_json(get(platform, "/requests.json", service_request_id=private))]
    keyed = as_json(get(platform, "/requests.json", api_key=platform["key"]))
    assert private in [r["service_request_id"] for r in keyed]


def test_get_requests_filters_and_the_90_day_default_window(platform, mongo_client):
    recent, old = file_leak(platform), file_leak(platform)
    noise = file_leak(platform, service_code="noise", **{"attribute[floor]": "", "attribute[still_leaking]": "",
                                                         "attribute[leak_spots][]": []})
    long_ago = datetime.now(UTC) - timedelta(days=120)
    tickets = mongo_client[platform["settings"].database_name("tickets")]["tickets"]
    tickets.update_one({"_id": old}, {"$set": {"created_at": long_ago}})

    listed = as_json(get(platform, "/requests.json"))
    ids = [r["service_request_id"] for r in listed]
    assert recent in ids and noise in ids and old not in ids  # only the most recent 90 days by default
    times = [r["requested_datetime"] for r in listed]
    assert times == sorted(times, reverse=True)

    window = {"start_date": (long_ago - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "end_date": (long_ago + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S+08:00")}
    assert [r["service_request_id"] for r in as_json(get(platform, "/requests.json", **window))] == [old]
    by_id = as_json(get(platform, "/requests.json", service_request_id=f"{old},{recent}", status="closed"))
    assert {r["service_request_id"] for r in by_id} == {old, recent}  # ids override every other argument

    assert {r["service_code"] for r in as_json(get(platform, "/requests.json", service_code="noise"))} == {"noise"}
    assert as_json(get(platform, "/requests.json", status="closed")) == []
    assert {r["status"] for r in as_json(get(platform, "/requests.json", status="open,closed"))} == {"open"}
    root = xml(get(platform, "/requests.xml", service_code="roof_leak,noise"))
    assert root.tag == "service_requests" and {r.findtext("service_request_id") for r in root} >= {recent, noise}

    too_long = {"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-06-01T00:00:00Z"}
    json_error(get(platform, "/requests.json", **too_long), 400)
    xml_error(get(platform, "/requests.xml", start_date="yesterday"), 400)
    json_error(get(platform, "/requests.json", status="pending"), 400)
    json_error(get(platform, "/requests.json", jurisdiction_id="<script>"), 400)


# --- methods: what each path serves (RFC 9110's Allow), in the spec's error format ------------------------------

def test_options_and_other_methods_name_exactly_what_each_path_serves(platform):
    base = platform["url"] + V2
    for path, allow in (("/requests.json", "GET, POST, OPTIONS"), ("/services.xml", "GET, OPTIONS"),
                        ("/services/roof_leak.json", "GET, OPTIONS"), ("/tokens/abc.json", "GET, OPTIONS"),
                        ("/requests/XQ-1.xml", "GET, OPTIONS")):
        options = requests.options(base + path, timeout=10)
        assert options.status_code == 204 and options.headers["Allow"] == allow, path
    wrong = requests.put(f"{base}/requests.json", data={"service_code": "roof_leak"}, timeout=10)
    assert json_error(wrong, 405)[0]["code"] == 405 and wrong.headers["Allow"] == "GET, POST, OPTIONS"
    deleted = requests.delete(f"{base}/services.xml", timeout=10)
    assert xml_error(deleted, 405).find("error/code").text == "405" and deleted.headers["Allow"] == "GET, OPTIONS"
    unknown = requests.options(f"{base}/nothing.json", timeout=10)
    assert json_error(unknown, 404)[0]["code"] == 404 and "Allow" not in unknown.headers

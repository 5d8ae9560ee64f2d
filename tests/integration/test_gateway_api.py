"""The gateway's HTTP contract over real HTTP: problem details, limits, headers, lists, idempotency, roles."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import requests

from services.notify.service import NotifyService
from services.tickets.service import TicketsService
from services.volunteers.service import VolunteersService
from tests.integration.harness import bearer, start_gateway

pytestmark = pytest.mark.integration

REPORT = {"service_code": "roof_leak", "description": "顶楼漏雨，客厅天花板滴水", "address_string": "兴乔小区5号楼",
          "attributes": {"floor": 5, "still_leaking": "yes"}}  # roof_leak's required answers
PROBLEM = "application/problem+json; charset=utf-8"


@pytest.fixture
def gateway(container_factory, settings):
    # only the gateway reads cors_origins: the services behind it run as on the plain settings
    return start_gateway(container_factory, dataclasses.replace(settings, cors_origins=("https://app.example",)),
                         TicketsService, NotifyService, VolunteersService)


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == PROBLEM
    body = response.json()
    assert body["type"] == f"/problems/{code}" and body["code"] == code and body["status"] == status
    assert body["title"] and body["detail"] and body["correlation_id"] == response.headers["X-Correlation-Id"]
    return body


def test_a_422_is_problem_details_with_per_field_errors(gateway, settings):
    response = requests.post(f"{gateway}/api/v1/tickets", json={"service_code": "roof_leak", "status": "closed"},
                             headers=bearer(settings), timeout=5)
    body = assert_problem(response, 422, "validation_failed")
    assert {"description", "status"} <= set(body["errors"])  # a read-only field is refused, not ignored


def test_a_body_over_the_limit_is_413(gateway, settings):
    response = requests.post(f"{gateway}/api/v1/tickets", data=b'{"d": "' + b"x" * 70_000 + b'"}',
                             headers={**bearer(settings), "Content-Type": "application/json"}, timeout=5)
    assert_problem(response, 413, "payload_too_large")


def test_a_chunked_body_over_the_limit_is_413_too(gateway, settings):
    chunks = (b"x" * 8192 for _ in range(10))
    response = requests.post(f"{gateway}/api/v1/tickets", data=chunks, timeout=5,
                             headers={**bearer(settings), "Content-Type": "application/json"})
    assert response.status_code in (400, 413)  # never a 5xx; 413 when the server reads past the limit


@pytest.mark.parametrize("body, code", [
    ({"description": "x" * 10_001}, "validation_failed"),
    ({"tags": list(range(1001))}, "validation_failed"),
])
def test_oversized_strings_and_arrays_are_422(gateway, settings, body, code):
    response = requests.post(f"{gateway}/api/v1/tickets", json=body, headers=bearer(settings), timeout=5)
    assert_problem(response, 422, code)


@pytest.mark.parametrize("path", ["/api/v1/tickets?limit=101", "/api/v1/tickets?limit=0", "/api/v1/tickets?limit=x",
                                  "/api/v1/tickets?cursor=bm9wZQ", "/api/v1/me/inbox?limit=100000000000",
                                  "/api/v1/volunteer-teams?cursor=AAAAAAAAAAAAAA", "/api/v1/services?limit=-1"])
def test_bad_page_sizes_and_cursors_are_422(gateway, settings, path):
    body = assert_problem(requests.get(gateway + path, headers=bearer(settings), timeout=5), 422, "validation_failed")
    assert set(body["errors"]) <= {"limit", "cursor"}


def test_lists_page_with_cursors(gateway, settings):
    ids = [requests.post(f"{gateway}/api/v1/tickets", json=REPORT, headers=bearer(settings), timeout=5).json()["id"]
           for _ in range(5)]
    seen, cursor = [], None
    while True:
        got = requests.get(f"{gateway}/api/v1/tickets", params={"limit": 2, "cursor": cursor},
                           headers=bearer(settings), timeout=5).json()
        assert set(got) == {"items", "next_cursor"} and len(got["items"]) <= 2
        seen += [ticket["id"] for ticket in got["items"]]
        cursor = got["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    teams = requests.get(f"{gateway}/api/v1/volunteer-teams?limit=3", headers=bearer(settings), timeout=5).json()
    assert len(teams["items"]) == 3 and teams["next_cursor"]
    every = requests.get(f"{gateway}/api/v1/services", headers=bearer(settings), timeout=5).json()
    assert 5 < len(every["items"]) <= 20 and every["next_cursor"] is None  # the default page holds them all
    first = requests.get(f"{gateway}/api/v1/services?limit=5", headers=bearer(settings), timeout=5).json()
    rest = requests.get(f"{gateway}/api/v1/services", params={"cursor": first["next_cursor"], "limit": 100},
                        headers=bearer(settings), timeout=5).json()
    assert first["items"] + rest["items"] == every["items"]


def test_json_is_utf8_with_chinese_as_text(gateway, settings):
    response = requests.post(f"{gateway}/api/v1/tickets", json=REPORT, headers=bearer(settings), timeout=5)
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert "顶楼漏雨".encode() in response.content and b"\\u" not in response.content


def test_security_headers_on_every_answer(gateway, settings):
    for response in (requests.get(f"{gateway}/api/v1/services", headers=bearer(settings), timeout=5),
                     requests.get(f"{gateway}/api/v1/services", timeout=5),
                     requests.get(f"{gateway}/api/v1/nowhere", timeout=5)):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    authed = requests.get(f"{gateway}/api/v1/services", headers=bearer(settings), timeout=5)
    assert authed.headers["Cache-Control"] == "no-store"


def test_unknown_routes_are_problem_404s(gateway):
    assert_problem(requests.get(f"{gateway}/api/v1/nowhere", timeout=5), 404, "no_such_route")


def test_cors_is_open_only_to_configured_origins(gateway, settings):
    good = requests.options(f"{gateway}/api/v1/tickets", timeout=5, headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
    assert good.status_code == 204 and good.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Idempotency-Key" in good.headers["Access-Control-Allow-Headers"]
    bad = requests.options(f"{gateway}/api/v1/tickets", timeout=5, headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in bad.headers and bad.status_code == 403
    plain = requests.get(f"{gateway}/api/v1/services", headers={**bearer(settings), "Origin": "https://evil.example"},
                         timeout=5)
    assert "Access-Control-Allow-Origin" not in plain.headers
    # a ticket's write is conditional: the browser may send If-Match and read the ETag it gets back
    assert "If-Match" in good.headers["Access-Control-Allow-Headers"]
    assert "PUT" in good.headers["Access-Control-Allow-Methods"]
    read = requests.get(f"{gateway}/api/v1/services", headers={**bearer(settings), "Origin": "https://app.example"},
                        timeout=5)
    assert "ETag" in read.headers["Access-Control-Expose-Headers"].split(", ")


def test_options_without_an_origin_answers_what_the_path_serves(gateway):
    known = requests.options(f"{gateway}/api/v1/tickets", timeout=5)
    assert known.status_code == 204 and known.headers["Allow"] == "GET, POST, OPTIONS"
    assert "Access-Control-Allow-Origin" not in known.headers
    year = requests.options(f"{gateway}/api/v1/calendar/2027", timeout=5)
    assert year.headers["Allow"] == "GET, PUT, OPTIONS"
    assert_problem(requests.options(f"{gateway}/api/v1/no/such/thing", timeout=5), 404, "no_such_route")


def test_a_calendar_year_that_is_not_a_number_is_a_problem_404(gateway, settings):
    headers = bearer(settings, role="admin", subject="a-1")
    for method in ("GET", "PUT"):
        response = requests.request(method, f"{gateway}/api/v1/calendar/next%0Ayear", json={}, headers=headers,
                                    timeout=5)
        assert assert_problem(response, 404, "no_such_route")["errors"] == {"year": ["an integer such as 2027"]}


def test_the_docs_page_and_every_file_it_links_are_served_locally(gateway):
    page = requests.get(f"{gateway}/docs", timeout=5)
    assert page.status_code == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    linked = re.findall(r'(?:href|src)="(/docs/[^"]+)"', page.text)
    assert {"/docs/swagger-ui.css", "/docs/swagger-ui-bundle.js", "/docs/init.js", "/docs/favicon-32x32.png"} <= set(
        linked)
    assert "http://" not in page.text and "https://" not in page.text  # nothing from the internet
    for path in linked:
        response = requests.get(f"{gateway}{path}", timeout=10)
        assert response.status_code == 200 and response.content, path
        assert "script-src 'self'" in response.headers["Content-Security-Policy"], path
    icon = requests.get(f"{gateway}/docs/favicon-32x32.png", timeout=5)
    assert icon.headers["Content-Type"] == "image/png" and icon.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert requests.get(f"{gateway}/favicon.ico", timeout=5).content == icon.content
    css = requests.get(f"{gateway}/docs/swagger-ui.css", timeout=5)
    assert css.headers["Content-Type"] == "text/css; charset=utf-8" and ".swagger-ui" in css.text
    assert requests.get(f"{gateway}/docs/../../etc/passwd", timeout=5).status_code == 404
    assert_problem(requests.get(f"{gateway}/docs/secrets.txt", timeout=5), 404, "no_such_file")


def test_idempotency_same_key_other_body_is_422(gateway, settings, mongo_client):
    headers = {**bearer(settings), "Idempotency-Key": "app-0001"}
    first = requests.post(f"{gateway}/api/v1/tickets", json=REPORT, headers=headers, timeout=5)
    same = requests.post(f"{gateway}/api/v1/tickets", json=REPORT, headers=headers, timeout=5)
    other = requests.post(f"{gateway}/api/v1/tickets", json={**REPORT, "description": "另一件事：楼道灯坏了"},
                          headers=headers, timeout=5)
    assert first.status_code == same.status_code == 201 and same.json()["id"] == first.json()["id"]
    assert_problem(other, 422, "idempotency_key_reused")
    assert mongo_client[settings.database_name("tickets")].tickets.count_documents({}) == 1


def test_rate_limits_answer_429_with_retry_after(container_factory, settings):
    gateway = start_gateway(container_factory, dataclasses.replace(settings, rate_limit_per_minute=3))
    answers = [requests.get(f"{gateway}/api/v1/nowhere-but-authenticated", timeout=5) for _ in range(2)]
    assert all(answer.status_code == 404 for answer in answers)  # unauthenticated 404s spend no token budget
    token = bearer(settings, "resident", "r-9")
    statuses = [requests.get(f"{gateway}/api/v1/tickets/T-1", headers=token, timeout=5) for _ in range(4)]
    limited = statuses[-1]
    assert_problem(limited, 429, "rate_limited")
    assert int(limited.headers["Retry-After"]) >= 1


# role -> expected status of each route, written from the rules (not from kernel/permissions).
# 200/201 where allowed; 403 where the role may not; the ticket read by someone unrelated is 404 (not 403).
ROUTES = {
    "services": ("GET", "/api/v1/services", None),
    "create": ("POST", "/api/v1/tickets", REPORT),
    "mine": ("GET", "/api/v1/tickets", None),
    "inbox": ("GET", "/api/v1/me/inbox", None),
    "teams": ("GET", "/api/v1/volunteer-teams", None),
    "read_other": ("GET", "/api/v1/tickets/{ticket}", None),
}
EXPECTED = {
    "resident": {"services": 200, "create": 201, "mine": 200, "inbox": 200, "teams": 200, "read_other": 404},
    # issue #11: staff enter phone-ins on a resident's behalf and list the tickets within their reach
    "grid_worker": {"services": 200, "create": 201, "mine": 200, "inbox": 200, "teams": 200, "read_other": 200},
    "volunteer": {"services": 200, "create": 403, "mine": 200, "inbox": 200, "teams": 200, "read_other": 404},
    "secretary": {"services": 200, "create": 201, "mine": 200, "inbox": 200, "teams": 200, "read_other": 200},
    "ops": {"services": 200, "create": 403, "mine": 403, "inbox": 200, "teams": 200, "read_other": 200},
    "admin": {"services": 200, "create": 201, "mine": 200, "inbox": 200, "teams": 200, "read_other": 200},
}


def test_role_by_route(gateway, settings):
    ticket = requests.post(f"{gateway}/api/v1/tickets", json=REPORT, headers=bearer(settings, subject="r-owner"),
                           timeout=5).json()["id"]
    got = {}
    for role in EXPECTED:
        headers = bearer(settings, role, f"{role}-1")
        got[role] = {}
        for name, (method, path, body) in ROUTES.items():
            response = requests.request(method, gateway + path.format(ticket=ticket), json=body, headers=headers,
                                        timeout=5)
            got[role][name] = response.status_code
    assert got == EXPECTED
    other_community = requests.get(f"{gateway}/api/v1/tickets/{ticket}", timeout=5,
                                   headers=bearer(settings, "secretary", "s-2", community="dongcheng"))
    assert other_community.status_code == 404


def test_a_json_body_is_parsed_once_and_unknown_fields_refused(gateway, settings):
    response = requests.post(f"{gateway}/api/v1/tickets", data=json.dumps({**REPORT, "reporter": "r-2"}),
                             headers={**bearer(settings), "Content-Type": "application/json"}, timeout=5)
    assert "reporter" in assert_problem(response, 422, "validation_failed")["errors"]


def test_a_newline_in_a_path_still_answers_problem_details(gateway, settings):
    # werkzeug's <path:...> stops at a newline: without gateway.http.AnyPath these were its HTML 404 page
    assert_problem(requests.get(f"{gateway}/api/v1/no%0Awhere", timeout=5), 404, "no_such_route")
    assert_problem(requests.get(f"{gateway}/console/js%0A/app.js", timeout=5), 404, "no_such_file")
    open311 = requests.get(f"{gateway}/open311/v2/no%0Athing.json", timeout=5)
    assert open311.status_code == 404 and open311.json()[0]["code"] == 404


@pytest.mark.parametrize("limit", ["", " 5", "²", "5.0", "-1", "101"])
def test_a_page_size_is_digits_from_1_to_100(gateway, settings, limit):
    response = requests.get(f"{gateway}/api/v1/services", params={"limit": limit}, headers=bearer(settings),
                            timeout=5)
    assert assert_problem(response, 422, "validation_failed")["errors"] == {
        "limit": ["must be a whole number from 1 to 100"]}
    assert requests.get(f"{gateway}/api/v1/services", params={"limit": "5"}, headers=bearer(settings),
                        timeout=5).status_code == 200

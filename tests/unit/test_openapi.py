"""The API document: every route has an operation, every operation every status it can answer, one Problem."""

from __future__ import annotations

import jsonschema_rs
import pytest

from gateway.http import problem
from gateway.openapi import NOT_OPERATIONS, OPERATIONS, allowed_methods, document, openapi_path, routes
from kernel.errors import NotFound, TooManyRequests, ValidationFailed

DOC = document()
METHODS = ("get", "post", "put", "patch", "delete")
OPERATIONS_IN_DOC = [(path, method, operation) for path, item in DOC["paths"].items()
                     for method, operation in item.items() if method in METHODS]

# Written from issue #14 and the handlers, not from the builder's rules: what each operation can answer.
EXPECTED = {
    ("post", "/api/v1/tickets"): {201, 400, 401, 403, 409, 413, 422, 429, 503, 504},
    ("get", "/api/v1/tickets"): {200, 401, 403, 414, 422, 429, 503, 504},
    ("post", "/api/v1/tickets/{ticket_id}/actions/{action}"): {200, 400, 401, 403, 404, 409, 412, 413, 422, 429, 503,
                                                               504},
    ("post", "/api/v1/tickets/{ticket_id}/comments"): {201, 400, 401, 403, 404, 409, 412, 413, 422, 429, 503, 504},
    ("get", "/api/v1/calendar/{year}"): {200, 401, 403, 404, 422, 429, 503, 504},
    # GeoReport v2: the spec's 400/403/404 (a 401, 409 or 422 of ours answers one of them), no 401 or 422
    ("post", "/open311/v2/requests.{fmt}"): {201, 202, 400, 403, 404, 413, 415, 429, 503, 504},
    ("get", "/open311/v2/requests.{fmt}"): {200, 400, 403, 404, 414, 429, 503, 504},
    ("get", "/api/v1/tickets/{ticket_id}"): {200, 401, 403, 404, 429, 503, 504},
    ("post", "/api/v1/auth/token"): {200, 400, 401, 413, 422, 429, 503, 504},
    ("post", "/api/v1/auth/logout"): {204, 400, 401, 409, 422, 429, 503, 504},
    ("post", "/api/v1/staff"): {201, 400, 401, 403, 409, 413, 422, 429, 503, 504},
    ("delete", "/api/v1/apikeys/{name}"): {200, 401, 403, 404, 422, 429, 503, 504},
    ("get", "/api/v1/audit"): {200, 401, 403, 414, 422, 429, 503, 504},
}


def test_it_is_openapi_3_1_with_both_security_schemes():
    assert DOC["openapi"] == "3.1.0"
    schemes = DOC["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert schemes["apiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}


def test_every_route_of_the_gateway_has_a_described_operation():
    handlers = {name for name, _, _ in routes()} - NOT_OPERATIONS
    assert handlers and not handlers - set(OPERATIONS), f"routes without an operation: {handlers - set(OPERATIONS)}"
    documented = {(method, path) for path, method, _ in OPERATIONS_IN_DOC}
    for name, method, rule in routes():
        if name not in NOT_OPERATIONS and method not in ("HEAD", "OPTIONS"):
            assert (method.lower(), openapi_path(rule)[0]) in documented, (method, rule)
    assert not [op for _, _, op in OPERATIONS_IN_DOC if op.get("x-undocumented")]


@pytest.mark.parametrize("path, method, operation", OPERATIONS_IN_DOC,
                         ids=[f"{m.upper()} {p}" for p, m, _ in OPERATIONS_IN_DOC])
def test_every_operation_answers_every_status_it_can_produce(path, method, operation):
    responses = {int(status): response for status, response in operation["responses"].items()}
    assert any(200 <= status < 300 for status in responses)
    secured = bool(operation["security"])
    can = set()
    if secured:
        can |= {401, 429}
    if "requestBody" in operation:
        can |= {400, 413} | ({422} if path.startswith("/api/") else {415})  # Open311: the spec's 400, form-encoded
    if "{" in path:
        can.add(404)
    if any(p["in"] == "query" for p in operation.get("parameters", ())):
        can |= {414} | ({422} if path.startswith("/api/") else {400})
    if any(p["name"] == "If-Match" for p in operation.get("parameters", ())):
        can.add(412)
    if "Roles:" in operation.get("description", ""):
        can.add(403)
    assert can <= set(responses), f"missing {can - set(responses)}"
    if (method, path) in EXPECTED:
        assert set(responses) == EXPECTED[(method, path)]
    for status, response in responses.items():
        if status == 414:  # the web server's own refusal: no body to describe
            assert "content" not in response
        elif status >= 400 and path.startswith("/api/"):
            schema = "StaleVersion" if status == 412 else "Problem"
            assert response["content"] == {"application/problem+json": {
                "schema": {"$ref": f"#/components/schemas/{schema}"}}}
            if status in (429, 503, 504):
                assert "Retry-After" in response["headers"]
        elif status >= 400 and path.startswith("/open311/"):
            assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Open311Errors"}
            assert "text/xml" in response["content"]
        elif status != 204:
            assert response["content"], status


def test_lists_answer_the_envelope_and_take_cursor_and_limit():
    for path in ("/api/v1/services", "/api/v1/tickets", "/api/v1/me/inbox", "/api/v1/residents", "/api/v1/audit"):
        get = DOC["paths"][path]["get"]
        assert get["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Page"}
        assert {"cursor", "limit"} <= {p["name"] for p in get["parameters"]}
    page = DOC["components"]["schemas"]["Page"]
    assert page["required"] == ["items", "next_cursor"]


def test_request_bodies_come_from_the_contracts_and_refuse_unknown_members():
    body = DOC["paths"]["/api/v1/tickets"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    names = [ref["$ref"].rsplit("/", 1)[1] for ref in body["anyOf"]]
    assert names == ["CreateTicket", "StaffCreateTicket"]  # a resident's or integrator's; staff's on a behalf
    assert "on_behalf_of" in DOC["components"]["schemas"]["StaffCreateTicket"]["properties"]
    create = DOC["components"]["schemas"]["CreateTicket"]
    assert create["additionalProperties"] is False and set(create["required"]) == {"service_code", "description"}
    assert create["properties"]["lat"]["type"] == ["number", "null"]  # 3.1 nullability, not `nullable`
    staff = DOC["components"]["schemas"]["Staff"]
    assert "password" in staff["properties"] and staff["additionalProperties"] is False


@pytest.mark.parametrize("error", [ValidationFailed("the request is not valid", {"phone": ["bad"]}),
                                   NotFound("no such ticket"), TooManyRequests("slow", {"retry_after": 3})])
def test_the_problem_schema_is_what_the_gateway_renders(error):
    import json

    validator = jsonschema_rs.validator_for({**DOC["components"]["schemas"]["Problem"]})
    status, headers, body = problem(error, "c-1")
    assert validator.is_valid(json.loads(body))
    assert not validator.is_valid({"title": "x", "status": status})  # and it can fail


def test_a_known_path_with_another_method_is_405_material():
    assert allowed_methods("/api/v1/tickets") == ["GET", "POST"]
    assert allowed_methods("/api/v1/tickets/T-1") == ["GET"]
    assert allowed_methods("/api/v1/no/such/thing") == []


def test_ticket_writes_are_conditional_and_answer_their_etag():
    for path, method in (("/api/v1/tickets/{ticket_id}/actions/{action}", "post"),
                         ("/api/v1/tickets/{ticket_id}/comments", "post"),
                         ("/api/v1/tickets/{ticket_id}/callback", "post")):
        operation = DOC["paths"][path][method]
        assert any(p["name"] == "If-Match" and p["in"] == "header" for p in operation["parameters"]), path
        stale = operation["responses"]["412"]
        assert "ETag" in stale["headers"], path
        assert "stale_version" in operation["description"], path
    for path, method, status in (("/api/v1/tickets/{ticket_id}", "get", "200"), ("/api/v1/tickets", "post", "201"),
                                 ("/api/v1/tickets/{ticket_id}/actions/{action}", "post", "200")):
        assert "ETag" in DOC["paths"][path][method]["responses"][status]["headers"], path
    stale = DOC["components"]["schemas"]["StaleVersion"]
    assert stale["allOf"][1]["required"] == ["version"]


def test_actions_are_named_and_each_checked_against_its_own_permission():
    act = DOC["paths"]["/api/v1/tickets/{ticket_id}/actions/{action}"]["post"]
    action = next(p for p in act["parameters"] if p["name"] == "action")
    assert set(action["schema"]["enum"]) == {"dispatch", "accept", "bounce", "start", "pause", "resume", "resolve",
                                             "close", "merge", "plan"}
    assert "close: " in act["description"] and "(`tickets.close_not_fixed`)" in act["description"]
    assert "(`tickets.plan`)" in act["description"] and "403" in act["responses"]
    comment = DOC["paths"]["/api/v1/tickets/{ticket_id}/comments"]["post"]
    assert "`tickets.comment`" in comment["description"]


def test_staff_filters_of_the_ticket_list_are_documented():
    names = {p["name"] for p in DOC["paths"]["/api/v1/tickets"]["get"]["parameters"]}
    assert names == {"state", "grid", "category", "owner", "source", "overdue", "cursor", "limit"}


def test_the_calendar_year_is_an_integer_and_open311_is_described():
    for method in ("get", "put"):
        year = DOC["paths"]["/api/v1/calendar/{year}"][method]["parameters"][0]
        assert year["name"] == "year" and year["schema"]["type"] == "integer"
    post = DOC["paths"]["/open311/v2/requests.{fmt}"]["post"]
    form = post["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    assert form["additionalProperties"] is False and {"api_key", "service_code"} <= set(form["required"])
    assert jsonschema_rs.validator_for(form).is_valid({"api_key": "k", "service_code": "c", "attribute[floor]": "6"})
    assert not jsonschema_rs.validator_for(form).is_valid({"api_key": "k", "service_code": "c", "status": "closed"})
    listing = {p["name"] for p in DOC["paths"]["/open311/v2/requests.{fmt}"]["get"]["parameters"]}
    assert {"service_request_id", "service_code", "status", "start_date", "end_date", "jurisdiction_id"} <= listing


def test_open311_paths_allow_what_they_serve():
    assert allowed_methods("/open311/v2/requests.json") == ["GET", "POST"]
    assert allowed_methods("/open311/v2/services/roof_leak.xml") == ["GET"]
    assert allowed_methods("/open311/v2/nothing.json") == []

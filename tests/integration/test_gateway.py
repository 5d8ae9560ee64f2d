"""The gateway over real HTTP, with the tickets and notify services behind it."""

from __future__ import annotations

import pytest
import requests

from services.notify.service import NotifyService
from services.tickets.service import TicketsService
from tests.integration.harness import bearer, start_gateway

pytestmark = pytest.mark.integration

REPORT = {"service_code": "roof_leak", "description": "顶楼漏雨，客厅天花板滴水", "address_string": "兴乔小区5号楼",
          "attributes": {"floor": 5, "still_leaking": "yes"}}  # roof_leak's required answers


@pytest.fixture
def gateway(container_factory, settings):
    return start_gateway(container_factory, settings, TicketsService, NotifyService, gateway_workers=False)


def test_the_echo_loop_over_http(gateway, settings, wait_until):
    created = requests.post(f"{gateway}/api/v1/tickets", json=REPORT, headers={
        **bearer(settings), "X-Correlation-Id": "trace-42"}, timeout=5)
    assert created.status_code == 201, created.text
    assert created.headers["X-Correlation-Id"] == "trace-42"
    ticket = created.json()

    def echoed():
        got = requests.get(f"{gateway}/api/v1/tickets/{ticket['id']}", headers=bearer(settings), timeout=5)
        return [entry for entry in got.json()["timeline"] if entry["type"] == "echo.delivered"]

    [echo] = wait_until(echoed, timeout=5)
    assert echo["channel"] == "inbox" and echo["recipient"] == "r-1"
    inbox = requests.get(f"{gateway}/api/v1/me/inbox", headers=bearer(settings), timeout=5).json()
    assert [message["ticket_id"] for message in inbox["items"]] == [ticket["id"]]
    assert inbox["next_cursor"] is None and inbox["unread"] == 1
    mine = requests.get(f"{gateway}/api/v1/tickets", headers=bearer(settings), timeout=5).json()
    assert mine == {"items": [ticket | {"timeline": mine["items"][0]["timeline"]}], "next_cursor": None}


def test_the_correlation_id_travels_from_the_request_to_the_echo(gateway, settings, mongo_client, wait_until):
    requests.post(f"{gateway}/api/v1/tickets", json=REPORT, headers={
        **bearer(settings), "X-Correlation-Id": "req-7f3a"}, timeout=5)
    inbox = mongo_client[settings.database_name("notify")].inbox

    message = wait_until(lambda: inbox.find_one({"recipient": "r-1"}), timeout=5)
    assert message["correlation_id"] == "req-7f3a"


def test_the_service_catalogue_uses_open311_names(gateway, settings):
    services = requests.get(f"{gateway}/api/v1/services?limit=100", headers=bearer(settings), timeout=5).json()
    assert services["next_cursor"] is None
    services = services["items"]
    codes = {service["service_code"] for service in services}
    assert {"roof_leak", "blocked_drain", "gas_smell"} <= codes
    assert all({"service_code", "service_name", "group"} <= set(service) for service in services)


@pytest.mark.parametrize("body, status, code", [
    (b"{not json", 400, "bad_request"),
    (b"[" * 5000 + b"]" * 5000, 400, "body_too_deep"),
    (b'{"a": NaN}', 400, "bad_request"),
    (b'{"n": ' + b"9" * 5000 + b"}", 400, "bad_request"),
    (b'["a list"]', 422, "validation_failed"),
    (b'{"service_code": "roof_leak"}', 422, "validation_failed"),
    (b'{"service_code": "nope", "description": "xx", "address_string": "a"}', 422, "validation_failed"),
    (b'{"service_code": "roof_leak", "description": "\\ud800 lone surrogate", "address_string": "a"}', 400,
     "bad_request"),
])
def test_bad_bodies_get_structured_errors(gateway, settings, body, status, code):
    response = requests.post(f"{gateway}/api/v1/tickets", data=body, timeout=5,
                             headers={**bearer(settings), "Content-Type": "application/json"})
    assert response.status_code == status
    assert response.json()["code"] == code


def test_field_errors_are_reported_per_field(gateway, settings):
    response = requests.post(f"{gateway}/api/v1/tickets", json={"service_code": "roof_leak", "lat": 200},
                             headers=bearer(settings), timeout=5)
    details = response.json()["errors"]
    assert response.status_code == 422
    assert {"description", "lat"} <= set(details)


def test_tokens_and_roles_are_enforced(gateway, settings):
    assert requests.post(f"{gateway}/api/v1/tickets", json=REPORT, timeout=5).status_code == 401
    forged = bearer(type(settings)(secret="another-secret-another-secret-xx"), "resident", "r-1")
    assert requests.get(f"{gateway}/api/v1/me/inbox", headers=forged, timeout=5).status_code == 401
    staff = requests.post(f"{gateway}/api/v1/tickets", json=REPORT, headers=bearer(settings, "ops", "o-1"),
                          timeout=5)
    assert staff.status_code == 403 and staff.json()["code"] == "forbidden"
    assert staff.headers["Content-Type"] == "application/problem+json; charset=utf-8"


def test_residents_cannot_read_each_others_tickets(gateway, settings):
    ticket = requests.post(f"{gateway}/api/v1/tickets", json=REPORT, headers=bearer(settings), timeout=5).json()
    other = requests.get(f"{gateway}/api/v1/tickets/{ticket['id']}", headers=bearer(settings, subject="r-2"),
                         timeout=5)
    assert other.status_code == 404 and other.json()["code"] == "not_found"


def test_health_and_readiness(gateway):
    assert requests.get(f"{gateway}/health", timeout=5).json()["status"] == "ok"
    ready = requests.get(f"{gateway}/ready", timeout=5)
    assert ready.status_code == 200 and ready.json()["checks"] == {"broker": "ok"}


def test_the_gateways_metrics_show_the_platforms_work_in_one_registry(gateway, settings, wait_until):
    """The containers of this test share one process, hence one registry: the gateway's /metrics shows what the
    gateway, tickets and notify did. Each process's own /metrics in production is the e2e suite's to check."""
    requests.post(f"{gateway}/api/v1/tickets", json=REPORT, headers=bearer(settings), timeout=5)
    requests.post(f"{gateway}/api/v1/tickets", data=b"{", headers=bearer(settings), timeout=5)

    def scraped():
        response = requests.get(f"{gateway}/metrics", timeout=5)
        assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
        text = response.text
        return text if "huisheng_echo_latency_seconds_count" in text else None  # the loop's last step: an echo

    text = wait_until(scraped, timeout=5)
    assert 'subscription="tickets.echo_outcomes"' not in text  # nobody is told an echo's outcome any more
    assert 'huisheng_http_requests_total{route="create_ticket",service="gateway",status="201"}' in text
    assert 'huisheng_http_requests_total{route="create_ticket",service="gateway",status="400"}' in text
    assert 'huisheng_events_handled_total{outcome="ok",subscription="notify.ticket_events"}' in text
    assert "huisheng_echo_latency_seconds_count" in text
    assert 'huisheng_outbox_published_total{collection="tickets",service="tickets"}' in text
    assert 'huisheng_worker_seconds_count{entrypoint="create",outcome="ok",service="tickets"}' in text


def test_a_retried_post_with_the_same_idempotency_key_creates_one_ticket(gateway, settings, mongo_client):
    headers = {**bearer(settings), "Idempotency-Key": "app-7c1e-0001"}
    first = requests.post(f"{gateway}/api/v1/tickets", json=REPORT, headers=headers, timeout=5)
    retry = requests.post(f"{gateway}/api/v1/tickets", json=REPORT, headers=headers, timeout=5)
    other = requests.post(f"{gateway}/api/v1/tickets", json=REPORT, timeout=5,
                          headers={**bearer(settings), "Idempotency-Key": "app-7c1e-0002"})
    bad = requests.post(f"{gateway}/api/v1/tickets", json=REPORT, timeout=5,
                        headers={**bearer(settings), "Idempotency-Key": "no spaces please"})

    assert first.status_code == retry.status_code == other.status_code == 201
    assert retry.json()["id"] == first.json()["id"] != other.json()["id"]
    assert bad.status_code == 400
    assert mongo_client[settings.database_name("tickets")].tickets.count_documents({}) == 2

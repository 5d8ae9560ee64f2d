"""The deadline table through the running tickets service and the gateway: seeded at start-up, edited by an
admin, taken by tickets received afterwards while earlier tickets keep theirs."""

from __future__ import annotations

import pytest
import requests
from nameko.testing.services import entrypoint_hook

from kernel.errors import NotFound, ValidationFailed
from services.tickets.catalogue import Catalogue
from services.tickets.deadlines import DEADLINES, categories
from services.tickets.service import TicketsService
from tests.conftest import free_port
from tests.integration.harness import bearer, start_gateway

pytestmark = pytest.mark.integration

LEAK = {"service_code": "roof_leak", "description": "顶楼漏雨，客厅天花板滴水", "address_string": "兴乔小区5号楼",
        "attributes": {"floor": 5, "still_leaking": "yes"}}  # roof_leak's required answers
HOUSING = "房屋设施"  # roof_leak's category; its default priority is urgent
FASTER = {"first_response": {"amount": 1, "unit": "working_hours"},
          "next_update": {"amount": 3, "unit": "working_hours"},
          "resolution": {"amount": 2, "unit": "working_days"}}


def call(container, name, *args, **kwargs):
    with entrypoint_hook(container, name) as hook:
        return hook(*args, **kwargs)


def clock(container, ticket_id: str, name: str) -> dict:
    return next(c for c in call(container, "sla_clocks", "xingqiao", ticket_id)["clocks"] if c["clock"] == name)


def test_an_admins_row_applies_to_new_tickets_and_earlier_ones_keep_their_deadlines(
        container_factory, settings, mongo_client):
    tickets = container_factory(TicketsService, settings.nameko_config(web_address=f"127.0.0.1:{free_port()}"))
    tickets.start()
    stored = mongo_client[settings.database_name("tickets")][DEADLINES]

    # Seeded at start-up, before anything read it: every category, the catalogue's policies.
    seeded = {document["_id"]: document for document in stored.find({})}
    assert set(seeded) == set(categories(Catalogue.load()))
    assert seeded[HOUSING]["priorities"]["urgent"]["resolution"] == {"amount": 1, "unit": "working_days"}
    assert seeded[HOUSING]["updated_by"] is None

    before = call(tickets, "create", "xingqiao", "r-1", LEAK)
    before_resolution = clock(tickets, before["id"], "resolution")

    answer = call(tickets, "put_deadlines", HOUSING, {"priorities": {"urgent": FASTER}}, by="admin-1")
    assert answer["updated_by"] == "admin-1" and answer["priorities"]["urgent"] == {"time_kind": "working", **FASTER}
    assert answer["priorities"]["low"] == seeded[HOUSING]["priorities"]["low"]  # left out: kept
    history = stored.find_one({"_id": HOUSING})["history"]
    assert [(entry["replaced_by"], entry["priorities"]) for entry in history] == [
        ("admin-1", seeded[HOUSING]["priorities"])]

    after = call(tickets, "create", "xingqiao", "r-2", LEAK)
    after_resolution = clock(tickets, after["id"], "resolution")
    # The new ticket: two working days; the earlier one: still the one working day it was given.
    assert after_resolution["due_at"] > before_resolution["due_at"]
    assert clock(tickets, before["id"], "resolution") == before_resolution
    documents = mongo_client[settings.database_name("tickets")]["tickets"]
    assert documents.find_one({"_id": after["id"]})["deadlines"]["urgent"] == {"time_kind": "working", **FASTER}
    assert documents.find_one({"_id": before["id"]})["deadlines"]["urgent"]["resolution"] == {
        "amount": 1, "unit": "working_days"}

    table = call(tickets, "get_deadlines")
    housing = next(row for row in table["categories"] if row["category"] == HOUSING)
    assert housing["priorities"]["urgent"]["first_response"] == {"amount": 1, "unit": "working_hours"}

    with pytest.raises(ValidationFailed) as refused:
        call(tickets, "put_deadlines", HOUSING,
             {"priorities": {"urgent": {**FASTER, "resolution": {"amount": 0, "unit": "working_days"}}}}, by="admin-1")
    assert "priorities.urgent.resolution.amount" in refused.value.details
    with pytest.raises(NotFound):
        call(tickets, "put_deadlines", "no such category", {"priorities": {"urgent": FASTER}}, by="admin-1")
    assert stored.find_one({"_id": HOUSING})["priorities"]["urgent"] == {"time_kind": "working", **FASTER}


def test_the_gateway_lets_the_office_read_and_only_an_admin_write(container_factory, settings):
    base = start_gateway(container_factory, settings, TicketsService) + "/api/v1/deadlines"

    def as_(role: str) -> dict:
        return bearer(settings, role, f"{role}-1")

    table = requests.get(base, headers=as_("secretary"), timeout=10)
    assert table.status_code == 200 and HOUSING in {row["category"] for row in table.json()["categories"]}
    assert requests.get(base, headers=as_("resident"), timeout=10).status_code == 403
    body = {"priorities": {"urgent": FASTER}}
    assert requests.put(f"{base}/{HOUSING}", json=body, headers=as_("secretary"), timeout=10).status_code == 403
    bad = requests.put(f"{base}/{HOUSING}", json={"priorities": {"urgent": {**FASTER, "next_update": {
        "amount": 2, "unit": "fortnights"}}}}, headers=as_("admin"), timeout=10)
    assert bad.status_code == 422 and bad.headers["Content-Type"].startswith("application/problem+json")
    assert "priorities.urgent.next_update.unit" in bad.json()["errors"]
    assert requests.put(f"{base}/nowhere", json=body, headers=as_("admin"), timeout=10).status_code == 404
    changed = requests.put(f"{base}/{HOUSING}", json=body, headers=as_("admin"), timeout=10)
    assert changed.status_code == 200 and changed.json()["updated_by"] == "admin-1"

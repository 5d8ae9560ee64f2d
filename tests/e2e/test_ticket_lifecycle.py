"""One ticket's whole life through the gateway of a running platform, each step by the role that does it.

received → dispatched → bounced → dispatched again → accepted → started → resolved → callback "not fixed"
→ reopened → dispatched → accepted → started → resolved → callback "fixed" → confirmed; then the
timeline, the resident's echoes in their inbox, and what the ticket added to the three rates.

The resident is the demo community's 王秀英 (building b01, grid g1): routing places the ticket in g1
from her own address (``directory.me``) and proposes g1's worker.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import requests

pytestmark = pytest.mark.e2e

RESIDENT = "p-719c962237dd"  # services/directory/data/demo_community.json: resident-01, building b01 (grid g1)
WORKER_G1 = "p-f9043c2a2fbc"
SECRETARY = "p-60b58c2b932b"
REPORT = {"service_code": "roof_leak", "description": "顶楼漏雨，卧室天花板在滴水",
          "address_string": "兴乔小区1号楼1单元101", "attributes": {"floor": 1, "still_leaking": "yes"}}
RATES = ("response_rate", "resolution_rate", "claimed_resolution_rate", "satisfaction_rate")
# What this ticket adds to each rate, as (numerator, denominator): its first response (the dispatch) met its
# deadline; staff resolved twice; the resident answered two callbacks about the fix, "not fixed" then "fixed",
# and was satisfied the second time (the first answer carried no satisfaction: answered, not satisfied).
ADDED = {"response_rate": (1, 1), "resolution_rate": (1, 2), "claimed_resolution_rate": (2, 2),
         "satisfaction_rate": (1, 2)}
RATES_SETTLE_SECONDS = 10.0  # the read model folds the events into its counters in batches (about a second)


def rates(gateway: str, headers: dict) -> dict:
    """The rates of this ticket's grid and category, from today to a month ahead (Asia/Shanghai): the response
    counts on the day of its deadline, which may be a later working day than the day it was received."""
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    answer = requests.get(f"{gateway}/api/v1/reports/rates", headers=headers, timeout=10, params={
        "from": today.isoformat(), "to": (today + timedelta(days=30)).isoformat(), "grid": "g1",
        "category": "房屋设施"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def added(before: dict, after: dict) -> dict:
    return {name: (after[name]["numerator"] - before[name]["numerator"],
                   after[name]["denominator"] - before[name]["denominator"]) for name in RATES}


def test_one_ticket_walked_through_its_whole_life_by_the_roles_that_do_each_step(running_platform):
    platform = running_platform
    gateway = platform.gateway
    resident = platform.token("resident", RESIDENT)
    worker = platform.token("grid_worker", WORKER_G1, "--grid", "g1")
    secretary = platform.token("secretary", SECRETARY)

    rates_before = rates(gateway, secretary)
    created = requests.post(f"{gateway}/api/v1/tickets", json=REPORT, headers=resident, timeout=10)
    assert created.status_code == 201, created.text
    ticket = created.json()
    ticket_id = ticket["id"]
    assert (ticket["grid"], ticket["building"], ticket["suggested_owner"]) == ("g1", "b01", WORKER_G1)
    assert re.fullmatch(r"XQ-\d{8}-\d{4,}", ticket["number"]), ticket["number"]
    etag = created.headers["ETag"]

    def step(headers: dict, path: str, body: dict | None = None, expected_state: str | None = None) -> dict:
        nonlocal etag
        answer = requests.post(f"{gateway}/api/v1/tickets/{ticket_id}/{path}", json=body or {},
                               headers={**headers, "If-Match": etag}, timeout=10)
        assert answer.status_code == 200, (path, answer.text)
        etag = answer.headers["ETag"]
        if expected_state is not None:
            assert answer.json()["state"] == expected_state, (path, answer.json()["state"])
        return answer.json()

    to_worker = {"kind": "worker", "id": WORKER_G1}
    step(secretary, "actions/dispatch", to_worker, "dispatched")
    step(worker, "actions/bounce", {"reason": "屋顶防水归物业维修基金，需社区协调"}, "received")
    step(secretary, "actions/dispatch", to_worker, "dispatched")
    step(worker, "actions/accept", None, "accepted")
    step(worker, "actions/start", None, "in_progress")
    step(worker, "actions/resolve", {"summary": "已临时封堵漏点"}, "resolved")
    step(resident, "callback", {"outcome": "not_fixed", "note": "下雨还漏"}, "reopened")
    step(secretary, "actions/dispatch", to_worker, "dispatched")
    step(worker, "actions/accept", None, "accepted")
    step(worker, "actions/start", None, "in_progress")
    step(worker, "actions/resolve", {"summary": "重做了屋面防水层"}, "resolved")
    final = step(resident, "callback", {"outcome": "fixed", "satisfaction": "satisfied"}, "confirmed")
    assert final["status"] == "closed"

    # A stale If-Match is refused, never a lost update.
    stale = requests.post(f"{gateway}/api/v1/tickets/{ticket_id}/actions/close", json={"reason": "cancelled"},
                          headers={**secretary, "If-Match": created.headers["ETag"]}, timeout=10)
    assert stale.status_code in (409, 412), stale.text

    seen = requests.get(f"{gateway}/api/v1/tickets/{ticket['number']}", headers=secretary, timeout=10).json()
    transitions = [entry["type"] for entry in seen["timeline"] if entry["type"].startswith("ticket.")]
    assert transitions == [
        "ticket.received", "ticket.dispatched", "ticket.bounced", "ticket.dispatched", "ticket.accepted",
        "ticket.started", "ticket.resolved", "ticket.callback_recorded", "ticket.reopened", "ticket.dispatched",
        "ticket.accepted", "ticket.started", "ticket.resolved", "ticket.callback_recorded", "ticket.confirmed",
    ]

    # The resident heard of every change a resident should know about, with the short number in each echo.
    expected = ["ticket.received", "ticket.dispatched", "ticket.dispatched", "ticket.accepted", "ticket.started",
                "ticket.resolved", "ticket.reopened", "ticket.dispatched", "ticket.accepted", "ticket.started",
                "ticket.resolved", "ticket.confirmed"]
    deadline, echoes = time.monotonic() + 20, []

    def heard() -> Counter:
        return Counter(message["source_event_type"] for message in echoes)

    while time.monotonic() < deadline:
        inbox = requests.get(f"{gateway}/api/v1/me/inbox", params={"limit": 100}, headers=resident, timeout=10).json()
        echoes = [message for message in inbox["items"] if message["ticket_id"] == ticket_id]
        if heard() >= Counter(expected):
            break
        time.sleep(0.2)
    assert heard() >= Counter(expected), echoes  # each change once per occurrence (others, e.g. clocks, may add)
    assert "ticket.bounced" not in heard() and "ticket.callback_recorded" not in heard()
    assert all(ticket["number"] in message["body"] for message in echoes)
    assert not any("物业维修基金" in message["body"] for message in echoes)  # a bounce is internal

    # The three rates, polled until the counters show what this ticket changed (exactly that).
    deadline, rates_after = time.monotonic() + RATES_SETTLE_SECONDS, rates(gateway, secretary)
    while added(rates_before, rates_after) != ADDED and time.monotonic() < deadline:
        time.sleep(0.2)
        rates_after = rates(gateway, secretary)
    assert added(rates_before, rates_after) == ADDED, (rates_before, rates_after)
    counts = {name: rates_after["counts"][name] - rates_before["counts"][name]
              for name in ("received", "reopened", "callbacks_unanswered", "closed_without_fix")}
    assert counts == {"received": 1, "reopened": 1, "callbacks_unanswered": 0, "closed_without_fix": 0}
    for name in RATES:  # each rate is its numerator over its denominator
        figure = rates_after[name]
        assert figure["rate"] == round(figure["numerator"] / figure["denominator"], 4)

"""The ticket lifecycle through the gateway over real HTTP, with the real tickets, notify and directory services.

409 with ``state`` and ``allowed_actions``, a stale ``If-Match`` (412), grid scoping, merge, patrols,
routing to g3's worker, the short number, staff lists with their index, comments echoed or kept internal.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import requests

from services.tickets.repository import COLLECTION, STAFF_SORT, TicketRepository
from services.tickets.service import TicketsService
from tests.conftest import eventually, free_port
from tests.integration.harness import bearer

pytestmark = pytest.mark.integration

RESIDENT_G3 = "p-0000000000r3"  # not in the directory: routing comes from the body's building
WORKER_G3 = "p-615176e244e1"  # the demo community's grid 3 worker (services/directory/data/demo_community.json)
WORKER_G1 = "p-f9043c2a2fbc"
SECRETARY = "p-60b58c2b932b"
REPORT = {"service_code": "roof_leak", "description": "顶楼漏雨，客厅天花板滴水", "address_string": "兴乔小区9号楼",
          "building": "b09", "attributes": {"floor": 9, "still_leaking": "yes"}}  # roof_leak's required answers


def staff(settings, role: str = "secretary", subject: str = SECRETARY, grids=()) -> dict:
    return bearer(settings, role, subject, grids=list(grids))


def file_ticket(gateway, settings, resident=RESIDENT_G3, report=REPORT) -> dict:
    created = requests.post(f"{gateway}/api/v1/tickets", json=report, headers=bearer(settings, "resident", resident),
                            timeout=10)
    assert created.status_code == 201, created.text
    return created.json()


def act(gateway, headers, ticket_id, action, body=None, if_match=None):
    extra = {"If-Match": if_match} if if_match is not None else {}
    return requests.post(f"{gateway}/api/v1/tickets/{ticket_id}/actions/{action}", json=body or {},
                         headers={**headers, **extra}, timeout=10)


def test_routing_places_a_building_of_grid_3_on_g3_s_worker_with_a_short_number(gateway, settings):
    ticket = file_ticket(gateway, settings)
    assert (ticket["grid"], ticket["building"], ticket["suggested_owner"]) == ("g3", "b09", WORKER_G3)
    today = datetime.now(UTC).astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai")).strftime("%Y%m%d")
    assert re.fullmatch(rf"XQ-{today}-\d{{4}}", ticket["number"]), ticket["number"]
    by_number = requests.get(f"{gateway}/api/v1/tickets/{ticket['number']}",
                             headers=bearer(settings, "resident", RESIDENT_G3), timeout=10)
    assert by_number.status_code == 200 and by_number.json()["id"] == ticket["id"]
    assert by_number.headers["ETag"] == f'"{ticket["version"]}"'
    second = file_ticket(gateway, settings)
    assert second["number"] != ticket["number"]


def test_an_unknown_building_is_a_422(gateway, settings):
    response = requests.post(f"{gateway}/api/v1/tickets", json={**REPORT, "building": "b99"},
                             headers=bearer(settings, "resident", RESIDENT_G3), timeout=10)
    assert response.status_code == 422 and "building" in response.json()["errors"]


def test_an_action_the_state_does_not_allow_is_409_with_state_and_the_caller_s_allowed_actions(gateway, settings):
    ticket = file_ticket(gateway, settings)
    response = act(gateway, staff(settings), ticket["id"], "accept")
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["code"] == "invalid_transition" and body["state"] == "received"
    assert body["allowed_actions"] == ["dispatch", "close", "merge", "plan"]
    assert requests.get(f"{gateway}/api/v1/tickets/{ticket['id']}", headers=staff(settings),
                        timeout=10).json()["version"] == ticket["version"]  # nothing changed


def test_an_unknown_action_is_404_and_a_role_that_may_never_do_it_403(gateway, settings):
    ticket = file_ticket(gateway, settings)
    assert act(gateway, staff(settings), ticket["id"], "explode").status_code == 404
    assert act(gateway, bearer(settings, "resident", RESIDENT_G3), ticket["id"], "dispatch").status_code == 403


def test_a_stale_if_match_is_412_and_changes_nothing(gateway, settings):
    ticket = file_ticket(gateway, settings)
    secretary = staff(settings)
    first = act(gateway, secretary, ticket["id"], "dispatch", {"kind": "worker", "id": WORKER_G3},
                if_match=f'"{ticket["version"]}"')
    assert first.status_code == 200, first.text
    assert first.headers["ETag"] == f'"{ticket["version"] + 1}"'
    second = act(gateway, secretary, ticket["id"], "close", {"reason": "cancelled"}, if_match=f'"{ticket["version"]}"')
    assert second.status_code == 412, second.text
    assert second.json()["code"] == "stale_version" and second.json()["version"] == ticket["version"] + 1
    now = requests.get(f"{gateway}/api/v1/tickets/{ticket['id']}", headers=secretary, timeout=10).json()
    assert now["state"] == "dispatched"


def test_a_grid_worker_acts_on_their_grid_only(gateway, settings):
    ticket = file_ticket(gateway, settings)  # in g3
    outsider = staff(settings, "grid_worker", WORKER_G1, grids=("g1",))
    assert act(gateway, outsider, ticket["id"], "dispatch", {"kind": "worker", "id": WORKER_G1}).status_code == 404
    worker = staff(settings, "grid_worker", WORKER_G3, grids=("g3",))
    for action, body in (("dispatch", {"kind": "worker", "id": WORKER_G3}), ("accept", None), ("start", None),
                         ("pause", {"reason": "等待防水材料"}), ("resume", None), ("resolve", {"summary": "已修补"})):
        response = act(gateway, worker, ticket["id"], action, body)
        assert response.status_code == 200, (action, response.text)
    assert response.json()["state"] == "resolved"
    resident = bearer(settings, "resident", RESIDENT_G3)
    paused = eventually(lambda: [m for m in requests.get(f"{gateway}/api/v1/me/inbox", headers=resident, timeout=10)
                                 .json()["items"] if m["source_event_type"] == "ticket.paused"])
    assert "等待防水材料" in paused[0]["body"] and ticket["number"] in paused[0]["body"]  # the reason is echoed


def test_bounces_escalate_to_the_secretary_after_the_configured_number(gateway, settings):
    ticket = file_ticket(gateway, settings)
    secretary = staff(settings)
    for _ in range(settings.escalate_after_bounces):
        assert act(gateway, secretary, ticket["id"], "dispatch", {"kind": "unit", "id": "供电公司"}).status_code == 200
        assert act(gateway, secretary, ticket["id"], "bounce", {"reason": "不属于我们"}).status_code == 200
    seen = requests.get(f"{gateway}/api/v1/tickets/{ticket['id']}", headers=secretary, timeout=10).json()
    types = [entry["type"] for entry in seen["timeline"]]
    assert types.count("ticket.bounced") == settings.escalate_after_bounces
    assert types.count("ticket.escalated") == 1 and seen["escalated_at"]
    assert [entry["to_role"] for entry in seen["timeline"] if entry["type"] == "ticket.escalated"] == ["secretary"]


def test_internal_comments_stay_with_staff_and_visible_ones_are_echoed(gateway, settings):
    ticket = file_ticket(gateway, settings)
    secretary, resident = staff(settings), bearer(settings, "resident", RESIDENT_G3)
    for text, visibility in (("物业说周三来", "internal"), ("师傅周三上午上门", "resident")):
        response = requests.post(f"{gateway}/api/v1/tickets/{ticket['id']}/comments", headers=secretary, timeout=10,
                                 json={"text": text, "visibility": visibility})
        assert response.status_code == 201, response.text
    seen = requests.get(f"{gateway}/api/v1/tickets/{ticket['id']}", headers=resident, timeout=10).json()
    assert [comment["text"] for comment in seen["comments"]] == ["师傅周三上午上门"]

    def inbox() -> list[str]:
        return [m["body"] for m in requests.get(f"{gateway}/api/v1/me/inbox", headers=resident, timeout=10)
                .json()["items"]]

    assert len(eventually(lambda: [body for body in inbox() if "师傅周三上午上门" in body])) == 1
    assert not any("物业说周三来" in body for body in inbox())


def test_a_merge_attaches_every_reporter_to_the_master_and_the_duplicate_follows_its_status(gateway, settings):
    master = file_ticket(gateway, settings)
    duplicate = file_ticket(gateway, settings, resident="p-00000000dup1")
    secretary = staff(settings)
    merged = act(gateway, secretary, duplicate["id"], "merge", {"into": master["number"]})
    assert merged.status_code == 200, merged.text
    assert merged.json()["merged_into"] == master["id"] and merged.json()["own_state"] == "closed_not_fixed"
    seen = requests.get(f"{gateway}/api/v1/tickets/{master['id']}", headers=secretary, timeout=10).json()
    assert seen["version"] == master["version"] + 1
    act(gateway, secretary, master["id"], "dispatch", {"kind": "worker", "id": WORKER_G3})
    mine = requests.get(f"{gateway}/api/v1/tickets/{duplicate['id']}",
                        headers=bearer(settings, "resident", "p-00000000dup1"), timeout=10).json()
    assert (mine["state"], mine["status"], mine["master"]["id"]) == ("dispatched", "open", master["id"])
    on_master = requests.get(f"{gateway}/api/v1/tickets/{master['id']}",
                             headers=bearer(settings, "resident", "p-00000000dup1"), timeout=10)
    assert on_master.status_code == 200  # the duplicate's reporter is attached to the master
    again = act(gateway, secretary, duplicate["id"], "merge", {"into": master["id"]})
    assert again.status_code == 409 and again.json()["state"] == "closed_not_fixed"


def test_the_merge_handler_converges_a_merge_cut_short_after_its_first_write(container_factory, settings,
                                                                             mongo_client, wait_until):
    from kernel.envelope import utcnow
    from services.tickets.domain import Actor, Ticket
    from services.tickets.service import CATALOGUE
    from services.tickets.writes import envelopes

    container_factory(TicketsService, settings.nameko_config(web_address=f"127.0.0.1:{free_port()}")).start()
    repository = TicketRepository(mongo_client[settings.database_name("tickets")], DirectWrites())
    leak, now, secretary = CATALOGUE.get("roof_leak"), utcnow(), Actor(SECRETARY, "secretary")
    master = Ticket.receive("M1", "xingqiao", leak, "漏水", "9号楼", "r-1", "resident", now)
    duplicate = Ticket.receive("D1", "xingqiao", leak, "也漏水", "9号楼", "r-2", "resident", now)
    repository.add(master, envelopes(master, "c"))
    repository.add(duplicate, envelopes(duplicate, "c"))
    duplicate.merge_into(master, now, secretary)  # the first write only: the process "crashed" after it
    repository.save(duplicate, 1, envelopes(duplicate, "c"))
    wait_until(lambda: repository.get("xingqiao", "M1").attached_residents == ["r-1", "r-2"], timeout=10)


class DirectWrites:
    """Each write on its own (the test writes as a process would that then crashed; no group commit)."""

    @staticmethod
    def insert(collection, document):
        collection.insert_one(document)


def test_a_patrol_is_recorded_with_no_finding_and_each_finding_becomes_a_patrol_ticket(gateway, settings):
    worker = staff(settings, "grid_worker", WORKER_G3, grids=("g3",))
    started = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    quiet = requests.post(f"{gateway}/api/v1/patrols", headers=worker, timeout=10,
                          json={"grid": "g3", "started_at": started, "checked": ["消防通道", "楼道照明"]})
    assert quiet.status_code == 201, quiet.text
    assert (quiet.json()["findings"], quiet.json()["ticket_ids"]) == (0, [])
    found = requests.post(f"{gateway}/api/v1/patrols", headers=worker, timeout=10, json={
        "grid": "g3", "started_at": started, "checked": ["消防通道"],
        "findings": [{"service_code": "roof_leak", "description": "10号楼顶漏水", "building": "b10"}]})
    assert found.status_code == 201, found.text
    [ticket_id] = found.json()["ticket_ids"]
    ticket = requests.get(f"{gateway}/api/v1/tickets/{ticket_id}", headers=worker, timeout=10).json()
    assert (ticket["source"], ticket["grid"], ticket["patrol_id"]) == ("patrol", "g3", found.json()["id"])
    retried = [requests.post(f"{gateway}/api/v1/patrols", headers={**worker, "Idempotency-Key": "round-2"},
                             timeout=10, json={"grid": "g3", "started_at": started, "checked": ["消防通道"],
                                               "findings": [{"service_code": "noise", "description": "夜间施工",
                                                             "building": "b11"}]}) for _ in range(2)]
    assert [answer.status_code for answer in retried] == [201, 201]
    assert retried[0].json() == retried[1].json()  # one round, one ticket
    listed = requests.get(f"{gateway}/api/v1/tickets", params={"source": "patrol"}, headers=worker, timeout=10)
    assert len(listed.json()["items"]) == 2
    elsewhere = requests.post(f"{gateway}/api/v1/patrols", headers=worker, timeout=10,
                              json={"grid": "g1", "started_at": started, "checked": ["消防通道"]})
    assert elsewhere.status_code == 403


def test_staff_enter_a_phone_in_on_a_resident_s_behalf(gateway, settings):
    entered = requests.post(f"{gateway}/api/v1/tickets", headers=staff(settings), timeout=10,
                            json={**REPORT, "on_behalf_of": "p-0000000phone", "source": "phone_in"})
    assert entered.status_code == 201, entered.text
    assert (entered.json()["source"], entered.json()["reporter"]) == ("phone_in", "p-0000000phone")
    mine = requests.get(f"{gateway}/api/v1/tickets", headers=bearer(settings, "resident", "p-0000000phone"),
                        timeout=10).json()
    assert [ticket["id"] for ticket in mine["items"]] == [entered.json()["id"]]


def test_staff_lists_filter_within_reach_and_use_an_index(gateway, settings, mongo_client):
    g3 = file_ticket(gateway, settings)
    g1 = file_ticket(gateway, settings, report={**REPORT, "building": "b01", "service_code": "noise",
                                                           "attributes": {}})  # noise asks no required question
    act(gateway, staff(settings), g1["id"], "dispatch", {"kind": "worker", "id": WORKER_G1})

    def listed(headers, **filters) -> list[str]:
        answer = requests.get(f"{gateway}/api/v1/tickets", params=filters, headers=headers, timeout=10)
        assert answer.status_code == 200, answer.text
        return [ticket["id"] for ticket in answer.json()["items"]]

    secretary = staff(settings)
    assert listed(secretary) == [g1["id"], g3["id"]]
    assert listed(secretary, state="dispatched") == [g1["id"]]
    assert listed(secretary, grid="g3") == [g3["id"]]
    assert listed(secretary, owner=WORKER_G1) == [g1["id"]]
    assert listed(secretary, source="resident", category=g3["category"]) == [g3["id"]]
    assert listed(staff(settings, "grid_worker", WORKER_G3, grids=("g3",))) == [g3["id"]]
    assert requests.get(f"{gateway}/api/v1/tickets", params={"state": "nope"}, headers=secretary,
                        timeout=10).status_code == 422

    tickets = mongo_client[settings.database_name("tickets")][COLLECTION]
    query = TicketRepository.staff_query("xingqiao", {"grid": "g3"}, [], datetime.now(UTC))
    plan = str(tickets.find(query).sort(STAFF_SORT).explain())
    assert "staff_grid" in plan, plan[:2000]  # the planner chose the grid index, not a collection scan


def test_a_retried_action_with_its_idempotency_key_answers_again_without_a_second_transition(gateway, settings):
    ticket = file_ticket(gateway, settings)
    keyed = {**staff(settings), "Idempotency-Key": "dispatch-once-1"}
    body = {"kind": "worker", "id": WORKER_G3}

    first = act(gateway, keyed, ticket["id"], "dispatch", body)
    again = act(gateway, keyed, ticket["id"], "dispatch", body)
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert again.json() == first.json() and first.json()["version"] == ticket["version"] + 1
    # Without the key the same dispatch is a second command, which the state refuses (409), as it should.
    assert act(gateway, staff(settings), ticket["id"], "dispatch", body).status_code == 409
    other = act(gateway, keyed, ticket["id"], "dispatch", {"kind": "worker", "id": WORKER_G1})
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"

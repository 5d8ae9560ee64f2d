"""日清周议 and the three rates on the running services: deadlines stored, callbacks scheduled, the read model kept
from the events equal to a full aggregation and to its rebuild, the reports through the gateway by role, and at
tens of thousands of tickets read through indexes and the counters.
"""

from __future__ import annotations

import dataclasses
import re
import time
from datetime import timedelta

import pytest
import requests
from nameko.testing.services import entrypoint_hook

from bench.reports import ticket_documents
from kernel.envelope import utcnow
from kernel.mongo import connect
from services.directory.service import DirectoryService
from services.tickets import reports
from services.tickets.calendar import SHANGHAI
from services.tickets.cli import rebuild as cli_rebuild
from services.tickets.readmodel import COUNTERS, FACT_FIELDS, FACTS, ReadModel, facts_of
from services.tickets.repository import COLLECTION, TicketRepository
from services.tickets.service import TicketsService
from tests.conftest import eventually, free_port, secantus_server
from tests.integration.harness import bearer, start_gateway, start_service

pytestmark = pytest.mark.integration

COMMUNITY = "xingqiao"
RESIDENT = "p-0000000000r7"
WORKER_G3 = "p-615176e244e1"
SECRETARY = "p-60b58c2b932b"
REPORT = {"service_code": "roof_leak", "description": "顶楼漏雨，客厅天花板滴水", "address_string": "兴乔小区9号楼",
          "building": "b09", "attributes": {"floor": 9, "still_leaking": "yes"}}  # grid g3; roof_leak's answers


@pytest.fixture
def report_settings(settings):
    return dataclasses.replace(settings, sla_test_clock=True, sla_timer_seconds=0.2)


@pytest.fixture
def platform(container_factory, report_settings):
    """directory, tickets and the gateway; returns (gateway URL, tickets container)."""
    start_service(container_factory, report_settings, DirectoryService)
    tickets = start_service(container_factory, report_settings, TicketsService)
    return start_gateway(container_factory, report_settings), tickets


def secretary(settings) -> dict:
    return bearer(settings, "secretary", SECRETARY)


def worker(settings, grids=("g3",)) -> dict:
    return bearer(settings, "grid_worker", WORKER_G3, grids=list(grids))


def file_ticket(gateway, settings, resident=RESIDENT, report=REPORT) -> dict:
    created = requests.post(f"{gateway}/api/v1/tickets", json=report, headers=bearer(settings, "resident", resident),
                            timeout=10)
    assert created.status_code == 201, created.text
    return created.json()


def act(gateway, headers, ticket_id, action, body=None) -> dict:
    answer = requests.post(f"{gateway}/api/v1/tickets/{ticket_id}/actions/{action}", json=body or {},
                           headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def callback(gateway, headers, ticket_id, body) -> dict:
    answer = requests.post(f"{gateway}/api/v1/tickets/{ticket_id}/callback", json=body, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def work_through(gateway, settings, ticket_id) -> None:
    """Dispatched to g3's worker, accepted, started, resolved."""
    act(gateway, secretary(settings), ticket_id, "dispatch", {"kind": "worker", "id": WORKER_G3})
    for action in ("accept", "start"):
        act(gateway, worker(settings), ticket_id, action)
    act(gateway, worker(settings), ticket_id, "resolve", {"summary": "已修好"})


def tickets_db(mongo_client, settings):
    return mongo_client[settings.database_name("tickets")]


def call(container, name, *args, **kwargs):
    with entrypoint_hook(container, name) as hook:
        return hook(*args, **kwargs)


# --- loose ends: deadlines, Open311's number and routing, the callback's date -------------------------------

def test_deadlines_are_stored_at_intake_kept_by_the_timer_and_overdue_lists_them(platform, report_settings,
                                                                                 mongo_client):
    gateway, _ = platform
    ticket = file_ticket(gateway, report_settings)
    tickets = tickets_db(mongo_client, report_settings)[COLLECTION]
    stored = tickets.find_one({"_id": ticket["id"]})
    assert stored["due_at"] > stored["created_at"] and stored["response_due_at"] > stored["created_at"]
    assert stored["response_due_at"] <= stored["due_at"]

    # The timer recomputes the deadline whenever it looks at the ticket: a lost due_at comes back.
    tickets.update_one({"_id": ticket["id"]}, {"$set": {"due_at": None, "sla_next_at": utcnow()}})
    restored = eventually(lambda: tickets.find_one({"_id": ticket["id"], "due_at": {"$ne": None}}))
    assert restored["due_at"] == stored["due_at"]

    def listed(overdue: str) -> list[str]:
        answer = requests.get(f"{gateway}/api/v1/tickets", params={"overdue": overdue},
                              headers=secretary(report_settings), timeout=10)
        assert answer.status_code == 200, answer.text
        return [item["id"] for item in answer.json()["items"]]

    assert ticket["id"] not in listed("true") and ticket["id"] in listed("false")
    tickets.update_one({"_id": ticket["id"]}, {"$set": {"due_at": utcnow() - timedelta(hours=1)}})
    assert ticket["id"] in listed("true") and ticket["id"] not in listed("false")


def test_an_open311_request_gets_a_short_number_and_is_routed_like_a_native_ticket(platform, report_settings,
                                                                                  mongo_client):
    _, tickets = platform
    answer = call(tickets, "open311_create", COMMUNITY, None,
                  {"service_code": "street_light", "address_id": "b09", "description": "路灯不亮"}, "tok-m-1")
    stored = tickets_db(mongo_client, report_settings)[COLLECTION].find_one({"_id": answer["service_request_id"]})
    assert re.fullmatch(r"[A-Z]+-\d{8}-\d{4}", stored["number"])
    assert (stored["grid"], stored["building"], stored["suggested_owner"]) == ("g3", "b09", WORKER_G3)
    assert stored["due_at"] is not None and stored["response_due_at"] is not None
    # An id the directory does not know leaves the request unplaced, not refused.
    unknown = call(tickets, "open311_create", COMMUNITY, None,
                   {"service_code": "street_light", "address_id": "outside-9", "description": "路灯不亮"}, "tok-m-2")
    placed = tickets_db(mongo_client, report_settings)[COLLECTION].find_one({"_id": unknown["service_request_id"]})
    assert placed["grid"] is None and placed["number"] != stored["number"]


def test_resolving_schedules_the_callback_by_the_close_of_the_next_working_day(platform, report_settings,
                                                                              mongo_client):
    gateway, _ = platform
    ticket = file_ticket(gateway, report_settings)
    work_through(gateway, report_settings, ticket["id"])
    stored = tickets_db(mongo_client, report_settings)[COLLECTION].find_one({"_id": ticket["id"]})
    due = stored["callback_due_at"].astimezone(SHANGHAI)
    resolved = stored["updated_at"].astimezone(SHANGHAI)
    assert due.date() > resolved.date() and due.weekday() < 5 and (due.hour, due.minute) == (17, 30)
    callback(gateway, bearer(report_settings, "resident", RESIDENT), ticket["id"], {"outcome": "fixed"})
    assert tickets_db(mongo_client, report_settings)[COLLECTION].find_one({"_id": ticket["id"]})[
        "callback_due_at"] is None  # settled


# --- the rates, the read model, its rebuild ----------------------------------------------------------------

def test_the_rates_through_the_gateway_and_the_read_model_equals_a_full_aggregation_and_its_rebuild(
        platform, report_settings, mongo_client):
    gateway, _ = platform
    resident = bearer(report_settings, "resident", RESIDENT)
    fixed, reopened, unanswered, waiting = (file_ticket(gateway, report_settings)["id"] for _ in range(4))
    for ticket_id in (fixed, reopened, unanswered):
        work_through(gateway, report_settings, ticket_id)
    callback(gateway, resident, fixed, {"outcome": "fixed", "satisfaction": "satisfied"})
    callback(gateway, resident, reopened, {"outcome": "not_fixed", "note": "还在漏"})
    for _ in range(3):
        callback(gateway, secretary(report_settings), unanswered, {"outcome": "no_answer"})

    db = tickets_db(mongo_client, report_settings)
    model = ReadModel(db)

    def full_aggregation():
        return facts_of(db[COLLECTION].find({}, FACT_FIELDS), utcnow())

    def settled():
        expected = full_aggregation()
        return expected if model.as_facts() == expected else None

    expected = eventually(settled, timeout=20)  # the events reached the read model
    metrics = reports.totals_of(db[COUNTERS].find())
    assert metrics[reports.RECEIVED] == 4 and metrics[reports.CLAIMED] == 3

    # A response counts on the day its deadline falls (working hours: perhaps a later working day).
    today = utcnow().astimezone(SHANGHAI).date()
    period = {"from": today.isoformat(), "to": (today + timedelta(days=10)).isoformat()}
    answer = requests.get(f"{gateway}/api/v1/reports/rates", params=period, headers=secretary(report_settings),
                          timeout=10)
    assert answer.status_code == 200, answer.text
    rates = answer.json()
    assert rates["response_rate"] == {"numerator": 3, "denominator": 3, "rate": 1.0}  # `waiting`: not yet due
    assert rates["resolution_rate"] == {"numerator": 1, "denominator": 2, "rate": 0.5}
    assert rates["claimed_resolution_rate"] == {"numerator": 3, "denominator": 3, "rate": 1.0}
    assert rates["satisfaction_rate"] == {"numerator": 1, "denominator": 2, "rate": 0.5}
    assert rates["counts"]["callbacks_unanswered"] == 1 and rates["counts"]["reopened"] == 1
    default = requests.get(f"{gateway}/api/v1/reports/rates", headers=secretary(report_settings), timeout=10).json()
    assert (default["from"], default["to"]) == ((today - timedelta(days=29)).isoformat(), today.isoformat())
    assert default["counts"]["received"] == 4

    # A redelivered event changes nothing: the facts are the ticket's, applied as a difference.
    assert model.apply(COMMUNITY, fixed, utcnow()) == {}
    # The rebuild (huisheng reports rebuild's code) writes the same counters from the tickets alone.
    db[COUNTERS].delete_many({})
    db[FACTS].delete_many({})
    result = cli_rebuild(report_settings.mongo_uri, report_settings.database_name("tickets"), quiet=True)
    assert result["tickets"] == 4 + 0 and model.as_facts() == expected
    assert waiting in {record["_id"] for record in db[FACTS].find()}


def test_reports_by_role_a_grid_worker_sees_their_grids_and_bad_parameters_are_422(platform, report_settings):
    gateway, _ = platform
    ticket = file_ticket(gateway, report_settings)  # g3
    eventually(lambda: requests.get(f"{gateway}/api/v1/reports/rates", headers=secretary(report_settings),
                                    timeout=10).json()["counts"]["received"] == 1)

    def rates(headers, **params):
        return requests.get(f"{gateway}/api/v1/reports/rates", params=params, headers=headers, timeout=10)

    assert rates(worker(report_settings)).json()["counts"]["received"] == 1
    assert rates(worker(report_settings, grids=("g1",))).json()["counts"]["received"] == 0
    assert rates(worker(report_settings, grids=("g1",)), grid="g3").status_code == 403
    assert rates(secretary(report_settings), grid="g3", category="房屋设施").json()["counts"]["received"] == 1
    assert rates(secretary(report_settings), category="为老服务").json()["counts"]["received"] == 0
    assert rates(bearer(report_settings, "resident", RESIDENT)).status_code == 403
    assert rates(bearer(report_settings, "volunteer", "p-v1")).status_code == 403
    for params in ({"from": "2026-13-01"}, {"from": "2026-12-07", "to": "2026-12-01"}, {"to": "tomorrow"}):
        refused = rates(secretary(report_settings), **params)
        assert refused.status_code == 422 and set(refused.json()["errors"]) <= {"from", "to"}, refused.text
    weekly = requests.get(f"{gateway}/api/v1/reports/weekly", params={"week": "2026-W99"},
                          headers=secretary(report_settings), timeout=10)
    assert weekly.status_code == 422 and "week" in weekly.json()["errors"]
    daily = requests.get(f"{gateway}/api/v1/reports/daily", params={"date": "6/12"},
                         headers=secretary(report_settings), timeout=10)
    assert daily.status_code == 422 and "date" in daily.json()["errors"]
    assert ticket["grid"] == "g3"


# --- 日清 and 周议 through the gateway -----------------------------------------------------------------------

def test_daily_clearance_and_weekly_review_through_the_gateway(platform, report_settings, mongo_client):
    gateway, _ = platform
    resident = bearer(report_settings, "resident", RESIDENT)
    uncleared, planned, reopened = (file_ticket(gateway, report_settings) for _ in range(3))
    act(gateway, secretary(report_settings), planned["id"], "plan",
        {"note": "明天上门查看", "owner": WORKER_G3, "due_at": (utcnow() + timedelta(days=2)).isoformat()})
    work_through(gateway, report_settings, reopened["id"])
    callback(gateway, resident, reopened["id"], {"outcome": "partly_fixed", "satisfaction": "dissatisfied"})
    # Received at 23:59 of today: before the clearance if today's hour has not come yet, else after; use tomorrow.
    tomorrow = (utcnow().astimezone(SHANGHAI) + timedelta(days=1)).date().isoformat()
    daily = requests.get(f"{gateway}/api/v1/reports/daily", params={"date": tomorrow},
                         headers=secretary(report_settings), timeout=10)
    assert daily.status_code == 200, daily.text
    report = daily.json()
    assert report["cleared"]["planned"] == 1 and report["uncleared"]["count"] == 2
    (g3,) = report["uncleared"]["by_grid"]
    listed = {line["id"]: owner["owner"] for owner in g3["owners"] for line in owner["tickets"]}
    assert listed == {uncleared["id"]: WORKER_G3, reopened["id"]: WORKER_G3}  # suggested owner, then assignee

    theirs = requests.get(f"{gateway}/api/v1/reports/daily", params={"date": tomorrow},
                          headers=worker(report_settings, grids=("g1",)), timeout=10).json()
    assert theirs["uncleared"]["count"] == 0 and theirs["grids"] == ["g1"]

    def weekly():
        answer = requests.get(f"{gateway}/api/v1/reports/weekly", headers=secretary(report_settings), timeout=10)
        assert answer.status_code == 200, answer.text
        agenda = answer.json()
        return agenda if agenda["reopened"]["count"] == 1 else None

    agenda = eventually(weekly, timeout=20)  # the marks come with the events
    assert [line["id"] for line in agenda["reopened"]["tickets"]] == [reopened["id"]]
    assert [line["id"] for line in agenda["unsatisfied"]["tickets"]] == [reopened["id"]]
    assert agenda["overdue"]["count"] == 0 and agenda["bounced_repeatedly"]["count"] == 0
    assert agenda["volunteer_coverage_gaps"]["items"] == [] and agenda["volunteer_coverage_gaps"]["note"]
    assert "description" not in agenda["reopened"]["tickets"][0]


# --- at scale: tens of thousands of tickets, indexes and the counters ----------------------------------------

def winning_stages(cursor) -> list[str]:
    plan = cursor.explain().get("queryPlanner", {}).get("winningPlan") or {}
    stages = []
    while plan:
        stages.append(plan.get("stage", "") + (f":{plan['indexName']}" if plan.get("indexName") else ""))
        plan = plan.get("inputStage")
    return stages


@pytest.fixture
def own_server_settings(settings):
    """The settings on a database server of this test's own: twenty thousand tickets are not loaded into the
    session's server, whose history every other test's change streams would then read through."""
    with secantus_server() as uri:
        yield dataclasses.replace(settings, mongo_uri=uri)


@pytest.fixture
def patient_client(own_server_settings):
    """A client whose socket waits a minute: bulk loads on a shared, loaded 2-core machine."""
    client = connect(own_server_settings.mongo_uri, timeout_ms=60_000)
    yield client
    client.close()


def test_tens_of_thousands_of_tickets_are_reported_through_indexes_and_the_read_model(
        container_factory, own_server_settings, patient_client):
    settings = own_server_settings
    # Loaded straight into the database, then counted by `huisheng reports rebuild`, as after a restore: with
    # the service stopped, as the rebuild asks (the service's own fold would count the inserts meanwhile).
    tickets = container_factory(TicketsService, settings.nameko_config(web_address=f"127.0.0.1:{free_port()}"))
    db = tickets_db(patient_client, settings)
    TicketRepository.ensure_indexes(db)
    now = utcnow()
    documents = list(ticket_documents(20_000, now, seed=11, community=COMMUNITY))
    for start in range(0, len(documents), 1000):  # small batches: each well within the client's socket timeout
        db[COLLECTION].insert_many(documents[start:start + 1000], ordered=False)
    rebuilt = cli_rebuild(settings.mongo_uri, settings.database_name("tickets"), quiet=True)  # huisheng reports rebuild
    assert rebuilt["tickets"] == 20_000

    # The read model equals a full aggregation of the same tickets.
    model = ReadModel(db)
    assert model.as_facts() == facts_of(documents, now)
    tickets.start()

    # Every query a report makes reads one index range.
    repository = TicketRepository(db, None)
    today = now.astimezone(SHANGHAI).date()
    monday, sunday = reports.parse_week(reports.current_week(now))
    plans = {
        "counters": winning_stages(db[COUNTERS].find(ReadModel.query(COMMUNITY, today - timedelta(days=29), today))),
        "marks": winning_stages(db[FACTS].find({"community": COMMUNITY, "agenda.day": {
            "$gte": monday.isoformat(), "$lte": sunday.isoformat()}})),
        "open": winning_stages(db[COLLECTION].find(repository.report_open_query(COMMUNITY))),
        "overdue": winning_stages(db[COLLECTION].find(repository.report_overdue_query(COMMUNITY, now))),
        "closed": winning_stages(db[COLLECTION].find(repository.report_closed_query(
            COMMUNITY, reports.day_start(today), reports.day_start(today + timedelta(days=1))))),
        "awaiting_callback": winning_stages(db[COLLECTION].find({"community": COMMUNITY, "state": "resolved"})),
    }
    expected = {"counters": "by_day", "marks": "by_agenda_day", "open": "staff_state", "overdue": "by_due",
                "closed": "by_updated", "awaiting_callback": "staff_state"}
    for name, index in expected.items():
        assert f"IXSCAN:{index}" in plans[name], (name, plans[name])
        assert "COLLSCAN" not in plans[name]

    viewer = {"subject": SECRETARY, "role": "secretary", "community": COMMUNITY, "grids": [], "teams": []}
    timings = {}
    for name, args in (("rates", ()), ("daily", ()), ("weekly", ())):
        started = time.perf_counter()
        answer = call(tickets, f"{name}_report", COMMUNITY, viewer, *args)
        timings[name] = time.perf_counter() - started
        assert answer
    rates = call(tickets, "rates_report", COMMUNITY, viewer)
    full = reports.rates(reports.totals_of(
        [{"m": {key[3]: n}} for key, n in facts_of(documents, now).items()
         if today - timedelta(days=29) <= reports.parse_day(key[0], "day") <= today]))
    assert {name: rates[name] for name in full} == full  # the counters' answer is the full aggregation's
    print(f"\nreports at 20,000 tickets: {', '.join(f'{k} {v:.2f} s' for k, v in timings.items())}")
    assert all(seconds < 15 for seconds in timings.values()), timings  # a loaded 2-core machine; bench: < 2 s


def test_the_weekly_review_asks_volunteers_for_the_week_s_coverage_gaps(container_factory, report_settings):
    from services.volunteers.service import VolunteersService

    for service in (DirectoryService, VolunteersService):
        container_factory(service, report_settings.nameko_config(web_address=f"127.0.0.1:{free_port()}")).start()
    tickets = container_factory(TicketsService, report_settings.nameko_config(web_address=f"127.0.0.1:{free_port()}"))
    tickets.start()
    viewer = {"subject": SECRETARY, "role": "secretary", "community": COMMUNITY, "grids": [], "teams": []}
    agenda = call(tickets, "weekly_report", COMMUNITY, viewer, week="2026-W50")
    gaps = agenda["volunteer_coverage_gaps"]
    assert gaps["note"] is None and isinstance(gaps["items"], list)
    assert all({"skill", "grid"} <= set(gap) for gap in gaps["items"])

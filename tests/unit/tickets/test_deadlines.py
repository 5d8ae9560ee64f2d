"""The deadline table per category × priority: an admin's row checked, a ticket keeping the row it was given."""

from __future__ import annotations

from datetime import datetime

import pytest

from gateway.openapi import DEADLINE_UNITS, DEADLINES_BODY
from services.tickets.actions import enters_for_resident
from services.tickets.calendar import SHANGHAI, WorkingCalendar, YearCalendar
from services.tickets.catalogue import ALL_UNITS, PRIORITIES, Catalogue, Duration
from services.tickets.clocks import RESOLUTION, running_clocks, ticket_policy
from services.tickets.deadlines import (
    DeadlinesInvalid,
    catalogue_row,
    categories,
    parse_row,
    policy_of,
    policy_to_dict,
    row_to_dict,
)
from services.tickets.domain import Ticket
from services.tickets.sla import give_deadlines

CATALOGUE = Catalogue.load()
CAL = WorkingCalendar([YearCalendar.load(2026)])
SEEDED = catalogue_row(CATALOGUE)
LEAK_URGENT = {"first_response": {"amount": 1, "unit": "working_hours"},
               "next_update": {"amount": 3, "unit": "working_hours"},
               "resolution": {"amount": 2, "unit": "working_days"}}


def leak(received: datetime) -> Ticket:
    made = Ticket.receive("T1", "xingqiao", CATALOGUE.get("roof_leak"), "顶楼漏雨", "5号楼", "r-1", "resident",
                          received)
    made.pull_events()
    return made


def problems_of(body) -> dict[str, list[str]]:
    with pytest.raises(DeadlinesInvalid) as raised:
        parse_row(body, SEEDED)
    return raised.value.problems


def test_the_seed_is_the_catalogues_policy_for_every_category_and_priority():
    assert categories(CATALOGUE) and set(categories(CATALOGUE)) == {service.category for service in CATALOGUE.all()}
    assert {priority: CATALOGUE.deadline_policy(priority) for priority in PRIORITIES} == SEEDED
    assert row_to_dict(SEEDED)["normal"] == {"time_kind": "working",
                                             "first_response": {"amount": 0, "unit": "close_of_working_day"},
                                             "next_update": {"amount": 1, "unit": "working_days"},
                                             "resolution": {"amount": 5, "unit": "working_days"}}


def test_a_row_replaces_the_priorities_it_names_and_keeps_the_others():
    row = parse_row({"priorities": {"urgent": LEAK_URGENT}}, SEEDED)

    assert row["urgent"].time_kind == "working"
    assert (row["urgent"].first_response, row["urgent"].resolution) == (Duration(1, "working_hours"),
                                                                         Duration(2, "working_days"))
    assert {priority: row[priority] for priority in ("critical", "normal", "low")} == {
        priority: SEEDED[priority] for priority in ("critical", "normal", "low")}


def test_natural_units_make_a_natural_policy_and_time_kind_may_say_so():
    natural = {"time_kind": "natural", "first_response": {"amount": 15, "unit": "minutes"},
               "next_update": {"amount": 1, "unit": "hours"}, "resolution": {"amount": 2, "unit": "days"}}
    assert parse_row({"priorities": {"critical": natural}}, SEEDED)["critical"].time_kind == "natural"


@pytest.mark.parametrize(("body", "field", "says"), [
    ({"priorities": {"urgent": {**LEAK_URGENT, "resolution": {"amount": 2, "unit": "fortnights"}}}},
     "priorities.urgent.resolution.unit", "one of"),
    ({"priorities": {"urgent": {**LEAK_URGENT, "first_response": {"amount": 0, "unit": "working_hours"}}}},
     "priorities.urgent.first_response.amount", "from 1"),
    ({"priorities": {"urgent": {**LEAK_URGENT, "next_update": {"amount": -3, "unit": "working_hours"}}}},
     "priorities.urgent.next_update.amount", "from 1"),
    ({"priorities": {"urgent": {**LEAK_URGENT, "next_update": {"amount": 1.5, "unit": "working_hours"}}}},
     "priorities.urgent.next_update.amount", "whole number"),
    ({"priorities": {"urgent": {**LEAK_URGENT, "next_update": {"amount": True, "unit": "working_hours"}}}},
     "priorities.urgent.next_update.amount", "whole number"),
    ({"priorities": {"urgent": {**LEAK_URGENT, "resolution": {"amount": 10**9, "unit": "working_days"}}}},
     "priorities.urgent.resolution.amount", "to 250"),
    ({"priorities": {"urgent": {**LEAK_URGENT, "resolution": {"amount": 2, "unit": "days"}}}},
     "priorities.urgent", "same time"),
    ({"priorities": {"urgent": {**LEAK_URGENT, "time_kind": "natural"}}}, "priorities.urgent.time_kind", "working"),
    ({"priorities": {"urgent": {**LEAK_URGENT, "colour": "red"}}}, "priorities.urgent", "unknown members"),
    ({"priorities": {"urgent": {"first_response": LEAK_URGENT["first_response"]}}},
     "priorities.urgent.resolution", "amount"),
    ({"priorities": {"asap": LEAK_URGENT}}, "priorities.asap", "unknown priority"),
    ({"priorities": {}}, "priorities", "one or more"),
    ({"priorities": {"urgent": LEAK_URGENT}, "category": "房屋设施"}, "_schema", "one member"),
    (["urgent"], "_schema", "one member"),
])
def test_a_row_that_does_not_hold_is_refused_field_by_field(body, field, says):
    problems = problems_of(body)
    assert field in problems and says in problems[field][0], problems


def test_every_problem_is_reported_at_once():
    problems = problems_of({"priorities": {
        "urgent": {**LEAK_URGENT, "resolution": {"amount": 0, "unit": "working_days"}},
        "low": {**LEAK_URGENT, "first_response": {"amount": 1, "unit": "weeks"}}}})
    assert set(problems) == {"priorities.urgent.resolution.amount", "priorities.low.first_response.unit"}


def test_close_of_working_day_may_be_zero_the_close_of_the_day_of_receipt():
    same_day = {**LEAK_URGENT, "first_response": {"amount": 0, "unit": "close_of_working_day"}}
    row = parse_row({"priorities": {"urgent": same_day}}, SEEDED)
    assert row["urgent"].first_response == Duration(0, "close_of_working_day")


def test_a_ticket_runs_on_the_row_it_was_given_not_on_a_later_table():
    received = datetime(2026, 12, 7, 9, 0, tzinfo=SHANGHAI)  # a Monday morning
    given = parse_row({"priorities": {"urgent": LEAK_URGENT}}, SEEDED)
    made = leak(received)
    assert made.priority == "urgent"

    give_deadlines(made, given, CATALOGUE, CAL)

    assert made.deadlines["urgent"] == policy_to_dict(given["urgent"])
    assert made.response_due_at.astimezone(SHANGHAI).strftime("%a %H:%M") == "Mon 10:00"  # 1 working hour
    assert made.due_at.astimezone(SHANGHAI).strftime("%a %d %H:%M") == "Wed 09 09:00"  # 2 working days
    # Stored and read back, the ticket still has its row; the catalogue (or a later table) does not move it.
    again = Ticket.from_document(made.to_document())
    resolution = next(c for c in running_clocks(again, ticket_policy(again, CATALOGUE), CAL) if c.name == RESOLUTION)
    assert resolution.due_at == made.due_at


def test_a_raised_priority_takes_the_policy_of_its_own_row_at_the_new_priority():
    given = parse_row({"priorities": {"critical": {"first_response": {"amount": 10, "unit": "minutes"},
                                                   "next_update": {"amount": 1, "unit": "hours"},
                                                   "resolution": {"amount": 6, "unit": "hours"}}}}, SEEDED)
    made = leak(datetime(2026, 12, 7, 9, 0, tzinfo=SHANGHAI))
    give_deadlines(made, given, CATALOGUE, CAL)
    made.priority = "critical"  # a callback said "not fixed" twice

    assert ticket_policy(made, CATALOGUE).resolution == Duration(6, "hours")


def test_a_ticket_received_before_rows_were_kept_runs_on_the_catalogue():
    made = leak(datetime(2026, 12, 7, 9, 0, tzinfo=SHANGHAI))
    assert made.deadlines is None
    assert policy_of(made.deadlines, "urgent", CATALOGUE) == CATALOGUE.deadline_policy("urgent")


def test_the_api_document_names_the_units_the_catalogue_knows():
    assert set(DEADLINE_UNITS) == ALL_UNITS
    assert set(DEADLINES_BODY["properties"]["priorities"]["properties"]) == set(PRIORITIES)


def test_staff_who_may_create_tickets_enter_them_for_a_resident():
    assert [role for role in ("resident", "integrator", "grid_worker", "volunteer", "secretary", "ops", "admin")
            if enters_for_resident({"role": role})] == ["grid_worker", "secretary", "admin"]
    assert not enters_for_resident(None)

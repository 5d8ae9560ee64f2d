"""The service catalogue: the packaged data, lookups, and validation of edited data."""

from __future__ import annotations

import copy
import json
from datetime import time

import pytest

from services.tickets.catalogue import (
    DEFAULT_PATH,
    PRIORITIES,
    Catalogue,
    CatalogueError,
    Duration,
    Service,
    UnknownPriority,
    UnknownService,
)

FAST_LANE_CODES = {"gas_smell", "structural_danger", "elderly_care_emergency"}


@pytest.fixture(scope="module")
def packaged_data() -> dict:
    return json.loads(DEFAULT_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load()


def edited(data: dict, edit) -> dict:
    copied = copy.deepcopy(data)
    edit(copied)
    return copied


# --- the packaged data -----------------------------------------------------------------------------

def test_packaged_catalogue_lists_about_a_dozen_services(catalogue):
    codes = [service.code for service in catalogue.all()]
    assert 12 <= len(codes) == len(set(codes)) == len(catalogue)
    assert {"roof_leak", "blocked_drain", "elderly_care", "neighbour_dispute", "safety_hazard", "gas_smell",
            "structural_danger", "street_light", "sanitation", "noise", "illegal_construction",
            "other"} <= set(codes)


def test_fast_lane_services_are_exactly_the_critical_ones(catalogue):
    fast = {service.code for service in catalogue.all() if service.fast_lane}
    critical = {service.code for service in catalogue.all() if service.default_priority == "critical"}
    assert fast == critical == FAST_LANE_CODES


def test_every_service_has_chinese_name_category_and_keywords(catalogue):
    for service in catalogue.all():
        assert service.name and service.description and service.keywords
        assert service.category in {"房屋设施", "公共安全", "邻里关系", "环境卫生", "为老服务", "其他"}


def test_default_path_and_explicit_path_load_the_same_catalogue(catalogue):
    assert Catalogue.load(str(DEFAULT_PATH)).all() == catalogue.all()


def test_deadline_table_follows_domain_md(catalogue):
    critical = catalogue.deadline_policy("critical")
    assert (critical.time_kind, critical.first_response, critical.resolution) == (
        "natural", Duration(30, "minutes"), Duration(24, "hours"))
    urgent = catalogue.deadline_policy("urgent")
    assert (urgent.time_kind, urgent.first_response, urgent.resolution) == (
        "working", Duration(2, "working_hours"), Duration(1, "working_days"))
    normal = catalogue.deadline_policy("normal")
    assert (normal.first_response, normal.resolution) == (
        Duration(0, "close_of_working_day"), Duration(5, "working_days"))
    low = catalogue.deadline_policy("low")
    assert (low.first_response, low.resolution) == (Duration(1, "working_days"), Duration(10, "working_days"))


def test_every_priority_has_a_next_update_interval_on_its_own_clock(catalogue):
    for priority in PRIORITIES:
        policy = catalogue.deadline_policy(priority)
        assert policy.next_update.amount > 0
        assert policy.next_update.is_working_time == (policy.time_kind == "working")


def test_working_hours_callback_and_warnings(catalogue):
    hours = catalogue.working_hours
    assert (hours.start, hours.end, hours.weekdays) == (time(8, 30), time(17, 30), (0, 1, 2, 3, 4))
    assert catalogue.callback.attempts == 3
    assert catalogue.callback.due == Duration(1, "close_of_working_day")
    assert catalogue.warnings_at_percent == (50, 75)


# --- lookups ---------------------------------------------------------------------------------------

def test_get_returns_the_service(catalogue):
    leak = catalogue.get("roof_leak")
    assert isinstance(leak, Service)
    assert (leak.name, leak.category) == ("房屋漏水", "房屋设施")
    assert "roof_leak" in catalogue and "nonsense" not in catalogue


def test_get_unknown_code_raises_unknown_service(catalogue):
    with pytest.raises(UnknownService, match="'pothole'") as raised:
        catalogue.get("pothole")
    assert raised.value.code == "pothole"
    assert isinstance(raised.value, LookupError)


def test_unknown_priority_has_no_deadlines(catalogue):
    with pytest.raises(UnknownPriority, match="'asap'"):
        catalogue.deadline_policy("asap")


def test_services_are_frozen(catalogue):
    with pytest.raises(AttributeError):
        catalogue.get("noise").default_priority = "critical"


def test_open311_form_of_a_service(catalogue):
    entry = catalogue.get("gas_smell").to_open311()
    assert entry == {
        "service_code": "gas_smell", "service_name": "燃气泄漏气味",
        "description": catalogue.get("gas_smell").description, "metadata": False, "type": "realtime",
        "keywords": "燃气,煤气,天然气,气味,泄漏", "group": "公共安全",
    }
    json.dumps(entry)


def test_suggest_ranks_services_by_keyword_hits(catalogue):
    assert [s.code for s in catalogue.suggest("卫生间屋顶漏水，一直滴水")][0] == "roof_leak"
    assert catalogue.suggest("hello") == []


# --- validation ------------------------------------------------------------------------------------

def test_packaged_data_is_valid_as_a_dict(packaged_data):
    assert len(Catalogue.from_dict(packaged_data)) == len(packaged_data["services"])


def _set(path: list, value):
    def edit(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


def _delete(path: list):
    def edit(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return edit


def _duplicate_first_service(data):
    data["services"].append(copy.deepcopy(data["services"][0]))


@pytest.mark.parametrize("edit, message", [
    (_duplicate_first_service, "'roof_leak' appears more than once"),
    (_set(["services", 0, "default_priority"], "asap"), "'default_priority' is 'asap'"),
    (_set(["services", 0, "service_code"], "Roof Leak"), "snake_case"),
    (_set(["services", 0, "service_code"], ""), "'service_code' must be a non-empty string"),
    (_set(["services", 0, "fast_lane"], True), "fast_lane must be true exactly when"),
    (_delete(["services", 0, "service_name"]), "'service_name' must be a non-empty string"),
    (_set(["services", 0, "keywords"], "漏水"), "'keywords' must be a list"),
    (_set(["services", 0], "roof_leak"), "services[0]: must be an object"),
    (_set(["services"], []), "'services' must be a non-empty list"),
    (_delete(["deadlines", "low"]), "no entry for priority 'low'"),
    (_set(["deadlines", "asap"], {}), "unknown priority 'asap'"),
    (_set(["deadlines"], []), "'deadlines' must be an object"),
    (_set(["deadlines", "urgent", "time_kind"], "lunar"), "time_kind is 'lunar'"),
    (_set(["deadlines", "critical", "resolution", "unit"], "working_days"),
     "unit 'working_days' is not allowed for natural time"),
    (_set(["deadlines", "normal", "resolution", "unit"], "hours"), "not allowed for working time"),
    (_set(["deadlines", "normal", "resolution", "amount"], -1), "'amount' must be a whole number >= 0"),
    (_set(["deadlines", "normal", "resolution", "amount"], 1.5), "'amount' must be a whole number"),
    (_set(["working_hours", "start"], "8.30"), "'start' must be a time like '08:30'"),
    (_set(["working_hours", "end"], "08:00"), "start must be before end"),
    (_set(["working_hours", "weekdays"], [7]), "'weekdays' must be a non-empty list"),
    (_delete(["working_hours"]), "working_hours: must be an object"),
    (_set(["callback", "attempts"], 0), "'attempts' must be a whole number >= 1"),
    (_set(["callback", "due", "unit"], "fortnights"), "unit 'fortnights' is not allowed"),
    (_set(["warnings_at_percent"], [50, 150]), "'warnings_at_percent' must be a list"),
])
def test_invalid_data_is_rejected_with_a_clear_message(packaged_data, edit, message):
    with pytest.raises(CatalogueError) as raised:
        Catalogue.from_dict(edited(packaged_data, edit), source="test catalogue")
    assert message in str(raised.value)
    assert str(raised.value).startswith("test catalogue is invalid:")
    assert isinstance(raised.value, ValueError)


def test_every_problem_is_reported_at_once(packaged_data):
    def two_problems(data):
        data["services"][0]["default_priority"] = "asap"
        data["deadlines"]["low"]["time_kind"] = "lunar"

    with pytest.raises(CatalogueError) as raised:
        Catalogue.from_dict(edited(packaged_data, two_problems))
    assert len(raised.value.problems) == 2


def test_a_catalogue_that_is_not_an_object_is_rejected():
    with pytest.raises(CatalogueError, match="must be a JSON object"):
        Catalogue.from_dict(["roof_leak"])

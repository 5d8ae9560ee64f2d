"""The volunteers' routes through the gateway over real HTTP, with the real directory and volunteers services."""

from __future__ import annotations

import base64

import pytest
import requests

from services.directory.service import DirectoryService
from services.volunteers.service import VolunteersService
from tests.integration.harness import bearer, start_gateway

pytestmark = pytest.mark.integration

COMMUNITY = "xingqiao"  # the demo community the directory seeds: every token names it, whatever the settings say
ALL_WEEK = [{"day": day, "start": "00:00", "end": "24:00"} for day in range(7)]


@pytest.fixture
def gateway(container_factory, settings):
    return start_gateway(container_factory, settings, DirectoryService, VolunteersService)


def test_the_office_registers_and_lists_and_a_resident_may_not(gateway, settings):
    secretary = bearer(settings, "secretary", "sec-1", community=COMMUNITY)
    resident = bearer(settings, "resident", "r-1", community=COMMUNITY)
    body = {"name": "周志愿", "phone": "13700000001", "grid": "g1", "skills": ["it_help"], "teams": ["youth_care"],
            "availability": ALL_WEEK}
    first = requests.post(f"{gateway}/api/v1/volunteers", json=body, headers=secretary, timeout=10)
    assert first.status_code == 201, first.text
    again = requests.post(f"{gateway}/api/v1/volunteers", json=body, headers=secretary, timeout=10)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    mass = requests.post(f"{gateway}/api/v1/volunteers", json={**body, "rating_sum": 99}, headers=secretary,
                         timeout=10)
    assert mass.status_code == 422 and "rating_sum" in mass.json()["errors"]

    listed = requests.get(f"{gateway}/api/v1/volunteers", params={"skill": "it_help"}, headers=secretary, timeout=10)
    assert listed.status_code == 200 and [v["phone"] for v in listed.json()["items"]] == ["137****0001"]
    bad_time = requests.get(f"{gateway}/api/v1/volunteers", params={"available_at": "soon"}, headers=secretary,
                            timeout=10)
    assert bad_time.status_code == 422 and "available_at" in bad_time.json()["errors"]
    assert requests.get(f"{gateway}/api/v1/volunteers", headers=resident, timeout=10).status_code == 403

    volunteer = bearer(settings, "volunteer", first.json()["id"], community=COMMUNITY, teams=["youth_care"])
    mine = requests.get(f"{gateway}/api/v1/me/volunteering", headers=volunteer, timeout=10)
    assert mine.status_code == 200 and mine.json()["volunteer"]["skills"] == ["it_help"]
    teams = requests.get(f"{gateway}/api/v1/volunteer-teams", headers=resident, timeout=10).json()["items"]
    assert next(t for t in teams if t["code"] == "youth_care")["members"] == 1


def test_a_wish_through_the_gateway_and_the_record_as_csv(gateway, settings):
    secretary = bearer(settings, "secretary", "sec-1", community=COMMUNITY)
    resident = bearer(settings, "resident", "r-9", community=COMMUNITY)
    registered = requests.post(f"{gateway}/api/v1/volunteers", headers=secretary, timeout=10, json={
        "name": "吴志愿", "phone": "13700000002", "skills": ["errands"], "availability": ALL_WEEK}).json()
    volunteer = bearer(settings, "volunteer", registered["id"], community=COMMUNITY)
    wish = requests.post(f"{gateway}/api/v1/wishes", json={"title": "帮忙买药", "skill": "errands"},
                         headers=resident, timeout=10)
    assert wish.status_code == 201, wish.text
    wish_id = wish.json()["id"]
    assert requests.post(f"{gateway}/api/v1/wishes", json={"title": "x"}, headers=volunteer,
                         timeout=10).status_code == 403
    listed = requests.get(f"{gateway}/api/v1/wishes", headers=volunteer, timeout=10).json()["items"]
    assert [w["id"] for w in listed] == [wish_id]
    claimed = requests.post(f"{gateway}/api/v1/wishes/{wish_id}/claim", headers=volunteer, timeout=10)
    assert claimed.status_code == 200 and claimed.json()["wish_state"] == "claimed"
    again = requests.post(f"{gateway}/api/v1/wishes/{wish_id}/claim", headers=volunteer, timeout=10)
    assert again.status_code == 409
    code = requests.get(f"{gateway}/api/v1/volunteer-tasks/{wish_id}", headers=resident,
                        timeout=10).json()["check_in_code"]
    assert requests.post(f"{gateway}/api/v1/volunteer-tasks/{wish_id}/check-in", json={"code": code},
                         headers=resident, timeout=10).status_code == 403  # a resident checks nobody in
    assert requests.post(f"{gateway}/api/v1/volunteer-tasks/{wish_id}/check-in", json={"code": code},
                         headers=volunteer, timeout=10).status_code == 200
    out = requests.post(f"{gateway}/api/v1/volunteer-tasks/{wish_id}/check-out", headers=volunteer, timeout=10)
    assert out.status_code == 200 and out.json()["wish_state"] == "fulfilled"
    rated = requests.post(f"{gateway}/api/v1/volunteer-tasks/{wish_id}/rating", json={"rating": 5},
                          headers=resident, timeout=10)
    assert rated.status_code == 200 and rated.json()["wish_state"] == "confirmed"

    manual = requests.post(f"{gateway}/api/v1/volunteers/{registered['id']}/hours", headers=secretary, timeout=10,
                           json={"minutes": 30, "date": "2026-12-02", "reason": "整理物资"})
    assert manual.status_code == 201, manual.text
    record = requests.get(f"{gateway}/api/v1/volunteers/{registered['id']}/record", headers=volunteer, timeout=10,
                          params={"from": "2026-12-01", "to": "2026-12-31", "format": "csv"})
    assert record.status_code == 200, record.text
    text = base64.b64decode(record.json()["content_base64"]).decode("utf-8-sig")
    assert "manual,h-" in text and "整理物资" in text
    reversed_period = requests.get(f"{gateway}/api/v1/volunteers/{registered['id']}/record", headers=volunteer,
                                   params={"from": "2026-12-31", "to": "2026-12-01"}, timeout=10)
    assert reversed_period.status_code == 422


def test_an_import_with_bad_rows_answers_the_report(gateway, settings):
    secretary = bearer(settings, "secretary", "sec-1", community=COMMUNITY)
    csv = "姓名,手机号,技能\n郑志愿,13700000003,水电\n,12,juggling\n"
    answer = requests.post(f"{gateway}/api/v1/volunteers/import", headers=secretary, timeout=20, json={
        "filename": "v.csv", "content_base64": base64.b64encode(csv.encode()).decode()})
    assert answer.status_code == 200 and answer.json()["imported"] == 0
    assert answer.json()["rejected"][0]["row"] == 3
    coverage = requests.get(f"{gateway}/api/v1/volunteer-coverage", params={"week": "2026-12-09"},
                            headers=secretary, timeout=10)
    assert coverage.status_code == 200 and coverage.json()["week"] == "2026-12-07"


def test_manual_hours_retried_with_their_idempotency_key_are_added_once(gateway, settings):
    secretary = bearer(settings, "secretary", "sec-1", community=COMMUNITY)
    registered = requests.post(f"{gateway}/api/v1/volunteers", headers=secretary, timeout=10, json={
        "name": "郑志愿", "phone": "13700000003", "skills": ["errands"], "availability": ALL_WEEK}).json()
    keyed = {**secretary, "Idempotency-Key": "hours-2026-12-03-zheng"}
    entry = {"minutes": 45, "date": "2026-12-03", "reason": "社区义诊引导"}
    first = requests.post(f"{gateway}/api/v1/volunteers/{registered['id']}/hours", headers=keyed, json=entry,
                          timeout=10)
    again = requests.post(f"{gateway}/api/v1/volunteers/{registered['id']}/hours", headers=keyed, json=entry,
                          timeout=10)
    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert again.json() == first.json()
    volunteer = bearer(settings, "volunteer", registered["id"], community=COMMUNITY)
    record = requests.get(f"{gateway}/api/v1/volunteers/{registered['id']}/record", headers=volunteer, timeout=10,
                          params={"from": "2026-12-01", "to": "2026-12-31", "format": "csv"})
    text = base64.b64decode(record.json()["content_base64"]).decode("utf-8-sig")
    assert text.count("社区义诊引导") == 1, text

"""The volunteers service with the real directory, broker and database: registry, offers, hours, wishes, records."""

from __future__ import annotations

import base64
import shutil
import subprocess
from datetime import timedelta

import eventlet
import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from kernel.envelope import Envelope, utcnow
from kernel.errors import Conflict, NotFound, ValidationFailed
from kernel.events import current_version
from services.directory.service import DirectoryService
from services.volunteers.repository import TASKS, VOLUNTEERS
from services.volunteers.service import VolunteersService
from tests.support.broker import publish_event

pytestmark = pytest.mark.integration

C = "xingqiao"
SECRETARY = {"subject": "sec-1", "role": "secretary", "community": C, "grids": [], "teams": []}
ALL_WEEK = [{"day": day, "start": "00:00", "end": "24:00"} for day in range(7)]


def resident(subject: str) -> dict:
    return {"subject": subject, "role": "resident", "community": C, "grids": [], "teams": []}


def as_volunteer(subject: str, teams=("neighbour_help",)) -> dict:
    return {"subject": subject, "role": "volunteer", "community": C, "grids": [], "teams": list(teams)}


@pytest.fixture
def platform(container_factory, settings, service_config):
    from tests.conftest import free_port

    directory = container_factory(DirectoryService, service_config)
    config = {**settings.nameko_config(web_address=f"127.0.0.1:{free_port()}"), "VOLUNTEER_OFFER_SECONDS": 600}
    volunteers = container_factory(VolunteersService, config)
    directory.start()
    volunteers.start()
    return directory, volunteers


@pytest.fixture
def rpc(platform, settings):
    with ClusterRpcProxy({"AMQP_URI": settings.amqp_uri, "serializer": "json"}, timeout=20) as proxy:
        yield proxy


@pytest.fixture
def db(settings, mongo_client):
    return mongo_client[settings.database_name("volunteers")]


def register(rpc, name: str, phone: str, **more) -> dict:
    data = {"name": name, "phone": phone, "grid": "g1", "skills": ["plumbing"], "teams": ["neighbour_help"],
            "availability": ALL_WEEK, **more}
    return rpc.volunteers.register(C, data, actor=SECRETARY)


def dispatch(settings, ticket_id: str, team: str = "neighbour_help", residents=("r-1",)) -> None:
    """What the tickets service publishes when a ticket is dispatched to a team."""
    event = Envelope.new("ticket.dispatched", {
        "ticket_id": ticket_id, "number": "XQ-20261206-0001", "grid": "g1", "community": C, "state": "dispatched",
        "service_code": "blocked_drain", "category": "房屋设施", "priority": "normal",
        "attached_residents": list(residents), "assignee": {"kind": "team", "id": team}, "version": 2,
        "occurred_at": utcnow().isoformat(), "actor": None, "previous_state": "received",
    }, community=C, version=current_version("ticket.dispatched"))
    publish_event(settings.amqp_uri, event.to_wire())


def task_of(db, ticket_id: str, wait_until) -> dict:
    return wait_until(lambda: db[TASKS].find_one({"ticket_id": ticket_id}), timeout=10)


def test_a_registration_adds_the_person_to_the_directory_and_counts_in_its_team(rpc, db, settings, mongo_client):
    first = register(rpc, "李建国", "13900001111")
    assert first["created"] and first["phone"] == "139****1111" and first["name"] == "李建国"
    person = rpc.directory.get_person(C, first["id"], {"subject": "admin", "role": "admin", "community": C})
    assert "volunteer" in person["roles"] and "neighbour_help" in person["teams"]
    stored = db[VOLUNTEERS].find_one({"_id": first["id"]})
    assert "13900001111" not in str({k: v for k, v in stored.items() if k != "_outbox"})  # the phone stays out
    assert [e["type"] for e in stored["_outbox"]] == ["volunteer.registered"]

    again = register(rpc, "李建国", "+86 139 0000 1111", skills=["plumbing", "electrical"])
    assert again["id"] == first["id"] and not again["created"] and again["skills"] == ["plumbing", "electrical"]
    teams = {t["code"]: t["members"] for t in rpc.volunteers.list_teams(C)["items"]}
    assert teams["neighbour_help"] == 1 and teams["party_vanguard"] == 0

    with pytest.raises(ValidationFailed) as refused:
        register(rpc, "王五", "13900002222", skills=["juggling"], teams=["no_such_team"])
    assert sorted(refused.value.details) == ["skills", "teams"]


def test_the_list_filters_by_skill_grid_team_and_who_is_free(rpc):
    register(rpc, "甲", "13900000001")
    register(rpc, "乙", "13900000002", grid="g2", skills=["it_help"], teams=["youth_care"],
             availability=[{"day": 5, "start": "09:00", "end": "12:00"}])
    listed = rpc.volunteers.list_volunteers(C, SECRETARY, {})
    assert sorted(v["name"] for v in listed["items"]) == ["乙", "甲"]
    assert all("****" in v["phone"] for v in listed["items"])
    assert [v["name"] for v in rpc.volunteers.list_volunteers(C, SECRETARY, {"skill": "it_help"})["items"]] == ["乙"]
    assert [v["name"] for v in rpc.volunteers.list_volunteers(C, SECRETARY, {"grid": "g1"})["items"]] == ["甲"]
    assert [v["name"] for v in rpc.volunteers.list_volunteers(C, SECRETARY, {"team": "youth_care"})["items"]] == ["乙"]
    tuesday = rpc.volunteers.list_volunteers(C, SECRETARY, {"available_at": "2026-12-08T03:00:00+00:00"})
    assert [v["name"] for v in tuesday["items"]] == ["甲"]
    worker = {"subject": "gw", "role": "grid_worker", "community": C, "grids": ["g2"], "teams": []}
    assert [v["name"] for v in rpc.volunteers.list_volunteers(C, worker, {})["items"]] == ["乙"]


def test_an_import_reports_every_bad_row_and_registers_nothing_until_the_file_is_clean(rpc, db):
    bad = "姓名,手机号,网格,技能,队伍,是否党员,可服务时间\n张三,13900003333,g1,水电,邻里互助,是,周六 09:00-12:00\n" \
          ",123,g9,juggling,,也许,随时\n"
    report = rpc.volunteers.import_volunteers(C, "v.csv", base64.b64encode(bad.encode()).decode(), SECRETARY)
    assert report["imported"] == 0 and [r["row"] for r in report["rejected"]] == [3]
    assert sorted(report["rejected"][0]["errors"]) == ["availability", "grid", "name", "party_member", "phone",
                                                      "skills"]
    assert db[VOLUNTEERS].count_documents({}) == 0
    good = "姓名,手机号,网格,技能,队伍,是否党员,可服务时间\n张三,13900003333,g1,水电,邻里互助,是,周六 09:00-12:00\n"
    report = rpc.volunteers.import_volunteers(C, "v.csv", base64.b64encode(good.encode()).decode(), SECRETARY)
    assert report == {"imported": 1, "created": 1, "updated": 0, "rejected": []}
    [volunteer] = rpc.volunteers.list_volunteers(C, SECRETARY, {})["items"]
    assert volunteer["name"] == "张三" and volunteer["party_member"] and volunteer["teams"] == ["neighbour_help"]
    with pytest.raises(ValidationFailed):
        rpc.volunteers.import_volunteers(C, "v.pdf", base64.b64encode(b"x").decode(), SECRETARY)


def test_a_dispatched_ticket_is_offered_declined_accepted_checked_in_and_out_and_rated(rpc, db, settings,
                                                                                      wait_until):
    first = register(rpc, "王师傅", "13900004444")["id"]
    second = register(rpc, "赵师傅", "13900005555", grid="g2")["id"]
    dispatch(settings, "T-100", residents=("r-1",))
    task = task_of(db, "T-100", wait_until)
    assert [p["volunteer"] for p in task["proposals"]] == [first, second]  # same grid first
    assert "same_grid:g1" in task["proposals"][0]["reasons"] and task["offer"]["volunteer"] == first

    with pytest.raises(Conflict):  # not offered to the second yet
        rpc.volunteers.answer_offer(C, task["_id"], as_volunteer(second), {"answer": "accept"})
    declined = rpc.volunteers.answer_offer(C, task["_id"], as_volunteer(first), {"answer": "decline"})
    assert declined["offer"]["volunteer"] == second and declined["declined"] == [first]
    accepted = rpc.volunteers.answer_offer(C, task["_id"], as_volunteer(second), {"answer": "accept"})
    assert accepted["state"] == "accepted" and "check_in_code" not in accepted  # the volunteer hears it at the door
    code = rpc.volunteers.get_task(C, task["_id"], resident("r-1"))["check_in_code"]

    with pytest.raises(ValidationFailed):
        rpc.volunteers.check_in(C, task["_id"], as_volunteer(second), {"code": "000000" if code != "000000"
                                                                       else "111111"})
    rpc.volunteers.check_in(C, task["_id"], as_volunteer(second), {"code": code})
    # an hour and a half at the task (the check-in moved back rather than a test that waits)
    db[TASKS].update_one({"_id": task["_id"]}, {"$set": {"check_in_at": utcnow() - timedelta(minutes=90)}})
    done = rpc.volunteers.check_out(C, task["_id"], as_volunteer(second))
    assert done["state"] == "checked_out" and done["minutes"] == 90 and not done["auto_closed"]

    with pytest.raises(NotFound):  # only the residents of the ticket rate it
        rpc.volunteers.rate(C, task["_id"], resident("r-2"), {"rating": 1})
    rpc.volunteers.rate(C, task["_id"], resident("r-1"), {"rating": 5, "comment": "很及时"})
    with pytest.raises(Conflict):
        rpc.volunteers.rate(C, task["_id"], resident("r-1"), {"rating": 4})

    stored = db[TASKS].find_one({"_id": task["_id"]})
    assert [e["type"] for e in stored["_outbox"]] == [
        "volunteer.offered", "volunteer.declined", "volunteer.offered", "volunteer.accepted",
        "volunteer.checked_in", "volunteer.checked_out"]
    me = rpc.volunteers.me(C, second)
    assert me["volunteer"]["rating"] == {"count": 1, "average": 5.0}
    assert me["hours_this_year"]["credit_minutes"] == 90


def test_an_unanswered_offer_times_out_to_the_next_candidate(container_factory, settings, rpc, db, wait_until):

    first = register(rpc, "甲", "13900006666")["id"]
    second = register(rpc, "乙", "13900007777", grid="g3")["id"]
    dispatch(settings, "T-200")
    task = task_of(db, "T-200", wait_until)
    assert task["offer"]["volunteer"] == first
    db[TASKS].update_one({"_id": task["_id"]}, {"$set": {"offer.expires_at": utcnow() - timedelta(seconds=1)}})
    moved = wait_until(lambda: (db[TASKS].find_one({"_id": task["_id"], "offer.volunteer": second})), timeout=10)
    assert moved["asked"] == [first, second]
    declined = [e for e in moved["_outbox"] if e["type"] == "volunteer.declined"]
    assert declined[0]["payload"]["reason"] == "timed_out"
    # nobody left once the second lets it lapse too: the task is unfilled, not offered in circles
    db[TASKS].update_one({"_id": task["_id"]}, {"$set": {"offer.expires_at": utcnow() - timedelta(seconds=1)}})
    assert wait_until(lambda: db[TASKS].find_one({"_id": task["_id"], "state": "unfilled"}), timeout=10)


def test_a_redelivered_dispatch_opens_one_task(rpc, db, settings, wait_until):
    register(rpc, "甲", "13900008888")
    event = Envelope.new("ticket.dispatched", {
        "ticket_id": "T-300", "state": "dispatched", "attached_residents": ["r-1"], "grid": "g1",
        "service_code": "noise", "assignee": {"kind": "team", "id": "neighbour_help"}}, community=C,
        version=current_version("ticket.dispatched"))
    publish_event(settings.amqp_uri, event.to_wire())
    publish_event(settings.amqp_uri, event.to_wire())
    task_of(db, "T-300", wait_until)
    eventlet.sleep(1.0)
    assert db[TASKS].count_documents({"ticket_id": "T-300"}) == 1
    assert db[TASKS].find_one({"ticket_id": "T-300"})["state"] == "offering"  # not withdrawn by its own repeat
    publish_event(settings.amqp_uri, event.to_wire())  # a late redelivery, after the task exists
    eventlet.sleep(1.0)
    assert [t["state"] for t in db[TASKS].find({"ticket_id": "T-300"})] == ["offering"]


def test_a_forgotten_check_out_closes_at_the_cap_and_is_marked(rpc, db, settings, wait_until):
    volunteer = register(rpc, "甲", "13900009999")["id"]
    dispatch(settings, "T-400")
    task = task_of(db, "T-400", wait_until)
    rpc.volunteers.answer_offer(C, task["_id"], as_volunteer(volunteer), {"answer": "accept"})
    rpc.volunteers.check_in(C, task["_id"], SECRETARY, {})  # staff confirm presence without the code
    db[TASKS].update_one({"_id": task["_id"]}, {"$set": {"check_in_at": utcnow() - timedelta(hours=13)}})
    closed = wait_until(lambda: db[TASKS].find_one({"_id": task["_id"], "state": "checked_out"}), timeout=10)
    assert closed["auto_closed"] is True and closed["minutes"] == 120
    assert closed["check_in_confirmed_by"] == "sec-1"


def test_manual_hours_are_capped_kept_apart_and_corrected_never_deleted(rpc, db, settings, wait_until):
    volunteer = register(rpc, "甲", "13900001212")["id"]
    manual = rpc.volunteers.add_manual_hours(C, volunteer, {"minutes": 120, "date": "2026-12-01",
                                                            "reason": "社区活动布置"}, SECRETARY)
    with pytest.raises(ValidationFailed):
        rpc.volunteers.add_manual_hours(C, volunteer, {"minutes": 600, "date": "2026-12-01", "reason": "太多"},
                                        SECRETARY)
    correction = rpc.volunteers.correct_hours(C, volunteer, {"target": manual["id"], "delta_minutes": -30,
                                                             "reason": "实际只有一个半小时"}, SECRETARY)
    with pytest.raises(ValidationFailed):
        rpc.volunteers.correct_hours(C, volunteer, {"target": manual["id"], "delta_minutes": -100,
                                                    "reason": "again"}, SECRETARY)
    assert correction["minutes"] == -30
    record = rpc.volunteers.service_record(C, volunteer, SECRETARY, {"from": "2026-12-01", "to": "2026-12-31"})
    assert record["totals"] == {"credit_minutes": 0, "manual_minutes": 90, "total_minutes": 90}
    assert db.hours.count_documents({"volunteer": volunteer}) == 2  # both entries stay
    with pytest.raises(NotFound):  # another volunteer may not read it
        rpc.volunteers.service_record(C, volunteer, as_volunteer("someone-else"),
                                      {"from": "2026-12-01", "to": "2026-12-31"})


def test_a_wish_is_published_claimed_fulfilled_and_confirmed(rpc, db):
    volunteer = register(rpc, "甲", "13900001313", skills=["errands"])["id"]
    wish = rpc.volunteers.publish_wish(C, resident("r-5"), {"title": "想要一台收音机", "skill": "errands"})
    assert wish["wish_state"] == "published" and wish["proposals"][0]["volunteer"] == volunteer
    assert [w["id"] for w in rpc.volunteers.list_wishes(C, as_volunteer(volunteer))["items"]] == [wish["id"]]
    claimed = rpc.volunteers.claim_wish(C, wish["id"], as_volunteer(volunteer))
    assert claimed["wish_state"] == "claimed"
    with pytest.raises(Conflict):
        rpc.volunteers.claim_wish(C, wish["id"], as_volunteer(volunteer))
    code = rpc.volunteers.get_task(C, wish["id"], resident("r-5"))["check_in_code"]
    rpc.volunteers.check_in(C, wish["id"], as_volunteer(volunteer), {"code": code})
    fulfilled = rpc.volunteers.check_out(C, wish["id"], as_volunteer(volunteer))
    assert fulfilled["wish_state"] == "fulfilled"
    confirmed = rpc.volunteers.rate(C, wish["id"], resident("r-5"), {"rating": 4})
    assert confirmed["wish_state"] == "confirmed"
    types = [e["type"] for e in db[TASKS].find_one({"_id": wish["id"]})["_outbox"]]
    assert types == ["wish.published", "volunteer.accepted", "wish.claimed", "volunteer.checked_in",
                     "volunteer.checked_out", "wish.fulfilled"]


def test_duplicate_registrations_merge_without_losing_hours(rpc, db):
    kept = register(rpc, "甲", "13900001414")["id"]
    stored = db[VOLUNTEERS].find_one({"_id": kept})
    # a registration from before the directory merged people by phone: another id, the same phone
    db[VOLUNTEERS].insert_one({**{k: v for k, v in stored.items() if k not in ("_id", "_outbox", "_outbox_since")},
                               "_id": "legacy-1", "skills": ["it_help"], "registered_at": utcnow()})
    rpc.volunteers.add_manual_hours(C, "legacy-1", {"minutes": 60, "date": "2026-12-02", "reason": "旧登记的时长"},
                                    SECRETARY)
    assert rpc.volunteers.duplicates(C) == {"groups": [[kept, "legacy-1"]]}
    merged = rpc.volunteers.merge(C, kept, "legacy-1", SECRETARY)
    assert merged["hour_entries_moved"] == 1
    assert rpc.volunteers.duplicates(C) == {"groups": []}
    record = rpc.volunteers.service_record(C, kept, SECRETARY, {"from": "2026-12-01", "to": "2026-12-31"})
    assert record["totals"]["manual_minutes"] == 60
    assert set(db[VOLUNTEERS].find_one({"_id": kept})["skills"]) == {"plumbing", "it_help"}


def test_coverage_gaps_name_the_skills_and_grids_short_of_volunteers(rpc):
    register(rpc, "甲", "13900001515", skills=["plumbing", "errands"])
    register(rpc, "乙", "13900001616", skills=["plumbing"])
    answer = rpc.volunteers.coverage_gaps(C, "2026-12-09", ["plumbing", "errands"])
    assert answer["week"] == "2026-12-07"
    gaps = {(g["skill"], g["grid"]): g["available"] for g in answer["gaps"]}
    assert ("plumbing", "g1") not in gaps and gaps[("errands", "g1")] == 1 and gaps[("plumbing", "g2")] == 0


@pytest.mark.skipif(not shutil.which("pdftotext"), reason="poppler-utils (pdftotext, pdffonts) not installed")
def test_the_record_exports_as_csv_and_as_a_pdf_with_the_chinese_name_and_an_embedded_font(
        rpc, db, settings, wait_until, tmp_path):
    volunteer = register(rpc, "欧阳志远", "13900001717")["id"]
    dispatch(settings, "T-500")
    task = task_of(db, "T-500", wait_until)
    rpc.volunteers.answer_offer(C, task["_id"], as_volunteer(volunteer), {"answer": "accept"})
    rpc.volunteers.check_in(C, task["_id"], SECRETARY, {})
    db[TASKS].update_one({"_id": task["_id"]}, {"$set": {"check_in_at": utcnow() - timedelta(minutes=45)}})
    rpc.volunteers.check_out(C, task["_id"], SECRETARY)
    today = utcnow().date()
    period = {"from": (today - timedelta(days=2)).isoformat(), "to": (today + timedelta(days=1)).isoformat()}

    csv_file = rpc.volunteers.service_record(C, volunteer, as_volunteer(volunteer), {**period, "format": "csv"})
    text = base64.b64decode(csv_file["content_base64"]).decode("utf-8-sig")
    assert csv_file["filename"].endswith(".csv") and f"task,{task['_id']}" in text and ",45,credit," in text

    pdf = rpc.volunteers.service_record(C, volunteer, SECRETARY, {**period, "format": "pdf"})
    path = tmp_path / pdf["filename"]
    path.write_bytes(base64.b64decode(pdf["content_base64"]))
    assert pdf["content_type"] == "application/pdf" and path.read_bytes().startswith(b"%PDF")
    extracted = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout
    assert "欧阳志远" in extracted and "0.8 小时" in extracted
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True).stdout
    [cjk] = [line for line in fonts.splitlines() if "WenQuanYi" in line]
    assert cjk.split()[-5:-3] == ["yes", "yes"]  # embedded, subset


def test_a_ticket_dispatched_again_withdraws_its_open_offer(rpc, db, settings, wait_until):
    register(rpc, "甲", "13900001818")
    dispatch(settings, "T-600")
    first = task_of(db, "T-600", wait_until)
    dispatch(settings, "T-600")  # bounced and dispatched to the team again
    wait_until(lambda: db[TASKS].count_documents({"ticket_id": "T-600"}) == 2, timeout=10)
    assert db[TASKS].find_one({"_id": first["_id"]})["state"] == "withdrawn"
    assert db[TASKS].find_one({"ticket_id": "T-600", "_id": {"$ne": first["_id"]}})["state"] == "offering"


def test_an_erased_resident_leaves_no_trace_in_tasks_and_wishes(rpc, db, settings, wait_until):
    register(rpc, "甲", "13900001919")
    dispatch(settings, "T-700", residents=("r-erase",))
    task = task_of(db, "T-700", wait_until)
    wish = rpc.volunteers.publish_wish(C, resident("r-erase"), {"title": "想学用智能手机", "skill": "it_help"})
    erased = Envelope.new("resident.erased", {"resident_id": "r-erase", "erased_at": utcnow().isoformat()},
                          community=C, version=current_version("resident.erased"))
    publish_event(settings.amqp_uri, erased.to_wire())
    assert wait_until(lambda: db[TASKS].count_documents({"$or": [{"residents": "r-erase"},
                                                                 {"resident": "r-erase"}]}) == 0, timeout=10)
    assert db[TASKS].find_one({"_id": task["_id"]})["residents"][0].startswith("anon-")
    assert db[TASKS].find_one({"_id": wish["id"]})["title"] == "（已删除）"
    assert "r-erase" not in str(list(db[TASKS].find({"_id": {"$in": [task["_id"], wish["id"]]}})))  # outbox too
    assert "智能手机" not in str(db[TASKS].find_one({"_id": wish["id"]}))

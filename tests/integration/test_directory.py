"""The directory service on the real broker and database, called over RPC as the gateway and notify call it."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import eventlet
import pytest
from nameko.standalone.rpc import ClusterRpcProxy
from nameko.testing.services import entrypoint_hook

from kernel.errors import Forbidden, NotFound, ValidationFailed
from services.directory.people import RESIDENT
from services.directory.repository import PEOPLE, DirectoryRepository, from_document
from services.directory.sealing import Sealer
from services.directory.seed import load_demo, seed
from services.directory.segments import matches
from services.directory.service import DirectoryService
from tests.support.broker import depth, drain

pytestmark = pytest.mark.integration

DEMO = load_demo()
WORKERS = {s["grids"][0]: s["id"] for s in DEMO["staff"] if "grid_worker" in s["roles"]}
SECRETARY_ID = next(s["id"] for s in DEMO["staff"] if "secretary" in s["roles"])
G3_BUILDINGS = {b["code"] for g in DEMO["grids"] if g["code"] == "g3" for b in g["buildings"]}
ERASURES = "huisheng.tickets.erasures"


def viewer(subject: str, role: str, community: str = "xingqiao", grids: tuple = ()) -> dict:
    return {"subject": subject, "role": role, "community": community, "grids": list(grids), "teams": []}


WORKER_G3 = viewer(WORKERS["g3"], "grid_worker", grids=("g3",))
SECRETARY = viewer(SECRETARY_ID, "secretary")


@pytest.fixture
def directory(container_factory, service_config):
    container = container_factory(DirectoryService, service_config)
    container.start()
    return container


@pytest.fixture
def rpc(directory, settings):
    with ClusterRpcProxy({"AMQP_URI": settings.amqp_uri, "serializer": "json"}, timeout=20) as proxy:
        yield proxy.directory


@pytest.fixture
def people(directory, settings, mongo_client):
    return mongo_client[settings.database_name("directory")][PEOPLE]


def file_of(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode()


def test_an_empty_directory_is_seeded_at_start_with_the_demo_community(rpc, people):
    assert rpc.list_communities() == {"items": [{"code": "xingqiao", "name": "兴乔社区", "street": "体育场街道",
                                                 "district": "张店区"}], "next_cursor": None}
    tree = rpc.place_tree("xingqiao")
    assert [g["code"] for g in tree["grids"]] == ["g1", "g2", "g3", "g4", "g5"]
    assert {g["code"]: g["workers"] for g in tree["grids"]} == {g: [w] for g, w in WORKERS.items()}
    assert people.count_documents({}) == len(DEMO["staff"]) + len(DEMO["residents"])
    secretary = people.find_one({"_id": SECRETARY_ID})
    assert secretary["password_hash"].startswith("$argon2id$") and isinstance(secretary["name"], bytes)


def test_a_building_of_grid_3_is_located_to_grid_3_s_worker(rpc):
    building = sorted(G3_BUILDINGS)[0]
    assert rpc.locate("xingqiao", building) == {"community": "xingqiao", "grid": "g3", "building": building,
                                               "workers": [WORKERS["g3"]]}
    with pytest.raises(NotFound):
        rpc.locate("xingqiao", "b99")
    with pytest.raises(NotFound):
        rpc.locate("dongcheng", building)


def test_route_places_a_ticket_by_the_building_given_or_the_resident_s_home(rpc):
    resident = DEMO["residents"][0]
    home = resident["building"]
    expected = rpc.locate("xingqiao", home)
    assert rpc.route("xingqiao", resident["id"]) == expected  # the resident's home, read without unsealing
    building = sorted(G3_BUILDINGS)[0]
    assert rpc.route("xingqiao", resident["id"], building) == rpc.locate("xingqiao", building)  # given wins
    assert rpc.route("xingqiao", "p-nobody") == {} and rpc.route("xingqiao") == {}
    with pytest.raises(NotFound):
        rpc.route("xingqiao", None, "b99")


def all_pages(call, limit: int = 7) -> list[dict]:
    items, cursor = [], None
    while True:
        page = call(cursor, limit)
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def test_residents_are_listed_masked_a_page_at_a_time_within_the_viewer_s_scope(rpc):
    everyone = all_pages(lambda cursor, limit: rpc.list_residents("xingqiao", SECRETARY, {}, cursor, limit))
    assert len(everyone) == len({r["id"] for r in everyone}) == len(DEMO["residents"])
    phones = {r["phone"] for r in DEMO["residents"]}
    assert all(r["phone"] not in phones and r["phone"].count("*") == 4 for r in everyone)
    assert all(r["address"]["room"] is None and "contacts" not in r for r in everyone)

    grid3 = all_pages(lambda cursor, limit: rpc.list_residents("xingqiao", WORKER_G3, None, cursor, limit))
    expected = {r["id"] for r in DEMO["residents"] if r["building"] in G3_BUILDINGS}
    assert {r["id"] for r in grid3} == expected and expected
    assert {r["grid"] for r in grid3} == {"g3"}
    # a grid worker asking for another grid gets nobody, not that grid
    assert rpc.list_residents("xingqiao", WORKER_G3, {"grid": "g1"}, None, 50)["items"] == []

    for outsider in (viewer(SECRETARY_ID, "secretary", community="dongcheng"), viewer("p-000000000001", RESIDENT)):
        with pytest.raises(Forbidden):
            rpc.list_residents("xingqiao", outsider, {}, None, 50)
    with pytest.raises(ValidationFailed):
        rpc.list_residents("xingqiao", SECRETARY, {"flags": ["rich"]}, None, 50)


def test_a_staff_read_of_a_full_record_is_audited_a_self_read_is_not(rpc):
    resident = next(r for r in DEMO["residents"] if r["building"] in G3_BUILDINGS)
    record = rpc.get_person("xingqiao", resident["id"], WORKER_G3)
    assert record["phone"] == resident["phone"] and record["address"]["room"] == resident["room"]
    assert record["place"]["grid"] == "g3"
    rpc.get_person("xingqiao", resident["id"], viewer(resident["id"], RESIDENT))
    other_grid = next(r for r in DEMO["residents"] if r["building"] not in G3_BUILDINGS)
    with pytest.raises(NotFound):
        rpc.get_person("xingqiao", other_grid["id"], WORKER_G3)

    audit = rpc.audit("xingqiao", {"subject": resident["id"]}, None, 50)
    assert [(e["actor"], e["subject"], e["action"]) for e in audit["items"]] == [
        (WORKERS["g3"], resident["id"], "read_full_record")]
    assert rpc.audit("xingqiao", {"actor": SECRETARY_ID}, None, 50)["items"] == []
    assert rpc.export_person("xingqiao", resident["id"])["record_reads"][0]["actor"] == WORKERS["g3"]


def test_an_import_with_one_bad_row_writes_nothing_and_a_good_one_writes_every_row(rpc, people):
    before = people.count_documents({})
    bad = ("姓名,手机号,楼栋,单元,房号,出生年份\n"
           "新住户甲,13800003001,b01,1,101,1990\n"
           "新住户乙,13800003002,b99,1,101,1990\n")
    report = rpc.import_residents("xingqiao", "r.csv", file_of(bad), SECRETARY)
    assert report["imported"] == 0 and [r["row"] for r in report["rejected"]] == [3]
    assert "building" in report["rejected"][0]["errors"]
    assert people.count_documents({}) == before

    good = bad.replace("b99", "b02") + f"王秀英改,{DEMO['residents'][0]['phone']},b01,2,202,1939\n"
    report = rpc.import_residents("xingqiao", "r.csv", file_of(good), SECRETARY)
    assert (report["imported"], report["created"], report["updated"], report["rejected"]) == (3, 2, 1, [])
    assert people.count_documents({}) == before + 2
    updated = rpc.get_person("xingqiao", DEMO["residents"][0]["id"], SECRETARY)
    assert (updated["name"], updated["address"]["room"]) == ("王秀英改", "202")

    places = "网格编号,网格名称,楼栋编号,楼栋名称,地址,单元,房号\ng6,第六网格,b40,40号楼,兴乔小区40号楼,1,101 102\n"
    assert rpc.import_places("xingqiao", "p.csv", file_of(places), SECRETARY) == {"imported": 1, "rejected": []}
    assert rpc.locate("xingqiao", "b40")["grid"] == "g6"
    with pytest.raises(ValidationFailed):
        rpc.import_places("xingqiao", "p.pdf", file_of(places), SECRETARY)


def test_export_then_erase_leaves_a_tombstone_and_publishes_resident_erased(rpc, people, settings, wait_until):
    resident = DEMO["residents"][3]
    exported = rpc.export_person("xingqiao", resident["id"])
    assert exported["person"]["phone"] == resident["phone"] and exported["person"]["name"] == resident["name"]
    json.dumps(exported)  # the export is plain JSON
    consent = rpc.record_consent("xingqiao", resident["id"], "sms", True)
    assert consent["granted"] is True

    answer = rpc.erase_person("xingqiao", resident["id"])
    assert answer["erased"] is True and answer["resident_id"] == resident["id"]
    stored = people.find_one({"_id": resident["id"]})
    assert stored["erased_at"] is not None
    assert all(stored.get(key) in (None, [], {}) for key in (
        "name", "phone", "phone_hash", "email", "address", "birth_year", "household", "flags", "consents"))
    with pytest.raises(NotFound):
        rpc.me("xingqiao", resident["id"])
    assert rpc.erase_person("xingqiao", resident["id"])["erased_at"] == answer["erased_at"]  # idempotent

    wait_until(lambda: depth(settings.amqp_uri, ERASURES) == 1, timeout=10)
    [(event, _)] = drain(settings.amqp_uri, ERASURES)
    assert (event["type"], event["version"], event["payload"]) == (
        "resident.erased", 1, {"resident_id": resident["id"], "erased_at": answer["erased_at"]})
    eventlet.sleep(0.5)
    assert depth(settings.amqp_uri, ERASURES) == 0  # the second erase published nothing new


def test_the_retention_job_erases_who_moved_out_long_ago(directory, rpc, people):
    gone, recent = DEMO["residents"][5]["id"], DEMO["residents"][6]["id"]
    long_ago = (datetime.now(UTC) - timedelta(days=400)).isoformat()
    rpc.record_move_out("xingqiao", gone, long_ago)
    rpc.record_move_out("xingqiao", recent)
    with entrypoint_hook(directory, "erase_departed") as erase_departed:
        assert erase_departed() == 1
    assert people.find_one({"_id": gone})["erased_at"] is not None
    assert people.find_one({"_id": recent})["erased_at"] is None


def test_segments_over_rpc_agree_with_the_pure_rule(rpc, people, settings):
    sealer = Sealer.from_settings(settings)
    tree = DirectoryRepository(people.database, sealer).community("xingqiao")
    everyone = [from_document(d, sealer) for d in people.find({})]
    today = datetime.now(UTC)
    specs = [{}, {"grid": "g3"}, {"building": "b05"}, {"min_age": 60}, {"max_age": 40},
             {"flags": ["home_quarantine"]}, {"grid": "g1", "min_age": 60, "flags": ["elderly"]},
             {"min_age": 60, "max_age": 70}]
    for spec in specs:
        served = {item["id"] for item in all_pages(lambda c, n, s=spec: rpc.segment("xingqiao", s, c, n), 9)}
        assert served == {p.id for p in everyone if matches(p, spec, tree, today)}, spec
    assert rpc.segment("xingqiao", {"flags": ["home_quarantine"]}, None, 50)["items"]
    contacts = rpc.contacts("xingqiao", [DEMO["residents"][0]["id"], "p-ffffffffffff"])
    assert list(contacts) == [DEMO["residents"][0]["id"]]
    assert contacts[DEMO["residents"][0]["id"]]["phone"] == DEMO["residents"][0]["phone"]


def test_seeding_twice_at_once_seeds_once(settings, mongo_client):
    db = mongo_client[settings.database_name("directory")]
    sealer = Sealer.from_settings(settings)
    results = [thread.wait() for thread in [eventlet.spawn(seed, db, sealer) for _ in range(2)]]
    assert sorted(results) == [False, True]
    assert db[PEOPLE].count_documents({}) == len(DEMO["staff"]) + len(DEMO["residents"])
    assert seed(db, sealer) is False


def test_staff_are_created_with_hashed_passwords_and_scoped_grids(rpc, people):
    created = rpc.create_staff("xingqiao", {"name": "钱多多", "phone": "138 0000 1099", "roles": ["grid_worker"],
                                            "grids": ["g2"], "password": "a-long-password"})
    assert created["grids"] == ["g2"] and "password" not in created and "password_hash" not in created
    assert people.find_one({"_id": created["id"]})["password_hash"].startswith("$argon2id$")
    assert created["id"] in rpc.locate("xingqiao", "b05")["workers"]
    with pytest.raises(ValidationFailed):
        rpc.create_staff("xingqiao", {"name": "x", "phone": "13800001098", "roles": ["grid_worker"],
                                      "grids": ["g9"]})

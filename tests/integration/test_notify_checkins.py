"""The daily health check-in of residents in home quarantine, with the real directory (its demo community):
sent once at the hour the office set, to the residents the directory flags, answered by a resident, listed for
each grid worker, and those who did not answer raised to their grid worker as a staff echo.

The timer's pass is called with the moment it would run at (``run_checkins(now)``), so nothing waits for 09:00.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from nameko.testing.services import entrypoint_hook

from kernel.errors import NotFound, ValidationFailed
from services.directory.seed import load_demo
from services.directory.service import DirectoryService
from services.notify.service import NotifyService
from tests.conftest import free_port

pytestmark = pytest.mark.integration

DEMO = load_demo()
QUARANTINED = [p for p in DEMO["residents"] if "home_quarantine" in p.get("flags", [])]
GRID_OF = {b["code"]: g["code"] for g in DEMO["grids"] for b in g["buildings"]}
WORKERS = {grid: s["id"] for s in DEMO["staff"] if "grid_worker" in s["roles"] for grid in s["grids"]}
ZONE = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def notify(container_factory, settings):
    # no timer pass of its own during the test: at a real 09:00 it would send the check-in before the test does
    config = dataclasses.replace(settings, notify_timer_seconds=3600.0).nameko_config(
        web_address=f"127.0.0.1:{free_port()}")
    container_factory(DirectoryService, settings.nameko_config(web_address=f"127.0.0.1:{free_port()}")).start()
    container = container_factory(NotifyService, config)
    container.start()
    return container


def call(container, name: str, *args):
    with entrypoint_hook(container, name) as method:
        return method(*args)


def test_the_daily_checkin_is_sent_once_answered_listed_and_the_silent_ones_raised(notify, settings, mongo_client,
                                                                                   wait_until):
    assert len({GRID_OF[p["building"]] for p in QUARANTINED}) >= 2  # the demo spreads them over grids
    today = datetime.now(ZONE).date()
    at = lambda hour, minute=0: datetime.combine(today, time(hour, minute), tzinfo=ZONE).isoformat()  # noqa: E731

    assert call(notify, "run_checkins", at(9, 30))["day"] is None  # no hour set: no check-in
    with pytest.raises(ValidationFailed):
        call(notify, "set_checkin_schedule", "xingqiao", {"at": "9am"})
    assert call(notify, "set_checkin_schedule", "xingqiao", {"at": "09:00"})["at"] == "09:00"
    assert call(notify, "run_checkins", at(8, 59))["day"] is None  # before the hour
    first = call(notify, "run_checkins", at(9, 0))
    again = call(notify, "run_checkins", at(9, 30))  # a later pass (or another process) sends nothing more
    assert (first["created"], again["created"], first["raised"]) == (True, False, 0)

    db = mongo_client[settings.database_name("notify")]
    checkin = f"checkin-xingqiao-{today.isoformat()}"
    assert wait_until(lambda: (db.broadcasts.find_one({"_id": checkin}) or {}).get("status") == "done", timeout=20)
    assert sorted(m["recipient"] for m in db.inbox.find({"broadcast_id": checkin})) == sorted(
        p["id"] for p in QUARANTINED)

    answering, silent = QUARANTINED[0], QUARANTINED[1:]
    answer = call(notify, "answer_checkin", "xingqiao", answering["id"], {"status": "well", "temperature": 36.5})
    assert (answer["date"], answer["status"]) == (today.isoformat(), "well")
    with pytest.raises(ValidationFailed):
        call(notify, "answer_checkin", "xingqiao", answering["id"], {"status": "fine", "extra": 1})
    with pytest.raises(NotFound):  # not in quarantine: no check-in reached them
        call(notify, "answer_checkin", "xingqiao", DEMO["residents"][0]["id"] if DEMO["residents"][0] not in
             QUARANTINED else DEMO["residents"][1]["id"], {"status": "well"})

    secretary = {"subject": "s-1", "role": "secretary", "community": "xingqiao", "grids": [], "teams": []}
    roll = call(notify, "list_checkins", "xingqiao", secretary, today.isoformat())
    assert (roll["answered"], roll["missing"]) == (1, len(silent))
    assert [row["resident"] for row in roll["items"] if row["answered"]] == [answering["id"]]
    grid = GRID_OF[silent[0]["building"]]
    worker = {"subject": WORKERS[grid], "role": "grid_worker", "community": "xingqiao", "grids": [grid], "teams": []}
    mine = call(notify, "list_checkins", "xingqiao", worker, today.isoformat())
    assert mine["items"] and {row["grid"] for row in mine["items"]} == {grid}
    with pytest.raises(ValidationFailed):
        call(notify, "list_checkins", "xingqiao", secretary, "yesterday")

    raised = call(notify, "run_checkins", at(15, 0))  # six hours after the notice
    assert raised["raised"] >= 1
    assert call(notify, "run_checkins", at(15, 30))["raised"] == 0  # once a day
    missing_in = {GRID_OF[p["building"]] for p in silent}
    for grid_code in missing_in:
        [message] = list(db.inbox.find({"recipient": WORKERS[grid_code], "_id": {"$regex": f"^{checkin}:missing:"}}))
        count = sum(GRID_OF[p["building"]] == grid_code for p in silent)
        assert message["title"] == "居家隔离人员未打卡" and f"{count} 位" in message["body"], message
    answered_grid = GRID_OF[answering["building"]]
    if answered_grid not in missing_in:
        assert db.inbox.count_documents({"recipient": WORKERS[answered_grid], "_id": {"$regex": "missing"}}) == 0
    assert (today + timedelta(days=1)).isoformat() not in [b["_id"][-10:] for b in db.broadcasts.find()]

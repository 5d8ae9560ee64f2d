"""Broadcasts: a notice to a segment fanned out in batches on its own queue, idempotent per resident, with progress.

The directory is not running here: a subclass pages through a list of residents as ``directory.segment`` does.
"""

from __future__ import annotations

import pytest
from nameko.testing.services import entrypoint_hook

from kernel.envelope import Envelope
from kernel.errors import ValidationFailed
from services.notify.service import BROADCAST_BATCH, NotifyService
from tests.conftest import free_port

pytestmark = pytest.mark.integration

RESIDENTS = [f"r-{n:05d}" for n in range(1, 1201)]  # more than two pages


class SegmentNotify(NotifyService):
    """notify whose segments come from a list, a page per call, as the directory answers them."""

    def segment_page(self, community: str, spec: dict, cursor: str | None, limit: int) -> dict:
        if set(spec) - {"grid"}:
            raise ValidationFailed("the segment is not valid", {k: ["Unknown field."] for k in set(spec) - {"grid"}})
        start = int(cursor or 0)
        members = RESIDENTS if spec.get("grid") != "g-empty" else []
        items = [{"id": person, "name": "", "grid": "g1", "building": "b1"} for person in members[start:start + limit]]
        following = start + limit
        return {"items": items, "next_cursor": str(following) if following < len(members) else None}


@pytest.fixture
def notify(container_factory, settings):
    container = container_factory(SegmentNotify, settings.nameko_config(web_address=f"127.0.0.1:{free_port()}"))
    container.start()
    return container


def progress(container, broadcast_id: str) -> dict:
    with entrypoint_hook(container, "get_broadcast") as get:
        return get("xingqiao", broadcast_id)


def test_a_broadcast_reaches_every_resident_of_the_segment_once(notify, settings, mongo_client, wait_until):
    with entrypoint_hook(notify, "create_broadcast") as create:
        created = create("xingqiao", {"title": "停水通知", "body": "明日9时至12时停水，咨询 13812345678",
                                      "segment": {"grid": "g1"}}, "s-1")
    assert created["status"] in ("queued", "sending", "done") and created["failed"] == 0
    assert "138****5678" in created["body"]
    assert wait_until(lambda: progress(notify, created["id"])["status"] == "done", timeout=20)
    done = progress(notify, created["id"])
    assert (done["targeted"], done["delivered"], done["read"]) == (len(RESIDENTS), len(RESIDENTS), 0)
    assert len(RESIDENTS) > BROADCAST_BATCH  # the fan-out took more than one page

    inbox = mongo_client[settings.database_name("notify")].inbox
    with entrypoint_hook(notify, "mark_read") as mark_read:
        mark_read("xingqiao", "r-00001", f"{created['id']}:r-00001")
    assert progress(notify, created["id"])["read"] == 1

    # a crash after the first page was stored, before the second: the request, handled again, resumes
    broadcasts = inbox.database.broadcasts
    [request] = broadcasts.find_one({"_id": created["id"]}, {"_outbox": 1})["_outbox"]
    broadcasts.update_one({"_id": created["id"]}, {"$set": {"status": "sending", "cursor": str(BROADCAST_BATCH)}})
    inbox.delete_many({"broadcast_id": created["id"], "recipient": {"$gt": RESIDENTS[BROADCAST_BATCH - 1]}})
    with entrypoint_hook(notify, "on_broadcast") as on_broadcast:
        on_broadcast(Envelope.from_wire({k: v for k, v in request.items() if not k.startswith("_")}))
    assert progress(notify, created["id"])["status"] == "done"
    assert inbox.count_documents({"broadcast_id": created["id"]}) == len(RESIDENTS)
    assert inbox.count_documents({"broadcast_id": created["id"], "recipient": "r-00777"}) == 1
    assert inbox.count_documents({"broadcast_id": created["id"], "recipient": "r-00001"}) == 1


def test_a_bad_segment_is_refused_before_anything_is_stored(notify, settings, mongo_client):
    with entrypoint_hook(notify, "create_broadcast") as create:
        with pytest.raises(ValidationFailed) as bad_segment:
            create("xingqiao", {"title": "通知", "body": "内容", "segment": {"colour": "red"}}, "s-1")
        with pytest.raises(ValidationFailed) as bad_body:
            create("xingqiao", {"title": "", "body": "内容", "extra": 1}, "s-1")
    assert "colour" in bad_segment.value.details and {"title", "extra"} <= set(bad_body.value.details)
    assert mongo_client[settings.database_name("notify")].broadcasts.count_documents({}) == 0


def test_an_empty_segment_is_done_with_nobody(notify, wait_until):
    with entrypoint_hook(notify, "create_broadcast") as create:
        created = create("xingqiao", {"title": "通知", "body": "内容", "segment": {"grid": "g-empty"}}, "s-1")
    assert wait_until(lambda: progress(notify, created["id"])["status"] == "done")
    assert progress(notify, created["id"])["targeted"] == 0

"""Broadcasts: a notice to a segment fanned out in batches on its own queue, idempotent per resident, with progress.

The directory is not running here: a subclass pages through a list of residents as ``directory.segment`` does.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from nameko.testing.services import entrypoint_hook

from kernel.envelope import Envelope
from kernel.errors import ValidationFailed
from services.notify.service import BROADCAST_BATCH, NotifyService
from tests.conftest import free_port
from tests.integration.test_notify_echoes import (  # noqa: F401  (fixtures)
    echo_settings,
    http,
    no_faults,
    prefer,
    signed_receipts,
    standins,
)

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


def test_the_community_s_broadcasts_are_listed_newest_first_a_page_at_a_time(notify, wait_until):
    created = []
    with entrypoint_hook(notify, "create_broadcast") as create:
        for title in ("第一则", "第二则", "第三则"):
            created.append(create("xingqiao", {"title": title, "body": "内容", "segment": {"grid": "g-empty"}},
                                  "s-1"))
    assert wait_until(lambda: all(progress(notify, b["id"])["status"] == "done" for b in created))
    with entrypoint_hook(notify, "list_broadcasts") as list_broadcasts:
        first = list_broadcasts("xingqiao", limit=2)
        rest = list_broadcasts("xingqiao", cursor=first["next_cursor"], limit=2)
        elsewhere = list_broadcasts("dongcheng")
    assert [b["title"] for b in first["items"] + rest["items"]] == ["第三则", "第二则", "第一则"]
    assert rest["next_cursor"] is None and first["items"][0] == progress(notify, created[2]["id"])
    assert elsewhere == {"items": [], "next_cursor": None}


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


# --- each resident on their preferred channel --------------------------------------------------------------

PEOPLE = ["b-sms", "b-no-consent", "b-wx", "b-in-1", "b-in-2", "b-in-3"]
CONTACTS = {"b-sms": {"phone": "13900000201", "consents": {"broadcasts": True}},
            "b-no-consent": {"phone": "13900000202", "consents": {"broadcasts": False}},
            "b-wx": {"wechat_openid": "openid-b-wx"}}


class PreferringNotify(NotifyService):
    """A segment of six, their contacts from a table (the directory answers both in the platform)."""

    def segment_page(self, community: str, spec: dict, cursor: str | None, limit: int) -> dict:
        start = int(cursor or 0)
        following = start + 4  # two pages
        return {"items": [{"id": person} for person in PEOPLE[start:following]],
                "next_cursor": str(following) if following < len(PEOPLE) else None}

    def lookup_contacts(self, community: str, person: str) -> dict:
        return CONTACTS.get(person, {})

    def lookup_many_contacts(self, community: str, people: list[str]) -> dict:
        return {person: CONTACTS.get(person, {}) for person in people}


@pytest.fixture
def preferring(container_factory, settings, standins):  # noqa: F811
    config = echo_settings(settings, standins, sms_receipt_secret="receipts-secret",
                           notify_step_deadlines=(("sms", 600.0),))
    container = container_factory(PreferringNotify, config.nameko_config(web_address=f"127.0.0.1:{free_port()}"))
    container.start()
    return container


def test_a_broadcast_reaches_each_resident_on_their_preferred_channel(preferring, standins, settings,  # noqa: F811
                                                                      mongo_client, wait_until):
    prefer(preferring, "b-sms", channels=["sms", "inbox"])
    prefer(preferring, "b-no-consent", channels=["sms", "inbox"])
    prefer(preferring, "b-wx", channels=["wechat"])
    with entrypoint_hook(preferring, "create_broadcast") as create:
        created = create("xingqiao", {"title": "停水通知", "body": "明日停水", "segment": {}}, "s-1")
    assert wait_until(lambda: progress(preferring, created["id"])["status"] == "done")
    assert wait_until(lambda: progress(preferring, created["id"])["delivered"] == 5)
    done = progress(preferring, created["id"])
    assert (done["targeted"], done["failed"], done["read"]) == (6, 0, 0)  # the SMS waits for its receipt

    db = mongo_client[settings.database_name("notify")]
    assert sorted(m["recipient"] for m in db.inbox.find({"broadcast_id": created["id"]})) == sorted(PEOPLE)
    [sms] = http("GET", f"{standins['sms']}/_standin/messages?phone=13900000201")["items"]
    assert sms["out_id"] == f"{created['id']}:b-sms:sms"
    assert http("GET", f"{standins['sms']}/_standin/messages?phone=13900000202")["items"] == []  # consent withdrawn
    [wx] = http("GET", f"{standins['wechat']}/_standin/messages?touser=openid-b-wx")["items"]
    assert wx["idempotency_key"] == f"{created['id']}:b-wx:wechat"
    refused = db.echoes.find_one({"_id": f"{created['id']}:b-no-consent"})
    assert [s["status"] for s in refused["steps"]] == ["skipped", "delivered"]
    assert refused["steps"][0]["answers"][0]["reason"] == "consent withdrawn"

    raw, stamp, signature = signed_receipts([{"out_id": sms["out_id"], "success": True, "err_code": "DELIVERED",
                                              "report_time": datetime.now(UTC).isoformat()}])
    with entrypoint_hook(preferring, "sms_receipts") as receipts:
        assert receipts(raw, stamp, signature)["applied"] == 1
    assert progress(preferring, created["id"])["delivered"] == 6

    # the request handled again from the start (a crash before its first page was recorded): nothing twice
    db.broadcasts.update_one({"_id": created["id"]}, {"$set": {"status": "sending", "cursor": None, "targeted": 0}})
    [request] = db.broadcasts.find_one({"_id": created["id"]}, {"_outbox": 1})["_outbox"]
    with entrypoint_hook(preferring, "on_broadcast") as on_broadcast:
        on_broadcast(Envelope.from_wire({k: v for k, v in request.items() if not k.startswith("_")}))
    assert db.inbox.count_documents({"broadcast_id": created["id"]}) == len(PEOPLE)
    assert len(http("GET", f"{standins['sms']}/_standin/messages?phone=13900000201")["items"]) == 1
    assert len(http("GET", f"{standins['wechat']}/_standin/messages?touser=openid-b-wx")["items"]) == 1
    assert progress(preferring, created["id"])["delivered"] == 6


def test_a_page_of_broadcasts_is_counted_at_once_as_each_would_be_counted_alone(settings, mongo_client):
    from services.notify.repository import BroadcastRepository

    db = mongo_client[settings.database_name("notify")]
    at = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
    db.inbox.insert_many([
        {"_id": "a1", "broadcast_id": "a", "echo": {"status": "delivered"}, "read_at": at},
        {"_id": "a2", "broadcast_id": "a", "echo": {"status": "delivered"}, "read_at": None},
        {"_id": "a3", "broadcast_id": "a"},  # its echo went to a push channel: counted from the echoes
        {"_id": "b1", "broadcast_id": "b", "echo": {"status": "delivered"}},
        {"_id": "t1", "ticket_id": "t", "echo": {"status": "delivered"}, "read_at": at},  # a ticket's echo
    ])
    db.echoes.insert_many([
        {"_id": "a3", "broadcast_id": "a", "status": "delivered"},
        {"_id": "a4", "broadcast_id": "a", "status": "failed"},
        {"_id": "a5", "broadcast_id": "a", "status": "sending"},
        {"_id": "b2", "broadcast_id": "b", "status": "failed"},
    ])
    counted = BroadcastRepository(db).counts(["a", "b", "none"])
    assert counted == {"a": (3, 1, 1), "b": (1, 0, 1), "none": (0, 0, 0)}
    for broadcast, (delivered, read, failed) in counted.items():  # what four counts of each would say
        assert delivered == db.inbox.count_documents({"broadcast_id": broadcast, "echo.status": "delivered"}) + \
            db.echoes.count_documents({"broadcast_id": broadcast, "status": "delivered"})
        assert read == db.inbox.count_documents({"broadcast_id": broadcast, "read_at": {"$ne": None}})
        assert failed == db.echoes.count_documents({"broadcast_id": broadcast, "status": "failed"})
    assert BroadcastRepository(db).counts([]) == {}

"""notify's echoes end to end inside the service: preferences, the fallback plan across real provider
stand-ins (SMS, WeChat), retries, deadlines, the human step, quiet hours, read receipts, idempotency; and
what a ticket's timeline shows of each echo (``echo_outcomes``), read from the records, never published.

The directory is not running here: a subclass answers ``lookup_contacts`` from a table (the directory's
``contacts`` RPC is covered by the directory's own tests).
"""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from nameko.testing.services import entrypoint_hook

from kernel.envelope import Envelope
from kernel.errors import NotFound, ValidationFailed
from services.notify.service import NotifyService
from tests.conftest import ROOT, free_port
from tests.support.broker import depth, drain, publish_event

pytestmark = pytest.mark.integration

SMS_KEY, SMS_SECRET = "LTAI-echoes", "echoes-secret"
APPID, APPSECRET = "wx-echoes", "wechat-echoes-secret"
CONTACTS = {
    "r-sms": {"phone": "13900000101", "wechat_openid": "openid-r-sms", "email": None},
    "r-late": {"phone": "13900000102", "wechat_openid": None, "email": None},
    "r-wx": {"phone": None, "wechat_openid": "openid-r-wx", "email": None},
    "r-nomail": {"phone": None, "wechat_openid": None, "email": None},
    "r-human": {"phone": "13900000105", "wechat_openid": None, "email": None},
    "r-quiet": {"phone": "13900000106", "wechat_openid": None, "email": None},
    "r-loud": {"phone": "13900000107", "wechat_openid": None, "email": None},
    "r-rcpt-ok": {"phone": "13900000108", "wechat_openid": None, "email": None},
    "r-rcpt-bad": {"phone": "13900000109", "wechat_openid": None, "email": None},
}


class TableNotify(NotifyService):
    """notify with its contacts from a table instead of the directory."""

    def lookup_contacts(self, community: str, person: str) -> dict:
        return CONTACTS.get(person, {})


def start_standin(module: str, port: int, *args: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port), *args],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 15
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise AssertionError(f"{module} did not start: {process.stderr.read().decode()[-2000:]}") from None
            time.sleep(0.1)


def http(method: str, url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    ports = {"sms": free_port(), "wechat": free_port()}
    journal = tmp_path_factory.mktemp("echo-sms") / "journal.jsonl"
    processes = [
        start_standin("standins.sms", ports["sms"], "--journal", str(journal), "--access-key-id", SMS_KEY,
                      "--access-key-secret", SMS_SECRET, "--rate-per-minute", "100"),
        start_standin("standins.wechat", ports["wechat"], "--appid", APPID, "--secret", APPSECRET),
    ]
    yield {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    for process in processes:
        process.terminate()
        process.wait(10)


@pytest.fixture(autouse=True)
def no_faults(standins):
    for url in standins.values():
        http("DELETE", f"{url}/_standin/faults")
    yield
    for url in standins.values():
        http("DELETE", f"{url}/_standin/faults")


def echo_settings(settings, standins, **extra):
    values = {"sms_provider_url": f"{standins['sms']}/", "sms_access_key_id": SMS_KEY,
              "sms_access_key_secret": SMS_SECRET, "sms_timeout": 1.0, "wechat_api_url": standins["wechat"],
              "wechat_appid": APPID, "wechat_secret": APPSECRET, "notify_timer_seconds": 0.2,
              "notify_retry_delays": (0.2,), "notify_max_attempts": 2,
              "notify_step_deadlines": (("sms", 1.0), ("human", 3600.0)), "echo_proof_seconds": 60.0}
    return dataclasses.replace(settings, **{**values, **extra})


@pytest.fixture
def notify(container_factory, settings, standins):
    config = echo_settings(settings, standins).nameko_config(web_address=f"127.0.0.1:{free_port()}")
    container = container_factory(TableNotify, config)
    container.start()
    return container


class EchoRecords:
    """Every echo record of notify's database: those in ``echoes`` and those an inbox message carries (an echo
    delivered at once in the inbox is one document, its message; see services/notify/repository.py)."""

    def __init__(self, db):
        self.own, self.inbox = db.echoes, db.inbox

    def find_one(self, query: dict) -> dict | None:
        found = self.own.find_one(query)
        if found is not None:
            return found
        message = self.inbox.find_one({**query, "echo": {"$exists": True}})
        return None if message is None else {**message["echo"], "_id": message["_id"],
                                             "_outbox": message.get("_outbox", [])}

    def count_documents(self, query: dict) -> int:
        return self.own.count_documents(query) + self.inbox.count_documents({**query, "echo": {"$exists": True}})

    def update_one(self, query: dict, update: dict):
        return self.own.update_one(query, update)


@pytest.fixture
def echoes(mongo_client, settings):
    return EchoRecords(mongo_client[settings.database_name("notify")])


def prefer(container, person: str, **preferences) -> dict:
    with entrypoint_hook(container, "put_preferences") as put:
        return put("xingqiao", person, preferences)


def resolved(resident: str, priority: str = "normal", number: str = "XQ-0099") -> Envelope:
    return Envelope.new("ticket.resolved", {
        "ticket_id": f"T-{resident}-{time.monotonic_ns()}", "state": "resolved", "attached_residents": [resident],
        "priority": priority, "number": number}, community="xingqiao")


def settled(echoes, event: Envelope, resident: str, wait_until, status: str = "delivered", timeout: float = 10):
    echo_id = f"{event.event_id}:{resident}"
    assert wait_until(lambda: (echoes.find_one({"_id": echo_id}) or {}).get("status") == status, timeout=timeout)
    return echoes.find_one({"_id": echo_id})


def outbox_types(echo: dict) -> list[tuple[str, str]]:
    """What the echo's record has staged to publish: nothing (its outcomes are read, not told)."""
    return [(event["type"], event["payload"].get("channel")) for event in echo.get("_outbox", [])]


def timeline(container, event: Envelope) -> list[tuple[str, str]]:
    """What the ticket's timeline shows of the event's echoes (``echo_outcomes``): ``(type, channel)``."""
    ticket_id = event.payload["ticket_id"]
    with entrypoint_hook(container, "echo_outcomes") as echo_outcomes:
        found = echo_outcomes("xingqiao", [ticket_id])
    assert list(found) == [ticket_id]
    return [(entry["type"], entry["channel"]) for entry in found[ticket_id]]


def test_preferences_default_to_the_inbox_and_are_validated(notify):
    with entrypoint_hook(notify, "get_preferences") as get:
        assert get("xingqiao", "r-new") == {"channels": ["inbox"], "quiet_hours": None, "digest": None,
                                            "webhook_url": None}
    saved = prefer(notify, "r-new", channels=["wechat", "inbox"], quiet_hours={"start": "22:00", "end": "07:00"})
    assert saved["channels"] == ["wechat", "inbox"] and saved["quiet_hours"] == {"start": "22:00", "end": "07:00"}
    with pytest.raises(ValidationFailed) as bad:
        prefer(notify, "r-new", channels=["fax"], quiet_hours={"start": "25:00", "end": "07:00"})
    assert set(bad.value.details) == {"channels", "quiet_hours"}


def test_a_failing_sms_provider_falls_back_to_wechat(notify, standins, settings, echoes, wait_until):
    prefer(notify, "r-sms", channels=["sms", "wechat", "inbox"])
    http("POST", f"{standins['sms']}/_standin/faults", {"fail": 10, "code": "ServiceUnavailable"})
    event = resolved("r-sms")
    publish_event(settings.amqp_uri, event.to_wire())

    echo = settled(echoes, event, "r-sms", wait_until)
    sms, wechat = echo["steps"][0], echo["steps"][1]
    assert (sms["status"], sms["attempts"]) == ("failed", 2)  # retried once after its back-off, then gave up
    assert [a["code"] for a in sms["answers"]] == ["ServiceUnavailable", "ServiceUnavailable"]
    assert wechat["status"] == "delivered" and echo["steps"][2]["status"] == "pending"
    assert timeline(notify, event) == [("echo.delivered", "wechat")] and outbox_types(echo) == []
    [sent] = http("GET", f"{standins['wechat']}/_standin/messages?touser=openid-r-sms")["items"]
    assert sent["idempotency_key"] == f"{event.event_id}:r-sms:wechat"


def test_an_sms_without_a_receipt_falls_back_after_its_deadline(notify, standins, settings, echoes, wait_until,
                                                                 mongo_client):
    prefer(notify, "r-late", channels=["sms", "inbox"])
    event = resolved("r-late")
    publish_event(settings.amqp_uri, event.to_wire())

    echo = settled(echoes, event, "r-late", wait_until)
    assert [step["status"] for step in echo["steps"]] == ["expired", "delivered", "pending"]
    assert echo["steps"][1]["delivered_at"] - echo["steps"][0]["sent_at"] >= timedelta(seconds=1)
    [message] = http("GET", f"{standins['sms']}/_standin/messages?phone=13900000102")["items"]
    assert message["template_param"]["ticket_id"] == "XQ-0099"
    inbox = mongo_client[settings.database_name("notify")].inbox.find_one({"_id": echo["_id"]})
    assert inbox["title"] == "诉求已办结"


def test_a_redelivered_event_sends_once_on_each_channel(notify, standins, settings, echoes, wait_until):
    prefer(notify, "r-wx", channels=["wechat"])
    event = resolved("r-wx")
    for _ in range(3):
        publish_event(settings.amqp_uri, event.to_wire())
    echo = settled(echoes, event, "r-wx", wait_until)
    time.sleep(0.5)
    assert len(http("GET", f"{standins['wechat']}/_standin/messages?touser=openid-r-wx")["items"]) == 1
    assert echoes.count_documents({"source_event_id": event.event_id}) == 1
    assert timeline(notify, event) == [("echo.delivered", "wechat")] and outbox_types(echo) == []


def test_a_redelivered_event_echoed_in_the_inbox_shows_one_echo_and_publishes_none(notify, settings, echoes,
                                                                                   wait_until):
    """Copies of the event find the echo stored: the ticket's timeline shows it once, and no outcome is published
    (the relay publishes ``mandatory``: an echo.* event would be unroutable)."""
    event = resolved("r-inbox")
    for _ in range(3):
        publish_event(settings.amqp_uri, event.to_wire())
    echo = settled(echoes, event, "r-inbox", wait_until)
    assert wait_until(lambda: depth(settings.amqp_uri, "huisheng.notify.ticket_events") == 0)
    time.sleep(1.0)  # let every copy be handled, and anything staged be flushed
    assert timeline(notify, event) == [("echo.delivered", "inbox")] and outbox_types(echo) == []
    unrouted = drain(settings.amqp_uri, "huisheng.unrouted")
    assert not [wire for wire, _ in unrouted if wire.get("type", "").startswith("echo.")], unrouted


def test_a_channel_without_a_contact_is_skipped_with_the_reason(notify, settings, echoes, wait_until):
    prefer(notify, "r-nomail", channels=["email", "inbox"])
    event = resolved("r-nomail")
    publish_event(settings.amqp_uri, event.to_wire())
    echo = settled(echoes, event, "r-nomail", wait_until)
    assert echo["steps"][0]["status"] == "skipped" and "email" in echo["steps"][0]["answers"][0]["reason"]
    assert echo["steps"][1]["status"] == "delivered"


def test_when_every_channel_fails_a_grid_worker_is_asked_and_their_call_is_the_delivery(notify, standins, settings,
                                                                                      echoes, wait_until):
    prefer(notify, "r-human", channels=["sms"])
    http("POST", f"{standins['sms']}/_standin/faults", {"fail": 5, "code": "isv.MOBILE_NUMBER_ILLEGAL"})
    event = resolved("r-human")
    publish_event(settings.amqp_uri, event.to_wire())
    echo = settled(echoes, event, "r-human", wait_until, status="delivering")
    assert wait_until(lambda: echoes.find_one({"_id": echo["_id"]})["steps"][1]["status"] == "sent")
    worker = {"subject": "gw-1", "role": "grid_worker", "community": "xingqiao", "grids": ["g1"], "teams": []}
    with entrypoint_hook(notify, "list_tasks") as list_tasks:
        [task] = [t for t in list_tasks("xingqiao", worker)["items"] if t["ticket_id"] == event.payload["ticket_id"]]
    assert "139****0105" in task["body"] and "13900000105" not in task["body"]
    assert echoes.find_one({"_id": echo["_id"]})["steps"][0]["answers"][0]["code"] == "isv.MOBILE_NUMBER_ILLEGAL"

    with entrypoint_hook(notify, "complete_task") as complete:
        done = complete("xingqiao", task["id"], worker, {"note": "电话已告知"})
    assert done["status"] == "done" and done["done_by"] == "gw-1"
    echo = echoes.find_one({"_id": echo["_id"]})
    assert echo["status"] == "delivered" and timeline(notify, event) == [("echo.delivered", "human")]


def _quiet_now() -> dict:
    local = datetime.now(ZoneInfo("Asia/Shanghai"))
    return {"start": (local - timedelta(hours=1)).strftime("%H:%M"),
            "end": (local + timedelta(hours=1)).strftime("%H:%M")}


def test_quiet_hours_hold_back_an_sms_but_not_for_a_critical_ticket(notify, standins, settings, echoes, wait_until):
    prefer(notify, "r-quiet", channels=["sms"], quiet_hours=_quiet_now())
    prefer(notify, "r-loud", channels=["sms"], quiet_hours=_quiet_now())
    quiet, loud = resolved("r-quiet"), resolved("r-loud", priority="critical")
    publish_event(settings.amqp_uri, quiet.to_wire())
    publish_event(settings.amqp_uri, loud.to_wire())

    assert wait_until(lambda: (echoes.find_one({"_id": f"{quiet.event_id}:r-quiet"}) or {}).get("reason")
                      == "quiet_hours")
    held = echoes.find_one({"_id": f"{quiet.event_id}:r-quiet"})
    assert held["steps"][0]["attempts"] == 0 and held["not_before"] > held["requested_at"]
    # the loud echo may not be stored yet when the quiet one is: None is "not yet", not an error
    assert wait_until(lambda: ((echoes.find_one({"_id": f"{loud.event_id}:r-loud"}) or {}).get("steps") or [{}])[0]
                      .get("status") == "sent")
    assert http("GET", f"{standins['sms']}/_standin/messages?phone=13900000106")["items"] == []
    assert len(http("GET", f"{standins['sms']}/_standin/messages?phone=13900000107")["items"]) == 1


def test_reading_an_inbox_message_is_a_read_receipt_once(notify, settings, echoes, wait_until):
    event = resolved("r-reader")
    publish_event(settings.amqp_uri, event.to_wire())
    echo = settled(echoes, event, "r-reader", wait_until)
    with entrypoint_hook(notify, "mark_read") as mark_read:
        first = mark_read("xingqiao", "r-reader", echo["_id"])
        again = mark_read("xingqiao", "r-reader", echo["_id"])
        with pytest.raises(NotFound):
            mark_read("xingqiao", "r-someone-else", echo["_id"])
    assert first["read_at"] is not None and again["read_at"] == first["read_at"]
    echo = echoes.find_one({"_id": echo["_id"]})
    assert echo["steps"][0]["status"] == "read" and echo["read_at"] is not None
    assert timeline(notify, event) == [("echo.delivered", "inbox"), ("echo.read", "inbox")]
    assert outbox_types(echo) == []
    with entrypoint_hook(notify, "list_inbox") as list_inbox:
        assert list_inbox("xingqiao", "r-reader")["unread"] == 0


@pytest.fixture
def patient_notify(container_factory, settings, standins):
    """notify whose SMS steps wait ten minutes for a receipt."""
    config = echo_settings(settings, standins, notify_step_deadlines=(("sms", 600.0), ("human", 3600.0)),
                           sms_receipt_secret="receipts-secret")
    container = container_factory(TableNotify, config.nameko_config(web_address=f"127.0.0.1:{free_port()}"))
    container.start()
    return container


def signed_receipts(items: list[dict], secret: str = "receipts-secret", age: int = 0) -> tuple[str, str, str]:
    from services.notify.channels import signature_of

    raw = json.dumps(items, ensure_ascii=False)
    stamp = str(int(time.time()) - age)
    return raw, stamp, signature_of(secret, stamp, raw.encode())


def test_sms_receipts_deliver_or_fail_the_sms_step(patient_notify, settings, echoes, wait_until):
    prefer(patient_notify, "r-rcpt-ok", channels=["sms", "inbox"])
    prefer(patient_notify, "r-rcpt-bad", channels=["sms", "inbox"])
    good, bad = resolved("r-rcpt-ok"), resolved("r-rcpt-bad")
    publish_event(settings.amqp_uri, good.to_wire())
    publish_event(settings.amqp_uri, bad.to_wire())
    for event, resident in ((good, "r-rcpt-ok"), (bad, "r-rcpt-bad")):
        assert wait_until(lambda e=event, r=resident: (echoes.find_one({"_id": f"{e.event_id}:{r}"}) or {
            "steps": [{}]})["steps"][0].get("status") == "sent")
    report_time = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M:%S")
    raw, stamp, signature = signed_receipts([
        {"out_id": f"{good.event_id}:r-rcpt-ok:sms", "success": True, "err_code": "DELIVERED",
         "report_time": report_time,
         "phone_number": "13900000108", "biz_id": "x"},
        {"out_id": f"{bad.event_id}:r-rcpt-bad:sms", "success": False, "err_code": "MOBILE_NOT_ON_SERVICE",
         "err_msg": "停机", "report_time": report_time},
        {"out_id": "someone-else", "success": True, "report_time": report_time},
    ])
    with entrypoint_hook(patient_notify, "sms_receipts") as sms_receipts:
        with pytest.raises(Exception, match="signed"):
            sms_receipts(raw, stamp, "sha256=forged")
        with pytest.raises(Exception, match="signed"):
            sms_receipts(*signed_receipts([], age=3600))
        assert sms_receipts(raw, stamp, signature)["applied"] == 2

    delivered = echoes.find_one({"_id": f"{good.event_id}:r-rcpt-ok"})
    assert delivered["status"] == "delivered" and delivered["steps"][0]["status"] == "delivered"
    assert timeline(patient_notify, good) == [("echo.delivered", "sms")]
    failed_over = settled(echoes, bad, "r-rcpt-bad", wait_until)
    assert [s["status"] for s in failed_over["steps"]] == ["failed", "delivered", "pending"]
    assert timeline(patient_notify, bad) == [("echo.delivered", "inbox")]
    assert failed_over["steps"][0]["answers"][-1]["code"] == "MOBILE_NOT_ON_SERVICE"


def test_staff_hear_of_a_dispatch_and_a_breach_outside_the_proof(notify, settings, echoes, mongo_client, wait_until):
    dispatched = Envelope.new("ticket.dispatched", {
        "ticket_id": "T-staff", "state": "dispatched", "attached_residents": ["r-disp"], "priority": "normal",
        "number": "XQ-0777", "category": "房屋设施", "assignee": {"kind": "worker", "id": "gw-9"}},
        community="xingqiao")
    to_team = Envelope.new("sla.breached", {
        "ticket_id": "T-staff", "clock": "resolution", "threshold": 100, "due_at": "2026-12-06T10:00:00+00:00",
        "started_at": "2026-12-05T10:00:00+00:00", "threshold_at": "2026-12-06T10:00:00+00:00",
        "time_kind": "natural", "priority": "normal", "category": "房屋设施", "state": "dispatched",
        "assignee": {"kind": "team", "id": "team-1"}}, community="xingqiao")
    publish_event(settings.amqp_uri, dispatched.to_wire())
    publish_event(settings.amqp_uri, to_team.to_wire())

    staff = settled(echoes, dispatched, "staff:gw-9", wait_until)
    resident = settled(echoes, dispatched, "r-disp", wait_until)
    assert (staff["audience"], staff["recipient"]) == ("staff", "gw-9")
    assert [s["channel"] for s in staff["steps"]] == ["inbox"]  # no grid worker is sent to phone a grid worker
    assert [s["channel"] for s in resident["steps"]] == ["inbox", "human"]
    inbox = mongo_client[settings.database_name("notify")].inbox
    message = inbox.find_one({"_id": staff["_id"]})
    assert message["recipient"] == "gw-9" and message["title"] == "新派单" and "XQ-0777" in message["body"]
    assert inbox.find_one({"_id": resident["_id"]})["title"] == "诉求已派单"
    assert wait_until(lambda: depth(settings.amqp_uri, "huisheng.notify.staff_events") == 0)
    time.sleep(0.3)
    assert depth(settings.amqp_uri, "huisheng.notify.staff_events.dlq") == 0  # handled, not refused
    assert echoes.count_documents({"source_event_id": to_team.event_id}) == 0  # a team's members are not known
    assert timeline(notify, dispatched) == [("echo.delivered", "inbox")] * 2  # the worker's and the resident's


def test_echo_outcomes_answers_every_ticket_asked_at_once_from_both_kinds_of_record(notify, settings, echoes,
                                                                                    wait_until):
    prefer(notify, "r-wx", channels=["wechat"])
    in_inbox, on_wechat = resolved("r-many"), resolved("r-wx")
    for event in (in_inbox, on_wechat):
        publish_event(settings.amqp_uri, event.to_wire())
    settled(echoes, in_inbox, "r-many", wait_until)  # its record is its inbox message
    settled(echoes, on_wechat, "r-wx", wait_until)  # its record is in ``echoes``
    asked = [in_inbox.payload["ticket_id"], on_wechat.payload["ticket_id"], "T-no-echo"]
    with entrypoint_hook(notify, "echo_outcomes") as echo_outcomes:
        found = echo_outcomes("xingqiao", asked + asked[:1])
        elsewhere = echo_outcomes("another", asked)
        with pytest.raises(ValidationFailed) as too_many:
            echo_outcomes("xingqiao", [f"T{n}" for n in range(101)])
    assert list(found) == asked and found["T-no-echo"] == []
    [inbox] = found[asked[0]]
    assert inbox == {"type": "echo.delivered", "at": inbox["at"], "event_id": f"{in_inbox.event_id}:r-many:delivered",
                     "echo_id": f"{in_inbox.event_id}:r-many", "channel": "inbox", "recipient": "r-many",
                     "source_event_type": "ticket.resolved"}
    assert [(entry["type"], entry["channel"], entry["recipient"]) for entry in found[asked[1]]] == [
        ("echo.delivered", "wechat", "r-wx")]
    assert elsewhere == {ticket_id: [] for ticket_id in asked}  # another community's tickets are not these
    assert "ticket_ids" in too_many.value.details

"""The SMS adapter and notify.send_code against the SMS stand-in running as its own process."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
import urllib.request

import pytest
from nameko.testing.services import entrypoint_hook

from gateway.http import problem_details
from kernel.errors import ValidationFailed
from services.notify.service import NotifyService
from services.notify.sms import AliyunSms, SmsRejected, SmsRetryable
from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.integration

KEY_ID, SECRET = "LTAI-integration", "integration-secret"


def http(method: str, url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    """``python -m standins.sms`` as helper D runs it, on a free port; yields its base URL."""
    port = free_port()
    journal = tmp_path_factory.mktemp("sms") / "journal.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "standins.sms", "--host", "127.0.0.1", "--port", str(port), "--journal", str(journal),
         "--access-key-id", KEY_ID, "--access-key-secret", SECRET],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while True:
        try:
            assert http("GET", f"{url}/health") == {"status": "ok"}
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise AssertionError(f"the stand-in did not start: {process.stderr.read().decode()[-2000:]}") from None
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(10)


@pytest.fixture(autouse=True)
def no_faults(standin):
    http("DELETE", f"{standin}/_standin/faults")
    yield
    http("DELETE", f"{standin}/_standin/faults")


def messages(standin: str, phone: str) -> list[dict]:
    return http("GET", f"{standin}/_standin/messages?phone={phone}")["items"]


def adapter(standin: str, secret: str = SECRET, timeout: float = 2.0) -> AliyunSms:
    return AliyunSms(f"{standin}/", KEY_ID, secret, "兴乔社区", timeout=timeout)


def test_a_message_is_accepted_and_recorded(standin):
    biz_id = adapter(standin).send("13900000001", "SMS_HUISHENG_LOGIN", {"code": "246810"}, "key-ok")
    [message] = messages(standin, "13900000001")
    assert message["biz_id"] == biz_id and message["template_param"] == {"code": "246810"}
    assert message["out_id"] == "key-ok" and message["sign_name"] == "兴乔社区"


def test_the_same_idempotency_key_sends_once(standin):
    sms = adapter(standin)
    first = sms.send("13900000002", "SMS_HUISHENG_LOGIN", {"code": "111111"}, "key-twice")
    again = sms.send("13900000002", "SMS_HUISHENG_LOGIN", {"code": "111111"}, "key-twice")
    assert again == first
    assert len(messages(standin, "13900000002")) == 1


def test_a_bad_secret_is_rejected_and_sends_nothing(standin):
    with pytest.raises(SmsRejected) as caught:
        adapter(standin, secret="not-the-secret").send("13900000003", "SMS_HUISHENG_LOGIN", {"code": "1234"}, "k-3")
    assert caught.value.code == "SignatureDoesNotMatch" and caught.value.status == 400
    assert messages(standin, "13900000003") == []


def test_an_unknown_key_and_an_illegal_number_are_rejected(standin):
    sms = adapter(standin)
    sms.access_key_id = "LTAI-nobody"
    with pytest.raises(SmsRejected) as unknown:
        sms.send("13900000004", "SMS_HUISHENG_LOGIN", {"code": "1234"}, "k-4")
    assert (unknown.value.code, unknown.value.status) == ("InvalidAccessKeyId.NotFound", 404)
    with pytest.raises(SmsRejected) as illegal:
        adapter(standin).send("12345", "SMS_HUISHENG_LOGIN", {"code": "1234"}, "k-5")
    assert illegal.value.code == "isv.MOBILE_NUMBER_ILLEGAL"
    with pytest.raises(SmsRejected) as missing:
        adapter(standin).send("13900000004", "SMS_HUISHENG_LOGIN", {}, "k-6")
    assert missing.value.code == "isv.TEMPLATE_MISSING_PARAMETERS"


def test_the_second_message_within_a_minute_is_rate_limited(standin):
    sms = adapter(standin)
    sms.send("13900000005", "SMS_HUISHENG_LOGIN", {"code": "1111"}, "k-7")
    with pytest.raises(SmsRetryable) as caught:
        sms.send("13900000005", "SMS_HUISHENG_LOGIN", {"code": "2222"}, "k-8")
    assert caught.value.code == "isv.BUSINESS_LIMIT_CONTROL"
    assert len(messages(standin, "13900000005")) == 1


def test_a_slow_provider_times_out_and_a_retry_under_the_same_key_does_not_send_twice(standin):
    http("POST", f"{standin}/_standin/faults", {"delay_seconds": 1.5, "count": 1})
    sms = adapter(standin, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(SmsRetryable) as caught:
        sms.send("13900000006", "SMS_HUISHENG_LOGIN", {"code": "3333"}, "k-slow")
    assert caught.value.code == "timeout" and time.monotonic() - started < 1.4
    time.sleep(1.2)  # the provider accepts the first request late
    retried = sms.send("13900000006", "SMS_HUISHENG_LOGIN", {"code": "3333"}, "k-slow")
    [message] = messages(standin, "13900000006")
    assert retried == message["biz_id"]


def test_injected_failures_are_retryable_and_then_pass(standin):
    http("POST", f"{standin}/_standin/faults", {"fail": 1, "code": "ServiceUnavailable"})
    sms = adapter(standin)
    with pytest.raises(SmsRetryable) as caught:
        sms.send("13900000007", "SMS_HUISHENG_LOGIN", {"code": "4444"}, "k-9")
    assert (caught.value.code, caught.value.status) == ("ServiceUnavailable", 503)
    assert sms.send("13900000007", "SMS_HUISHENG_LOGIN", {"code": "4444"}, "k-9")
    assert len(messages(standin, "13900000007")) == 1


def test_an_unreachable_provider_is_retryable():
    with pytest.raises(SmsRetryable) as caught:
        AliyunSms(f"http://127.0.0.1:{free_port()}/", KEY_ID, SECRET, "兴乔社区", timeout=1).send(
            "13900000008", "SMS_HUISHENG_LOGIN", {"code": "5555"}, "k-10")
    assert caught.value.code == "unreachable"


# --- notify.send_code through a real NotifyService container ------------------------------------------

@pytest.fixture
def notify(container_factory, settings, standin):
    sms_settings = dataclasses.replace(settings, sms_provider_url=f"{standin}/", sms_access_key_id=KEY_ID,
                                       sms_access_key_secret=SECRET, sms_timeout=1.0)
    container = container_factory(NotifyService, sms_settings.nameko_config(web_address=f"127.0.0.1:{free_port()}"))
    container.start()
    return container


def test_send_code_sends_and_keeps_only_a_masked_record(notify, standin, settings, mongo_client, capfd):
    with entrypoint_hook(notify, "send_code") as send_code:
        answer = send_code("xingqiao", "+86 139-0000-0011", "864209", "sign_in")
    assert answer["sent"] is True
    [message] = messages(standin, "13900000011")
    assert message["biz_id"] == answer["provider_id"] and message["template_param"] == {"code": "864209"}
    db = mongo_client[settings.database_name("notify")]
    record = db.deliveries.find_one({"_id": answer["delivery_id"]})
    assert (record["status"], record["phone"]) == ("sent", "139****0011")
    assert record["provider_id"] == message["biz_id"]
    # The code and the whole number are nowhere in notify's database, nor in what the process printed.
    stored = json.dumps([doc for name in db.list_collection_names() for doc in db[name].find()], default=str)
    assert "864209" not in stored and "13900000011" not in stored
    out, err = capfd.readouterr()
    assert "864209" not in out + err and "13900000011" not in out + err


def test_send_code_answers_a_structured_error_when_the_provider_refuses(notify, standin, settings, mongo_client):
    with entrypoint_hook(notify, "send_code") as send_code:
        assert send_code("xingqiao", "13900000012", "111111", "sign_in")["sent"] is True
        limited = send_code("xingqiao", "13900000012", "222222", "sign_in")
    assert limited["sent"] is False
    assert limited["error"] == {"code": "isv.BUSINESS_LIMIT_CONTROL", "message": limited["error"]["message"],
                                "retryable": True}
    record = mongo_client[settings.database_name("notify")].deliveries.find_one({"_id": limited["delivery_id"]})
    assert record["status"] == "failed" and record["provider_answer"]["code"] == "isv.BUSINESS_LIMIT_CONTROL"


def test_send_code_retries_a_transient_failure_under_the_same_key(notify, standin):
    http("POST", f"{standin}/_standin/faults", {"fail": 1, "code": "InternalError"})
    with entrypoint_hook(notify, "send_code") as send_code:
        answer = send_code("xingqiao", "13900000013", "333333", "sign_in")
    assert answer["sent"] is True
    assert [m["biz_id"] for m in messages(standin, "13900000013")] == [answer["provider_id"]]


def test_send_code_refuses_bad_input_without_echoing_it(notify):
    with entrypoint_hook(notify, "send_code") as send_code, pytest.raises(ValidationFailed) as caught:
        send_code("xingqiao", "1390000001", "12a456", "sign_in")
    assert set(caught.value.details) == {"phone", "code"}
    assert "12a456" not in json.dumps(problem_details(caught.value))  # the body a client would get


def test_the_standin_pushes_signed_receipts_the_platform_accepts(tmp_path):
    """Aliyun's report push: a JSON array POSTed after the configured delay, signed as notify verifies it; a
    receipt the test asked to fail says ``success: false``; a receiver that answers 500 gets the batch again."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from services.notify.receipts import parse, verified

    pushes: list[tuple[str, str, str]] = []
    answers = iter([500])  # the first push is refused: the stand-in must try again

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            raw = self.rfile.read(int(self.headers["Content-Length"])).decode()
            pushes.append((raw, self.headers["X-Huisheng-Timestamp"], self.headers["X-Huisheng-Signature"]))
            self.send_response(next(answers, 200))
            self.end_headers()

        def log_message(self, *args):
            pass

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "standins.sms", "--host", "127.0.0.1", "--port", str(port), "--journal",
         str(tmp_path / "journal.jsonl"), "--access-key-id", KEY_ID, "--access-key-secret", SECRET,
         "--rate-per-minute", "0", "--receipt-url", f"http://127.0.0.1:{receiver.server_port}/receipts",
         "--receipt-secret", "push-secret", "--receipt-delay", "0.5"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                http("GET", f"{url}/health")
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None, "the stand-in did not start"
                time.sleep(0.1)
        assert http("POST", f"{url}/_standin/receipts", {"fail": 1, "err_code": "MOBILE_NOT_ON_SERVICE"})["fail"] == 1
        adapter = AliyunSms(f"{url}/", KEY_ID, SECRET, "回声社区", timeout=2.0)
        sent = time.monotonic()
        adapter.send("13800007001", "SMS_HUISHENG_ECHO", {"ticket_id": "XQ-1", "title": "已办结"}, "e1:r1:sms")
        adapter.send("13800007002", "SMS_HUISHENG_ECHO", {"ticket_id": "XQ-2", "title": "已办结"}, "e2:r2:sms")

        deadline = time.monotonic() + 10
        while len(pushes) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(pushes) >= 2, pushes  # refused once, pushed again
        assert time.monotonic() - sent >= 0.5
        raw, stamp, signature = pushes[-1]
        assert verified("push-secret", stamp, signature, raw, time.time())
        assert not verified("another-secret", stamp, signature, raw, time.time())
        receipts = {receipt.echo_id: receipt for receipt in parse(raw)}
        assert set(receipts) == {"e1:r1", "e2:r2"}
        assert (receipts["e1:r1"].delivered, receipts["e1:r1"].answer["code"]) == (False, "MOBILE_NOT_ON_SERVICE")
        assert receipts["e2:r2"].delivered and receipts["e2:r2"].answer["code"] == "DELIVERED"
        view = http("GET", f"{url}/_standin/receipts")
        assert (view["pushed"], view["failed_pushes"], view["pending"]) == (2, 1, 0)
    finally:
        process.terminate()
        process.wait(10)
        receiver.shutdown()

"""Each external echo channel against a local server that behaves as its provider documents:
e-mail against a real aiosmtpd server, WeChat against standins/wechat.py, SMS against standins/sms.py,
webhooks against a receiver of the test's own that checks the HMAC signature.

Every server runs as its own process: aiosmtpd runs its own asyncio loop, which would hang inside
this eventlet-patched test process.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from services.notify.channels import EmailChannel, Message, SmsChannel, WebhookChannel, WeChatChannel
from services.notify.sms import AliyunSms
from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.integration

APPID, APPSECRET = "wx-integration", "wechat-integration-secret"
SMS_KEY, SMS_SECRET = "LTAI-channels", "channels-secret"
HOOK_SECRET = "hook-integration-secret"

SMTP_SERVER = textwrap.dedent('''
    import json, sys, time
    from aiosmtpd.controller import Controller

    class Handler:
        """Refuses bounce@ (550) and busy@ (451); records every accepted message as a JSON line."""

        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            if address.startswith("bounce@"):
                return "550 5.1.1 mailbox unavailable"
            if address.startswith("busy@"):
                return "451 4.3.0 try again later"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server, session, envelope):
            with open(sys.argv[2], "a", encoding="utf-8") as journal:
                journal.write(json.dumps({"to": envelope.rcpt_tos,
                                          "data": envelope.content.decode("utf-8", "replace")}) + "\\n")
            return "250 Message accepted for delivery"

    controller = Controller(Handler(), hostname="127.0.0.1", port=int(sys.argv[1]))
    controller.start()
    while True:
        time.sleep(3600)
''')

WEBHOOK_RECEIVER = textwrap.dedent('''
    import hashlib, hmac, json, sys, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    SECRET = sys.argv[2].encode()

    class Receiver(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            stamp = self.headers.get("X-Huisheng-Timestamp", "")
            expected = "sha256=" + hmac.new(SECRET, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
            if self.path == "/slow":
                time.sleep(3)
            status = 503 if self.path == "/down" else 200
            if not hmac.compare_digest(expected, self.headers.get("X-Huisheng-Signature", "")):
                status = 401
            elif not stamp.isdigit() or abs(time.time() - int(stamp)) > 300:
                status = 401
            if status == 200:
                with open(sys.argv[3], "a", encoding="utf-8") as journal:
                    journal.write(json.dumps({"key": self.headers.get("Idempotency-Key"),
                                              "body": json.loads(body)}) + "\\n")
            self.send_response(status)
            self.end_headers()

    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Receiver).serve_forever()
''')


def _wait_for_port(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise AssertionError(f"server did not start: {process.stderr.read().decode()[-2000:]}") from None
            time.sleep(0.1)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Every provider stand-in as its own process; yields their addresses and journals."""
    root = tmp_path_factory.mktemp("channels")
    ports = {name: free_port() for name in ("smtp", "wechat", "sms", "webhook")}
    journals = {"smtp": root / "smtp.jsonl", "webhook": root / "webhook.jsonl", "sms": root / "sms.jsonl"}
    commands = {
        "smtp": [sys.executable, "-c", SMTP_SERVER, str(ports["smtp"]), str(journals["smtp"])],
        "wechat": [sys.executable, "-m", "standins.wechat", "--port", str(ports["wechat"]), "--appid", APPID,
                   "--secret", APPSECRET, "--daily-limit", "3"],
        "sms": [sys.executable, "-m", "standins.sms", "--port", str(ports["sms"]), "--journal", str(journals["sms"]),
                "--access-key-id", SMS_KEY, "--access-key-secret", SMS_SECRET],
        "webhook": [sys.executable, "-c", WEBHOOK_RECEIVER, str(ports["webhook"]), HOOK_SECRET,
                    str(journals["webhook"])],
    }
    processes = {name: subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for name, command in commands.items()}
    try:
        for name, process in processes.items():
            _wait_for_port(ports[name], process)
        yield {"ports": ports, "journals": journals}
    finally:
        for process in processes.values():
            process.terminate()
            process.wait(10)


def http(method: str, url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def message(address: str, key: str = "evt-1:r-1", **extra) -> Message:
    return Message(echo_id="evt-1:r-1", idempotency_key=key, address=address, title="诉求已办结",
                   body="您反映的问题（编号 XQ-0042）已办结，我们将回访确认是否解决。", facts={"number": "XQ-0042"},
                   event_type="ticket.resolved", ticket_id="T-1", **extra)


# --- e-mail --------------------------------------------------------------------------------------------

def email(servers, timeout: float = 3.0) -> EmailChannel:
    return EmailChannel("127.0.0.1", servers["ports"]["smtp"], "office@huisheng.test", timeout=timeout)


def test_an_email_is_delivered_to_the_smtp_server_with_its_idempotency_key(servers):
    outcome = email(servers).send(message("resident@example.cn", key="evt-mail:r-1:email"))
    assert outcome.status == "delivered" and outcome.answer["code"] == "250"
    [received] = [m for m in lines(servers["journals"]["smtp"]) if "evt-mail" in m["data"]]
    assert received["to"] == ["resident@example.cn"]
    assert "X-Huisheng-Idempotency-Key: evt-mail:r-1:email" in received["data"]
    assert "XQ-0042" in received["data"] or "=E5" in received["data"] or "utf-8" in received["data"].lower()


def test_a_refused_mailbox_is_final_and_a_busy_one_retryable(servers):
    refused = email(servers).send(message("bounce@example.cn"))
    busy = email(servers).send(message("busy@example.cn"))
    assert (refused.status, refused.retryable, refused.answer["code"]) == ("failed", False, "smtp_550")
    assert (busy.status, busy.retryable, busy.answer["code"]) == ("failed", True, "smtp_451")
    assert "example.cn" not in json.dumps(refused.answer) + json.dumps(busy.answer)  # no address in the record


def test_an_unreachable_smtp_server_is_retryable():
    outcome = EmailChannel("127.0.0.1", free_port(), "office@huisheng.test", timeout=1).send(message("a@example.cn"))
    assert (outcome.status, outcome.retryable, outcome.answer["code"]) == ("failed", True, "unreachable")


# --- WeChat ----------------------------------------------------------------------------------------------

@pytest.fixture
def wechat_url(servers):
    url = f"http://127.0.0.1:{servers['ports']['wechat']}"
    http("DELETE", f"{url}/_standin/faults")
    yield url
    http("DELETE", f"{url}/_standin/faults")


def wechat(url: str, secret: str = APPSECRET, timeout: float = 2.0) -> WeChatChannel:
    return WeChatChannel(url, APPID, secret, "HUISHENG_ECHO", timeout=timeout)


def test_a_subscription_message_is_delivered_once_per_idempotency_key(wechat_url):
    channel = wechat(wechat_url)
    first = channel.send(message("openid-resident-1", key="evt-wx:r-1:wechat"))
    again = channel.send(message("openid-resident-1", key="evt-wx:r-1:wechat"))
    assert first.status == again.status == "delivered" and first.provider_id == again.provider_id
    [sent] = http("GET", f"{wechat_url}/_standin/messages?touser=openid-resident-1")["items"]
    assert sent["data"]["character_string2"] == {"value": "XQ-0042"}
    assert all(len(field["value"]) <= 20 for name, field in sent["data"].items() if name.startswith("thing"))


def test_bad_credentials_are_refused_for_good(wechat_url):
    outcome = wechat(wechat_url, secret="wrong").send(message("openid-resident-2"))
    assert (outcome.status, outcome.retryable, outcome.answer["code"]) == ("failed", False, "40125")


def test_an_expired_token_is_fetched_again_and_the_send_goes_through(wechat_url):
    channel = wechat(wechat_url)
    assert channel.send(message("openid-resident-3", key="k-3a")).status == "delivered"
    http("POST", f"{wechat_url}/_standin/faults", {"expire_tokens": True})
    assert channel.send(message("openid-resident-3", key="k-3b")).status == "delivered"


def test_a_user_who_refuses_messages_is_final_and_a_busy_system_retryable(wechat_url):
    http("POST", f"{wechat_url}/_standin/refusing", {"touser": "openid-refuser"})
    refused = wechat(wechat_url).send(message("openid-refuser"))
    http("POST", f"{wechat_url}/_standin/faults", {"fail": 1, "errcode": -1})
    busy = wechat(wechat_url).send(message("openid-resident-4", key="k-4"))
    assert (refused.answer["code"], refused.retryable) == ("43101", False)
    assert (busy.answer["code"], busy.retryable) == ("-1", True)


def test_the_daily_quota_is_retryable_later(wechat_url):
    channel = wechat(wechat_url)
    outcomes = [channel.send(message("openid-quota", key=f"q-{i}")) for i in range(4)]
    assert [o.status for o in outcomes] == ["delivered"] * 3 + ["failed"]
    assert (outcomes[-1].answer["code"], outcomes[-1].retryable) == ("45009", True)


def test_a_slow_wechat_times_out_as_retryable(wechat_url):
    channel = wechat(wechat_url, timeout=0.5)
    channel.access_token()
    http("POST", f"{wechat_url}/_standin/faults", {"delay_seconds": 2, "count": 1})
    outcome = channel.send(message("openid-resident-5", key="k-5"))
    assert (outcome.status, outcome.retryable, outcome.answer["code"]) == ("failed", True, "timeout")


# --- SMS -------------------------------------------------------------------------------------------------

@pytest.fixture
def sms_url(servers):
    url = f"http://127.0.0.1:{servers['ports']['sms']}"
    http("DELETE", f"{url}/_standin/faults")
    yield url
    http("DELETE", f"{url}/_standin/faults")


def sms(url: str, secret: str = SMS_SECRET) -> SmsChannel:
    return SmsChannel(AliyunSms(f"{url}/", SMS_KEY, secret, "兴乔社区", timeout=1.0), "SMS_HUISHENG_ECHO")


def test_an_sms_echo_is_sent_not_delivered_without_a_receipt(sms_url):
    outcome = sms(sms_url).send(message("13900000021", key="evt-sms:r-1:sms"))
    assert outcome.status == "sent" and outcome.provider_id
    [sent] = http("GET", f"{sms_url}/_standin/messages?phone=13900000021")["items"]
    assert sent["template_param"] == {"ticket_id": "XQ-0042", "title": "诉求已办结"}
    assert sent["out_id"] == "evt-sms:r-1:sms"


def test_sms_provider_errors_keep_their_codes(sms_url):
    bad_key = sms(sms_url, secret="wrong").send(message("13900000022"))
    http("POST", f"{sms_url}/_standin/faults", {"fail": 1, "code": "ServiceUnavailable"})
    busy = sms(sms_url).send(message("13900000023", key="k-sms-busy"))
    assert (bad_key.answer["code"], bad_key.retryable) == ("SignatureDoesNotMatch", False)
    assert (busy.answer["code"], busy.retryable) == ("ServiceUnavailable", True)


# --- webhooks --------------------------------------------------------------------------------------------

def test_a_webhook_is_signed_and_delivered(servers):
    url = f"http://127.0.0.1:{servers['ports']['webhook']}/ok"
    outcome = WebhookChannel(HOOK_SECRET).send(message(url, key="evt-hook:r-1:webhook"))
    assert outcome.status == "delivered"
    [received] = [m for m in lines(servers["journals"]["webhook"]) if m["key"] == "evt-hook:r-1:webhook"]
    assert received["body"]["number"] == "XQ-0042" and received["body"]["event_type"] == "ticket.resolved"


def test_a_wrong_signature_is_refused_for_good(servers):
    url = f"http://127.0.0.1:{servers['ports']['webhook']}/ok"
    outcome = WebhookChannel("not-the-secret").send(message(url))
    assert (outcome.status, outcome.retryable, outcome.answer["code"]) == ("failed", False, "http_401")


def test_a_stale_timestamp_is_refused(servers):
    url = f"http://127.0.0.1:{servers['ports']['webhook']}/ok"
    outcome = WebhookChannel(HOOK_SECRET, clock=lambda: time.time() - 3600).send(message(url))
    assert outcome.answer["code"] == "http_401"


def test_a_failing_or_slow_receiver_is_retryable(servers):
    base = f"http://127.0.0.1:{servers['ports']['webhook']}"
    down = WebhookChannel(HOOK_SECRET).send(message(f"{base}/down"))
    slow = WebhookChannel(HOOK_SECRET, timeout=0.5).send(message(f"{base}/slow"))
    assert (down.answer["code"], down.retryable) == ("http_503", True)
    assert (slow.answer["code"], slow.retryable) == ("timeout", True)

"""A stand-in for Aliyun's Short Message Service (Dysms): the ``SendSms`` API, version 2017-05-25.

It behaves as Aliyun documents the API, RPC style: the parameters come as a query string
(GET) or a form body (POST) and are signed with the account's AccessKey secret
(signature version 1.0, HMAC-SHA1)::

    CanonicalizedQueryString = "&".join(encode(k) + "=" + encode(v) for k, v in sorted(params))
                               (every parameter but Signature; encode = percent-encoding of UTF-8 where
                               only A-Z a-z 0-9 - _ . ~ stay as they are, so a space is %20, never +)
    StringToSign = HTTPMethod + "&" + encode("/") + "&" + encode(CanonicalizedQueryString)
    Signature    = base64(HMAC-SHA1(key=AccessKeySecret + "&", StringToSign))

>>> percent_encode("a b*c~/") == "a%20b%2Ac~%2F"
True

Answers, as JSON (``Format=JSON``) or XML (Aliyun's default):

* ``200 {"Code": "OK", "Message": "OK", "BizId", "RequestId"}`` — accepted;
* errors of the request, with Aliyun's HTTP statuses: ``404 InvalidAccessKeyId.NotFound``,
  ``400 SignatureDoesNotMatch``, ``400 SignatureNonceUsed`` (a nonce seen in the last 15 minutes),
  ``400 InvalidTimeStamp.Expired`` (more than 15 minutes off), ``400 InvalidTimeStamp.Format``,
  ``400 Missing<Parameter>``, ``404 InvalidAction.NotFound``;
* business errors, which Dysms answers with HTTP 200 and a ``Code`` other than ``OK``:
  ``isv.MOBILE_NUMBER_ILLEGAL``, ``isv.TEMPLATE_MISSING_PARAMETERS``, ``isv.SMS_TEMPLATE_ILLEGAL``,
  ``isv.INVALID_JSON_PARAM``, ``isv.SMS_SIGNATURE_ILLEGAL`` and ``isv.BUSINESS_LIMIT_CONTROL`` (per phone
  number: 1 message a minute by default, as Aliyun limits verification codes).

What the real provider does not document and the stand-in adds for tests:

* ``OutId`` is an idempotency key: a second request with an ``OutId`` already accepted is
  answered with the first request's ``BizId`` and sends nothing (neither a journal entry
  nor a rate-limit count);
* every accepted message is appended to a journal (JSON lines), read back by
  ``GET /_standin/messages?phone=...`` (``{"items": [...]}``, newest last);
* ``POST /_standin/faults`` ``{"fail": N, "code": "isv.BUSINESS_LIMIT_CONTROL"}`` fails the next N
  sends that pass the signature checks with that error; ``{"delay_seconds": S, "count": N}`` delays
  the next N answers (every answer when ``count`` is left out); ``DELETE /_standin/faults`` clears them;
* ``GET /health`` answers ``{"status": "ok"}``.

Delivery receipts, as Aliyun's SMS report push (``SmsReport``) sends them: an HTTP POST of a JSON array of
reports ``{"phone_number", "send_time", "report_time", "success", "err_code", "err_msg", "sms_size", "biz_id",
"out_id"}`` (times in Beijing time, ``YYYY-MM-DD hh:mm:ss``). With a receipt URL, every accepted message gets
one, ``delay`` seconds after it was accepted, pushed in batches (one POST a push interval at most) and signed as
the platform's receipt endpoint verifies (``X-Huisheng-Timestamp``, ``X-Huisheng-Signature``: ``sha256=`` and
the hex HMAC-SHA256 of ``<timestamp>.<body>`` with the receipt secret; Aliyun itself signs nothing, so a
deployment puts the secret in the push URL's proxy). A push the receiver does not answer with 2xx is tried
again with back-off, six times in all (about 30 s). ``POST /_standin/receipts`` ``{"delay_seconds": S, "fail": N,
"err_code": "MOBILE_NOT_ON_SERVICE"}`` changes the delay and makes the next N receipts report a failure
(``success: false``); ``GET /_standin/receipts`` shows the settings and what was pushed.

Run it as ``python -m standins.sms --host 127.0.0.1 --port 8190 --journal PATH
[--access-key-id ID --access-key-secret SECRET] [--rate-per-minute N] [--receipt-url URL --receipt-secret S
--receipt-delay SECONDS]``. Run by ``huisheng up`` (``HUISHENG_HOME`` set), it pushes to the local gateway
(``GATEWAY_PORT``) with ``SMS_RECEIPT_SECRET``; ``--receipt-url ''`` turns the push off.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.error import URLError
from urllib.parse import quote
from urllib.request import Request as HttpRequest
from urllib.request import urlopen
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request, Response

API_VERSION = "2017-05-25"
ACTION = "SendSms"
SIGNATURE_METHOD = "HMAC-SHA1"
SIGNATURE_VERSION = "1.0"
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# Aliyun refuses a request whose timestamp is more than 15 minutes off, and remembers nonces that long.
TIMESTAMP_TOLERANCE_SECONDS = 15 * 60
NONCE_WINDOW_SECONDS = 15 * 60
MAX_PHONE_NUMBERS = 1000
REQUIRED = ("AccessKeyId", "Action", "Version", "Timestamp", "SignatureMethod", "SignatureVersion",
            "SignatureNonce", "Signature")
SEND_REQUIRED = ("PhoneNumbers", "SignName", "TemplateCode")
# A mainland mobile number, with or without the country code (Dysms accepts +86/0086/86 prefixes).
MOBILE = re.compile(r"^(?:\+86|0086|86)?(1[3-9]\d{9})$")
DEFAULT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "SMS_HUISHENG_LOGIN": ("code",),  # 您的验证码为${code}，5分钟内有效，请勿泄露。
    "SMS_HUISHENG_ECHO": ("ticket_id", "title"),  # 您反映的问题（${ticket_id}）${title}。
}

# Code -> (HTTP status, Aliyun's message). Business errors (isv.*) come with HTTP 200.
ERRORS: dict[str, tuple[int, str]] = {
    "InvalidAccessKeyId.NotFound": (404, "Specified access key is not found."),
    "SignatureDoesNotMatch": (400, "Specified signature is not matched with our calculation."),
    "SignatureNonceUsed": (400, "Specified signature nonce was used already."),
    "InvalidTimeStamp.Expired": (400, "Specified time stamp or date value is expired."),
    "InvalidTimeStamp.Format": (400, "Specified time stamp or date value is not well formatted."),
    "IncompleteSignature": (400, "The request signature does not conform to Aliyun standards."),
    "InvalidAction.NotFound": (404, "Specified api is not found, please check your url and method."),
    "InvalidVersion": (400, "Specified parameter Version is not valid."),
    "Throttling.User": (400, "Request was denied due to user flow control."),
    "InternalError": (500, "The request processing has failed due to some unknown error."),
    "ServiceUnavailable": (503, "The request has failed due to a temporary failure of the server."),
    "isv.MOBILE_NUMBER_ILLEGAL": (200, "非法手机号"),
    "isv.TEMPLATE_MISSING_PARAMETERS": (200, "模板变量缺少对应参数值"),
    "isv.SMS_TEMPLATE_ILLEGAL": (200, "该账号下找不到对应模板"),
    "isv.SMS_SIGNATURE_ILLEGAL": (200, "该账号下找不到对应签名"),
    "isv.INVALID_JSON_PARAM": (200, "JSON参数不合法，只接受字符串值"),
    "isv.BUSINESS_LIMIT_CONTROL": (200, "触发分钟级流控Permits:1"),
}


PROVIDER_ZONE = ZoneInfo("Asia/Shanghai")  # Aliyun's report times: Beijing time, no zone
RECEIPT_ATTEMPTS = 6  # a refused push is tried again after 1, 2, 4, 8, 16 s (a receiver restarting is back by then)
RECEIPT_BATCH = 1000  # reports per push at most (the receiver refuses more)


def receipt_signature(secret: str, timestamp: str, body: bytes) -> str:
    """What the platform's receipt endpoint recomputes: ``sha256=`` hex HMAC-SHA256 of ``<timestamp>.<body>``."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def _beijing(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, PROVIDER_ZONE).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class Receipts:
    """The receipt push: where to, how late, which receipts fail, and what is waiting or was pushed."""

    url: str | None = None
    secret: str = ""
    delay_seconds: float = 1.0
    interval_seconds: float = 0.5
    fail_remaining: int = 0
    fail_code: str = "MOBILE_NOT_ON_SERVICE"
    pending: list[tuple[float, int, dict]] = field(default_factory=list)  # (due, attempts, report)
    pushed: int = 0
    failed_pushes: int = 0

    def report(self, message: dict, accepted_at: float) -> dict:
        failed = self.fail_remaining > 0
        if failed:
            self.fail_remaining -= 1
        return {"phone_number": message["phone"], "send_time": _beijing(accepted_at),
                "report_time": _beijing(accepted_at + self.delay_seconds), "success": not failed,
                "err_code": self.fail_code if failed else "DELIVERED",
                "err_msg": "用户停机" if failed else "用户接收成功",
                "sms_size": "1", "biz_id": message["biz_id"], "out_id": message.get("out_id")}


def percent_encode(value: str) -> str:
    """Aliyun's percent-encoding (RFC 3986 unreserved characters stay; a space is %20, ``*`` is %2A)."""
    return quote(value, safe="-_.~", encoding="utf-8")


def signature(method: str, params: Mapping[str, str], secret: str) -> str:
    """The RPC (signature version 1.0) signature of ``params``, every parameter but ``Signature``.

    Aliyun's documented example (GET, AccessKey secret ``testSecret``) signs to ``zJDF+Lrzhj/ThnlvIToysFRq6t4=``.
    """
    canonical = "&".join(
        f"{percent_encode(key)}={percent_encode(params[key])}" for key in sorted(params) if key != "Signature"
    )
    string_to_sign = f"{method.upper()}&{percent_encode('/')}&{percent_encode(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), string_to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class Refused(Exception):
    """A request answered with one of :data:`ERRORS` (or a ``Missing<Parameter>`` error)."""

    def __init__(self, code: str, message: str | None = None, status: int | None = None):
        known_status, known_message = ERRORS.get(code, (400, code))
        self.code = code
        self.message = message or known_message
        self.status = status or known_status
        super().__init__(f"{code}: {self.message}")


@dataclass
class Faults:
    """What a test asked the stand-in to do wrong: fail the next sends, or answer late."""

    fail_remaining: int = 0
    fail_code: str = "ServiceUnavailable"
    delay_seconds: float = 0.0
    delay_remaining: int | None = None  # None: every answer is delayed

    def take_failure(self) -> str | None:
        if self.fail_remaining <= 0:
            return None
        self.fail_remaining -= 1
        return self.fail_code

    def take_delay(self) -> float:
        if self.delay_seconds <= 0 or self.delay_remaining == 0:
            return 0.0
        if self.delay_remaining is not None:
            self.delay_remaining -= 1
        return self.delay_seconds


@dataclass
class SmsStandin:
    """The provider's state: accounts, templates, nonces, rate limits, accepted messages.

    ``clock`` returns epoch seconds (a test passes its own); ``sleep`` is what a delay fault calls.
    """

    journal: Path
    accounts: dict[str, str]
    rate_per_minute: int = 1
    templates: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_TEMPLATES))
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    faults: Faults = field(default_factory=Faults)
    receipts: Receipts = field(default_factory=Receipts)

    def __post_init__(self) -> None:
        self.journal = Path(self.journal)
        self._lock = threading.Lock()
        self._nonces: dict[str, float] = {}
        self._sent_at: dict[str, deque[float]] = {}  # phone -> times of accepted messages in the last minute
        self._messages: list[dict] = []
        self._by_out_id: dict[str, str] = {}
        self._load_journal()

    # --- the journal ------------------------------------------------------------------------------

    def _load_journal(self) -> None:
        """Reload what was accepted before a restart: the messages and their OutIds stay known."""
        if not self.journal.exists():
            return
        for line in self.journal.read_text(encoding="utf-8").splitlines():
            if line.strip():
                message = json.loads(line)
                self._messages.append(message)
                if message.get("out_id"):
                    self._by_out_id.setdefault(message["out_id"], message["biz_id"])

    def _append(self, messages: list[dict]) -> None:
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        with self.journal.open("a", encoding="utf-8") as out:
            for message in messages:
                out.write(json.dumps(message, ensure_ascii=False) + "\n")
        self._messages.extend(messages)

    def messages(self, phone: str | None = None) -> list[dict]:
        """What the stand-in was asked to send (to ``phone``, if given), oldest first."""
        wanted = _national(phone) if phone else None
        with self._lock:
            return [m for m in self._messages if wanted is None or m["phone"] == wanted]

    # --- SendSms ----------------------------------------------------------------------------------

    def send_sms(self, method: str, params: Mapping[str, str]) -> dict:
        """Check and accept one ``SendSms`` request; raises :class:`Refused` with Aliyun's error."""
        with self._lock:
            self._authenticate(method, params)
            injected = self.faults.take_failure()
            if injected:
                raise Refused(injected)
            return self._accept(params)

    def _authenticate(self, method: str, params: Mapping[str, str]) -> None:
        for name in REQUIRED:
            if not params.get(name):
                raise Refused(f"Missing{name}", f"{name} is mandatory for this action.", 400)
        if params["Action"] != ACTION:
            raise Refused("InvalidAction.NotFound")
        if params["Version"] != API_VERSION:
            raise Refused("InvalidVersion")
        secret = self.accounts.get(params["AccessKeyId"])
        if secret is None:
            raise Refused("InvalidAccessKeyId.NotFound")
        if params["SignatureMethod"] != SIGNATURE_METHOD or params["SignatureVersion"] != SIGNATURE_VERSION:
            raise Refused("IncompleteSignature")
        try:
            stamp = datetime.strptime(params["Timestamp"], TIMESTAMP_FORMAT).replace(tzinfo=UTC).timestamp()
        except ValueError:
            raise Refused("InvalidTimeStamp.Format") from None
        now = self.clock()
        if abs(now - stamp) > TIMESTAMP_TOLERANCE_SECONDS:
            raise Refused("InvalidTimeStamp.Expired")
        expected = signature(method, params, secret)
        if not hmac.compare_digest(expected.encode(), params["Signature"].encode()):
            raise Refused("SignatureDoesNotMatch",
                          f"Specified signature is not matched with our calculation. server string to sign "
                          f"is computed with method {method.upper()}.")
        # The nonce is remembered only once the signature is right: nobody else can burn a caller's nonce.
        self._forget_nonces(now)
        if params["SignatureNonce"] in self._nonces:
            raise Refused("SignatureNonceUsed")
        self._nonces[params["SignatureNonce"]] = now

    def _forget_nonces(self, now: float) -> None:
        for nonce, seen in list(self._nonces.items()):
            if now - seen > NONCE_WINDOW_SECONDS:
                del self._nonces[nonce]

    def _accept(self, params: Mapping[str, str]) -> dict:
        for name in SEND_REQUIRED:
            if not params.get(name):
                raise Refused(f"Missing{name}", f"{name} is mandatory for this action.", 400)
        phones = _phones(params["PhoneNumbers"])
        required = self.templates.get(params["TemplateCode"])
        if required is None:
            raise Refused("isv.SMS_TEMPLATE_ILLEGAL")
        template_param = _template_param(params.get("TemplateParam"))
        if any(not template_param.get(name) for name in required):
            raise Refused("isv.TEMPLATE_MISSING_PARAMETERS")
        if not params["SignName"].strip():
            raise Refused("isv.SMS_SIGNATURE_ILLEGAL")
        request_id = str(uuid.uuid4()).upper()
        out_id = params.get("OutId") or None
        if out_id and out_id in self._by_out_id:  # a retry of an accepted request: nothing is sent again
            return {"Code": "OK", "Message": "OK", "BizId": self._by_out_id[out_id], "RequestId": request_id}
        now = self.clock()
        self._check_rate(phones, now)
        biz_id = f"{secrets.randbelow(10 ** 18):018d}^0"
        at = datetime.fromtimestamp(now, UTC).isoformat()
        self._append([{
            "biz_id": biz_id, "request_id": request_id, "out_id": out_id, "phone": phone,
            "sign_name": params["SignName"], "template_code": params["TemplateCode"],
            "template_param": template_param, "access_key_id": params["AccessKeyId"], "received_at": at,
        } for phone in phones])
        for phone in phones:
            self._sent_at.setdefault(phone, deque()).append(now)
        if self.receipts.url:
            for message in self._messages[-len(phones):]:
                self.receipts.pending.append((now + self.receipts.delay_seconds, 0, self.receipts.report(message, now)))
        if out_id:
            self._by_out_id[out_id] = biz_id
        return {"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": request_id}

    def _check_rate(self, phones: list[str], now: float) -> None:
        if self.rate_per_minute <= 0:
            return
        for phone in phones:
            recent = self._sent_at.setdefault(phone, deque())
            while recent and now - recent[0] >= 60:
                recent.popleft()
            if len(recent) >= self.rate_per_minute:
                raise Refused("isv.BUSINESS_LIMIT_CONTROL", f"触发分钟级流控Permits:{self.rate_per_minute}")

    # --- faults -----------------------------------------------------------------------------------

    def set_faults(self, spec: Mapping[str, Any]) -> dict:
        """Apply a fault spec (see the module's docstring); raises ValueError for a bad one."""
        fail = spec.get("fail", 0)
        code = spec.get("code", "ServiceUnavailable")
        delay = spec.get("delay_seconds", 0)
        count = spec.get("count")
        if not isinstance(fail, int) or fail < 0:
            raise ValueError("fail must be a whole number >= 0")
        if not isinstance(code, str) or code not in ERRORS:
            raise ValueError(f"code must be one of {sorted(ERRORS)}")
        if not isinstance(delay, int | float) or delay < 0:
            raise ValueError("delay_seconds must be a number >= 0")
        if count is not None and (not isinstance(count, int) or count < 0):
            raise ValueError("count must be a whole number >= 0")
        with self._lock:
            if "fail" in spec:
                self.faults.fail_remaining, self.faults.fail_code = fail, code
            if "delay_seconds" in spec:
                self.faults.delay_seconds, self.faults.delay_remaining = float(delay), count
            return self.faults_view()

    def clear_faults(self) -> dict:
        with self._lock:
            self.faults = Faults()
            return self.faults_view()

    def faults_view(self) -> dict:
        return {"fail": self.faults.fail_remaining, "code": self.faults.fail_code,
                "delay_seconds": self.faults.delay_seconds, "count": self.faults.delay_remaining}

    def take_delay(self) -> float:
        with self._lock:
            return self.faults.take_delay()

    # --- receipts ---------------------------------------------------------------------------------

    def set_receipts(self, spec: Mapping[str, Any]) -> dict:
        """Change the receipts' delay, or fail the next N (see the module's docstring); ValueError for a bad spec."""
        delay, fail, code = spec.get("delay_seconds"), spec.get("fail"), spec.get("err_code")
        if delay is not None and (not isinstance(delay, int | float) or delay < 0):
            raise ValueError("delay_seconds must be a number >= 0")
        if fail is not None and (not isinstance(fail, int) or fail < 0):
            raise ValueError("fail must be a whole number >= 0")
        if code is not None and (not isinstance(code, str) or not code):
            raise ValueError("err_code must be a non-empty string")
        with self._lock:
            if delay is not None:
                self.receipts.delay_seconds = float(delay)
            if fail is not None:
                self.receipts.fail_remaining = fail
            if code is not None:
                self.receipts.fail_code = code
            return self.receipts_view()

    def receipts_view(self) -> dict:
        return {"url": self.receipts.url, "delay_seconds": self.receipts.delay_seconds,
                "fail": self.receipts.fail_remaining, "err_code": self.receipts.fail_code,
                "pending": len(self.receipts.pending), "pushed": self.receipts.pushed,
                "failed_pushes": self.receipts.failed_pushes}

    def push_due(self) -> int:
        """Push the receipts due now as one signed POST; how many the receiver took (0 if none was due)."""
        now = self.clock()
        with self._lock:
            due: list[tuple[float, int, dict]] = []
            rest: list[tuple[float, int, dict]] = []
            for entry in self.receipts.pending:
                (due if entry[0] <= now and len(due) < RECEIPT_BATCH else rest).append(entry)
            if not due:
                return 0
            self.receipts.pending = rest
        body = json.dumps([report for _, _, report in due], ensure_ascii=False).encode()
        stamp = str(int(time.time()))  # the receiver checks the stamp against its own clock, not ours
        request = HttpRequest(self.receipts.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "X-Huisheng-Timestamp": stamp,
            "X-Huisheng-Signature": receipt_signature(self.receipts.secret, stamp, body)})
        try:
            with urlopen(request, timeout=5) as answer:
                ok = 200 <= answer.status < 300
        except (URLError, OSError):
            ok = False
        with self._lock:
            if ok:
                self.receipts.pushed += len(due)
                return len(due)
            self.receipts.failed_pushes += 1
            self.receipts.pending += [(now + 2.0 ** attempts, attempts + 1, report) for _, attempts, report in due
                                      if attempts + 1 < RECEIPT_ATTEMPTS]
        return 0

    def push_forever(self) -> None:
        """The pusher's loop (a daemon thread of :func:`main`)."""
        while True:
            self.sleep(self.receipts.interval_seconds)
            try:
                self.push_due()
            except Exception as error:  # a bug here must not end the pusher silently: say it, keep pushing
                print(f"sms stand-in: receipt push failed: {error!r}", flush=True)

    # --- HTTP -------------------------------------------------------------------------------------

    def __call__(self, environ, start_response):
        return self.wsgi(environ, start_response)

    @Request.application
    def wsgi(self, request: Request) -> Response:
        try:
            return self._route(request)
        except HTTPException as error:
            return error.get_response()

    def _route(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        if path == "/health" and request.method == "GET":
            return _json({"status": "ok"})
        if path == "/_standin/messages" and request.method == "GET":
            return _json({"items": self.messages(request.args.get("phone"))})
        if path == "/_standin/faults":
            return self._faults(request)
        if path == "/_standin/receipts":
            return self._receipts(request)
        if path == "/" and request.method in ("GET", "POST"):
            return self._api(request)
        return _json({"Code": "InvalidAction.NotFound", "Message": ERRORS["InvalidAction.NotFound"][1]}, 404)

    def _faults(self, request: Request) -> Response:
        if request.method == "GET":
            with self._lock:
                return _json(self.faults_view())
        if request.method == "DELETE":
            return _json(self.clear_faults())
        if request.method != "POST":
            return _json({"error": "use GET, POST or DELETE"}, 405)
        spec = request.get_json(silent=True)
        if not isinstance(spec, dict):
            return _json({"error": "the body must be a JSON object"}, 400)
        try:
            return _json(self.set_faults(spec))
        except ValueError as error:
            return _json({"error": str(error)}, 400)

    def _receipts(self, request: Request) -> Response:
        if request.method == "GET":
            with self._lock:
                return _json(self.receipts_view())
        if request.method != "POST":
            return _json({"error": "use GET or POST"}, 405)
        spec = request.get_json(silent=True)
        if not isinstance(spec, dict):
            return _json({"error": "the body must be a JSON object"}, 400)
        try:
            return _json(self.set_receipts(spec))
        except ValueError as error:
            return _json({"error": str(error)}, 400)

    def _api(self, request: Request) -> Response:
        # Aliyun reads the parameters from the query string and, for a POST, the form body as well.
        params = {**request.args.to_dict(), **request.form.to_dict()}
        xml = params.get("Format", "XML").upper() != "JSON"
        delay = self.take_delay()
        if delay:
            self.sleep(delay)
        try:
            body, status = self.send_sms(request.method, params), 200
        except Refused as refused:
            body = {"RequestId": str(uuid.uuid4()).upper(), "HostId": "dysmsapi.aliyuncs.com",
                    "Code": refused.code, "Message": refused.message}
            status = refused.status
        return _xml(body, status) if xml else _json(body, status)


def _national(phone: str) -> str:
    """A number as the journal keeps it: the 11 national digits.

    >>> _national("+8613812345678"), _national("13812345678")
    ('13812345678', '13812345678')
    """
    match = MOBILE.match(phone.strip())
    return match.group(1) if match else phone.strip()


def _phones(text: str) -> list[str]:
    numbers = [part.strip() for part in text.split(",")]
    if not numbers or len(numbers) > MAX_PHONE_NUMBERS or any(not MOBILE.match(n) for n in numbers):
        raise Refused("isv.MOBILE_NUMBER_ILLEGAL")
    return list(dict.fromkeys(_national(n) for n in numbers))


def _template_param(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise Refused("isv.INVALID_JSON_PARAM") from None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise Refused("isv.INVALID_JSON_PARAM")
    return value


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), status=status, content_type="application/json")


def _xml(body: Mapping[str, Any], status: int = 200) -> Response:
    root = "SendSmsResponse" if body.get("Code") == "OK" else "Error"
    inner = "".join(f"<{key}>{escape(str(value))}</{key}>" for key, value in body.items())
    return Response(f'<?xml version="1.0" encoding="UTF-8"?><{root}>{inner}</{root}>', status=status,
                    content_type="text/xml")


def main(argv: list[str] | None = None) -> None:
    from werkzeug.serving import WSGIRequestHandler, run_simple

    class QuietHandler(WSGIRequestHandler):
        """Logs method, path and status only: a query string carries phone numbers and codes."""

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            self.log("info", '"%s %s" %s', self.command, self.path.split("?", 1)[0], code)

    from kernel.config import Settings

    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="python -m standins.sms", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8190)
    parser.add_argument("--journal", type=Path, default=settings.home / "sms-standin.jsonl",
                        help="JSON lines file of every accepted message")
    parser.add_argument("--access-key-id", default=settings.sms_access_key_id)
    parser.add_argument("--access-key-secret", default=settings.sms_access_key_secret)
    parser.add_argument("--rate-per-minute", type=int, default=1,
                        help="messages a phone number may get a minute (0: no limit)")
    under_up = bool(os.environ.get("HUISHENG_HOME"))  # run by `huisheng up`: push to that platform's gateway
    parser.add_argument("--receipt-url", default=f"http://127.0.0.1:{settings.gateway_port}/api/v1/receipts/sms"
                        if under_up else "", help="where delivery receipts are pushed ('': nowhere)")
    parser.add_argument("--receipt-secret", default=settings.sms_receipt_secret)
    parser.add_argument("--receipt-delay", type=float, default=1.0, help="seconds from acceptance to its receipt")
    args = parser.parse_args(argv)
    receipts = Receipts(url=args.receipt_url or None, secret=args.receipt_secret, delay_seconds=args.receipt_delay)
    app = SmsStandin(journal=args.journal, accounts={args.access_key_id: args.access_key_secret},
                     rate_per_minute=args.rate_per_minute, receipts=receipts)
    if receipts.url:
        threading.Thread(target=app.push_forever, name="receipts", daemon=True).start()
    run_simple(args.host, args.port, app, threaded=True, request_handler=QuietHandler)


if __name__ == "__main__":
    main()

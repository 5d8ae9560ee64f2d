"""External echo channels behind one adapter interface: SMS, e-mail (SMTP), WeChat subscription messages,
outbound webhooks. (The in-app inbox and the human step are notify's own records: see the service.)

Each adapter's :meth:`Channel.send` never raises for a provider's answer: it returns an
:class:`~services.notify.fallback.Outcome` — ``delivered`` when the provider's answer means the person
has it (WeChat pushed it; the receiving SMTP server or webhook receiver accepted it), ``sent`` when
only a receipt could say so (SMS), or ``failed`` with ``retryable`` and the provider's answer. Every
send carries the echo's idempotency key, so a retry after a timeout never sends twice where the
provider checks it. No answer carries the address (phone, e-mail, openid) it was sent to.

>>> signature_of("huisheng-secret", "1765000000", b'{"a":1}')
'sha256=a36de8d0ffb5c1bd8e1b326cb60a0cda9092766703ec98cf1f5610a23f578d1b'
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode
from urllib.request import Request, urlopen

from nameko.extensions import DependencyProvider

from kernel.config import Settings, settings_of
from services.notify.fallback import Outcome
from services.notify.sms import AliyunSms, SmsAdapter, SmsError
from services.notify.templates import WECHAT_THING_CHARS, truncate_chars

SIGNATURE_HEADER = "X-Huisheng-Signature"
TIMESTAMP_HEADER = "X-Huisheng-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"


@dataclass(frozen=True)
class Message:
    """One echo on one channel: where to (``address``, never logged), what, and its idempotency key."""

    echo_id: str
    idempotency_key: str
    address: str
    title: str
    body: str
    facts: Mapping = field(default_factory=dict)
    event_type: str = ""
    ticket_id: str = ""


class Channel(ABC):
    """What notify needs of an external channel."""

    name: str
    contact: str  # which member of ``directory.contacts`` (or of the preferences) is the address

    @abstractmethod
    def send(self, message: Message) -> Outcome:
        """Send ``message``; the outcome, never an exception for the provider's answer."""


def _failed(code: str, message: str, retryable: bool, status: int | None = None) -> Outcome:
    answer = {"code": code, "message": message[:200], "http_status": status}
    return Outcome("failed", answer=answer, retryable=retryable)


# --- SMS ---------------------------------------------------------------------------------------------

class SmsChannel(Channel):
    """An echo by SMS through the provider's echo template (``ticket_id``, ``title``): ``sent`` until a receipt."""

    name, contact = "sms", "phone"

    def __init__(self, adapter: SmsAdapter, template_code: str):
        self.adapter, self.template_code = adapter, template_code

    def send(self, message: Message) -> Outcome:
        params = {"ticket_id": str(message.facts.get("number") or message.ticket_id), "title": message.title}
        try:
            biz_id = self.adapter.send(message.address, self.template_code, params, message.idempotency_key)
        except SmsError as error:
            return Outcome("failed", answer={**error.to_dict(), "http_status": error.status}, retryable=error.retryable)
        return Outcome("sent", answer={"code": "OK"}, provider_id=biz_id)


# --- e-mail ------------------------------------------------------------------------------------------

class EmailChannel(Channel):
    """An echo by e-mail over SMTP. The receiving server's 250 is the delivery (it holds the mailbox).

    The idempotency key is the message's ``Message-ID`` (and ``X-Huisheng-Idempotency-Key``): a
    receiving system can drop a second copy of a retry after a lost answer.
    """

    name, contact = "email", "email"

    def __init__(self, host: str, port: int, sender: str, timeout: float = 5.0):
        self.host, self.port, self.sender, self.timeout = host, port, sender, timeout

    def build(self, message: Message) -> EmailMessage:
        email = EmailMessage()
        email["From"] = self.sender
        email["To"] = message.address
        email["Subject"] = message.title
        email["Message-ID"] = make_msgid(idstring=message.idempotency_key.replace(":", "."), domain="huisheng")
        email["X-Huisheng-Idempotency-Key"] = message.idempotency_key
        email.set_content(message.body)
        return email

    def send(self, message: Message) -> Outcome:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                refused = smtp.send_message(self.build(message))
        except smtplib.SMTPRecipientsRefused as error:
            [(code, text)] = list(error.recipients.values())[:1] or [(550, b"refused")]
            return _failed(f"smtp_{code}", _text(text), retryable=400 <= code < 500, status=code)
        except smtplib.SMTPResponseException as error:
            return _failed(f"smtp_{error.smtp_code}", _text(error.smtp_error), retryable=400 <= error.smtp_code < 500,
                           status=error.smtp_code)
        except TimeoutError:
            return _failed("timeout", f"no answer within {self.timeout} s", retryable=True)
        except (OSError, smtplib.SMTPException) as error:
            return _failed("unreachable", f"the SMTP server cannot be reached: {type(error).__name__}", retryable=True)
        if refused:
            return _failed("smtp_refused", "the recipient was refused", retryable=False)
        return Outcome("delivered", answer={"code": "250"})


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


# --- WeChat subscription messages ---------------------------------------------------------------------

# errcodes after which a new access_token may help (invalid, expired, not the latest)
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})
RETRYABLE_ERRCODES = frozenset({-1, 45009, 45011})  # system busy; API frequency limits


class WeChatChannel(Channel):
    """WeChat mini-program subscription messages (``message/subscribe/send``), with the access token it needs.

    ``errcode 0`` is the delivery: WeChat has pushed the message to the person's client. The
    echo's idempotency key goes as an ``Idempotency-Key`` header (the stand-in checks it; WeChat's
    API has none, and then a retry after a lost answer may repeat the message).
    """

    name, contact = "wechat", "wechat_openid"

    def __init__(self, base_url: str, appid: str, secret: str, template_id: str, timeout: float = 2.0,
                 clock: Callable[[], float] = time.monotonic):
        self.base_url, self.appid, self.secret = base_url.rstrip("/"), appid, secret
        self.template_id, self.timeout, self.clock = template_id, timeout, clock
        self._token: tuple[str, float] | None = None
        self._lock = threading.Lock()

    def _call(self, method: str, path: str, query: Mapping[str, str], body: Mapping | None = None,
              headers: Mapping[str, str] | None = None) -> dict:
        url = f"{self.base_url}{path}?{urlencode(query)}"
        data = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
        request = Request(url, data=data, method=method,
                          headers={"Content-Type": "application/json", **(headers or {})})
        with urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read())

    def access_token(self, refresh: bool = False) -> str:
        """A valid access token (``/cgi-bin/token``), fetched again a minute before it expires."""
        with self._lock:
            if self._token and not refresh and self.clock() < self._token[1]:
                return self._token[0]
            answer = self._call("GET", "/cgi-bin/token", {"grant_type": "client_credential", "appid": self.appid,
                                                           "secret": self.secret})
            if not answer.get("access_token"):
                raise _WeChatError(int(answer.get("errcode", -1)), str(answer.get("errmsg", "")))
            self._token = (answer["access_token"], self.clock() + int(answer.get("expires_in", 7200)) - 60)
            return self._token[0]

    def payload(self, message: Message) -> dict:
        return {"touser": message.address, "template_id": self.template_id, "page": "pages/inbox/index",
                "miniprogram_state": "formal", "lang": "zh_CN",
                "data": {"thing1": {"value": truncate_chars(message.title, WECHAT_THING_CHARS)},
                         "character_string2": {"value": str(message.facts.get("number") or message.ticket_id)[:32]},
                         "thing3": {"value": truncate_chars(message.body, WECHAT_THING_CHARS)}}}

    def send(self, message: Message) -> Outcome:
        try:
            for attempt in (1, 2):
                token = self.access_token(refresh=attempt == 2)
                answer = self._call("POST", "/cgi-bin/message/subscribe/send", {"access_token": token},
                                    self.payload(message), {IDEMPOTENCY_HEADER: message.idempotency_key})
                code = int(answer.get("errcode", 0))
                if code == 0:
                    return Outcome("delivered", answer={"code": "0"}, provider_id=str(answer.get("msgid") or ""))
                if code not in TOKEN_ERRCODES:
                    break
            return _failed(str(code), str(answer.get("errmsg", "")), retryable=code in RETRYABLE_ERRCODES)
        except _WeChatError as error:
            return _failed(str(error.code), error.message, retryable=error.code in RETRYABLE_ERRCODES)
        except HTTPError as error:
            return _failed(f"http_{error.code}", "WeChat answered an HTTP error", retryable=error.code >= 500,
                           status=error.code)
        except TimeoutError:
            return _failed("timeout", f"no answer within {self.timeout} s", retryable=True)
        except URLError as error:
            timed_out = isinstance(error.reason, TimeoutError)
            return _failed("timeout" if timed_out else "unreachable", "WeChat cannot be reached", retryable=True)
        except (OSError, ValueError) as error:
            return _failed("unreachable", f"WeChat's answer was lost: {type(error).__name__}", retryable=True)


class _WeChatError(Exception):
    def __init__(self, code: int, message: str):
        self.code, self.message = code, message
        super().__init__(f"{code}: {message}")


# --- webhooks ----------------------------------------------------------------------------------------

def signature_of(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=`` and the hex HMAC-SHA256 of ``<timestamp>.<body>``: what a receiver recomputes and compares."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookChannel(Channel):
    """An echo POSTed as JSON to a receiver's URL, signed (HMAC-SHA256 over timestamp and body).

    Headers: ``X-Huisheng-Timestamp`` (Unix seconds; receivers should refuse old ones),
    ``X-Huisheng-Signature`` (:func:`signature_of`), ``Idempotency-Key``. A 2xx is the delivery;
    408, 429 and 5xx may pass later; any other status never will.
    """

    name, contact = "webhook", "webhook_url"

    def __init__(self, secret: str, timeout: float = 3.0, clock: Callable[[], float] = time.time):
        self.secret, self.timeout, self.clock = secret, timeout, clock

    def body(self, message: Message) -> bytes:
        document = {"echo_id": message.echo_id, "ticket_id": message.ticket_id, "event_type": message.event_type,
                    "number": message.facts.get("number"), "title": message.title, "body": message.body}
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()

    def send(self, message: Message) -> Outcome:
        body, timestamp = self.body(message), str(int(self.clock()))
        request = Request(message.address, data=body, method="POST", headers={
            "Content-Type": "application/json", TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature_of(self.secret, timestamp, body), IDEMPOTENCY_HEADER: message.idempotency_key})
        try:
            with urlopen(request, timeout=self.timeout) as response:
                status = response.status
        except HTTPError as error:
            status = error.code
        except TimeoutError:
            return _failed("timeout", f"no answer within {self.timeout} s", retryable=True)
        except URLError as error:
            timed_out = isinstance(error.reason, TimeoutError)
            return _failed("timeout" if timed_out else "unreachable", "the receiver cannot be reached", retryable=True)
        except OSError as error:
            return _failed("unreachable", f"the receiver's answer was lost: {type(error).__name__}", retryable=True)
        if 200 <= status < 300:
            return Outcome("delivered", answer={"code": str(status), "http_status": status})
        return _failed(f"http_{status}", "the receiver refused the webhook", retryable=status in (408, 429) or
                       status >= 500, status=status)


# --- the dependency ----------------------------------------------------------------------------------

def from_settings(settings: Settings, sms: SmsAdapter | None = None) -> dict[str, Channel]:
    """Every external channel, configured from the process's settings."""
    return {
        "sms": SmsChannel(sms or AliyunSms.from_settings(settings), settings.sms_echo_template_code),
        "email": EmailChannel(settings.smtp_host, settings.smtp_port, settings.smtp_from, settings.smtp_timeout),
        "wechat": WeChatChannel(settings.wechat_api_url, settings.wechat_appid, settings.wechat_secret,
                                settings.wechat_template_id, settings.wechat_timeout),
        "webhook": WebhookChannel(settings.webhook_secret, settings.webhook_timeout),
    }


class Channels(DependencyProvider):
    """Injects ``{name: Channel}``; ``overrides`` replace channels (another provider, or a test's)."""

    def __init__(self, overrides: Mapping[str, Channel] | None = None, **kwargs):
        self.overrides = dict(overrides or {})
        self.channels: dict[str, Channel] = {}
        super().__init__(**kwargs)

    def setup(self) -> None:
        self.channels = {**from_settings(settings_of(self.container.config)), **self.overrides}

    def get_dependency(self, worker_ctx) -> dict[str, Channel]:
        return self.channels

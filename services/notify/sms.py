"""The SMS channel: one adapter interface, and its implementation for Aliyun's Dysms ``SendSms`` API.

A request is signed as Aliyun documents it (RPC style, signature version 1.0, HMAC-SHA1 keyed with
the AccessKey secret and ``&``) and sent as a form POST. Aliyun's documented example, a GET with
the secret ``testSecret``, signs to ``zJDF+Lrzhj/ThnlvIToysFRq6t4=``:

>>> params = {"AccessKeyId": "testId", "Action": "SendSms", "Format": "XML", "OutId": "123",
...     "PhoneNumbers": "15300000001", "RegionId": "cn-hangzhou", "SignName": "阿里云短信测试专用",
...     "SignatureMethod": "HMAC-SHA1", "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
...     "SignatureVersion": "1.0", "TemplateCode": "SMS_71390007", "TemplateParam": '{"customer":"test"}',
...     "Timestamp": "2017-07-12T02:42:19Z", "Version": "2017-05-25"}
>>> sign("GET", params, "testSecret")
'zJDF+Lrzhj/ThnlvIToysFRq6t4='

The provider's errors become :class:`SmsError`: :class:`SmsRetryable` when the same message may
succeed later (rate limits, the provider's own failures, timeouts, connection failures) and
:class:`SmsRejected` when it never will (bad credentials or signature, an illegal number, a
template without its parameters). Neither carries the phone number or the message's parameters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode
from urllib.request import Request, urlopen

from nameko.extensions import DependencyProvider

from kernel.config import Settings, settings_of

API_VERSION = "2017-05-25"
DEFAULT_TIMEOUT_SECONDS = 5.0

# Codes a later attempt may get past; any other code the provider answers is final for this message.
RETRYABLE_CODES = frozenset({
    "isv.BUSINESS_LIMIT_CONTROL", "isv.DAY_LIMIT_CONTROL", "Throttling.User", "Throttling",
    "InternalError", "ServiceUnavailable", "SignatureNonceUsed", "isp.SYSTEM_ERROR", "isv.OUT_OF_SERVICE",
})


class SmsError(Exception):
    """The provider did not accept the message. ``code`` is the provider's (or ``timeout``, ``unreachable``)."""

    retryable = False

    def __init__(self, code: str, message: str = "", status: int | None = None):
        self.code = code
        self.message = message or code
        self.status = status
        self.attempts = 1
        super().__init__(f"{code}: {self.message}")

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "retryable": self.retryable}


class SmsRetryable(SmsError):
    """The same message may be accepted later (same idempotency key: it is never sent twice)."""

    retryable = True


class SmsRejected(SmsError):
    """The provider will never accept this message as it is."""


class SmsAdapter(ABC):
    """What notify needs of an SMS provider."""

    @abstractmethod
    def send(self, phone: str, template_code: str, params: Mapping[str, str], idempotency_key: str) -> str:
        """Send one templated message to ``phone``; the provider's message id (Aliyun's ``BizId``).

        The same ``idempotency_key`` twice must not send twice. Raises :class:`SmsError`.
        """


def percent_encode(value: str) -> str:
    """Aliyun's percent-encoding: only ``A-Z a-z 0-9 - _ . ~`` stay as they are.

    >>> percent_encode("阿 *~")
    '%E9%98%BF%20%2A~'
    """
    return quote(value, safe="-_.~", encoding="utf-8")


def sign(method: str, params: Mapping[str, str], secret: str) -> str:
    """Aliyun's RPC signature (version 1.0, HMAC-SHA1) of every parameter but ``Signature``."""
    canonical = "&".join(
        f"{percent_encode(key)}={percent_encode(value)}" for key, value in sorted(params.items())
        if key != "Signature"
    )
    string_to_sign = f"{method.upper()}&{percent_encode('/')}&{percent_encode(canonical)}"
    return base64.b64encode(hmac.new(f"{secret}&".encode(), string_to_sign.encode(), hashlib.sha1).digest()).decode()


def _error(code: str, message: str, status: int | None) -> SmsError:
    retryable = code in RETRYABLE_CODES or (status is not None and status >= 500)
    return (SmsRetryable if retryable else SmsRejected)(code, message, status)


class AliyunSms(SmsAdapter):
    """Dysms ``SendSms`` over HTTP(S); ``idempotency_key`` goes as ``OutId``.

    ``clock`` (aware datetimes) and ``nonce`` are injectable so a request can be reproduced.
    """

    def __init__(self, endpoint: str, access_key_id: str, access_key_secret: str, sign_name: str, *,
                 timeout: float = DEFAULT_TIMEOUT_SECONDS, region: str = "cn-hangzhou",
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 nonce: Callable[[], str] = lambda: uuid.uuid4().hex):
        self.endpoint = endpoint
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self.sign_name = sign_name
        self.timeout = timeout
        self.region = region
        self.clock = clock
        self.nonce = nonce

    @classmethod
    def from_settings(cls, settings: Settings) -> AliyunSms:
        return cls(settings.sms_provider_url, settings.sms_access_key_id, settings.sms_access_key_secret,
                   settings.sms_sign_name, timeout=settings.sms_timeout)

    def signed_params(self, phone: str, template_code: str, params: Mapping[str, str],
                      idempotency_key: str) -> dict[str, str]:
        """The request's parameters, ``Signature`` included."""
        request = {
            "AccessKeyId": self.access_key_id, "Action": "SendSms", "Format": "JSON", "Version": API_VERSION,
            "RegionId": self.region, "SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0",
            "SignatureNonce": self.nonce(), "Timestamp": self.clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "PhoneNumbers": phone, "SignName": self.sign_name, "TemplateCode": template_code,
            "TemplateParam": json.dumps(dict(params), ensure_ascii=False, separators=(",", ":")),
            "OutId": idempotency_key,
        }
        request["Signature"] = sign("POST", request, self.access_key_secret)
        return request

    def send(self, phone: str, template_code: str, params: Mapping[str, str], idempotency_key: str) -> str:
        body = urlencode(self.signed_params(phone, template_code, params, idempotency_key),
                         quote_via=quote).encode()
        http_request = Request(self.endpoint, data=body, method="POST",
                               headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
                                        "Accept": "application/json"})
        try:
            with urlopen(http_request, timeout=self.timeout) as response:
                status, raw = response.status, response.read()
        except HTTPError as error:
            status, raw = error.code, error.read()
        except TimeoutError as error:
            raise SmsRetryable("timeout", f"no answer within {self.timeout} s") from error
        except URLError as error:
            if isinstance(error.reason, TimeoutError):
                raise SmsRetryable("timeout", f"no answer within {self.timeout} s") from error
            raise SmsRetryable("unreachable", f"the provider cannot be reached: {type(error.reason).__name__}") \
                from error
        except OSError as error:  # a connection reset mid-answer
            raise SmsRetryable("unreachable", f"the provider cannot be reached: {type(error).__name__}") from error
        try:
            answer = json.loads(raw)
        except ValueError:
            raise _error("bad_answer", f"the provider answered HTTP {status} without JSON", status) from None
        code = answer.get("Code") if isinstance(answer, dict) else None
        if status == 200 and code == "OK" and answer.get("BizId"):
            return str(answer["BizId"])
        raise _error(str(code or f"http_{status}"), str(answer.get("Message", "")) if code else "", status)


@dataclass(frozen=True)
class SmsChannel:
    """The SMS channel as notify's entrypoints use it: the adapter and the settings of its sends."""

    adapter: SmsAdapter
    code_template: str
    budget_seconds: float  # what a caller waiting on an RPC can give all attempts together
    attempt_seconds: float  # the adapter's timeout: a retry is tried only if one more fits

    def send_code(self, phone: str, code: str, idempotency_key: str) -> tuple[str, int]:
        """Send a one-time code (the template's one parameter); the provider's id and the attempts made."""
        return send_with_retry(self.adapter, phone, self.code_template, {"code": code}, idempotency_key,
                               budget_seconds=self.budget_seconds, attempt_seconds=self.attempt_seconds)


class Sms(DependencyProvider):
    """Injects the process's :class:`SmsChannel`, built once from its settings (Aliyun Dysms by default).

    ``adapter`` replaces the provider (another provider, or a test's).
    """

    def __init__(self, adapter: SmsAdapter | None = None, **kwargs):
        self.adapter = adapter
        self.channel: SmsChannel | None = None
        super().__init__(**kwargs)

    def setup(self) -> None:
        settings = settings_of(self.container.config)
        # The caller waits at most its RPC timeout: all attempts fit in most of it, the rest is for the reply.
        self.channel = SmsChannel(self.adapter or AliyunSms.from_settings(settings), settings.sms_template_code,
                                  budget_seconds=settings.rpc_timeout * 0.8, attempt_seconds=settings.sms_timeout)

    def get_dependency(self, worker_ctx) -> SmsChannel:
        return self.channel


# Retrying these at once cannot help: the provider counts this number's messages over a minute or a day.
_NOT_NOW = frozenset({"isv.BUSINESS_LIMIT_CONTROL", "isv.DAY_LIMIT_CONTROL"})


def send_with_retry(adapter: SmsAdapter, phone: str, template_code: str, params: Mapping[str, str],
                    idempotency_key: str, *, budget_seconds: float, attempt_seconds: float,
                    clock: Callable[[], float] = time.monotonic) -> tuple[str, int]:
    """Send, and send again under the same key after a transient failure while the budget lasts.

    Returns the provider's id and the number of attempts; an :class:`SmsError` carries
    ``attempts`` too. The same key makes a retry after a timeout safe: a first request that
    was accepted late is not sent twice.
    """
    deadline = clock() + budget_seconds
    attempts = 0
    while True:
        attempts += 1
        try:
            return adapter.send(phone, template_code, params, idempotency_key), attempts
        except SmsError as error:
            error.attempts = attempts
            if not error.retryable or error.code in _NOT_NOW or deadline - clock() < attempt_seconds:
                raise

"""Delivery receipts pushed by the SMS provider, checked and read. No I/O.

Aliyun pushes SMS status reports (``SmsReport``) as a JSON array, one object per message:
``{"phone_number", "send_time", "report_time", "success", "err_code", "err_msg", "sms_size", "biz_id",
"out_id"}``. ``out_id`` is the idempotency key notify sent the message with (``<echo id>:sms``), so a
receipt finds its echo without a lookup by phone. The push reaches the gateway unauthenticated, so it must be
signed: ``X-Huisheng-Timestamp`` and ``X-Huisheng-Signature`` (HMAC-SHA256 of ``<timestamp>.<body>``, as
notify's own webhooks) with ``SMS_RECEIPT_SECRET``; a receipt more than five minutes old or new is refused.

>>> raw = '[{"out_id": "e1:r1:sms", "success": true, "report_time": "2026-12-06 10:00:05", "err_code": "DELIVERED"}]'
>>> [(r.echo_id, r.delivered, r.at.isoformat()) for r in parse(raw)]
[('e1:r1', True, '2026-12-06T02:00:05+00:00')]
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from kernel.errors import ValidationFailed
from services.notify.channels import signature_of

MAX_SKEW_SECONDS = 300
MAX_RECEIPTS = 1000
PROVIDER_ZONE = ZoneInfo("Asia/Shanghai")  # Aliyun's report times are Beijing time without a zone


@dataclass(frozen=True)
class Receipt:
    echo_id: str
    delivered: bool
    at: datetime
    answer: dict


def verified(secret: str, timestamp: str | None, signature: str | None, raw: str, now: float) -> bool:
    """Whether the push is signed with ``secret`` and recent.

    >>> body = "[]"
    >>> verified("k", "1000", signature_of("k", "1000", body.encode()), body, now=1100)
    True
    >>> verified("k", "1000", signature_of("k", "1000", body.encode()), body, now=2000)
    False
    """
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    if abs(now - int(timestamp)) > MAX_SKEW_SECONDS:
        return False
    return hmac.compare_digest(signature_of(secret, timestamp, raw.encode()), signature)


def _time(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=PROVIDER_ZONE)).astimezone(UTC)


def parse(raw: str) -> list[Receipt]:
    """The receipts of a push that are ours (an ``out_id`` ending in ``:sms``); a malformed push is an error."""
    try:
        items = json.loads(raw)
    except ValueError:
        raise ValidationFailed("the receipts are not JSON", {"_schema": ["expected a JSON array"]}) from None
    if not isinstance(items, list) or len(items) > MAX_RECEIPTS:
        raise ValidationFailed("the receipts must be an array", {"_schema": [f"at most {MAX_RECEIPTS} receipts"]})
    receipts = []
    for item in items:
        if not isinstance(item, dict):
            continue
        out_id, at = item.get("out_id"), _time(item.get("report_time"))
        if not isinstance(out_id, str) or not out_id.endswith(":sms") or at is None:
            continue
        answer = {"code": str(item.get("err_code") or ""), "message": str(item.get("err_msg") or "")[:200]}
        receipts.append(Receipt(out_id.removesuffix(":sms"), item.get("success") is True, at, answer))
    return receipts

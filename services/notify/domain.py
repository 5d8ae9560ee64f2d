"""Which echo each resident gets for a ticket event, and on which channel. No I/O.

>>> echoes = compose("ticket.received", {"ticket_id": "t1", "state": "received",
...     "attached_residents": ["r1", "r2"], "service_code": "roof_leak", "priority": "normal"})
>>> [(echo.recipient, echo.channel) for echo in echoes]
[('r1', 'inbox'), ('r2', 'inbox')]
>>> echoes[0].title
'您的诉求已受理'
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from kernel.envelope import Envelope, utcnow
from services.notify.templates import facts, render

TEMPLATES: dict[str, tuple[str, str]] = {
    "ticket.received": ("您的诉求已受理", "我们已收到您反映的问题（编号 {number}），将尽快安排处理。"),
    "ticket.dispatched": ("诉求已派单", "您反映的问题（编号 {number}）已交由专人办理。"),
    "ticket.accepted": ("诉求已签收", "承办人已签收您反映的问题（编号 {number}）。"),
    "ticket.started": ("诉求办理中", "您反映的问题（编号 {number}）正在办理。"),
    "ticket.paused": ("诉求暂缓办理", "您反映的问题（编号 {number}）暂缓办理，原因：{reason}。"),
    "ticket.resumed": ("诉求恢复办理", "您反映的问题（编号 {number}）已恢复办理。"),
    "ticket.resolved": ("诉求已办结", "您反映的问题（编号 {number}）已办结，我们将回访确认是否解决。"),
    "ticket.confirmed": ("感谢您的确认", "您确认问题（编号 {number}）已解决，感谢您的支持。"),
    "ticket.reopened": ("诉求重新办理", "您反映问题（编号 {number}）未解决，我们已重新办理并提高优先级。"),
    "ticket.closed": ("诉求已结束", "您反映的问题（编号 {number}）已结束办理，原因：{reason}。"),
    "ticket.attached": ("已关联到同一问题", "您反映的问题已与编号 {number} 合并办理，进展会同步告知您。"),
    "ticket.commented": ("诉求有新的回复", "关于您反映的问题（编号 {number}）：{text}"),
    # volunteers (kernel.events.RESIDENT_VISIBLE_VOLUNTEER_EVENTS); a wish's number is the wish's id
    "volunteer.accepted": ("志愿者正在赶来",
                           "志愿者已接下您的诉求（编号 {number}），正在赶来。到达时请告知签到码 {check_in_code}。"),
    "volunteer.checked_in": ("志愿者已到达", "志愿者已到达并开始服务（编号 {number}）。"),
    "volunteer.checked_out": ("志愿服务已完成", "志愿者已完成服务（编号 {number}），欢迎您为这次帮助评分。"),
    "wish.claimed": ("微心愿已被认领", "您的微心愿“{title}”（编号 {number}）已有志愿者认领。"),
    "wish.fulfilled": ("微心愿已实现", "志愿者已帮您实现微心愿“{title}”（编号 {number}），请确认并评分。"),
}


@dataclass(frozen=True)
class Echo:
    """One message to one resident about one ticket event."""

    recipient: str
    channel: str
    title: str
    body: str


def recipients(event_type: str, payload: dict) -> list[str]:
    """Every attached resident hears of every change; a newly attached one hears of the merge."""
    if event_type == "ticket.attached" and payload.get("resident"):
        return [payload["resident"]]
    if event_type == "ticket.commented" and (
            payload.get("visibility") != "resident" or (payload.get("actor") or {}).get("role") == "resident"):
        return []  # internal notes stay with staff; a resident's own words are not echoed back
    return list(dict.fromkeys(payload.get("attached_residents") or []))


def compose(event_type: str, payload: dict, channel: str = "inbox") -> list[Echo]:
    """The echoes an event causes, rendered for ``channel`` (Jinja2, sandboxed: :mod:`services.notify.templates`).

    Only whitelisted facts of the ticket reach the text (its short number, a reason, a resident-visible
    comment ...), and phone numbers in them are masked.
    """
    title, text = render(event_type, channel, facts(payload))
    return [Echo(recipient, channel, title, text) for recipient in recipients(event_type, payload)]


# --- sign-in codes by SMS ----------------------------------------------------------------------------

MOBILE = re.compile(r"^(?:\+86|0086|86)?(1[3-9]\d{9})$")
CODE = re.compile(r"^\d{4,8}$")
PURPOSE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def national_phone(phone: str) -> str | None:
    """The 11 national digits of a mainland mobile number, or None if it is not one.

    >>> national_phone("+86 138-1234-5678"), national_phone("13812345678"), national_phone("12345")
    ('13812345678', '13812345678', None)
    """
    if not isinstance(phone, str):
        return None
    match = MOBILE.match(re.sub(r"[\s-]", "", phone))
    return match.group(1) if match else None


def masked_phone(phone: str) -> str:
    """138****5678: what a stored record or a log line may show of a number.

    >>> masked_phone("13812345678")
    '138****5678'
    """
    return f"{phone[:3]}****{phone[-4:]}" if len(phone) >= 7 else "****"


def code_request_errors(community: object, phone: object, code: object, purpose: object) -> dict[str, list[str]]:
    """What is wrong with a ``send_code`` request, per field; the messages never repeat the values.

    >>> code_request_errors("xingqiao", "13812345678", "123456", "sign_in")
    {}
    >>> sorted(code_request_errors("", "555", "12ab", "Sign In!"))
    ['code', 'community', 'phone', 'purpose']
    """
    errors: dict[str, list[str]] = {}
    if not isinstance(community, str) or not community.strip():
        errors["community"] = ["a community is required"]
    if not isinstance(phone, str) or national_phone(phone) is None:
        errors["phone"] = ["not a mainland mobile number"]
    if not isinstance(code, str) or not CODE.match(code):
        errors["code"] = ["a code is 4 to 8 digits"]
    if not isinstance(purpose, str) or not PURPOSE.match(purpose):
        errors["purpose"] = ["a purpose is a short lower-case identifier such as sign_in"]
    return errors


def code_delivery(delivery_id: str, community: str, phone: str, purpose: str, requested_at: datetime) -> dict:
    """The record of a code's delivery: the phone masked, the code not at all (it is a credential).

    >>> from datetime import UTC
    >>> record = code_delivery("d1", "xingqiao", "13812345678", "sign_in", datetime(2026, 11, 26, tzinfo=UTC))
    >>> record["phone"], record["status"], "code" in record
    ('138****5678', 'requested', False)
    """
    return {
        "_id": delivery_id, "community": community, "channel": "sms", "kind": "code", "purpose": purpose,
        "phone": masked_phone(phone), "status": "requested", "requested_at": requested_at,
        "sent_at": None, "failed_at": None, "provider_id": None, "provider_answer": None, "attempts": 0,
    }


def inbox_message(event: Envelope, echo: Echo, now: datetime | None = None) -> dict:
    """The stored inbox message for one echo, delivered.

    The message's id is ``<event_id>:<recipient>``: the message is the record of the event.
    """
    now = now or utcnow()
    return {
        "_id": f"{event.event_id}:{echo.recipient}", "community": event.community, "recipient": echo.recipient,
        "ticket_id": event.payload["ticket_id"], "channel": echo.channel,
        "title": echo.title, "body": echo.body,
        "source_event_id": event.event_id, "source_event_type": event.type,
        "correlation_id": event.correlation_id, "created_at": now, "read_at": None,
        "delivery": {"status": "delivered", "requested_at": event.occurred_at, "delivered_at": now},
    }


def echo_message(echo: dict, title: str, body: str, now: datetime) -> dict:
    """The inbox message of an echo (its id is the echo's: one message per (event, recipient))."""
    message = {
        "_id": echo["_id"], "community": echo["community"], "recipient": echo["recipient"],
        "ticket_id": echo.get("ticket_id"), "channel": "inbox", "title": title, "body": body,
        "source_event_id": echo["source_event_id"], "source_event_type": echo["source_event_type"],
        "correlation_id": echo.get("correlation_id"), "created_at": now, "read_at": None,
        "delivery": {"status": "delivered", "requested_at": echo["occurred_at"], "delivered_at": now},
    }
    if echo.get("broadcast_id"):
        message["broadcast_id"] = echo["broadcast_id"]
        message["grid"] = echo.get("grid")  # whose grid worker follows a notice up (the daily check-in)
    return message


# The consent (directory's CONSENT_PURPOSES) a push channel needs, and the one each kind of echo needs.
CHANNEL_CONSENTS = {"sms": "sms", "wechat": "wechat"}
AUDIENCE_CONSENTS = {"resident": "service_echoes", "broadcast": "broadcasts"}
CONSENT_WITHDRAWN = "consent withdrawn"


def consent_withdrawn(consents: dict | None, channel: str, audience: str) -> bool:
    """Whether the person withdrew the consent a send on ``channel`` needs (only a withdrawal counts: a
    purpose never asked about is no refusal). The inbox (the person's own account) and a grid worker's
    call are not sends to an address and need none.

    >>> consent_withdrawn({"sms": False}, "sms", "resident"), consent_withdrawn({"sms": False}, "wechat", "resident")
    (True, False)
    >>> consent_withdrawn({"broadcasts": False}, "wechat", "broadcast"), consent_withdrawn({}, "sms", "broadcast")
    (True, False)
    >>> consent_withdrawn({"service_echoes": False}, "inbox", "resident")
    False
    """
    if channel in ("inbox", "human") or not consents:
        return False
    needed = (CHANNEL_CONSENTS.get(channel), AUDIENCE_CONSENTS.get(audience))
    return any(purpose is not None and consents.get(purpose) is False for purpose in needed)


DIGEST_PREFIX = "dg-"


def digest_id_of(echo: dict, channel: str) -> str:
    """The id of the digest an echo held for its person's digest joins: one per (person, digest time, channel),
    the same for every echo held until then, whichever process sends it. It is also the send's idempotency key.

    >>> from datetime import UTC, datetime
    >>> echo = {"community": "xq", "recipient": "r1", "not_before": datetime(2026, 12, 6, 10, tzinfo=UTC)}
    >>> digest_id_of(echo, "sms") == digest_id_of({**echo, "_id": "another"}, "sms"), digest_id_of(echo, "sms")[:3]
    (True, 'dg-')
    """
    when = echo["not_before"].isoformat() if echo.get("not_before") else ""
    key = f"{echo['community']}|{echo['recipient']}|{when}|{channel}"
    return DIGEST_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:24]


def is_digest_id(identifier: str) -> bool:
    return identifier.startswith(DIGEST_PREFIX)

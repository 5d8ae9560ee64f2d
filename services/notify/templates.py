"""Echo texts per event type and channel, rendered by a sandboxed Jinja2 environment. No I/O.

The event texts are the table in :mod:`services.notify.domain` (``TEMPLATES``: a title and a body per
event type, Chinese). Its entries may use Jinja2 (``{{ number }}``) or the older single-brace
placeholders (``{number}``), which are read as Jinja2 variables. Each channel wraps the event's
text in its own shape (an SMS is short, a WeChat subscription message has length-limited fields, an
e-mail has a greeting and a signature, a human step is an instruction to the grid worker); a channel
may also replace an event's text with its own (``OVERRIDES``).

What reaches a template is :func:`facts`: a whitelist of the ticket's facts. A resident-facing text
therefore cannot show an internal comment, another resident's words or anyone's id; every rendered
text goes through :func:`mask_phones` last, so a phone number typed into a reason or a comment shows
as ``138****5678``.

>>> render("ticket.paused", "inbox", {"ticket_id": "T1", "number": "XQ-0042", "reason": "等待配件"})
('诉求暂缓办理', '您反映的问题（编号 XQ-0042）暂缓办理，原因：等待配件。')
>>> render("ticket.paused", "sms", {"number": "XQ-0042", "reason": "请联系 13812345678"})[1]
'您反映的问题（编号 XQ-0042）暂缓办理，原因：请联系 138****5678。'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache

from jinja2 import StrictUndefined, Undefined
from jinja2.sandbox import SandboxedEnvironment

CHANNELS: tuple[str, ...] = ("inbox", "sms", "wechat", "email", "webhook", "human")
BLANK = "—"
WECHAT_THING_CHARS = 20  # WeChat's "thing" fields hold at most 20 characters

# The facts a template may use; nothing else of an event's payload reaches it.
FACT_NAMES: tuple[str, ...] = ("number", "reason", "text", "state", "category", "service_name", "priority",
                               "master_number", "due_at",
                               # volunteers: the code the resident gives the volunteer at the door; a wish's title
                               "check_in_code", "title")

# What staff are told (a key "staff:<event type>"): the ticket's number, category and deadline, never a resident.
STAFF_TEMPLATES: dict[str, tuple[str, str]] = {
    "ticket.dispatched": ("新派单", "工单 {{ number }}（{{ category }}）已派给您，请及时签收。"),
    "sla.warned": ("工单即将超时",
                   "工单 {{ number }}（{{ category }}）的办理时限已用去 {{ threshold }}%，请抓紧办理。"),
    "sla.breached": ("工单已超时", "工单 {{ number }}（{{ category }}）已超过办理时限，请尽快处理并说明情况。"),
    # the daily health check-in (services/notify/checkins.py): residents of the worker's grid who did not answer
    "checkin.missing": ("居家隔离人员未打卡",
                        "您网格内有 {{ count }} 位居家隔离居民未完成 {{ date }} 的健康打卡，请电话或上门了解情况。"),
}
# A notice to a segment (``broadcast``): staff's own words, masked when the broadcast was accepted.
BROADCAST_TEMPLATE = ("{{ title }}", "{{ body }}")
STAFF_FACT_NAMES: tuple[str, ...] = ("number", "category", "priority", "threshold", "clock", "due_at")

# How each channel shows an event's (title, body). ``title`` and ``body`` are the event's rendered texts.
CHANNEL_WRAPPERS: dict[str, tuple[str, str]] = {
    "inbox": ("{{ title }}", "{{ body }}"),
    "sms": ("{{ title }}", "{{ body }}"),
    "wechat": ("{{ title | truncate_chars(20) }}", "{{ body | truncate_chars(20) }}"),
    "email": ("【回声】{{ title }}", "您好：\n\n{{ body }}\n\n如有疑问，请回复本邮件或致电社区。\n——{{ signature }}"),
    "webhook": ("{{ title }}", "{{ body }}"),
    "human": ("请告知居民：{{ title }}", "请电话或上门告知居民（{{ recipient_label }}）：{{ body }}"
                                   "告知后请在任务中记录完成。"),
}

# (event type, channel) -> (title, body) replacing the event's text on that channel.
OVERRIDES: dict[tuple[str, str], tuple[str, str]] = {
    ("ticket.commented", "sms"): (
        "诉求有新的回复", "关于您反映的问题（编号 {{ number }}）有新的回复，请在社区应用中查看。"),
}

_PHONE = re.compile(r"(?<!\d)(?:\+?86[\s-]?)?(1[3-9]\d)[\s-]?(\d{4})[\s-]?(\d{4})(?!\d)")
_SINGLE_BRACE = re.compile(r"(?<!\{)\{(\w+)\}(?!\})")


class _Dash(Undefined):
    """A fact the event does not carry renders as a dash, never as an error or an empty gap."""

    def __str__(self) -> str:
        return BLANK


def mask_phones(text: str) -> str:
    """Every mainland mobile number in ``text`` masked to its first three and last four digits.

    >>> mask_phones("王师傅 138-1234-5678，备用 +86 13900000001")
    '王师傅 138****5678，备用 139****0001'
    """
    return _PHONE.sub(lambda match: f"{match.group(1)}****{match.group(3)}", text)


def truncate_chars(value: object, limit: int) -> str:
    """At most ``limit`` characters, the last one an ellipsis when cut (WeChat's field limits).

    >>> truncate_chars("您反映的问题已办结，我们将回访确认是否解决", 10)
    '您反映的问题已办结…'
    """
    text = str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


@cache
def environment() -> SandboxedEnvironment:
    """The one sandboxed environment: templates cannot reach attributes or call what is not safe."""
    env = SandboxedEnvironment(autoescape=False, undefined=_Dash, keep_trailing_newline=False)
    env.filters["truncate_chars"] = truncate_chars
    env.filters["mask_phones"] = mask_phones
    return env


# A wrapper that is its text alone needs no rendering (half of the renders of an inbox echo).
_PLAIN = {"{{ title }}": "title", "{{ body }}": "body"}


@cache
def _compiled(source: str):
    return environment().from_string(_SINGLE_BRACE.sub(r"{{ \1 }}", source))


def strict_check(source: str) -> None:
    """Raise if ``source`` is not a valid template (used by tests over the whole table)."""
    SandboxedEnvironment(undefined=StrictUndefined).parse(_SINGLE_BRACE.sub(r"{{ \1 }}", source))


def facts(payload: Mapping) -> dict:
    """The whitelisted facts of a ticket event a template may show.

    A comment's text only when it is resident-visible; the short number, else the ticket id.

    >>> facts({"ticket_id": "T1", "attached_residents": ["r1"], "text": "内部", "visibility": "internal"})
    {'number': 'T1'}
    """
    values = {name: payload[name] for name in FACT_NAMES if payload.get(name) not in (None, "")}
    if payload.get("visibility") != "resident":
        values.pop("text", None)
    number = payload.get("number") or payload.get("ticket_id")
    if number:
        values["number"] = number
    return values


def staff_facts(payload: Mapping) -> dict:
    """The facts a staff echo may show: the ticket's number, category, priority and deadline.

    >>> staff_facts({"ticket_id": "T1", "category": "房屋设施", "attached_residents": ["r1"]})
    {'category': '房屋设施', 'number': 'T1'}
    """
    values = {name: payload[name] for name in STAFF_FACT_NAMES if payload.get(name) not in (None, "")}
    number = payload.get("number") or payload.get("ticket_id")
    if number:
        values["number"] = number
    return values


def render(event_type: str, channel: str, ticket_facts: Mapping, *, recipient_label: str = "",
           signature: str = "社区居委会") -> tuple[str, str]:
    """The (title, body) of an event's echo on a channel, phones masked (``staff:<type>``: a staff echo)."""
    from services.notify.domain import TEMPLATES  # the table lives with the domain; it imports us lazily

    if channel not in CHANNEL_WRAPPERS:
        raise ValueError(f"unknown channel {channel!r}")
    if event_type == "broadcast":
        title_source, body_source = BROADCAST_TEMPLATE
    elif event_type.startswith("staff:"):
        title_source, body_source = STAFF_TEMPLATES[event_type.removeprefix("staff:")]
    else:
        title_source, body_source = OVERRIDES.get((event_type, channel)) or TEMPLATES[event_type]
    context = dict(ticket_facts)
    title = _compiled(title_source).render(context)
    body = _compiled(body_source).render(context)
    wrap_title, wrap_body = CHANNEL_WRAPPERS[channel]
    wrapped = {"title": title, "body": body, "recipient_label": recipient_label or BLANK, "signature": signature}
    return tuple(mask_phones(wrapped[_PLAIN[source]] if source in _PLAIN else _compiled(source).render(wrapped))
                 for source in (wrap_title, wrap_body))


def digest_text(texts: list[tuple[str, str]]) -> tuple[str, str]:
    """One message of several echoes' (title, body): the count in the title, each echo a line of the body.

    >>> digest_text([("诉求已受理", "编号 XQ-1 已受理。"), ("诉求已办结", "编号 XQ-2 已办结。")])
    ('您有 2 条诉求进展', '1. 诉求已受理：编号 XQ-1 已受理。\\n2. 诉求已办结：编号 XQ-2 已办结。')
    """
    body = "\n".join(f"{n}. {title}：{text}" for n, (title, text) in enumerate(texts, 1))
    return f"您有 {len(texts)} 条诉求进展", mask_phones(body)

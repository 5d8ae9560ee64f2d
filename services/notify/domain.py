"""Which echo each resident gets for a ticket event, and on which channel. No I/O.

>>> echoes = compose("ticket.received", {"ticket_id": "t1", "state": "received",
...     "attached_residents": ["r1", "r2"], "service_code": "roof_leak", "priority": "normal"})
>>> [(echo.recipient, echo.channel) for echo in echoes]
[('r1', 'inbox'), ('r2', 'inbox')]
>>> echoes[0].title
'您的诉求已受理'
"""

from __future__ import annotations

from dataclasses import dataclass

TEMPLATES: dict[str, tuple[str, str]] = {
    "ticket.received": ("您的诉求已受理", "我们已收到您反映的问题（编号 {ticket_id}），将尽快安排处理。"),
    "ticket.dispatched": ("诉求已派单", "您反映的问题（编号 {ticket_id}）已交由专人办理。"),
    "ticket.accepted": ("诉求已签收", "承办人已签收您反映的问题（编号 {ticket_id}）。"),
    "ticket.started": ("诉求办理中", "您反映的问题（编号 {ticket_id}）正在办理。"),
    "ticket.paused": ("诉求暂缓办理", "您反映的问题（编号 {ticket_id}）暂缓办理，原因：{reason}。"),
    "ticket.resumed": ("诉求恢复办理", "您反映的问题（编号 {ticket_id}）已恢复办理。"),
    "ticket.resolved": ("诉求已办结", "您反映的问题（编号 {ticket_id}）已办结，我们将回访确认是否解决。"),
    "ticket.confirmed": ("感谢您的确认", "您确认问题（编号 {ticket_id}）已解决，感谢您的支持。"),
    "ticket.reopened": ("诉求重新办理", "您反映问题（编号 {ticket_id}）未解决，我们已重新办理并提高优先级。"),
    "ticket.closed": ("诉求已结束", "您反映的问题（编号 {ticket_id}）已结束办理，原因：{reason}。"),
    "ticket.attached": ("已关联到同一问题", "您反映的问题已与编号 {ticket_id} 合并办理，进展会同步告知您。"),
}


@dataclass(frozen=True)
class Echo:
    """One message to one resident about one ticket event."""

    recipient: str
    channel: str
    title: str
    body: str


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return "—"


def recipients(event_type: str, payload: dict) -> list[str]:
    """Every attached resident hears of every change; a newly attached one hears of the merge."""
    if event_type == "ticket.attached" and payload.get("resident"):
        return [payload["resident"]]
    return list(dict.fromkeys(payload.get("attached_residents") or []))


def compose(event_type: str, payload: dict) -> list[Echo]:
    """The echoes an event causes. Channel choice will use residents' preferences (directory)."""
    title, body = TEMPLATES[event_type]
    text = body.format_map(_Blank(payload))
    return [Echo(recipient, "inbox", title, text) for recipient in recipients(event_type, payload)]

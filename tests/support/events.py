"""Valid events of the catalogue, for tests."""

from __future__ import annotations

import uuid

from kernel.envelope import Envelope
from kernel.events import current_version


def ticket_received(ticket_id: str | None = None, residents=("r-1",), community: str = "xingqiao",
                    ) -> Envelope:
    ticket_id = ticket_id or uuid.uuid4().hex
    return Envelope.new("ticket.received", {
        "ticket_id": ticket_id, "state": "received", "service_code": "roof_leak", "category": "房屋设施",
        "priority": "normal", "description": "屋顶漏水", "address_string": "3号楼2单元401",
        "lat": None, "long": None, "source": "resident", "reporter": residents[0] if residents else None,
        "attached_residents": list(residents), "created_at": "2026-11-26T08:00:00+00:00",
        "number": None, "grid": None, "building": None,
    }, community=community, version=current_version("ticket.received"))

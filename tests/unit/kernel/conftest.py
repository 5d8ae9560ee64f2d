"""Valid payloads of the catalogue's event types, for the kernel's unit tests."""

import pytest


@pytest.fixture
def received_v2():
    return {
        "ticket_id": "T1", "state": "received", "service_code": "roof_leak", "category": "房屋设施",
        "priority": "normal", "description": "楼顶漏水", "address_string": "3号楼2单元401",
        "source": "resident", "reporter": "r1", "created_at": "2026-11-26T08:00:00+00:00",
        "attached_residents": ["r1"],
    }


@pytest.fixture
def received_v3(received_v2):
    return {**received_v2, "number": "XQ-20261126-0001", "grid": "g3", "building": "b09"}


@pytest.fixture
def received_v1(received_v2):
    return {key: value for key, value in received_v2.items() if key != "attached_residents"}


@pytest.fixture
def transition():
    return {"ticket_id": "T1", "state": "paused", "attached_residents": ["r1", "r2"], "reason": "等待配件"}


@pytest.fixture
def silent():
    return {
        "ticket_id": "T1", "echo_id": "ev1:r1", "recipient": "r1", "source_event_id": "ev1",
        "source_event_type": "ticket.received", "occurred_at": "2026-11-26T08:00:00+00:00",
        "proof_due_at": "2026-11-26T08:15:00+00:00", "status": "delivering", "channel": "sms",
    }

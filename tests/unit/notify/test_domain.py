"""Which echoes a ticket event causes (notify's domain, no I/O)."""

import pytest

from kernel.events import RESIDENT_VISIBLE_TICKET_EVENTS
from services.notify.domain import TEMPLATES, Echo, compose, recipients

TEMPLATED = sorted(TEMPLATES)


def payload(**extra):
    # visibility: what ticket.commented carries (only resident-visible comments are echoed)
    return {"ticket_id": "T-0001", "state": "received", "attached_residents": ["r1", "r2"], "visibility": "resident",
            **extra}


def test_every_resident_visible_event_has_a_template():
    assert set(RESIDENT_VISIBLE_TICKET_EVENTS) <= set(TEMPLATES)


@pytest.mark.parametrize("event_type", sorted(set(TEMPLATED) - {"ticket.attached"}))
def test_each_type_echoes_once_to_each_attached_resident(event_type):
    echoes = compose(event_type, payload(reason="等待配件"))
    title, _ = TEMPLATES[event_type]
    assert [echo.recipient for echo in echoes] == ["r1", "r2"]
    assert all(isinstance(echo, Echo) for echo in echoes)
    assert all(echo.channel == "inbox" and echo.title == title for echo in echoes)
    assert all("T-0001" in echo.body for echo in echoes)
    assert echoes[0].body == echoes[1].body


@pytest.mark.parametrize("event_type", TEMPLATED)
def test_residents_are_deduplicated_in_order(event_type):
    echoes = compose(event_type, payload(attached_residents=["r2", "r1", "r2", "r3", "r1"]))
    assert [echo.recipient for echo in echoes] == ["r2", "r1", "r3"]


@pytest.mark.parametrize("event_type", TEMPLATED)
@pytest.mark.parametrize("attached", [[], None])
def test_nobody_attached_means_no_echoes(event_type, attached):
    assert compose(event_type, payload(attached_residents=attached)) == []


def test_attached_echoes_only_the_newly_attached_resident():
    echoes = compose("ticket.attached", payload(resident="r9", attached_residents=["r1", "r2", "r9"]))
    assert [echo.recipient for echo in echoes] == ["r9"]
    assert echoes[0].title == "已关联到同一问题"
    assert "T-0001" in echoes[0].body


def test_attached_without_a_resident_falls_back_to_the_attached_residents():
    assert recipients("ticket.attached", payload()) == ["r1", "r2"]


def test_resident_key_matters_only_for_attached():
    assert recipients("ticket.paused", payload(resident="r9")) == ["r1", "r2"]


@pytest.mark.parametrize("event_type", ["ticket.paused", "ticket.closed"])
def test_the_reason_is_rendered(event_type):
    (echo, _) = compose(event_type, payload(reason="等待配件"))
    assert "原因：等待配件。" in echo.body


@pytest.mark.parametrize("event_type", ["ticket.paused", "ticket.closed"])
def test_a_missing_reason_renders_a_dash(event_type):
    (echo, _) = compose(event_type, payload())
    assert "原因：—。" in echo.body
    assert "{" not in echo.body


def test_a_missing_ticket_id_renders_a_dash():
    (echo, _) = compose("ticket.received", {"attached_residents": ["r1", "r2"]})
    assert echo.body == "我们已收到您反映的问题（编号 —），将尽快安排处理。"


def test_received_body_is_rendered_exactly():
    (echo, _) = compose("ticket.received", payload())
    assert (echo.title, echo.body) == ("您的诉求已受理", "我们已收到您反映的问题（编号 T-0001），将尽快安排处理。")


@pytest.mark.parametrize("event_type", ["ticket.bounced", "ticket.escalated", "echo.failed", "nope"])
def test_an_event_type_without_a_template_raises_key_error(event_type):
    with pytest.raises(KeyError):
        compose(event_type, payload())


def test_compose_does_not_change_the_payload():
    given = payload(attached_residents=["r1", "r1"])
    compose("ticket.received", given)
    assert given == payload(attached_residents=["r1", "r1"])

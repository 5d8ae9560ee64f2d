"""Echo texts: sandboxed Jinja2, per event type and channel, Chinese, only whitelisted facts, phones masked."""

import pytest
from jinja2.exceptions import SecurityError

from kernel.events import RESIDENT_VISIBLE_TICKET_EVENTS
from services.notify import templates
from services.notify.domain import TEMPLATES, compose
from services.notify.templates import CHANNELS, OVERRIDES, facts, mask_phones, render, strict_check

PAYLOAD = {"ticket_id": "6f1c0a", "number": "XQ-0042", "state": "paused", "attached_residents": ["r1", "r2"],
           "reason": "等待配件", "priority": "normal", "description": "隔壁王阿姨家 13812345678 漏水",
           "address_string": "3号楼2单元401", "reporter": "r1", "visibility": "resident", "text": "明天上门"}


@pytest.mark.parametrize("event_type", sorted(TEMPLATES))
@pytest.mark.parametrize("channel", CHANNELS)
def test_every_event_renders_on_every_channel_in_chinese_with_its_number(event_type, channel):
    title, body = render(event_type, channel, facts(PAYLOAD), recipient_label="138****5678")
    assert title and body and "{" not in title + body
    assert any("\u4e00" <= char <= "\u9fff" for char in body)
    if (event_type, channel) not in OVERRIDES or "number" in OVERRIDES[(event_type, channel)][1]:
        assert "XQ-0042" in body or channel == "wechat"  # WeChat's fields are cut at 20 characters


@pytest.mark.parametrize("source", [text for pair in [*TEMPLATES.values(), *OVERRIDES.values()] for text in pair])
def test_every_template_in_the_tables_parses(source):
    strict_check(source)


def test_resident_visible_events_all_have_texts():
    assert set(RESIDENT_VISIBLE_TICKET_EVENTS) <= set(TEMPLATES)


def test_only_whitelisted_facts_reach_a_template():
    known = facts(PAYLOAD)
    assert set(known) <= set(templates.FACT_NAMES)
    assert "description" not in known and "address_string" not in known and "attached_residents" not in known


def test_an_internal_comment_never_reaches_the_text():
    internal = {**PAYLOAD, "visibility": "internal", "text": "内部：居民难缠"}
    assert "text" not in facts(internal)
    assert compose("ticket.commented", internal) == []  # not echoed at all
    assert "难缠" not in render("ticket.commented", "inbox", facts(internal))[1]


def test_a_phone_in_a_reason_is_masked_on_every_channel():
    payload = {**PAYLOAD, "reason": "请联系维修师傅 139-0000-1234 或 +86 13712345678"}
    for channel in CHANNELS:
        _, body = render("ticket.paused", channel, facts(payload))
        assert "1234" not in body.replace("****1234", "") and "13712345678" not in body


def test_a_template_cannot_reach_into_python():
    environment = templates.environment()
    with pytest.raises(SecurityError):
        environment.from_string("{{ ''.__class__.__mro__[1].__subclasses__() }}").render()


def test_a_missing_fact_renders_a_dash_not_an_error():
    assert render("ticket.paused", "inbox", {"number": "XQ-1"})[1] == "您反映的问题（编号 XQ-1）暂缓办理，原因：—。"


def test_wechat_fields_fit_in_twenty_characters():
    title, body = render("ticket.resolved", "wechat", facts(PAYLOAD))
    assert len(title) <= 20 and len(body) <= 20 and body.endswith("…")


def test_the_human_step_tells_the_worker_whom_with_the_phone_masked():
    _, body = render("ticket.resolved", "human", facts(PAYLOAD), recipient_label=mask_phones("13812345678"))
    assert "138****5678" in body and "13812345678" not in body and "记录完成" in body


def test_email_has_a_subject_greeting_and_signature():
    title, body = render("ticket.resolved", "email", facts(PAYLOAD), signature="兴乔社区居委会")
    assert title == "【回声】诉求已办结" and body.startswith("您好：") and body.endswith("——兴乔社区居委会")


def test_a_channel_override_replaces_the_event_text():
    _, body = render("ticket.commented", "sms", facts(PAYLOAD))
    assert "明天上门" not in body and "请在社区应用中查看" in body


def test_an_unknown_channel_is_an_error():
    with pytest.raises(ValueError, match="unknown channel"):
        render("ticket.resolved", "fax", {})


TICKET_STAFF_TEMPLATES = sorted(set(templates.STAFF_TEMPLATES) - {"checkin.missing"})  # that one is no ticket's


@pytest.mark.parametrize("channel", CHANNELS)
def test_the_missing_checkins_text_says_how_many_and_which_day(channel):
    title, body = render("staff:checkin.missing", channel, {"count": 3, "date": "2026-12-06"})
    assert title and "{" not in body
    assert ("3 位" in body and "2026-12-06" in body) or channel == "wechat"


@pytest.mark.parametrize("event_type", TICKET_STAFF_TEMPLATES)
@pytest.mark.parametrize("channel", CHANNELS)
def test_staff_texts_render_with_the_ticket_but_no_resident(event_type, channel):
    payload = {**PAYLOAD, "category": "房屋设施", "threshold": 75, "assignee": {"kind": "worker", "id": "gw-1"}}
    known = templates.staff_facts(payload)
    assert set(known) <= set(templates.STAFF_FACT_NAMES) and "attached_residents" not in known
    title, body = render(f"staff:{event_type}", channel, known)
    assert title and body and "{" not in body and "r1" not in body
    assert "XQ-0042" in body or channel == "wechat"

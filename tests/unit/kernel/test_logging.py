"""Masking personal data and the JSON log line."""

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
import structlog

from kernel.logging import configure, get_logger, mask_event, mask_text, mask_value

NOISY = ("kombu", "amqp", "pymongo", "nameko", "werkzeug")


@pytest.mark.parametrize("text,masked", [
    ("13812345678", "138****5678"),
    ("请联系13812345678处理", "请联系138****5678处理"),
    ("电话：13812345678，地址3号楼", "电话：138****5678，地址3号楼"),
    ("+86 13812345678", "+86 138****5678"),
    ("tel:19912345678.", "tel:199****5678."),
    ("13812345678和15987654321", "138****5678和159****4321"),
])
def test_mask_text_masks_mobile_numbers(text, masked):
    assert mask_text(text) == masked


@pytest.mark.parametrize("text", [
    pytest.param("+8613812345678", id="plus86-no-space"),
    pytest.param("拨打8613812345678", id="86-no-plus"),
    pytest.param("008613812345678", id="0086"),
    pytest.param("138-1234-5678", id="dashes"),
    pytest.param("138 1234 5678", id="spaces"),
])
def test_mask_text_masks_other_common_phone_formats(text):
    masked = mask_text(text)
    assert "1234" not in masked  # the middle four digits are hidden
    assert masked.endswith("5678")


@pytest.mark.parametrize("text", [
    "138123456789",            # 12 digits
    "1381234567",              # 10 digits
    "订单号2026112612345678",  # an order id that contains a mobile-like run
    "12812345678",             # 12x is not a mobile prefix
    "编号T20261126-0001",
])
def test_mask_text_leaves_other_numbers_alone(text):
    assert mask_text(text) == text


@pytest.mark.parametrize("key,value,masked", [
    ("address", "3-2-401", "3-2***"),
    ("address_string", "兴乔小区3号楼2单元401", "兴乔小区***"),
    ("address_detail", "ab", "a***"),
    ("home_address", "x", "x***"),
    ("resident_name", "张三", "张*"),
    ("full_name", "欧阳娜娜", "欧***"),
    ("real_name", "李", "李*"),
    ("phone", "13812345678", "138****5678"),
    ("mobile", "010-12345678", "010****5678"),
    ("telephone", "+8613812345678", "+86138****5678"),
])
def test_mask_value_masks_personal_keys(key, value, masked):
    assert mask_value(key, value) == masked


def test_mask_value_leaves_a_full_address_unreadable():
    masked = mask_value("address_string", "兴乔小区3号楼2单元401")
    assert "401" not in masked and "3号楼" not in masked


@pytest.mark.parametrize("key,value", [
    ("ticket_id", "T-2026-0001"), ("state", "received"), ("count", 3), ("ok", True), ("nothing", None),
    ("name", "roof_leak"),
])
def test_mask_value_keeps_non_personal_values(key, value):
    assert mask_value(key, value) == value


@pytest.mark.parametrize("identifier", [
    pytest.param("388911f8cf654f13812348950f40792e", id="hex-ticket-id"),
    pytest.param("T13812345678", id="letter-before"),
    pytest.param("13812345678a", id="letter-after"),
    pytest.param("evt_13912345678x", id="inside-a-name"),
    pytest.param("0a13812345678ff", id="hex-around"),
])
def test_digit_runs_inside_identifiers_are_not_masked(identifier):
    assert mask_text(identifier) == identifier
    assert mask_text(f"ticket {identifier} escalated") == f"ticket {identifier} escalated"


def test_ids_and_phones_in_one_line_mask_only_the_phones():
    ticket = "388911f8cf654f13812348950f40792e"
    line = f"ticket {ticket} filed by 13812345678 (+86 139-1234-5678), call back on 15987654321."
    assert mask_text(line) == (
        f"ticket {ticket} filed by 138****5678 (+86 139****5678), call back on 159****4321."
    )


def test_phones_inside_json_text_are_masked_and_ids_kept():
    ticket = "388911f8cf654f13812348950f40792e"
    text = json.dumps({"id": ticket, "contact": {"phone": "13812345678", "alt": "+8613912345678"},
                       "note": "回拨15987654321"}, ensure_ascii=False)
    masked = json.loads(mask_text(text))  # still valid JSON
    assert masked == {"id": ticket, "contact": {"phone": "138****5678", "alt": "+86139****5678"},
                      "note": "回拨159****4321"}


def test_a_logged_event_keeps_its_ids_readable(capsys, restore_logging):
    configure("tickets")
    ticket = "388911f8cf654f13812348950f40792e"
    get_logger("test").info("ticket.created", ticket_id=ticket, payload={"reporter": "13812345678", "ref": ticket})
    record = json.loads(_lines(capsys)[0])
    assert record["ticket_id"] == ticket and record["payload"] == {"reporter": "138****5678", "ref": ticket}


def test_mask_value_masks_phones_inside_any_text():
    assert mask_value("description", "楼上13812345678漏水") == "楼上138****5678漏水"


def test_mask_value_recurses_into_dicts_and_lists():
    value = {
        "resident": {"real_name": "王五", "phone": "13912345678", "id": "r1"},
        "address": ["3-2-401", "5-1-101"],
        "notes": ["call 13812345678", {"full_name": "赵六"}],
        "tuple": ("13712345678",),
    }
    assert mask_value("payload", value) == {
        "resident": {"real_name": "王*", "phone": "139****5678", "id": "r1"},
        "address": ["3-2***", "5-1***"],
        "notes": ["call 138****5678", {"full_name": "赵*"}],
        "tuple": ["137****5678"],
    }


def test_mask_event_masks_and_keeps_every_key():
    event = {"event": "ticket created", "ticket_id": "T1", "level": "info", "service": "tickets",
             "phone": "13812345678", "payload": {"address": "3-2-401"}, "attempt": 2}
    masked = mask_event(None, "info", event)
    assert masked == {**event, "phone": "138****5678", "payload": {"address": "3-2***"}}
    assert event["phone"] == "13812345678"  # the input is not changed in place


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    noisy = {name: logging.getLogger(name).level for name in NOISY}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, noisy_level in noisy.items():
        logging.getLogger(name).setLevel(noisy_level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def _lines(capsys):
    return [line for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_a_structlog_call_writes_one_masked_json_line(capsys, restore_logging):
    configure("notify")
    get_logger("test").info("echo sent", phone="13812345678", note="回拨13912345678", ticket_id="T1")
    lines = _lines(capsys)
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["service"] == "notify"
    assert record["level"] == "info"
    assert record["event"] == "echo sent"
    assert record["ticket_id"] == "T1"
    assert record["phone"] == "138****5678"
    assert record["note"] == "回拨139****5678"
    assert "13812345678" not in lines[0] and "13912345678" not in lines[0]
    stamp = datetime.fromisoformat(record["timestamp"])
    assert stamp.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - stamp) < timedelta(seconds=30)


def test_a_standard_library_log_call_is_masked_json_too(capsys, restore_logging):
    configure("tickets")
    logging.getLogger("huisheng.test").warning("resident %s called", "13812345678")
    lines = _lines(capsys)
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert (record["service"], record["level"]) == ("tickets", "warning")
    assert record["event"] == "resident 138****5678 called"
    assert "timestamp" in record


def test_chinese_text_is_written_unescaped(capsys, restore_logging):
    configure("notify")
    get_logger("test").info("诉求已受理")
    assert "诉求已受理" in capsys.readouterr().out


def test_records_below_the_level_are_dropped(capsys, restore_logging):
    configure("notify", level="WARNING")
    get_logger("test").info("hidden")
    logging.getLogger("huisheng.test").info("hidden too")
    get_logger("test").warning("shown")
    lines = _lines(capsys)
    assert [json.loads(line)["event"] for line in lines] == ["shown"]


def test_noisy_libraries_are_held_at_warning(restore_logging):
    configure("notify", level="DEBUG")
    assert logging.getLogger().level == logging.DEBUG
    for name in NOISY:
        assert logging.getLogger(name).level == logging.WARNING


def test_configure_replaces_the_root_handlers(restore_logging):
    configure("notify")
    configure("notify")
    assert len(logging.getLogger().handlers) == 1


def test_console_format_is_not_json_but_still_masked(capsys, restore_logging):
    configure("notify", fmt="console")
    get_logger("test").info("echo sent", phone="13812345678")
    out = capsys.readouterr().out
    assert "echo sent" in out and "138****5678" in out and "13812345678" not in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out.splitlines()[0])

"""SMS delivery receipts: signature, freshness, Aliyun's SmsReport shape (no I/O)."""

import json

import pytest

from kernel.errors import ValidationFailed
from services.notify.channels import signature_of
from services.notify.receipts import parse, verified


def test_a_signed_recent_push_is_verified_and_anything_else_is_not():
    raw = "[]"
    good = signature_of("secret", "1000", raw.encode())
    assert verified("secret", "1000", good, raw, now=1000)
    assert not verified("secret", "1000", good, raw + " ", now=1000)  # the body changed
    assert not verified("other", "1000", good, raw, now=1000)
    assert not verified("secret", "1000", good, raw, now=1301)  # too old
    assert not verified("secret", None, good, raw, now=1000) and not verified("secret", "x", good, raw, now=1000)


def test_only_our_receipts_are_read_and_times_are_beijing_time():
    raw = json.dumps([
        {"out_id": "e1:r1:sms", "success": False, "err_code": "MOBILE_NOT_ON_SERVICE", "err_msg": "停机",
         "report_time": "2026-12-06 08:00:00"},
        {"out_id": "login-code", "success": True, "report_time": "2026-12-06 08:00:00"},
        {"out_id": "e2:r1:sms", "success": True, "report_time": "not a time"},
        "junk",
    ])
    [receipt] = parse(raw)
    assert (receipt.echo_id, receipt.delivered, receipt.at.hour) == ("e1:r1", False, 0)
    assert receipt.answer == {"code": "MOBILE_NOT_ON_SERVICE", "message": "停机"}


@pytest.mark.parametrize("raw", ["not json", '{"out_id": "x"}', json.dumps([{}] * 1001)])
def test_a_malformed_push_is_refused(raw):
    with pytest.raises(ValidationFailed):
        parse(raw)

"""The SMS adapter without a network: signing, error mapping, retries; the code request rules."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from werkzeug.test import Client

from services.notify.domain import code_delivery, code_request_errors, masked_phone, national_phone
from services.notify.sms import (
    AliyunSms,
    SmsAdapter,
    SmsError,
    SmsRejected,
    SmsRetryable,
    _error,
    send_with_retry,
    sign,
)
from standins.sms import SmsStandin

NOW = datetime(2026, 11, 26, 8, 0, 0, tzinfo=UTC)


def adapter(secret="s3cret", nonce="n-1"):
    return AliyunSms("http://sms.invalid/", "LTAI-test", secret, "兴乔社区", clock=lambda: NOW, nonce=lambda: nonce)


def test_aliyun_documented_signature_vector():
    params = {"AccessKeyId": "testId", "Action": "SendSms", "Format": "XML", "OutId": "123",
              "PhoneNumbers": "15300000001", "RegionId": "cn-hangzhou", "SignName": "阿里云短信测试专用",
              "SignatureMethod": "HMAC-SHA1", "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
              "SignatureVersion": "1.0", "TemplateCode": "SMS_71390007", "TemplateParam": '{"customer":"test"}',
              "Timestamp": "2017-07-12T02:42:19Z", "Version": "2017-05-25"}
    assert sign("GET", params, "testSecret") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="
    assert sign("GET", params, "otherSecret") != "zJDF+Lrzhj/ThnlvIToysFRq6t4="


def test_signed_params_carry_the_protocol_and_the_idempotency_key():
    params = adapter().signed_params("13812345678", "SMS_HUISHENG_LOGIN", {"code": "123456"}, "key-1")
    assert params["Action"] == "SendSms" and params["Version"] == "2017-05-25"
    assert params["SignatureMethod"] == "HMAC-SHA1" and params["SignatureVersion"] == "1.0"
    assert params["Timestamp"] == "2026-11-26T08:00:00Z" and params["SignatureNonce"] == "n-1"
    assert params["OutId"] == "key-1" and json.loads(params["TemplateParam"]) == {"code": "123456"}
    assert params["Signature"] == sign("POST", params, "s3cret")


def test_the_stand_in_accepts_what_the_adapter_signs(tmp_path):
    """Two independent implementations of Aliyun's signature agree (no network: werkzeug's client)."""
    standin = SmsStandin(journal=tmp_path / "j.jsonl", accounts={"LTAI-test": "s3cret"}, clock=NOW.timestamp)
    good = adapter().signed_params("13812345678", "SMS_HUISHENG_LOGIN", {"code": "123456"}, "key-1")
    answer = Client(standin).post("/", data=good).get_json()
    assert answer["Code"] == "OK"
    bad = adapter(secret="wrong", nonce="n-2").signed_params("13812345678", "SMS_HUISHENG_LOGIN",
                                                             {"code": "1"}, "key-2")
    assert Client(standin).post("/", data=bad).get_json()["Code"] == "SignatureDoesNotMatch"


@pytest.mark.parametrize(("code", "status", "retryable"), [
    ("isv.BUSINESS_LIMIT_CONTROL", 200, True),
    ("ServiceUnavailable", 503, True),
    ("InternalError", 500, True),
    ("SignatureNonceUsed", 400, True),
    ("http_502", 502, True),
    ("SignatureDoesNotMatch", 400, False),
    ("InvalidAccessKeyId.NotFound", 404, False),
    ("isv.MOBILE_NUMBER_ILLEGAL", 200, False),
    ("isv.TEMPLATE_MISSING_PARAMETERS", 200, False),
    ("InvalidTimeStamp.Expired", 400, False),
])
def test_provider_errors_map_to_retryable_or_not(code, status, retryable):
    error = _error(code, "message", status)
    assert isinstance(error, SmsRetryable if retryable else SmsRejected)
    assert error.to_dict() == {"code": code, "message": "message", "retryable": retryable}


class Scripted(SmsAdapter):
    """Answers from a script: an exception to raise or a provider id to return, one per call."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.keys = []

    def send(self, phone, template_code, params, idempotency_key):
        self.keys.append(idempotency_key)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_a_transient_failure_is_retried_under_the_same_key():
    sms = Scripted(SmsRetryable("timeout"), "biz-1")
    assert send_with_retry(sms, "13812345678", "T", {"code": "1"}, "k", budget_seconds=4,
                           attempt_seconds=1) == ("biz-1", 2)
    assert sms.keys == ["k", "k"]


def test_a_rejection_is_not_retried():
    sms = Scripted(SmsRejected("SignatureDoesNotMatch"), "never")
    with pytest.raises(SmsError) as caught:
        send_with_retry(sms, "13812345678", "T", {}, "k", budget_seconds=4, attempt_seconds=1)
    assert caught.value.code == "SignatureDoesNotMatch" and caught.value.attempts == 1


def test_a_rate_limit_is_not_retried_at_once():
    sms = Scripted(SmsRetryable("isv.BUSINESS_LIMIT_CONTROL"), "never")
    with pytest.raises(SmsRetryable):
        send_with_retry(sms, "13812345678", "T", {}, "k", budget_seconds=4, attempt_seconds=1)
    assert len(sms.keys) == 1


def test_no_retry_beyond_the_budget():
    ticks = iter([0.0, 3.5])  # the first attempt used 3.5 of a 4 second budget
    sms = Scripted(SmsRetryable("timeout"), "biz")
    with pytest.raises(SmsRetryable):
        send_with_retry(sms, "13812345678", "T", {}, "k", budget_seconds=4, attempt_seconds=1,
                        clock=lambda: next(ticks))
    assert len(sms.keys) == 1


def test_phone_rules():
    assert national_phone("+8613812345678") == national_phone("138 1234 5678") == "13812345678"
    assert national_phone("12812345678") is None and national_phone(None) is None
    assert masked_phone("13812345678") == "138****5678"


def test_code_request_errors_never_repeat_the_values():
    errors = code_request_errors("xingqiao", "13812345678x", "98765a", "sign_in")
    assert set(errors) == {"phone", "code"}
    assert "98765a" not in json.dumps(errors) and "1381234" not in json.dumps(errors)
    too_long = code_request_errors("xingqiao", "13812345678", "123456789", "sign_in")
    assert too_long == {"code": ["a code is 4 to 8 digits"]}


def test_a_code_delivery_record_has_no_code_and_a_masked_phone():
    record = code_delivery("d-1", "xingqiao", "13812345678", "sign_in", NOW)
    assert record["phone"] == "138****5678"
    assert "13812345678" not in json.dumps(record, default=str)
    assert record["status"] == "requested" and record["channel"] == "sms"

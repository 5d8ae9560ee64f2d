"""The SMS stand-in's checks and answers, through werkzeug's test client (no network)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from werkzeug.test import Client

from standins.sms import SmsStandin, percent_encode, signature

NOW = datetime(2026, 11, 26, 8, 0, 0, tzinfo=UTC)
KEY_ID, SECRET = "LTAI-test", "test-secret"


class Clock:
    def __init__(self, moment: datetime = NOW):
        self.now = moment.timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def slept():
    return []


@pytest.fixture
def standin(tmp_path, clock, slept):
    return SmsStandin(journal=tmp_path / "sms.jsonl", accounts={KEY_ID: SECRET}, clock=clock, sleep=slept.append)


@pytest.fixture
def client(standin):
    return Client(standin)


_nonces = iter(range(10 ** 9))


def params(phone="13812345678", code="123456", out_id=None, secret=SECRET, method="POST", **overrides):
    request = {
        "AccessKeyId": KEY_ID, "Action": "SendSms", "Format": "JSON", "Version": "2017-05-25",
        "SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0", "SignatureNonce": f"nonce-{next(_nonces)}",
        "Timestamp": NOW.strftime("%Y-%m-%dT%H:%M:%SZ"), "PhoneNumbers": phone, "SignName": "兴乔社区",
        "TemplateCode": "SMS_HUISHENG_LOGIN", "TemplateParam": json.dumps({"code": code}),
    }
    if out_id:
        request["OutId"] = out_id
    request.update(overrides)
    request = {k: v for k, v in request.items() if v is not None}
    request["Signature"] = signature(method, request, secret)
    return request


def send(client, request, method="POST"):
    response = client.post("/", data=request) if method == "POST" else client.get("/", query_string=request)
    return response.status_code, response.get_json()


def test_aliyun_documented_signature_vector():
    documented = {
        "AccessKeyId": "testId", "Action": "SendSms", "Format": "XML", "OutId": "123",
        "PhoneNumbers": "15300000001", "RegionId": "cn-hangzhou", "SignName": "阿里云短信测试专用",
        "SignatureMethod": "HMAC-SHA1", "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
        "SignatureVersion": "1.0", "TemplateCode": "SMS_71390007", "TemplateParam": '{"customer":"test"}',
        "Timestamp": "2017-07-12T02:42:19Z", "Version": "2017-05-25",
    }
    assert signature("GET", documented, "testSecret") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="
    # The method is part of what is signed, and Signature itself never is.
    assert signature("POST", documented, "testSecret") != "zJDF+Lrzhj/ThnlvIToysFRq6t4="
    assert signature("GET", {**documented, "Signature": "x"}, "testSecret") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="


def test_percent_encoding_is_aliyuns():
    assert percent_encode("a b") == "a%20b"
    assert percent_encode("*") == "%2A"
    assert percent_encode("~-_.") == "~-_."
    assert percent_encode("{\"") == "%7B%22"


def test_a_good_request_is_accepted_and_journalled(client, standin):
    status, body = send(client, params(out_id="o-1"))
    assert status == 200
    assert body["Code"] == "OK" and body["Message"] == "OK"
    assert body["BizId"].endswith("^0") and body["RequestId"]
    [message] = standin.messages("13812345678")
    assert message["template_param"] == {"code": "123456"}
    assert message["biz_id"] == body["BizId"] and message["out_id"] == "o-1"
    lines = standin.journal.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["biz_id"] for line in lines] == [body["BizId"]]


def test_a_get_request_is_signed_with_get(client):
    status, body = send(client, params(method="GET"), method="GET")
    assert (status, body["Code"]) == (200, "OK")


def test_xml_is_the_default_format(client):
    request = params(Format=None)
    response = client.post("/", data=request)
    assert response.status_code == 200
    assert response.content_type.startswith("text/xml")
    assert b"<SendSmsResponse>" in response.data and b"<Code>OK</Code>" in response.data


def test_an_unknown_access_key_is_404(client):
    status, body = send(client, params(AccessKeyId="LTAI-nobody"))
    assert (status, body["Code"]) == (404, "InvalidAccessKeyId.NotFound")


def test_a_wrong_secret_does_not_match(client, standin):
    status, body = send(client, params(secret="not-the-secret"))
    assert (status, body["Code"]) == (400, "SignatureDoesNotMatch")
    assert standin.messages() == []


def test_a_tampered_parameter_does_not_match(client, standin):
    tampered = {**params(), "TemplateParam": json.dumps({"code": "999999"})}
    status, body = send(client, tampered)
    assert (status, body["Code"]) == (400, "SignatureDoesNotMatch")
    assert standin.messages() == []


def test_a_replayed_nonce_is_refused(client):
    request = params(phone="13812345670")
    assert send(client, request)[0] == 200
    status, body = send(client, request)
    assert (status, body["Code"]) == (400, "SignatureNonceUsed")


def test_a_nonce_is_forgotten_after_15_minutes(client, clock):
    assert send(client, params(phone="13812345671", SignatureNonce="fixed-nonce"))[0] == 200
    clock.now += 16 * 60
    later = datetime.fromtimestamp(clock.now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    status, body = send(client, params(phone="13812345671", SignatureNonce="fixed-nonce", Timestamp=later))
    assert (status, body["Code"]) == (200, "OK")


def test_an_old_or_future_timestamp_is_expired(client):
    old = params(Timestamp=datetime(2026, 11, 26, 7, 40, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    status, body = send(client, old)
    assert (status, body["Code"]) == (400, "InvalidTimeStamp.Expired")
    future = params(Timestamp=datetime(2026, 11, 26, 8, 20, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert send(client, future)[1]["Code"] == "InvalidTimeStamp.Expired"
    within = params(Timestamp=datetime(2026, 11, 26, 8, 10, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert send(client, within)[1]["Code"] == "OK"


def test_a_malformed_timestamp(client):
    assert send(client, params(Timestamp="yesterday"))[1]["Code"] == "InvalidTimeStamp.Format"


@pytest.mark.parametrize("missing", ["AccessKeyId", "SignatureNonce", "Timestamp", "PhoneNumbers"])
def test_a_missing_parameter_is_named(client, missing):
    status, body = send(client, params(**{missing: None}))
    assert (status, body["Code"]) == (400, f"Missing{missing}")


def test_an_unknown_action_is_404(client):
    status, body = send(client, params(Action="SendBatchSmsToMars"))
    assert (status, body["Code"]) == (404, "InvalidAction.NotFound")


@pytest.mark.parametrize("phone", ["12345", "23812345678", "1381234567x", "138123456789", "+1 555 0100",
                                   "13812345678,999"])
def test_an_illegal_number_is_a_business_error_with_http_200(client, phone):
    status, body = send(client, params(phone=phone))
    assert (status, body["Code"]) == (200, "isv.MOBILE_NUMBER_ILLEGAL")


def test_a_country_code_prefix_is_accepted_and_kept_national(client, standin):
    assert send(client, params(phone="+8613812345672"))[1]["Code"] == "OK"
    assert [m["phone"] for m in standin.messages("13812345672")] == ["13812345672"]


def test_a_template_without_its_parameters(client):
    status, body = send(client, params(TemplateParam=json.dumps({"customer": "x"})))
    assert (status, body["Code"]) == (200, "isv.TEMPLATE_MISSING_PARAMETERS")
    assert send(client, params(TemplateParam=None))[1]["Code"] == "isv.TEMPLATE_MISSING_PARAMETERS"


def test_an_unknown_template_and_bad_json(client):
    assert send(client, params(TemplateCode="SMS_NOPE"))[1]["Code"] == "isv.SMS_TEMPLATE_ILLEGAL"
    assert send(client, params(TemplateParam="{not json"))[1]["Code"] == "isv.INVALID_JSON_PARAM"
    assert send(client, params(TemplateParam='{"code": 123456}'))[1]["Code"] == "isv.INVALID_JSON_PARAM"


def test_one_message_a_minute_per_phone(client, clock, standin):
    assert send(client, params(phone="13812345673"))[1]["Code"] == "OK"
    status, body = send(client, params(phone="13812345673"))
    assert (status, body["Code"]) == (200, "isv.BUSINESS_LIMIT_CONTROL")
    assert send(client, params(phone="13812345674"))[1]["Code"] == "OK"  # another phone is not limited
    clock.now += 60
    assert send(client, params(phone="13812345673"))[1]["Code"] == "OK"
    assert len(standin.messages("13812345673")) == 2


def test_the_rate_is_configurable(tmp_path, clock):
    client = Client(SmsStandin(journal=tmp_path / "j.jsonl", accounts={KEY_ID: SECRET}, clock=clock,
                               rate_per_minute=3))
    codes = [send(client, params(phone="13812345675"))[1]["Code"] for _ in range(4)]
    assert codes == ["OK", "OK", "OK", "isv.BUSINESS_LIMIT_CONTROL"]


def test_the_same_out_id_is_accepted_once(client, standin):
    first = send(client, params(phone="13812345676", out_id="send-1"))[1]
    again = send(client, params(phone="13812345676", out_id="send-1"))[1]  # a new nonce: a retry, not a replay
    assert first["Code"] == again["Code"] == "OK"
    assert again["BizId"] == first["BizId"] and again["RequestId"] != first["RequestId"]
    assert len(standin.messages("13812345676")) == 1


def test_out_ids_survive_a_restart(tmp_path, clock):
    journal = tmp_path / "j.jsonl"
    first = send(Client(SmsStandin(journal=journal, accounts={KEY_ID: SECRET}, clock=clock)),
                 params(phone="13812345677", out_id="send-2"))[1]
    restarted = SmsStandin(journal=journal, accounts={KEY_ID: SECRET}, clock=clock)
    again = send(Client(restarted), params(phone="13812345677", out_id="send-2"))[1]
    assert again["BizId"] == first["BizId"]
    assert len(restarted.messages("13812345677")) == 1


def test_injected_failures_fail_the_next_n_sends_then_stop(client, standin):
    response = client.post("/_standin/faults", json={"fail": 2, "code": "ServiceUnavailable"})
    assert response.status_code == 200 and response.get_json()["fail"] == 2
    assert send(client, params(phone="13812345678", out_id="f-1"))[0] == 503
    assert send(client, params(phone="13812345678", out_id="f-1"))[1]["Code"] == "ServiceUnavailable"
    assert send(client, params(phone="13812345678", out_id="f-1"))[1]["Code"] == "OK"
    assert len(standin.messages("13812345678")) == 1


def test_an_injected_failure_still_checks_the_signature_first(client):
    client.post("/_standin/faults", json={"fail": 1, "code": "isv.BUSINESS_LIMIT_CONTROL"})
    assert send(client, params(secret="wrong"))[1]["Code"] == "SignatureDoesNotMatch"
    assert send(client, params())[1]["Code"] == "isv.BUSINESS_LIMIT_CONTROL"


def test_delay_faults_delay_the_next_answers_and_can_be_cleared(client, slept):
    client.post("/_standin/faults", json={"delay_seconds": 1.5, "count": 1})
    send(client, params(phone="13812345679"))
    send(client, params(phone="13812345680"))
    assert slept == [1.5]
    client.post("/_standin/faults", json={"delay_seconds": 0.5})
    client.delete("/_standin/faults")
    send(client, params(phone="13812345681"))
    assert slept == [1.5]


@pytest.mark.parametrize("spec", [{"fail": -1}, {"fail": 1, "code": "NoSuchError"}, {"delay_seconds": "x"},
                                  {"delay_seconds": 1, "count": -2}])
def test_a_bad_fault_spec_is_400(client, spec):
    response = client.post("/_standin/faults", json=spec)
    assert response.status_code == 400 and response.get_json()["error"]


def test_messages_are_listed_by_phone_newest_last(client, clock):
    send(client, params(phone="13700000001", code="111111"))
    send(client, params(phone="13700000002", code="222222"))
    clock.now += 61
    send(client, params(phone="13700000001", code="333333"))
    items = client.get("/_standin/messages", query_string={"phone": "13700000001"}).get_json()["items"]
    assert [item["template_param"]["code"] for item in items] == ["111111", "333333"]
    assert len(client.get("/_standin/messages").get_json()["items"]) == 3


def test_health(client):
    response = client.get("/health")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}

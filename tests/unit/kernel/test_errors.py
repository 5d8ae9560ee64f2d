"""Platform errors: codes, statuses, bodies, and surviving nameko's RPC serialisation."""

import json

import pytest
from nameko.exceptions import RemoteError, deserialize, serialize

from gateway.http import (
    BadRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    UpstreamTimeout,
    problem_details,
    retry_after,
)
from kernel.errors import (
    Conflict,
    Forbidden,
    NotFound,
    PlatformError,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    ValidationFailed,
)

ERRORS = [
    (ValidationFailed, "validation_failed", 422),
    (NotFound, "not_found", 404),
    (Forbidden, "forbidden", 403),
    (Conflict, "conflict", 409),
    (BadRequest, "bad_request", 400),
    (Unauthorized, "unauthorized", 401),
    (PayloadTooLarge, "payload_too_large", 413),
    (UnsupportedMediaType, "unsupported_media_type", 415),
    (TooManyRequests, "too_many_requests", 429),
    (ServiceUnavailable, "service_unavailable", 503),
    (UpstreamTimeout, "upstream_timeout", 504),
]
IDS = [cls.__name__ for cls, _, _ in ERRORS]


def test_the_base_error_is_a_400():
    error = PlatformError()
    assert (error.code, error.status, error.message, error.details) == ("error", 400, "error", {})


@pytest.mark.parametrize("cls,code,status", ERRORS, ids=IDS)
def test_code_and_status(cls, code, status):
    error = cls("boom")
    assert isinstance(error, PlatformError)
    assert (error.code, error.status) == (code, status)
    assert (cls.code, cls.status) == (code, status)


@pytest.mark.parametrize("cls,code,status", ERRORS, ids=IDS)
def test_default_message_is_the_code_in_words(cls, code, status):
    assert cls().message == code.replace("_", " ")
    assert cls("").message == code.replace("_", " ")


def test_message_and_details_are_the_exception_args():
    error = Conflict("changed", {"ticket_id": ["T1"]})
    assert error.args == ("changed", {"ticket_id": ["T1"]})
    assert str(error.message) == "changed"


@pytest.mark.parametrize("cls,code,status", ERRORS, ids=IDS)
@pytest.mark.parametrize("details", [{}, {"description": ["Missing data."], "lat": ["Too big."]},
                                     {"where": {"address_string": ["give one"]}}])
def test_nameko_serialisation_gives_back_the_same_class_message_and_details(cls, code, status, details):
    error = cls(f"{code} happened", details)
    data = json.loads(json.dumps(serialize(error)))  # as it travels in an RPC reply
    restored = deserialize(data)
    assert type(restored) is cls
    assert not isinstance(restored, RemoteError)
    assert restored.message == f"{code} happened"
    assert restored.details == details
    assert problem_details(restored) == problem_details(error)


@pytest.mark.parametrize("cls,code,status", ERRORS, ids=IDS)
def test_a_default_message_survives_serialisation(cls, code, status):
    restored = deserialize(serialize(cls()))
    assert (type(restored), restored.message, restored.details) == (cls, cls().message, {})


@pytest.mark.parametrize("cls,code,status", ERRORS, ids=IDS)
def test_problem_details_have_the_rfc_9457_members_and_the_code(cls, code, status):
    problem = problem_details(cls("what went wrong"), "corr-1")

    assert problem == {"type": f"/problems/{code}", "title": cls.title, "status": status,
                       "detail": "what went wrong", "code": code, "correlation_id": "corr-1"}
    assert problem["title"] and problem["title"] != code


def test_per_field_errors_ride_in_errors():
    problem = problem_details(ValidationFailed("not valid", {"limit": ["Must be at most 100."]}), "c")

    assert problem["errors"] == {"limit": ["Must be at most 100."]}


def test_an_instance_code_overrides_the_class_code_and_survives_rpc():
    error = Unauthorized("wrong phone or code", code="invalid_credentials")
    restored = deserialize(json.loads(json.dumps(serialize(error))))

    assert (type(restored), restored.code, restored.status) == (Unauthorized, "invalid_credentials", 401)
    assert Unauthorized("x").code == "unauthorized"  # the class default is untouched
    assert problem_details(restored)["type"] == "/problems/invalid_credentials"


def test_too_many_requests_carries_retry_after_to_the_gateway():
    assert retry_after(TooManyRequests("slow down", {"retry_after": 30}, code="too_many_attempts")) == 30
    assert retry_after(TooManyRequests("slow down")) is None
    assert retry_after(TooManyRequests("x", {"retry_after": "soon"})) is None
    assert retry_after(ServiceUnavailable("x", {"retry_after": 30})) is None  # only a 429 names its own

"""Platform errors: codes, statuses, bodies, and surviving nameko's RPC serialisation."""

import json

import pytest
from nameko.exceptions import RemoteError, deserialize, serialize

from kernel.errors import Conflict, Forbidden, NotFound, PlatformError, ValidationFailed

ERRORS = [
    (ValidationFailed, "validation_failed", 422),
    (NotFound, "not_found", 404),
    (Forbidden, "forbidden", 403),
    (Conflict, "conflict", 409),
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


@pytest.mark.parametrize("cls,code,status", ERRORS, ids=IDS)
def test_to_dict_without_details_has_code_and_message_only(cls, code, status):
    assert cls("no such thing").to_dict() == {"code": code, "message": "no such thing"}


@pytest.mark.parametrize("cls,code,status", ERRORS, ids=IDS)
def test_to_dict_with_details_carries_them(cls, code, status):
    details = {"description": ["Missing data for required field."]}
    assert cls("bad", details).to_dict() == {"code": code, "message": "bad", "details": details}


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
    assert restored.to_dict() == error.to_dict()


@pytest.mark.parametrize("cls,code,status", ERRORS, ids=IDS)
def test_a_default_message_survives_serialisation(cls, code, status):
    restored = deserialize(serialize(cls()))
    assert (type(restored), restored.message, restored.details) == (cls, cls().message, {})

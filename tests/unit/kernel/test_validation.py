"""Loading input into per-field errors."""

import pytest
from marshmallow import Schema, fields, validate

from kernel.errors import ValidationFailed
from kernel.validation import load


class Body(Schema):
    name = fields.String(required=True)
    age = fields.Integer(validate=validate.Range(min=0))
    tags = fields.List(fields.String())


def test_valid_input_is_loaded():
    assert load(Body(), {"name": "x", "age": "3"}) == {"name": "x", "age": 3}


@pytest.mark.parametrize("data", [None, [], [{"name": "x"}], "name=x", 42, True])
def test_a_non_dict_is_rejected_under_schema(data):
    with pytest.raises(ValidationFailed) as caught:
        load(Body(), data)
    assert caught.value.details == {"_schema": ["expected a JSON object"]}
    assert caught.value.status == 422
    assert "JSON object" in caught.value.message


def test_a_many_schema_accepts_a_list():
    assert load(Body(many=True), [{"name": "a"}, {"name": "b"}]) == [{"name": "a"}, {"name": "b"}]


def test_field_errors_are_carried_all_at_once():
    with pytest.raises(ValidationFailed) as caught:
        load(Body(), {"age": -1, "colour": "red"})
    details = caught.value.details
    assert set(details) == {"name", "age", "colour"}
    assert details["name"] == ["Missing data for required field."]
    assert details["colour"] == ["Unknown field."]
    assert caught.value.message == "the request is not valid"


def test_nested_errors_keep_their_position():
    with pytest.raises(ValidationFailed) as caught:
        load(Body(), {"name": "x", "tags": ["ok", 5]})
    assert caught.value.details == {"tags": {1: ["Not a valid string."]}}


def test_validation_failed_body_carries_the_details():
    with pytest.raises(ValidationFailed) as caught:
        load(Body(), {})
    assert (caught.value.code, caught.value.message, caught.value.details) == (
        "validation_failed", "the request is not valid", {"name": ["Missing data for required field."]})

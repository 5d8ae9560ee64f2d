"""The create-ticket contract shared by the gateway and the tickets service."""

import pytest
from marshmallow import Schema, ValidationError

from gateway.openapi import ApiKeySchema, RefreshSchema, SignInCodeSchema, SignInSchema
from kernel import contracts
from kernel.contracts import CreateTicketSchema
from services.directory.schemas import AuditFiltersSchema
from services.tickets.open311 import Open311QuerySchema, Open311RequestSchema
from services.tickets.schemas import TicketFiltersSchema
from services.volunteers.schemas import RecordQuerySchema, VolunteerFiltersSchema

BASE = {"service_code": "roof_leak", "description": "楼顶漏水"}


def load(data):
    return CreateTicketSchema().load(data)


def errors(data):
    with pytest.raises(ValidationError) as caught:
        load(data)
    return caught.value.messages


def test_an_address_is_enough():
    assert load({**BASE, "address_string": "3号楼2单元401"}) == {
        **BASE, "address_string": "3号楼2单元401", "lat": None, "long": None, "building": None, "attachments": []}


@pytest.mark.parametrize("lat,long", [(36.8, 118.05), (0, 0), (-90, -180), (90, 180)])
def test_lat_and_long_are_enough(lat, long):
    loaded = load({**BASE, "lat": lat, "long": long})
    assert (loaded["lat"], loaded["long"]) == (lat, long)
    assert loaded["address_string"] is None


@pytest.mark.parametrize("missing", ["service_code", "description"])
def test_service_code_and_description_are_required(missing):
    data = {**BASE, "address_string": "3-2-401"}
    del data[missing]
    assert errors(data) == {missing: ["Missing data for required field."]}


@pytest.mark.parametrize("where", [{}, {"address_string": ""}, {"address_string": None},
                                   {"lat": None, "long": None}])
def test_some_location_is_required(where):
    assert errors({**BASE, **where}) == {"address_string": ["give address_string, or both lat and long"]}


def test_lat_without_long_is_rejected():
    assert errors({**BASE, "lat": 36.8}) == {"address_string": ["give address_string, or both lat and long"]}


def test_lat_without_long_is_rejected_even_with_an_address():
    assert errors({**BASE, "address_string": "3-2-401", "lat": 36.8}) == {"long": ["lat and long go together"]}


def test_long_without_lat_is_rejected_even_with_an_address():
    assert "long" in errors({**BASE, "address_string": "3-2-401", "long": 118.0})


@pytest.mark.parametrize("field,value", [("lat", 90.01), ("lat", -91), ("long", 180.5), ("long", -181),
                                         ("lat", "north"), ("lat", float("nan"))])
def test_coordinates_out_of_range_are_rejected(field, value):
    data = {**BASE, "lat": 36.8, "long": 118.0, field: value}
    assert field in errors(data)


@pytest.mark.parametrize("field,value", [("service_code", ""), ("service_code", "x" * 65),
                                         ("description", "漏"), ("description", "x" * 4001),
                                         ("address_string", "x" * 301)])
def test_lengths_are_checked(field, value):
    assert field in errors({**BASE, "address_string": "3-2-401", field: value})


@pytest.mark.parametrize("unknown", ["jurisdiction_id", "phone", "priority"])
def test_unknown_fields_are_rejected(unknown):
    assert errors({**BASE, "address_string": "3-2-401", unknown: "x"}) == {unknown: ["Unknown field."]}


def test_all_problems_are_reported_at_once():
    messages = errors({"description": "漏", "lat": 100, "priority": "urgent"})
    assert set(messages) == {"service_code", "description", "lat", "priority", "address_string"}



SCHEMAS = sorted((name, schema) for name, schema in vars(contracts).items()
                 if isinstance(schema, type) and issubclass(schema, Schema) and schema.__module__ == contracts.__name__
                 and name != "ViewerSchema")
# Request schemas only one service loads live in that service, built from the same field helpers: same rule.
SCHEMAS += [(schema.__name__, schema) for schema in (Open311RequestSchema, Open311QuerySchema, TicketFiltersSchema,
                                                     AuditFiltersSchema, VolunteerFiltersSchema, RecordQuerySchema)]
# The sign-in and API-key bodies as the API document states them (gateway/openapi.py): same rule.
SCHEMAS += [(schema.__name__, schema) for schema in (SignInCodeSchema, SignInSchema, RefreshSchema, ApiKeySchema)]


@pytest.mark.parametrize("name, schema", SCHEMAS, ids=[name for name, _ in SCHEMAS])
def test_every_request_schema_refuses_a_field_it_does_not_name(name, schema):
    # No Meta says so: marshmallow's default (RAISE) is the contract, and the API document's additionalProperties.
    with pytest.raises(ValidationError) as caught:
        schema().load({"not_a_field": 1})
    assert caught.value.messages["not_a_field"] == ["Unknown field."]


def test_the_viewer_alone_ignores_fields_it_does_not_name():
    # An RPC argument the gateway builds, not a client's body.
    viewer = contracts.ViewerSchema().load({"subject": "r-1", "role": "resident", "not_a_field": 1})
    assert "not_a_field" not in viewer

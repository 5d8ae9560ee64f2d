"""Request schemas shared by a service and its callers (the gateway validates early with the same one).

Like the event catalogue, these are the contract between processes, so they live
in the kernel: the gateway never imports a service.
"""

from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema


class CreateTicketSchema(Schema):
    """A resident's report, in Open311's names: service_code, description, address_string, lat, long."""

    class Meta:
        unknown = RAISE

    service_code = fields.String(required=True, validate=validate.Length(min=1, max=64))
    description = fields.String(required=True, validate=validate.Length(min=2, max=4000))
    address_string = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=300))
    lat = fields.Float(load_default=None, allow_none=True, validate=validate.Range(-90, 90))
    long = fields.Float(load_default=None, allow_none=True, validate=validate.Range(-180, 180))

    @validates_schema(skip_on_field_errors=False)  # report every problem at once
    def _where(self, data, **kwargs):
        if not data.get("address_string") and (data.get("lat") is None or data.get("long") is None):
            raise ValidationError("give address_string, or both lat and long", "address_string")
        if (data.get("lat") is None) != (data.get("long") is None):
            raise ValidationError("lat and long go together", "long")

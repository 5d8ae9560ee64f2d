"""What goes into the directory's RPCs: marshmallow schemas with per-field errors.

>>> from kernel.validation import load
>>> staff = {"name": "张伟", "phone": "+86 138 0000 1001", "roles": ["grid_worker"], "grids": ["g1"]}
>>> load(StaffSchema(), staff)["phone"]
'13800001001'
>>> try:
...     load(StaffSchema(), {"name": "张伟", "phone": "123", "roles": ["resident"]})
... except Exception as error:
...     sorted(error.details)
['phone', 'roles']
"""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, post_load, validate, validates

from services.directory.people import CONSENT_PURPOSES, STAFF_ROLES, InvalidPhone, normalise_phone

CODE_FIELD = fields.String(validate=validate.Regexp(r"^[a-z0-9][a-z0-9_-]{0,31}\Z", error="a code like g3"))


class ViewerSchema(Schema):
    """Who is asking, as the gateway authenticated them."""

    class Meta:
        unknown = EXCLUDE

    subject = fields.String(required=True, validate=validate.Length(min=1, max=128))
    role = fields.String(required=True)
    community = fields.String(load_default=None, allow_none=True)
    grids = fields.List(fields.String(), load_default=list)
    teams = fields.List(fields.String(), load_default=list)


class PhoneField(fields.String):
    """A mainland mobile number, loaded normalised (11 digits)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return normalise_phone(text)
        except InvalidPhone as error:
            raise ValidationError("not a mainland mobile number (1[3-9] and 9 more digits)") from error


class StaffSchema(Schema):
    """``directory.create_staff``'s data: a staff member or volunteer."""

    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=validate.Length(min=1, max=32))
    phone = PhoneField(required=True)
    roles = fields.List(fields.String(validate=validate.OneOf((*STAFF_ROLES, "volunteer"))), required=True,
                        validate=validate.Length(min=1))
    grids = fields.List(CODE_FIELD, load_default=list)
    teams = fields.List(fields.String(validate=validate.Length(min=1, max=64)), load_default=list)
    email = fields.Email(load_default=None, allow_none=True)
    password = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=10, max=200),
                             load_only=True)

    @validates("grids")
    def _unique(self, value: list[str], **kwargs: Any) -> None:
        if len(set(value)) != len(value):
            raise ValidationError("a grid is listed twice")


class ConsentSchema(Schema):
    class Meta:
        unknown = RAISE

    purpose = fields.String(required=True, validate=validate.OneOf(CONSENT_PURPOSES))
    granted = fields.Boolean(required=True)


class AuditFiltersSchema(Schema):
    class Meta:
        unknown = RAISE

    actor = fields.String(load_default=None, allow_none=True)
    subject = fields.String(load_default=None, allow_none=True)
    from_ = fields.AwareDateTime(data_key="from", load_default=None, allow_none=True)
    to = fields.AwareDateTime(load_default=None, allow_none=True)

    @post_load
    def _plain_keys(self, data: dict, **kwargs: Any) -> dict:
        data["from"] = data.pop("from_")
        return data


class ImportSchema(Schema):
    class Meta:
        unknown = RAISE

    filename = fields.String(required=True, validate=validate.Regexp(r"(?i)^[^/\\]{1,200}\.(csv|xlsx|txt)\Z",
                                                                       error="a .csv or .xlsx file"))
    content_base64 = fields.String(required=True, validate=validate.Length(min=1))

"""Loading input with marshmallow into a structured, per-field error.

>>> from marshmallow import Schema, fields
>>> class Body(Schema):
...     name = fields.String(required=True)
>>> load(Body(), {"name": "x"})
{'name': 'x'}
>>> try:
...     load(Body(), {})
... except ValidationFailed as error:
...     error.details
{'name': ['Missing data for required field.']}
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError

from kernel.errors import ValidationFailed


def load(schema: Schema, data: Any) -> Any:
    """Load ``data`` or raise :class:`ValidationFailed` carrying marshmallow's messages."""
    if not isinstance(data, dict) and not schema.many:
        raise ValidationFailed("the body must be a JSON object", {"_schema": ["expected a JSON object"]})
    try:
        return schema.load(data)
    except ValidationError as error:
        raise ValidationFailed("the request is not valid", error.normalized_messages()) from error

"""The directory's request schemas: those the gateway validates with too live in :mod:`kernel.contracts` and are
named here; the audit's filters, which only this service loads, live here.

>>> from kernel.validation import load
>>> load(StaffSchema(), {"name": "张伟", "phone": "+86 138 0000 1001", "roles": ["grid_worker"]})["phone"]
'13800001001'
>>> AuditFiltersSchema().load({"from": "2026-12-01T00:00:00+08:00"})["from"].isoformat()
'2026-12-01T00:00:00+08:00'
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, post_load

from kernel.contracts import (
    CODE_FIELD,
    ConsentSchema,
    ImportSchema,
    PhoneField,
    StaffSchema,
    ViewerSchema,
)

__all__ = ["CODE_FIELD", "AuditFiltersSchema", "ConsentSchema", "ImportSchema", "PhoneField", "StaffSchema",
           "ViewerSchema"]


class AuditFiltersSchema(Schema):
    """``GET /api/v1/audit``'s filters (query parameters)."""

    actor = fields.String(load_default=None, allow_none=True)
    subject = fields.String(load_default=None, allow_none=True)
    from_ = fields.AwareDateTime(data_key="from", load_default=None, allow_none=True)
    to = fields.AwareDateTime(load_default=None, allow_none=True)

    @post_load
    def _plain_keys(self, data: dict, **kwargs: Any) -> dict:
        data["from"] = data.pop("from_")
        return data

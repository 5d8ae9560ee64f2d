"""The directory's request schemas now live in :mod:`kernel.contracts` (shared with the gateway); named here too.

>>> from kernel.validation import load
>>> load(StaffSchema(), {"name": "张伟", "phone": "+86 138 0000 1001", "roles": ["grid_worker"]})["phone"]
'13800001001'
"""

from __future__ import annotations

from kernel.contracts import (
    CODE_FIELD,
    AuditFiltersSchema,
    ConsentSchema,
    ImportSchema,
    PhoneField,
    StaffSchema,
    ViewerSchema,
)

__all__ = ["CODE_FIELD", "AuditFiltersSchema", "ConsentSchema", "ImportSchema", "PhoneField", "StaffSchema",
           "ViewerSchema"]

"""Every volunteers route is described for the API document and checked against a real action.

Who may do each volunteers action is written by hand in tests/unit/kernel/test_permissions.py, with every
other action of the one permission table.
"""

from __future__ import annotations

from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR

from gateway.routes.volunteers import VOLUNTEER_OPERATIONS, VolunteerRoutes
from kernel.permissions import PERMISSIONS


def test_every_volunteer_route_is_described_for_the_api_document_with_a_real_action():
    handlers = {name for name, member in vars(VolunteerRoutes).items()
                if getattr(member, ENTRYPOINT_EXTENSIONS_ATTR, None)}
    assert handlers == set(VOLUNTEER_OPERATIONS)
    assert all(spec["action"] in PERMISSIONS for spec in VOLUNTEER_OPERATIONS.values())

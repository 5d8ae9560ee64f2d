"""Who may do what with volunteers, written by hand from issue #13; and every route is described."""

from __future__ import annotations

import pytest
from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR

from gateway.routes.volunteers import VOLUNTEER_OPERATIONS, VolunteerRoutes
from kernel.permissions import PERMISSIONS, ROLES, allowed

R, GW, V, SEC, OPS, ADM, INT = "resident", "grid_worker", "volunteer", "secretary", "ops", "admin", "integrator"
PEOPLE = {R, GW, V, SEC, OPS, ADM}
EXPECTED = {
    "volunteers.list": {GW, SEC, ADM},
    "volunteers.register": {SEC, ADM},
    "volunteers.import": {SEC, ADM},
    "volunteers.manage": {SEC, ADM},
    "volunteers.confirm_presence": {GW, SEC, ADM},
    "volunteers.records": {V, SEC, ADM},
    "volunteers.coverage": {GW, SEC, ADM},
    "volunteering.me": {V},
    "volunteering.respond": {V},
    "volunteering.rate": {R},
    "wishes.publish": {R},
    "wishes.read": PEOPLE,
    "wishes.claim": {V},
    "wishes.confirm": {R},
}


@pytest.mark.parametrize("action, roles", EXPECTED.items(), ids=list(EXPECTED))
def test_each_volunteer_action_is_for_exactly_these_roles(action, roles):
    assert {role for role in ROLES if allowed(action, role)} == roles


def test_ops_and_integrators_never_touch_the_volunteer_registry():
    assert not any(allowed(action, role) for action in EXPECTED for role in (OPS, INT) if action != "wishes.read")
    assert not allowed("wishes.read", INT)


def test_every_volunteer_route_is_described_for_the_api_document_with_a_real_action():
    handlers = {name for name, member in vars(VolunteerRoutes).items()
                if getattr(member, ENTRYPOINT_EXTENSIONS_ATTR, None)}
    assert handlers == set(VOLUNTEER_OPERATIONS)
    assert all(spec["action"] in PERMISSIONS for spec in VOLUNTEER_OPERATIONS.values())

"""The permission table against expectations written here by hand, not derived from the table itself."""

from __future__ import annotations

import pytest

from kernel.errors import Forbidden
from kernel.permissions import PERMISSIONS, ROLES, Grant, allowed, may_access, require

R, GW, V, SEC, OPS, ADM, INT = "resident", "grid_worker", "volunteer", "secretary", "ops", "admin", "integrator"
EVERYONE = {R, GW, V, SEC, OPS, ADM, INT}
PEOPLE = EVERYONE - {INT}

# action -> the roles that may do it; every other role is refused. Written from issue #10/#14 and DOMAIN.md.
EXPECTED: dict[str, set[str]] = {
    "tickets.create": {R, INT, GW, SEC, ADM},  # staff: phone-in and walk-in on a resident's behalf
    "tickets.read": {R, GW, V, SEC, OPS, ADM, INT},
    "tickets.list": {R, GW, V, SEC, ADM},
    "tickets.dispatch": {GW, SEC, ADM},
    "tickets.accept": {GW, SEC, ADM, V},
    "tickets.start": {GW, SEC, ADM, V},
    "tickets.pause": {GW, SEC, ADM},
    "tickets.resume": {GW, SEC, ADM},
    "tickets.resolve": {GW, SEC, ADM, V},
    "tickets.bounce": {GW, SEC, ADM, V},
    "tickets.record_callback": {GW, SEC, ADM, R},
    "tickets.close_not_fixed": {GW, SEC, ADM},
    "tickets.attach_resident": {GW, SEC, ADM, R},
    "tickets.merge": {GW, SEC, ADM},
    "tickets.comment": {GW, SEC, ADM, V, R},
    "tickets.plan": {GW, SEC, ADM, V},
    "photos.upload": {GW, SEC, ADM, V, R},  # whoever may attach a photo to a ticket or a comment
    "photos.read": {R, GW, V, SEC, OPS, ADM, INT},  # as tickets.read; each photo is checked against its tickets
    "patrols.record": {GW, SEC, ADM},
    "services.read": EVERYONE,
    "inbox.read": PEOPLE,
    "preferences.read": PEOPLE,  # issue #12: each person their own
    "preferences.write": PEOPLE,
    "echoes.read": {GW, SEC, OPS, ADM},  # staff see every step of an echo
    "echo_tasks.read": {GW, SEC, ADM},  # the human step: a grid worker phones or visits
    "echo_tasks.complete": {GW, SEC, ADM},
    "reports.echoes": {SEC, OPS, ADM},
    "broadcasts.create": {SEC, ADM},
    "broadcasts.read": {SEC, ADM},
    "checkins.answer": {R},  # issue #12: a resident in home quarantine answers the daily check-in
    "checkins.read": {GW, SEC, ADM},  # who did not answer, for their grid worker
    "checkins.schedule": {SEC, ADM},
    "volunteer_teams.read": PEOPLE,
    "places.read": EVERYONE,
    "places.import": {SEC, ADM},
    "residents.list": {GW, SEC, ADM},
    "residents.read": {R, GW, SEC, ADM},
    "residents.import": {SEC, ADM},
    "me.read": PEOPLE,
    "me.export": PEOPLE,
    "me.erase": {R},
    "consents.write": {R, V},
    "apikeys.manage": {ADM},
    "audit.read": {ADM},
    "sessions.revoke": {ADM},
    "staff.manage": {ADM},
    "calendar.read": {SEC, OPS, ADM},
    "calendar.write": {ADM},
    "deadlines.read": {SEC, OPS, ADM},  # the deadline table per category × priority
    "deadlines.manage": {ADM},
    "ops.read": {OPS, ADM},  # issue #15: the console's ops page (queues, outbox lag)
    "open311.create": {INT},  # GeoReport v2 POST requests needs an api_key
    "open311.read_scoped": {INT},  # a key sees its communities' requests whole; without one, public fields
    # volunteers (issue #13): staff run the registry, volunteers answer offers, residents rate and wish
    "volunteers.list": {GW, SEC, ADM},
    "volunteers.register": {SEC, ADM},
    "volunteers.import": {SEC, ADM},
    "volunteers.manage": {SEC, ADM},
    "volunteers.confirm_presence": {GW, SEC, ADM},
    "volunteers.records": {V, SEC, ADM},
    "volunteers.coverage": {GW, SEC, ADM},
    "volunteer_tasks.read": {GW, SEC, ADM},  # any task; the volunteer and residents theirs by relation
    "volunteering.me": {V},
    "volunteering.respond": {V},
    "volunteering.rate": {R},
    "wishes.publish": {R},
    "wishes.read": PEOPLE,
    "wishes.claim": {V},
    "wishes.confirm": {R},
    "reports.read": {GW, SEC, ADM},  # 日清周议 and the three rates: grid workers for their grids
}
CASES = [(action, role, role in roles) for action, roles in EXPECTED.items() for role in sorted(EVERYONE)]


def test_the_table_names_exactly_the_expected_actions_and_roles():
    assert set(PERMISSIONS) == set(EXPECTED)
    assert set(ROLES) == EVERYONE


@pytest.mark.parametrize("action, role, expected", CASES, ids=[f"{a}-{r}" for a, r, _ in CASES])
def test_role_by_action(action, role, expected):
    assert allowed(action, role) is expected
    if expected:
        assert isinstance(require(action, role), Grant)
    else:
        with pytest.raises(Forbidden):
            require(action, role)


def test_an_unknown_action_is_a_programming_error_not_a_refusal():
    with pytest.raises(KeyError):
        allowed("tickets.explode", ADM)


def viewer(role, subject="x-1", community="xingqiao", grids=(), teams=()):
    return {"subject": subject, "role": role, "community": community, "grids": list(grids), "teams": list(teams)}


def test_a_resident_reaches_only_tickets_they_are_attached_to():
    me = viewer(R, "r-1")
    assert may_access("tickets.read", me, community="xingqiao", owners=["r-2", "r-1"])
    assert not may_access("tickets.read", me, community="xingqiao", owners=["r-2"])
    assert not may_access("tickets.read", me, community="xingqiao", owners=[])


def test_a_grid_worker_reaches_their_grids_and_unplaced_objects_only():
    worker = viewer(GW, "gw-1", grids=["g3"])
    assert may_access("tickets.read", worker, community="xingqiao", grid="g3")
    assert not may_access("tickets.read", worker, community="xingqiao", grid="g1")
    assert may_access("tickets.read", worker, community="xingqiao", grid=None)  # tickets without a grid yet
    assert not may_access("residents.list", viewer(GW, "gw-2"), community="xingqiao", grid="g3")


def test_a_volunteer_reaches_what_is_dispatched_to_them_or_their_team():
    volunteer = viewer(V, "v-1", teams=["t-repair"])
    assert may_access("tickets.read", volunteer, community="xingqiao", assignee={"kind": "worker", "id": "v-1"})
    assert may_access("tickets.read", volunteer, community="xingqiao", assignee={"kind": "team", "id": "t-repair"})
    assert not may_access("tickets.read", volunteer, community="xingqiao", assignee={"kind": "team", "id": "t-x"})
    assert not may_access("tickets.read", volunteer, community="xingqiao", assignee={"kind": "worker", "id": "v-2"})
    assert not may_access("tickets.read", volunteer, community="xingqiao", assignee=None)


@pytest.mark.parametrize("role", [SEC, OPS, ADM, GW])
def test_staff_never_reach_another_community(role):
    staff = viewer(role, "s-1", grids=["g3"])
    assert may_access("tickets.read", staff, community="xingqiao", grid="g3", owners=["s-1"])
    assert not may_access("tickets.read", staff, community="dongcheng", grid="g3", owners=["s-1"])


def test_a_role_without_the_action_reaches_nothing():
    assert not may_access("residents.read", viewer(OPS), community="xingqiao", owners=["x-1"])
    assert not may_access("residents.read", {"subject": "x"}, community="xingqiao")

"""People of the register: residents, staff and volunteers (plain Python, no I/O).

A person is one record whatever their roles: a grid worker who lives in the
community is also a resident, a volunteer is a person with the ``volunteer``
role. Ids are opaque (``p-`` and 12 hex digits); phones are kept normalised
(11 digits, no country code) so that one number has one lookup hash.

>>> normalise_phone("+86 138-0000-1234"), normalise_phone("13800001234")
('13800001234', '13800001234')
>>> mask_phone("13800005678")
'138****5678'
>>> is_person_id(new_person_id())
True
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

# One phone rule for the platform; re-exported here for the importer and credentials.
from kernel.contracts import InvalidPhone, normalise_phone  # noqa: F401
from kernel.permissions import Grant, grant_for, may_access

RESIDENT = "resident"
STAFF_ROLES = ("grid_worker", "secretary", "ops", "admin")
ROLES = (RESIDENT, *STAFF_ROLES, "volunteer")
# The role a token carries when a person has several: the one with the widest rights.
ROLE_PRECEDENCE = ("admin", "secretary", "ops", "grid_worker", "volunteer", RESIDENT)
FLAGS = ("lives_alone", "elderly", "disability", "home_quarantine", "low_income", "party_member")
CONSENT_PURPOSES = ("service_echoes", "sms", "wechat", "broadcasts")
# Personal data of residents who moved out is erased this long after they left (台账 kept a year).
RETENTION = timedelta(days=365)

_PERSON_ID = re.compile(r"^p-[0-9a-f]{12}\Z")


def mask_phone(phone: str | None) -> str | None:
    """The phone as views that do not need it show it: the first three and last four digits.

    >>> mask_phone("13812345678"), mask_phone(None), mask_phone("12")
    ('138****5678', None, '****')
    """
    if phone is None:
        return None
    return f"{phone[:3]}****{phone[-4:]}" if len(phone) >= 7 else "****"


def mask_name(name: str | None) -> str | None:
    """A name in a masked view: the family name and a star per other character.

    >>> mask_name("刘丽丽"), mask_name("王五"), mask_name(None)
    ('刘**', '王*', None)
    """
    if not name:
        return name
    return name[0] + "*" * max(1, len(name) - 1)


def new_person_id() -> str:
    return "p-" + secrets.token_hex(6)


def is_person_id(value: object) -> bool:
    """Whether ``value`` looks like a person's id.

    >>> is_person_id("p-0123456789ab"), is_person_id("p-xyz"), is_person_id(None)
    (True, False, False)
    """
    return isinstance(value, str) and bool(_PERSON_ID.match(value))


def primary_role(roles: list[str]) -> str:
    """The role a person's token carries: the widest of theirs.

    >>> primary_role(["resident", "grid_worker"]), primary_role([]), primary_role(["volunteer", "resident"])
    ('grid_worker', 'resident', 'volunteer')
    """
    return next((role for role in ROLE_PRECEDENCE if role in roles), RESIDENT)


@dataclass
class Address:
    building: str
    unit: str = ""
    room: str = ""

    def label(self) -> str:
        """The address as a short label.

        >>> Address("b03", "2", "401").label()
        'b03 2-401'
        """
        return f"{self.building} {self.unit}-{self.room}".strip() if self.unit else f"{self.building} {self.room}"


@dataclass
class Consent:
    purpose: str
    granted: bool
    at: datetime

    def to_dict(self) -> dict:
        return {"purpose": self.purpose, "granted": self.granted, "at": self.at}


@dataclass
class Person:
    """One person of a community. Personal fields are None once the person is erased."""

    id: str
    community: str
    name: str | None
    phone: str | None
    roles: list[str] = field(default_factory=lambda: [RESIDENT])
    grids: list[str] = field(default_factory=list)
    teams: list[str] = field(default_factory=list)
    address: Address | None = None
    birth_year: int | None = None
    household: str | None = None
    flags: list[str] = field(default_factory=list)
    email: str | None = None
    wechat_openid: str | None = None
    consents: dict[str, Consent] = field(default_factory=dict)
    password_hash: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    moved_out_at: datetime | None = None
    erased_at: datetime | None = None

    @property
    def is_resident(self) -> bool:
        return RESIDENT in self.roles

    @property
    def is_staff(self) -> bool:
        return any(role in STAFF_ROLES for role in self.roles)

    @property
    def role(self) -> str:
        return primary_role(self.roles)

    @property
    def building(self) -> str | None:
        return self.address.building if self.address else None

    def age(self, today: datetime) -> int | None:
        """Age from the birth year alone (the register keeps no birthday): this year's age, at most."""
        return None if self.birth_year is None else today.year - self.birth_year

    def record_consent(self, purpose: str, granted: bool, at: datetime) -> Consent:
        """Record a consent given or withdrawn; the latest decision per purpose is what counts.

        >>> person = Person("p-0123456789ab", "xingqiao", "王五", "13800001234")
        >>> person.record_consent("sms", True, datetime(2026, 1, 1)).granted
        True
        >>> person.record_consent("fax", True, datetime(2026, 1, 1))
        Traceback (most recent call last):
        ...
        ValueError: unknown consent purpose 'fax'
        """
        if purpose not in CONSENT_PURPOSES:
            raise ValueError(f"unknown consent purpose {purpose!r}")
        consent = self.consents[purpose] = Consent(purpose, bool(granted), at)
        return consent

    def erased(self, at: datetime) -> Person:
        """The tombstone of this person: the id, community and times stay; everything personal goes.

        >>> person = Person("p-0123456789ab", "xingqiao", "王五", "13800001234", address=Address("b01", "1", "101"),
        ...                 birth_year=1950, flags=["elderly"], email="w@example.cn")
        >>> tomb = person.erased(datetime(2026, 1, 1))
        >>> tomb.name, tomb.phone, tomb.address, tomb.email, tomb.flags, tomb.birth_year, tomb.erased_at.year
        (None, None, None, None, [], None, 2026)
        """
        return replace(self, name=None, phone=None, address=None, birth_year=None, household=None, flags=[],
                       email=None, wechat_openid=None, consents={}, password_hash=None, teams=[], grids=[],
                       updated_at=at, erased_at=at)

    def due_for_erasure(self, now: datetime, retention: timedelta = RETENTION) -> bool:
        """A resident who moved out more than the retention period ago and is not yet erased.

        >>> person = Person("p-0123456789ab", "xingqiao", "王五", "13800001234", moved_out_at=datetime(2024, 1, 1))
        >>> person.due_for_erasure(datetime(2025, 6, 1)), person.due_for_erasure(datetime(2024, 6, 1))
        (True, False)
        """
        return self.erased_at is None and self.moved_out_at is not None and now - self.moved_out_at > retention

    def view(self, *, full: bool) -> dict:
        """The record as a client sees it: ``full`` unmasked (the person, audited staff), else masked."""
        address = None
        if self.address is not None:
            address = {"building": self.address.building, "unit": self.address.unit,
                       "room": self.address.room if full else None}
        view = {
            "id": self.id, "community": self.community, "name": self.name if full else mask_name(self.name),
            "phone": self.phone if full else mask_phone(self.phone), "roles": list(self.roles),
            "role": self.role, "grids": list(self.grids), "teams": list(self.teams), "address": address,
            "birth_year": self.birth_year, "household": self.household if full else None,
            "flags": list(self.flags), "moved_out_at": _iso(self.moved_out_at), "erased_at": _iso(self.erased_at),
        }
        if full:
            view["contacts"] = {"phone": self.phone, "email": self.email, "wechat_openid": self.wechat_openid}
            view["consents"] = {p: {"granted": c.granted, "at": _iso(c.at)} for p, c in self.consents.items()}
            view["created_at"], view["updated_at"] = _iso(self.created_at), _iso(self.updated_at)
        return view


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when else None


# --- who may see whom: the platform's permission table (kernel.permissions), applied to people

def resident_scope(viewer: dict, community: str) -> set[str] | None:
    """The grids whose residents ``viewer`` may list in ``community``: None for all of them.

    Raises PermissionError for a viewer of another community or a role that lists nobody.

    >>> resident_scope({"role": "grid_worker", "community": "xq", "grids": ["g3"]}, "xq")
    {'g3'}
    >>> resident_scope({"role": "secretary", "community": "xq", "grids": []}, "xq") is None
    True
    >>> resident_scope({"role": "secretary", "community": "other", "grids": []}, "xq")
    Traceback (most recent call last):
    ...
    PermissionError: staff of other may not see residents of xq
    >>> resident_scope({"role": "resident", "community": "xq"}, "xq")
    Traceback (most recent call last):
    ...
    PermissionError: a resident may not list residents
    """
    role = viewer.get("role") or ""
    grant = grant_for("residents.list", role)
    if grant is None:
        raise PermissionError(f"a {role} may not list residents")
    if viewer.get("community") != community:
        raise PermissionError(f"staff of {viewer.get('community')} may not see residents of {community}")
    if grant is Grant.ALWAYS:
        return None
    if grant is Grant.IF_GRID:
        return set(viewer.get("grids") or [])
    raise PermissionError(f"a {role} may not list residents")


def may_read_full(viewer: dict, community: str, person: Person, grid_of_person: str | None) -> bool:
    """Whether ``viewer`` may read ``person``'s full record: themselves, or staff whose scope covers them.

    A person placed in no grid (staff without a home address) is outside every grid worker's grids.

    >>> p = Person("p-0123456789ab", "xq", "王五", "13800001234")
    >>> may_read_full({"subject": "p-0123456789ab", "role": "resident", "community": "xq"}, "xq", p, "g1")
    True
    >>> worker = {"subject": "p-aaaaaaaaaaaa", "role": "grid_worker", "community": "xq", "grids": ["g2"]}
    >>> may_read_full(worker, "xq", p, "g1"), may_read_full(worker, "xq", p, "g2"), may_read_full(worker, "xq", p, None)
    (False, True, False)
    """
    if person.community != community:
        return False
    if viewer.get("subject") == person.id:
        return viewer.get("community") == community
    return may_access("residents.read", viewer, community=community, owners=[person.id],
                      grid=grid_of_person or "")

"""API keys for integrators (an Open311 client, a 12345 hotline connector): plain Python, no I/O.

A key is ``hsk_<8 hex id>_<32 url-safe random>``. The id finds the record; the record keeps a
SHA-256 of the whole key, never the key, which is shown once when it is made.

>>> key, record = ApiKey.create("open311", ["xingqiao"], actor="admin-1", now=100.0)
>>> key.startswith("hsk_" + record.key_id + "_"), len(key)
(True, 45)
>>> record.verify(key, now=200.0)["subject"]
'key:open311'
>>> record.revoke(now=300.0)
True
>>> record.verify(key, now=301.0)
Traceback (most recent call last):
...
services.directory.apikeys.KeyRefused: revoked
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

PREFIX = "hsk"
SECRET_LENGTH = 32  # url-safe characters: 192 random bits
LAST_USE_INTERVAL = 60  # seconds: last use is noted at most this often, so verifying stays a read
KEY_PATTERN = re.compile(r"^hsk_(?P<key_id>[0-9a-f]{8})_(?P<secret>[A-Za-z0-9_-]{32})\Z")
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}\Z")
COMMUNITY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\Z")
ROLE = "integrator"


class KeyRefused(Exception):
    """A presented key is not accepted: ``malformed``, ``unknown``, ``mismatch``, ``revoked`` or ``out_of_scope``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class InvalidKeySpec(ValueError):
    """A new key's name or communities are not acceptable; ``errors`` is per field."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__("; ".join(f"{field}: {', '.join(messages)}" for field, messages in errors.items()))
        self.errors = errors


def new_key() -> tuple[str, str]:
    """A fresh ``(key_id, key)``.

    >>> key_id, key = new_key()
    >>> parse_key(key) == key_id
    True
    """
    key_id = secrets.token_hex(4)
    # token_urlsafe(24) is exactly 32 characters of [A-Za-z0-9_-]
    return key_id, f"{PREFIX}_{key_id}_{secrets.token_urlsafe(24)}"


def parse_key(key: object) -> str:
    """The id of a well-formed key; :class:`KeyRefused` ``malformed`` otherwise.

    >>> parse_key("hsk_0123abcd_" + "A" * 32)
    '0123abcd'
    >>> parse_key("hsk_0123abcd_short")
    Traceback (most recent call last):
    ...
    services.directory.apikeys.KeyRefused: malformed
    """
    match = KEY_PATTERN.match(key) if isinstance(key, str) else None
    if match is None:
        raise KeyRefused("malformed")
    return match.group("key_id")


def key_digest(key: str) -> str:
    """SHA-256 of the whole key, hex.

    A key carries 192 random bits, so a fast unsalted hash is safe here: nobody can enumerate
    the key space, and a slow hash (argon2) would cost every API request tens of milliseconds.

    >>> len(key_digest("hsk_0123abcd_" + "A" * 32))
    64
    """
    return hashlib.sha256(key.encode()).hexdigest()


def check_spec(name: object, communities: object) -> tuple[str, list[str]]:
    """A valid ``(name, communities)``, deduplicated in order; :class:`InvalidKeySpec` otherwise.

    >>> check_spec("hotline-12345", ["xingqiao", "xingqiao"])
    ('hotline-12345', ['xingqiao'])
    >>> check_spec("Bad Name", [])
    Traceback (most recent call last):
    ...
    services.directory.apikeys.InvalidKeySpec: name: ...; communities: at least one community is required
    """
    errors: dict[str, list[str]] = {}
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        errors["name"] = ["1 to 64 characters: lower-case letters, digits, '.', '_' or '-', starting with a "
                          "letter or digit"]
    if isinstance(communities, str):
        communities = [communities]
    if not isinstance(communities, list | tuple) or not communities:
        errors["communities"] = ["at least one community is required"]
        communities = []
    elif not all(isinstance(code, str) and COMMUNITY_PATTERN.match(code) for code in communities):
        errors["communities"] = ["each community is a community code such as 'xingqiao'"]
    if errors:
        raise InvalidKeySpec(errors)
    return name, list(dict.fromkeys(communities))


@dataclass
class ApiKey:
    """The stored record of a key: everything but the key."""

    key_id: str
    name: str
    communities: list[str]
    digest: str
    created_at: float
    created_by: str | None = None
    last_used_at: float | None = None
    revoked_at: float | None = None

    @classmethod
    def create(cls, name: str, communities: list[str], actor: str | None, now: float) -> tuple[str, ApiKey]:
        """A new key and its record; :class:`InvalidKeySpec` for a bad name or scope."""
        name, communities = check_spec(name, communities)
        key_id, key = new_key()
        return key, cls(key_id=key_id, name=name, communities=communities, digest=key_digest(key),
                        created_at=now, created_by=actor)

    def verify(self, key: str, now: float) -> dict:
        """The principal of ``key`` if it is this record's and not revoked; :class:`KeyRefused` otherwise.

        >>> key, record = ApiKey.create("open311", ["xingqiao"], actor=None, now=0.0)
        >>> record.verify(key[:-1] + ("A" if key[-1] != "A" else "B"), now=1.0)
        Traceback (most recent call last):
        ...
        services.directory.apikeys.KeyRefused: mismatch
        """
        if parse_key(key) != self.key_id or not hmac.compare_digest(key_digest(key), self.digest):
            raise KeyRefused("mismatch")
        if self.revoked_at is not None:
            raise KeyRefused("revoked")
        return self.principal()

    def principal(self) -> dict:
        """Who a request with this key is: the integrator role, scoped to the key's communities."""
        return {"subject": f"key:{self.name}", "role": ROLE, "community": self.communities[0],
                "communities": list(self.communities), "key_id": self.key_id}

    def allows(self, community: str) -> bool:
        """Whether the key may act in ``community``.

        >>> _, record = ApiKey.create("open311", ["xingqiao", "qingbo"], actor=None, now=0.0)
        >>> record.allows("qingbo"), record.allows("hubin")
        (True, False)
        """
        return community in self.communities

    def revoke(self, now: float) -> bool:
        """Revoke the key; False if it already was (its first revocation time stands)."""
        if self.revoked_at is not None:
            return False
        self.revoked_at = now
        return True

    def due_for_use_note(self, now: float) -> bool:
        """Whether a verification at ``now`` should write the last use (at most once a minute).

        >>> _, record = ApiKey.create("open311", ["xingqiao"], actor=None, now=0.0)
        >>> record.due_for_use_note(1.0)
        True
        >>> record.last_used_at = 1.0
        >>> record.due_for_use_note(30.0), record.due_for_use_note(61.0)
        (False, True)
        """
        return self.last_used_at is None or now - self.last_used_at >= LAST_USE_INTERVAL

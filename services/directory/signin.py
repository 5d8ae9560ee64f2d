"""Sign-in rules of the directory: passwords, one-time codes and sessions (plain Python, no I/O).

Every rule takes the time as an argument (epoch seconds), so tests drive the clock.

Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106's low-memory profile):

>>> hashed = hash_password("correct horse battery staple")
>>> hashed.startswith("$argon2id$")
True
>>> verify_password(hashed, "correct horse battery staple"), verify_password(hashed, "wrong")
(True, False)

A one-time code is kept only as an HMAC of the phone's keyed hash and the code, so a database dump
reveals no code; a phone has one :class:`CodeChallenge`, whose latest code is the only valid one:

>>> key = b"k" * 32
>>> challenge = CodeChallenge("ph-1")
>>> challenge.issue(code_digest(key, "ph-1", "123456"), now=1000.0)
>>> challenge.redeem(code_digest(key, "ph-1", "123456"), now=1010.0)
>>> challenge.redeem(code_digest(key, "ph-1", "123456"), now=1011.0)  # no replay
Traceback (most recent call last):
...
services.directory.signin.CodeRefused: no_code

A session's refresh token is rotated on every use; presenting a spent one revokes the session:

>>> session, first = Session.open("p-1", "xingqiao", now=0.0, ttl=3600)
>>> second = session.rotate(refresh_digest(first), now=10.0)
>>> session.rotate(refresh_digest(first), now=20.0)
Traceback (most recent call last):
...
services.directory.signin.SessionRefused: reused
>>> session.revoked_reason
'refresh_token_reused'
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# --- passwords

_HASHER = PasswordHasher()  # argon2id; its parameters are argon2-cffi's maintained defaults


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (a PHC string carrying its own salt and parameters)."""
    if not isinstance(password, str) or not password:
        raise ValueError("a password must be a non-empty string")
    return _HASHER.hash(password)


def verify_password(hashed: str | None, password: str | None) -> bool:
    """Whether ``password`` matches ``hashed``; never raises for a wrong, empty or malformed input.

    >>> verify_password(None, "x"), verify_password("not-a-hash", "x"), verify_password(hash_password("x"), None)
    (False, False, False)
    """
    if not hashed or not password or not isinstance(password, str):
        return False
    try:
        return _HASHER.verify(hashed, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def password_needs_rehash(hashed: str) -> bool:
    """Whether ``hashed`` was made with weaker parameters than today's: rehash it after a good sign-in.

    >>> password_needs_rehash(hash_password("x"))
    False
    >>> weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("x")
    >>> password_needs_rehash(weak)
    True
    """
    try:
        return _HASHER.check_needs_rehash(hashed)
    except (InvalidHashError, ValueError):
        return True


# A hash nobody's password matches, verified when there is no real one, so that a sign-in with
# a password costs the same time whether or not the phone belongs to staff.
_DECOY_HASH = hash_password(secrets.token_urlsafe(16))


def verify_password_or_decoy(hashed: str | None, password: str | None) -> bool:
    """:func:`verify_password`, spending the same time on a missing hash as on a real one.

    >>> verify_password_or_decoy(None, "anything")
    False
    """
    if not hashed:
        verify_password(_DECOY_HASH, password or "-")
        return False
    return verify_password(hashed, password)


# --- one-time codes

CODE_DIGITS = 6
CODE_TTL = 5 * 60  # seconds a code is valid
MAX_WRONG_TRIES = 5  # wrong tries that burn a code
RESEND_INTERVAL = 60  # seconds between two codes for one phone
CODES_PER_HOUR = 5
HOUR = 3600


def new_code() -> str:
    """Six random digits from the operating system's CSPRNG.

    >>> code = new_code()
    >>> len(code), code.isdigit()
    (6, True)
    """
    return f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"


def code_digest(key: bytes, phone_hash: str, code: str) -> str:
    """HMAC-SHA256 of a code for one phone: without ``key`` (from the data key) a stored digest reveals nothing.

    Six digits are only a million candidates: a plain hash would be reversed at once, a keyed one is not.

    >>> code_digest(b"k" * 32, "ph-1", "123456") == code_digest(b"k" * 32, "ph-2", "123456")
    False
    """
    return hmac.new(key, f"{phone_hash}:{code}".encode(), hashlib.sha256).hexdigest()


class CodeRefused(Exception):
    """A sign-in code was not accepted. ``reason`` is for tests and metrics, never for the caller.

    ``too_many`` says that the code is burnt: the caller is told to ask for a new one (429).
    """

    def __init__(self, reason: str, *, too_many: bool = False):
        super().__init__(reason)
        self.reason, self.too_many = reason, too_many


class ResendRefused(Exception):
    """A new code for this phone is not allowed yet; ``retry_after`` seconds until it is."""

    def __init__(self, retry_after: int):
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass
class CodeChallenge:
    """The sign-in code state of one phone (by its keyed hash): the latest code and the sending history.

    >>> challenge = CodeChallenge("ph-1")
    >>> challenge.issue("d1", now=0.0)
    >>> challenge.issue("d2", now=30.0)
    Traceback (most recent call last):
    ...
    services.directory.signin.ResendRefused: retry after 30 s
    """

    phone_hash: str
    digest: str | None = None
    issued_at: float | None = None
    expires_at: float | None = None
    wrong_tries: int = 0
    spent: bool = False
    sent_at: list[float] = field(default_factory=list)  # when codes were issued, within the last hour
    version: int = 0

    def retry_after(self, now: float) -> int:
        """Seconds until a new code may be issued (0: now)."""
        recent = [at for at in self.sent_at if now - at < HOUR]
        waits = [0.0]
        if recent:
            waits.append(max(recent) + RESEND_INTERVAL - now)
        if len(recent) >= CODES_PER_HOUR:
            waits.append(sorted(recent)[-CODES_PER_HOUR] + HOUR - now)
        wait = max(waits)
        return int(wait) + (1 if wait > int(wait) else 0)

    def issue(self, digest: str, now: float) -> None:
        """Replace the code by a new one (its digest); :class:`ResendRefused` if it is too soon."""
        wait = self.retry_after(now)
        if wait > 0:
            raise ResendRefused(wait)
        self.sent_at = [at for at in self.sent_at if now - at < HOUR] + [now]
        self.digest, self.issued_at, self.expires_at = digest, now, now + CODE_TTL
        self.wrong_tries, self.spent = 0, False

    def redeem(self, digest: str, now: float, *, second_factor: bool = True) -> None:
        """Spend the code if ``digest`` is its digest and ``second_factor`` (a staff password) holds.

        Raises :class:`CodeRefused` otherwise; a wrong try is counted (the caller must save the
        challenge in either case), and the fifth burns the code.
        """
        if self.digest is None or self.spent or self.expires_at is None:
            raise CodeRefused("no_code")
        if self.wrong_tries >= MAX_WRONG_TRIES:
            raise CodeRefused("burnt", too_many=True)
        if now >= self.expires_at:
            raise CodeRefused("expired")
        if not (hmac.compare_digest(digest, self.digest) and second_factor):
            self.wrong_tries += 1
            raise CodeRefused("wrong", too_many=self.wrong_tries >= MAX_WRONG_TRIES)
        self.spent = True

    def matches(self, digest: str) -> bool:
        """Whether ``digest`` is the current code's (constant time); says nothing about expiry or use."""
        return self.digest is not None and hmac.compare_digest(digest, self.digest)


# --- sessions and refresh tokens

SPENT_KEPT = 64  # spent refresh digests a session remembers to detect reuse (a day of 15-minute refreshes)


def new_refresh_token() -> str:
    """32 random bytes, url-safe base64 (43 characters).

    >>> len(new_refresh_token())
    43
    """
    return secrets.token_urlsafe(32)


def refresh_digest(token: str) -> str:
    """SHA-256 of a refresh token. 256 random bits need no slow or keyed hash: guessing is hopeless.

    >>> len(refresh_digest("x"))
    64
    """
    return hashlib.sha256(token.encode()).hexdigest()


def new_session_id() -> str:
    """``s-`` and 16 hex digits.

    >>> sid = new_session_id()
    >>> sid.startswith("s-"), len(sid)
    (True, 18)
    """
    return f"s-{secrets.token_hex(8)}"


class SessionRefused(Exception):
    """A refresh was refused: ``expired``, ``revoked``, ``unknown`` or ``reused`` (the session is now revoked)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Session:
    """A signed-in device: the person, its lifetime and its current refresh token (by digest)."""

    id: str
    person_id: str
    community: str
    created_at: float
    expires_at: float
    refresh_digest: str
    spent_digests: list[str] = field(default_factory=list)
    refreshed_at: float | None = None
    revoked_at: float | None = None
    revoked_reason: str | None = None
    version: int = 0

    @classmethod
    def open(cls, person_id: str, community: str, now: float, ttl: float) -> tuple[Session, str]:
        """A new session and its first refresh token (the only time the token exists in clear)."""
        token = new_refresh_token()
        session = cls(id=new_session_id(), person_id=person_id, community=community, created_at=now,
                      expires_at=now + ttl, refresh_digest=refresh_digest(token))
        return session, token

    def active(self, now: float) -> bool:
        """Not revoked and not expired.

        >>> session, _ = Session.open("p-1", "xingqiao", now=0.0, ttl=100)
        >>> session.active(99.0), session.active(100.0)
        (True, False)
        """
        return self.revoked_at is None and now < self.expires_at

    def rotate(self, presented: str, now: float) -> str:
        """Spend the presented refresh token (its digest) and return the next one.

        A presented token that was already spent means two parties hold it: one is a thief,
        and nobody can tell which, so the session is revoked (the caller must save it).
        """
        if presented in self.spent_digests:
            self.revoke(now, "refresh_token_reused")
            raise SessionRefused("reused")
        if not hmac.compare_digest(presented, self.refresh_digest):
            raise SessionRefused("unknown")
        if self.revoked_at is not None:
            raise SessionRefused("revoked")
        if now >= self.expires_at:
            raise SessionRefused("expired")
        token = new_refresh_token()
        self.spent_digests = ([*self.spent_digests, self.refresh_digest])[-SPENT_KEPT:]
        self.refresh_digest, self.refreshed_at = refresh_digest(token), now
        return token

    def revoke(self, now: float, reason: str) -> bool:
        """End the session; False if it had already ended (its first revocation stands).

        >>> session, _ = Session.open("p-1", "xingqiao", now=0.0, ttl=100)
        >>> session.revoke(5.0, "signed_out"), session.revoke(6.0, "admin"), session.revoked_at
        (True, False, 5.0)
        """
        if self.revoked_at is not None:
            return False
        self.revoked_at, self.revoked_reason = now, reason
        return True

    def access_ttl(self, now: float, ttl: int) -> int:
        """An access token's lifetime: ``ttl``, but never past the session's end.

        >>> session, _ = Session.open("p-1", "xingqiao", now=0.0, ttl=100)
        >>> session.access_ttl(10.0, 900), session.access_ttl(99.5, 900)
        (90, 1)
        """
        return max(1, min(int(ttl), int(self.expires_at - now)))

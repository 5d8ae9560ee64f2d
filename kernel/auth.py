"""Bearer tokens: signing (the CLI's ``huisheng token``) and verification (the gateway).

Tokens are HS256 JWTs signed with :attr:`Settings.secret`. A token names who
(``sub``), in which role (``role``) and for which community (``community``);
``iss`` is always ``huisheng`` so a token minted for another system with the
same secret is refused.

>>> from kernel.config import Settings
>>> settings = Settings(secret="a-test-secret-of-at-least-32-bytes!")
>>> token = issue_token(settings, "resident", "r-1", name="Li Hua", session="s-1")
>>> principal = verify_token(settings, token)
>>> principal.subject, principal.role, principal.community, principal.name, principal.session
('r-1', 'resident', 'xingqiao', 'Li Hua', 's-1')
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

import jwt

from kernel.config import Settings

# kernel.permissions's roles, repeated: importing it would bring nameko into the CLI (through kernel.errors).
ROLES: tuple[str, ...] = ("resident", "grid_worker", "volunteer", "secretary", "ops", "admin", "integrator")
INTEGRATOR = "integrator"
# Roles a bearer token may carry: ``integrator`` is only ever proven by an API key (the directory verifies it).
TOKEN_ROLES: tuple[str, ...] = tuple(role for role in ROLES if role != INTEGRATOR)
ISSUER = "huisheng"
ALGORITHM = "HS256"
DEFAULT_TTL = 8 * 3600  # one working day: long enough for a demo, short enough to expire
LEEWAY_SECONDS = 5  # tolerate small clock drift between the CLI's and the gateway's host
VERIFIED_TOKENS = 4096  # tokens remembered as verified (by the gateway), least recently used first out

_REQUIRED_CLAIMS = ["sub", "role", "iat", "exp", "iss"]


class AuthError(Exception):
    """A token was missing, malformed, forged or expired.

    ``code`` is stable and machine readable (``token_missing``, ``token_invalid``,
    ``token_expired``); ``message`` is for humans.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Principal:
    """Who is calling, as proven by a verified token or API key.

    ``grids`` and ``teams`` scope a grid worker's and a volunteer's view; ``home`` is a resident's home
    building, as the directory knew it when it signed the token (a ticket is placed in its grid without
    asking the directory again); ``session`` is the sign-in session (the token's ``sid``) that a sign-out
    or an admin's revocation ends; ``communities`` lists what an API key is scoped to (a token's principal
    has just ``community``).

    >>> Principal("gw-1", "grid_worker", "xingqiao", grids=("g3",)).grids
    ('g3',)
    """

    subject: str
    role: str
    community: str
    name: str | None = None
    grids: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()
    session: str | None = None
    communities: tuple[str, ...] = ()
    home: str | None = None

    def viewer(self) -> dict:
        """What an RPC needs to apply object-level rules: ``{"subject", "role", "community", "grids", "teams"}``,
        and a resident's ``home`` when the token names it.

        >>> Principal("r-1", "resident", "xingqiao", home="b03").viewer()["home"]
        'b03'
        """
        return {"subject": self.subject, "role": self.role, "community": self.community, "grids": list(self.grids),
                "teams": list(self.teams), **({"home": self.home} if self.home else {})}


def issue_token(settings: Settings, role: str, subject: str, community: str | None = None, ttl: int = DEFAULT_TTL,
                name: str | None = None, *, grids: tuple[str, ...] | list[str] = (),
                teams: tuple[str, ...] | list[str] = (), session: str | None = None, now: float | None = None,
                home: str | None = None) -> str:
    """Sign a token for ``subject`` acting as ``role``; raise ``ValueError`` on bad input.

    ``grids``, ``teams`` and ``home`` become the claims of the same names, ``session`` the ``sid`` claim.
    ``now`` (epoch seconds) exists so tests can mint already-expired tokens. The ``integrator``
    role is refused: only an API key carries it.
    """
    if role == INTEGRATOR:
        raise ValueError("the integrator role is carried by API keys only, never by a token")
    if role not in TOKEN_ROLES:
        raise ValueError(f"unknown role {role!r}; roles are: {', '.join(TOKEN_ROLES)}")
    if not subject:
        raise ValueError("subject must not be empty")
    if ttl <= 0:
        raise ValueError("ttl must be a positive number of seconds")
    issued_at = int(time.time() if now is None else now)
    claims = {"sub": str(subject), "role": role, "community": community or settings.community, "iat": issued_at,
              "exp": issued_at + int(ttl), "iss": ISSUER, "grids": [str(grid) for grid in grids],
              "teams": [str(team) for team in teams]}
    if name:
        claims["name"] = name
    if session:
        claims["sid"] = str(session)
    if home:
        claims["home"] = str(home)
    return jwt.encode(claims, settings.secret, algorithm=ALGORITHM)


def verify_token(settings: Settings, token: str) -> Principal:
    """Check signature, issuer, expiry and role of ``token``; raise :class:`AuthError` if any fails.

    A token that passed is remembered (by its exact text, with the secret) until it
    expires, so a client's next requests cost a lookup instead of a signature check;
    its expiry is checked on every use. A token that failed is checked again each time.
    """
    if not token:
        raise AuthError("token_missing", "a bearer token is required")
    principal, expires_at = _verified(settings.secret, settings.community, token)
    if time.time() > expires_at + LEEWAY_SECONDS:
        raise AuthError("token_expired", "the token has expired")
    return principal


@lru_cache(maxsize=VERIFIED_TOKENS)
def _verified(secret: str, default_community: str, token: str) -> tuple[Principal, float]:
    try:
        # Pinning the algorithm list is what stops "alg: none" and key-confusion tokens.
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], issuer=ISSUER, leeway=LEEWAY_SECONDS,
                            options={"require": _REQUIRED_CLAIMS})
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("token_expired", "the token has expired") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthError("token_invalid", f"the token is invalid: {exc}") from exc
    role = claims.get("role")
    if role not in TOKEN_ROLES:
        raise AuthError("token_invalid", f"the token names an unknown role {role!r}")
    grids, teams = claims.get("grids") or [], claims.get("teams") or []
    sid, home = claims.get("sid"), claims.get("home")
    if not _strings(grids) or not _strings(teams) or any(v is not None and not isinstance(v, str) for v in (sid, home)):
        raise AuthError("token_invalid", "the token's grids, teams, sid or home claim is malformed")
    principal = Principal(claims["sub"], role, claims.get("community") or default_community, claims.get("name"),
                          tuple(grids), tuple(teams), sid, home=home)
    return principal, float(claims["exp"])


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def token_from_header(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; :class:`AuthError` if absent."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("token_missing", "expected an 'Authorization: Bearer <token>' header")
    return token.strip()

"""Bearer tokens: signing (the CLI's ``huisheng token``, the directory's sign-in).

Tokens are HS256 JWTs signed with :attr:`Settings.secret`. A token names who
(``sub``), in which role (``role``) and for which community (``community``);
``iss`` is always ``huisheng`` so a token minted for another system with the
same secret is refused. The gateway verifies them (``gateway.auth.verify_token``).

>>> from kernel.config import Settings
>>> settings = Settings(secret="a-test-secret-of-at-least-32-bytes!")
>>> token = issue_token(settings, "resident", "r-1", name="Li Hua", session="s-1")
>>> claims = jwt.decode(token, settings.secret, algorithms=[ALGORITHM], issuer=ISSUER)
>>> claims["sub"], claims["role"], claims["community"], claims["name"], claims["sid"]
('r-1', 'resident', 'xingqiao', 'Li Hua', 's-1')
"""

from __future__ import annotations

import time

import jwt

from kernel.config import Settings
from kernel.permissions import INTEGRATOR, PEOPLE

# Roles a bearer token may carry: ``integrator`` is only ever proven by an API key (the directory verifies it).
TOKEN_ROLES: tuple[str, ...] = PEOPLE
ISSUER = "huisheng"
ALGORITHM = "HS256"
DEFAULT_TTL = 8 * 3600  # one working day: long enough for a demo, short enough to expire


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

"""Who is calling: bearer tokens and API keys, checked against a live feed of revocations.

A bearer token (``kernel.auth`` signs it) is verified here, locally; an API key (``X-API-Key``) by the
directory (``directory.verify_api_key``), whose answer is remembered for up to
:data:`KEY_CACHE_SECONDS`. Either way the caller is then checked against what the
directory has revoked: a background greenthread asks ``directory.revocations(since)``
every :data:`POLL_SECONDS` and the next request of a revoked session or key is refused,
whatever any cache remembers. If the directory cannot be asked, the last known set stays
in force, the feed keeps asking, and the outage is logged once (and its end once).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

import eventlet
import jwt
from nameko.extensions import DependencyProvider
from nameko.rpc import ReplyListener
from nameko.standalone.rpc import ClusterRpcProxy

from gateway.http import API_KEY_HEADER
from kernel.auth import ALGORITHM, ISSUER, TOKEN_ROLES
from kernel.config import Settings, settings_of
from kernel.errors import Unauthorized
from kernel.logging import get_logger
from kernel.permissions import require
from kernel.rpc import TimedServiceProxy

POLL_SECONDS = 0.5
KEY_CACHE_SECONDS = 30.0
KEY_CACHE_SIZE = 1024
REVOCATION_MEMORY_SECONDS = 24 * 3600  # longer than any token lives (the CLI's tokens last 8 h)
API_KEY_PATTERN = re.compile(r"hsk_([0-9a-f]{8})_[A-Za-z0-9_-]{16,128}")
LEEWAY_SECONDS = 5  # tolerate small clock drift between the token issuer's host and the gateway's
VERIFIED_TOKENS = 4096  # tokens remembered as verified, least recently used first out
REQUIRED_CLAIMS = ["sub", "role", "iat", "exp", "iss"]
log = get_logger(__name__)


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


def _refused(code: str, message: str) -> Unauthorized:
    """A 401 whose ``code`` (``token_missing``, ``token_invalid``, ``token_expired``) is stable."""
    return Unauthorized(message, {"token": [code]}, code=code)


def verify_token(settings: Settings, token: str) -> Principal:
    """Check signature, issuer, expiry and role of ``token``; :class:`Unauthorized` if any fails.

    A token that passed is remembered (by its exact text, with the secret) until it
    expires, so a client's next requests cost a lookup instead of a signature check;
    its expiry is checked on every use. A token that failed is checked again each time.
    """
    if not token:
        raise _refused("token_missing", "a bearer token is required")
    principal, expires_at = _verified(settings.secret, settings.community, token)
    if time.time() > expires_at + LEEWAY_SECONDS:
        raise _refused("token_expired", "the token has expired")
    return principal


@lru_cache(maxsize=VERIFIED_TOKENS)
def _verified(secret: str, default_community: str, token: str) -> tuple[Principal, float]:
    try:
        # Pinning the algorithm list is what stops "alg: none" and key-confusion tokens.
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], issuer=ISSUER, leeway=LEEWAY_SECONDS,
                            options={"require": REQUIRED_CLAIMS})
    except jwt.ExpiredSignatureError as exc:
        raise _refused("token_expired", "the token has expired") from exc
    except jwt.InvalidTokenError as exc:
        raise _refused("token_invalid", f"the token is invalid: {exc}") from exc
    role = claims.get("role")
    if role not in TOKEN_ROLES:
        raise _refused("token_invalid", f"the token names an unknown role {role!r}")
    grids, teams = claims.get("grids") or [], claims.get("teams") or []
    sid, home = claims.get("sid"), claims.get("home")
    if not _strings(grids) or not _strings(teams) or any(v is not None and not isinstance(v, str) for v in (sid, home)):
        raise _refused("token_invalid", "the token's grids, teams, sid or home claim is malformed")
    principal = Principal(claims["sub"], role, claims.get("community") or default_community, claims.get("name"),
                          tuple(grids), tuple(teams), sid, home=home)
    return principal, float(claims["exp"])


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def token_from_header(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; :class:`Unauthorized` if absent."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _refused("token_missing", "expected an 'Authorization: Bearer <token>' header")
    return token.strip()


class Revocations:
    """The sessions and API keys revoked so far, as the directory's feed reported them (by id).

    >>> revoked = Revocations()
    >>> revoked.apply({"sessions": ["s-1"], "api_keys": ["0a1b2c3d"], "until": 5})
    5.0
    >>> revoked.session("s-1"), revoked.session("s-2"), revoked.key("0a1b2c3d"), revoked.key("ffffffff")
    (True, False, True, False)
    """

    def __init__(self) -> None:
        self.sessions: dict[str, float] = {}  # id -> when this gateway heard of it
        self.keys: dict[str, float] = {}

    def apply(self, answer: dict) -> float:
        """Take one answer of ``directory.revocations``; the time to ask from next."""
        now = time.monotonic()
        self.sessions.update(dict.fromkeys(answer.get("sessions") or (), now))
        self.keys.update(dict.fromkeys(answer.get("api_keys") or (), now))
        self._forget_older_than(now - REVOCATION_MEMORY_SECONDS)
        return float(answer.get("until") or 0)

    def session(self, sid: str | None) -> bool:
        return sid is not None and sid in self.sessions

    def key(self, key_id: str | None) -> bool:
        return key_id is not None and key_id in self.keys

    def _forget_older_than(self, cutoff: float) -> None:
        for known in (self.sessions, self.keys):
            for name in [name for name, at in known.items() if at < cutoff]:
                del known[name]


class Authenticator(DependencyProvider):
    """Injects :class:`Authentication`; keeps the revocation feed and the cache of verified API keys."""

    rpc_reply_listener = ReplyListener()

    def setup(self) -> None:
        self.settings = settings_of(self.container.config)
        self.revoked = Revocations()
        self.keys: OrderedDict[str, tuple[Principal, str, float]] = OrderedDict()
        self.since = 0.0
        self.running = False
        self.failing = False
        self.polls = 0  # answers received: tests wait on it

    def start(self) -> None:
        self.running = True
        self.container.spawn_managed_thread(self._feed)

    def stop(self) -> None:
        self.running = False

    def kill(self) -> None:
        self.running = False

    def get_dependency(self, worker_ctx) -> Authentication:
        return Authentication(self, worker_ctx)

    # --- the revocation feed -------------------------------------------------------------------

    def _feed(self) -> None:
        config = {"AMQP_URI": self.container.config["AMQP_URI"], "serializer": "json"}
        while self.running:
            try:
                with ClusterRpcProxy(config, timeout=max(1.0, self.settings.rpc_timeout)) as proxy:
                    while self.running:
                        self.absorb(proxy.directory.revocations(self.since))
                        eventlet.sleep(POLL_SECONDS)
            except Exception as error:  # the directory or the broker is away: keep the last known set
                if not self.failing:
                    log.warning("gateway.revocations_unavailable", error=type(error).__name__)
                    self.failing = True
                eventlet.sleep(POLL_SECONDS)

    def absorb(self, answer: dict) -> None:
        """Take one answer of ``directory.revocations``: remember what it revokes, drop cached keys it names."""
        until = self.revoked.apply(answer or {})
        self.since = max(self.since, until)
        for digest, (_, key_id, _) in list(self.keys.items()):
            if self.revoked.key(key_id):
                self.keys.pop(digest, None)
        self.polls += 1
        if self.failing:
            log.info("gateway.revocations_back")
            self.failing = False

    # --- API keys ------------------------------------------------------------------------------

    def remembered_key(self, digest: str) -> tuple[Principal, str] | None:
        entry = self.keys.get(digest)
        if entry is None or entry[2] < time.monotonic():
            self.keys.pop(digest, None)
            return None
        return entry[0], entry[1]

    def remember_key(self, digest: str, principal: Principal, key_id: str) -> None:
        self.keys[digest] = (principal, key_id, time.monotonic() + KEY_CACHE_SECONDS)
        while len(self.keys) > KEY_CACHE_SIZE:
            self.keys.popitem(last=False)


class Authentication:
    """One request's view of the :class:`Authenticator`."""

    def __init__(self, provider: Authenticator, worker_ctx) -> None:
        self.provider = provider
        self.worker_ctx = worker_ctx

    def principal(self, request, action: str | None = None) -> Principal:
        """The caller (bearer token or ``X-API-Key``): 401 if unproven or revoked, 403 if ``action`` is not theirs."""
        key = request.headers.get(API_KEY_HEADER)
        caller = self.by_key(key) if key is not None else self._by_token(request.headers.get("Authorization"))
        if action is not None:
            require(action, caller.role)
        return caller

    def _by_token(self, authorization: str | None) -> Principal:
        caller = verify_token(self.provider.settings, token_from_header(authorization))
        if self.provider.revoked.session(caller.session):
            raise Unauthorized("this session has been signed out or revoked", {"token": ["token_revoked"]},
                               code="token_revoked")
        return caller

    def by_key(self, key: str) -> Principal:
        """The integrator an API key belongs to (``X-API-Key``, or Open311's ``api_key``): 401 if unknown or revoked."""
        matched = API_KEY_PATTERN.fullmatch(key.strip())
        if matched is None:
            raise Unauthorized("the API key is not valid", {API_KEY_HEADER: ["invalid"]}, code="api_key_invalid")
        key_id = matched.group(1)
        if self.provider.revoked.key(key_id):
            raise Unauthorized("the API key has been revoked", {API_KEY_HEADER: ["revoked"]}, code="api_key_revoked")
        digest = hashlib.sha256(key.strip().encode()).hexdigest()
        remembered = self.provider.remembered_key(digest)
        if remembered is not None:
            caller = remembered[0]
        else:
            directory = TimedServiceProxy(self.worker_ctx, "directory", self.provider.rpc_reply_listener,
                                          timeout=self.provider.settings.rpc_timeout)
            answer = directory.verify_api_key(key.strip())
            communities = tuple(answer.get("communities") or ())
            # whatever the answer says, a key's principal is an integrator: a key is never more
            caller = Principal(subject=answer["subject"], role="integrator",
                               community=answer.get("community") or (communities[0] if communities else ""),
                               communities=communities)
            key_id = answer.get("key_id") or key_id
            self.provider.remember_key(digest, caller, key_id)
        if self.provider.revoked.key(key_id):
            raise Unauthorized("the API key has been revoked", {API_KEY_HEADER: ["revoked"]}, code="api_key_revoked")
        return caller

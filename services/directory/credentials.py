"""Sign-in codes, sessions and API keys: their persistence, and the desk the directory's entrypoints call.

:class:`CredentialRepository` stores them; :class:`SignInDesk` does what ``request_code``, ``sign_in``,
``refresh``, ``sign_out``, ``revoke_person``, ``revocations`` and the API-key RPCs of
:class:`services.directory.service.DirectoryService` promise (docs/directory.md), with the rules
of :mod:`services.directory.signin` and :mod:`services.directory.apikeys`.

Three collections of the directory's database, one document per thing so that each change is
one write:

- ``signin_codes``: one per phone (``_id`` is the phone's keyed hash), the latest code's HMAC and
  the phone's sending history; removed by a TTL index an hour after its last code;
- ``sessions``: one per signed-in device, the current refresh token's SHA-256 and the spent ones;
  removed by a TTL index once its tokens can no longer be used;
- ``api_keys``: one per key (``_id`` is the key's id), its SHA-256 and its scope.

Writes of codes and sessions are conditional on the version read, so two concurrent refreshes of
one token cannot both succeed: the loser reloads, finds its token spent, and revokes the session.

Times are epoch seconds in the domain and timezone-aware datetimes in the database (TTL indexes
need dates); the helpers below convert.

>>> to_epoch(to_date(1767225600.5))
1767225600.5
>>> to_date(None) is None
True
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nameko.extensions import DependencyProvider
from pymongo import ASCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from kernel.auth import issue_token
from kernel.config import Settings, settings_of
from kernel.errors import Conflict, NotFound, TooManyRequests, Unauthorized, ValidationFailed
from kernel.logging import get_logger
from services.directory.apikeys import LAST_USE_INTERVAL, ApiKey, InvalidKeySpec, KeyRefused, parse_key
from services.directory.people import InvalidPhone, Person, mask_phone, normalise_phone
from services.directory.repository import DirectoryRepository, phone_hash
from services.directory.sealing import Sealer, master_key
from services.directory.signin import (
    HOUR,
    CodeChallenge,
    CodeRefused,
    ResendRefused,
    Session,
    SessionRefused,
    code_digest,
    hash_password,
    new_code,
    password_needs_rehash,
    refresh_digest,
    verify_password_or_decoy,
)

CODES = "signin_codes"
SESSIONS = "sessions"
API_KEYS = "api_keys"
log = get_logger(__name__)
# A revoked session stays listed this long after its end, past the life of any access token it issued.
SESSION_AFTERLIFE = timedelta(days=1)
# revocations(since) answers what was revoked at or after ``since - REVOCATION_OVERLAP``: a revocation
# stamped just before a poll's ``until`` may commit just after that poll read, and must not be missed.
REVOCATION_OVERLAP = 2.0


def to_date(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def to_epoch(when: datetime | None) -> float | None:
    if when is None:
        return None
    if when.tzinfo is None:  # a client without tz_aware: MongoDB dates are UTC
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def iso(epoch: float | None) -> str | None:
    """An epoch time as ISO 8601 in UTC (what RPC answers carry).

    >>> iso(0.0)
    '1970-01-01T00:00:00+00:00'
    """
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()


def revoked_filter(since: float) -> dict:
    """The query of what was revoked since ``since``: a range of the ``revoked_at`` indexes (null sorts apart).

    >>> revoked_filter(10.0)["revoked_at"]["$gte"].timestamp()
    8.0
    """
    return {"revoked_at": {"$gte": to_date(max(0.0, since - REVOCATION_OVERLAP))}}


class CredentialRepository:
    """Codes, sessions and API keys in the directory's database."""

    def __init__(self, db: Database):
        self.codes = db[CODES]
        self.sessions = db[SESSIONS]
        self.api_keys = db[API_KEYS]

    @staticmethod
    def ensure_indexes(db: Database) -> None:
        db[CODES].create_index([("purge_at", ASCENDING)], expireAfterSeconds=0, name="codes_ttl")
        sessions = db[SESSIONS]
        sessions.create_index([("refresh_digest", ASCENDING)], name="by_refresh")
        sessions.create_index([("spent_digests", ASCENDING)], name="by_spent_refresh")
        sessions.create_index([("community", ASCENDING), ("person_id", ASCENDING)], name="by_person")
        # revocations(since) runs every half second on every gateway: it must be a range scan of an index.
        sessions.create_index([("revoked_at", ASCENDING)], name="by_revoked")
        sessions.create_index([("purge_at", ASCENDING)], expireAfterSeconds=0, name="sessions_ttl")
        keys = db[API_KEYS]
        keys.create_index([("name", ASCENDING)], unique=True, name="key_name")
        keys.create_index([("revoked_at", ASCENDING)], name="keys_by_revoked")

    # --- sign-in codes

    def challenge(self, phone_hash: str) -> CodeChallenge:
        """The phone's code state; a fresh one (version 0) if it has none."""
        document = self.codes.find_one({"_id": phone_hash})
        if document is None:
            return CodeChallenge(phone_hash)
        return CodeChallenge(
            phone_hash=phone_hash, digest=document.get("digest"), issued_at=to_epoch(document.get("issued_at")),
            expires_at=to_epoch(document.get("expires_at")), wrong_tries=document.get("wrong_tries", 0),
            spent=document.get("spent", False), sent_at=[to_epoch(at) for at in document.get("sent_at", [])],
            version=document.get("version", 0),
        )

    def save_challenge(self, challenge: CodeChallenge) -> bool:
        """Write the challenge if nobody wrote it since it was read; False if somebody did."""
        last_sent = max(challenge.sent_at, default=challenge.issued_at or 0.0)
        document = {
            "digest": challenge.digest, "issued_at": to_date(challenge.issued_at),
            "expires_at": to_date(challenge.expires_at), "wrong_tries": challenge.wrong_tries,
            "spent": challenge.spent, "sent_at": [to_date(at) for at in challenge.sent_at],
            # kept while its sending history still limits new codes
            "purge_at": to_date(last_sent + HOUR + 60), "version": challenge.version + 1,
        }
        if not self._write(self.codes, challenge.phone_hash, challenge.version, document):
            return False
        challenge.version += 1
        return True

    # --- sessions

    def add_session(self, session: Session) -> None:
        self.sessions.insert_one({"_id": session.id, **self._session_fields(session), "version": 1})
        session.version = 1

    def session(self, session_id: str) -> Session | None:
        document = self.sessions.find_one({"_id": session_id})
        return None if document is None else self._session(document)

    def session_by_refresh(self, digest: str) -> Session | None:
        """The session whose current or a spent refresh token has this digest (two indexed lookups)."""
        document = self.sessions.find_one({"refresh_digest": digest})
        if document is None:
            document = self.sessions.find_one({"spent_digests": digest})
        return None if document is None else self._session(document)

    def save_session(self, session: Session) -> bool:
        """Write the session if nobody wrote it since it was read; False if somebody did."""
        if not self._write(self.sessions, session.id, session.version,
                           {**self._session_fields(session), "version": session.version + 1}):
            return False
        session.version += 1
        return True

    def revoke_sessions_of(self, community: str, person_id: str, now: float, reason: str) -> list[str]:
        """Revoke every session of a person that is not revoked yet; the ids of those revoked now."""
        ids = [document["_id"] for document in self.sessions.find(
            {"community": community, "person_id": person_id, "revoked_at": None}, {"_id": 1})]
        if ids:
            # The version moves too, so that a refresh that read a session before this write loses its race.
            self.sessions.update_many({"_id": {"$in": ids}, "revoked_at": None},
                                      {"$set": {"revoked_at": to_date(now), "revoked_reason": reason},
                                       "$inc": {"version": 1}})
        return ids

    @staticmethod
    def _session_fields(session: Session) -> dict:
        return {
            "person_id": session.person_id, "community": session.community,
            "created_at": to_date(session.created_at), "expires_at": to_date(session.expires_at),
            "refresh_digest": session.refresh_digest, "spent_digests": list(session.spent_digests),
            "refreshed_at": to_date(session.refreshed_at), "revoked_at": to_date(session.revoked_at),
            "revoked_reason": session.revoked_reason,
            "purge_at": to_date(session.expires_at) + SESSION_AFTERLIFE,
        }

    @staticmethod
    def _session(document: dict) -> Session:
        return Session(
            id=document["_id"], person_id=document["person_id"], community=document["community"],
            created_at=to_epoch(document["created_at"]), expires_at=to_epoch(document["expires_at"]),
            refresh_digest=document["refresh_digest"], spent_digests=list(document.get("spent_digests", [])),
            refreshed_at=to_epoch(document.get("refreshed_at")), revoked_at=to_epoch(document.get("revoked_at")),
            revoked_reason=document.get("revoked_reason"), version=document.get("version", 1),
        )

    # --- API keys

    def add_key(self, record: ApiKey) -> bool:
        """Insert a new key; False if its name (or, by a one-in-four-billion chance, its id) is taken."""
        try:
            self.api_keys.insert_one({"_id": record.key_id, **self._key_fields(record)})
            return True
        except DuplicateKeyError:
            return False

    def key(self, key_id: str) -> ApiKey | None:
        document = self.api_keys.find_one({"_id": key_id})
        return None if document is None else self._key(document)

    def key_by_name(self, name: str) -> ApiKey | None:
        document = self.api_keys.find_one({"name": name})
        return None if document is None else self._key(document)

    def all_keys(self) -> list[ApiKey]:
        return [self._key(document) for document in self.api_keys.find({}, sort=[("name", ASCENDING)])]

    def revoke_key(self, name: str, now: float) -> ApiKey | None:
        """Revoke the named key (a second revocation keeps the first time); None if there is no such key."""
        self.api_keys.update_one({"name": name, "revoked_at": None}, {"$set": {"revoked_at": to_date(now)}})
        document = self.api_keys.find_one({"name": name})
        return None if document is None else self._key(document)

    def note_key_use(self, key_id: str, now: float, not_after: float) -> None:
        """Set the key's last use to ``now`` unless another verification noted one after ``not_after``."""
        self.api_keys.update_one(
            {"_id": key_id, "$or": [{"last_used_at": None}, {"last_used_at": {"$lt": to_date(not_after)}}]},
            {"$set": {"last_used_at": to_date(now)}})

    @staticmethod
    def _key_fields(record: ApiKey) -> dict:
        return {
            "name": record.name, "communities": list(record.communities), "digest": record.digest,
            "created_at": to_date(record.created_at), "created_by": record.created_by,
            "last_used_at": to_date(record.last_used_at), "revoked_at": to_date(record.revoked_at),
        }

    @staticmethod
    def _key(document: dict) -> ApiKey:
        return ApiKey(
            key_id=document["_id"], name=document["name"], communities=list(document["communities"]),
            digest=document["digest"], created_at=to_epoch(document["created_at"]),
            created_by=document.get("created_by"), last_used_at=to_epoch(document.get("last_used_at")),
            revoked_at=to_epoch(document.get("revoked_at")),
        )

    # --- revocations

    def revoked_since(self, since: float) -> dict[str, list[str]]:
        """Ids of the sessions and API keys revoked at or after ``since`` (less the overlap): index range scans."""
        after = revoked_filter(since)
        return {
            "sessions": [document["_id"] for document in self.sessions.find(after, {"_id": 1})],
            "api_keys": [document["_id"] for document in self.api_keys.find(after, {"_id": 1})],
        }

    # ---

    @staticmethod
    def _write(collection, document_id: str, expected_version: int, fields: dict[str, Any]) -> bool:
        """Insert (version 0) or update-if-unchanged one document; False if another writer came first."""
        if expected_version == 0:
            try:
                collection.insert_one({"_id": document_id, **fields})
                return True
            except DuplicateKeyError:
                return False
        result = collection.update_one({"_id": document_id, "version": expected_version}, {"$set": fields})
        return result.matched_count == 1


# --- keys


@dataclass(frozen=True)
class SignInKit:
    """What sign-in needs from the settings: the settings, the sealer (phone lookup hashes) and the code key."""

    settings: Settings
    sealer: Sealer
    code_key: bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> SignInKit:
        """The kit of ``settings``; the code key is derived from the data key, apart from the sealer's keys.

        >>> kit = SignInKit.from_settings(Settings(secret="s"))
        >>> len(kit.code_key), kit.code_key == SignInKit.from_settings(Settings(secret="t")).code_key
        (32, False)
        """
        master = master_key(settings)
        code_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"huisheng.directory",
                        info=b"huisheng sign-in code v1").derive(master)
        return cls(settings=settings, sealer=Sealer(master), code_key=code_key)


class Background(DependencyProvider):
    """Injects ``spawn(work)``: run ``work`` on a thread the container manages, after the worker answers.

    ``work`` must not raise (an error in a managed thread kills the container): it logs its failures.
    """

    def get_dependency(self, worker_ctx) -> Callable[[Callable[[], None]], Any]:
        def spawn(work: Callable[[], None]) -> Any:
            return self.container.spawn_managed_thread(work, identifier=f"{worker_ctx.service_name}.background")
        return spawn


class SignInKeys(DependencyProvider):
    """Injects the container's :class:`SignInKit` (keys are derived once, at start)."""

    kit: SignInKit | None = None

    def setup(self) -> None:
        self.kit = SignInKit.from_settings(settings_of(self.container.config))

    def get_dependency(self, worker_ctx) -> SignInKit:
        return self.kit


# --- the sign-in desk: what the directory's sign-in and key entrypoints do

SENT = {"sent": True}
WRITE_ATTEMPTS = 3  # reloads after losing a race on one code or session document


def _bad_credentials() -> Unauthorized:
    # One answer for every failure: an unknown phone, a wrong, expired or spent code, a wrong password.
    return Unauthorized("the phone number, code or password is not right", code="invalid_credentials")


def _bad_refresh() -> Unauthorized:
    return Unauthorized("the refresh token is not valid; sign in again", code="invalid_refresh_token")


def _bad_key() -> Unauthorized:
    return Unauthorized("the API key is not valid", code="invalid_api_key")


def _too_many() -> TooManyRequests:
    return TooManyRequests("too many wrong tries; ask for a new code", code="too_many_attempts")


def actor_name(actor: object) -> str | None:
    """Who acted, from a viewer dict (its subject) or a plain string (the CLI's user).

    >>> actor_name({"subject": "p-0123456789ab", "role": "admin"}), actor_name("cli:ops"), actor_name(None)
    ('p-0123456789ab', 'cli:ops', None)
    """
    if isinstance(actor, dict):
        actor = actor.get("subject")
    return str(actor)[:128] if actor else None


def choose_person(people: list[Person]) -> Person | None:
    """The account a phone signs in to: a live person, preferring one who has not moved out.

    >>> from datetime import datetime
    >>> gone = Person("p-000000000001", "xq", "甲", "13800001234", moved_out_at=datetime(2025, 1, 1))
    >>> here = Person("p-000000000002", "xq", "甲", "13800001234")
    >>> choose_person([gone, here]).id, choose_person([]) is None
    ('p-000000000002', True)
    """
    live = [person for person in people if person.erased_at is None]
    live.sort(key=lambda person: (person.moved_out_at is not None, person.id))
    return live[0] if live else None


def needs_password(person: Person) -> bool:
    """Staff (anyone with a staff role) and anyone who has set a password give it as well as the code."""
    return person.is_staff or bool(person.password_hash)


class SignInDesk:
    """Sign-in, sessions and API keys over the credential and people repositories (``clock``: epoch seconds).

    ``notify`` is the worker's RPC proxy to the notify service: a code leaves the directory only
    through ``notify.send_code`` — never in an event, the outbox, a log line or an exception.
    """

    def __init__(self, db: Database, kit: SignInKit, notify: Any, clock: Callable[[], float] = time.time,
                 spawn: Callable[[Callable[[], None]], Any] | None = None):
        self.credentials = CredentialRepository(db)
        self.people = DirectoryRepository(db, kit.sealer)
        self.kit, self.notify, self.clock = kit, notify, clock
        self.spawn = spawn or (lambda work: work())

    # --- codes and sign-in

    def request_code(self, phone: object) -> dict:
        """Send a code to a known phone within the limits; the answer is the same whatever happened."""
        number = self._phone(phone)
        if number is None:
            raise ValidationFailed("the request is not valid", {"phone": ["not a mainland mobile number"]})
        key = phone_hash(self.kit.sealer, number)
        person = choose_person(self.people.by_phone(number))
        # An unknown phone gets a challenge too, for a code nobody is sent: it then answers wrong tries
        # exactly as a known phone does (401, then 429), which would otherwise tell the two apart.
        code = new_code()
        digest = code_digest(self.kit.code_key, key, code)
        for _ in range(WRITE_ATTEMPTS):
            challenge = self.credentials.challenge(key)
            try:
                challenge.issue(digest, self.clock())
            except ResendRefused as refused:
                log.info("signin.code_throttled", phone=mask_phone(number), retry_after=refused.retry_after)
                return dict(SENT)
            if self.credentials.save_challenge(challenge):
                break
        else:
            return dict(SENT)  # concurrent requests for one phone: another one issued its code
        if person is not None:
            # Sent after the answer, not before it: waiting for notify and the SMS provider would make
            # a known phone's answer slower than an unknown one's, which would tell them apart.
            self.spawn(lambda: self._send_code(person, number, code))
        return dict(SENT)

    def _send_code(self, person: Person, number: str, code: str) -> None:
        """Text the code through notify; failures are logged (never the code), the resident asks again."""
        try:
            answer = self.notify.send_code(person.community, number, code, "sign_in")
            answer = answer if isinstance(answer, dict) else {}
            if answer.get("sent"):
                log.info("signin.code_sent", person_id=person.id, phone=mask_phone(number))
            else:  # notify answers a provider's refusal: only its code is logged
                log.error("signin.code_not_sent", person_id=person.id, phone=mask_phone(number),
                          error=(answer.get("error") or {}).get("code"))
        except Exception as error:
            # Only the error's class: a remote error's text could quote the call's arguments.
            log.error("signin.code_not_sent", person_id=person.id, phone=mask_phone(number),
                      error=type(error).__name__)

    def sign_in(self, phone: object, code: object, password: object = None) -> dict:
        """Tokens for a right phone, code (and staff password); 401 ``invalid_credentials`` otherwise."""
        number = self._phone(phone)
        if number is None or not isinstance(code, str | int) or (password is not None
                                                                  and not isinstance(password, str)):
            raise _bad_credentials()
        key = phone_hash(self.kit.sealer, number)
        digest = code_digest(self.kit.code_key, key, str(code).strip())
        person = choose_person(self.people.by_phone(number))
        password_ok: bool | None = None
        for _ in range(WRITE_ATTEMPTS):
            challenge = self.credentials.challenge(key)
            if challenge.version == 0:
                raise _bad_credentials()  # no code was ever asked for this phone
            second_factor = True
            if person is not None and needs_password(person) and challenge.matches(digest):
                if password_ok is None:  # argon2 costs tens of milliseconds: once per sign-in
                    password_ok = verify_password_or_decoy(person.password_hash, password)
                second_factor = password_ok
            try:
                challenge.redeem(digest, self.clock(), second_factor=second_factor)
            except CodeRefused as refused:
                if refused.reason == "wrong" and not self.credentials.save_challenge(challenge):
                    continue  # another try was counted meanwhile: count this one on the fresh state
                log.info("signin.refused", reason=refused.reason, phone=mask_phone(number))
                raise (_too_many() if refused.too_many else _bad_credentials()) from None
            if self.credentials.save_challenge(challenge):
                break
        else:
            raise _bad_credentials()
        if person is None:  # a one-in-a-million guess of the code nobody was sent
            raise _bad_credentials()
        if password_ok and person.password_hash and password_needs_rehash(person.password_hash):
            self._rehash(person, password)  # type: ignore[arg-type]
        now = self.clock()
        session, refresh_token = Session.open(person.id, person.community, now, self.kit.settings.refresh_token_ttl)
        self.credentials.add_session(session)
        log.info("signin.signed_in", person_id=person.id, session_id=session.id, role=person.role)
        return self._tokens(person, session, refresh_token, now)

    def _rehash(self, person: Person, password: str) -> None:
        """Store the password again under today's argon2 parameters, unless it changed meanwhile."""
        self.people.people.update_one({"_id": person.id, "password_hash": person.password_hash},
                                      {"$set": {"password_hash": hash_password(password)}})
        log.info("signin.password_rehashed", person_id=person.id)

    def refresh(self, refresh_token: object) -> dict:
        """New tokens for a current refresh token; a spent one revokes its session (theft detection)."""
        if not isinstance(refresh_token, str) or not refresh_token or len(refresh_token) > 256:
            raise _bad_refresh()
        digest = refresh_digest(refresh_token)
        for _ in range(WRITE_ATTEMPTS):
            session = self.credentials.session_by_refresh(digest)
            if session is None:
                raise _bad_refresh()
            now = self.clock()
            try:
                token = session.rotate(digest, now)
            except SessionRefused as refused:
                if refused.reason == "reused":
                    if not self.credentials.save_session(session):
                        continue
                    log.warning("signin.refresh_reused", session_id=session.id, person_id=session.person_id)
                raise _bad_refresh() from None
            if self.credentials.save_session(session):
                break
        else:
            raise _bad_refresh()
        person = self.people.get(session.community, session.person_id)
        if person is None or person.erased_at is not None:
            session.revoke(now, "person_gone")
            self.credentials.save_session(session)
            raise _bad_refresh()
        return self._tokens(person, session, token, now)

    def sign_out(self, session_id: object) -> dict:
        """End a session (idempotent): ``{"session_id", "revoked_at"}``; ``revoked_at`` None if unknown."""
        if not isinstance(session_id, str) or not session_id:
            raise ValidationFailed("the request is not valid", {"session_id": ["a session id is required"]})
        for _ in range(WRITE_ATTEMPTS):
            session = self.credentials.session(session_id)
            if session is None:
                return {"session_id": session_id, "revoked_at": None}
            if not session.revoke(self.clock(), "signed_out") or self.credentials.save_session(session):
                log.info("signin.signed_out", session_id=session_id)
                return {"session_id": session_id, "revoked_at": iso(session.revoked_at)}
        raise Conflict(f"session {session_id} is changing; try again")

    def revoke_person(self, community: object, person_id: object, actor: object) -> dict:
        """End every session of a person: ``{"person_id", "sessions": [ids revoked now], "revoked_at"}``."""
        if not isinstance(community, str) or not isinstance(person_id, str):
            raise ValidationFailed("the request is not valid", {"person_id": ["a community and a person id"]})
        if self.people.get(community, person_id) is None:
            raise NotFound(f"no person {person_id} in {community}")
        now = self.clock()
        ids = self.credentials.revoke_sessions_of(community, person_id, now, "revoked_by_admin")
        log.info("signin.person_revoked", person_id=person_id, sessions=len(ids), actor=actor_name(actor))
        return {"person_id": person_id, "sessions": ids, "revoked_at": iso(now)}

    def end_sessions_of(self, community: str, person_id: str, reason: str) -> list[str]:
        """Revoke a person's sessions without checks (for erasure): the ids revoked now."""
        return self.credentials.revoke_sessions_of(community, person_id, self.clock(), reason)

    def revocations(self, since: object) -> dict:
        """Sessions and keys revoked since ``since`` (epoch seconds), and the time to ask from next."""
        if isinstance(since, bool) or not isinstance(since, int | float) or since != since:
            raise ValidationFailed("the request is not valid", {"since": ["epoch seconds, a number"]})
        until = self.clock()  # before the reads: anything committed after them is in the next answer
        return {**self.credentials.revoked_since(float(since)), "until": until}

    def _tokens(self, person: Person, session: Session, refresh_token: str, now: float) -> dict:
        settings = self.kit.settings
        ttl = session.access_ttl(now, settings.access_token_ttl)
        access = issue_token(settings, person.role, person.id, person.community, ttl=ttl, name=person.name,
                             grids=person.grids, teams=person.teams, session=session.id, now=now,
                             home=person.building if person.role == "resident" else None)
        return {"access_token": access, "refresh_token": refresh_token, "token_type": "Bearer", "expires_in": ttl}

    @staticmethod
    def _phone(phone: object) -> str | None:
        try:
            return normalise_phone(phone)  # type: ignore[arg-type]
        except InvalidPhone:
            return None

    # --- API keys

    def create_api_key(self, name: object, communities: object, actor: object) -> dict:
        """A new key, shown this once: ``{"name", "key", "key_id", "communities", "created_at"}``."""
        try:
            key, record = ApiKey.create(name, communities, actor_name(actor), self.clock())  # type: ignore[arg-type]
        except InvalidKeySpec as invalid:
            raise ValidationFailed("the API key is not valid", invalid.errors) from None
        unknown = [code for code in record.communities if self.people.community(code) is None]
        if unknown:
            raise ValidationFailed("the API key is not valid",
                                   {"communities": [f"unknown community {code!r}" for code in unknown]})
        if not self.credentials.add_key(record):
            raise Conflict(f"an API key named {record.name!r} exists already")
        log.info("apikey.created", name=record.name, key_id=record.key_id, actor=record.created_by)
        return {"name": record.name, "key": key, "key_id": record.key_id, "communities": record.communities,
                "created_at": iso(record.created_at)}

    def list_api_keys(self) -> dict:
        return {"items": [key_view(record) for record in self.credentials.all_keys()], "next_cursor": None}

    def revoke_api_key(self, name: object) -> dict:
        if not isinstance(name, str) or not name:
            raise ValidationFailed("the request is not valid", {"name": ["the key's name is required"]})
        record = self.credentials.revoke_key(name, self.clock())
        if record is None:
            raise NotFound(f"no API key named {name!r}")
        log.info("apikey.revoked", name=record.name, key_id=record.key_id)
        return key_view(record)

    def verify_api_key(self, key: object) -> dict:
        """The key's principal, or 401 ``invalid_api_key``; notes the last use at most once a minute."""
        try:
            record = self.credentials.key(parse_key(key))
            if record is None:
                raise KeyRefused("unknown")
            now = self.clock()
            principal = record.verify(key, now)  # type: ignore[arg-type]
        except KeyRefused as refused:
            log.info("apikey.refused", reason=refused.reason)
            raise _bad_key() from None
        if record.due_for_use_note(now):
            self.credentials.note_key_use(record.key_id, now, not_after=now - LAST_USE_INTERVAL)
        return principal


def key_view(record: ApiKey) -> dict:
    """A key's record as lists show it: never the key, nor its digest."""
    return {"name": record.name, "key_id": record.key_id, "communities": list(record.communities),
            "created_at": iso(record.created_at), "created_by": record.created_by,
            "last_used_at": iso(record.last_used_at), "revoked_at": iso(record.revoked_at)}

"""The directory service's entrypoints: places, people, segments, imports and personal data.

Entrypoints load their input, ask the domain (places, people, segments, importer) and
the repository, and answer plain dicts; bad input is ``ValidationFailed`` (422),
someone the viewer may not see is ``NotFound`` (404), an action their role may not
do ``Forbidden`` (403). Sign-in, sessions and API keys are at the bottom of the class.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from datetime import datetime

from nameko.timer import timer

from kernel.context import Context
from kernel.contracts import (  # the request schemas every caller and service share
    ConsentSchema,
    ImportSchema,
    StaffSchema,
    ViewerSchema,
)
from kernel.envelope import Envelope, utcnow
from kernel.errors import Forbidden, NotFound, ValidationFailed
from kernel.events import current_version
from kernel.health import HealthEndpoints
from kernel.idempotency import idempotent
from kernel.logging import get_logger
from kernel.mongo import Mongo
from kernel.outbox import Outbox
from kernel.rpc import RpcClient, rpc
from kernel.validation import load
from services.directory.credentials import Background, CredentialRepository, SignInDesk, SignInKeys  # B2
from services.directory.importer import (
    PLACE_COLUMNS,
    RESIDENT_COLUMNS,
    UnreadableFile,
    read_table,
    validate_places,
    validate_residents,
)
from services.directory.people import (
    RESIDENT,
    RETENTION,
    Address,
    Person,
    mask_phone,
    may_read_full,
    new_person_id,
    resident_scope,
)
from services.directory.places import Building, Community, Grid, PlaceError, Unit
from services.directory.repository import PEOPLE, DirectoryRepository, ensure_indexes, phone_hash
from services.directory.routing import Routing
from services.directory.schemas import AuditFiltersSchema
from services.directory.sealing import Sealing
from services.directory.seed import SeedOnStart
from services.directory.segments import load_spec, to_filter
from services.directory.signin import hash_password

VIEWER, STAFF, CONSENT, AUDIT_FILTERS, IMPORT = (
    ViewerSchema(), StaffSchema(), ConsentSchema(), AuditFiltersSchema(), ImportSchema())
MAX_CONTACTS = 1000  # ids per contacts call: notify asks in batches
RETENTION_INTERVAL = 3600.0  # seconds between two runs of the retention job
log = get_logger(__name__)


def audit_id(at: datetime) -> str:
    """An audit entry's id: sortable by time as text (the audit's cursor), unique by its random tail.

    >>> from datetime import UTC
    >>> audit_id(datetime(2026, 1, 1, tzinfo=UTC)) < audit_id(datetime(2026, 1, 2, tzinfo=UTC))
    True
    """
    return f"a-{int(at.timestamp() * 1000):013d}-{secrets.token_hex(4)}"


def decoded(content_base64: str) -> bytes:
    try:
        return base64.b64decode(content_base64, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValidationFailed("the file is not valid base64", {"content_base64": ["not base64"]}) from error


def _actor(actor: dict | str | None) -> str | None:
    """Who ran an import, for the log: a viewer's subject, or the id given."""
    return actor.get("subject") if isinstance(actor, dict) else actor


class DirectoryService(HealthEndpoints):
    name = "directory"

    db = Mongo(indexes=ensure_indexes)
    outbox = Outbox(collections=[PEOPLE])
    context = Context()
    sealer = Sealing()
    seeded = SeedOnStart()
    routing = Routing()  # the place tree per process, for the route every ticket asks at intake

    @property
    def directory(self) -> DirectoryRepository:
        return DirectoryRepository(self.db, self.sealer)

    def _community(self, code: str) -> Community:
        community = self.directory.community(code)
        if community is None:
            raise NotFound(f"no community {code}")
        return community

    # --- places
    @rpc
    def list_communities(self) -> dict:
        return {"items": [c.summary() for c in self.directory.communities()], "next_cursor": None}

    @rpc
    def place_tree(self, community: str) -> dict:
        tree = self._community(community)
        return tree.tree(self.directory.grid_workers(community))

    @rpc
    def locate(self, community: str, building: str) -> dict:
        """The grid of a building and its workers: where a ticket for the building is routed."""
        tree = self._community(community)
        grid = tree.grid_of(building)
        if grid is None:
            raise NotFound(f"no building {building} in {community}")
        workers = self.directory.grid_workers(community).get(grid.code, [])
        return {"community": community, "grid": grid.code, "building": building, "workers": workers}

    @rpc
    def route(self, community: str, resident: str | None = None, building: str | None = None) -> dict:
        """Where a new ticket goes (routing.py): ``{community, grid, building, workers}`` for the building given,
        else the resident's home; ``{}`` when neither is known; NotFound for a building the community lacks."""
        if building is None and resident is not None:
            building = self.directory.building_of(community, resident)
        if building is None:
            return {}
        found = self.routing(self._routing_snapshot).route(community, building)
        if found is None:
            raise NotFound(f"no building {building} in {community}")
        return found

    @rpc
    def routes(self, community: str) -> dict:
        """Every building's grid and every grid's workers (a copy the tickets service keeps a few seconds, so a
        ticket whose building is known is placed without a call): ``{"buildings": {...}, "workers": {...}}``."""
        return self.routing(self._routing_snapshot).routes(community)

    def _routing_snapshot(self, community: str) -> tuple[Community | None, dict[str, list[str]]]:
        return self.directory.community(community), self.directory.grid_workers(community)

    # --- people
    @rpc
    def me(self, community: str, subject: str) -> dict:
        person = self.directory.get(community, subject)
        if person is None or person.erased_at is not None:
            raise NotFound("no such person")
        return self._full_view(person, self.directory.community(community))

    @rpc
    def get_person(self, community: str, person_id: str, viewer: dict) -> dict:
        """A person's full record; a staff member's read of someone else's is written to the audit."""
        viewer = load(VIEWER, viewer)
        person = self.directory.get(community, person_id)
        tree = self.directory.community(community)
        if person is None or person.erased_at is not None or not may_read_full(
                viewer, community, person, self._grid_code(tree, person)):
            raise NotFound(f"no person {person_id} that you may see")
        if viewer["subject"] != person.id:
            now = utcnow()
            self.directory.audit({"_id": audit_id(now), "community": community, "at": now,
                                  "actor": viewer["subject"], "actor_role": viewer["role"],
                                  "subject": person.id, "action": "read_full_record",
                                  "correlation_id": self.context.correlation_id})
        return self._full_view(person, tree)

    @rpc
    def list_residents(self, community: str, viewer: dict, filters: dict | None = None,
                       cursor: str | None = None, limit: int = 50) -> dict:
        """Residents with masked phones, a page at a time; a grid worker sees their grids only."""
        viewer = load(VIEWER, viewer)
        try:
            scope = resident_scope(viewer, community)
        except PermissionError as error:
            raise Forbidden(str(error)) from error
        spec = load_spec(filters or {})
        tree = self.directory.community(community)
        query = to_filter(community, spec, tree, utcnow())
        query.pop("moved_out_at")  # the register lists who moved out too (until the retention job)
        if scope is not None:
            allowed = set(tree.buildings_of(scope)) if tree else set()
            wanted = set(query["address.building"]["$in"]) if "address.building" in query else allowed
            query["address.building"] = {"$in": sorted(allowed & wanted)}
        people, next_cursor = self.directory.find(query, cursor, limit)
        return {"items": [{**p.view(full=False), "grid": self._grid_code(tree, p)} for p in people],
                "next_cursor": next_cursor}

    @rpc
    def segment(self, community: str, spec: dict, cursor: str | None = None, limit: int = 200) -> dict:
        """The residents a broadcast to ``spec`` reaches, a page at a time."""
        spec = load_spec(spec)
        tree = self.directory.community(community)
        people, next_cursor = self.directory.find(to_filter(community, spec, tree, utcnow()), cursor, limit)
        return {"items": [{"id": p.id, "name": p.name, "grid": self._grid_code(tree, p), "building": p.building}
                          for p in people], "next_cursor": next_cursor}

    @rpc
    def contacts(self, community: str, person_ids: list[str]) -> dict:
        """How to reach these people (for notify only), with what they consented to (``{purpose: granted}``, the
        latest decision per purpose: notify never sends where consent was withdrawn); erased or unknown ids are
        left out."""
        if not isinstance(person_ids, list) or len(person_ids) > MAX_CONTACTS:
            raise ValidationFailed("person_ids must be a list", {"person_ids": [f"at most {MAX_CONTACTS} ids"]})
        return {p.id: {"phone": p.phone, "email": p.email, "wechat_openid": p.wechat_openid, "name": p.name,
                       "consents": {purpose: consent.granted for purpose, consent in p.consents.items()}}
                for p in self.directory.many(community, [str(i) for i in person_ids]) if p.erased_at is None}

    @rpc
    @idempotent
    def create_staff(self, community: str, data: dict) -> dict:
        """Add a staff member or volunteer; a person already known by that phone gains the roles."""
        data = load(STAFF, data)
        tree = self.directory.community(community)
        unknown = [g for g in data["grids"] if tree is None or tree.grid(g) is None]
        if unknown:
            raise ValidationFailed("unknown grids", {"grids": [f"no grid {g} in {community}" for g in unknown]})
        if "grid_worker" in data["roles"] and not data["grids"]:
            raise ValidationFailed("a grid worker needs grids", {"grids": ["a grid worker works at least one grid"]})
        now = utcnow()
        password_hash = hash_password(data["password"]) if data["password"] else None
        [existing, *_] = self.directory.by_phone(data["phone"], community) or [None]
        if existing is not None:
            existing.roles = list(dict.fromkeys([*existing.roles, *data["roles"]]))
            existing.grids = list(dict.fromkeys([*existing.grids, *data["grids"]]))
            existing.teams = list(dict.fromkeys([*existing.teams, *data["teams"]]))
            existing.email = data["email"] or existing.email
            existing.password_hash = password_hash or existing.password_hash
            existing.updated_at = now
            self.directory.replace(existing)
            person = existing
        else:
            person = Person(id=new_person_id(), community=community, name=data["name"], phone=data["phone"],
                            roles=list(data["roles"]), grids=list(data["grids"]), teams=list(data["teams"]),
                            email=data["email"], password_hash=password_hash, created_at=now, updated_at=now)
            self.directory.insert(person)
        log.info("directory.staff_saved", person_id=person.id, roles=person.roles, phone=mask_phone(person.phone))
        return self._full_view(person, tree)

    @rpc
    def record_move_out(self, community: str, person_id: str, moved_out_at: str | None = None) -> dict:
        """Mark a resident as moved out: the retention job erases them once the retention period passed."""
        person = self.directory.get(community, person_id)
        if person is None or person.erased_at is not None:
            raise NotFound(f"no person {person_id}")
        try:
            person.moved_out_at = datetime.fromisoformat(moved_out_at) if moved_out_at else utcnow()
        except ValueError as error:
            raise ValidationFailed("not a time", {"moved_out_at": ["an ISO 8601 time"]}) from error
        if person.moved_out_at.tzinfo is None:
            raise ValidationFailed("not a time", {"moved_out_at": ["a time with its offset"]})
        person.updated_at = utcnow()
        self.directory.replace(person)
        return {"id": person.id, "moved_out_at": person.moved_out_at.isoformat()}

    # --- personal data
    @rpc
    def export_person(self, community: str, subject: str) -> dict:
        """Everything the directory holds about a person, and who read their record."""
        person = self.directory.get(community, subject)
        if person is None or person.erased_at is not None:
            raise NotFound("no such person")
        reads, _ = self.directory.audit_entries(community, {"subject": subject}, None, 200)
        return {"exported_at": utcnow().isoformat(), "person": self._full_view(person, self.directory.community(
            community)), "record_reads": [self._audit_view(entry) for entry in reads]}

    @rpc
    def erase_person(self, community: str, subject: str) -> dict:
        """Erase a person's personal data (a tombstone stays) and publish ``resident.erased`` in the same write."""
        person = self.directory.get(community, subject)
        if person is None:
            raise NotFound("no such person")
        if person.erased_at is None:
            self._erase(person, utcnow())
            person = self.directory.get(community, subject)
        return {"erased": True, "resident_id": person.id, "erased_at": person.erased_at.isoformat()}

    def _erase(self, person: Person, now: datetime) -> bool:
        tombstone = person.erased(now)
        event = Envelope.new("resident.erased", {"resident_id": person.id, "erased_at": now.isoformat()},
                             community=person.community, correlation_id=self.context.correlation_id,
                             version=current_version("resident.erased"))
        if not self.directory.replace_with_events(tombstone, [event]):
            return False  # erased meanwhile by another worker, whose event stands
        self.outbox.flush_soon(PEOPLE, person.id, [event])
        # Signed out everywhere: the gateways hear of it within a second (directory.revocations).
        self.signin.end_sessions_of(person.community, person.id, "erased")
        log.info("directory.person_erased", person_id=person.id)
        return True

    @timer(interval=RETENTION_INTERVAL)
    def erase_departed(self) -> int:
        """The retention job: residents who moved out more than the retention period ago are erased."""
        now, erased = utcnow(), 0
        while True:
            due = self.directory.due_for_erasure(now - RETENTION)
            for person in due:
                erased += self._erase(person, now)
            if len(due) < 100:
                break
        if erased:
            log.info("directory.retention_erased", people=erased)
        return erased

    @rpc
    @idempotent
    def record_consent(self, community: str, subject: str, purpose: str, granted: bool) -> dict:
        data = load(CONSENT, {"purpose": purpose, "granted": granted})
        person = self.directory.get(community, subject)
        if person is None or person.erased_at is not None:
            raise NotFound("no such person")
        consent = person.record_consent(data["purpose"], data["granted"], utcnow())
        person.updated_at = consent.at
        self.directory.replace(person)
        return {"person_id": person.id, "purpose": consent.purpose, "granted": consent.granted,
                "at": consent.at.isoformat()}

    @rpc
    def audit(self, community: str, filters: dict | None = None, cursor: str | None = None,
              limit: int = 50) -> dict:
        filters = load(AUDIT_FILTERS, filters or {})
        entries, next_cursor = self.directory.audit_entries(community, filters, cursor, limit)
        return {"items": [self._audit_view(entry) for entry in entries], "next_cursor": next_cursor}

    # --- imports
    @rpc
    def import_places(self, community: str, filename: str, content_base64: str, actor: dict | str | None = None
                      ) -> dict:
        """Grids, buildings, units and rooms from a file: all rows valid, or nothing written."""
        rows = self._read(filename, content_base64, PLACE_COLUMNS)
        good, rejected = validate_places(rows)
        if rejected:
            return {"imported": 0, "rejected": rejected}
        tree = self.directory.community(community) or Community(community, community)
        for row in good:
            try:
                tree.add_grid(Grid(row["grid"], row["grid_name"] or row["grid"]))
                tree.add_building(row["grid"], Building(row["building"], row["building_name"], row["address"],
                                                        [Unit(row["unit"], rooms=row["rooms"])] if row["unit"] else []))
            except PlaceError as error:  # pragma: no cover - the rows were validated against the same rules
                return {"imported": 0, "rejected": [{"row": row["row"], "errors": {"building": [str(error)]}}]}
        self.directory.save_community(tree)
        log.info("directory.places_imported", community=community, rows=len(good), actor=_actor(actor))
        return {"imported": len(good), "rejected": []}

    @rpc
    def import_residents(self, community: str, filename: str, content_base64: str,
                         actor: dict | str | None = None) -> dict:
        """Residents from a file, in one transaction: all rows valid, or nothing written.

        A row whose phone is already a resident's updates that resident (the register is re-imported).
        """
        tree = self._community(community)
        rows = self._read(filename, content_base64, RESIDENT_COLUMNS)
        known = {b.code: {u.code for u in b.units} for g in tree.grids for b in g.buildings}
        good, rejected = validate_residents(rows, known, utcnow().year)
        if rejected:
            return {"imported": 0, "rejected": rejected}
        now = utcnow()
        hashes = {phone_hash(self.sealer, row["phone"]): row for row in good}
        existing = self.directory.by_phone_hashes(community, list(hashes))
        created, updated = [], []
        for key, row in hashes.items():
            person = existing.get(key) or Person(id=new_person_id(), community=community, name=row["name"],
                                                 phone=row["phone"], roles=[RESIDENT], created_at=now)
            person.name = row["name"]
            person.roles = list(dict.fromkeys([*person.roles, RESIDENT]))
            person.address = Address(row["building"], row["unit"], row["room"])
            person.birth_year, person.household = row["birth_year"], row["household"]
            person.flags = row["flags"]
            person.email = row["email"] or person.email
            person.wechat_openid = row["wechat_openid"] or person.wechat_openid
            person.moved_out_at, person.updated_at = None, now
            (updated if key in existing else created).append(person)
        with self.db.client.start_session() as session, session.start_transaction():
            self.directory.insert_many(created, session=session)
            for person in updated:
                self.directory.replace(person, session=session)
        log.info("directory.residents_imported", community=community, created=len(created), updated=len(updated),
                 actor=_actor(actor))
        return {"imported": len(good), "created": len(created), "updated": len(updated), "rejected": []}

    def _read(self, filename: str, content_base64: str, columns: dict) -> list[tuple[int, dict]]:
        request = load(IMPORT, {"filename": filename, "content_base64": content_base64})
        try:
            return read_table(request["filename"], decoded(request["content_base64"]), columns)
        except UnreadableFile as error:
            raise ValidationFailed(str(error), {"file": [str(error)]}) from error

    # --- views
    @staticmethod
    def _grid_code(tree: Community | None, person: Person) -> str | None:
        grid = tree.grid_of(person.building) if tree and person.building else None
        return grid.code if grid else None

    def _full_view(self, person: Person, tree: Community | None) -> dict:
        view = person.view(full=True)
        building = tree.building(person.building) if tree and person.building else None
        view["place"] = None if building is None else {
            "grid": self._grid_code(tree, person), "building": building.code, "building_name": building.name,
            "address": building.address}
        return view

    @staticmethod
    def _audit_view(entry: dict) -> dict:
        return {"id": entry["_id"], "at": entry["at"].isoformat(), "actor": entry["actor"],
                "actor_role": entry.get("actor_role"), "subject": entry["subject"], "action": entry["action"]}

    # --- sign-in, sessions and API keys (helper B2's section: B2 edits only below this line)
    # The logic is services.directory.credentials.SignInDesk; these entrypoints only hand over.
    signin_keys = SignInKeys()
    credentials_db = Mongo(indexes=CredentialRepository.ensure_indexes)  # the same database, B2's indexes
    notify = RpcClient("notify")
    background = Background()

    @property
    def signin(self) -> SignInDesk:
        return SignInDesk(self.credentials_db, self.signin_keys, self.notify, spawn=self.background)

    @rpc
    def request_code(self, phone: str) -> dict:
        """Text a sign-in code to a known phone; always ``{"sent": true}``."""
        return self.signin.request_code(phone)

    @rpc
    def sign_in(self, phone: str, code: str, password: str | None = None) -> dict:
        """``{"access_token", "refresh_token", "token_type": "Bearer", "expires_in"}`` or 401/429."""
        return self.signin.sign_in(phone, code, password)

    @rpc
    def refresh(self, refresh_token: str) -> dict:
        return self.signin.refresh(refresh_token)

    @rpc
    def sign_out(self, session_id: str) -> dict:
        return self.signin.sign_out(session_id)

    @rpc
    def revoke_person(self, community: str, person_id: str, actor: dict | str | None = None) -> dict:
        return self.signin.revoke_person(community, person_id, actor)

    @rpc
    def revocations(self, since: float) -> dict:
        """``{"sessions": [session ids], "api_keys": [key ids], "until"}``: what gateways must refuse from now on.

        Ask again with ``since=until``; an answer may repeat the last two seconds' revocations.
        """
        return self.signin.revocations(since)

    @rpc
    def create_api_key(self, name: str, communities: list[str] | str, actor: dict | str | None = None) -> dict:
        return self.signin.create_api_key(name, communities, actor)

    @rpc
    def list_api_keys(self) -> dict:
        return self.signin.list_api_keys()

    @rpc
    def revoke_api_key(self, name: str) -> dict:
        return self.signin.revoke_api_key(name)

    @rpc
    def verify_api_key(self, key: str) -> dict:
        return self.signin.verify_api_key(key)

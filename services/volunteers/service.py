"""The volunteers service's entrypoints: registry, matching and offers, check-in/out, hours, wishes, records.

Entrypoints load their input, ask the domain (:mod:`services.volunteers.domain`, no I/O) and the
repository, and answer plain dicts. Each step of a task and the events it raises are one write (the
task's outbox). People (names, phones) stay in the directory: a volunteer is a person id here, with a
keyed hash of the phone to find duplicate registrations and its masked form for views.

Offers: a ticket dispatched to a volunteer team (``ticket.dispatched``, assignee kind ``team``) is
offered to the best-ranked member; a decline, or no answer within ``VOLUNTEER_OFFER_SECONDS``
(default 900), offers it to the next. A 微心愿 is published with its proposals and claimed by any volunteer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from datetime import date, datetime, time, timedelta

from nameko.dependency_providers import Config
from nameko.exceptions import UnknownService as NoSuchService
from nameko.timer import timer

from kernel.config import settings_of
from kernel.context import Context
from kernel.contracts import (
    SHANGHAI,
    CheckInSchema,
    HoursCorrectionSchema,
    ImportSchema,
    ManualHoursSchema,
    OfferAnswerSchema,
    RatingSchema,
    ViewerSchema,
    VolunteerSchema,
    WishSchema,
)
from kernel.envelope import Envelope, utcnow
from kernel.errors import Conflict, NotFound, ServiceUnavailable, ValidationFailed
from kernel.events import current_version
from kernel.handlers import handles
from kernel.health import HealthEndpoints
from kernel.idempotency import idempotent
from kernel.logging import get_logger
from kernel.mongo import Mongo
from kernel.outbox import OUTBOX, Outbox
from kernel.pagination import decode_cursor, page, page_limit
from kernel.permissions import allowed, may_access
from kernel.rpc import RpcClient, RpcTimeout, rpc
from kernel.validation import load
from services.directory.importer import UnreadableFile, read_table
from services.volunteers import domain, records
from services.volunteers.domain import Need, VolunteerError, utc
from services.volunteers.repository import (
    HIDDEN,
    TASKS,
    VOLUNTEERS,
    StaleTask,
    TeamRepository,
    VolunteerRepository,
    ensure_indexes,
)
from services.volunteers.schemas import TEAMS, RecordQuerySchema, VolunteerFiltersSchema
from services.volunteers.seed import SeedOnStart

VOLUNTEER, FILTERS, ANSWER, CHECK_IN = VolunteerSchema(), VolunteerFiltersSchema(), OfferAnswerSchema(), CheckInSchema()
MANUAL, CORRECTION, RATING, WISH = ManualHoursSchema(), HoursCorrectionSchema(), RatingSchema(), WishSchema()
RECORD, IMPORT, VIEWER = RecordQuerySchema(), ImportSchema(), ViewerSchema()
OFFER_SECONDS = 900.0
SWEEP_SECONDS = 5.0  # how often expired offers and forgotten check-outs are looked for
SAVE_ATTEMPTS = 3
DIRECTORY_TIMEOUT = 5.0
ERASED_TITLE = "（已删除）"  # an erased resident's wish keeps its place in the records, not its words
log = get_logger(__name__)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def _failed(error: VolunteerError) -> ValidationFailed:
    return ValidationFailed(str(error), {error.field: [str(error)]})


class VolunteersService(HealthEndpoints):
    name = "volunteers"

    db = Mongo(indexes=ensure_indexes)
    seed = SeedOnStart()
    outbox = Outbox(collections=[VOLUNTEERS, TASKS])
    context = Context()
    config = Config()
    directory = RpcClient("directory", timeout=DIRECTORY_TIMEOUT)

    @property
    def repo(self) -> VolunteerRepository:
        return VolunteerRepository(self.db)

    @property
    def offer_seconds(self) -> float:
        return float(self.config.get("VOLUNTEER_OFFER_SECONDS", OFFER_SECONDS))

    def _phone_key(self, community: str, phone: str) -> str:
        secret = settings_of(self.config).secret.encode()
        return hmac.new(secret, f"{community}:{phone}".encode(), hashlib.sha256).hexdigest()

    def _event(self, community: str, event_type: str, payload: dict) -> Envelope:
        return Envelope.new(event_type, payload, community=community, correlation_id=self.context.correlation_id,
                            version=current_version(event_type))

    # --- teams ------------------------------------------------------------------------------------------
    @rpc
    def list_teams(self, community: str, cursor: str | None = None, limit: int | None = None) -> dict:
        """The community's teams in their order, with their active members counted: ``{"items", "next_cursor"}``."""
        limit, after = page_limit(limit), decode_cursor(cursor, 1)
        found = TeamRepository(self.db).of_community(community, limit + 1, after)
        counts = self.repo.member_counts(community)
        found = [{**team, "members": counts.get(team["code"], 0)} for team in found]
        return page(found, limit, key=lambda team: (team["_id"],), dump=TEAMS.dump)

    @rpc
    def set_team_leaders(self, community: str, team: str, leaders: list[str]) -> dict:
        if not isinstance(leaders, list) or not all(isinstance(x, str) for x in leaders):
            raise ValidationFailed("leaders must be person ids", {"leaders": ["a list of volunteer ids"]})
        unknown = [x for x in leaders if (v := self.repo.get(community, x)) is None or team not in v.get("teams", [])]
        if unknown:
            raise ValidationFailed("a leader must be a member", {"leaders": [f"{x} is not in {team}" for x in unknown]})
        if not TeamRepository(self.db).set_leaders(community, team, leaders):
            raise NotFound(f"no team {team}")
        return {"team": team, "leaders": leaders}

    # --- registry ---------------------------------------------------------------------------------------
    @rpc
    @idempotent
    def register(self, community: str, data: dict, actor: dict | str | None = None) -> dict:
        """Register a volunteer: the person is found or added in the directory (role volunteer), then here.

        A second registration of the same phone updates the first (its hours stay where they are).
        """
        data = load(VOLUNTEER, data)
        return self._register(community, data)

    def _register(self, community: str, data: dict) -> dict:
        self._check_codes(community, data)
        for slot in data["availability"]:
            try:
                domain.check_slots([slot])
            except VolunteerError as error:
                raise _failed(error) from error
        person = self._directory_person(community, data)
        now = utcnow()
        key = self._phone_key(community, data["phone"])
        existing = self.repo.get(community, person["id"])
        if existing is None:  # a registration under another person id with the same phone is the same volunteer
            [existing, *_] = self.repo.by_phone_key(community, key) or [None]
        document = {
            "_id": existing["_id"] if existing else person["id"], "community": community, "phone_key": key,
            "phone_masked": domain.mask_phone(data["phone"]), "grid": data["grid"], "skills": data["skills"],
            "teams": data["teams"], "party_member": data["party_member"], "partner_unit": data["partner_unit"],
            "availability": data["availability"],
            "exceptions": [{**e, "date": e["date"].isoformat()} for e in data["exceptions"]],
            "status": data["status"], "registered_at": existing["registered_at"] if existing else now,
            "updated_at": now, "rating_sum": existing.get("rating_sum", 0) if existing else 0,
            "rating_count": existing.get("rating_count", 0) if existing else 0,
        }
        event = self._event(community, "volunteer.registered", {
            "volunteer_id": document["_id"], "grid": document["grid"], "teams": document["teams"],
            "skills": document["skills"], "party_member": document["party_member"], "status": document["status"],
            "at": now.isoformat()})
        self.repo.save_volunteer(document, [event])
        self.outbox.flush_soon(VOLUNTEERS, document["_id"], [event])
        log.info("volunteers.registered", volunteer_id=document["_id"], phone=document["phone_masked"],
                 updated=existing is not None)
        return {**self._view(document, name=data["name"]), "created": existing is None}

    def _check_codes(self, community: str, data: dict) -> None:
        errors = {}
        unknown = [skill for skill in data["skills"] if skill not in domain.SKILLS]
        if unknown:
            errors["skills"] = [f"unknown skills: {', '.join(unknown)}; known: {', '.join(domain.SKILLS)}"]
        teams = TeamRepository(self.db)
        missing = [team for team in data["teams"] if teams.get(community, team) is None]
        if missing:
            errors["teams"] = [f"no team {team}" for team in missing]
        if errors:
            raise ValidationFailed("the request is not valid", errors)

    def _directory_person(self, community: str, data: dict) -> dict:
        try:
            return self.directory.create_staff(community, {
                "name": data["name"], "phone": data["phone"], "roles": ["volunteer"], "teams": data["teams"]})
        except (NoSuchService, RpcTimeout) as error:
            raise ServiceUnavailable("the directory is not answering; try again", {"service": ["directory"]}) \
                from error

    @rpc
    @idempotent
    def import_volunteers(self, community: str, filename: str, content_base64: str,
                          actor: dict | str | None = None) -> dict:
        """Volunteers from a CSV or .xlsx file: every row valid, or nothing registered (the report lists each
        rejected row and why). People new to the directory are added there."""
        request = load(IMPORT, {"filename": filename, "content_base64": content_base64})
        try:
            content = base64.b64decode(request["content_base64"], validate=True)
            rows = read_table(request["filename"], content, domain.VOLUNTEER_COLUMNS)
        except (ValueError, UnreadableFile) as error:
            raise ValidationFailed(str(error) or "the file is not valid base64", {"file": [str(error)]}) from error
        grids = self._grids(community)
        teams = {}
        for team in TeamRepository(self.db).of_community(community):
            teams[team["code"]] = teams[team["name"]] = team["code"]
        good, rejected = domain.validate_rows(rows, grids, teams)
        if rejected:
            return {"imported": 0, "created": 0, "updated": 0, "rejected": rejected}
        created = 0
        key = self.context.idempotency_key
        for row in good:
            # Each row's directory call gets its own key: a retried import adds nobody twice.
            if key:
                self.context.idempotency_key = f"{key}:{row['row']}"
            registration = {**{k: v for k, v in row.items() if k != "row"}, "exceptions": [], "status": "active"}
            created += self._register(community, registration)["created"]
        if key:
            self.context.idempotency_key = key
        log.info("volunteers.imported", community=community, rows=len(good), created=created,
                 actor=actor.get("subject") if isinstance(actor, dict) else actor)
        return {"imported": len(good), "created": created, "updated": len(good) - created, "rejected": []}

    def _grids(self, community: str) -> set[str]:
        try:
            tree = self.directory.place_tree(community)
        except NotFound:
            return set()
        except (NoSuchService, RpcTimeout) as error:
            raise ServiceUnavailable("the directory is not answering; try again", {"service": ["directory"]}) \
                from error
        return {grid["code"] for grid in tree.get("grids", [])}

    @rpc
    def list_volunteers(self, community: str, viewer: dict, filters: dict | None = None,
                        cursor: str | None = None, limit: int | None = None) -> dict:
        """Volunteers with masked phones, by ``skill``, ``grid``, ``team`` and who is free ``available_at``.

        A grid worker sees the volunteers of their grids.
        """
        viewer = load(VIEWER, viewer)
        filters = load(FILTERS, filters or {})
        limit = page_limit(limit)
        query: dict = {"status": "active"} if "available_at" in filters else {}
        for name, path in (("skill", "skills"), ("grid", "grid"), ("team", "teams")):
            if name in filters:
                query[path] = filters[name]
        if viewer["role"] == "grid_worker":
            query["grid"] = {"$in": [g for g in viewer["grids"] if g == query.get("grid", g)]}
        after = cursor
        items: list[dict] = []
        while len(items) <= limit:
            batch = self.repo.find(community, query, limit=4 * (limit + 1), after=after)
            if not batch:
                break
            after = batch[-1]["_id"]
            items += [v for v in batch if "available_at" not in filters or domain.is_available(
                v.get("availability") or (), v.get("exceptions") or (), filters["available_at"])]
        more = len(items) > limit
        items = items[:limit]
        names = self._names(community, [v["_id"] for v in items])
        return {"items": [self._view(v, name=names.get(v["_id"])) for v in items],
                "next_cursor": items[-1]["_id"] if more and items else None}

    def _names(self, community: str, person_ids: list[str]) -> dict[str, str]:
        if not person_ids:
            return {}
        try:
            return {pid: contact.get("name") for pid, contact in self.directory.contacts(community, person_ids).items()}
        except (NoSuchService, RpcTimeout):
            log.warning("volunteers.names_unavailable")  # the list still answers, without names
            return {}

    @staticmethod
    def _view(volunteer: dict, name: str | None = None) -> dict:
        count = volunteer.get("rating_count", 0)
        return {
            "id": volunteer["_id"], "name": name, "phone": volunteer.get("phone_masked"), "grid": volunteer.get("grid"),
            "skills": volunteer.get("skills", []), "teams": volunteer.get("teams", []),
            "party_member": volunteer.get("party_member", False), "partner_unit": volunteer.get("partner_unit"),
            "availability": volunteer.get("availability", []), "exceptions": volunteer.get("exceptions", []),
            "status": volunteer.get("status"), "merged_into": volunteer.get("merged_into"),
            "rating": {"count": count, "average": round(volunteer["rating_sum"] / count, 2) if count else None},
        }

    @rpc
    def set_status(self, community: str, volunteer_id: str, status: str) -> dict:
        """Pause a volunteer (no offers) or make them active again."""
        if status not in domain.STATUSES:
            raise ValidationFailed("the request is not valid", {"status": ["active or paused"]})
        volunteer = self._volunteer(community, volunteer_id)
        volunteer.update(status=status, updated_at=utcnow())
        self.repo.save_volunteer(volunteer, [])
        return self._view(volunteer)

    def _volunteer(self, community: str, volunteer_id: str) -> dict:
        volunteer = self.repo.get(community, volunteer_id)
        if volunteer is None or volunteer.get("status") == domain.MERGED:
            raise NotFound(f"no volunteer {volunteer_id}")
        return volunteer

    @rpc
    def me(self, community: str, subject: str) -> dict:
        """A volunteer's own page: their registration, open offers, tasks in hand, and hours this year."""
        volunteer = self._volunteer(community, subject)
        offers = self.repo.offers_to(community, subject)
        tasks = self.repo.tasks_of(community, subject, {"state": {"$in": ["accepted", "checked_in"]}})
        year = date(utcnow().astimezone(SHANGHAI).year, 1, 1)
        record = self._record(community, subject, year, year.replace(month=12, day=31))
        return {"volunteer": self._view(volunteer), "offers": [self._task_view(t, viewer=subject) for t in offers],
                "tasks": [self._task_view(t, viewer=subject) for t in tasks], "hours_this_year": record["totals"]}

    # --- duplicates -----------------------------------------------------------------------------------------
    @rpc
    def duplicates(self, community: str) -> dict:
        """Registrations that share a phone: ``{"groups": [[ids, oldest first]]}``."""
        return {"groups": [[v["_id"] for v in group] for group in self.repo.duplicate_groups(community)]}

    @rpc
    @idempotent
    def merge(self, community: str, keep: str, drop: str, actor: dict | str | None = None) -> dict:
        """Merge ``drop`` into ``keep`` (same phone): tasks and hours move, skills and teams are united."""
        if keep == drop:
            raise ValidationFailed("the request is not valid", {"drop": ["another volunteer than keep"]})
        kept, dropped = self._volunteer(community, keep), self._volunteer(community, drop)
        if kept.get("phone_key") != dropped.get("phone_key"):
            raise Conflict("only registrations with the same phone are merged", {"drop": ["another phone"]})
        merged = {
            "skills": list(dict.fromkeys(kept.get("skills", []) + dropped.get("skills", []))),
            "teams": list(dict.fromkeys(kept.get("teams", []) + dropped.get("teams", []))),
            "availability": kept.get("availability") or dropped.get("availability", []),
            "rating_sum": kept.get("rating_sum", 0) + dropped.get("rating_sum", 0),
            "rating_count": kept.get("rating_count", 0) + dropped.get("rating_count", 0),
            "party_member": kept.get("party_member", False) or dropped.get("party_member", False),
            "partner_unit": kept.get("partner_unit") or dropped.get("partner_unit"),
        }
        moved = self.repo.merge(community, keep, drop, merged, utcnow())
        log.info("volunteers.merged", keep=keep, drop=drop, **moved)
        return {"kept": keep, "merged": drop, **moved}

    # --- matching and offers ----------------------------------------------------------------------------
    @handles("volunteers.dispatches", dedupe="effects")
    def on_ticket_dispatched(self, event: Envelope) -> None:
        """A ticket dispatched to a volunteer team: rank the team's volunteers and offer it to the best.

        The task's id derives from the event (a unique key on ``source_event``): a redelivery changes nothing.
        """
        assignee = event.payload.get("assignee") or {}
        self._withdraw_offers(event.community, event.payload["ticket_id"], event.event_id)
        if assignee.get("kind") != "team":
            return
        team = TeamRepository(self.db).get(event.community, assignee["id"])
        if team is None:
            log.warning("volunteers.unknown_team", team=assignee["id"], ticket_id=event.payload["ticket_id"])
            return
        now = utcnow()
        need = domain.need_for_service(event.payload.get("service_code"), team.get("skills", []),
                                       event.payload.get("grid"), now)
        proposals = self._propose(event.community, need, self.repo.of_team(event.community, team["code"]))
        task = {
            "_id": new_id("vt"), "community": event.community, "subject": "ticket",
            "ticket_id": event.payload["ticket_id"], "number": event.payload.get("number"),
            "title": event.payload.get("category") or event.payload.get("service_code") or "",
            "service_code": event.payload.get("service_code"), "team": team["code"], "grid": need.grid,
            "need": list(need.skills), "residents": list(event.payload.get("attached_residents") or []),
            "proposals": proposals, "asked": [], "offer": None, "state": "offering", "volunteer": None,
            "source_event": event.event_id, "created_at": now, "updated_at": now,
        }
        events = self._offer_next(task, now)
        if self.repo.insert_task(task, events):
            self.outbox.flush_soon(TASKS, task["_id"], events)
            log.info("volunteers.task_opened", task_id=task["_id"], ticket_id=task["ticket_id"],
                     candidates=len(proposals), state=task["state"])

    def _withdraw_offers(self, community: str, ticket_id: str, dispatch_event: str) -> None:
        """A ticket dispatched again (after a bounce, or elsewhere) is no longer offered under its old task.

        The task this very dispatch opened stays (a redelivery of the event must not withdraw it).
        """
        for task in self.repo.tasks.find({"community": community, "ticket_id": ticket_id, "state": "offering",
                                          "source_event": {"$ne": dispatch_event}}, {"_id": 1}):
            def withdraw(current: dict, now: datetime) -> list[Envelope]:
                if current["state"] == "offering":
                    current.update(state=domain.task_move(current["state"], "withdraw"), offer=None, updated_at=now)
                return []
            self._step(community, task["_id"], withdraw)

    def _propose(self, community: str, need: Need, volunteers: list[dict]) -> list[dict]:
        loads = self.repo.loads(community, need.at - domain.FAIRNESS_WINDOW)
        return [p.to_dict() for p in domain.rank(volunteers, need, loads)]

    def _offer_next(self, task: dict, now: datetime) -> list[Envelope]:
        """Offer the task to the next candidate (an event), or mark it unfilled when nobody is left."""
        candidate = domain.next_candidate(task["proposals"], task["asked"])
        if candidate is None:
            task.update(state="unfilled", offer=None, updated_at=now)
            log.warning("volunteers.task_unfilled", task_id=task["_id"], ticket_id=task["ticket_id"])
            return []
        task["asked"] = [*task["asked"], candidate]
        task["offer"] = {"volunteer": candidate, "at": now, "expires_at": now + timedelta(seconds=self.offer_seconds)}
        task["updated_at"] = now
        reasons = next(p["reasons"] for p in task["proposals"] if p["volunteer"] == candidate)
        return [self._task_event(task, "volunteer.offered", candidate, now, reasons=reasons)]

    def _task_event(self, task: dict, event_type: str, volunteer: str, now: datetime, **details) -> Envelope:
        payload = {"assignment_id": task["_id"], "subject": task["subject"], "ticket_id": task["ticket_id"],
                   "number": task.get("number"), "volunteer_id": volunteer, "team": task.get("team"),
                   "attached_residents": task["residents"], "at": now.isoformat(), **details}
        return self._event(task["community"], event_type, payload)

    @rpc
    @idempotent
    def answer_offer(self, community: str, task_id: str, viewer: dict, data: dict) -> dict:
        """The offered volunteer accepts (the resident gets the check-in code) or declines (the next is asked)."""
        viewer, data = load(VIEWER, viewer), load(ANSWER, data)

        def step(task: dict, now: datetime) -> list[Envelope]:
            offer = task.get("offer") or {}
            if task["state"] != "offering" or offer.get("volunteer") != viewer["subject"]:
                raise Conflict("this task is not offered to you (any more)", {"state": [task["state"]]})
            if data["answer"] == "decline":
                declined = self._task_event(task, "volunteer.declined", viewer["subject"], now, reason="declined")
                return [declined, *self._offer_next(task, now)]
            return self._accept(task, viewer["subject"], now)

        return self._task_view(self._step(community, task_id, step), viewer=viewer["subject"])

    def _accept(self, task: dict, volunteer: str, now: datetime) -> list[Envelope]:
        task.update(state=domain.task_move(task["state"], "claim" if task["subject"] == "wish" else "accept"),
                    volunteer=volunteer, accepted_at=now, offer=None, code=domain.check_in_code(), updated_at=now)
        events = [self._task_event(task, "volunteer.accepted", volunteer, now, check_in_code=task["code"])]
        if task["subject"] == "wish":
            events.append(self._wish_event(task, "wish.claimed", now))
        return events

    def _step(self, community: str, task_id: str, step) -> dict:
        """Read, change, write with the events (optimistic: a task changed meanwhile is read again)."""
        for _ in range(SAVE_ATTEMPTS):
            task = self.repo.task(community, task_id)
            if task is None:
                raise NotFound(f"no task {task_id}")
            now = utcnow()
            try:
                events = step(task, now)
            except VolunteerError as error:
                raise Conflict(str(error), {error.field: [str(error)]}) from error
            try:
                saved = self.repo.save_task(task, events)
            except StaleTask:
                continue
            self.outbox.flush_soon(TASKS, task_id, events)
            return saved
        raise Conflict("the task kept changing; try again", {"task": [task_id]})

    @timer(interval=SWEEP_SECONDS)
    def sweep(self) -> dict:
        """Offers nobody answered in time go to the next candidate; forgotten check-outs close at the cap."""
        now = utcnow()
        timed_out = closed = 0
        for task in self.repo.expired_offers(now):
            def expire(current: dict, at: datetime) -> list[Envelope]:
                offer = current.get("offer") or {}
                if current["state"] != "offering" or utc(offer["expires_at"]) > at:
                    return []
                gone = self._task_event(current, "volunteer.declined", offer["volunteer"], at, reason="timed_out")
                return [gone, *self._offer_next(current, at)]
            try:
                self._step(task["community"], task["_id"], expire)
                timed_out += 1
            except (Conflict, NotFound):
                continue
        for task in self.repo.open_sessions_since(now - domain.FORGOTTEN_AFTER):
            try:
                self._step(task["community"], task["_id"], lambda current, at: self._check_out(
                    current, at, automatic=True))
                closed += 1
            except (Conflict, NotFound):
                continue
        if timed_out or closed:
            log.info("volunteers.swept", offers_timed_out=timed_out, sessions_auto_closed=closed)
        return {"offers_timed_out": timed_out, "sessions_auto_closed": closed}

    # --- check-in / check-out ---------------------------------------------------------------------------
    def _may_confirm(self, viewer: dict, task: dict) -> bool:
        return may_access("volunteers.confirm_presence", viewer, community=task["community"], grid=task.get("grid"))

    @rpc
    @idempotent
    def check_in(self, community: str, task_id: str, viewer: dict, data: dict | None = None) -> dict:
        """The volunteer checks in with the resident's code, or staff confirm their presence."""
        viewer, data = load(VIEWER, viewer), load(CHECK_IN, data or {})

        def step(task: dict, now: datetime) -> list[Envelope]:
            confirmed_by = None
            if viewer["subject"] == task.get("volunteer"):
                if not data["code"] or not hmac.compare_digest(data["code"], task.get("code") or ""):
                    raise ValidationFailed("that is not the resident's code", {"code": ["wrong code"]})
            elif self._may_confirm(viewer, task):
                confirmed_by = viewer["subject"]
            else:
                raise NotFound(f"no task {task_id} of yours")
            task.update(state=domain.task_move(task["state"], "check_in"), check_in_at=now, updated_at=now,
                        check_in_confirmed_by=confirmed_by)
            return [self._task_event(task, "volunteer.checked_in", task["volunteer"], now, confirmed_by=confirmed_by)]

        return self._task_view(self._step(community, task_id, step), viewer=viewer["subject"])

    @rpc
    @idempotent
    def check_out(self, community: str, task_id: str, viewer: dict) -> dict:
        """The volunteer (or staff) checks out: the minutes between check-in and now are credited, capped."""
        viewer = load(VIEWER, viewer)

        def step(task: dict, now: datetime) -> list[Envelope]:
            if viewer["subject"] != task.get("volunteer") and not self._may_confirm(viewer, task):
                raise NotFound(f"no task {task_id} of yours")
            by_staff = viewer["subject"] != task.get("volunteer")
            return self._check_out(task, now, automatic=False, confirmed_by=viewer["subject"] if by_staff else None)

        return self._task_view(self._step(community, task_id, step), viewer=viewer["subject"])

    def _check_out(self, task: dict, now: datetime, *, automatic: bool, confirmed_by: str | None = None
                   ) -> list[Envelope]:
        state = domain.task_move(task["state"], "check_out")
        check_in = utc(task["check_in_at"])
        if automatic:
            if not domain.forgotten(check_in, now):
                return []
            ended, minutes = domain.auto_close(check_in)
        else:
            ended, minutes = now, domain.session_minutes(check_in, now)
        task.update(state=state, check_out_at=ended, minutes=minutes, auto_closed=automatic, updated_at=now,
                    check_out_confirmed_by=confirmed_by)
        events = [self._task_event(task, "volunteer.checked_out", task["volunteer"], now, minutes=minutes,
                                   auto_closed=automatic, confirmed_by=confirmed_by)]
        if task["subject"] == "wish":
            events.append(self._wish_event(task, "wish.fulfilled", now))
        return events

    # --- ratings ----------------------------------------------------------------------------------------
    @rpc
    @idempotent
    def rate(self, community: str, task_id: str, viewer: dict, data: dict) -> dict:
        """A resident rates the help they had, once; it goes to the volunteer's record (a wish is confirmed too)."""
        viewer, data = load(VIEWER, viewer), load(RATING, data)

        def step(task: dict, now: datetime) -> list[Envelope]:
            if viewer["subject"] not in task["residents"]:
                raise NotFound(f"no task {task_id} of yours")
            if task.get("rating") is not None:
                raise Conflict("you rated this help already", {"rating": ["rated"]})
            if task["state"] not in ("checked_out", "confirmed"):
                raise Conflict("the help is not finished yet", {"state": [task["state"]]})
            task.update(rating=data["rating"], comment=data["comment"], rated_at=now, updated_at=now)
            if task["subject"] == "wish":
                task["state"] = domain.task_move(task["state"], "confirm")
            return []

        task = self._step(community, task_id, step)
        # The volunteer's running average; the task keeps the rating itself (records read it from there).
        self.repo.volunteers.update_one({"_id": task["volunteer"], "community": community},
                                        {"$inc": {"rating_sum": data["rating"], "rating_count": 1}})
        return self._task_view(task, viewer=viewer["subject"])

    # --- 微心愿 -------------------------------------------------------------------------------------------
    def _wish_event(self, task: dict, event_type: str, now: datetime) -> Envelope:
        return self._event(task["community"], event_type, {
            "wish_id": task["_id"], "ticket_id": task["_id"], "resident": task["resident"],
            "attached_residents": task["residents"], "title": task["title"], "skill": (task.get("need") or [None])[0],
            "grid": task.get("grid"), "volunteer_id": task.get("volunteer"), "at": now.isoformat()})

    @rpc
    @idempotent
    def publish_wish(self, community: str, viewer: dict, data: dict) -> dict:
        """A resident publishes a 微心愿; volunteers who fit are proposed (with reasons) and any may claim it."""
        viewer, data = load(VIEWER, viewer), load(WISH, data)
        if data["skill"] is not None and data["skill"] not in domain.SKILLS:
            raise ValidationFailed("the request is not valid", {"skill": [f"one of {', '.join(domain.SKILLS)}"]})
        grid = self._grid_of(community, viewer["subject"])
        now = utcnow()
        need = Need((data["skill"],) if data["skill"] else ("errands",), grid, now)
        task = {
            "_id": new_id("wish"), "community": community, "subject": "wish", "resident": viewer["subject"],
            "title": data["title"], "description": data["description"], "need": list(need.skills), "grid": grid,
            "residents": [viewer["subject"]], "team": None, "number": None, "state": "published", "volunteer": None,
            "proposals": self._propose(community, need, self.repo.find(community, {"status": "active"})),
            "asked": [], "offer": None, "created_at": now, "updated_at": now,
        }
        task["ticket_id"] = task["_id"]
        event = self._wish_event(task, "wish.published", now)
        self.repo.insert_task(task, [event])
        self.outbox.flush_soon(TASKS, task["_id"], [event])
        return self._task_view({**task, "version": 1}, viewer=viewer["subject"])

    def _grid_of(self, community: str, person: str) -> str | None:
        try:
            return ((self.directory.me(community, person) or {}).get("place") or {}).get("grid")
        except (NotFound, NoSuchService, RpcTimeout):
            return None

    @rpc
    def list_wishes(self, community: str, viewer: dict, state: str | None = None, cursor: str | None = None,
                    limit: int | None = None) -> dict:
        """Residents see their own wishes; volunteers and staff the published ones (or ``state``)."""
        viewer, limit = load(VIEWER, viewer), page_limit(limit)
        reverse = {wish: task for task, wish in domain.WISH_STATES.items()}
        if state is not None and state not in reverse:
            raise ValidationFailed("the request is not valid", {"state": [f"one of {', '.join(reverse)}"]})
        query: dict = {}
        if viewer["role"] == "resident":
            query["resident"] = viewer["subject"]
        if state or viewer["role"] != "resident":
            query["state"] = {"$in": [t for t, w in domain.WISH_STATES.items() if w == (state or "published")]}
        found = self.repo.wishes(community, query, limit + 1, after=cursor)
        return {"items": [self._task_view(t, viewer=viewer["subject"]) for t in found[:limit]],
                "next_cursor": found[limit - 1]["_id"] if len(found) > limit else None}

    @rpc
    @idempotent
    def claim_wish(self, community: str, wish_id: str, viewer: dict) -> dict:
        """A registered, active volunteer claims a published wish (the first to claim has it)."""
        viewer = load(VIEWER, viewer)
        volunteer = self._volunteer(community, viewer["subject"])
        if volunteer.get("status") != domain.ACTIVE:
            raise Conflict("a paused volunteer cannot claim", {"status": [volunteer.get("status")]})

        def step(task: dict, now: datetime) -> list[Envelope]:
            if task["subject"] != "wish":
                raise NotFound(f"no wish {wish_id}")
            return self._accept(task, viewer["subject"], now)

        return self._task_view(self._step(community, wish_id, step), viewer=viewer["subject"])

    @rpc
    def get_task(self, community: str, task_id: str, viewer: dict) -> dict:
        viewer = load(VIEWER, viewer)
        task = self.repo.task(community, task_id)
        if task is None or not (viewer["subject"] in (task.get("volunteer"), (task.get("offer") or {}).get("volunteer"))
                                or viewer["subject"] in task["residents"]
                                or allowed("volunteer_tasks.read", viewer["role"])
                                or (task["subject"] == "wish" and task["state"] == "published")):
            raise NotFound(f"no task {task_id}")
        return self._task_view(task, viewer=viewer["subject"])

    @rpc
    def tasks_of_ticket(self, community: str, ticket_id: str) -> dict:
        """The volunteer tasks of a ticket, with their proposals and reasons (for staff)."""
        found = list(self.repo.tasks.find({"community": community, "ticket_id": ticket_id}, HIDDEN,
                                          sort=[("created_at", 1)]))
        return {"items": [self._task_view(t, viewer=None) for t in found]}

    @staticmethod
    def _task_view(task: dict, viewer: str | None) -> dict:
        """A task as people see it; the check-in code only to its residents (the volunteer must hear it there)."""
        def iso(value):
            return utc(value).isoformat() if isinstance(value, datetime) else value

        offer = task.get("offer")
        view = {
            "id": task["_id"], "subject": task["subject"], "ticket_id": task["ticket_id"] if task["subject"] == "ticket"
            else None, "number": task.get("number"), "title": task.get("title"), "team": task.get("team"),
            "grid": task.get("grid"), "need": task.get("need", []), "state": task["state"],
            "volunteer": task.get("volunteer"), "proposals": task.get("proposals", []),
            "offer": None if offer is None else {"volunteer": offer["volunteer"], "at": iso(offer["at"]),
                                                 "expires_at": iso(offer["expires_at"])},
            "declined": [v for v in task.get("asked", []) if v != (offer or {}).get("volunteer")
                         and v != task.get("volunteer")],
            "accepted_at": iso(task.get("accepted_at")), "check_in_at": iso(task.get("check_in_at")),
            "check_out_at": iso(task.get("check_out_at")), "minutes": task.get("minutes"),
            "auto_closed": task.get("auto_closed", False), "rating": task.get("rating"),
            "version": task.get("version"),
        }
        if task["subject"] == "wish":
            view.update(wish_state=domain.WISH_STATES.get(task["state"]), description=task.get("description"))
        if viewer is not None and viewer in task.get("residents", []):
            view["check_in_code"] = task.get("code")
        return view

    # --- hours --------------------------------------------------------------------------------------------
    @rpc
    @idempotent
    def add_manual_hours(self, community: str, volunteer_id: str, data: dict, actor: dict | str | None = None
                         ) -> dict:
        """Hours served outside a task, kept apart as "manual" and capped (per entry and per month)."""
        data = load(MANUAL, data)
        self._volunteer(community, volunteer_id)
        day: date = data["date"]
        next_month = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
        month = {"kind": "manual", "date": {"$gte": day.replace(day=1).isoformat(), "$lt": next_month.isoformat()}}
        so_far = sum(e["minutes"] for e in self.repo.entries_of(community, volunteer_id, month))
        try:
            minutes = domain.check_manual(data["minutes"], so_far)
        except VolunteerError as error:
            raise _failed(error) from error
        entry = {"_id": new_id("h"), "community": community, "volunteer": volunteer_id, "kind": "manual",
                 "minutes": minutes, "date": day.isoformat(), "reason": data["reason"], "at": utcnow(),
                 "by": actor.get("subject") if isinstance(actor, dict) else actor}
        self.repo.add_entry(entry)
        return self._entry_view(entry)

    @rpc
    @idempotent
    def correct_hours(self, community: str, volunteer_id: str, data: dict, actor: dict | str | None = None) -> dict:
        """Correct a task's credit or a manual entry by a signed number of minutes, with a reason; nothing is
        deleted."""
        data = load(CORRECTION, data)
        self._volunteer(community, volunteer_id)
        task = self.repo.task(community, data["target"])
        if task is not None and task.get("volunteer") == volunteer_id and task.get("minutes") is not None:
            target_minutes, day = task["minutes"], utc(task["check_in_at"]).astimezone(SHANGHAI).date()
        else:
            entry = self.repo.entry(community, data["target"])
            if entry is None or entry["volunteer"] != volunteer_id or entry["kind"] != "manual":
                raise NotFound(f"no task or manual entry {data['target']} of {volunteer_id}")
            target_minutes, day = entry["minutes"], date.fromisoformat(entry["date"])
        so_far = sum(e["minutes"] for e in self.repo.corrections_of(community, data["target"]))
        try:
            delta = domain.check_correction(target_minutes, so_far, data["delta_minutes"], data["reason"])
        except VolunteerError as error:
            raise _failed(error) from error
        entry = {"_id": new_id("h"), "community": community, "volunteer": volunteer_id, "kind": "correction",
                 "target": data["target"], "minutes": delta, "date": day.isoformat(), "reason": data["reason"],
                 "at": utcnow(), "by": actor.get("subject") if isinstance(actor, dict) else actor}
        self.repo.add_entry(entry)
        return self._entry_view(entry)

    @staticmethod
    def _entry_view(entry: dict) -> dict:
        return {"id": entry["_id"], "volunteer": entry["volunteer"], "kind": entry["kind"],
                "target": entry.get("target"), "minutes": entry["minutes"], "date": entry["date"],
                "reason": entry["reason"], "by": entry.get("by"), "at": utc(entry["at"]).isoformat()}

    # --- records --------------------------------------------------------------------------------------------
    @rpc
    def service_record(self, community: str, volunteer_id: str, viewer: dict, query: dict) -> dict:
        """Hours, tasks and ratings of a volunteer for a period: JSON, or ``{"filename", "content_type",
        "content_base64"}`` as CSV or PDF. A volunteer sees their own record only."""
        viewer, query = load(VIEWER, viewer), load(RECORD, query)
        if not may_access("volunteers.records", viewer, community=community, owners=[volunteer_id]):
            raise NotFound(f"no volunteer {volunteer_id} that you may see")
        self._volunteer(community, volunteer_id)
        record = self._record(community, volunteer_id, query["start"], query["end"])
        record["volunteer"]["name"] = self._names(community, [volunteer_id]).get(volunteer_id)
        name = f"volunteer-record-{volunteer_id}-{query['start']}-{query['end']}"
        if query["format"] == "csv":
            content = records.to_csv(record).encode("utf-8-sig")  # the BOM makes Excel read UTF-8
            return {"filename": f"{name}.csv", "content_type": "text/csv; charset=utf-8",
                    "content_base64": base64.b64encode(content).decode()}
        if query["format"] == "pdf":
            try:
                content = records.to_pdf(record, font=settings_of(self.config).pdf_font)
            except records.NoFont as error:
                raise ServiceUnavailable(str(error), {"format": ["pdf unavailable on this host"]}) from error
            return {"filename": f"{name}.pdf", "content_type": "application/pdf",
                    "content_base64": base64.b64encode(content).decode()}
        return record

    def _record(self, community: str, volunteer_id: str, start: date, end: date) -> dict:
        since = datetime.combine(start, time(0, 0), tzinfo=SHANGHAI)
        until = datetime.combine(end + timedelta(days=1), time(0, 0), tzinfo=SHANGHAI)
        tasks = self.repo.tasks_of(community, volunteer_id, {
            "check_in_at": {"$gte": since, "$lt": until}, "state": {"$in": ["checked_out", "confirmed"]}})
        tasks.sort(key=lambda t: utc(t["check_in_at"]))
        entries = self.repo.entries_of(community, volunteer_id, {
            "date": {"$gte": start.isoformat(), "$lte": end.isoformat()}})
        # A correction counts in the period of its own date; so do manual entries.
        totals = domain.totals(tasks, entries)
        ratings = [t["rating"] for t in tasks if t.get("rating") is not None]
        return {
            "volunteer": {"id": volunteer_id, "name": None}, "from": start.isoformat(), "to": end.isoformat(),
            "tasks": [{"id": t["_id"], "subject": t["subject"], "title": t.get("title") or "",
                       "ticket_id": t["ticket_id"] if t["subject"] == "ticket" else None,
                       "date": utc(t["check_in_at"]).astimezone(SHANGHAI).date().isoformat(), "minutes": t["minutes"],
                       "auto_closed": t.get("auto_closed", False), "rating": t.get("rating")} for t in tasks],
            "entries": [{"id": e["_id"], "kind": e["kind"], "target": e.get("target"), "date": e["date"],
                         "minutes": e["minutes"], "reason": e["reason"],
                         "hours_kind": "credit" if e.get("target") in {t["_id"] for t in tasks} else "manual"}
                        for e in entries],
            "totals": totals,
            "ratings": {"count": len(ratings), "average": round(sum(ratings) / len(ratings), 2) if ratings else None},
        }

    # --- personal data (PIPL) -------------------------------------------------------------------------------
    @handles("volunteers.erasures")
    def on_resident_erased(self, event: Envelope) -> None:
        """A person asked to be forgotten: their id leaves every task (a pseudonym instead), their wishes lose
        their words, and a volunteer's registration is paused and stripped of its phone; hours stay, as counts.

        Idempotent: a redelivery finds nothing naming them.
        """
        person, community = event.payload["resident_id"], event.community
        alias = f"anon-{uuid.uuid4().hex[:12]}"
        query = {"community": community, "$or": [{"residents": person}, {"resident": person},
                                                 {f"{OUTBOX}.payload.attached_residents": person}]}
        for task in self.repo.tasks.find(query):
            wish = task.get("resident") == person
            # The stored events too: the relay may still publish one, and a backup holds them.
            outbox = [{**entry, "payload": {
                **entry["payload"], "attached_residents": [alias if r == person else r for r in
                                                           entry["payload"].get("attached_residents", [])],
                **({"resident": alias, "title": ERASED_TITLE} if wish and "resident" in entry["payload"] else {}),
            }} for entry in task.get(OUTBOX, [])]
            change = {"residents": [alias if r == person else r for r in task.get("residents", [])], OUTBOX: outbox}
            if wish:
                change.update(resident=alias, title=ERASED_TITLE, description="")
            self.repo.tasks.update_one({"_id": task["_id"]}, {"$set": change})
        self.repo.volunteers.update_one({"_id": person, "community": community}, {"$set": {
            "status": "paused", "phone_key": None, "phone_masked": None, "partner_unit": None, "erased_at": utcnow()}})
        log.info("volunteers.person_erased", person_id=person)

    # --- coverage -------------------------------------------------------------------------------------------
    @rpc
    def coverage_gaps(self, community: str, week: str | None = None, skills: list[str] | None = None,
                      minimum: int = domain.MIN_COVERAGE) -> dict:
        """Skills × grids with fewer than ``minimum`` active volunteers free in the week (the coming one by default).

        Asked by the weekly review: ``{"week": "YYYY-MM-DD" (its Monday), "gaps": [{"skill", "grid", "available",
        "needed"}]}``. The skills are the teams' unless given; the grids the directory's (or the volunteers' own
        when it does not answer).
        """
        try:
            start = domain.week_of(week, utcnow().astimezone(SHANGHAI).date())
        except VolunteerError as error:
            raise _failed(error) from error
        volunteers = self.repo.find(community, {"status": "active"})
        if skills is None:
            skills = sorted({s for team in TeamRepository(self.db).of_community(community)
                             for s in team.get("skills", []) if s in domain.SKILLS})
        try:
            grids = sorted(self._grids(community))
        except ServiceUnavailable:
            grids = sorted({v["grid"] for v in volunteers if v.get("grid")})
        gaps = domain.coverage_gaps(volunteers, skills, grids, start, minimum)
        return {"week": start.isoformat(), "gaps": gaps}

"""The notify service's entrypoints: echo ticket events on each person's channels, with a fallback plan
down to a grid worker's call; serve inboxes, preferences and the human steps; prove that no ticket is silent.

The plan and its state machine are :mod:`services.notify.fallback` (no I/O); the channels
:mod:`services.notify.channels`; texts :mod:`services.notify.templates`. Each echo is one document
(``echoes``: one per (event, recipient)) holding each step's delivery record and the outbox of its
``echo.delivered`` / ``echo.failed`` / ``echo.read`` events, so a redelivered event never sends twice.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import eventlet
from nameko.extensions import DependencyProvider
from nameko.timer import Timer

from kernel.config import settings_of
from kernel.context import Context
from kernel.contracts import BroadcastSchema, PreferencesSchema, TaskDoneSchema
from kernel.envelope import Envelope, utcnow
from kernel.errors import NotFound, Unauthorized, ValidationFailed
from kernel.groupcommit import GroupCommit
from kernel.handlers import handles
from kernel.health import HealthEndpoints
from kernel.idempotency import idempotent
from kernel.logging import get_logger
from kernel.metrics import ECHO_LATENCY, ECHO_STAGE_LATENCY, ECHOES, SILENT_TICKETS, labelled
from kernel.mongo import Mongo
from kernel.outbox import Outbox
from kernel.pagination import decode_cursor, page, page_limit
from kernel.permissions import may_access
from kernel.rpc import RpcClient, rpc
from kernel.validation import load
from services.notify.channels import Channels, Message
from services.notify.domain import (
    code_delivery,
    code_request_errors,
    compose,
    masked_phone,
    national_phone,
)
from services.notify.fallback import (
    DEFERRALS,
    Outcome,
    Policy,
    defer,
    expire,
    failure_receipt,
    is_silent,
    new_echo,
    next_action,
    receipt,
    record_send,
    skip,
)
from services.notify.preferences import deferral, normalised
from services.notify.receipts import Receipt, parse, verified
from services.notify.reports import latency, silent_items
from services.notify.repository import (
    BROADCASTS,
    COLLECTION,
    BroadcastRepository,
    DeliveryRepository,
    EchoRepository,
    InboxRepository,
    PreferenceRepository,
    TaskRepository,
    ensure_indexes,
)
from services.notify.repository import (
    ECHOES as ECHO_COLLECTION,
)
from services.notify.schemas import ECHO_VIEWS, INBOX_MESSAGE, INBOX_MESSAGES, TASKS
from services.notify.sms import Sms, SmsError
from services.notify.templates import facts as _facts
from services.notify.templates import mask_phones, render, staff_facts

log = get_logger(__name__)

EXPORT_PAGE = 200  # messages read at a time for a personal-data export
TIMER_BATCH = 200  # due echoes one timer pass works on
LATENCY_WINDOW = timedelta(days=7)
BROADCAST_BATCH = 500  # residents per directory page and per insert of a broadcast's fan-out
SAVE_ATTEMPTS = 6  # compare-and-set retries of a receipt racing the timer (which may hold an echo for a send)
SAVE_BACKOFF_SECONDS = 0.1


class NotifyTimer(Timer):
    """nameko's timer with its interval from the settings (NOTIFY_TIMER_SECONDS)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(interval=2.0, **kwargs)

    def setup(self) -> None:
        self.interval = settings_of(self.container.config).notify_timer_seconds


notify_timer = NotifyTimer.decorator


@dataclass(frozen=True)
class EchoSettings:
    policy: Policy
    timezone: str
    receipt_secret: str


class EchoSettingsProvider(DependencyProvider):
    """The echo policy (deadlines, back-off, proof window) and time zone, read once from the settings."""

    def setup(self) -> None:
        settings = settings_of(self.container.config)
        self.value = EchoSettings(policy_of(self.container.config), settings.notify_timezone,
                                  settings.sms_receipt_secret)

    def get_dependency(self, worker_ctx) -> EchoSettings:
        return self.value


def policy_of(config) -> Policy:
    settings = settings_of(config)
    deadlines = {**Policy().deadlines, **dict(settings.notify_step_deadlines)}
    return Policy(deadlines=deadlines, retry_delays=settings.notify_retry_delays,
                  max_attempts=settings.notify_max_attempts, proof_seconds=settings.echo_proof_seconds)


def outcome_event(echo: dict, kind: str, channel: str, at: datetime, reason: str | None = None) -> Envelope:
    """``echo.<kind>`` for the ticket's timeline."""
    return Envelope.new(f"echo.{kind}", {
        "echo_id": echo["_id"], "ticket_id": echo["ticket_id"], "recipient": echo["recipient"], "channel": channel,
        "source_event_id": echo["source_event_id"], "source_event_type": echo["source_event_type"],
        "at": at.isoformat(), "reason": reason,
    }, community=echo["community"], correlation_id=echo.get("correlation_id"))


def outcome_events(echo: dict, kinds: list[str], at: datetime) -> list[Envelope]:
    """The events of what a transition of ``echo`` made true (delivered, read, failed)."""
    events = []
    for kind in kinds:
        if kind == "delivered":
            step = next(s for s in echo["steps"] if s["status"] in ("delivered", "read"))
            events.append(outcome_event(echo, "delivered", step["channel"], at))
        elif kind == "read":
            events.append(outcome_event(echo, "read", "inbox", at))
        elif kind == "failed":
            last = echo["steps"][-1]
            events.append(outcome_event(echo, "failed", last["channel"], at,
                                        reason="every step of the plan failed; the last: " + last["status"]))
    return events


def _template(echo: dict) -> str:
    """Which text an echo has: its event type's, or ``staff:<type>`` (echoes stored before carry none)."""
    return echo.get("template") or echo["source_event_type"]


def observe(echo: dict, kinds: list[str]) -> None:
    """Metrics of what just happened to an echo."""
    for kind in kinds:
        if kind == "failed":
            labelled(ECHOES, echo["steps"][-1]["channel"], "failed").inc()
    for step in echo["steps"]:
        if "delivered" in kinds and step["status"] in ("delivered", "read") and step.get("delivered_at"):
            seconds = (step["delivered_at"] - echo["occurred_at"]).total_seconds()
            labelled(ECHOES, step["channel"], "delivered").inc()
            labelled(ECHO_LATENCY, step["channel"]).observe(max(seconds, 0.0))
            labelled(ECHO_STAGE_LATENCY, step["channel"], "delivered").observe(max(seconds, 0.0))
            break
    if "read" in kinds and echo.get("read_at"):
        labelled(ECHO_STAGE_LATENCY, "inbox", "read").observe(
            max((echo["read_at"] - echo["occurred_at"]).total_seconds(), 0.0))


class NotifyService(HealthEndpoints):
    name = "notify"

    db = Mongo(indexes=ensure_indexes)
    writes = GroupCommit()
    outbox = Outbox(collections=[COLLECTION, ECHO_COLLECTION, BROADCASTS])
    context = Context()
    sms = Sms()
    channels = Channels()
    directory = RpcClient("directory")
    echo_settings = EchoSettingsProvider()

    @property
    def inbox(self) -> InboxRepository:
        return InboxRepository(self.db, self.writes)

    @property
    def echoes(self) -> EchoRepository:
        return EchoRepository(self.db, self.writes)

    @property
    def policy(self) -> Policy:
        return self.echo_settings.policy

    @property
    def timezone(self) -> str:
        return self.echo_settings.timezone

    @property
    def receipt_secret(self) -> str:
        return self.echo_settings.receipt_secret

    def lookup_contacts(self, community: str, person: str) -> dict:
        """How to reach the person (``directory.contacts``); a test's subclass answers from a table."""
        return self.directory.contacts(community, [person]).get(person) or {}

    def preferences_of(self, community: str, person: str) -> dict:
        return normalised(PreferenceRepository(self.db).get(community, person))

    # --- echoes ------------------------------------------------------------------------------------

    # Each echo's id is <event_id>:<recipient>; so are its inbox message's and its steps' idempotency keys.
    @handles("notify.ticket_events", dedupe="effects")
    def on_ticket_event(self, event: Envelope) -> None:
        critical = event.payload.get("priority") == "critical"
        for echo in compose(event.type, event.payload):
            self._start(event, echo.recipient, critical)

    @handles("notify.staff_events", dedupe="effects")
    def on_staff_event(self, event: Envelope) -> None:
        """Staff are people too: the grid worker a ticket is dispatched to hears of it, and of its deadlines.

        Same plan and records as a resident's echo, without the human step, and outside the proof
        (the reconciler proves residents' echoes).
        """
        assignee = event.payload.get("assignee") or {}
        if assignee.get("kind") != "worker" or not assignee.get("id"):
            return  # a team or a unit: its members are not known here
        critical = event.payload.get("priority") == "critical" or event.type == "sla.breached"
        self._start(event, assignee["id"], critical, audience="staff", template=f"staff:{event.type}",
                    facts=staff_facts(event.payload), echo_id=f"{event.event_id}:staff:{assignee['id']}")

    def _start(self, event: Envelope, recipient: str, critical: bool, *, audience: str = "resident",
               template: str | None = None, facts: dict | None = None, echo_id: str | None = None) -> None:
        now, policy = utcnow(), self.policy
        prefs = self.preferences_of(event.community, recipient)
        echo = new_echo(echo_id or f"{event.event_id}:{recipient}", prefs["channels"], occurred_at=event.occurred_at,
                        now=now, policy=policy, human=audience != "staff")
        echo.update(community=event.community, ticket_id=event.payload["ticket_id"], recipient=recipient,
                    source_event_id=event.event_id, source_event_type=event.type,
                    correlation_id=event.correlation_id, critical=critical, grid=event.payload.get("grid"),
                    facts=facts if facts is not None else _facts(event.payload), silent_at=None,
                    audience=audience, template=template or event.type)
        if echo["steps"][0]["channel"] == "inbox":
            # The common case costs two inserts: the message, then the echo carrying its echo.delivered.
            self._store_inbox(echo, now)
            echo, kinds = record_send(echo, 0, Outcome("delivered", answer={"code": "stored"}), now, policy)
            events = outcome_events(echo, kinds, now)
            created = self.echoes.create(echo, events)
            if created:
                observe(echo, kinds)
                log.info("echo.delivered", ticket_id=echo["ticket_id"], recipient=recipient, channel="inbox",
                         source_event_type=event.type, audience=audience)
            # A redelivered event finds its echo stored: publish what that echo's outbox holds (perhaps again),
            # never these fresh events, whose ids were not stored and would make a second echo on the ticket.
            self.outbox.flush_soon(ECHO_COLLECTION, echo["_id"], events if created and events else None)
            return
        self.echoes.create(echo, [])
        self._work(echo["_id"], now)

    def _store_inbox(self, echo: dict, now: datetime) -> None:
        title, body = render(_template(echo), "inbox", echo["facts"])
        self.inbox.store({
            "_id": echo["_id"], "community": echo["community"], "recipient": echo["recipient"],
            "ticket_id": echo["ticket_id"], "channel": "inbox", "title": title, "body": body,
            "source_event_id": echo["source_event_id"], "source_event_type": echo["source_event_type"],
            "correlation_id": echo.get("correlation_id"), "created_at": now, "read_at": None,
            "delivery": {"status": "delivered", "requested_at": echo["occurred_at"], "delivered_at": now},
        })

    def _work(self, echo_id: str, now: datetime | None = None) -> dict | None:
        """Move one echo on as far as it can go now (send, retry, expire, fall back); None if not ours now."""
        now = now or utcnow()
        echo = self.echoes.claim(echo_id, now)
        if echo is None:
            return None
        policy, kinds = self.policy, []
        prefs = self.preferences_of(echo["community"], echo["recipient"])
        for _ in range(2 * len(echo["steps"]) + 1):  # each pass settles a step or waits
            action = next_action(echo, now)
            if action is None:
                break
            kind, index = action
            if kind == "expire":
                echo, done = expire(echo, now, policy)
            else:
                channel = echo["steps"][index]["channel"]
                held = None
                if not echo.get("deferred_for") and echo.get("reason") not in DEFERRALS:
                    held = deferral(prefs, channel, critical=echo.get("critical", False), now=now, tz=self.timezone)
                if held is not None:
                    echo = defer(echo, held[0], held[1], policy)
                    log.info("echo.deferred", echo_id=echo_id, reason=held[1], until=held[0].isoformat())
                    break
                echo, done = self._attempt(echo, index, prefs, now, policy)
            kinds += done
        events = outcome_events(echo, kinds, now)
        if not self.echoes.save(echo, events):
            log.warning("echo.moved_meanwhile", echo_id=echo_id)  # a receipt won the race; the timer comes back
            return None
        if events:
            self.outbox.flush_soon(ECHO_COLLECTION, echo_id, events)
            observe(echo, kinds)
        return echo

    def _attempt(self, echo: dict, index: int, prefs: dict, now: datetime, policy: Policy) -> tuple[dict, list[str]]:
        step = echo["steps"][index]
        channel = step["channel"]
        if channel == "inbox":
            self._store_inbox(echo, now)
            return record_send(echo, index, Outcome("delivered", answer={"code": "stored"}), now, policy)
        if channel == "human":
            self._open_task(echo, now)
            return record_send(echo, index, Outcome("sent", answer={"code": "task_opened"}), now, policy)
        adapter = self.channels.get(channel)
        if adapter is None:
            return skip(echo, index, f"no {channel} channel is configured", now)
        if channel == "webhook":
            address = prefs.get("webhook_url")
        else:
            try:
                address = self.lookup_contacts(echo["community"], echo["recipient"]).get(adapter.contact)
            except Exception as error:  # the directory is down or slow: this attempt failed, a later one may not
                log.warning("echo.contacts_unavailable", echo_id=echo["_id"], error=type(error).__name__)
                return record_send(echo, index, Outcome("failed", answer={"code": "contacts_unavailable"},
                                                        retryable=True), now, policy)
        if not address:
            return skip(echo, index, f"no {adapter.contact} on record", now)
        title, body = render(_template(echo), channel, echo["facts"])
        outcome = adapter.send(Message(echo["_id"], f"{echo['_id']}:{channel}", address, title, body,
                                       echo["facts"], echo["source_event_type"], echo["ticket_id"]))
        if outcome.status in ("sent", "delivered"):
            labelled(ECHO_STAGE_LATENCY, channel, "sent").observe(
                max((now - echo["occurred_at"]).total_seconds(), 0.0))
        log.info("echo.attempt", echo_id=echo["_id"], channel=channel, status=outcome.status,
                 code=(outcome.answer or {}).get("code"), retryable=outcome.retryable)
        return record_send(echo, index, outcome, now, policy)

    def _open_task(self, echo: dict, now: datetime) -> None:
        contact = {}
        try:
            contact = self.lookup_contacts(echo["community"], echo["recipient"])
        except Exception as error:  # the task still opens; the worker finds the resident in the register
            log.warning("echo.contacts_unavailable", echo_id=echo["_id"], error=type(error).__name__)
        phone = contact.get("phone")
        label = masked_phone(national_phone(phone) or phone) if phone else echo["recipient"]
        title, body = render(_template(echo), "human", echo["facts"], recipient_label=label)
        TaskRepository(self.db).open({
            "_id": f"{echo['_id']}:human", "echo_id": echo["_id"], "community": echo["community"],
            "ticket_id": echo["ticket_id"], "number": echo["facts"].get("number"), "recipient": echo["recipient"],
            "grid": echo.get("grid"), "title": title, "body": body, "status": "open", "created_at": now,
            "done_at": None, "done_by": None, "note": None,
        })

    def _receipt(self, echo_id: str, channel: str, status: str, at: datetime) -> dict | None:
        """Apply a receipt to the echo (compare-and-set, retried while the timer holds it for a send)."""
        for attempt in range(SAVE_ATTEMPTS):
            echo = self.echoes.get(echo_id)
            if echo is None:
                return None
            echo, kinds = receipt(echo, channel, status, at)
            events = outcome_events(echo, kinds, at)
            if self.echoes.save(echo, events, release=False):
                if events:
                    self.outbox.flush_soon(ECHO_COLLECTION, echo_id, events)
                    observe(echo, kinds)
                return echo
            eventlet.sleep(SAVE_BACKOFF_SECONDS * (attempt + 1))
        # The receipt itself is recorded (the message's read_at, the task's done_at); only the echo's copy lags.
        log.error("echo.receipt_not_applied", echo_id=echo_id, channel=channel, status=status)
        return None

    # --- the timer: retries, deadlines, fallbacks, and the proof ------------------------------------

    @notify_timer
    def tick(self) -> None:
        self.reconcile()

    @rpc
    def reconcile(self, now: str | None = None) -> dict:
        """One pass: move due echoes on, then report every newly silent ticket change (``ticket.silent``)."""
        moment = datetime.fromisoformat(now) if now else utcnow()
        worked = sum(self._work(echo_id, moment) is not None for echo_id in self.echoes.due(moment, TIMER_BATCH))
        silenced = 0
        for echo in self.echoes.newly_silent(moment):
            if not is_silent(echo, moment):
                continue
            step = echo["steps"][echo["current"]]
            event = Envelope.new("ticket.silent", {
                "ticket_id": echo["ticket_id"], "echo_id": echo["_id"], "recipient": echo["recipient"],
                "source_event_id": echo["source_event_id"], "source_event_type": echo["source_event_type"],
                "occurred_at": echo["occurred_at"].isoformat(), "proof_due_at": echo["proof_due_at"].isoformat(),
                "status": echo["status"], "channel": step["channel"],
            }, community=echo["community"], correlation_id=echo.get("correlation_id"))
            if self.echoes.mark_silent(echo["_id"], moment, [event]):
                silenced += 1
                self.outbox.flush_soon(ECHO_COLLECTION, echo["_id"], [event])
                log.warning("ticket.silent", ticket_id=echo["ticket_id"], echo_id=echo["_id"],
                            source_event_type=echo["source_event_type"], channel=step["channel"])
        silent_tickets = len({echo["ticket_id"] for echo in self.echoes.silent()})
        SILENT_TICKETS.set(silent_tickets)
        return {"worked": worked, "newly_silent": silenced, "silent_tickets": silent_tickets}

    @rpc
    def silent_report(self, community: str) -> dict:
        """``{"count", "items"}``: tickets with a change nobody heard of in time (and no reason recorded)."""
        items = silent_items(self.echoes.silent(community))
        return {"count": len(items), "items": items}

    @rpc
    def echo_latency(self, community: str) -> dict:
        """p50/p95 seconds from a ticket change to each stage of its echoes, by channel, over the last week."""
        since = utcnow() - LATENCY_WINDOW
        return {"since": since.isoformat(), "channels": latency(self.echoes.recent(community, since))}

    @rpc
    def echoes_of_ticket(self, community: str, ticket_id: str) -> dict:
        """Every echo of a ticket with each step of its plan (staff see where an echo stands)."""
        return {"items": ECHO_VIEWS.dump(self.echoes.of_ticket(community, ticket_id))}

    # --- preferences, the inbox's read receipts, human steps -----------------------------------------

    @rpc
    def get_preferences(self, community: str, person: str) -> dict:
        return self.preferences_of(community, person)

    @rpc
    def put_preferences(self, community: str, person: str, body: dict, role: str | None = None) -> dict:
        """Replace the person's preferences (``kernel.contracts.PreferencesSchema``).

        Webhooks are for staff's own systems: a resident's webhook would let anyone make notify POST to
        an address of their choosing (inside the platform's network, too).
        """
        preferences = load(PreferencesSchema(), body)
        if "webhook" in preferences["channels"] and role in (None, "resident", "volunteer"):
            raise ValidationFailed("the webhook channel is for staff", {"channels": ["webhook is for staff only"]})
        PreferenceRepository(self.db).put(community, person, preferences, utcnow())
        return self.preferences_of(community, person)

    @rpc
    def mark_read(self, community: str, recipient: str, message_id: str) -> dict:
        """The read receipt of an inbox message (the first read counts): ``echo.read`` to the ticket."""
        now = utcnow()
        message, first = self.inbox.mark_read(community, recipient, message_id, now)
        if message is None:
            raise NotFound("no such message in your inbox", {"id": [message_id]})
        if first:
            self._receipt(message_id, "inbox", "read", now)
        return INBOX_MESSAGE.dump(message)

    @rpc
    def list_tasks(self, community: str, viewer: dict, status: str | None = "open", cursor: str | None = None,
                   limit: int | None = None) -> dict:
        """Human steps the viewer may see (a grid worker: their grids'), newest first."""
        if status not in (None, "open", "done"):
            raise ValidationFailed("unknown status", {"status": ["open or done"]})
        limit = page_limit(limit)
        tasks = [task for task in TaskRepository(self.db).list(community, status, limit + 1,
                                                                 after=decode_cursor(cursor, 2))
                 if may_access("echo_tasks.read", viewer, community=community, grid=task.get("grid"))]
        return page(tasks, limit, key=lambda task: (task["created_at"], task["_id"]), dump=TASKS.dump)

    @rpc
    def complete_task(self, community: str, task_id: str, viewer: dict, body: dict | None = None) -> dict:
        """The grid worker phoned or visited: that is the delivery of the echo's human step."""
        data = load(TaskDoneSchema(), body or {})
        tasks = TaskRepository(self.db)
        task = tasks.get(community, task_id)
        if task is None or not may_access("echo_tasks.complete", viewer, community=community, grid=task.get("grid")):
            raise NotFound("no such task", {"id": [task_id]})
        now = utcnow()
        done = tasks.done(community, task_id, viewer["subject"], data["note"], now)
        if done is not None:
            self._receipt(task["echo_id"], "human", "delivered", now)
            log.info("echo.task_done", task_id=task_id, ticket_id=task["ticket_id"], by=viewer["subject"])
        return TASKS.dump([done or tasks.get(community, task_id)])[0]

    @rpc
    def sms_receipts(self, raw: str, timestamp: str | None, signature: str | None) -> dict:
        """The SMS provider's delivery receipts (signed; see :mod:`services.notify.receipts`).

        A delivered receipt delivers the echo's SMS step (even one that had expired); a failed one
        fails it, and if it was the step in progress the next step is tried at once.
        """
        if not verified(self.receipt_secret, timestamp, signature, raw, time.time()):
            raise Unauthorized("the receipts are not signed with the receipt secret, or are too old",
                               {"X-Huisheng-Signature": ["invalid or stale"]}, code="bad_signature")
        applied = 0
        for item in parse(raw):
            if self._sms_receipt(item):
                applied += 1
        return {"code": 0, "msg": "成功", "applied": applied}

    def _sms_receipt(self, item: Receipt) -> bool:
        for attempt in range(SAVE_ATTEMPTS):
            if attempt:
                eventlet.sleep(SAVE_BACKOFF_SECONDS * attempt)
            echo = self.echoes.get(item.echo_id)
            if echo is None:
                return False
            if item.delivered:
                echo, kinds = receipt(echo, "sms", "delivered", item.at)
            else:
                echo, kinds = failure_receipt(echo, "sms", item.answer, item.at)
                if echo["status"] == "delivering":
                    echo["due_at"] = min(echo.get("due_at") or item.at, item.at)  # the timer tries the next step
            events = outcome_events(echo, kinds, item.at)
            if self.echoes.save(echo, events, release=False):
                if events:
                    self.outbox.flush_soon(ECHO_COLLECTION, echo["_id"], events)
                    observe(echo, kinds)
                return True
        log.error("echo.receipt_not_applied", echo_id=item.echo_id, channel="sms", delivered=item.delivered)
        return False

    # --- broadcasts ----------------------------------------------------------------------------------

    def segment_page(self, community: str, spec: dict, cursor: str | None, limit: int) -> dict:
        """One page of a segment's residents (``directory.segment``); a test's subclass answers from a list."""
        return self.directory.segment(community, spec, cursor=cursor, limit=limit)

    @rpc
    @idempotent  # a retried POST (same Idempotency-Key) is the same broadcast, not a second one
    def create_broadcast(self, community: str, body: dict, actor: str) -> dict:
        """Accept a notice to a segment; its fan-out runs on ``notify.broadcasts``, in batches."""
        data = load(BroadcastSchema(), body)
        self.segment_page(community, data["segment"], None, 1)  # the directory refuses a bad spec now, not later
        now = utcnow()
        broadcast = {"_id": uuid.uuid4().hex, "community": community, "title": mask_phones(data["title"]),
                     "body": mask_phones(data["body"]), "segment": data["segment"], "critical": data["critical"],
                     "status": "queued", "created_by": actor, "created_at": now, "cursor": None, "targeted": 0,
                     "updated_at": now, "done_at": None}
        event = Envelope.new("broadcast.requested", {"broadcast_id": broadcast["_id"], "segment": data["segment"],
                                                     "critical": data["critical"]},
                             community=community, correlation_id=self.context.correlation_id)
        BroadcastRepository(self.db).create(broadcast, [event])
        self.outbox.flush_soon(BROADCASTS, broadcast["_id"], [event])
        log.info("broadcast.created", broadcast_id=broadcast["_id"], actor=actor)
        return self.get_broadcast(community, broadcast["_id"])

    @handles("notify.broadcasts")
    def on_broadcast(self, event: Envelope) -> None:
        """Fan a broadcast out a page at a time: one insert per page, resumable after a crash from its cursor."""
        broadcasts = BroadcastRepository(self.db)
        broadcast = broadcasts.get(event.community, event.payload["broadcast_id"])
        if broadcast is None or broadcast["status"] == "done":
            return
        cursor, targeted = broadcast.get("cursor"), broadcast.get("targeted", 0)
        while True:
            page_of = self.segment_page(event.community, broadcast["segment"], cursor, BROADCAST_BATCH)
            now = utcnow()
            messages = [{
                "_id": f"{broadcast['_id']}:{person['id']}", "community": event.community, "recipient": person["id"],
                "ticket_id": None, "broadcast_id": broadcast["_id"], "channel": "inbox", "title": broadcast["title"],
                "body": broadcast["body"], "source_event_id": event.event_id, "source_event_type": "broadcast",
                "correlation_id": event.correlation_id, "created_at": now, "read_at": None,
                "delivery": {"status": "delivered", "requested_at": broadcast["created_at"], "delivered_at": now},
            } for person in page_of["items"]]
            broadcasts.deliver_batch(messages)
            targeted += len(messages)
            cursor = page_of.get("next_cursor")
            broadcasts.progress(broadcast["_id"], cursor, targeted, done=cursor is None, at=now)
            if cursor is None:
                break
        labelled(ECHOES, "inbox", "broadcast").inc(targeted)
        log.info("broadcast.done", broadcast_id=broadcast["_id"], targeted=targeted)

    @rpc
    def get_broadcast(self, community: str, broadcast_id: str) -> dict:
        """A broadcast's progress: targeted so far, delivered, read, failed."""
        broadcast = BroadcastRepository(self.db).get(community, broadcast_id)
        if broadcast is None:
            raise NotFound("no such broadcast", {"id": [broadcast_id]})
        delivered, read = BroadcastRepository(self.db).counts(broadcast_id)
        return {"id": broadcast["_id"], "title": broadcast["title"], "body": broadcast["body"],
                "segment": broadcast["segment"], "critical": broadcast["critical"], "status": broadcast["status"],
                "created_by": broadcast["created_by"], "created_at": broadcast["created_at"].isoformat(),
                "done_at": broadcast["done_at"].isoformat() if broadcast.get("done_at") else None,
                "targeted": broadcast["targeted"], "delivered": delivered, "read": read, "failed": 0}

    @handles("notify.erasures")
    def on_resident_erased(self, event: Envelope) -> None:
        """A resident asked to be forgotten: their messages, echoes, tasks and preferences go."""
        community, resident = event.community, event.payload["resident_id"]
        removed = self.inbox.erase_recipient(community, resident)
        echoes = self.echoes.erase_recipient(community, resident)
        tasks = TaskRepository(self.db).erase_recipient(community, resident)
        PreferenceRepository(self.db).erase(community, resident)
        log.info("resident.erased", resident_id=resident, inbox_messages_removed=removed, echoes_removed=echoes,
                 tasks_removed=tasks)

    @rpc
    def send_code(self, community: str, phone: str, code: str, purpose: str) -> dict:
        """Send a one-time code by SMS now; the caller waits for the provider's answer.

        Answers ``{"sent": true, "provider_id"}`` or ``{"sent": false, "error": {"code", "message",
        "retryable"}}``; bad input raises ValidationFailed. The code is a credential: it goes to the
        provider and nowhere else (no log line, event, outbox or record); the delivery record keeps
        the phone masked.
        """
        errors = code_request_errors(community, phone, code, purpose)
        if errors:
            raise ValidationFailed("the code request is not valid", errors)
        number = national_phone(phone)
        record = code_delivery(uuid.uuid4().hex, community, number, purpose, utcnow())
        deliveries = DeliveryRepository(self.db)
        deliveries.requested(record)
        try:
            provider_id, attempts = self.sms.send_code(number, code, record["_id"])
        except SmsError as error:
            deliveries.failed(record["_id"], utcnow(), error.to_dict(), error.attempts)
            log.warning("sms.code_failed", delivery_id=record["_id"], phone=masked_phone(number), purpose=purpose,
                        provider_code=error.code, retryable=error.retryable, attempts=error.attempts)
            return {"sent": False, "delivery_id": record["_id"], "error": error.to_dict()}
        deliveries.sent(record["_id"], utcnow(), provider_id, attempts)
        log.info("sms.code_sent", delivery_id=record["_id"], phone=masked_phone(number), purpose=purpose,
                 provider_id=provider_id, attempts=attempts)
        return {"sent": True, "provider_id": provider_id, "delivery_id": record["_id"]}

    @rpc
    def export_recipient(self, community: str, recipient: str) -> dict:
        """Every inbox message of the recipient: their part of a personal-data export."""
        messages, after = [], None
        while page_of := self.inbox.of_recipient(community, recipient, EXPORT_PAGE, after=after):
            messages += page_of
            after = (page_of[-1]["created_at"], page_of[-1]["_id"])
        return {"inbox": INBOX_MESSAGES.dump(messages),
                "preferences": self.preferences_of(community, recipient)}

    @rpc
    def list_inbox(self, community: str, recipient: str, cursor: str | None = None, limit: int | None = None) -> dict:
        """The recipient's messages, newest first: ``{"items", "next_cursor", "unread"}``."""
        limit = page_limit(limit)
        messages = self.inbox.of_recipient(community, recipient, limit + 1, after=decode_cursor(cursor, 2))
        answer = page(messages, limit, key=lambda message: (message["created_at"], message["_id"]),
                      dump=INBOX_MESSAGES.dump)
        return {**answer, "unread": self.inbox.unread(community, recipient)}

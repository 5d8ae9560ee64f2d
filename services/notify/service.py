"""The notify service's entrypoints: echo ticket events on each person's channels, with a fallback plan
down to a grid worker's call; broadcasts, digests and the daily check-in; serve inboxes, preferences and the
human steps; prove that no ticket is silent.

The plan and its state machine are :mod:`services.notify.fallback` (no I/O); the channels
:mod:`services.notify.channels`; texts :mod:`services.notify.templates`; the check-in's clock
:mod:`services.notify.checkins`. Each echo is one document, one per (event, recipient), holding each step's
delivery record, so a redelivered event never sends twice: the inbox message itself when the echo is
delivered there at once (the common case, one insert), else a document of ``echoes`` (see
:mod:`services.notify.repository`). These records are the echoes' outcomes: no event tells them to anyone;
a ticket's timeline asks for them when it is shown (:meth:`NotifyService.echo_outcomes`).
"""

from __future__ import annotations

import time
import uuid
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import eventlet

from kernel.context import Context
from kernel.contracts import BroadcastSchema, PreferencesSchema, TaskDoneSchema
from kernel.envelope import Envelope, utcnow
from kernel.errors import NotFound, Unauthorized, ValidationFailed
from kernel.groupcommit import GroupCommit
from kernel.handlers import handles
from kernel.health import HealthEndpoints
from kernel.idempotency import idempotent
from kernel.logging import get_logger
from kernel.metrics import labelled
from kernel.mongo import Mongo
from kernel.outbox import Outbox
from kernel.pagination import decode_cursor, page, page_limit
from kernel.permissions import may_access
from kernel.rpc import RpcClient, rpc
from kernel.validation import load
from services.notify import checkins
from services.notify.cache import CachedPreferences
from services.notify.channels import Channels, Message
from services.notify.dependencies import EchoSettingsProvider, notify_timer
from services.notify.domain import (
    CONSENT_WITHDRAWN,
    code_delivery,
    code_request_errors,
    compose,
    consent_withdrawn,
    digest_id_of,
    echo_message,
    is_digest_id,
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
from services.notify.outcomes import ECHO_STAGE_LATENCY, ECHOES, SILENT_TICKETS, by_ticket, observe, template_of
from services.notify.preferences import deferral, normalised
from services.notify.receipts import Receipt, parse, verified
from services.notify.reports import latency, silent_items
from services.notify.repository import (
    BROADCASTS,
    BroadcastRepository,
    CheckinRepository,
    DeliveryRepository,
    DigestRepository,
    EchoRepository,
    InboxRepository,
    PreferenceRepository,
    TaskRepository,
    carried,
    carrying,
    ensure_indexes,
)
from services.notify.repository import (
    ECHOES as ECHO_COLLECTION,
)
from services.notify.schemas import (
    CHECKIN_ANSWER,
    CHECKIN_SCHEDULE,
    ECHO_ENTRIES,
    ECHO_OUTCOMES_QUERY,
    ECHO_VIEWS,
    INBOX_MESSAGE,
    INBOX_MESSAGES,
    TASKS,
)
from services.notify.sms import Sms, SmsError
from services.notify.templates import digest_text, mask_phones, render, staff_facts
from services.notify.templates import facts as _facts

log = get_logger(__name__)

EXPORT_PAGE = 200  # messages read at a time for a personal-data export
TIMER_BATCH = 200  # due echoes one timer pass works on
LATENCY_WINDOW = timedelta(days=7)
BROADCAST_BATCH = 500  # residents per directory page and per insert of a broadcast's fan-out
BROADCAST_SENDERS = 8  # a page's pushes (SMS, WeChat ...) in flight at once
# inbox messages per insert: the database serves one write at a time, and a ticket echo waits behind each
BROADCAST_INSERT = 100
SAVE_ATTEMPTS = 6  # compare-and-set retries of a receipt racing the timer (which may hold an echo for a send)
SAVE_BACKOFF_SECONDS = 0.1
SCHEDULE_SECONDS = 60.0  # a changed check-in hour is seen by every notify process within this




class NotifyService(HealthEndpoints):
    name = "notify"

    db = Mongo(indexes=ensure_indexes)
    writes = GroupCommit()
    outbox = Outbox(collections=[ECHO_COLLECTION, BROADCASTS])  # ticket.silent, broadcast.requested
    context = Context()
    sms = Sms()
    channels = Channels()
    preference_cache = CachedPreferences()
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
        """How to reach the person and what they consented to (``directory.contacts``); a test's subclass
        answers from a table. A broadcast's page looked its people up at once (``contacts_hint``)."""
        hint = getattr(self, "contacts_hint", None)
        if hint is not None and person in hint:
            return hint[person]
        return self.directory.contacts(community, [person]).get(person) or {}

    def lookup_many_contacts(self, community: str, people: list[str]) -> dict:
        """``directory.contacts`` for many people in one call; a test's subclass answers from its table."""
        return self.directory.contacts(community, people)

    def preferences_of(self, community: str, person: str) -> dict:
        return self.preference_cache.get(
            community, person, lambda c, p: normalised(PreferenceRepository(self.db).get(c, p)))

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
            # The common case costs one insert: the message carrying the echo's record. A redelivered event
            # finds it stored (the insert collides): nothing more to do.
            echo, kinds = record_send(echo, 0, Outcome("delivered", answer={"code": "stored"}), now, policy)
            title, body = render(template_of(echo), "inbox", echo["facts"])
            if self.inbox.deliver_echo(echo_message(echo, title, body, now), echo):
                observe(echo, kinds)
                log.info("echo.delivered", ticket_id=echo["ticket_id"], recipient=recipient, channel="inbox",
                         source_event_type=event.type, audience=audience)
            return
        if self.inbox.carries_echo(echo["_id"]):
            # a redelivered event whose first copy was echoed in the inbox (preferences changed since): that
            # message is the echo, never a second one on another channel
            return
        self.echoes.create(echo)
        self._work(echo["_id"], now)

    def _store_inbox(self, echo: dict, now: datetime) -> None:
        """The inbox step of an echo that started elsewhere (a broadcast's notice is there already)."""
        title, body = render(template_of(echo), "inbox", echo["facts"])
        self.inbox.store(echo_message(echo, title, body, now))

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
                if echo.get("reason") == "digest_pending" or echo["steps"][index].get("digest_id"):
                    return self._send_digest(echo, index, prefs, now, policy)  # saves the whole digest
                echo, done = self._attempt(echo, index, prefs, now, policy)
            kinds += done
        if not self.echoes.save(echo):
            log.warning("echo.moved_meanwhile", echo_id=echo_id)  # a receipt won the race; the timer comes back
            return None
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
        title, body = render(template_of(echo), channel, echo["facts"])
        result = self._send(echo, channel, prefs, now, echo["_id"], title, body, echo["facts"])
        return self._record(echo, index, result, now, policy)

    def _record(self, echo: dict, index: int, result: Outcome | str, now: datetime,
                policy: Policy) -> tuple[dict, list[str]]:
        """The echo after an attempt: an outcome of the provider's, or the reason the step was skipped."""
        if isinstance(result, Outcome):
            return record_send(echo, index, result, now, policy)
        echo, done = skip(echo, index, result, now)
        if result == CONSENT_WITHDRAWN:
            echo["reason"] = "consent_withdrawn"  # accounted for: the reconciler does not call it silent
        return echo, done

    def _send(self, echo: dict, channel: str, prefs: dict, now: datetime, message_id: str, title: str, body: str,
              facts: dict) -> Outcome | str:
        """One send on an external channel under ``<message_id>:<channel>``: the provider's outcome, or why
        nothing was sent (no channel configured, no address, consent withdrawn)."""
        adapter = self.channels.get(channel)
        if adapter is None:
            return f"no {channel} channel is configured"
        if channel == "webhook":
            address = prefs.get("webhook_url")
        else:
            try:
                contact = self.lookup_contacts(echo["community"], echo["recipient"])
            except Exception as error:  # the directory is down or slow: this attempt failed, a later one may not
                log.warning("echo.contacts_unavailable", echo_id=message_id, error=type(error).__name__)
                return Outcome("failed", answer={"code": "contacts_unavailable"}, retryable=True)
            if consent_withdrawn(contact.get("consents"), channel, echo.get("audience", "resident")):
                log.info("echo.consent_withdrawn", echo_id=message_id, channel=channel)
                return CONSENT_WITHDRAWN
            address = contact.get(adapter.contact)
        if not address:
            return f"no {adapter.contact} on record"
        outcome = adapter.send(Message(message_id, f"{message_id}:{channel}", address, title, body, facts,
                                       echo["source_event_type"], echo.get("ticket_id") or ""))
        if outcome.status in ("sent", "delivered"):
            labelled(ECHO_STAGE_LATENCY, channel, "sent").observe(
                max((now - echo["occurred_at"]).total_seconds(), 0.0))
        log.info("echo.attempt", echo_id=message_id, channel=channel, status=outcome.status,
                 code=(outcome.answer or {}).get("code"), retryable=outcome.retryable)
        return outcome

    def _send_digest(self, lead: dict, index: int, prefs: dict, now: datetime, policy: Policy) -> dict | None:
        """Send every echo of the person's digest that is due on this channel as one message; each echo's step
        records the same outcome and points at the digest (``digest_id``, also the send's idempotency key)."""
        channel = lead["steps"][index]["channel"]
        digest_id = lead["steps"][index].get("digest_id") or digest_id_of(lead, channel)
        group = [lead]
        for candidate in self.echoes.digest_candidates(lead, digest_id, now):
            echo = self.echoes.claim(candidate, now)
            if echo is None:
                continue
            if next_action(echo, now) == ("send", echo["current"]) and \
                    echo["steps"][echo["current"]]["channel"] == channel:
                group.append(echo)
            else:
                self.echoes.save(echo)  # not this digest's after all: let it go
        title, body = digest_text([render(template_of(echo), channel, echo["facts"]) for echo in group])
        facts = {"number": f"{len(group)}条"}
        result = self._send(lead, channel, prefs, now, digest_id, title, body, facts)
        DigestRepository(self.db).record(digest_id, lead, channel, [echo["_id"] for echo in group], title, body,
                                         result if isinstance(result, Outcome) else None, now)
        log.info("echo.digest", digest_id=digest_id, recipient=lead["recipient"], channel=channel, echoes=len(group))
        saved = None
        for echo in group:
            current = echo["current"]
            echo, kinds = self._record(echo, current, result, now, policy)
            echo["digest_id"] = digest_id
            echo["steps"][current]["digest_id"] = digest_id
            if not self.echoes.save(echo):
                log.warning("echo.moved_meanwhile", echo_id=echo["_id"])
                continue
            observe(echo, kinds)
            if echo["_id"] == lead["_id"]:
                saved = echo
        return saved

    def _open_task(self, echo: dict, now: datetime) -> None:
        contact = {}
        try:
            contact = self.lookup_contacts(echo["community"], echo["recipient"])
        except Exception as error:  # the task still opens; the worker finds the resident in the register
            log.warning("echo.contacts_unavailable", echo_id=echo["_id"], error=type(error).__name__)
        phone = contact.get("phone")
        label = masked_phone(national_phone(phone) or phone) if phone else echo["recipient"]
        title, body = render(template_of(echo), "human", echo["facts"], recipient_label=label)
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
            if self.echoes.save(echo, release=False):
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
        self.run_checkins()

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
    def echo_outcomes(self, community: str, ticket_ids: list[str]) -> dict[str, list[dict]]:
        """Each ticket's echo outcomes as timeline entries (delivered, failed, read), oldest first: tickets
        shows them on a ticket's timeline when it answers for it, read from notify's records now rather
        than copied by an event. Every asked id is in the answer (``[]``: no echo yet)."""
        query = load(ECHO_OUTCOMES_QUERY, {"community": community, "ticket_ids": ticket_ids})
        ticket_ids = list(dict.fromkeys(query["ticket_ids"]))
        found = by_ticket(ticket_ids, self.echoes.of_tickets(query["community"], ticket_ids) if ticket_ids else [])
        return {ticket_id: ECHO_ENTRIES.dump(entries) for ticket_id, entries in found.items()}

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
        self.preference_cache.forget(community, person)
        return self.preferences_of(community, person)

    @rpc
    def mark_read(self, community: str, recipient: str, message_id: str) -> dict:
        """The read receipt of an inbox message (the first read counts): the ticket's timeline shows it."""
        now = utcnow()
        message, first = self.inbox.mark_read(community, recipient, message_id, now)
        if message is None:
            raise NotFound("no such message in your inbox", {"id": [message_id]})
        if first and "echo" in message:  # the message is the echo's record too: one document to update
            echo, kinds = receipt(carried(message), "inbox", "read", now)
            self.inbox.save_echo(echo)
            observe(echo, kinds)
        elif first:
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
            # a digest's receipt is every echo's it carried
            for echo_id in self.echoes.of_digest(item.echo_id) if is_digest_id(item.echo_id) else [item.echo_id]:
                if self._sms_receipt(item, echo_id):
                    applied += 1
        return {"code": 0, "msg": "成功", "applied": applied}

    def _sms_receipt(self, item: Receipt, echo_id: str) -> bool:
        for attempt in range(SAVE_ATTEMPTS):
            if attempt:
                eventlet.sleep(SAVE_BACKOFF_SECONDS * attempt)
            echo = self.echoes.get(echo_id)
            if echo is None:
                return False
            if item.delivered:
                echo, kinds = receipt(echo, "sms", "delivered", item.at)
            else:
                echo, kinds = failure_receipt(echo, "sms", item.answer, item.at)
                if echo["status"] == "delivering":
                    echo["due_at"] = min(echo.get("due_at") or item.at, item.at)  # the timer tries the next step
            if self.echoes.save(echo, release=False):
                observe(echo, kinds)
                return True
        log.error("echo.receipt_not_applied", echo_id=echo_id, channel="sms", delivered=item.delivered)
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
        broadcast_id = uuid.uuid4().hex
        self._create_broadcast(community, broadcast_id, data, actor, utcnow())
        return self.get_broadcast(community, broadcast_id)

    def _create_broadcast(self, community: str, broadcast_id: str, data: dict, actor: str, now: datetime,
                          **extra) -> bool:
        """Store a broadcast with its request (``broadcast.requested``); False if one with that id exists."""
        broadcast = {"_id": broadcast_id, "community": community, "title": mask_phones(data["title"]),
                     "body": mask_phones(data["body"]), "segment": data["segment"], "critical": data["critical"],
                     "status": "queued", "created_by": actor, "created_at": now, "cursor": None, "targeted": 0,
                     "updated_at": now, "done_at": None, **extra}
        event = Envelope.new("broadcast.requested", {"broadcast_id": broadcast_id, "segment": data["segment"],
                                                     "critical": data["critical"]},
                             community=community, correlation_id=self.context.correlation_id)
        if not BroadcastRepository(self.db).create(broadcast, [event]):
            return False
        self.outbox.flush_soon(BROADCASTS, broadcast_id, [event])
        log.info("broadcast.created", broadcast_id=broadcast_id, actor=actor)
        return True

    @handles("notify.broadcasts")
    def on_broadcast(self, event: Envelope) -> None:
        """Fan a broadcast out a page at a time, each resident on their preferred channel.

        Each page costs a directory call, one preferences read, inserts of its inbox messages (every
        resident's notice is in their inbox; for those who prefer the inbox the message carries the echo's
        record, delivered) and one insert of the echoes that start on a push channel, which are then sent at
        once with the same plan, records, idempotency keys (``<broadcast>:<resident>:<channel>``) and
        fallback as a ticket's echo. A crash resumes from the last page done: what was stored is skipped,
        what was sent is not sent again (the echo is no longer due; a provider sees the same key).
        """
        broadcasts = BroadcastRepository(self.db)
        broadcast = broadcasts.get(event.community, event.payload["broadcast_id"])
        if broadcast is None or broadcast["status"] == "done":
            return
        cursor, targeted = broadcast.get("cursor"), broadcast.get("targeted", 0)
        while True:
            page_of = self.segment_page(event.community, broadcast["segment"], cursor, BROADCAST_BATCH)
            targeted += self._broadcast_page(broadcast, event, page_of["items"])
            cursor = page_of.get("next_cursor")
            broadcasts.progress(broadcast["_id"], cursor, targeted, done=cursor is None, at=utcnow())
            if cursor is None:
                break
        labelled(ECHOES, "inbox", "broadcast").inc(targeted)
        log.info("broadcast.done", broadcast_id=broadcast["_id"], targeted=targeted)

    def _broadcast_page(self, broadcast: dict, event: Envelope, members: list[dict]) -> int:
        now, policy, community = utcnow(), self.policy, event.community
        people = [member["id"] for member in members]
        grids = {member["id"]: member.get("grid") for member in members}
        stored = PreferenceRepository(self.db).many(community, people)
        prefs = {person: normalised(stored.get(person)) for person in people}
        facts = {"title": broadcast["title"], "body": broadcast["body"], "number": broadcast["_id"][:8]}
        messages, pushed = [], []
        title, body = render("broadcast", "inbox", facts)  # the same words for everyone
        for person in people:
            echo = new_echo(f"{broadcast['_id']}:{person}", prefs[person]["channels"], occurred_at=broadcast[
                "created_at"], now=now, policy=policy, human=False)  # no grid worker calls on 10,000 doors
            echo.update(community=community, ticket_id=None, broadcast_id=broadcast["_id"], recipient=person,
                        source_event_id=event.event_id, source_event_type="broadcast",
                        correlation_id=event.correlation_id, critical=broadcast["critical"], grid=grids[person],
                        facts=facts, silent_at=None, audience="broadcast", template="broadcast")
            message = echo_message(echo, title, body, now)
            if echo["steps"][0]["channel"] == "inbox":
                echo, _ = record_send(echo, 0, Outcome("delivered", answer={"code": "stored"}), now, policy)
                message = carrying(message, echo)
            else:
                pushed.append(echo)
            messages.append(message)
        broadcasts = BroadcastRepository(self.db)
        for start in range(0, len(messages), BROADCAST_INSERT):
            broadcasts.deliver_batch(messages[start:start + BROADCAST_INSERT])
            eventlet.sleep(0)  # ticket echoes' writes go between two of these, not after the whole page
        broadcasts.create_echoes(pushed)
        if pushed:  # their sends read preferences again: from this page's read, not one read each
            self.preference_cache.put(community, {echo["recipient"]: prefs[echo["recipient"]] for echo in pushed})
            try:
                self.contacts_hint = self.lookup_many_contacts(community, [echo["recipient"] for echo in pushed])
            except Exception as error:  # each send looks its contact up again; the directory may be back by then
                log.warning("broadcast.contacts_unavailable", broadcast_id=broadcast["_id"],
                            error=type(error).__name__)
            pool = eventlet.GreenPool(BROADCAST_SENDERS)
            for _ in pool.imap(lambda echo: self._work(echo["_id"], now), pushed):
                pass  # an echo a send could not settle stays due: the timer comes back to it
            self.contacts_hint = None
        return len(messages)

    @rpc
    def get_broadcast(self, community: str, broadcast_id: str) -> dict:
        """A broadcast's progress: targeted so far, delivered (on any channel), read (in the inbox), failed."""
        broadcast = BroadcastRepository(self.db).get(community, broadcast_id)
        if broadcast is None:
            raise NotFound("no such broadcast", {"id": [broadcast_id]})
        return self._broadcast_view(broadcast)

    @rpc
    def list_broadcasts(self, community: str, cursor: str | None = None, limit: int | None = None) -> dict:
        """The community's broadcasts, newest first, each with its progress: ``{"items", "next_cursor"}``."""
        limit = page_limit(limit)
        found = BroadcastRepository(self.db).recent(community, limit + 1, after=decode_cursor(cursor, 2))
        return page(found, limit, key=lambda broadcast: (broadcast["created_at"], broadcast["_id"]),
                    dump=self._broadcast_views)

    def _broadcast_view(self, broadcast: dict) -> dict:
        return self._broadcast_views([broadcast])[0]

    def _broadcast_views(self, broadcasts: list[dict]) -> list[dict]:
        counted = BroadcastRepository(self.db).counts([broadcast["_id"] for broadcast in broadcasts])
        return [self._broadcast_shown(broadcast, *counted[broadcast["_id"]]) for broadcast in broadcasts]

    @staticmethod
    def _broadcast_shown(broadcast: dict, delivered: int, read: int, failed: int) -> dict:
        return {"id": broadcast["_id"], "title": broadcast["title"], "body": broadcast["body"],
                "segment": broadcast["segment"], "critical": broadcast["critical"], "status": broadcast["status"],
                "created_by": broadcast["created_by"], "created_at": broadcast["created_at"].isoformat(),
                "done_at": broadcast["done_at"].isoformat() if broadcast.get("done_at") else None,
                "targeted": broadcast["targeted"], "delivered": delivered, "read": read, "failed": failed}

    # --- the daily health check-in of residents in home quarantine (services/notify/checkins.py) ------------

    @rpc
    def run_checkins(self, now: str | None = None) -> dict:
        """One pass (the timer's): send the day's check-in once its hour has come; raise who did not answer."""
        moment = datetime.fromisoformat(now) if now else utcnow()
        config, state = self.echo_settings, self.echo_settings.checkin_state
        if now is not None or time.monotonic() - state.read_at > SCHEDULE_SECONDS:
            state.at, state.read_at = CheckinRepository(self.db).schedule(config.community), time.monotonic()
        at = state.at
        day = checkins.checkin_day(moment, at, config.timezone) if at else None
        if day is None:
            return {"day": None, "at": at}
        broadcast_id = checkins.checkin_id(config.community, day)
        created = False
        if state.sent_day != day:
            created = self._create_broadcast(config.community, broadcast_id, {
                "title": checkins.TITLE, "body": checkins.BODY, "segment": checkins.SEGMENT, "critical": False},
                "notify:checkin", moment, checkin_day=day.isoformat())
            state.sent_day = day
        raised = 0
        if state.raised_day != day and checkins.raise_due(moment, day, at, config.timezone):
            raised = self._raise_missing(config.community, day, broadcast_id)
            state.raised_day = day
        return {"day": day.isoformat(), "created": created, "raised": raised}

    def _raise_missing(self, community: str, day: date, broadcast_id: str) -> int:
        """Each grid worker hears how many of their grid's residents did not answer (a staff echo, once a day)."""
        missing = checkins.missing_by_grid(self._roll(community, day))
        if not missing:
            return 0
        workers = {grid["code"]: grid.get("workers") or [] for grid in self.directory.place_tree(community)["grids"]}
        # The day's check-in stands as the source of these echoes; the envelope is never published.
        source = Envelope.new("checkin.missing", {"ticket_id": None}, community=community)
        raised = 0
        for grid, residents in missing.items():
            for worker in workers.get(grid, []):
                self._start(source, worker, False, audience="staff", template=checkins.MISSING_TEMPLATE,
                            facts={"count": len(residents), "date": day.isoformat()},
                            echo_id=f"{broadcast_id}:missing:{grid}:{worker}")
                raised += 1
            log.info("checkin.missing", day=day.isoformat(), grid=grid, residents=len(residents))
        return raised

    def _roll(self, community: str, day: date) -> list[dict]:
        members = BroadcastRepository(self.db).members(checkins.checkin_id(community, day))
        return checkins.roll(members, CheckinRepository(self.db).of_day(community, day.isoformat()))

    @rpc
    def set_checkin_schedule(self, community: str, body: dict) -> dict:
        """The hour (local, ``HH:MM``) of the daily check-in, or ``null``: none is sent."""
        data = load(CHECKIN_SCHEDULE, body)
        CheckinRepository(self.db).set_schedule(community, data["at"], utcnow())
        if community == self.echo_settings.community:
            self.echo_settings.checkin_state.read_at = float("-inf")  # this process sees it at once
        return {"at": data["at"], "timezone": self.timezone}

    @rpc
    def answer_checkin(self, community: str, resident: str, body: dict) -> dict:
        """A resident's answer to today's check-in (the last one of the day counts); 404 without a check-in."""
        data = load(CHECKIN_ANSWER, body)
        now = utcnow()
        day = now.astimezone(ZoneInfo(self.timezone)).date()
        if not BroadcastRepository(self.db).reached(checkins.checkin_id(community, day), resident):
            raise NotFound("there is no health check-in for you today", {"date": [day.isoformat()]})
        answer = CheckinRepository(self.db).answer(community, day.isoformat(), resident, data, now)
        return {"date": day.isoformat(), "status": answer["status"], "temperature": answer["temperature"],
                "note": answer["note"], "answered_at": now.isoformat()}

    @rpc
    def list_checkins(self, community: str, viewer: dict, day: str | None = None) -> dict:
        """The day's check-in: every resident it reached (a grid worker: their grids') and their answer."""
        today = utcnow().astimezone(ZoneInfo(self.timezone)).date()
        wanted = checkins.parse_day(day, today)
        if wanted is None:
            raise ValidationFailed("not a date", {"date": ["a date as YYYY-MM-DD"]})
        rows = [row for row in self._roll(community, wanted)
                if may_access("checkins.read", viewer, community=community, grid=row["grid"])]
        for row in rows:
            if row["answer"] and row["answer"].get("answered_at"):
                row["answer"]["answered_at"] = row["answer"]["answered_at"].isoformat()
        answered = sum(row["answered"] for row in rows)
        return {"date": wanted.isoformat(), "answered": answered, "missing": len(rows) - answered, "items": rows,
                "next_cursor": None}

    @handles("notify.erasures")
    def on_resident_erased(self, event: Envelope) -> None:
        """A resident asked to be forgotten: their messages, echoes, tasks and preferences go."""
        community, resident = event.community, event.payload["resident_id"]
        removed = self.inbox.erase_recipient(community, resident)
        echoes = self.echoes.erase_recipient(community, resident)
        tasks = TaskRepository(self.db).erase_recipient(community, resident)
        PreferenceRepository(self.db).erase(community, resident)
        self.preference_cache.forget(community, resident)
        CheckinRepository(self.db).erase_recipient(community, resident)
        DigestRepository(self.db).erase_recipient(community, resident)
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

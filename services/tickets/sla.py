"""Deadlines at run time: the calendar in the database, the index of due times, the timer's once-only claims.

**The index.** Every ticket document carries ``sla_next_at``: when its next threshold
(50 %, 75 %, 100 % of a clock) is due, absent when no clock runs. A write that changes
the ticket sets it to the time of the change, so the timer looks at the ticket again
(a transition may stop a clock or start one); the timer reads only documents whose
``sla_next_at`` has come, through an index, never all tickets.

**Once only.** Each threshold reached is claimed by inserting one small record in
``sla_marks`` whose ``_id`` is (ticket, clock, clock's start, threshold) and which carries
the ``sla.warned``/``sla.breached`` event in its outbox: the claim and the event are one
write, so two tickets processes (or one restarted) cannot both emit it — the second insert
collides. Then the timer moves the ticket's ``sla_next_at`` on, on condition that the
ticket's version is still the one it read; the timer never changes the version, so it
never makes a person's write fail.

**The calendar** lives in ``calendars`` (one document per year, seeded from the shipped
JSON); each process keeps it for :data:`CALENDAR_SECONDS`. A year a deadline touches that
is not loaded counts weekends only, is logged at WARNING and set to 1 in
``huisheng_calendar_missing{year}`` until it is loaded.

**The clock** is the wall clock, unless ``SLA_TEST_CLOCK=1``: then an offset stored in the
database (``set_test_clock``) moves every process's "now" at once, so tests drive the timer
of the running service across its thresholds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from weakref import WeakKeyDictionary

from nameko.extensions import DependencyProvider
from nameko.timer import Timer
from prometheus_client import Gauge
from pymongo import ASCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from kernel.config import settings_of
from kernel.envelope import Envelope, utcnow
from kernel.errors import ValidationFailed
from kernel.events import current_version
from kernel.logging import get_logger
from kernel.outbox import with_events
from services.tickets.calendar import FIRST_YEAR, LAST_YEAR, WorkingCalendar, YearCalendar, shipped_years
from services.tickets.catalogue import Catalogue, shipped_catalogue
from services.tickets.clocks import (
    FIRST_RESPONSE,
    RESOLUTION,
    Clock,
    crossings,
    next_check,
    percents_of,
    running_clocks,
    sla_event,
    ticket_policy,
)
from services.tickets.deadlines import DeadlineStore, Row, row_to_dict
from services.tickets.domain import Ticket

DUE_AT = "due_at"  # on a ticket document: the resolution deadline (the ticket's ``due_at``)
NEXT_AT = "sla_next_at"  # on a ticket document: when the timer should look at it next
DEADLINES = "sla_clocks"  # on a ticket document: its running clocks as the timer last computed them
SLA_MARKS = "sla_marks"  # one record per (ticket, clock, start, threshold) reached, with its event
CALENDARS = "calendars"  # one document per year: _id is the year
TEST_CLOCK = "sla_test_clock"  # the offset of the test clock, when SLA_TEST_CLOCK allows it
TIMER_BATCH = 200  # tickets the timer looks at per read
TIMER_ROUNDS = 20  # reads per tick at most: a backlog is worked off over several ticks
CALENDAR_SECONDS = 30.0  # how long a process keeps the calendar before reading it again
WARN_AGAIN_SECONDS = 3600.0  # a missing year is logged again this often while it stays missing

CALENDAR_MISSING = Gauge("huisheng_calendar_missing",
                         "1 while a year that deadlines reach has no working calendar loaded (weekends only)",
                         ["year"])

log = get_logger(__name__)


def ensure_indexes(db: Database, tickets: str) -> None:
    """The index of due times, the marks' index; the shipped calendars and the catalogue's deadline table
    where the database has none yet."""
    db[tickets].create_index(NEXT_AT, sparse=True, name="by_sla_next_at")
    db[SLA_MARKS].create_index([("ticket_id", ASCENDING)], name="by_ticket")
    CalendarStore(db).seed()
    DeadlineStore(db).seed(shipped_catalogue())  # at start-up, never on a read: a read does not write


def resolution_due(clocks: Iterable) -> datetime | None:
    """The deadline of the running resolution clock, None when it does not run (resolved, closed)."""
    return next((clock.due_at for clock in clocks if clock.name == RESOLUTION), None)


def next_at_for_write(moment: datetime) -> dict:
    """The member a write of a ticket adds so that the timer looks at the ticket again."""
    return {NEXT_AT: moment}


def give_deadlines(ticket: Ticket, row: Row, catalogue: Catalogue, calendar: WorkingCalendar) -> list[Clock]:
    """A new ticket's deadlines: its category's ``row`` of the table (kept on it, so a later change of the
    table does not move them) and its first-response and resolution due times (``response_due_at``,
    ``due_at``) from its clocks; the running clocks (for :func:`first_look`)."""
    ticket.deadlines = row_to_dict(row)
    running = running_clocks(ticket, ticket_policy(ticket, catalogue), calendar)
    ticket.due_at = resolution_due(running)
    ticket.response_due_at = next((clock.due_at for clock in running if clock.name == FIRST_RESPONSE), None)
    return running


def first_look(ticket: Ticket, catalogue: Catalogue, calendar: WorkingCalendar,
               running: list[Clock] | None = None) -> dict:
    """When the timer should first look at a new ticket (its first threshold), as members of its document;
    ``running``: its clocks, if the caller has them (:func:`give_deadlines`)."""
    if running is None:
        running = running_clocks(ticket, ticket_policy(ticket, catalogue), calendar)
    upcoming = next_check(running, calendar, ticket.created_at, percents_of(catalogue))
    if calendar.missing_seen:
        MISSING.report(calendar, read_at=CALENDARS_CACHE.read_at(calendar))
    return next_at_for_write(upcoming) if upcoming is not None else {}


def clocks_view(ticket: Ticket, catalogue: Catalogue, calendar: WorkingCalendar) -> dict:
    """The ticket's running clocks, their deadlines and thresholds, computed now."""
    percents = percents_of(catalogue)
    running = running_clocks(ticket, ticket_policy(ticket, catalogue), calendar)
    return {"ticket_id": ticket.id, "priority": ticket.priority, "fast_lane": ticket.is_fast_lane,
            "clocks": [clock.to_view(calendar, percents) for clock in running]}


def admin_year(year: Any) -> int:
    """A year an admin may load a calendar for, or 422."""
    try:
        value = int(year)
    except (TypeError, ValueError):
        value = None
    if value is None or isinstance(year, bool) or not FIRST_YEAR <= value <= LAST_YEAR:
        raise ValidationFailed("the request is not valid", {"year": [f"a year from {FIRST_YEAR} to {LAST_YEAR}"]})
    return value


# --- the calendar in the database -------------------------------------------------------------------

class CalendarStore:
    """Years of the working calendar, one document each."""

    def __init__(self, db: Database) -> None:
        self.collection = db[CALENDARS]

    def seed(self, years: Iterable[int] | None = None) -> list[int]:
        """Insert the shipped calendars of years the database has none for; the years inserted.

        A year an admin has loaded is never overwritten by the seed.
        """
        inserted = []
        for year in shipped_years() if years is None else years:
            document = {"_id": year, **YearCalendar.load(year).to_dict(), "updated_at": utcnow(), "updated_by": None}
            with suppress(DuplicateKeyError):
                self.collection.insert_one(document)
                inserted.append(year)
        return inserted

    def get(self, year: int) -> YearCalendar | None:
        document = self.collection.find_one({"_id": year})
        return YearCalendar.from_dict(year, _calendar_fields(document)) if document else None

    def document(self, year: int) -> dict | None:
        """The year as the API shows it (with who loaded it when), None if not loaded."""
        document = self.collection.find_one({"_id": year})
        if document is None:
            return None
        view = YearCalendar.from_dict(year, _calendar_fields(document)).to_dict()
        updated_at = document.get("updated_at")
        return {**view, "updated_at": updated_at.isoformat() if updated_at else None,
                "updated_by": document.get("updated_by")}

    def put(self, calendar: YearCalendar, by: str | None) -> None:
        self.collection.replace_one(
            {"_id": calendar.year},
            {**calendar.to_dict(), "updated_at": utcnow(), "updated_by": by}, upsert=True,
        )

    def all(self) -> list[YearCalendar]:
        return [YearCalendar.from_dict(document["_id"], _calendar_fields(document))
                for document in self.collection.find({})]


def _calendar_fields(document: dict) -> dict:
    return {key: document.get(key) for key in ("holidays", "workdays", "source") if key in document}


class CalendarCache:
    """The working calendar of one database, read at most every :data:`CALENDAR_SECONDS` per process.

    A read that a PUT overtook (``forget`` while it was reading) is used once but not kept, and
    :meth:`read_at` lets the missing-year warning tell such a stale calendar from a current one.
    """

    def __init__(self, missing: MissingYears, seconds: float = CALENDAR_SECONDS) -> None:
        self.missing, self.seconds = missing, seconds
        self._cached: dict[str, tuple[float, WorkingCalendar]] = {}
        self._forgotten: dict[str, int] = {}  # per database, how many times forget was called
        self._read_at: WeakKeyDictionary[WorkingCalendar, float] = WeakKeyDictionary()

    def get(self, db: Database, catalogue: Catalogue) -> WorkingCalendar:
        loaded = self._cached.get(db.name)
        if loaded is not None and time.monotonic() - loaded[0] < self.seconds:
            return loaded[1]
        started, forgotten = time.monotonic(), self._forgotten.get(db.name, 0)
        hours = catalogue.working_hours
        calendar = WorkingCalendar(CalendarStore(db).all(), hours.start, hours.end, hours.weekdays)
        self._read_at[calendar] = started
        if self._forgotten.get(db.name, 0) == forgotten:
            self._cached[db.name] = (started, calendar)
        self.missing.cleared(calendar)
        return calendar

    def forget(self, db: Database) -> None:
        """Read the calendar again on next use (after a PUT)."""
        self._cached.pop(db.name, None)
        self._forgotten[db.name] = self._forgotten.get(db.name, 0) + 1

    def read_at(self, calendar: WorkingCalendar) -> float | None:
        """When (``time.monotonic``) this cache began reading ``calendar``; None if it did not read it."""
        return self._read_at.get(calendar)


class MissingYears:
    """The ops warning for years without a calendar: a log line at WARNING and the gauge, per process."""

    def __init__(self) -> None:
        self._warned: dict[int, float] = {}
        self._loaded_at: dict[int, float] = {}

    def report(self, calendar: WorkingCalendar, years: Iterable[int] = (), read_at: float | None = None) -> list[int]:
        """Warn about the years ``calendar`` was asked about (and ``years``) that it lacks; the years warned.

        A year loaded in this process since ``read_at`` (when ``calendar`` was read, see
        :meth:`CalendarCache.read_at`) is not missing: the calendar is stale.
        """
        for year in years:
            calendar.is_working_day(date(year, 6, 1))  # notes the year if it is missing
        warned = []
        now = time.monotonic()
        for year in sorted(calendar.missing_seen):
            if calendar.has_year(year) or (read_at is not None and self._loaded_at.get(year, -math.inf) >= read_at):
                continue
            CALENDAR_MISSING.labels(year=str(year)).set(1)
            last = self._warned.get(year)
            if last is None or now - last >= WARN_AGAIN_SECONDS:
                self._warned[year] = now
                warned.append(year)
                log.warning("calendar.missing", year=year,
                            hint=f"PUT /api/v1/calendar/{year}: deadlines in {year} count weekends only")
        return warned

    def cleared(self, calendar: WorkingCalendar) -> None:
        """Years now loaded stop being reported."""
        for year in [year for year in self._warned if calendar.has_year(year)]:
            del self._warned[year]
            CALENDAR_MISSING.labels(year=str(year)).set(0)

    def loaded(self, year: int) -> None:
        self._warned.pop(year, None)
        self._loaded_at[year] = time.monotonic()
        CALENDAR_MISSING.labels(year=str(year)).set(0)


MISSING = MissingYears()
CALENDARS_CACHE = CalendarCache(MISSING)


# --- the clock ------------------------------------------------------------------------------------

class SlaClock(DependencyProvider):
    """Injects the service's "now" for deadlines: the wall clock, or (SLA_TEST_CLOCK) the wall clock moved."""

    def setup(self) -> None:
        self.movable = settings_of(self.container.config).sla_test_clock

    def get_dependency(self, worker_ctx) -> SlaClock:
        return self

    def now(self, db: Database) -> datetime:
        now = utcnow()
        if not self.movable:
            return now
        document = db[TEST_CLOCK].find_one({"_id": "offset"})
        return now + timedelta(seconds=(document or {}).get("seconds", 0.0))

    def move(self, db: Database, seconds: float) -> None:
        """Set the offset every process's clock reads (only where SLA_TEST_CLOCK allows it)."""
        db[TEST_CLOCK].replace_one({"_id": "offset"}, {"_id": "offset", "seconds": float(seconds)}, upsert=True)


class SlaTimer(Timer):
    """nameko's timer with its interval from the settings (SLA_TIMER_SECONDS)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(interval=10.0, **kwargs)

    def setup(self) -> None:
        self.interval = settings_of(self.container.config).sla_timer_seconds


sla_timer = SlaTimer.decorator


# --- the timer's work -----------------------------------------------------------------------------

@dataclass
class Fired:
    """What one pass of the timer did: the marks it wrote (with their events) and the tickets it looked at."""

    marks: list[tuple[str, list[Envelope]]]
    looked_at: int


class DeadlineWatch:
    """One pass over the tickets whose next threshold has come."""

    def __init__(self, db: Database, tickets: str, catalogue: Catalogue, calendar: WorkingCalendar) -> None:
        self.tickets = db[tickets]
        self.marks = db[SLA_MARKS]
        self.catalogue, self.calendar = catalogue, calendar
        self.percents = percents_of(catalogue)

    def run(self, now: datetime, correlation_id: str | None = None) -> Fired:
        fired, looked_at = [], 0
        for _ in range(TIMER_ROUNDS):
            documents = list(self.tickets.find({NEXT_AT: {"$lte": now}}, {"_outbox": 0},
                                               sort=[(NEXT_AT, ASCENDING)], limit=TIMER_BATCH))
            for document in documents:
                fired += self.look_at(document, now, correlation_id)
            looked_at += len(documents)
            if len(documents) < TIMER_BATCH:
                break
        return Fired(fired, looked_at)

    def look_at(self, document: dict, now: datetime, correlation_id: str | None = None
                ) -> list[tuple[str, list[Envelope]]]:
        """Claim every threshold of the ticket that has come; schedule its next look."""
        ticket = Ticket.from_document(document)
        policy = ticket_policy(ticket, self.catalogue)
        clocks = running_clocks(ticket, policy, self.calendar)
        fired = []
        for crossing in crossings(clocks, self.calendar, now, self.percents):
            key = crossing.clock.key(ticket.id, crossing.threshold)
            event = sla_event(ticket, crossing)
            envelope = Envelope.new(event.type, event.payload, community=ticket.community,
                                    correlation_id=correlation_id, version=current_version(event.type))
            mark = {"_id": key, "ticket_id": ticket.id, "community": ticket.community,
                    "clock": crossing.clock.name, "threshold": crossing.threshold,
                    "due_at": crossing.clock.due_at, "threshold_at": crossing.at, "at": now}
            try:
                self.marks.insert_one(with_events(mark, [envelope]))
            except DuplicateKeyError:  # claimed already: by another process, or before a restart
                continue
            fired.append((key, [envelope]))
            log.info("sla.reached", ticket_id=ticket.id, clock=crossing.clock.name, threshold=crossing.threshold,
                     due_at=crossing.clock.due_at.isoformat())
        upcoming = next_check(clocks, self.calendar, now, self.percents)
        view = [clock.to_view(self.calendar, self.percents) for clock in clocks]
        # ``due_at`` is the running resolution clock's deadline (None once none runs): what ``overdue`` lists read.
        update = {"$set": {DEADLINES: view, NEXT_AT: _ceil_ms(upcoming), DUE_AT: resolution_due(clocks)}} if upcoming \
            else {"$set": {DEADLINES: view, DUE_AT: resolution_due(clocks)}, "$unset": {NEXT_AT: ""}}
        # Only if nobody changed the ticket meanwhile: a change set NEXT_AT to its own time, which must stay.
        self.tickets.update_one({"_id": ticket.id, "version": ticket.version}, update)
        return fired


def _ceil_ms(moment: datetime) -> datetime:
    """Up to the next millisecond: the database keeps milliseconds, and the look must not come early."""
    micro = math.ceil(moment.microsecond / 1000) * 1000
    if micro == 1_000_000:
        return moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment.replace(microsecond=micro)

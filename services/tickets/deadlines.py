"""The deadline table per category × priority: what the catalogue seeds, what an admin edits.

The catalogue (``data/service_catalogue.json``) has one deadline policy per priority. The office may
want a different one for one category (a leak is not a noise complaint), so the table the clocks
read is per category × priority, kept in the tickets database (``deadlines``, one document per
category). It is seeded at start-up from the catalogue — every category gets the catalogue's
policies — and never overwritten by the seed once there; ``PUT /api/v1/deadlines/{category}``
replaces a category's row (an admin, recorded with who and when, the earlier rows kept in its
``history``).

A ticket takes its category's row when it is received (:attr:`Ticket.deadlines`): a change applies
to tickets received after it, and a ticket keeps the deadlines it was given, also when a
callback raises its priority.

>>> from services.tickets.catalogue import Catalogue
>>> seeded = catalogue_row(Catalogue.load())
>>> row = parse_row({"priorities": {"urgent": {"first_response": {"amount": 1, "unit": "working_hours"},
...                                            "next_update": {"amount": 4, "unit": "working_hours"},
...                                            "resolution": {"amount": 2, "unit": "working_days"}}}}, seeded)
>>> row["urgent"].time_kind, row["urgent"].first_response, row["low"] == seeded["low"]
('working', Duration(amount=1, unit='working_hours'), True)
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import suppress
from typing import Any

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from kernel.envelope import utcnow
from services.tickets.catalogue import (
    PRIORITIES,
    UNITS_BY_TIME_KIND,
    Catalogue,
    DeadlinePolicy,
    Duration,
)

DEADLINES = "deadlines"  # the collection: one document per category, ``_id`` the category
CLOCK_FIELDS: tuple[str, ...] = ("first_response", "next_update", "resolution")
HISTORY_KEPT = 50  # earlier rows a category keeps (who changed what, when): the audit trail of its deadlines
TABLE_SECONDS = 30.0  # how long a process keeps the table before reading it again (a PUT clears its own at once)
# The longest deadline an admin may set, about a year of its unit: past it the calendar would count for ever.
MAX_AMOUNT: dict[str, int] = {"minutes": 525_600, "hours": 8_760, "days": 365, "working_hours": 2_000,
                              "working_days": 250, "close_of_working_day": 250}
# Amount 0 means "the close of the day of receipt"; for every other unit a deadline of 0 would be breached at once.
MIN_AMOUNT: dict[str, int] = {unit: 1 for unit in MAX_AMOUNT} | {"close_of_working_day": 0}

Row = dict[str, DeadlinePolicy]  # priority -> policy, for one category


class DeadlinesInvalid(ValueError):
    """A row an admin sent does not hold; ``problems`` maps each field to what is wrong with it."""

    def __init__(self, problems: dict[str, list[str]]) -> None:
        self.problems = problems
        super().__init__(f"the deadlines are not valid: {problems}")


class UnknownCategory(LookupError):
    def __init__(self, category: str) -> None:
        self.category = category
        super().__init__(f"no category {category!r} in the catalogue")


def categories(catalogue: Catalogue) -> list[str]:
    """The catalogue's categories, in the order their first service appears."""
    return list(dict.fromkeys(service.category for service in catalogue.all()))


def catalogue_row(catalogue: Catalogue) -> Row:
    """What every category starts with: the catalogue's policy of each priority."""
    return {priority: catalogue.deadline_policy(priority) for priority in PRIORITIES}


def policy_to_dict(policy: DeadlinePolicy) -> dict[str, Any]:
    """A policy as stored and shown (the catalogue's JSON shape).

    >>> from services.tickets.catalogue import Catalogue
    >>> policy_to_dict(Catalogue.load().deadline_policy("critical"))["first_response"]
    {'amount': 30, 'unit': 'minutes'}
    """
    return {"time_kind": policy.time_kind,
            **{name: {"amount": getattr(policy, name).amount, "unit": getattr(policy, name).unit}
               for name in CLOCK_FIELDS}}


def policy_from_dict(priority: str, stored: Mapping[str, Any]) -> DeadlinePolicy:
    """A stored policy (written by :func:`policy_to_dict`, so already valid)."""
    return DeadlinePolicy(priority=priority, time_kind=stored["time_kind"],
                          **{name: Duration(int(stored[name]["amount"]), stored[name]["unit"])
                             for name in CLOCK_FIELDS})


def row_to_dict(row: Row) -> dict[str, dict[str, Any]]:
    return {priority: policy_to_dict(row[priority]) for priority in PRIORITIES if priority in row}


def policy_of(ticket_deadlines: Mapping[str, Any] | None, priority: str, catalogue: Catalogue) -> DeadlinePolicy:
    """The policy a ticket's clocks run on: its own row (taken when it was received) at its priority now;
    the catalogue's for a ticket received before rows were kept.

    >>> from services.tickets.catalogue import Catalogue
    >>> catalogue = Catalogue.load()
    >>> policy_of(None, "low", catalogue) == catalogue.deadline_policy("low")
    True
    >>> own = {"low": {**policy_to_dict(catalogue.deadline_policy("low")), "resolution": {"amount": 3,
    ...                                                                               "unit": "working_days"}}}
    >>> policy_of(own, "low", catalogue).resolution
    Duration(amount=3, unit='working_days')
    """
    if ticket_deadlines and priority in ticket_deadlines:
        return policy_from_dict(priority, ticket_deadlines[priority])
    return catalogue.deadline_policy(priority)


def parse_row(body: Any, current: Row) -> Row:
    """An admin's row for one category, ``{"priorities": {priority: {first_response, next_update, resolution
    [, time_kind]}}}``, over the category's ``current`` row.

    Every priority the body names is checked; those it leaves out keep their current policy. Each
    duration is ``{"amount", "unit"}`` with a unit the catalogue knows and a positive whole amount (0
    only for ``close_of_working_day``: the close of the day of receipt). A policy's three units are all
    natural time or all working time (its clocks count one or the other); ``time_kind``, if sent, must
    say the same. Raises :class:`DeadlinesInvalid` with every problem found.
    """
    if not isinstance(body, Mapping) or set(body) != {"priorities"}:
        raise DeadlinesInvalid({"_schema": ['an object with one member, "priorities"']})
    raw = body["priorities"]
    if not isinstance(raw, Mapping) or not raw:
        raise DeadlinesInvalid({"priorities": [f"an object with a policy for one or more of {list(PRIORITIES)}"]})
    problems: dict[str, list[str]] = {}
    row = dict(current)
    for priority, policy in raw.items():
        if priority not in PRIORITIES:
            problems[f"priorities.{str(priority)[:64]}"] = [f"unknown priority; one of {list(PRIORITIES)}"]
            continue
        parsed = _parse_policy(priority, policy, problems)
        if parsed is not None:
            row[priority] = parsed
    if problems:
        raise DeadlinesInvalid(problems)
    return row


def _parse_policy(priority: str, raw: Any, problems: dict[str, list[str]]) -> DeadlinePolicy | None:
    if not isinstance(raw, Mapping):
        problems[f"priorities.{priority}"] = ["an object with first_response, next_update and resolution"]
        return None
    unknown = sorted(str(key)[:64] for key in raw if key not in (*CLOCK_FIELDS, "time_kind"))
    if unknown:
        problems[f"priorities.{priority}"] = [f"unknown members {unknown}"]
    durations = {name: _parse_duration(raw.get(name), f"priorities.{priority}.{name}", problems)
                 for name in CLOCK_FIELDS}
    if any(duration is None for duration in durations.values()):
        return None
    kinds = {kind for duration in durations.values() for kind, units in UNITS_BY_TIME_KIND.items()
             if duration.unit in units}
    if len(kinds) != 1:
        problems[f"priorities.{priority}"] = ["the three deadlines count the same time: all natural units "
                              f"{sorted(UNITS_BY_TIME_KIND['natural'])} or all working units "
                              f"{sorted(UNITS_BY_TIME_KIND['working'])}"]
        return None
    time_kind = kinds.pop()
    if raw.get("time_kind", time_kind) != time_kind:
        problems[f"priorities.{priority}.time_kind"] = [f"the units are {time_kind} time"]
        return None
    if unknown:
        return None
    return DeadlinePolicy(priority=priority, time_kind=time_kind, **durations)


def _parse_duration(raw: Any, where: str, problems: dict[str, list[str]]) -> Duration | None:
    if not isinstance(raw, Mapping):
        problems[where] = ['an object like {"amount": 2, "unit": "working_hours"}']
        return None
    unit, amount = raw.get("unit"), raw.get("amount")
    if unit not in MAX_AMOUNT:
        problems[f"{where}.unit"] = [f"one of {sorted(MAX_AMOUNT)}"]
        return None
    if not isinstance(amount, int) or isinstance(amount, bool) or not MIN_AMOUNT[unit] <= amount <= MAX_AMOUNT[unit]:
        problems[f"{where}.amount"] = [f"a whole number from {MIN_AMOUNT[unit]} to {MAX_AMOUNT[unit]} for {unit}"]
        return None
    return Duration(amount, unit)


class DeadlineStore:
    """The table in the tickets database: one document per category, with who changed it last and before."""

    def __init__(self, db: Database) -> None:
        self.collection = db[DEADLINES]

    def seed(self, catalogue: Catalogue) -> list[str]:
        """Give every category of the catalogue that has no row the catalogue's; the categories seeded.

        Run at start-up (the service's index set-up), never on a read: a read does not write.
        """
        seeded, row = [], row_to_dict(catalogue_row(catalogue))
        for category in categories(catalogue):
            with suppress(DuplicateKeyError):  # there already: an admin's row, or another process's seed
                self.collection.insert_one({"_id": category, "priorities": row, "updated_at": utcnow(),
                                            "updated_by": None, "history": []})
                seeded.append(category)
        return seeded

    def row(self, category: str, catalogue: Catalogue) -> Row:
        """A category's row as stored (the catalogue's if it has none yet); :class:`UnknownCategory` if the
        catalogue has no such category."""
        if category not in categories(catalogue):
            raise UnknownCategory(category)
        document = self.collection.find_one({"_id": category}, {"history": 0})
        if document is None:
            return catalogue_row(catalogue)
        return {priority: policy_from_dict(priority, policy) for priority, policy in document["priorities"].items()}

    def table(self) -> dict[str, Row]:
        return {document["_id"]: {priority: policy_from_dict(priority, policy)
                                  for priority, policy in document["priorities"].items()}
                for document in self.collection.find({}, {"history": 0})}

    def view(self, catalogue: Catalogue) -> dict[str, Any]:
        """The table as the API shows it, in the catalogue's order of categories."""
        documents = {document["_id"]: document for document in self.collection.find({}, {"history": 0})}
        return {"categories": [_view(documents[category]) for category in categories(catalogue)
                               if category in documents],
                "priorities": list(PRIORITIES), "units": {kind: sorted(units)
                                                          for kind, units in UNITS_BY_TIME_KIND.items()}}

    def put(self, category: str, row: Row, by: str | None, catalogue: Catalogue) -> dict[str, Any]:
        """Replace a category's row; the row it replaces goes to its history. The category as shown."""
        if category not in categories(catalogue):
            raise UnknownCategory(category)
        now = utcnow()
        before = self.collection.find_one({"_id": category}, {"history": 0}) or {}
        earlier = {"priorities": before.get("priorities"), "updated_at": before.get("updated_at"),
                   "updated_by": before.get("updated_by"), "replaced_at": now, "replaced_by": by}
        self.collection.update_one(
            {"_id": category},
            {"$set": {"priorities": row_to_dict(row), "updated_at": now, "updated_by": by},
             "$push": {"history": {"$each": [earlier], "$slice": -HISTORY_KEPT}}},
            upsert=True)
        return _view(self.collection.find_one({"_id": category}, {"history": 0}))


def _view(document: Mapping[str, Any]) -> dict[str, Any]:
    updated_at = document.get("updated_at")
    return {"category": document["_id"], "priorities": document["priorities"],
            "updated_at": updated_at.isoformat() if updated_at else None, "updated_by": document.get("updated_by")}


class TableCache:
    """The table of one database, read at most every :data:`TABLE_SECONDS` per process (intake reads it)."""

    def __init__(self, seconds: float = TABLE_SECONDS) -> None:
        self.seconds = seconds
        self._cached: dict[str, tuple[float, dict[str, Row]]] = {}

    def row(self, db: Database, category: str, catalogue: Catalogue) -> Row:
        """The category's row; the catalogue's for a category with none (not seeded yet)."""
        loaded = self._cached.get(db.name)
        if loaded is None or time.monotonic() - loaded[0] >= self.seconds:
            loaded = (time.monotonic(), DeadlineStore(db).table())
            self._cached[db.name] = loaded
        return loaded[1].get(category) or catalogue_row(catalogue)

    def forget(self, db: Database) -> None:
        """Read the table again on next use (after a PUT)."""
        self._cached.pop(db.name, None)


TABLES = TableCache()

"""The service catalogue (Open311 "services") and the deadline table, as editable data.

What residents can report, and how fast each priority must be answered, are
decisions of the community office, not of the code: they live in
``data/service_catalogue.json`` and are checked when loaded, so a bad edit
fails loudly at start-up instead of misrouting tickets later.

>>> catalogue = Catalogue.load()
>>> service = catalogue.get("gas_smell")
>>> service.name, service.default_priority, service.fast_lane
('燃气泄漏气味', 'critical', True)
>>> catalogue.deadline_policy("critical").first_response
Duration(amount=30, unit='minutes')

This module only reads its JSON file when :meth:`Catalogue.load` is called;
:meth:`Catalogue.from_dict` builds a catalogue without any I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, time
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

PRIORITIES: tuple[str, ...] = ("critical", "urgent", "normal", "low")
"""Every priority, highest first; ``critical`` is the fast lane."""

FAST_LANE_PRIORITY = "critical"

UNITS_BY_TIME_KIND: dict[str, frozenset[str]] = {
    "natural": frozenset({"minutes", "hours", "days"}),
    "working": frozenset({"working_hours", "working_days", "close_of_working_day"}),
}
"""Duration units allowed for each kind of clock (natural time, or working time on the calendar)."""

ALL_UNITS: frozenset[str] = frozenset().union(*UNITS_BY_TIME_KIND.values())

DEFAULT_PATH: Path = Path(__file__).with_name("data") / "service_catalogue.json"

_SNAKE_CASE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")

T = TypeVar("T")


class CatalogueError(ValueError):
    """The catalogue data is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str], source: str = "service catalogue") -> None:
        self.problems = list(problems)
        self.source = source
        listing = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"{source} is invalid:\n{listing}")


class UnknownService(LookupError):
    """No service with this code is in the catalogue."""

    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(f"unknown service code {code!r}")


class UnknownPriority(LookupError):
    """The deadline table has no row for this priority."""

    def __init__(self, priority: str) -> None:
        self.priority = priority
        super().__init__(f"unknown priority {priority!r}; known: {', '.join(PRIORITIES)}")


@dataclass(frozen=True)
class Service:
    """One kind of request residents can make (an Open311 service).

    ``category`` is the Open311 ``group`` and is copied onto every ticket.
    """

    code: str
    name: str
    description: str
    category: str
    default_priority: str
    keywords: tuple[str, ...] = ()
    fast_lane: bool = False
    attributes: tuple[Attribute, ...] = ()  # Open311 service definition: what else a report of it asks
    private: bool = False  # private by nature (elderly care, disputes): never in a public Open311 answer

    def to_open311(self) -> dict[str, Any]:
        """The GeoReport v2 ``services`` entry of this service."""
        return {
            "service_code": self.code,
            "service_name": self.name,
            "description": self.description,
            "metadata": bool(self.attributes),
            "type": "realtime",
            "keywords": ",".join(self.keywords),
            "group": self.category,
        }

    def to_open311_definition(self) -> dict[str, Any]:
        """The GeoReport v2 service definition: ``{"service_code", "attributes": [...]}`` in their order.

        >>> leak = Catalogue.load().get("roof_leak").to_open311_definition()
        >>> [(a["code"], a["datatype"], a["required"]) for a in leak["attributes"]][:2]
        [('floor', 'number', True), ('still_leaking', 'singlevaluelist', True)]
        """
        return {"service_code": self.code, "attributes": [attribute.to_open311() for attribute in self.attributes]}

    def check_attributes(self, given: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
        """``attribute[code]=value`` answers checked against the definition: (clean values, errors by field).

        >>> leak = Catalogue.load().get("roof_leak")
        >>> leak.check_attributes({"floor": "6", "still_leaking": "yes"})
        ({'floor': 6, 'still_leaking': 'yes'}, {})
        >>> leak.check_attributes({"floor": "six", "colour": "red"})[1]["attribute[floor]"]
        ['must be a number']
        """
        known = {attribute.code: attribute for attribute in self.attributes}
        errors = {f"attribute[{code}]": ["not an attribute of this service"] for code in given if code not in known}
        values: dict[str, Any] = {}
        for attribute in self.attributes:
            raw = given.get(attribute.code)
            if raw is None or raw == "" or raw == []:
                if attribute.required and attribute.variable:
                    errors[f"attribute[{attribute.code}]"] = ["required"]
                continue
            try:
                values[attribute.code] = attribute.check(raw)
            except ValueError as error:
                errors[f"attribute[{attribute.code}]"] = [str(error)]
        return values, errors


ATTRIBUTE_DATATYPES: tuple[str, ...] = ("string", "number", "datetime", "text", "singlevaluelist", "multivaluelist")
"""GeoReport v2 attribute datatypes."""
MAX_ATTRIBUTE_CHARS = 1000


@dataclass(frozen=True)
class Attribute:
    """One field of an Open311 service definition (``values`` are ``(key, name)`` for the list datatypes).

    >>> floor = Attribute("floor", "number", "几楼？", required=True, order=1)
    >>> floor.check("3"), floor.check(12)
    (3, 12)
    >>> Attribute("spots", "multivaluelist", "哪里", order=2, values=(("a", "A"), ("b", "B"))).check(["b", "a"])
    ['b', 'a']
    """

    code: str
    datatype: str
    description: str
    required: bool = False
    order: int = 1
    datatype_description: str | None = None
    values: tuple[tuple[str, str], ...] = ()
    variable: bool = True

    def to_open311(self) -> dict[str, Any]:
        return {
            "variable": self.variable, "code": self.code, "datatype": self.datatype, "required": self.required,
            "datatype_description": self.datatype_description, "order": self.order,
            "description": self.description, "values": [{"key": key, "name": name} for key, name in self.values],
        }

    def check(self, raw: Any) -> Any:
        """The answer in its clean form, or ValueError saying what is wrong with it."""
        keys = [key for key, _ in self.values]
        if self.datatype == "multivaluelist":
            chosen = raw if isinstance(raw, list) else [raw]
            if not chosen or any(not isinstance(item, str) or item not in keys for item in chosen):
                raise ValueError(f"each value must be one of {', '.join(keys)}")
            return list(dict.fromkeys(chosen))
        if isinstance(raw, list):
            raise ValueError("give one value")
        text = str(raw).strip()
        if len(text) > MAX_ATTRIBUTE_CHARS:
            raise ValueError(f"longer than {MAX_ATTRIBUTE_CHARS} characters")
        if self.datatype == "singlevaluelist":
            if text not in keys:
                raise ValueError(f"must be one of {', '.join(keys)}")
            return text
        if self.datatype == "number":
            return _number(text)
        if self.datatype == "datetime":
            return _datetime_text(text)
        if self.datatype == "string" and ("\n" in text or "\r" in text):
            raise ValueError("a string has no line breaks (the datatype text has)")
        return text


def _number(text: str) -> int | float:
    try:
        number = float(text)
    except ValueError:
        raise ValueError("must be a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError("must be a number")
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


def _datetime_text(text: str) -> str:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("must be an ISO 8601 date and time with a timezone, like 2026-11-26T08:30:00+08:00") from None
    if moment.tzinfo is None:
        raise ValueError("must carry a timezone (Z or +08:00)")
    return moment.isoformat()


@dataclass(frozen=True)
class Duration:
    """An amount of clock time; the unit says which clock (see ``UNITS_BY_TIME_KIND``).

    ``close_of_working_day`` counts to the end of a working day: amount 0 is the
    close of the day of receipt (or of the next working day when received
    outside working hours), amount ``n`` is ``n`` working days after that.
    """

    amount: int
    unit: str

    @property
    def is_working_time(self) -> bool:
        return self.unit in UNITS_BY_TIME_KIND["working"]


@dataclass(frozen=True)
class DeadlinePolicy:
    """The deadlines of one priority: first response, keep-in-loop update, resolution."""

    priority: str
    time_kind: str
    first_response: Duration
    next_update: Duration
    resolution: Duration


@dataclass(frozen=True)
class WorkingHours:
    """Office hours; weekdays are 0 = Monday ... 6 = Sunday (holidays live in the calendar)."""

    start: time
    end: time
    weekdays: tuple[int, ...]


@dataclass(frozen=True)
class CallbackPolicy:
    """When the resident is called back (回访) after resolution, and how many attempts are made."""

    due: Duration
    attempts: int


class Catalogue:
    """The loaded, validated catalogue: services by code plus the deadline table."""

    def __init__(
        self,
        services: list[Service],
        deadlines: dict[str, DeadlinePolicy],
        working_hours: WorkingHours,
        callback: CallbackPolicy,
        warnings_at_percent: tuple[int, ...] = (50, 75),
    ) -> None:
        self._services = {service.code: service for service in services}
        self._deadlines = dict(deadlines)
        self.working_hours = working_hours
        self.callback = callback
        self.warnings_at_percent = warnings_at_percent

    @classmethod
    def load(cls, path: str | Path | None = None) -> Catalogue:
        """Read and validate a catalogue file; the packaged JSON when ``path`` is None."""
        source = Path(path) if path is not None else DEFAULT_PATH
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise CatalogueError([f"not valid JSON: {error}"], str(source)) from error
        return cls.from_dict(data, source=str(source))

    @classmethod
    def from_dict(cls, data: Any, source: str = "service catalogue") -> Catalogue:
        """Validate parsed catalogue data; raises :class:`CatalogueError` listing every problem."""
        if not isinstance(data, Mapping):
            raise CatalogueError(["the catalogue must be a JSON object"], source)
        problems: list[str] = []
        services = _parse_services(data.get("services"), problems)
        deadlines = _parse_deadlines(data.get("deadlines"), problems)
        working_hours = _attempt(problems, _parse_working_hours, data.get("working_hours"))
        callback = _attempt(problems, _parse_callback, data.get("callback"))
        warnings = _attempt(problems, _parse_warnings, data.get("warnings_at_percent", [50, 75]))
        if problems:
            raise CatalogueError(problems, source)
        return cls(services, deadlines, working_hours, callback, warnings)

    def get(self, code: str) -> Service:
        """The service with this code, or :class:`UnknownService`."""
        try:
            return self._services[code]
        except KeyError:
            raise UnknownService(code) from None

    def all(self) -> tuple[Service, ...]:
        """Every service, in the order of the data file."""
        return tuple(self._services.values())

    def deadline_policy(self, priority: str) -> DeadlinePolicy:
        """The deadlines of a priority, or :class:`UnknownPriority`."""
        try:
            return self._deadlines[priority]
        except KeyError:
            raise UnknownPriority(priority) from None

    def suggest(self, text: str) -> list[Service]:
        """Services whose keywords occur in ``text``, most keyword hits first.

        >>> [s.code for s in Catalogue.load().suggest("楼下闻到很大的煤气味")]
        ['gas_smell']
        """
        hits = {service: sum(word in text for word in service.keywords) for service in self.all()}
        matching = [service for service in self.all() if hits[service]]
        return sorted(matching, key=lambda service: -hits[service])

    def __contains__(self, code: object) -> bool:
        return code in self._services

    def __len__(self) -> int:
        return len(self._services)


@cache
def shipped_catalogue() -> Catalogue:
    """The packaged catalogue, loaded once per process: the service's modules share the one instance."""
    return Catalogue.load()


class _Invalid(Exception):
    """One problem in the data, with where it is."""


def _attempt(problems: list[str], parse: Callable[..., T], *args: Any) -> T | None:
    """``parse(*args)``, or None with its problem added to ``problems``."""
    try:
        return parse(*args)
    except _Invalid as invalid:
        problems.append(str(invalid))
        return None


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _Invalid(f"{where}: must be an object")
    return value


def _text(raw: Mapping[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(f"{where}: {key!r} must be a non-empty string")
    return value


def _whole_number(raw: Mapping[str, Any], key: str, where: str, minimum: int) -> int:
    value = raw.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise _Invalid(f"{where}: {key!r} must be a whole number >= {minimum}")
    return value


def _texts(raw: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise _Invalid(f"{where}: {key!r} must be a list of non-empty strings")
    return tuple(value)


def _parse_services(raw: Any, problems: list[str]) -> list[Service]:
    if not isinstance(raw, list) or not raw:
        problems.append("'services' must be a non-empty list")
        return []
    parsed = [_attempt(problems, _parse_service, item, f"services[{i}]") for i, item in enumerate(raw)]
    services = [service for service in parsed if service is not None]
    problems.extend(_duplicate_code_problems(services))
    return services


def _parse_service(raw: Any, where: str) -> Service:
    raw = _object(raw, where)
    code = _text(raw, "service_code", where)
    where = f"{where} ({code})"
    if not _SNAKE_CASE.match(code):
        raise _Invalid(f"{where}: service_code must be snake_case ASCII, like 'roof_leak'")
    priority = _priority(raw, "default_priority", where)
    fast_lane = raw.get("fast_lane", False)
    if not isinstance(fast_lane, bool) or fast_lane != (priority == FAST_LANE_PRIORITY):
        raise _Invalid(f"{where}: fast_lane must be true exactly when default_priority is critical")
    private = raw.get("private", False)
    if not isinstance(private, bool):
        raise _Invalid(f"{where}: private must be true or false")
    return Service(
        code=code,
        name=_text(raw, "service_name", where),
        description=_text(raw, "description", where),
        category=_text(raw, "category", where),
        default_priority=priority,
        keywords=_texts(raw, "keywords", where),
        fast_lane=fast_lane,
        attributes=_parse_attributes(raw.get("attributes", []), where),
        private=private,
    )


def _parse_attributes(raw: Any, where: str) -> tuple[Attribute, ...]:
    """A service's Open311 attributes: unique codes and orders, a known datatype, values for the list types."""
    if not isinstance(raw, list):
        raise _Invalid(f"{where}: attributes must be a list")
    attributes = []
    for index, item in enumerate(raw):
        at = f"{where}.attributes[{index}]"
        item = _object(item, at)
        code = _text(item, "code", at)
        datatype = item.get("datatype")
        if datatype not in ATTRIBUTE_DATATYPES:
            raise _Invalid(f"{at}: datatype {datatype!r} must be one of {', '.join(ATTRIBUTE_DATATYPES)}")
        values = item.get("values", [])
        if not isinstance(values, list) or not all(
                isinstance(v, Mapping) and isinstance(v.get("key"), str) and isinstance(v.get("name"), str)
                for v in values):
            raise _Invalid(f"{at}: values must be a list of {{key, name}} strings")
        if datatype.endswith("valuelist") != bool(values):
            raise _Invalid(f"{at}: values are given exactly for singlevaluelist and multivaluelist")
        flags = [item.get(name, default) for name, default in (("required", False), ("variable", True))]
        if not all(isinstance(flag, bool) for flag in flags):
            raise _Invalid(f"{at}: required and variable must be true or false")
        description = item.get("datatype_description")
        if description is not None and not isinstance(description, str):
            raise _Invalid(f"{at}: datatype_description must be a string")
        attributes.append(Attribute(
            code=code, datatype=datatype, description=_text(item, "description", at), required=flags[0],
            order=_whole_number(item, "order", at, minimum=1), datatype_description=description,
            values=tuple((v["key"], v["name"]) for v in values), variable=flags[1]))
    for name in ("code", "order"):
        seen = [getattr(attribute, name) for attribute in attributes]
        if len(seen) != len(set(seen)):
            raise _Invalid(f"{where}: attribute {name}s must be unique")
    return tuple(sorted(attributes, key=lambda attribute: attribute.order))


def _priority(raw: Mapping[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if value not in PRIORITIES:
        raise _Invalid(f"{where}: {key!r} is {value!r}, must be one of {', '.join(PRIORITIES)}")
    return value


def _duplicate_code_problems(services: list[Service]) -> list[str]:
    codes = [service.code for service in services]
    duplicates = sorted({code for code in codes if codes.count(code) > 1})
    return [f"service_code {code!r} appears more than once" for code in duplicates]


def _parse_deadlines(raw: Any, problems: list[str]) -> dict[str, DeadlinePolicy]:
    if not isinstance(raw, Mapping):
        problems.append("'deadlines' must be an object with one entry per priority")
        return {}
    problems.extend(f"deadlines: unknown priority {key!r}" for key in raw if key not in PRIORITIES)
    problems.extend(f"deadlines: no entry for priority {p!r}" for p in PRIORITIES if p not in raw)
    parsed = {p: _attempt(problems, _parse_policy, p, raw[p]) for p in PRIORITIES if p in raw}
    return {priority: policy for priority, policy in parsed.items() if policy is not None}


def _parse_policy(priority: str, raw: Any) -> DeadlinePolicy:
    where = f"deadlines.{priority}"
    raw = _object(raw, where)
    time_kind = raw.get("time_kind")
    if time_kind not in UNITS_BY_TIME_KIND:
        raise _Invalid(f"{where}: time_kind is {time_kind!r}, must be 'natural' or 'working'")
    durations = {
        key: _parse_duration(raw.get(key), f"{where}.{key}", time_kind)
        for key in ("first_response", "next_update", "resolution")
    }
    return DeadlinePolicy(priority=priority, time_kind=time_kind, **durations)


def _parse_duration(raw: Any, where: str, time_kind: str | None = None) -> Duration:
    raw = _object(raw, where)
    amount = _whole_number(raw, "amount", where, minimum=0)
    unit = raw.get("unit")
    allowed = UNITS_BY_TIME_KIND[time_kind] if time_kind else ALL_UNITS
    if unit not in allowed:
        kind = f"{time_kind} time" if time_kind else "a duration"
        raise _Invalid(f"{where}: unit {unit!r} is not allowed for {kind}; use one of {sorted(allowed)}")
    return Duration(amount, unit)


def _parse_clock(raw: Mapping[str, Any], key: str, where: str) -> time:
    match = _CLOCK.match(str(raw.get(key, "")))
    if not match:
        raise _Invalid(f"{where}: {key!r} must be a time like '08:30'")
    return time(int(match.group(1)), int(match.group(2)))


def _parse_working_hours(raw: Any) -> WorkingHours:
    raw = _object(raw, "working_hours")
    start = _parse_clock(raw, "start", "working_hours")
    end = _parse_clock(raw, "end", "working_hours")
    if start >= end:
        raise _Invalid("working_hours: start must be before end")
    weekdays = raw.get("weekdays")
    if not isinstance(weekdays, list) or not weekdays or not set(weekdays) <= set(range(7)):
        raise _Invalid("working_hours: 'weekdays' must be a non-empty list of 0 (Monday) .. 6 (Sunday)")
    return WorkingHours(start, end, tuple(sorted(set(weekdays))))


def _parse_callback(raw: Any) -> CallbackPolicy:
    raw = _object(raw, "callback")
    due = _parse_duration(raw.get("due"), "callback.due")
    return CallbackPolicy(due=due, attempts=_whole_number(raw, "attempts", "callback", minimum=1))


def _parse_warnings(raw: Any) -> tuple[int, ...]:
    valid = isinstance(raw, list) and all(isinstance(p, int) and 0 < p < 100 for p in raw)
    if not valid:
        raise _Invalid("'warnings_at_percent' must be a list of whole percentages between 0 and 100")
    return tuple(sorted(raw))

"""The one envelope every event travels in.

>>> event = Envelope.new("ticket.received", {"ticket_id": "T1"}, community="xingqiao",
...                      correlation_id="c-1", version=2)
>>> wire = event.to_wire()
>>> sorted(wire)
['community', 'correlation_id', 'event_id', 'occurred_at', 'payload', 'type', 'version']
>>> Envelope.from_wire(wire) == event
True
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

__all__ = ["Envelope", "EnvelopeSchema", "MalformedEvent", "utcnow"]


def utcnow() -> datetime:
    """Now, in UTC, at millisecond precision (what MongoDB stores)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class MalformedEvent(ValueError):
    """A message that is not a valid envelope, or whose payload fails its schema."""

    def __init__(self, message: str, errors: Any = None):
        super().__init__(message if errors is None else f"{message}: {errors}")
        self.errors = errors


class EnvelopeSchema(Schema):
    event_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    type = fields.String(required=True, validate=validate.Regexp(r"^[a-z_]+(\.[a-z_]+)+\Z"))
    version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    occurred_at = fields.AwareDateTime(required=True, default_timezone=UTC)
    correlation_id = fields.String(required=True, validate=validate.Length(min=1, max=128))
    community = fields.String(required=True, validate=validate.Length(min=1, max=64))
    payload = fields.Dict(required=True)


_schema = EnvelopeSchema()


@dataclass(frozen=True)
class Envelope:
    event_id: str
    type: str
    version: int
    occurred_at: datetime
    correlation_id: str
    community: str
    payload: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Always UTC on the wire and in storage; a naive time is taken to be UTC already.
        when = self.occurred_at
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
        object.__setattr__(self, "occurred_at", when)

    @classmethod
    def new(cls, type: str, payload: dict, *, community: str, correlation_id: str | None = None, version: int = 1,
            occurred_at: datetime | None = None) -> Envelope:
        """A new event, with a new id; it starts its own correlation unless it continues one."""
        event_id = uuid.uuid4().hex
        return cls(event_id, type, version, occurred_at or utcnow(), correlation_id or event_id, community, payload)

    def to_wire(self) -> dict:
        """A JSON-ready dict (``occurred_at`` as ISO 8601 in UTC)."""
        return _schema.dump(self)

    @classmethod
    def from_wire(cls, data: Any) -> Envelope:
        """Parse and validate; raise :class:`MalformedEvent` for anything else."""
        if not isinstance(data, dict):
            raise MalformedEvent(f"an event must be a JSON object, not {type(data).__name__}")
        try:
            loaded = _schema.load(data)
        except ValidationError as error:
            raise MalformedEvent("not a valid event envelope", error.messages) from error
        return cls(**loaded)

    def with_payload(self, payload: dict, version: int) -> Envelope:
        return replace(self, payload=payload, version=version)

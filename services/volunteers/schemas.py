"""What the volunteers service answers: its teams as the API shows them (volunteers and tasks: service.py views).

And the requests only this service loads (the list's filters, a record's period): the gateway passes
their query parameters on, so they are not kernel contracts. The bodies the gateway checks too
(a registration, hours, a wish ...) are :mod:`kernel.contracts`'.
"""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from kernel.contracts import text_field


class TeamSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    code = fields.String()
    name = fields.String()
    skills = fields.List(fields.String())
    members = fields.Integer(dump_default=0)  # active volunteers in the team (counted on each read)
    leaders = fields.List(fields.String(), dump_default=list)  # volunteers' person ids


TEAMS = TeamSchema(many=True)


class VolunteerFiltersSchema(Schema):
    """``GET /api/v1/volunteers?skill=&grid=&team=&available_at=``."""

    skill = text_field(32)
    grid = text_field(32)
    team = text_field(64)
    available_at = fields.AwareDateTime()


class RecordQuerySchema(Schema):
    """A service record's period (local dates, both included) and format.

    >>> RecordQuerySchema().load({"from": "2026-01-01", "to": "2026-12-31"})["format"]
    'json'
    >>> RecordQuerySchema().load({"from": "2026-02-01", "to": "2026-01-31"})
    Traceback (most recent call last):
    ...
    marshmallow.exceptions.ValidationError: {'to': ['a period of at most a year, from before to']}
    """

    start = fields.Date(required=True, data_key="from")
    end = fields.Date(required=True, data_key="to")
    format = fields.String(load_default="json", validate=validate.OneOf(("json", "csv", "pdf")))

    @validates_schema
    def _ordered(self, data: dict, **kwargs: Any) -> None:
        if data["end"] < data["start"] or (data["end"] - data["start"]).days > 366:
            raise ValidationError("a period of at most a year, from before to", "to")

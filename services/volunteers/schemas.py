"""What the volunteers service answers: its teams as the API shows them (volunteers and tasks: service.py views)."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields


class TeamSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    code = fields.String()
    name = fields.String()
    skills = fields.List(fields.String())
    members = fields.Integer(dump_default=0)  # active volunteers in the team (counted on each read)
    leaders = fields.List(fields.String(), dump_default=list)  # volunteers' person ids


TEAMS = TeamSchema(many=True)

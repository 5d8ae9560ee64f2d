"""What the volunteers service answers: its teams as the API shows them."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields


class TeamSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    code = fields.String()
    name = fields.String()
    skills = fields.List(fields.String())
    members = fields.Integer(dump_default=0)


TEAMS = TeamSchema(many=True)

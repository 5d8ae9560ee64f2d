"""Volunteers' routes (issue #13): the registry, offers and check-in/out, hours, records, 微心愿, coverage.

The volunteers service applies the request schemas (kernel/contracts.py); here a body is checked for its
members only. A record exported as CSV or PDF answers ``{"filename", "content_type", "content_base64"}``.
"""

from __future__ import annotations

from gateway.http import endpoint, json_body, paging, query
from gateway.routes.directory import filters, members
from kernel import contracts
from kernel.errors import Forbidden
from kernel.permissions import allowed
from kernel.web import http

VOLUNTEER_FILTERS = ("skill", "grid", "team", "available_at")
VOLUNTEER_FIELDS = ("grid", "skills", "teams", "party_member", "partner_unit", "availability", "exceptions", "status")

_DAY = {"schema": {"type": "string", "format": "date"}}
# How gateway/openapi.py describes these routes: ``Operation(**spec)`` for each (it owns Operation; importing it
# here would be circular), merged into its OPERATIONS with ``**{name: Operation(**spec) for ...}``.
VOLUNTEER_OPERATIONS: dict[str, dict] = {
    "list_volunteers": dict(summary="Volunteers (staff), masked phones; filter by skill, grid, team, free at a time",
                            tag="volunteers", answer="Page", action="volunteers.list",
                            query=("skill", "grid", "team", "available_at", "cursor", "limit"),
                            query_specs={"available_at": {"description": "free at this time (ISO 8601 with offset)",
                                                          "schema": {"type": "string", "format": "date-time"}}}),
    "register_volunteer": dict(summary="Register a volunteer (201 new, 200 the same phone again)", tag="volunteers",
                               ok=201, body=contracts.VolunteerSchema, action="volunteers.register"),
    "import_volunteers": dict(summary="Import volunteers from CSV or .xlsx: a report of every rejected row",
                              tag="volunteers", ok=201, body=contracts.ImportSchema, action="volunteers.import"),
    "volunteer_duplicates": dict(summary="Registrations sharing a phone", tag="volunteers",
                                 action="volunteers.manage"),
    "merge_volunteers": dict(summary="Merge two registrations of one phone; tasks and hours move", tag="volunteers",
                             action="volunteers.manage", invalid=True, not_found=True, conflict=True),
    "set_volunteer_status": dict(summary="Pause a volunteer or make them active", tag="volunteers",
                                 action="volunteers.manage", invalid=True),
    "add_manual_hours": dict(summary="Manual hours (capped, kept apart from credit)", tag="volunteers", ok=201,
                             body=contracts.ManualHoursSchema, action="volunteers.manage"),
    "correct_hours": dict(summary="Correct a task's credit or a manual entry, with a reason", tag="volunteers",
                          ok=201, body=contracts.HoursCorrectionSchema, action="volunteers.manage"),
    "volunteer_record": dict(summary="A volunteer's service record for a period: JSON, CSV or PDF (base64)",
                             tag="volunteers", action="volunteers.records", query=("from", "to", "format"),
                             query_specs={"from": _DAY, "to": _DAY, "format": {
                                 "schema": {"type": "string", "enum": ["json", "csv", "pdf"]}}}),
    "my_volunteering": dict(summary="The volunteer's registration, offers, tasks and hours", tag="volunteers",
                            action="volunteering.me", not_found=True),
    "volunteer_coverage": dict(summary="Skills × grids short of available volunteers in a week", tag="volunteers",
                               action="volunteers.coverage", query=("week",), query_specs={"week": _DAY}),
    "get_volunteer_task": dict(summary="A volunteer task (a ticket's or a wish's)", tag="volunteers",
                               action="wishes.read"),
    "ticket_volunteer_tasks": dict(summary="A ticket's volunteer tasks with proposals and reasons", tag="volunteers",
                                   action="volunteers.list"),
    "answer_offer": dict(summary="Accept or decline an offer; a decline offers it to the next", tag="volunteers",
                         body=contracts.OfferAnswerSchema, action="volunteering.respond", conflict=True),
    "volunteer_check_in": dict(summary="Check in with the resident's code, or staff confirm presence",
                               tag="volunteers", body=contracts.CheckInSchema, conflict=True,
                               action="volunteering.respond", body_optional=True),
    "volunteer_check_out": dict(summary="Check out: the minutes since check-in are credited (capped)",
                                tag="volunteers", conflict=True, action="volunteering.respond"),
    "rate_volunteer_help": dict(summary="A resident rates the help (1-5); a wish is confirmed with it",
                                tag="volunteers", body=contracts.RatingSchema, action="volunteering.rate",
                                conflict=True),
    "publish_wish": dict(summary="Publish a 微心愿", tag="volunteers", ok=201, body=contracts.WishSchema,
                         action="wishes.publish"),
    "list_wishes": dict(summary="微心愿: a resident's own, or the published ones", tag="volunteers", answer="Page",
                        action="wishes.read", query=("state", "cursor", "limit")),
    "claim_wish": dict(summary="Claim a published 微心愿", tag="volunteers", action="wishes.claim", conflict=True),
}


class VolunteerRoutes:
    """Needs ``auth``, ``limits``, ``idempotency``, ``volunteers`` (see GatewayService)."""

    # --- registry -------------------------------------------------------------------------------------

    @http("GET", "/api/v1/volunteers")
    @endpoint
    def list_volunteers(self, request):
        """Staff: volunteers with masked phones; ``?skill=&grid=&team=&available_at=`` (ISO 8601 with offset)."""
        caller = self.caller(request, "volunteers.list")
        cursor, limit = paging(request)
        return 200, self.volunteers.list_volunteers(caller.community, caller.viewer(),
                                                    filters(request, VOLUNTEER_FILTERS), cursor=cursor, limit=limit)

    @http("POST", "/api/v1/volunteers")
    @endpoint
    def register_volunteer(self, request):
        """Register a volunteer (added to the directory when new); the same phone again updates them."""
        caller = self.caller(request, "volunteers.register")
        body = members(json_body(request), ("name", "phone"), VOLUNTEER_FIELDS)
        registered = self.volunteers.register(caller.community, body, actor=caller.viewer())
        return (201 if registered["created"] else 200), registered

    @http("POST", "/api/v1/volunteers/import")
    @endpoint
    def import_volunteers(self, request):
        """Volunteers from CSV or .xlsx (``{"filename", "content_base64"}``): a report of every rejected row."""
        caller = self.caller(request, "volunteers.import")
        body = members(json_body(request), ("filename", "content_base64"))
        report = self.volunteers.import_volunteers(caller.community, body["filename"], body["content_base64"],
                                                   actor=caller.viewer())
        return (200 if report["rejected"] else 201), report

    @http("GET", "/api/v1/volunteers/duplicates")
    @endpoint
    def volunteer_duplicates(self, request):
        caller = self.caller(request, "volunteers.manage")
        return 200, self.volunteers.duplicates(caller.community)

    @http("POST", "/api/v1/volunteers/merge")
    @endpoint
    def merge_volunteers(self, request):
        """Merge two registrations of one phone (``{"keep", "drop"}``): tasks and hours move to ``keep``."""
        caller = self.caller(request, "volunteers.manage")
        body = members(json_body(request), ("keep", "drop"))
        return 200, self.volunteers.merge(caller.community, body["keep"], body["drop"], actor=caller.viewer())

    @http("POST", "/api/v1/volunteers/<string:volunteer_id>/status")
    @endpoint
    def set_volunteer_status(self, request, volunteer_id):
        caller = self.caller(request, "volunteers.manage")
        body = members(json_body(request), ("status",))
        return 200, self.volunteers.set_status(caller.community, volunteer_id, body["status"])

    @http("POST", "/api/v1/volunteers/<string:volunteer_id>/hours")
    @endpoint
    def add_manual_hours(self, request, volunteer_id):
        """Manual hours (``{"minutes", "date", "reason"}``), capped and kept apart from check-in/out credit."""
        caller = self.caller(request, "volunteers.manage")
        body = members(json_body(request), ("minutes", "date", "reason"))
        return 201, self.volunteers.add_manual_hours(caller.community, volunteer_id, body, actor=caller.viewer())

    @http("POST", "/api/v1/volunteers/<string:volunteer_id>/corrections")
    @endpoint
    def correct_hours(self, request, volunteer_id):
        """Correct a task's credit or a manual entry (``{"target", "delta_minutes", "reason"}``); nothing is
        deleted."""
        caller = self.caller(request, "volunteers.manage")
        body = members(json_body(request), ("target", "delta_minutes", "reason"))
        return 201, self.volunteers.correct_hours(caller.community, volunteer_id, body, actor=caller.viewer())

    @http("GET", "/api/v1/volunteers/<string:volunteer_id>/record")
    @endpoint
    def volunteer_record(self, request, volunteer_id):
        """The service record for ``?from=&to=`` (dates), ``&format=json|csv|pdf``; a volunteer sees their own."""
        caller = self.caller(request, "volunteers.records")
        period = filters(request, ("from", "to", "format"))
        return 200, self.volunteers.service_record(caller.community, volunteer_id, caller.viewer(), period)

    @http("GET", "/api/v1/me/volunteering")
    @endpoint
    def my_volunteering(self, request):
        """A volunteer's registration, open offers, tasks in hand and hours this year."""
        caller = self.caller(request, "volunteering.me")
        return 200, self.volunteers.me(caller.community, caller.subject)

    @http("GET", "/api/v1/volunteer-coverage")
    @endpoint
    def volunteer_coverage(self, request):
        """Skills × grids short of available volunteers in ``?week=`` (any date of it; the coming week by default)."""
        caller = self.caller(request, "volunteers.coverage")
        return 200, self.volunteers.coverage_gaps(caller.community, query(request, "week"))

    # --- tasks: offers, check-in/out, ratings ----------------------------------------------------------

    @http("GET", "/api/v1/volunteer-tasks/<string:task_id>")
    @endpoint
    def get_volunteer_task(self, request, task_id):
        """A task (a ticket's or a wish's): its volunteer, its residents and staff see it; the residents its code."""
        caller = self.caller(request, "wishes.read")
        return 200, self.volunteers.get_task(caller.community, task_id, caller.viewer())

    @http("GET", "/api/v1/tickets/<string:ticket_id>/volunteer-tasks")
    @endpoint
    def ticket_volunteer_tasks(self, request, ticket_id):
        """Staff: a ticket's volunteer tasks with the proposals and the reasons for their order."""
        caller = self.caller(request, "volunteers.list")
        return 200, self.volunteers.tasks_of_ticket(caller.community, ticket_id)

    @http("POST", "/api/v1/volunteer-tasks/<string:task_id>/answer")
    @endpoint
    def answer_offer(self, request, task_id):
        """The offered volunteer's ``{"answer": "accept"|"decline"}``; a decline offers it to the next."""
        caller = self.caller(request, "volunteering.respond")
        body = members(json_body(request), ("answer",))
        return 200, self.volunteers.answer_offer(caller.community, task_id, caller.viewer(), body)

    def _presence_caller(self, request):
        caller = self.caller(request)
        if not (allowed("volunteering.respond", caller.role) or allowed("volunteers.confirm_presence", caller.role)):
            raise Forbidden(f"the role {caller.role} may not check in or out",
                            {"action": ["volunteering.respond", "volunteers.confirm_presence"]})
        return caller

    @http("POST", "/api/v1/volunteer-tasks/<string:task_id>/check-in")
    @endpoint
    def volunteer_check_in(self, request, task_id):
        """The volunteer with the resident's ``{"code"}``, or staff confirming presence (no code)."""
        caller = self._presence_caller(request)
        body = members(json_body(request) if request.content_length else {}, (), ("code",))
        return 200, self.volunteers.check_in(caller.community, task_id, caller.viewer(), body)

    @http("POST", "/api/v1/volunteer-tasks/<string:task_id>/check-out")
    @endpoint
    def volunteer_check_out(self, request, task_id):
        """Check out: the minutes since check-in are credited (capped)."""
        caller = self._presence_caller(request)
        return 200, self.volunteers.check_out(caller.community, task_id, caller.viewer())

    @http("POST", "/api/v1/volunteer-tasks/<string:task_id>/rating")
    @endpoint
    def rate_volunteer_help(self, request, task_id):
        """A resident rates the help (``{"rating": 1-5, "comment"}``); a wish is confirmed with it."""
        caller = self.caller(request, "volunteering.rate")
        body = members(json_body(request), ("rating",), ("comment",))
        return 200, self.volunteers.rate(caller.community, task_id, caller.viewer(), body)

    # --- 微心愿 ----------------------------------------------------------------------------------------

    @http("POST", "/api/v1/wishes")
    @endpoint
    def publish_wish(self, request):
        """A resident's small wish (``{"title", "description", "skill"}``), with the volunteers proposed."""
        caller = self.caller(request, "wishes.publish")
        body = members(json_body(request), ("title",), ("description", "skill"))
        return 201, self.volunteers.publish_wish(caller.community, caller.viewer(), body)

    @http("GET", "/api/v1/wishes")
    @endpoint
    def list_wishes(self, request):
        """Residents: their own wishes; volunteers and staff: the published ones (``?state=``)."""
        caller = self.caller(request, "wishes.read")
        cursor, limit = paging(request)
        return 200, self.volunteers.list_wishes(caller.community, caller.viewer(), query(request, "state"),
                                                cursor=cursor, limit=limit)

    @http("POST", "/api/v1/wishes/<string:wish_id>/claim")
    @endpoint
    def claim_wish(self, request, wish_id):
        caller = self.caller(request, "wishes.claim")
        return 200, self.volunteers.claim_wish(caller.community, wish_id, caller.viewer())

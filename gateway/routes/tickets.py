"""Tickets, the service catalogue, the inbox and volunteer teams."""

from __future__ import annotations

from gateway.http import endpoint, idempotency_key, json_body, paging
from kernel.web import http


class TicketRoutes:
    """Needs ``auth``, ``limits``, ``idempotency``, ``tickets``, ``notify``, ``volunteers`` (see GatewayService)."""

    @http("GET", "/api/v1/services")
    @endpoint
    def list_services(self, request):
        caller = self.caller(request, "services.read")
        cursor, limit = paging(request)
        return 200, self.tickets.list_services(caller.community, cursor=cursor, limit=limit)

    @http("POST", "/api/v1/tickets")
    @endpoint
    def create_ticket(self, request):
        caller = self.caller(request, "tickets.create")
        body = json_body(request)  # the tickets service applies the one schema of a create
        key = idempotency_key(request)
        if caller.role == "integrator":
            return 201, self.tickets.create(caller.community, None, body, source="open311",
                                            request_key=f"{caller.subject}:{key}" if key else None)
        return 201, self.tickets.create(caller.community, caller.subject, body, source="resident", request_key=key)

    @http("GET", "/api/v1/tickets")
    @endpoint
    def list_my_tickets(self, request):
        caller = self.caller(request, "tickets.list")
        cursor, limit = paging(request)
        return 200, self.tickets.list_mine(caller.community, caller.subject, cursor=cursor, limit=limit)

    @http("GET", "/api/v1/tickets/<string:ticket_id>")
    @endpoint
    def get_ticket(self, request, ticket_id):
        caller = self.caller(request, "tickets.read")
        return 200, self.tickets.get(caller.community, ticket_id, caller.viewer())

    @http("GET", "/api/v1/me/inbox")
    @endpoint
    def my_inbox(self, request):
        caller = self.caller(request, "inbox.read")
        cursor, limit = paging(request)
        return 200, self.notify.list_inbox(caller.community, caller.subject, cursor=cursor, limit=limit)

    @http("GET", "/api/v1/volunteer-teams")
    @endpoint
    def list_volunteer_teams(self, request):
        caller = self.caller(request, "volunteer_teams.read")
        cursor, limit = paging(request)
        return 200, self.volunteers.list_teams(caller.community, cursor=cursor, limit=limit)

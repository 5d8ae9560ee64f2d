"""The gateway: the platform's HTTP entry point. Thin: authenticate, validate, call, answer."""

from __future__ import annotations

from nameko.containers import WorkerContext
from nameko.extensions import DependencyProvider

from gateway.http import endpoint, idempotency_key, json_body, principal
from kernel.config import Settings, settings_of
from kernel.context import Context
from kernel.contracts import CreateTicketSchema
from kernel.health import Health, HealthEndpoints
from kernel.rpc import RpcClient
from kernel.validation import load
from kernel.web import http

RESIDENT = frozenset({"resident"})
CREATE_TICKET = CreateTicketSchema()  # built once: building deep-copies the fields


class SettingsProvider(DependencyProvider):
    def get_dependency(self, worker_ctx: WorkerContext) -> Settings:
        return settings_of(self.container.config)


class GatewayService(HealthEndpoints):
    name = "gateway"

    health = Health(database=False)
    context = Context()
    settings = SettingsProvider()
    tickets = RpcClient("tickets")
    notify = RpcClient("notify")
    volunteers = RpcClient("volunteers")

    @http("GET", "/api/v1/services")
    @endpoint
    def list_services(self, request):
        caller = principal(request, self.settings)
        return 200, self.tickets.list_services(caller.community)

    @http("POST", "/api/v1/tickets")
    @endpoint
    def create_ticket(self, request):
        caller = principal(request, self.settings, RESIDENT)
        body = load(CREATE_TICKET, json_body(request))
        return 201, self.tickets.create(caller.community, caller.subject, body, source="resident",
                                        request_key=idempotency_key(request))

    @http("GET", "/api/v1/tickets")
    @endpoint
    def list_my_tickets(self, request):
        caller = principal(request, self.settings, RESIDENT)
        return 200, self.tickets.list_mine(caller.community, caller.subject)

    @http("GET", "/api/v1/tickets/<string:ticket_id>")
    @endpoint
    def get_ticket(self, request, ticket_id):
        caller = principal(request, self.settings)
        viewer = {"subject": caller.subject, "role": caller.role}
        return 200, self.tickets.get(caller.community, ticket_id, viewer)

    @http("GET", "/api/v1/me/inbox")
    @endpoint
    def my_inbox(self, request):
        caller = principal(request, self.settings)
        return 200, self.notify.list_inbox(caller.community, caller.subject)

    @http("GET", "/api/v1/volunteer-teams")
    @endpoint
    def list_volunteer_teams(self, request):
        caller = principal(request, self.settings)
        return 200, self.volunteers.list_teams(caller.community)

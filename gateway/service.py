"""The gateway: the platform's HTTP entry point. Thin: authenticate, check HTTP, call, answer.

Routes live in mixins (``gateway/routes``); each asks :meth:`GatewayService.caller` for the
authenticated caller and the one permission table (``kernel.permissions``) for what they may do.
Request schemas are applied once, by the service that owns the request.
"""

from __future__ import annotations

from nameko.containers import WorkerContext
from nameko.extensions import DependencyProvider

from gateway.auth import Authenticator, Principal
from gateway.http import (
    CORS_HEADERS,
    CORS_METHODS,
    PROBLEM_CONTENT_TYPE,
    cors_headers,
    endpoint,
    http,  # its <path:...> matches a newline too
    idempotency_key,
)
from gateway.limits import RateLimits
from gateway.openapi import allowed_methods
from gateway.routes.console import ConsoleRoutes
from gateway.routes.directory import DirectoryRoutes
from gateway.routes.docs import DocsRoutes
from gateway.routes.notify import NotifyRoutes
from gateway.routes.open311 import Open311Routes
from gateway.routes.ops import OpsRoutes
from gateway.routes.photos import PhotoRoutes
from gateway.routes.tickets import TicketRoutes
from gateway.routes.volunteers import VolunteerRoutes
from kernel.config import Settings, settings_of
from kernel.context import Context
from kernel.errors import Forbidden, NotFound
from kernel.health import Health, HealthEndpoints
from kernel.permissions import require
from kernel.rpc import RpcClient


class SettingsProvider(DependencyProvider):
    def get_dependency(self, worker_ctx: WorkerContext) -> Settings:
        return settings_of(self.container.config)


class GatewayService(TicketRoutes, PhotoRoutes, DirectoryRoutes, DocsRoutes, Open311Routes, NotifyRoutes,
                     VolunteerRoutes, ConsoleRoutes, OpsRoutes, HealthEndpoints):
    name = "gateway"

    health = Health(database=False)
    context = Context()
    settings = SettingsProvider()
    auth = Authenticator()
    limits = RateLimits()
    tickets = RpcClient("tickets")
    notify = RpcClient("notify")
    volunteers = RpcClient("volunteers")
    directory = RpcClient("directory")

    def caller(self, request, action: str | None = None) -> Principal:
        """The authenticated caller, within the rate limits, allowed ``action``; a POST's key goes with its RPCs."""
        self.limits.check("address", self.client_address(request))
        caller = self.auth.principal(request)
        self.limits.check("caller", caller.session or caller.subject)
        if action is not None:
            require(action, caller.role)
        if request.method == "POST" and (key := idempotency_key(request)):
            self.context.idempotency_key = f"{caller.subject}:{key}"  # with every RPC of this worker
        return caller

    @staticmethod
    def client_address(request) -> str:
        return request.remote_addr or "unknown"

    @http("OPTIONS", "/api/<path:rest>")
    @endpoint
    def preflight(self, request, rest):
        """OPTIONS: the path's ``Allow``; for a browser's CORS preflight, allowed for the configured origins only."""
        allowed = allowed_methods(request.path)
        if not allowed:
            raise NotFound(f"no route {request.path}", code="no_such_route")
        headers = {"Allow": ", ".join([*allowed, "OPTIONS"])}
        if request.headers.get("Origin") is None:  # not a preflight: RFC 9110's OPTIONS, what the path serves
            return 204, None, headers
        if not cors_headers(self.settings, request):
            raise Forbidden("this origin may not call the API", {"Origin": ["not allowed"]}, code="cors_forbidden")
        return 204, None, {**headers, "Access-Control-Allow-Methods": CORS_METHODS,
                           "Access-Control-Allow-Headers": CORS_HEADERS, "Access-Control-Max-Age": "600"}

    @http("GET,POST,PUT,PATCH,DELETE", "/api/<path:rest>")
    @endpoint
    def no_such_route(self, request, rest):
        """Any other /api path: a problem-details 404 rather than the web server's HTML page (405 for a known path)."""
        allowed = allowed_methods(request.path)
        if allowed:  # the path exists with other methods: RFC 9110 wants 405 and Allow
            body = {"type": "/problems/method_not_allowed", "title": "Method Not Allowed", "status": 405,
                    "detail": f"{request.path} answers {', '.join(allowed)}", "code": "method_not_allowed",
                    "correlation_id": self.context.correlation_id}
            return 405, body, {"Allow": ", ".join(allowed), "Content-Type": f"{PROBLEM_CONTENT_TYPE}; charset=utf-8"}
        raise NotFound(f"no route {request.method} {request.path}", code="no_such_route")

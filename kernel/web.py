"""HTTP entrypoints that stop gracefully: ``@http`` for the gateway and every process's health routes.

nameko's web server keeps serving keep-alive connections while its container
stops, and the container then kills the greenthreads that write the answers: the
fault suite saw requests carried out after SIGTERM whose answers never reached
the client. Here the first entrypoint to stop makes the server stop accepting
connections and answer every further request with ``Connection: close``; the
server then waits (at most ``DRAIN_SECONDS``) until every open connection has
been answered before the container goes on stopping (:class:`kernel.patches.GracefulWebServer`).
"""

from __future__ import annotations

from nameko.web.handlers import HttpRequestHandler

from kernel.patches import DRAIN_SECONDS, GracefulWebServer

__all__ = ["DRAIN_SECONDS", "HttpEntrypoint", "http"]


class HttpEntrypoint(HttpRequestHandler):
    server = GracefulWebServer()

    def stop(self) -> None:
        self.server.stop_accepting()
        super().stop()


http = HttpEntrypoint.decorator

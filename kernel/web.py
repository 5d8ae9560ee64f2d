"""HTTP entrypoints that stop gracefully: ``@http`` for the gateway and every process's health routes.

The first entrypoint to stop makes the server drain its open connections before the container goes on
stopping: why, and how, in :class:`kernel.patches.GracefulWebServer`.
"""

from __future__ import annotations

from nameko.web.handlers import HttpRequestHandler

from kernel.patches import GracefulWebServer


class HttpEntrypoint(HttpRequestHandler):
    server = GracefulWebServer()

    def stop(self) -> None:
        self.server.stop_accepting()
        super().stop()


http = HttpEntrypoint.decorator

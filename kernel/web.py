"""HTTP entrypoints that stop gracefully: ``@http`` for the gateway and every process's health routes.

nameko's web server keeps serving keep-alive connections while its container
stops, and the container then kills the greenthreads that write the answers: the
fault suite saw requests carried out after SIGTERM whose answers never reached
the client. Here the first entrypoint to stop makes the server stop accepting
connections and answer every further request with ``Connection: close``; the
server then waits (at most ``DRAIN_SECONDS``) until every open connection has
been answered before the container goes on stopping.
"""

from __future__ import annotations

import socket
import time
from contextlib import suppress

import eventlet
from eventlet.wsgi import STATE_IDLE
from nameko.web.handlers import HttpRequestHandler
from nameko.web.server import WebServer

DRAIN_SECONDS = 10.0


class GracefulWebServer(WebServer):
    def __init__(self):
        super().__init__()
        self._connections: list[list] = []  # eventlet's [address, socket, state] of each open connection

    def process_request(self, sock, address):
        connection = [address, sock, STATE_IDLE]  # eventlet keeps the state current
        self._connections.append(connection)
        try:
            self._serv.process_request(connection)
        except OSError as error:
            # a client gone very early (nameko#368); anything else is a real failure
            if "raw readinto() returned invalid length" not in str(error):
                raise
        finally:
            self._connections.remove(connection)

    def stop_accepting(self) -> None:
        """No new connections; open ones are closed after their current answer."""
        if not self._is_accepting:
            return
        self._is_accepting = False
        if self._serv is not None:
            self._serv.keepalive = False  # eventlet reads it for every answer
        if self._gt is not None:
            self._gt.kill()
        if self._sock is not None:
            self._sock.close()

    def stop(self) -> None:
        self.stop_accepting()
        deadline = time.monotonic() + DRAIN_SECONDS
        while self._connections and time.monotonic() < deadline:
            self._close_idle()  # a keep-alive connection waiting for a request would hold the drain
            eventlet.sleep(0.02)
        super(WebServer, self).stop()  # WebServer.stop would kill and close again

    def _close_idle(self) -> None:
        for _, sock, state in list(self._connections):
            if state == STATE_IDLE:
                with suppress(OSError):  # already gone
                    sock.shutdown(socket.SHUT_RDWR)


class HttpEntrypoint(HttpRequestHandler):
    server = GracefulWebServer()

    def stop(self) -> None:
        self.server.stop_accepting()
        super().stop()


http = HttpEntrypoint.decorator

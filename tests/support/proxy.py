"""A TCP proxy on loopback that a test can cut and restore, to take the broker away from one service.

It runs in a subprocess of its own (plain threads, no eventlet), so cutting it is
what a network failure looks like to the service: every connection drops and new
ones are refused until it is restored on the same port. *Holding* it is a stalled
network: connections stay open, but what the client sends is kept back (and what
the server answers with it) until it is released, when it all goes through, late.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit, urlunsplit

PROXY_SCRIPT = r"""
import socket, sys, threading
listen_port, target_port = int(sys.argv[1]), int(sys.argv[2])
flowing = threading.Event()
flowing.set()

def commands():
    for line in sys.stdin:
        (flowing.clear if line.strip() == "hold" else flowing.set)()
        print("ok", flush=True)

def pipe(source, sink, upstream=False):
    try:
        while data := source.recv(65536):
            if upstream:
                flowing.wait()
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", listen_port))
server.listen(64)
print("ready", flush=True)
threading.Thread(target=commands, daemon=True).start()
while True:
    client, _ = server.accept()
    upstream = socket.create_connection(("127.0.0.1", target_port))
    threading.Thread(target=pipe, args=(client, upstream, True), daemon=True).start()
    threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TcpProxy:
    """Forwards 127.0.0.1:<port> to 127.0.0.1:<target_port>."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = _free_port()
        self._process: subprocess.Popen | None = None

    def start(self) -> TcpProxy:
        deadline = time.monotonic() + 5
        while True:
            self._process = subprocess.Popen(
                [sys.executable, "-c", PROXY_SCRIPT, str(self.port), str(self.target_port)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )
            if self._process.stdout.readline().strip() == "ready":
                return self
            self._process.wait()
            if time.monotonic() > deadline:  # the port stayed taken
                raise RuntimeError(f"the proxy could not listen on {self.port}")
            time.sleep(0.1)

    restore = start

    def amqp_uri(self, amqp_uri: str) -> str:
        """``amqp_uri`` (credentials, vhost) through this proxy instead of straight to the broker."""
        parts = urlsplit(amqp_uri)
        return urlunsplit(parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{self.port}"))

    @classmethod
    def before_broker(cls, amqp_uri: str) -> TcpProxy:
        """A started proxy in front of the broker ``amqp_uri`` names."""
        return cls(urlsplit(amqp_uri).port or 5672).start()

    def mongo_uri(self, mongo_uri: str) -> str:
        """``mongo_uri`` (its options) through this proxy instead of straight to the server."""
        parts = urlsplit(mongo_uri)
        return urlunsplit(parts._replace(netloc=f"127.0.0.1:{self.port}"))

    @classmethod
    def before(cls, uri: str) -> TcpProxy:
        """A started proxy in front of the server ``uri`` (amqp:// or mongodb://) names."""
        return cls(urlsplit(uri).port).start()

    def hold(self) -> None:
        """Keep back everything clients send from now on (connections stay open) until :meth:`release`."""
        self._command("hold")

    def release(self) -> None:
        self._command("release")

    def _command(self, word: str) -> None:
        self._process.stdin.write(word + "\n")
        self._process.stdin.flush()
        assert self._process.stdout.readline().strip() == "ok"

    def cut(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    stop = cut

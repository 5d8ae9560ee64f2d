"""Every place the platform leans on a private part of nameko, eventlet or kombu, in one module.

The rest of the kernel uses these libraries through their public API only. Each patch below says why it
exists and when it can go. ``tests/unit/kernel/test_patches.py`` lists every private attribute, signature and
code path the patches rely on, and the versions they were written against (``constraints.txt`` pins the
same): it fails loudly on an upgrade that changes one of them, and names it.

1. :func:`pooled_producer` (used by ``kernel.runner``): nameko builds a kombu ``Connection`` on every publish
   (each RPC request and reply) only to find the producer pool equal connections share: a quarter of the
   gateway's CPU under load. The pool is looked up once per set of arguments instead. Goes when nameko
   caches the pool itself (nameko 3 does).
2. :class:`ResilientRpcConsumer` (``kernel.rpc.rpc``): when the broker goes away mid-request, publishing the
   reply raises inside nameko's worker bookkeeping and kills the whole container. Goes when nameko catches it.
3. :func:`send_request` / :func:`forget_reply` (``kernel.rpc.RpcClient``): nameko 2's service-side proxy has
   no timeout; a timed call must send without waiting, and drop its pending reply when it gives up, or every
   abandoned call leaks an entry. Goes with nameko 3's ``timeout`` on ``RpcProxy``.
4. :func:`expiring_service_proxy` (``services.directory.cli``): ``ClusterRpcProxy`` builds its service proxies
   without publish options, so a request would outlive the command's deadline in the broker.
5. :class:`GracefulWebServer` (``kernel.web.http``): nameko's web server keeps serving keep-alive connections
   while its container stops, and the container then kills the greenthreads writing the answers: the fault
   suite saw requests carried out after SIGTERM whose answers never reached the client. Here the first
   entrypoint to stop makes the server stop accepting and answer further requests with ``Connection: close``,
   then waits (at most ``DRAIN_SECONDS``) until every open connection was answered.
6. :func:`use_pooled_producers` also makes RPC replies transient and unconfirmed (:class:`ReplyPublisher`):
   a persistent, confirmed reply cost a broker round trip each (a tenth of the tickets service's CPU), and the
   caller's wait acknowledges a reply end to end (docs/architecture.md, "RPC with deadlines"). Goes if nameko
   gains an option for replies.

``kernel.handlers.ReliableQueueConsumer`` sets kombu's ``on_decode_error`` on nameko's consumers; what it relies
on is checked there too.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import eventlet
import nameko.amqp.publish
from eventlet.wsgi import STATE_IDLE
from kombu import Connection
from kombu.pools import ProducerPool, producers
from nameko.amqp.publish import Publisher
from nameko.rpc import Responder, RpcConsumer, ServiceProxy
from nameko.web.server import WebServer

from kernel.logging import get_logger

log = get_logger(__name__)

DRAIN_SECONDS = 10.0


# --------------------------------------------------------------------------- 1. the pooled producer

_POOLS: dict[tuple, ProducerPool] = {}
_nameko_get_producer = nameko.amqp.publish.get_producer


@contextmanager
def pooled_producer(amqp_uri, confirms=True, ssl=None, login_method=None, transport_options=None) -> Iterator:
    """nameko's ``get_producer``, with the producer pool (the one nameko's own lookup finds) looked up once per
    set of arguments."""
    options = dict(nameko.amqp.publish.DEFAULT_TRANSPORT_OPTIONS if transport_options is None
                   else transport_options, confirm_publish=confirms)
    try:
        key = (amqp_uri, confirms, ssl, login_method, tuple(sorted(options.items())))
        pool = _POOLS.get(key)
    except TypeError:  # unhashable options (an ssl dict ...): nameko's own way
        with _nameko_get_producer(amqp_uri, confirms, ssl, login_method, transport_options) as producer:
            yield producer
        return
    if pool is None:
        connection = Connection(amqp_uri, transport_options=options, ssl=ssl, login_method=login_method)
        pool = _POOLS[key] = producers[connection]
    with pool.acquire(block=True) as producer:
        yield producer


TRANSIENT = 1  # AMQP delivery mode: the broker keeps the message in memory only


class ReplyPublisher(Publisher):
    """nameko's publisher for RPC replies: transient, without publisher confirms (patch 6)."""

    use_confirms = False
    delivery_mode = TRANSIENT


def use_pooled_producers() -> None:
    """Make nameko's publishers use :func:`pooled_producer`, and its replies :class:`ReplyPublisher`."""
    nameko.amqp.publish.get_producer = pooled_producer
    Responder.publisher_cls = ReplyPublisher


# --------------------------------------------------------------------------- 2-4. RPC


class ResilientRpcConsumer(RpcConsumer):
    """nameko's RPC consumer, except that a reply the broker cannot take is logged instead of killing the
    service (the caller has lost its reply queue anyway); the request stays unacked, for redelivery."""

    def handle_result(self, message, result, exc_info):
        try:
            return super().handle_result(message, result, exc_info)
        except Exception as error:
            log.error("rpc.reply_failed", routing_key=message.delivery_info.get("routing_key"), error=repr(error))
            return result, exc_info


def send_request(method_proxy: Any, *args: Any, **kwargs: Any) -> Any:
    """Send an RPC request through a nameko ``MethodProxy`` and return its pending reply without waiting."""
    return method_proxy._call(*args, **kwargs)


def forget_reply(reply_listener: Any, reply: Any) -> None:
    """Drop the pending reply event of an abandoned call, so it does not leak."""
    events = reply_listener._reply_events
    for correlation_id, event in list(events.items()):
        if event is reply.reply_event:
            events.pop(correlation_id, None)


def expiring_service_proxy(cluster_proxy: Any, service: str, expiration: float) -> ServiceProxy:
    """A proxy of ``service`` from a started ``ClusterRpcProxy``, its requests expiring after ``expiration`` s."""
    return ServiceProxy(cluster_proxy._worker_ctx, service, cluster_proxy._reply_listener, expiration=expiration)


# --------------------------------------------------------------------------- 5. the web server


class GracefulWebServer(WebServer):
    """nameko's ``WebServer`` that drains its open connections before its container goes on stopping."""

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

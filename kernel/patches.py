"""Every place the platform leans on a private part of nameko, eventlet or kombu, in one module.

The rest of the kernel uses these libraries through their public API only. Each patch below says why it
exists, what it relies on and when it can go; :data:`RELIES_ON` lists every private attribute, signature and
code path the patches depend on, and :func:`problems` checks them against the installed libraries
(``tests/unit/kernel/test_patches.py`` fails loudly on an upgrade that changes one of them, and names it).
The patches were written against :data:`PINNED`; ``constraints.txt`` pins the same versions.

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
   nameko publishes every reply as a persistent message with a publisher confirm, a broker round trip per
   reply (a tenth of the tickets service's CPU). The caller's wait acknowledges a reply end to end: one the
   broker loses ends in the caller's timeout, as it would with a confirm, since a broker restart drops the
   reply queues. (Requests stay confirmed, so that a call to a service that never ran fails at once, but are
   transient: ``kernel.rpc.RpcClient``.) Events keep both: they go through :mod:`kernel.publisher`.
   Goes if nameko gains an option for replies.

``kernel.handlers.ReliableQueueConsumer`` sets kombu's ``on_decode_error`` on nameko's consumers; what it relies
on is checked here too.
"""

from __future__ import annotations

import inspect
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import version
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

PINNED = {"nameko": "2.14.1", "eventlet": "0.41.3", "kombu": "5.7.0"}
DRAIN_SECONDS = 10.0


# --------------------------------------------------------------------------- 1. the pooled producer

_POOLS: dict[tuple, ProducerPool] = {}
_nameko_get_producer = nameko.amqp.publish.get_producer


@contextmanager
def pooled_producer(amqp_uri, confirms=True, ssl=None, login_method=None, transport_options=None) -> Iterator:
    """nameko's ``get_producer``, with the producer pool looked up once per set of arguments.

    The pool found is the one nameko's own lookup finds; only the lookup is cached.
    """
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
    """nameko's RPC consumer, except that a reply the broker cannot take does not kill the service.

    The caller has lost its reply queue with the connection anyway; the request stays unacked, so the broker
    redelivers it.
    """

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


# --------------------------------------------------------------------------- what the patches rely on


@dataclass(frozen=True)
class Reliance:
    """One thing a patch relies on: ``module:attribute.path`` exists, and (if given) takes ``params``,
    sets ``instance_attrs`` when constructed with no arguments, names ``uses`` in its code or has each
    of ``source`` in its source text."""

    target: str
    params: tuple[str, ...] | None = None
    instance_attrs: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()
    source: tuple[str, ...] = ()

    def resolve(self) -> Any:
        module_name, _, path = self.target.partition(":")
        found: Any = import_module(module_name)
        for part in path.split(".") if path else ():
            found = getattr(found, part)
        return found

    def problem(self) -> str | None:
        """None if the installed library still has what the patch relies on, else what changed."""
        try:
            found = self.resolve()
        except (ImportError, AttributeError) as error:
            return f"{self.target}: missing ({error})"
        if self.params is not None:
            names = tuple(inspect.signature(found).parameters)
            if names[: len(self.params)] != self.params:
                return f"{self.target}: parameters are {names}, the patch expects {self.params}"
        if self.instance_attrs:
            instance = found()
            missing = [name for name in self.instance_attrs if not hasattr(instance, name)]
            if missing:
                return f"{self.target}: an instance has no {', '.join(missing)}"
        if self.uses:
            names = set(found.__code__.co_names)
            missing = [name for name in self.uses if name not in names]
            if missing:
                return f"{self.target}: its code no longer looks up {', '.join(missing)}"
        text = inspect.getsource(found) if self.source else ""
        missing = [snippet for snippet in self.source if snippet not in text]
        if missing:
            return f"{self.target}: its code no longer contains {', '.join(missing)}"
        return None


RELIES_ON: tuple[Reliance, ...] = (
    # 1. the pooled producer replaces this module global, which Publisher.publish looks up on every call
    Reliance("nameko.amqp.publish:get_producer", ("amqp_uri", "confirms", "ssl", "login_method",
                                                  "transport_options")),
    Reliance("nameko.amqp.publish:DEFAULT_TRANSPORT_OPTIONS"),
    Reliance("nameko.amqp.publish:Publisher.publish", uses=("get_producer",)),
    Reliance("kombu.pools:producers"),
    # 6. transient, unconfirmed RPC replies
    Reliance("nameko.rpc:Responder.publisher_cls"),
    Reliance("nameko.rpc:RpcConsumer.handle_result", uses=("Responder",)),
    Reliance("nameko.amqp.publish:Publisher.use_confirms"),
    Reliance("nameko.amqp.publish:Publisher.delivery_mode"),
    # 2. the resilient RPC consumer
    Reliance("nameko.rpc:RpcConsumer.handle_result", ("self", "message", "result", "exc_info")),
    Reliance("nameko.rpc:Rpc.rpc_consumer"),
    # 3. timed calls
    Reliance("nameko.rpc:MethodProxy.__init__", ("self", "worker_ctx", "service_name", "method_name",
                                                 "reply_listener")),
    Reliance("nameko.rpc:MethodProxy._call", uses=("get_reply_event",)),
    Reliance("nameko.rpc:ReplyListener", instance_attrs=("_reply_events",)),
    Reliance("nameko.rpc:ReplyListener.get_reply_event", uses=("_reply_events",)),
    Reliance("nameko.rpc:RpcReply.__init__", ("self", "reply_event")),
    Reliance("nameko.rpc:ServiceProxy.__init__", ("self", "worker_ctx", "service_name", "reply_listener")),
    # 4. the CLI's expiring proxy
    Reliance("nameko.standalone.rpc:ClusterProxy.__init__", ("self", "worker_ctx", "reply_listener"),
             uses=("_worker_ctx", "_reply_listener")),
    # 5. the graceful web server
    Reliance("nameko.web.server:WebServer", instance_attrs=("_gt", "_sock", "_serv", "_is_accepting")),
    Reliance("nameko.web.server:WebServer.process_request", ("self", "sock", "address")),
    Reliance("nameko.web.server:WebServer.run", uses=("_is_accepting", "process_request")),
    Reliance("eventlet.wsgi:STATE_IDLE"),
    Reliance("eventlet.wsgi:Server.process_request", ("self", "conn_state")),
    Reliance("eventlet.wsgi:Server.__init__", ("self", "socket", "address", "app"), uses=("keepalive",)),
    Reliance("eventlet.wsgi:HttpProtocol.handle_one_response", source=("self.server.keepalive",)),
    # kernel.handlers.ReliableQueueConsumer
    Reliance("nameko.messaging:QueueConsumer.get_consumers", ("self", "consumer_cls", "channel")),
    Reliance("kombu.messaging:Consumer.on_decode_error"),
)


def problems() -> list[str]:
    """What changed under the patches: a version other than :data:`PINNED`, or a reliance that no longer holds.

    >>> problems()
    []
    """
    found = [f"{name} {version(name)} is installed; the patches were checked against {pinned}"
             for name, pinned in PINNED.items() if version(name) != pinned]
    found += [problem for reliance in RELIES_ON if (problem := reliance.problem())]
    return found

"""RPC with a deadline.

nameko 2.14.1's service-side ``RpcProxy`` waits for a reply forever. ``RpcClient``
waits at most ``timeout`` seconds (default ``RPC_TIMEOUT``) and then raises
:class:`RpcTimeout`; the request carries the same expiration, so a service that
comes back late does not work on a request nobody waits for any more. A call to a
service with no running instance raises nameko's ``UnknownService`` at once.

Usage::

    class GatewayService:
        tickets = RpcClient("tickets", timeout=3)

        def create(self, data):
            return self.tickets.create(data)
"""

from __future__ import annotations

import eventlet
from kombu import Connection
from kombu.exceptions import ChannelError
from nameko.rpc import MethodProxy, ReplyListener, Rpc, RpcConsumer, RpcProxy, ServiceProxy

from kernel.config import settings_of
from kernel.logging import get_logger

log = get_logger(__name__)


class ResilientRpcConsumer(RpcConsumer):
    """nameko's RPC consumer, except that a reply the broker cannot take does not kill the service.

    When the broker goes away mid-request, publishing the reply raises inside nameko's
    worker bookkeeping and the whole container dies. The caller has lost its reply queue
    with the connection anyway; the request stays unacked, so the broker redelivers it.
    """

    def handle_result(self, message, result, exc_info):
        try:
            return super().handle_result(message, result, exc_info)
        except Exception as error:
            log.error("rpc.reply_failed", routing_key=message.delivery_info.get("routing_key"),
                      error=repr(error))
            return result, exc_info


class ResilientRpc(Rpc):
    rpc_consumer = ResilientRpcConsumer()


rpc = ResilientRpc.decorator
"""The platform's ``@rpc``: use it instead of ``nameko.rpc.rpc``."""


class RpcTimeout(Exception):
    """The called service did not answer within the deadline."""

    def __init__(self, service: str, method: str, timeout: float):
        super().__init__(f"{service}.{method} did not answer within {timeout:g} s")
        self.service, self.method, self.timeout = service, method, timeout


def has_listeners(amqp_uri: str, service: str) -> bool | None:
    """Whether any instance of ``service`` consumes its RPC queue; None when the broker cannot say.

    A stopped service's durable queue outlives it, so a call to it waits out the whole
    deadline; asking the broker afterwards tells "not running" apart from "too slow".
    """
    try:
        with Connection(amqp_uri, connect_timeout=2) as connection:
            _, _, consumers = connection.default_channel.queue_declare(f"rpc-{service}", passive=True)
            return consumers > 0
    except ChannelError:  # no queue: never started on this broker
        return False
    except Exception:
        return None


class TimedMethodProxy(MethodProxy):
    def __init__(self, worker_ctx, service_name, method_name, reply_listener, *, timeout: float, **options):
        self.timeout = timeout
        super().__init__(worker_ctx, service_name, method_name, reply_listener,
                         expiration=timeout, **options)

    def __call__(self, *args, **kwargs):
        reply = self._call(*args, **kwargs)
        expired = RpcTimeout(self.service_name, self.method_name, self.timeout)
        try:
            with eventlet.Timeout(self.timeout, expired):
                return reply.result()
        except RpcTimeout:
            self._forget(reply)
            raise

    def _forget(self, reply) -> None:
        """Drop the pending reply event so an abandoned call does not leak."""
        events = self.reply_listener._reply_events
        for correlation_id, event in list(events.items()):
            if event is reply.reply_event:
                events.pop(correlation_id, None)


class TimedServiceProxy(ServiceProxy):
    def __getattr__(self, name):
        return TimedMethodProxy(self.worker_ctx, self.service_name, name, self.reply_listener, **self.options)


class RpcClient(RpcProxy):
    """An ``RpcProxy`` whose calls time out."""

    rpc_reply_listener = ReplyListener()

    def __init__(self, target_service: str, timeout: float | None = None, **options):
        self.timeout = timeout
        super().__init__(target_service, **options)

    def get_dependency(self, worker_ctx) -> TimedServiceProxy:
        timeout = self.timeout or settings_of(self.container.config).rpc_timeout
        return TimedServiceProxy(worker_ctx, self.target_service, self.rpc_reply_listener,
                                 timeout=timeout, **self.options)

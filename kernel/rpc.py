"""RPC with a deadline: nameko 2.14.1's service-side ``RpcProxy`` waits forever, ``RpcClient`` raises
:class:`RpcTimeout` after ``timeout`` seconds (default ``RPC_TIMEOUT``), when its request expires too
(docs/architecture.md, "RPC with deadlines").

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
from nameko.rpc import MethodProxy, ReplyListener, Rpc, RpcProxy, ServiceProxy

from kernel.config import settings_of
from kernel.patches import TRANSIENT, ResilientRpcConsumer, forget_reply, send_request


class ResilientRpc(Rpc):
    """nameko's ``Rpc`` entrypoint with :class:`kernel.patches.ResilientRpcConsumer`."""

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
        # The deadline covers sending too: with the broker down, kombu's publish retries with back-off.
        expired = RpcTimeout(self.service_name, self.method_name, self.timeout)
        reply = None
        try:
            with eventlet.Timeout(self.timeout, expired):
                reply = send_request(self, *args, **kwargs)
                return reply.result()
        except RpcTimeout:
            if reply is not None:
                forget_reply(self.reply_listener, reply)
            raise


class TimedServiceProxy(ServiceProxy):
    def __getattr__(self, name):
        return TimedMethodProxy(self.worker_ctx, self.service_name, name, self.reply_listener, **self.options)


class RpcClient(RpcProxy):
    """An ``RpcProxy`` whose calls time out, sent as transient messages (a restarted broker has lost the
    caller's reply queue anyway: the call has timed out)."""

    rpc_reply_listener = ReplyListener()

    def __init__(self, target_service: str, timeout: float | None = None, **options):
        self.timeout = timeout
        super().__init__(target_service, **{"delivery_mode": TRANSIENT, **options})

    def get_dependency(self, worker_ctx) -> TimedServiceProxy:
        timeout = self.timeout or settings_of(self.container.config).rpc_timeout
        return TimedServiceProxy(worker_ctx, self.target_service, self.rpc_reply_listener,
                                 timeout=timeout, **self.options)

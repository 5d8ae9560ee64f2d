"""Publishing with publisher confirms, for the relay and the reliable handlers.

nameko's ``Publisher`` builds a kombu ``Connection`` on every publish only to look
up the pooled one; under load that was a fifth of the tickets and notify
processes' CPU (py-spy, ``make bench --profile``). This publisher resolves its
producer pool once and takes producers from it.

Every message is persistent, JSON, ``mandatory`` and confirmed: ``publish``
returns only once the broker has it, and raises :class:`UndeliverableMessage` if
no queue (nor the alternate exchange) could take it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import nameko.amqp.publish
from kombu import Connection, Exchange
from kombu.exceptions import ChannelError
from kombu.pools import ProducerPool, producers
from nameko.amqp.publish import UndeliverableMessage

PERSISTENT = 2
RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1}
TRANSPORT_OPTIONS = {"confirm_publish": True, "max_retries": 3, "interval_start": 2, "interval_step": 1,
                     "interval_max": 5}

__all__ = ["ConfirmedPublisher", "UndeliverableMessage", "pooled_producer"]


class ConfirmedPublisher:
    """Publishes confirmed, persistent JSON messages over a pool of producers shared by greenthreads."""

    def __init__(self, amqp_uri: str):
        self._pool = producers[Connection(amqp_uri, transport_options=dict(TRANSPORT_OPTIONS))]

    def publish(self, body, *, exchange: Exchange, routing_key: str, headers: dict | None = None,
                **properties) -> None:
        with self._pool.acquire(block=True) as producer:
            try:
                producer.publish(
                    body, exchange=exchange, routing_key=routing_key, headers=headers or {},
                    delivery_mode=PERSISTENT, mandatory=True, serializer="json",
                    retry=True, retry_policy=RETRY_POLICY, **properties,
                )
            except ChannelError as error:
                if "NO_ROUTE" in str(error):
                    raise UndeliverableMessage(routing_key) from error
                raise


_POOLS: dict[tuple, ProducerPool] = {}
_nameko_get_producer = nameko.amqp.publish.get_producer


@contextmanager
def pooled_producer(amqp_uri, confirms=True, ssl=None, login_method=None, transport_options=None) -> Iterator:
    """nameko's ``get_producer``, with the producer pool looked up once per set of arguments.

    nameko builds a kombu ``Connection`` on every publish (its RPC requests and replies)
    only to find the pool that equal connections share: a quarter of the gateway's CPU
    under load. The pool found is the same one; only the lookup is cached.
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


def use_pooled_producers() -> None:
    """Make nameko's publishers (RPC requests and replies, events) use :func:`pooled_producer`."""
    nameko.amqp.publish.get_producer = pooled_producer

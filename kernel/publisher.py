"""Publishing a batch with publisher confirms, for the outbox relay.

:class:`PipelinedPublisher` publishes every message of a batch (persistent, JSON, ``mandatory``), then waits
once for the broker's confirms of all of them (RabbitMQ acks a run of messages in one frame), instead of a
confirm round trip per event. (The reliable handlers publish their parked and dead-lettered copies one at a
time, confirmed, with nameko's ``Publisher``.)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field

from kombu import Connection, Producer

PERSISTENT = 2
CONFIRM_TIMEOUT_SECONDS = 10.0

__all__ = ["Outgoing", "PipelinedPublisher"]


@dataclass(frozen=True)
class Outgoing:
    """One message for :meth:`PipelinedPublisher.publish_all`."""

    body: dict
    exchange: str
    routing_key: str
    message_id: str
    correlation_id: str | None = None
    headers: dict = field(default_factory=dict)


class PipelinedPublisher:
    """Publishes a batch of persistent, ``mandatory`` JSON messages, then waits for all their confirms.

    Owned by one greenthread: it holds its own connection, opened on first use and
    rebuilt on the call after one that failed. Usage::

        publisher = PipelinedPublisher(amqp_uri)
        confirmed = publisher.publish_all([Outgoing(body, "huisheng.events", "ticket.received", event_id)])
        # [True]: the broker has it, routed to a queue (or to the alternate exchange)
    """

    def __init__(self, amqp_uri: str, confirm_timeout: float = CONFIRM_TIMEOUT_SECONDS):
        self.amqp_uri = amqp_uri
        self.confirm_timeout = confirm_timeout
        self._connection: Connection | None = None
        self._producer: Producer | None = None
        self._last_tag = 0
        self._waiting: dict[int, str] = {}  # delivery tag -> message id, until the broker confirms it
        self._outcomes: dict[int, bool] = {}
        self._returned: set[str] = set()

    def publish_all(self, messages: Sequence[Outgoing]) -> list[bool]:
        """For each message, True once the broker confirmed it; False if it refused (nack) or returned it.

        A connection found broken (the broker restarted, or dropped it while idle) is
        rebuilt and the batch published again at once; duplicates are harmless, since
        consumers dedupe. Raises if that fails too, or if the confirms did not come in
        time: nothing is known of the batch then (a message may have reached the broker).
        """
        if not messages:
            return []
        try:
            return self._publish_all(messages)
        except TimeoutError:
            self.close()
            raise
        except Exception:  # noqa: BLE001 - whatever a dead socket raises: one more try on a new connection
            self.close()
        try:
            return self._publish_all(messages)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        connection, self._connection, self._producer = self._connection, None, None
        self._waiting.clear()
        if connection is not None:
            with suppress(Exception):  # a broken connection has nothing left to release
                connection.close()

    def _publish_all(self, messages: Sequence[Outgoing]) -> list[bool]:
        producer = self._producer or self._open()
        self._outcomes, self._returned = {}, set()
        first = self._last_tag + 1
        for message in messages:
            producer.publish(message.body, exchange=message.exchange, routing_key=message.routing_key,
                             headers=message.headers, message_id=message.message_id,
                             correlation_id=message.correlation_id, delivery_mode=PERSISTENT, mandatory=True,
                             serializer="json", retry=False)
            self._last_tag += 1
            self._waiting[self._last_tag] = message.message_id
        deadline = time.monotonic() + self.confirm_timeout
        while self._waiting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{len(self._waiting)} of {len(messages)} messages not confirmed in time")
            self._connection.drain_events(timeout=remaining)
        return [self._outcomes[tag] for tag in range(first, self._last_tag + 1)]

    def _open(self) -> Producer:
        # Without confirm_publish: its basic_publish would wait for each message's confirm.
        connection = Connection(self.amqp_uri)
        channel = connection.channel()
        channel.confirm_select()
        channel.events["basic_ack"].add(lambda tag, multiple: self._confirmed(tag, multiple, True))
        channel.events["basic_nack"].add(lambda tag, multiple: self._confirmed(tag, multiple, False))
        channel.events["basic_return"].add(self._on_return)
        self._connection, self._last_tag = connection, 0
        self._producer = Producer(channel, auto_declare=False)
        return self._producer

    def _confirmed(self, tag: int, multiple: bool, acked: bool) -> None:
        for confirmed in ([t for t in self._waiting if t <= tag] if multiple else [tag]):
            message_id = self._waiting.pop(confirmed, None)
            if message_id is not None:
                self._outcomes[confirmed] = acked and message_id not in self._returned

    def _on_return(self, error, exchange, routing_key, message) -> None:
        # A returned message is still acked afterwards: remember it until its ack arrives.
        self._returned.add(message.properties.get("message_id"))

"""A copy of every event the platform publishes, with the time it arrived, for outbox lag and drains.

A queue of our own is bound to ``huisheng.events`` for ``#``; a thread consumes
it (no acks, nothing parsed on the hot path) and keeps ``(arrival, body)``.
Outbox lag is arrival minus the envelope's ``occurred_at``, which the service
sets just before it writes the document (the write is the event), so it covers
the relay, the publish with its confirm and the broker's routing — and no
consumer work. The clock is the same machine's.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime

from kombu import Connection, Consumer, Exchange, Queue

EVENTS_EXCHANGE = "huisheng.events"


def occurred_epoch(text: str) -> float:
    """``occurred_at`` of an envelope (ISO 8601) as epoch seconds.

    >>> occurred_epoch("1970-01-01T00:00:01.500000+00:00")
    1.5
    """
    return datetime.fromisoformat(text).timestamp()


class EventTap:
    """Consumes a copy of every event in a background thread."""

    def __init__(self, amqp_uri: str, name: str = "bench.tap"):
        self.amqp_uri = amqp_uri
        self.queue = Queue(name, exchange=Exchange(EVENTS_EXCHANGE, type="topic", passive=True),
                           routing_key="#", exclusive=True, auto_delete=True, durable=False)
        self.received: list[tuple[float, bytes]] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self, timeout: float = 10.0) -> EventTap:
        self._thread = threading.Thread(target=self._run, name="event-tap", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"the event tap could not subscribe: {self.error!r}")
        return self

    def _on_message(self, message) -> None:
        self.received.append((time.time(), message.body))

    def _run(self) -> None:
        try:
            with Connection(self.amqp_uri, heartbeat=0) as connection, Consumer(
                connection.channel(), queues=[self.queue], on_message=self._on_message, no_ack=True
            ):
                self._ready.set()
                while not self._stop.is_set():
                    try:
                        connection.drain_events(timeout=0.2)
                    except TimeoutError:
                        continue
        except BaseException as error:  # reported by start() or by the figures that need the tap
            self.error = error
            self._ready.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def mark(self) -> int:
        """An index into what was received: events after it belong to what comes next."""
        return len(self.received)

    def events(self, since: int = 0, until: int | None = None) -> list[tuple[float, dict]]:
        """``(arrival, envelope)`` of the events received between two marks."""
        return [(arrival, json.loads(body)) for arrival, body in self.received[since:until]]

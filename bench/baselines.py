"""Raw rates of the broker and the database, measured in the same run as the platform.

* kombu: persistent publish to a durable queue, waiting for the broker's confirm
  of each message (what the outbox relay does per event), then consume + ack of
  that backlog;
* pymongo: ``insert_one`` and ``insert_many`` (batches of 1,000) of the
  platform's inbox message, through the platform's own client options, into a collection with
  the inbox's index.

These are plain threads in the harness's process: no eventlet, no nameko.
"""

from __future__ import annotations

import time
import uuid

from kombu import Connection, Consumer, Producer, Queue

from bench.documents import BACKLOG_EVENT_TYPE, COMMUNITY, inbox_message
from bench.stats import per_second, summarize
from kernel.envelope import Envelope
from kernel.mongo import connect

BATCH = 1000
QUEUE = "bench.baseline"


def sample_event() -> dict:
    """An event of the size the relay publishes."""
    return Envelope.new(BACKLOG_EVENT_TYPE, {"ticket_id": uuid.uuid4().hex, "state": "received",
                                             "attached_residents": ["bench-resident"]},
                        community=COMMUNITY).to_wire()


def publish_confirmed(amqp_uri: str, count: int) -> dict:
    """Publish ``count`` persistent messages, each confirmed by the broker before the next."""
    body = sample_event()
    queue = Queue(QUEUE, durable=True)
    timings = []
    with Connection(amqp_uri, transport_options={"confirm_publish": True}) as connection:
        channel = connection.channel()
        queue(channel).declare()
        queue(channel).purge()
        producer = Producer(channel, serializer="json")
        started = time.perf_counter()
        for _ in range(count):
            before = time.perf_counter()
            producer.publish(body, routing_key=QUEUE, delivery_mode=2, message_id=uuid.uuid4().hex)
            timings.append((time.perf_counter() - before) * 1000.0)
        elapsed = time.perf_counter() - started
    return {"messages": count, "seconds": elapsed, "rate": per_second(count, elapsed),
            "confirm_ms": summarize(timings)}


def consume_acked(amqp_uri: str, count: int, timeout: float = 60.0) -> dict:
    """Consume and ack ``count`` messages from the backlog :func:`publish_confirmed` left."""
    received = 0

    def on_message(message) -> None:
        nonlocal received
        message.ack()
        received += 1

    with Connection(amqp_uri) as connection:
        channel = connection.channel()
        channel.basic_qos(0, 100, False)
        with Consumer(channel, queues=[Queue(QUEUE, durable=True)], on_message=on_message):
            started = time.perf_counter()
            deadline = time.monotonic() + timeout
            while received < count and time.monotonic() < deadline:
                try:
                    connection.drain_events(timeout=1)
                except TimeoutError:
                    continue
            elapsed = time.perf_counter() - started
    return {"messages": received, "seconds": elapsed, "rate": per_second(received, elapsed)}


def _inbox(db):
    """The inbox collection with the platform's index on it, emptied."""
    from services.notify.repository import COLLECTION, InboxRepository

    db.drop_collection(COLLECTION)
    InboxRepository.ensure_indexes(db)
    return db[COLLECTION]


def insert_one(mongo_uri: str, database: str, count: int) -> dict:
    """``count`` single-document inserts of the inbox message shape, one round trip each."""
    client = connect(mongo_uri)
    try:
        collection = _inbox(client[database])
        documents = [inbox_message(f"bench-{i % 50}") for i in range(count)]
        started = time.perf_counter()
        for document in documents:
            collection.insert_one(document)
        elapsed = time.perf_counter() - started
    finally:
        client.close()
    return {"documents": count, "seconds": elapsed, "rate": per_second(count, elapsed)}


def insert_many(mongo_uri: str, database: str, batches: int) -> dict:
    """``batches`` batches of :data:`BATCH` inbox messages; the rate is in documents per second."""
    client = connect(mongo_uri)
    try:
        collection = _inbox(client[f"{database}_many"])
        prepared = [[inbox_message(f"bench-{i % 50}") for i in range(BATCH)] for _ in range(batches)]
        started = time.perf_counter()
        for batch in prepared:
            collection.insert_many(batch)
        elapsed = time.perf_counter() - started
    finally:
        client.close()
    count = batches * BATCH
    return {"documents": count, "batch": BATCH, "seconds": elapsed, "rate": per_second(count, elapsed)}


def measure(amqp_uri: str, mongo_uri: str, database: str, messages: int, inserts: int, batches: int) -> dict:
    """Every baseline, one after the other (:func:`drop` the databases afterwards)."""
    return {
        "publish_confirmed": publish_confirmed(amqp_uri, messages),
        "consume_acked": consume_acked(amqp_uri, messages),
        "insert_one": insert_one(mongo_uri, database, inserts),
        "insert_many": insert_many(mongo_uri, database, batches),
    }


def drop(mongo_uri: str, database: str) -> None:
    """The baselines' databases, dropped (SecantusDB holds its global lock for over 10 s doing it)."""
    client = connect(mongo_uri, timeout_ms=120_000)
    try:
        client.drop_database(database)
        client.drop_database(f"{database}_many")
    finally:
        client.close()

"""Helpers that read and write the test vhost of RabbitMQ directly, with kombu."""

from __future__ import annotations

import json

from kombu import Connection, Producer

from kernel.topology import EVENTS


def publish_event(amqp_uri: str, wire: dict, **properties) -> None:
    """Publish an envelope the way the outbox relay does (confirmed, routed by type)."""
    with Connection(amqp_uri) as connection:
        producer = Producer(connection.default_channel)
        connection.default_channel.confirm_select()
        producer.publish(wire, exchange=EVENTS, routing_key=wire["type"], serializer="json",
                         delivery_mode=2, **properties)


def publish_raw(amqp_uri: str, body: bytes, routing_key: str, content_type: str) -> None:
    with Connection(amqp_uri) as connection:
        producer = Producer(connection.default_channel)
        producer.publish(body, exchange=EVENTS, routing_key=routing_key, content_type=content_type,
                         content_encoding="binary", delivery_mode=2)


def drain(amqp_uri: str, queue_name: str, limit: int = 1000) -> list:
    """Take every message now in ``queue_name`` (acked): a list of (body, headers)."""
    taken = []
    with Connection(amqp_uri) as connection:
        channel = connection.default_channel
        while len(taken) < limit:
            message = channel.basic_get(queue_name, no_ack=True)
            if message is None:
                return taken
            taken.append((_decoded(message.body), dict(message.headers or {})))
    return taken


def _decoded(body: bytes):
    try:
        return json.loads(body)
    except ValueError:
        return body


def depth(amqp_uri: str, queue_name: str) -> int:
    with Connection(amqp_uri) as connection:
        _, count, _ = connection.default_channel.queue_declare(queue_name, passive=True)
        return count

"""The platform's RPC consumer survives a reply the broker cannot take."""

from unittest import mock

from kernel.patches import ResilientRpcConsumer


def test_a_reply_the_broker_refuses_neither_raises_nor_acks_the_request():
    consumer = ResilientRpcConsumer()
    consumer.container = mock.Mock(config={"AMQP_URI": "amqp://guest:guest@127.0.0.1:1/", "serializer": "json"})
    consumer.queue_consumer = mock.Mock()
    message = mock.Mock(delivery_info={"routing_key": "tickets.create"},
                        properties={"reply_to": "reply", "correlation_id": "c-1"})

    with mock.patch("nameko.rpc.Responder.send_response", side_effect=ConnectionRefusedError("broker gone")):
        assert consumer.handle_result(message, {"id": "t-1"}, None) == ({"id": "t-1"}, None)

    consumer.queue_consumer.ack_message.assert_not_called()  # unacked: the broker redelivers the request


def test_a_reply_that_goes_out_acks_the_request():
    consumer = ResilientRpcConsumer()
    consumer.container = mock.Mock(config={"AMQP_URI": "amqp://guest:guest@127.0.0.1:1/", "serializer": "json"})
    consumer.queue_consumer = mock.Mock()
    message = mock.Mock(delivery_info={"routing_key": "tickets.create"}, properties={})

    with mock.patch("nameko.rpc.Responder.send_response", return_value=("ok", None)):
        consumer.handle_result(message, "ok", None)

    consumer.queue_consumer.ack_message.assert_called_once_with(message)


def test_nameko_publishers_share_one_producer_pool_per_set_of_arguments():
    import nameko.amqp.publish

    from kernel.patches import _POOLS, pooled_producer

    assert nameko.amqp.publish.get_producer is pooled_producer  # installed for the whole suite
    uri = "amqp://guest:guest@127.0.0.1:5672/pool-test"
    before = len(_POOLS)
    with pooled_producer(uri, True, None, None, {"max_retries": 3}) as first:
        pass
    with pooled_producer(uri, True, None, None, {"max_retries": 3}) as second:
        pass
    with pooled_producer(uri, False, None, None, {"max_retries": 3}):
        pass
    assert len(_POOLS) == before + 2  # the confirming and the non-confirming one
    assert first is second  # the producer went back to the pool and came out again

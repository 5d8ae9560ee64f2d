"""The naive pipeline: the floor the platform is measured against.

HTTP -> RPC -> insert -> event -> handler -> insert, as plain nameko services with
no authentication, no outbox, no idempotency and no retries, on the same pinned
stack and client options as the platform (nameko's ``RpcProxy``: one proxy per
worker; the platform's Mongo client options with ``retryWrites=false``; the
same ``max_workers`` and serializer) and writing documents of the same shape,
with the same indexes, as the platform's tickets and inbox.
"""

"""RPC deadlines: a slow service times out, a missing one fails at once, the gateway says which."""

from __future__ import annotations

import dataclasses
import time

import eventlet
import pytest
import requests
from nameko.exceptions import UnknownService
from nameko.rpc import rpc
from nameko.testing.services import dummy, entrypoint_hook

from kernel.rpc import RpcClient, RpcTimeout
from tests.integration.harness import bearer, start_gateway

pytestmark = pytest.mark.integration


class Slow:
    name = "tickets"

    @rpc
    def list_services(self, community, cursor=None, limit=None):
        eventlet.sleep(3)
        return []


class Caller:
    name = "caller"
    slow = RpcClient("tickets", timeout=0.3)
    absent = RpcClient("nobody_runs_this")

    @dummy
    def call_slow(self):
        return self.slow.list_services("xingqiao")

    @dummy
    def call_absent(self):
        return self.absent.anything()


def test_a_slow_service_times_out_at_the_deadline(container_factory, settings):
    container_factory(Slow, settings.nameko_config()).start()
    caller = container_factory(Caller, settings.nameko_config())
    caller.start()

    started = time.monotonic()
    with entrypoint_hook(caller, "call_slow") as call, pytest.raises(RpcTimeout):
        call()
    assert 0.25 < time.monotonic() - started < 1.5
    with entrypoint_hook(caller, "call_absent") as call, pytest.raises(UnknownService):
        call()


def test_the_gateway_answers_503_when_a_service_is_down_and_504_when_it_is_slow(container_factory, settings):
    gateway = start_gateway(container_factory, dataclasses.replace(settings, rpc_timeout=0.5), gateway_workers=False)
    headers = bearer(settings, "resident", "r-1")

    down = requests.get(f"{gateway}/api/v1/services", headers=headers, timeout=5)
    assert down.status_code == 503 and down.headers["Retry-After"]
    assert down.json()["code"] == "service_unavailable"

    slow_service = container_factory(Slow, settings.nameko_config())
    slow_service.start()
    slow = requests.get(f"{gateway}/api/v1/services", headers=headers, timeout=5)
    assert slow.status_code == 504 and slow.json()["code"] == "upstream_timeout"

    slow_service.stop()  # its durable queue stays behind: the call waits out the deadline
    stopped = requests.get(f"{gateway}/api/v1/services", headers=headers, timeout=5)
    assert stopped.status_code == 503 and stopped.json()["code"] == "service_unavailable"
    assert stopped.headers["Retry-After"]

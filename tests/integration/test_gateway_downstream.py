"""A downstream failure two hops away: the gateway calls a running service whose own call finds nobody (nameko's
UnknownService) or no answer (RpcTimeout). The client gets 503 problem+json with Retry-After, not a 500."""

from __future__ import annotations

import eventlet
import pytest
import requests
from nameko.rpc import rpc

from gateway.http import PROBLEM_CONTENT_TYPE
from kernel.rpc import RpcClient
from tests.integration.harness import bearer, start_gateway

pytestmark = pytest.mark.integration


class TicketsCallingNobody:
    """A tickets service whose catalogue read needs a service that is not running."""

    name = "tickets"
    absent = RpcClient("nobody_runs_this")

    @rpc
    def list_services(self, community, cursor=None, limit=None):
        return self.absent.anything()


class Sluggish:
    name = "sluggish"

    @rpc
    def anything(self):
        eventlet.sleep(3)


class TicketsCallingSluggish:
    """A tickets service whose catalogue read waits on a service that does not answer in time."""

    name = "tickets"
    sluggish = RpcClient("sluggish", timeout=0.3)

    @rpc
    def list_services(self, community, cursor=None, limit=None):
        return self.sluggish.anything()


@pytest.mark.parametrize("downstream", [TicketsCallingNobody, TicketsCallingSluggish])
def test_a_service_down_behind_the_one_called_answers_503_with_retry_after(container_factory, settings, downstream):
    if downstream is TicketsCallingSluggish:
        container_factory(Sluggish, settings.nameko_config()).start()
    container_factory(downstream, settings.nameko_config()).start()
    gateway = start_gateway(container_factory, settings, gateway_workers=False)
    headers = bearer(settings, "resident", "r-1")

    answer = requests.get(f"{gateway}/api/v1/services", headers=headers, timeout=10)

    assert answer.status_code == 503, answer.text
    assert answer.headers["Content-Type"].startswith(PROBLEM_CONTENT_TYPE)
    assert int(answer.headers["Retry-After"]) > 0
    body = answer.json()
    assert (body["code"], body["status"]) == ("service_unavailable", 503)
    assert "internal" not in answer.text


class Open311CallingNobody:
    """A tickets service whose Open311 service list needs a service that is not running."""

    name = "tickets"
    absent = RpcClient("nobody_runs_this")

    @rpc
    def open311_services(self, include_private=False):
        return self.absent.anything()


def test_open311_answers_503_in_its_own_error_shape_when_a_service_behind_tickets_is_down(container_factory,
                                                                                         settings):
    container_factory(Open311CallingNobody, settings.nameko_config()).start()
    gateway = start_gateway(container_factory, settings, gateway_workers=False)

    answer = requests.get(f"{gateway}/open311/v2/services.json", timeout=10)

    assert answer.status_code == 503, answer.text
    assert answer.json()[0]["code"] == 503  # GeoReport v2's error list, not a 500

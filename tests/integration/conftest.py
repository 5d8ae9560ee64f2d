"""Fixtures the integration tests share (tests/conftest.py has the broker, the database and the settings)."""

import pytest

from gateway.service import GatewayService
from services.directory.service import DirectoryService
from services.notify.service import NotifyService
from services.tickets.service import TicketsService
from tests.conftest import free_port


@pytest.fixture
def gateway(container_factory, settings):
    """The gateway in front of the directory (which seeds the demo community), tickets and notify; its URL.

    A module that needs other services behind it defines its own ``gateway``.
    """
    for service in (DirectoryService, TicketsService, NotifyService):
        container_factory(service, settings.nameko_config(web_address=f"127.0.0.1:{free_port()}")).start()
    port = free_port()
    container_factory(GatewayService, settings.nameko_config(web_address=f"127.0.0.1:{port}", gateway=True)).start()
    return f"http://127.0.0.1:{port}"

"""Fixtures the integration tests share (tests/conftest.py has the broker, the database and the settings)."""

import pytest

from services.directory.service import DirectoryService
from services.notify.service import NotifyService
from services.tickets.service import TicketsService
from tests.integration.harness import start_gateway


@pytest.fixture
def gateway(container_factory, settings):
    """The gateway in front of the directory (which seeds the demo community), tickets and notify; its URL.

    A module that needs other services behind it, or other settings, defines its own ``gateway`` on
    ``tests.integration.harness.start_gateway``.
    """
    return start_gateway(container_factory, settings, DirectoryService, TicketsService, NotifyService)

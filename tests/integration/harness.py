"""How the integration tests run services with the gateway in front of them, and call it as someone.

``start_gateway`` is what the conftest's ``gateway`` fixture is built on; a module that needs other services
behind the gateway, or other settings, calls it itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nameko.containers import ServiceContainer

from gateway.service import GatewayService
from kernel.auth import issue_token
from kernel.config import Settings
from tests.conftest import free_port


def start_service(container_factory: Callable[..., ServiceContainer], settings: Settings,
                  service: type) -> ServiceContainer:
    """Start ``service`` in a container of its own, its /health on a free port; the started container."""
    container = container_factory(service, settings.nameko_config(web_address=f"127.0.0.1:{free_port()}"))
    container.start()
    return container


def start_gateway(container_factory: Callable[..., ServiceContainer], settings: Settings, *services: type,
                  gateway_workers: bool = True) -> str:
    """Start ``services`` in that order, then the gateway in front of them; the gateway's URL.

    ``gateway_workers`` gives the gateway its own worker count (``gateway_max_workers``), as a deployed one has;
    False runs it with a service's ``max_workers``, which the modules that pass it have always done.
    """
    for service in services:
        start_service(container_factory, settings, service)
    port = free_port()
    container_factory(GatewayService,
                      settings.nameko_config(web_address=f"127.0.0.1:{port}", gateway=gateway_workers)).start()
    return f"http://127.0.0.1:{port}"


def bearer(settings: Settings, role: str = "resident", subject: str = "r-1", community: str | None = None,
           **claims: Any) -> dict[str, str]:
    """The ``Authorization`` header of a token for ``subject`` acting as ``role``.

    ``community`` defaults to the settings' one; ``claims`` are ``issue_token``'s other keywords (``grids``,
    ``teams``, ``session``, ``home``, ``name``, ``ttl``, ``now``).
    """
    return {"Authorization": f"Bearer {issue_token(settings, role, subject, community=community, **claims)}"}

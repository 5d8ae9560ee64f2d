"""What the platform is made of: its processes, by name, and where they listen.

The kernel never imports a service; it names each one by its import path so the
launcher, the runner and the deployment files agree on one list.

>>> [p.name for p in PROCESSES]
['tickets', 'notify', 'volunteers', 'directory', 'gateway']
>>> process("gateway").http_port_env
'GATEWAY_PORT'
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Process:
    name: str
    service_path: str  # "package.module:ServiceClass"
    default_port: int  # where /health, /ready (and for the gateway, the API) listen
    http_port_env: str = "HTTP_PORT"
    cli_module: str | None = None  # adds the service's own `huisheng` commands: it has register(commands)

    @property
    def is_gateway(self) -> bool:
        return self.name == "gateway"


PROCESSES: tuple[Process, ...] = (
    Process("tickets", "services.tickets.service:TicketsService", 8101, cli_module="services.tickets.cli"),
    Process("notify", "services.notify.service:NotifyService", 8102),
    Process("volunteers", "services.volunteers.service:VolunteersService", 8103),
    Process("directory", "services.directory.service:DirectoryService", 8104, cli_module="services.directory.cli"),
    Process("gateway", "gateway.service:GatewayService", 8000, http_port_env="GATEWAY_PORT"),
)


def process(name: str) -> Process:
    for candidate in PROCESSES:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no process named {name!r}; known: {[p.name for p in PROCESSES]}")


LOCAL_PORT_VARIABLES: tuple[str, ...] = tuple(
    f"HUISHENG_PORT_{p.name.upper()}" for p in PROCESSES if not p.is_gateway
) + ("HUISHENG_PORT_SMS", "HUISHENG_PORT_WECHAT")
"""The ports ``huisheng up`` gives each service's /health and the stand-ins (a second platform sets them all)."""

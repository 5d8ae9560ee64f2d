"""Run one process of the platform: ``huisheng service tickets``.

Reads the settings from the environment, declares the broker topology (so no
event is published before its queue exists), starts the service's container and
stops it gracefully on SIGTERM or SIGINT: entrypoints stop taking work, running
workers finish, and if that takes longer than ``HUISHENG_STOP_TIMEOUT`` seconds the
process exits anyway (nameko ignores stop requests while it reconnects to a
broker that is gone).
"""

import warnings

# eventlet announces its maintenance mode on import; the platform knows (docs/architecture.md).
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()  # must precede every other import that touches sockets or threads

import os  # noqa: E402
import pkgutil  # noqa: E402
import signal  # noqa: E402

from nameko.runners import ServiceRunner  # noqa: E402

from kernel import logging as platform_logging  # noqa: E402
from kernel.config import Settings  # noqa: E402
from kernel.patches import use_pooled_producers  # noqa: E402
from kernel.platform import process  # noqa: E402
from kernel.topology import declare_all  # noqa: E402

log = platform_logging.get_logger(__name__)


def main(name: str) -> int:
    settings, proc = Settings.from_env(), process(name)
    platform_logging.configure(name, settings.log_level, settings.log_format)
    service_cls = pkgutil.resolve_name(proc.service_path)  # "services.tickets.service:TicketsService"
    address = (f"{settings.gateway_host}:{settings.gateway_port}" if proc.is_gateway
               else f"{settings.http_host}:{settings.http_port or proc.default_port}")
    declare_all(settings)
    use_pooled_producers()
    runner = ServiceRunner(settings.nameko_config(web_address=address, gateway=proc.is_gateway))
    runner.add_service(service_cls)
    stopping = eventlet.event.Event()

    def on_signal(signum, _frame):
        log.info("process.stopping", signal=signal.Signals(signum).name)
        if not stopping.ready():
            stopping.send(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    runner.start()
    log.info("process.started", listening=address)
    eventlet.spawn(_watch, runner, stopping)
    if stopping.wait() == "crashed":
        return 1
    return _stop(runner, settings.stop_timeout)


def _watch(runner: ServiceRunner, stopping) -> None:
    """A container that dies takes the process down, so its supervisor notices."""
    try:
        runner.wait()
    except Exception as error:
        log.error("process.container_died", error=repr(error))
    if not stopping.ready():
        stopping.send("crashed")


def _stop(runner: ServiceRunner, timeout: float) -> int:
    try:
        with eventlet.Timeout(timeout):
            runner.stop()
    except eventlet.Timeout:
        log.error("process.stop_timeout", seconds=timeout)
        runner.kill()
        os._exit(1)
    log.info("process.stopped")
    return 0

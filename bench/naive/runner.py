"""Run one naive service: ``python -m bench.naive.runner gateway|tickets|notify`` (HTTP_PORT from the env)."""

import eventlet

eventlet.monkey_patch()  # before anything that touches sockets

import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

from nameko.runners import ServiceRunner  # noqa: E402

from bench.naive.services import NaiveGateway, NaiveNotify, NaiveTickets  # noqa: E402
from kernel.config import Settings  # noqa: E402

SERVICES = {"gateway": NaiveGateway, "tickets": NaiveTickets, "notify": NaiveNotify}
STOP_SECONDS = 10


def main(name: str) -> int:
    """Start the service, wait for SIGTERM or SIGINT, stop it (or exit anyway after a while)."""
    settings = Settings.from_env()
    runner = ServiceRunner(settings.nameko_config(web_address=f"127.0.0.1:{os.environ['HTTP_PORT']}"))
    runner.add_service(SERVICES[name])
    stopping = eventlet.event.Event()

    def on_signal(signum, _frame):
        if not stopping.ready():
            stopping.send(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    runner.start()
    stopping.wait()
    try:
        with eventlet.Timeout(STOP_SECONDS):
            runner.stop()
    except eventlet.Timeout:
        runner.kill()
        os._exit(1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

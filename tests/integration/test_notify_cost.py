"""What one resident echo costs the database: every command notify sends, counted by pymongo's command monitoring.

The echo path (issue #12, item 7) used to cost a preferences read, an inbox insert and an echo insert per echo.
Events are published one at a time and each waited for, so group commit cannot merge two echoes' writes and the
count is the cost of one echo alone. Run with ``-s`` to see the breakdown by command and collection.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from pymongo import monitoring

from kernel.envelope import Envelope
from services.notify.service import NotifyService
from tests.conftest import free_port
from tests.support.broker import publish_event

pytestmark = pytest.mark.integration

ECHOES = 12
ECHO_PATH = ("inbox", "echoes", "preferences")  # the collections an echo itself touches
TIMER = {("find", "echoes")}  # the timer's pass for due and silent echoes: per tick (2 s), not per echo
MAX_COMMANDS_PER_ECHO = 1.2  # one insert, plus a preferences read once per cache lifetime


class CommandCounter(monitoring.CommandListener):
    """Counts ``(command, collection)`` of one database while ``recording``."""

    def __init__(self, database: str):
        self.database, self.recording, self.counts = database, False, Counter()
        self._lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if not self.recording or event.database_name != self.database:
            return
        target = event.command.get(event.command_name)
        with self._lock:
            self.counts[(event.command_name, target if isinstance(target, str) else "-")] += 1

    def succeeded(self, event) -> None:
        pass

    def failed(self, event) -> None:
        pass


class Quiet(NotifyService):
    """No directory here; inbox-only residents need no contacts."""

    def lookup_contacts(self, community: str, person: str) -> dict:
        return {}


def test_a_resident_echo_costs_one_database_command(container_factory, settings, mongo_client, wait_until):
    counter = CommandCounter(settings.database_name("notify"))
    # global: every client made from now on, the container's among them. pymongo cannot unregister a listener;
    # once ``recording`` is off it only returns.
    monitoring.register(counter)
    container = container_factory(Quiet, settings.nameko_config(web_address=f"127.0.0.1:{free_port()}"))
    container.start()
    inbox = mongo_client[settings.database_name("notify")].inbox
    time.sleep(1.0)  # let start-up (indexes, the outbox's first sweep) pass before counting

    counter.recording = True
    for n in range(ECHOES):
        event = Envelope.new("ticket.resolved", {"ticket_id": f"T-cost-{n}", "state": "resolved",
                                                 "attached_residents": ["r-cost"], "priority": "normal",
                                                 "number": f"XQ-{n:04d}"}, community="xingqiao")
        publish_event(settings.amqp_uri, event.to_wire())
        assert wait_until(lambda event=event: inbox.count_documents({"_id": f"{event.event_id}:r-cost"}) == 1)
    counter.recording = False

    echo_path = {key: count for key, count in counter.counts.items() if key[1] in ECHO_PATH and key not in TIMER}
    # the test's own reads (count_documents above) go through another client, made before the listener
    print(f"\ncommands on notify's database for {ECHOES} echoes: {dict(counter.counts)}")
    print(f"echo path: {echo_path} = {sum(echo_path.values()) / ECHOES:.2f} per echo")
    assert sum(echo_path.values()) / ECHOES <= MAX_COMMANDS_PER_ECHO, echo_path

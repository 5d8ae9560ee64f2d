"""The tickets service with the real broker and database: a retried create publishes its event again."""

from __future__ import annotations

import dataclasses

import eventlet
import pytest
from nameko.testing.services import entrypoint_hook

from kernel.envelope import utcnow
from kernel.groupcommit import GroupCommit
from services.tickets.domain import Ticket
from services.tickets.repository import TicketRepository, ticket_id_for
from services.tickets.service import CATALOGUE, TicketsService
from services.tickets.writes import envelopes
from tests.conftest import free_port
from tests.support.broker import depth, drain

pytestmark = pytest.mark.integration

QUEUE = "huisheng.notify.ticket_events"
REPORT = {"service_code": "roof_leak", "description": "顶楼漏雨，客厅天花板滴水", "address_string": "兴乔小区5号楼",
          "attributes": {"floor": 5, "still_leaking": "yes"}}  # roof_leak's required answers


def test_a_retried_create_publishes_the_event_of_a_first_attempt_that_committed_late(
        container_factory, settings, mongo_client, wait_until):
    # The sweep would take the event only after a minute: whatever is published here, the retry published.
    late_sweep = dataclasses.replace(settings, outbox_grace_seconds=60.0)
    tickets = container_factory(TicketsService, late_sweep.nameko_config(web_address=f"127.0.0.1:{free_port()}"))
    tickets.start()
    # The first attempt's write committed after its client had given up: nobody asked the relay to publish.
    first = Ticket.receive(ticket_id_for("xingqiao", "r-1", "k-1"), "xingqiao", CATALOGUE.get("roof_leak"),
                           REPORT["description"], REPORT["address_string"], "r-1", "resident", utcnow())
    events = envelopes(first, "first-attempt")
    queues = GroupCommit()
    TicketRepository(mongo_client[settings.database_name("tickets")], queues).add(first, events, "k-1")
    queues.stop()
    eventlet.sleep(0.5)  # several sweeps
    assert depth(settings.amqp_uri, QUEUE) == 0

    with entrypoint_hook(tickets, "create") as create:
        again = create("xingqiao", "r-1", REPORT, request_key="k-1")

    assert again["id"] == first.id and again["created_at"] == first.created_at.isoformat()
    wait_until(lambda: depth(settings.amqp_uri, QUEUE) == 1, timeout=5)
    [(published, _)] = drain(settings.amqp_uri, QUEUE)
    assert (published["event_id"], published["type"]) == (events[0].event_id, "ticket.received")


def test_two_processes_number_tickets_uniquely_from_blocks_of_one_counter(container_factory, settings, mongo_client):
    processes = [container_factory(TicketsService, settings.nameko_config(web_address=f"127.0.0.1:{free_port()}"))
                 for _ in range(2)]
    for process in processes:
        process.start()
    numbers = []
    for _ in range(6):
        for process in processes:
            with entrypoint_hook(process, "create") as create:
                numbers.append(create("xingqiao", "r-1", REPORT)["number"])
    assert len(set(numbers)) == 12
    sequences = sorted(int(number.rsplit("-", 1)[1]) for number in numbers)
    assert sequences[0] == 1 and sequences[-1] <= 20  # two blocks of ten: gaps allowed, no overlap
    [counter] = mongo_client[settings.database_name("tickets")]["ticket_numbers"].find()
    assert counter["last"] == 20

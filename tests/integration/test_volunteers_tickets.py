"""A ticket dispatched to a volunteer team, through the real tickets, notify, directory and volunteers services:
each volunteer step lands on the ticket's timeline and the resident hears that help is on the way."""

from __future__ import annotations

import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from services.directory.service import DirectoryService
from services.notify.service import NotifyService
from services.tickets.service import TicketsService
from services.volunteers.service import VolunteersService

pytestmark = pytest.mark.integration

C = "xingqiao"
SECRETARY = {"subject": "sec-1", "role": "secretary", "community": C, "grids": [], "teams": []}
ALL_WEEK = [{"day": day, "start": "00:00", "end": "24:00"} for day in range(7)]


@pytest.fixture
def rpc(container_factory, settings):
    from tests.conftest import free_port

    for service in (DirectoryService, TicketsService, NotifyService, VolunteersService):
        container_factory(service, settings.nameko_config(web_address=f"127.0.0.1:{free_port()}")).start()
    with ClusterRpcProxy({"AMQP_URI": settings.amqp_uri, "serializer": "json"}, timeout=20) as proxy:
        yield proxy


def test_the_timeline_shows_the_offer_the_decline_and_the_acceptance_and_the_resident_hears_of_it(rpc, wait_until):
    ids = [rpc.volunteers.register(C, {"name": name, "phone": phone, "grid": "g1", "skills": ["plumbing"],
                                       "teams": ["neighbour_help"], "availability": ALL_WEEK}, actor=SECRETARY)["id"]
           for name, phone in (("钱师傅", "13900002001"), ("孙师傅", "13900002002"))]
    ticket = rpc.tickets.create(C, "r-77", {"service_code": "blocked_drain", "description": "下水道堵了",
                                            "address_string": "3号楼", "attributes": {"overflowing": "no"}})
    rpc.tickets.act(C, ticket["id"], "dispatch", {"kind": "team", "id": "neighbour_help"}, SECRETARY)
    [task] = wait_until(lambda: rpc.volunteers.tasks_of_ticket(C, ticket["id"])["items"], timeout=10)
    first = task["offer"]["volunteer"]
    second = next(v for v in ids if v != first)
    rpc.volunteers.answer_offer(C, task["id"], {"subject": first, "role": "volunteer", "community": C},
                                {"answer": "decline"})
    rpc.volunteers.answer_offer(C, task["id"], {"subject": second, "role": "volunteer", "community": C},
                                {"answer": "accept"})

    def volunteer_steps():
        timeline = rpc.tickets.get(C, ticket["id"], SECRETARY)["timeline"]
        return [e["type"] for e in timeline if e["type"].startswith("volunteer.")]

    expected = ["volunteer.offered", "volunteer.declined", "volunteer.offered", "volunteer.accepted"]
    assert wait_until(lambda: volunteer_steps() == expected, timeout=10)
    timeline = rpc.tickets.get(C, ticket["id"], SECRETARY)["timeline"]
    offered = next(e for e in timeline if e["type"] == "volunteer.offered")
    # who was asked and why (the timeline's schema shows the summary; services/tickets/schemas.py)
    assert offered["summary"].startswith(f"{first}: ") and "skill:plumbing" in offered["summary"]
    declined = next(e for e in timeline if e["type"] == "volunteer.declined")
    assert declined["reason"] == "declined"
    assert not any("check_in_code" in e for e in timeline)  # the assigned volunteer reads this timeline too

    def echo():
        return [m for m in rpc.notify.list_inbox(C, "r-77")["items"] if m["title"] == "志愿者正在赶来"]

    [message] = wait_until(echo, timeout=10)
    code = rpc.volunteers.get_task(C, task["id"], {"subject": "r-77", "role": "resident", "community": C}
                                   )["check_in_code"]
    assert code in message["body"]

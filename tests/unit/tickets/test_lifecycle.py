"""The lifecycle's new rules without I/O: grid scoping, comments, next steps, merges, numbers, errors, views."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from kernel.errors import Conflict, Forbidden, ValidationFailed
from services.tickets.actions import ACTION_SCHEMAS, platform_error, staff_scope, view
from services.tickets.catalogue import Service
from services.tickets.domain import (
    ACTIONS,
    MAX_ATTACHMENTS,
    Actor,
    DomainError,
    InvalidTransition,
    NotAllowed,
    State,
    Ticket,
)
from services.tickets.numbers import NUMBER, NumberBlocks, format_number, prefix_for, shanghai_day

NOW = datetime(2026, 12, 6, 1, 0, tzinfo=UTC)
LEAK = Service("roof_leak", "房屋漏水", "屋顶漏水", "房屋设施", "urgent")
SECRETARY = Actor("s1", "secretary")
WORKER_G3 = Actor("w3", "grid_worker", grids=("g3",))
WORKER_G1 = Actor("w1", "grid_worker", grids=("g1",))
VOLUNTEER = Actor("v1", "volunteer", teams=("dangyuan",))
RESIDENT = Actor("r1", "resident")
STRANGER = Actor("r9", "resident")
PHOTO = {"url": "https://files.example/p.jpg", "content_type": "image/jpeg", "size": 1024}


def ticket(grid: str | None = "g3", reporter: str = "r1", id: str = "T1") -> Ticket:
    made = Ticket.receive(id, "xingqiao", LEAK, "顶楼漏水", "9号楼", reporter, "resident", NOW, grid=grid,
                          building="b09", number="XQ-20261206-0001")
    made.pull_events()
    return made


def at(minutes: int) -> datetime:
    return NOW + timedelta(minutes=minutes)


# --- grid scoping and allowed actions ---------------------------------------------------------------

def test_a_grid_worker_acts_only_on_tickets_of_their_grids():
    in_g3 = ticket("g3")
    with pytest.raises(NotAllowed, match="grid g3"):
        in_g3.dispatch({"kind": "worker", "id": "w1"}, at(1), WORKER_G1)
    in_g3.dispatch({"kind": "worker", "id": "w3"}, at(1), WORKER_G3)
    assert in_g3.state == State.DISPATCHED


def test_an_unplaced_ticket_is_community_wide_for_grid_workers():
    unplaced = ticket(grid=None)
    unplaced.dispatch({"kind": "worker", "id": "w1"}, at(1), WORKER_G1)
    assert unplaced.assignee == {"kind": "worker", "id": "w1"}


@pytest.mark.parametrize("actor, expected", [
    (SECRETARY, ["dispatch", "close", "merge", "plan"]),
    (WORKER_G3, ["dispatch", "close", "merge", "plan"]),
    (WORKER_G1, []),
    (VOLUNTEER, []),  # nothing is dispatched to them
    (RESIDENT, []),
])
def test_allowed_actions_of_a_received_ticket_per_role(actor, expected):
    assert ticket().allowed_actions(actor) == expected


def test_allowed_actions_of_a_volunteer_team_s_ticket():
    dispatched = ticket()
    dispatched.dispatch({"kind": "team", "id": "dangyuan"}, at(1), SECRETARY)
    assert dispatched.allowed_actions(VOLUNTEER) == ["accept", "bounce", "plan"]
    assert dispatched.allowed_actions(Actor("v2", "volunteer", teams=("linli",))) == []


def test_every_action_names_a_domain_command_with_a_body_schema():
    assert set(ACTION_SCHEMAS) == set(ACTIONS) == {
        "dispatch", "accept", "bounce", "start", "pause", "resume", "resolve", "close", "merge", "plan"}
    assert ACTIONS["close"] == "close_not_fixed"


def test_the_escalation_after_bounces_goes_to_the_secretary():
    bounced = ticket()
    for minute in (1, 3):
        bounced.dispatch({"kind": "unit", "id": "供电公司"}, at(minute), SECRETARY)
        bounced.bounce("不归我们管", at(minute + 1), SECRETARY, escalate_after=2)
    escalated = [event for event in bounced.pull_events() if event.type == "ticket.escalated"]
    assert [event.payload["to_role"] for event in escalated] == ["secretary"]
    assert bounced.escalated_at == at(4)


# --- comments, next steps, attachments ------------------------------------------------------------

def test_an_internal_comment_is_no_first_response_and_a_visible_one_is():
    commented = ticket()
    commented.comment("物业周三来", "internal", at(1), SECRETARY)
    assert commented.first_response_at is None
    commented.comment("师傅周三上门", "resident", at(2), SECRETARY)
    assert commented.first_response_at == at(2)
    events = commented.pull_events()
    assert [(event.type, event.payload["visibility"]) for event in events] == [
        ("ticket.commented", "internal"), ("ticket.commented", "resident")]


def test_a_resident_comments_only_on_their_own_ticket_and_always_visibly():
    commented = ticket()
    entry = commented.comment("还在漏", "internal", at(1), RESIDENT)
    assert entry["visibility"] == "resident"
    with pytest.raises(NotAllowed):
        commented.comment("我也是", "resident", at(2), STRANGER)


def test_a_comment_needs_text_and_a_known_visibility():
    with pytest.raises(DomainError):
        ticket().comment("  ", "internal", at(1), SECRETARY)
    with pytest.raises(DomainError):
        ticket().comment("好", "public", at(1), SECRETARY)


def test_a_next_step_has_a_note_an_owner_and_a_due_time():
    planned = ticket()
    planned.plan("明早上门查看", "w3", at(600), at(1), WORKER_G3)
    assert planned.next_step == {"note": "明早上门查看", "owner": "w3", "due_at": at(600), "by": "w3", "at": at(1)}
    with pytest.raises(DomainError):
        planned.plan("明早", "", at(600), at(2), WORKER_G3)


def test_attachments_are_references_and_a_ticket_holds_a_bounded_number():
    attached = Ticket.receive("T2", "xingqiao", LEAK, "漏水", "9号楼", "r1", "resident", NOW, attachments=[PHOTO])
    assert attached.attachments[0]["url"] == PHOTO["url"] and attached.attachments[0]["by"] == "r1"
    with pytest.raises(DomainError, match="at most"):
        attached.comment("照片", "internal", at(1), SECRETARY, attachments=[PHOTO] * MAX_ATTACHMENTS)


# --- merges ---------------------------------------------------------------------------------------

def test_a_merge_closes_the_duplicate_and_the_master_absorbs_its_residents_once():
    master, duplicate = ticket(id="M1"), ticket(id="D1", reporter="r2")
    duplicate.merge_into(master, at(1), SECRETARY)
    assert (duplicate.state, duplicate.close_reason, duplicate.merged_into) == (
        State.CLOSED_NOT_FIXED, "duplicate", "M1")
    [merged] = duplicate.pull_events()
    assert (merged.type, merged.payload["master_id"], merged.payload["attached_residents"]) == (
        "ticket.merged", "M1", ["r2"])
    assert master.absorb("D1", ["r2"], at(2), SECRETARY) == ["r2"]
    assert master.absorb("D1", ["r2"], at(3), SECRETARY) == []  # a redelivered ticket.merged changes nothing
    assert master.attached_residents == ["r1", "r2"]
    assert [event.payload["resident"] for event in master.pull_events()] == ["r2"]


def test_a_ticket_is_not_merged_into_itself_nor_into_a_closed_or_merged_master():
    master = ticket(id="M1")
    with pytest.raises(DomainError, match="itself"):
        master.merge_into(master, at(1), SECRETARY)
    closed = ticket(id="M2")
    closed.close_not_fixed("cancelled", "", at(1), SECRETARY)
    with pytest.raises(InvalidTransition):
        ticket(id="D1").merge_into(closed, at(2), SECRETARY)


def test_a_grid_worker_may_not_merge_into_another_grid_s_ticket():
    with pytest.raises(NotAllowed):
        ticket(id="D1", grid="g3").merge_into(ticket(id="M1", grid="g1"), at(1), WORKER_G3)


# --- numbers --------------------------------------------------------------------------------------

def test_the_day_of_a_number_is_the_day_in_shanghai():
    assert shanghai_day(datetime(2026, 12, 5, 15, 59, tzinfo=UTC)) == date(2026, 12, 5)
    assert shanghai_day(datetime(2026, 12, 5, 16, 0, tzinfo=UTC)) == date(2026, 12, 6)


def test_a_number_is_short_and_grows_past_four_digits():
    assert format_number("XQ", date(2026, 12, 6), 7) == "XQ-20261206-0007"
    assert format_number("XQ", date(2026, 12, 6), 12345) == "XQ-20261206-12345"
    assert NUMBER.fullmatch(format_number(prefix_for("dongcheng"), date(2026, 12, 6), 1))


class CounterCollection:
    """A stand-in for the counters' collection: the atomic $inc upsert, in memory (unit tests do no I/O)."""

    def __init__(self):
        self.documents: dict[str, dict] = {}
        self.calls = 0

    def find_one_and_update(self, query, update, upsert, return_document):
        self.calls += 1
        document = self.documents.setdefault(query["_id"], {"_id": query["_id"], "last": 0})
        document["last"] += update["$inc"]["last"]
        return dict(document)


def test_numbers_come_from_blocks_unique_across_processes_with_one_counter_write_per_block():
    counters = CounterCollection()
    first, second = NumberBlocks(counters, block=5), NumberBlocks(counters, block=5)
    numbers = [process.next("xingqiao", NOW) for _ in range(6) for process in (first, second)]
    assert len(set(numbers)) == 12
    assert counters.calls == 4  # two blocks per process, not one write per ticket
    assert numbers[:2] == ["XQ-20261206-0001", "XQ-20261206-0006"]


def test_a_new_day_starts_from_one_and_each_community_counts_apart():
    blocks = NumberBlocks(CounterCollection(), block=3)
    assert blocks.next("xingqiao", NOW) == "XQ-20261206-0001"
    assert blocks.next("dongcheng", NOW) == "DC-20261206-0001"
    assert blocks.next("xingqiao", NOW + timedelta(days=1)) == "XQ-20261207-0001"


# --- errors and views -----------------------------------------------------------------------------

def test_domain_errors_become_409_403_and_422():
    received = ticket()
    conflict = platform_error(InvalidTransition("received", "start"), received, WORKER_G3)
    assert isinstance(conflict, Conflict) and conflict.details == {
        "state": "received", "allowed_actions": ["dispatch", "close", "merge", "plan"]}
    assert isinstance(platform_error(NotAllowed(WORKER_G1, "dispatch", "grid"), received, WORKER_G1), Forbidden)
    assert isinstance(platform_error(DomainError("bad"), received, SECRETARY), ValidationFailed)


def test_staff_scopes_follow_the_permission_table():
    assert staff_scope({"subject": "v1", "role": "volunteer", "teams": ["dangyuan"], "grids": []}) == [
        {"$or": [{"assignee.kind": "worker", "assignee.id": "v1"},
                 {"assignee.kind": "team", "assignee.id": {"$in": ["dangyuan"]}}]}]
    assert staff_scope({"subject": "i", "role": "integrator", "teams": [], "grids": []}) is None


def test_a_resident_s_view_has_no_internal_notes_and_a_merged_ticket_shows_the_master_s_status():
    master, duplicate = ticket(id="M1"), ticket(id="D1")
    master.dispatch({"kind": "worker", "id": "w3"}, at(1), SECRETARY)
    dumped = {"state": "closed_not_fixed", "status": "closed", "suggested_owner": "w3",
              "comments": [{"text": "内部", "visibility": "internal"}, {"text": "公开", "visibility": "resident"}],
              "timeline": [{"type": "ticket.commented", "visibility": "internal"}, {"type": "ticket.bounced"},
                           {"type": "ticket.received"}]}
    seen = view(dumped, duplicate, {"subject": "r1", "role": "resident", "grids": [], "teams": []}, master)
    assert (seen["state"], seen["status"], seen["own_state"]) == ("dispatched", "open", "closed_not_fixed")
    assert [comment["text"] for comment in seen["comments"]] == ["公开"]
    assert [entry["type"] for entry in seen["timeline"]] == ["ticket.received"]
    assert "suggested_owner" not in seen and seen["allowed_actions"] == []

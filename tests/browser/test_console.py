"""The console in a real Chromium: the echo loop as its people live it, and the pages' accessibility.

A resident on a 360×740 phone reports a matter; grid g1's worker dispatches, accepts, starts and resolves
it at a desk; the resident sees the echoes on the ticket's timeline and in the inbox, and answers the
callback; the secretary sees it in the three rates and on the board as confirmed. axe-core then finds no
serious or critical violation on any main page. The tests run in file order and share the platform.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.browser.conftest import DESKTOP, PHONE, Console

WORKER_G1 = "p-f9043c2a2fbc"  # services/directory/data/demo_community.json
RESIDENT_01 = "p-719c962237dd"
SERIOUS = ("serious", "critical")
FOUND: dict[str, str] = {}  # what one test hands the next: the ticket's number


def serious(console: Console) -> list[dict]:
    return [violation for violation in console.axe() if violation["impact"] in SERIOUS]


def test_the_sign_in_page_is_chinese_by_default_with_english_and_large_text(open_console):
    console = open_console(*PHONE)
    console.open()
    console.wait_for("#signin-form")
    assert console.driver.execute_script("return document.documentElement.lang") == "zh-CN"
    assert console.find("#signin-form h1").text == "登录"
    assert console.find("label[for=phone]").text == "手机号"  # every control has its label
    assert [b.text for b in console.all("#controls button")] == ["English", "大字模式"]  # no sign-out before sign-in
    assert not serious(console)
    console.shot("signin")

    normal = console.driver.execute_script("return parseFloat(getComputedStyle(document.body).fontSize)")
    console.click("#toggle-large")
    large = console.driver.execute_script("return parseFloat(getComputedStyle(document.body).fontSize)")
    assert large >= normal * 1.3, (normal, large)
    assert console.find("#toggle-large").get_attribute("aria-pressed") == "true"
    console.click("#toggle-lang")
    console.until(lambda d: d.find_element(By.CSS_SELECTOR, "#signin-form h1").text == "Sign in", "English")
    assert console.driver.execute_script("return document.documentElement.lang") == "en"
    assert console.find("label[for=code]").text == "SMS code"
    assert not serious(console)
    console.shot("signin-en-large")

    # The keyboard alone reaches the form: the skip link first, then on into the page.
    console.driver.refresh()
    console.wait_for("#signin-form")
    console.find("body").send_keys(Keys.TAB)
    assert console.driver.switch_to.active_element.get_attribute("id") == "skip"


def test_a_resident_reports_a_matter_from_a_phone(resident):
    resident.go("#/r/new")
    resident.wait_for("#request-form")
    width = resident.driver.execute_script("return document.documentElement.clientWidth")
    assert width == PHONE[0]
    resident.choose("#service", "roof_leak")
    # the category's questions (its Open311 attributes), asked in their order, each with its label
    resident.wait_for("#questions")
    assert resident.texts("#questions label")[:2] == ["漏水发生在几楼？", "现在还在漏水吗？"]
    resident.type("#description", "顶楼漏雨，卧室天花板在滴水")
    assert resident.find("#building").get_attribute("value") == "b01"  # her own building, from her record
    resident.type("#address", "1单元101")
    resident.click("#submit-request")  # the floor is required: the browser holds the form back and says so
    assert resident.driver.execute_script("return document.getElementById('attr-floor').validity.valueMissing")
    assert not resident.find("#flash").text
    resident.type("#attr-floor", "6")
    resident.choose("#attr-still_leaking", "yes")
    resident.click("#attr-leak_spots-ceiling")
    resident.shot("resident-new-request")
    assert not serious(resident)
    resident.click("#submit-request")
    message = resident.flash()
    number = re.search(r"XQ-\d{8}-\d{4,}", message)
    assert number, message
    FOUND["number"] = number.group(0)
    # Nothing is wider than the phone: no sideways scrolling on a 360-px screen.
    assert resident.driver.execute_script("return document.documentElement.scrollWidth") <= PHONE[0]

    resident.go("#/r/mine")
    link = resident.wait_for(f'a.ticket-link[data-number="{FOUND["number"]}"]')
    assert "已受理" in link.text
    # the answers travel with the report as the category's attributes, shown on the ticket's page
    resident.click(f'a.ticket-link[data-number="{FOUND["number"]}"]')
    resident.wait_for("#answers")
    assert resident.texts("#answers dd")[:2] == ["6", "还在漏"]


def _act(worker: Console, action: str, state: str, fill: dict[str, str] | None = None) -> None:
    worker.wait_for(f'form[data-action="{action}"]')
    for css, text in (fill or {}).items():
        worker.type(css, text)
    worker.click(f"#do-{action}")
    worker.until(lambda d: d.find_element(By.ID, "ticket").get_attribute("data-state") == state, f"{action}→{state}")


def test_the_grid_worker_dispatches_and_resolves_it_on_the_board(worker):
    number = FOUND["number"]
    worker.go("#/s/board")
    card = worker.wait_for(f'#board section[data-state="received"] li[data-number="{number}"]')
    assert "due-" in card.get_attribute("class")  # a deadline countdown, coloured by how near it is
    assert re.search(r"剩余|已超时", card.text), card.text
    worker.click(f'#board li[data-number="{number}"] a.ticket-link')
    worker.wait_for("#ticket")
    assert worker.find("#ticket").get_attribute("data-state") == "received"
    # the suggested owner (routing from the resident's building) is offered first
    assert worker.find("#dispatch-id").get_attribute("value") == WORKER_G1
    worker.choose("#dispatch-kind", "worker")
    _act(worker, "dispatch", "dispatched")
    _act(worker, "accept", "accepted")
    worker.type("#comment-text", "明天上午上门查看")
    worker.choose("#comment-visibility", "resident")
    worker.click("#do-comment")
    worker.until(lambda d: "明天上午上门查看" in d.find_element(By.ID, "ticket").text, "the comment")
    _act(worker, "start", "in_progress")
    worker.shot("staff-ticket")
    _act(worker, "resolve", "resolved", {"#resolve-summary": "重做了屋面防水层"})
    timeline = [item.get_attribute("data-type") for item in worker.all("#timeline li")]
    changes = [kind for kind in timeline if kind.startswith("ticket.") and kind != "ticket.commented"]
    assert changes == ["ticket.received", "ticket.dispatched", "ticket.accepted", "ticket.started",
                       "ticket.resolved"], timeline
    # the echoes and their delivery: the resident heard of the report long before it was resolved
    rows = worker.texts("#echoes tbody tr")
    assert any("已受理" in row and "反映人" in row and "已送达" in row for row in rows), rows


def test_the_resident_sees_the_echoes_and_answers_the_callback(resident):
    number = FOUND["number"]
    resident.go("#/r/mine")
    resident.click(f'a.ticket-link[data-number="{number}"]')
    resident.wait_for("#ticket")

    def echoed(driver) -> bool:  # the echoes arrive through notify: reload the ticket until they are there
        echoes = driver.find_elements(By.CSS_SELECTOR, "#timeline li.echo")
        if echoes and driver.find_elements(By.ID, "callback-form"):
            return True
        driver.refresh()
        return False
    resident.until(echoed, "echoes on the timeline and the callback form")
    told = resident.texts("#timeline li.echo")
    assert any("已告知您" in text and "已办结" in text for text in told), told
    assert "明天上午上门查看" in resident.find("#ticket").text  # the comment meant for her
    resident.shot("resident-ticket")
    resident.click("#outcome-fixed")
    resident.click("#satisfaction-satisfied")
    resident.click("#send-callback")
    resident.until(lambda d: d.find_element(By.ID, "ticket").get_attribute("data-state") == "confirmed", "confirmed")
    assert "已确认解决" in resident.find("#ticket").text

    resident.go("#/r/inbox")
    resident.wait_for("#inbox")
    resident.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#inbox li[data-event="ticket.confirmed"]'),
                   "the confirmation in the inbox")
    bodies = resident.texts("#inbox li")
    assert sum(number in body for body in bodies) >= 4, bodies  # received, dispatched, …, confirmed
    resident.shot("resident-inbox")
    unread = len(resident.all("#inbox li.unread button"))
    assert unread >= 4
    resident.click("#inbox li.unread button")
    resident.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#inbox li.unread button")) == unread - 1,
                   "one message marked read")
    resident.go("#/r/inbox")
    assert len(resident.all("#inbox li.unread button")) == unread - 1  # the server kept it


def test_the_secretary_sees_it_in_the_rates_and_confirmed_on_the_board(secretary):
    number = FOUND["number"]
    secretary.go("#/s/reports")
    secretary.wait_for("#rates")
    satisfaction = secretary.find('#rates [data-rate="satisfaction_rate"]').text
    resolution = secretary.find('#rates [data-rate="resolution_rate"]').text
    assert "100%" in satisfaction and "1 / 1" in satisfaction, satisfaction
    assert "1 / 1" in resolution, resolution
    assert not secretary.all("#report-rates.unavailable")
    secretary.wait_for("#report-daily")
    secretary.shot("staff-reports")

    secretary.go("#/s/board")
    secretary.wait_for(f'#board section[data-state="confirmed"] li[data-number="{number}"]')
    # the filters narrow the board: another grid's tickets only, so this one is gone
    secretary.choose("#f-grid", "g2")
    secretary.click("#filters button[type=submit]")
    secretary.until(lambda d: not d.find_elements(By.CSS_SELECTOR, f'li[data-number="{number}"]')
                    and d.find_elements(By.ID, "board"), "the g2 board")
    secretary.choose("#f-grid", "")
    secretary.click("#filters button[type=submit]")
    secretary.wait_for(f'li[data-number="{number}"]')


def test_the_other_actions_take_their_reasons_from_the_forms(worker, running_platform):
    """Bounce, pause and resume, merge: each form sends what the lifecycle needs, the page follows the state."""
    gateway = running_platform.gateway
    resident_token = running_platform.token("resident", "p-09ae3202c08c")  # 张淑珍, building b03 in grid g1
    made = []
    for text in ("3号楼电梯异响", "3号楼电梯有异响，坐着害怕"):
        answer = requests.post(f"{gateway}/api/v1/tickets", timeout=10, headers=resident_token, json={
            "service_code": "blocked_drain", "description": text, "building": "b03", "address_string": "3号楼",
            "attributes": {"overflowing": "no"}})
        assert answer.status_code == 201, answer.text
        made.append(answer.json())
    first, second = made

    worker.go(f"#/s/ticket/{first['id']}")
    _act(worker, "dispatch", "dispatched")
    _act(worker, "bounce", "received", {"#bounce-reason": "电梯归物业维保，需社区协调"})
    assert "电梯归物业维保" in worker.find("#timeline").text  # the reason is on the record, for staff
    _act(worker, "dispatch", "dispatched")
    _act(worker, "accept", "accepted")
    _act(worker, "start", "in_progress")
    _act(worker, "pause", "paused", {"#pause-reason": "等电梯厂家配件"})
    _act(worker, "resume", "in_progress")

    worker.go(f"#/s/ticket/{second['id']}")
    worker.wait_for('form[data-action="merge"]')
    worker.type("#merge-into", first["number"])
    worker.click("#do-merge")
    # a duplicate follows its master from now on: the page says which, and links to it
    link = worker.wait_for("#merged-into a")
    assert link.get_attribute("href").endswith(f"#/s/ticket/{first['id']}")
    assert worker.find("#ticket").get_attribute("data-state") == "in_progress"  # the master's state
    merged = requests.get(f"{gateway}/api/v1/tickets/{second['id']}", headers=resident_token, timeout=10).json()
    assert merged["merged_into"] == first["id"], merged


def test_ops_see_health_queues_dead_letters_outbox_lag_silent_tickets_and_latency(ops):
    ops.go("#/o/ops")
    health = ops.wait_for("#ops-health")
    assert "200 ok" in health.text and "200 ready" in health.text, health.text
    assert "数量" in ops.find("#ops-silent").text
    assert "站内信" in ops.find("#ops-latency").text  # the echoes so far went to the inbox
    for panel in ("#ops-queues", "#ops-dlq", "#ops-outbox"):  # GET /api/v1/ops/overview answers all three
        assert "不可用" not in ops.find(panel).text, ops.find(panel).text
    queues = {row.get_attribute("data-queue") for row in ops.all("#queues tbody tr")}
    assert "huisheng.notify.ticket_events" in queues, queues
    dead = ops.texts('#queues tbody tr[data-queue="huisheng.notify.ticket_events"] td:nth-child(6)')
    assert dead == ["0"], dead  # its dead letters beside it
    consumers = ops.texts('#queues tbody tr[data-kind="consumer"] td:nth-child(5)')
    assert consumers and all(int(n) >= 1 for n in consumers), consumers  # every service is up: each queue consumed
    assert ops.find("#dlq-total").text == "数量: 0"
    services = {row.get_attribute("data-service") for row in ops.all("#outboxes tbody tr")}
    assert {"tickets", "notify"} <= services, services
    assert not serious(ops)
    ops.shot("ops")


def test_a_resident_exports_their_data_and_asks_for_erasure(open_console):
    console = open_console(*PHONE)
    console.sign_in("13800002002")  # 李桂兰 (resident-02): erased at the end, so no other test uses her
    console.go("#/r/data")
    assert console.wait_for("#me-name").text == "李桂兰"
    console.shot("resident-data")
    console.click("#export")
    assert console.flash() == "已导出"
    deadline = time.monotonic() + 10
    while not (files := [p for p in console.downloads.glob("*.json")]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert files, "no export was downloaded"
    exported = json.loads(files[0].read_text("utf-8"))
    assert exported["person"]["name"] == "李桂兰" and "tickets" in exported and "inbox" in exported
    assert console.find("#erase").get_attribute("disabled") is not None  # not without saying so first
    console.click("#erase-confirm")
    console.click("#erase")
    console.wait_for("#signin-form")
    assert console.flash() == "您的个人信息已删除"


def test_the_board_shows_tickets_by_state_with_their_countdowns(secretary, running_platform):
    """More tickets, in other grids and states: the secretary's board holds them all, each with its clock."""
    gateway = running_platform.gateway
    made = []
    for subject, building, text in (("p-883f48d188e6", "b05", "5号楼门口路灯不亮"),
                                    ("p-cc311b9774da", "b09", "9号楼楼道堆放杂物，有消防隐患"),
                                    ("p-742502eab0b2", "b10", "10号楼下水道反水")):
        answer = requests.post(f"{gateway}/api/v1/tickets", timeout=10, headers=running_platform.token(
            "resident", subject), json={"service_code": "blocked_drain", "description": text, "building": building,
                                        "address_string": f"{building} 1单元", "attributes": {"overflowing": "yes"}})
        assert answer.status_code == 201, answer.text
        made.append(answer.json())
    first = made[0]
    dispatched = requests.post(f"{gateway}/api/v1/tickets/{first['id']}/actions/dispatch", timeout=10,
                               json={"kind": "team", "id": "neighbour_help"},
                               headers={**running_platform.token("secretary", "p-60b58c2b932b"), "If-Match": '"1"'})
    assert dispatched.status_code == 200, dispatched.text

    secretary.go("#/s/board")
    secretary.wait_for(f'#board section[data-state="dispatched"] li[data-number="{first["number"]}"]')
    received = secretary.all('#board section[data-state="received"] li.ticket-card')
    assert {card.get_attribute("data-number") for card in received} >= {t["number"] for t in made[1:]}
    for card in secretary.all("#board li.ticket-card"):
        level = re.search(r"due-(ok|warn|breach|none)", card.get_attribute("class"))
        assert level, card.get_attribute("class")
    assert "志愿服务队 neighbour_help" in secretary.find(f'li[data-number="{first["number"]}"]').text
    secretary.shot("staff-board")


def test_the_countdown_warns_in_the_last_quarter_and_turns_red_past_the_deadline(secretary):
    """The board's clock (console/js/staff.js ``countdown``), run in the page with times a live ticket cannot have."""
    levels = secretary.driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        import('/console/js/staff.js').then(({countdown}) => {
          const now = Date.parse('2026-12-07T08:00:00Z');
          const ticket = (created, due, state = 'dispatched') =>
            ({created_at: created, due_at: due, state, status: 'open'});
          done([
            countdown(ticket('2026-12-07T00:00:00Z', '2026-12-07T16:00:00Z'), now),   // half the time left
            countdown(ticket('2026-12-07T00:00:00Z', '2026-12-07T10:00:00Z'), now),   // a fifth left
            countdown(ticket('2026-12-06T00:00:00Z', '2026-12-07T06:30:00Z'), now),   // 90 minutes late
            countdown(ticket('2026-12-06T00:00:00Z', '2026-12-07T06:30:00Z', 'resolved'), now),  // no longer runs
          ]);
        }).catch((error) => done(String(error)));""")
    assert [level["level"] for level in levels] == ["ok", "warn", "breach", "none"], levels
    assert levels[0]["text"] == "剩余 8 小时 0 分"
    assert levels[2]["text"] == "已超时 1 小时 30 分"


@pytest.mark.parametrize("who, routes", [
    ("resident", ["#/r/new", "#/r/mine", "#/r/inbox", "#/r/wishes", "#/r/data"]),
    ("worker", ["#/s/board", "#/s/reports", "#/s/daily", "#/s/weekly", "#/s/volunteers"]),
    ("secretary", ["#/s/reports", "#/s/board", "#/s/daily", "#/s/weekly", "#/s/volunteers", "#/s/broadcasts",
                   "#/o/ops"]),
    ("ops", ["#/o/ops"]),
])
def test_axe_finds_no_serious_violation_on_the_main_pages(who, routes, request):
    console: Console = request.getfixturevalue(who)
    problems = {}
    for route in routes:
        console.go(route)
        found = serious(console)
        if found:
            problems[route] = found
    if who == "worker":  # and a ticket with its action forms
        console.go("#/s/board")
        console.click("a.ticket-link")
        console.wait_for("#ticket")
        console.settled()
        problems.update({"ticket": found} if (found := serious(console)) else {})
    assert not problems, json.dumps(problems, ensure_ascii=False, indent=1)


def test_the_pages_fit_a_phone(worker):
    """The staff's pages too: a grid worker on a round checks the board from a phone."""
    worker.size(*PHONE)
    try:
        for route in ("#/s/board", "#/s/reports", "#/s/daily", "#/s/weekly", "#/s/volunteers"):
            worker.go(route)
            assert worker.driver.execute_script("return document.documentElement.scrollWidth") <= PHONE[0], route
        worker.go("#/s/board")
        worker.shot("staff-board-phone")
    finally:
        worker.size(*DESKTOP)


def test_no_page_had_a_script_error_or_a_refused_resource(resident, worker, secretary, ops):
    """Whatever the pages did in the tests above, the browsers logged no script error and no CSP refusal."""
    for console in (resident, worker, secretary, ops):
        assert not console.page_errors()

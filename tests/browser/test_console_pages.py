"""The console's other pages in a real Chromium: a resident's 微心愿 from a phone; the office dispatching to a
volunteer team with the ranked candidates, the daily clearance list and the weekly agenda, the three rates as
charts, the volunteers and a broadcast watched to the end; English on the new pages. Runs after test_console.py
(same platform, same browsers): the tickets made there fill the reports here."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
import requests
from selenium.webdriver.common.by import By

from services.tickets.calendar import SHANGHAI
from tests.browser.conftest import PHONE
from tests.browser.test_console import serious
from tests.support.images import tiny_png

RESIDENT_03 = "p-09ae3202c08c"  # 张淑珍, building b03 in grid g1 (services/directory/data/demo_community.json)
TEAM = "neighbour_help"
SECRETARY = "p-60b58c2b932b"
ALL_WEEK = [{"day": day, "start": "00:00", "end": "24:00"} for day in range(7)]


@pytest.fixture(scope="module")
def volunteers(running_platform) -> list[dict]:
    """Two volunteers of the 邻里互助 team in grid g1 (the demo community has none), registered by the office."""
    registered = []
    for name, phone, skills in (("赵志强", "13900003001", ["repairs", "plumbing"]),
                                ("钱秀兰", "13900003002", ["errands"])):
        answer = requests.post(f"{running_platform.gateway}/api/v1/volunteers", timeout=10,
                               headers=running_platform.token("secretary", SECRETARY),
                               json={"name": name, "phone": phone, "grid": "g1", "skills": skills, "teams": [TEAM],
                                     "availability": ALL_WEEK})
        assert answer.status_code in (200, 201), answer.text
        registered.append(answer.json())
    return registered


def test_a_resident_publishes_a_wish_from_a_phone(resident):
    resident.go("#/r/wishes")
    resident.wait_for("#wish-form")
    assert resident.find("label[for=wish-title]").text == "心愿"
    resident.type("#wish-title", "陪我去社区医院复查")
    resident.type("#wish-description", "周六上午，腿脚不方便")
    resident.choose("#wish-skill", resident.find("#wish-skill option:nth-child(2)").get_attribute("value"))
    resident.click("#publish-wish")
    resident.until(lambda d: "陪我去社区医院复查" in d.find_element(By.ID, "main").text
                   and d.find_elements(By.CSS_SELECTOR, "#my-wishes li"), "the wish in her list")
    wish = resident.find("#my-wishes li")
    assert wish.get_attribute("data-state") == "published" and "等待认领" in wish.text, wish.text
    assert resident.flash() == "微心愿已发布，志愿者会联系您"
    assert resident.driver.execute_script("return document.documentElement.scrollWidth") <= PHONE[0]
    assert not serious(resident)
    resident.shot("resident-wishes")


def test_the_office_dispatches_to_a_volunteer_team_and_sees_the_ranked_candidates(worker, running_platform,
                                                                                  volunteers):
    answer = requests.post(f"{running_platform.gateway}/api/v1/tickets", timeout=10,
                           headers=running_platform.token("resident", RESIDENT_03),
                           json={"service_code": "blocked_drain", "description": "3号楼下水道堵了，厨房反水",
                                 "building": "b03", "address_string": "3号楼2单元",
                                 "attributes": {"overflowing": "yes"}})
    assert answer.status_code == 201, answer.text
    ticket = answer.json()
    worker.go(f"#/s/ticket/{ticket['id']}")
    worker.wait_for('form[data-action="dispatch"]')
    worker.choose("#dispatch-kind", "team")
    worker.choose("#dispatch-id", TEAM)
    # before choosing: who in the team is free now (the preview follows each change of the form)
    worker.until(lambda d: "此刻有空 2 人" in d.find_element(By.ID, "team-preview").text, "the team's free volunteers")
    assert "赵志强" in worker.find("#team-preview").text
    worker.click("#do-dispatch")
    worker.until(lambda d: d.find_element(By.ID, "ticket").get_attribute("data-state") == "dispatched", "dispatched")

    def ranked(driver) -> bool:  # the volunteers service ranks them when it hears of the dispatch: reload till then
        if driver.find_elements(By.CSS_SELECTOR, "#candidates ol.ranked li"):
            return True
        worker.go(f"#/s/ticket/{ticket['id']}")
        return False
    worker.until(ranked, "the ranked candidates")
    reasons = worker.texts("#candidates ol.ranked li")
    assert reasons[0].startswith("赵志强") and "技能匹配" in reasons[0], reasons  # the plumber first, and why
    scores = [float(s) for s in re.findall(r"得分 ([\d.]+)", " ".join(reasons))]
    assert scores == sorted(scores, reverse=True), scores  # best first
    worker.shot("staff-ticket-team")


def test_the_rates_are_charts_with_their_trend_and_breakdowns(secretary):
    secretary.go("#/s/reports")
    secretary.wait_for("#rates")
    for chart in ("#chart-trend", "#chart-grid", "#chart-category"):
        svg = secretary.wait_for(chart)
        assert svg.get_attribute("role") == "img" and secretary.find(f"{chart} title").get_attribute("textContent")
    # the confirmed ticket of test_console.py: satisfied, so this week's satisfaction point is at 100%
    cells = secretary.driver.execute_script(
        "return [...document.querySelectorAll('#report-trend table tbody tr')].map(r => r.textContent)")
    assert any(row.startswith("满意率") and "100%" in row for row in cells), cells
    bars = secretary.all("#chart-grid rect.bar")
    assert len(bars) >= 3 and any(float(b.get_attribute("width")) > 0 for b in bars)
    assert not serious(secretary)
    secretary.shot("staff-reports")


def test_the_daily_clearance_list_and_the_weekly_agenda(secretary):
    secretary.go("#/s/daily")
    secretary.wait_for("#daily")
    assert secretary.find("#daily h1").text.startswith("日清")
    # tomorrow's clearance, chosen in the form: today's may be past (17:00 Asia/Shanghai), and a ticket received
    # after it is tomorrow's; tomorrow's list has every ticket still open now
    tomorrow = (datetime.now(SHANGHAI) + timedelta(days=1)).date().isoformat()
    secretary.driver.execute_script("document.getElementById('daily-date').value = arguments[0]", tomorrow)
    secretary.click("#daily-date-form button[type=submit]")
    secretary.until(lambda d: tomorrow in d.find_element(By.CSS_SELECTOR, "#daily h1").text, "tomorrow's 日清")
    listed = secretary.all("#uncleared li.ticket-line")  # the received tickets of the earlier tests are not cleared
    assert listed, secretary.find("#daily").text
    assert all(re.match(r"XQ-\d{8}-\d{4,}", li.get_attribute("data-number")) for li in listed)
    secretary.shot("staff-daily")

    secretary.go("#/s/weekly")
    secretary.wait_for("#weekly")
    for item in ("overdue", "reopened", "unsatisfied", "bounced_repeatedly", "callback_unanswered",
                 "repeat_problems", "coverage"):
        assert secretary.find(f"#agenda-{item} h2").text
    assert re.search(r"周议 \d{4}-W\d{2}", secretary.find("#weekly h1").text)
    secretary.shot("staff-weekly")


def test_the_volunteers_directory_hours_and_coverage_gaps(secretary, volunteers):
    secretary.go("#/s/volunteers")
    rows = secretary.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#volunteers tbody tr"), "the volunteers")
    assert len(rows) >= 2
    assert all("*" in text or "—" in text for text in secretary.texts("#volunteers tbody td:nth-child(2)"))  # masked
    secretary.click("#volunteers tbody tr td.hours button")
    secretary.until(lambda d: re.search(r"[\d.]+ 小时", d.find_element(By.CSS_SELECTOR, "#volunteers td.hours").text),
                    "the hours of one volunteer")
    assert secretary.find("#coverage h2").text.startswith("志愿服务缺口")
    secretary.shot("staff-volunteers")

    # by skill: everyone listed has it
    secretary.choose("#v-skill", secretary.find("#v-skill option:nth-child(2)").get_attribute("value"))
    label = secretary.find("#v-skill option:checked").text
    secretary.click("#v-filters button[type=submit]")
    secretary.settled()
    skills = secretary.texts("#volunteers tbody td:nth-child(4)")
    assert all(label in text for text in skills), (label, skills)
    secretary.choose("#v-skill", "")
    secretary.click("#v-filters button[type=submit]")
    secretary.settled()


def test_a_broadcast_is_composed_for_a_segment_and_watched_to_the_end(secretary):
    secretary.go("#/s/broadcasts")
    secretary.wait_for("#broadcast-form")
    secretary.type("#b-title", "停水通知")
    secretary.type("#b-body", "明天上午 9 点至 12 点，1 号楼停水检修，请提前储水。")
    secretary.choose("#b-grid", "g1")
    secretary.click("#b-flag-elderly")
    secretary.click("#send-broadcast")
    secretary.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#broadcasts li[data-status="done"]'),
                    "the broadcast done (the page polls its progress)")
    done = secretary.find('#broadcasts li[data-status="done"]')
    assert "停水通知" in done.text
    targeted = int(done.find_element(By.CSS_SELECTOR, "dd.b-targeted").text)
    delivered = int(done.find_element(By.CSS_SELECTOR, "dd.b-delivered").text)
    assert targeted >= 1 and delivered == targeted, (targeted, delivered)
    assert not serious(secretary)
    secretary.shot("staff-broadcasts")
    # The list is the community's (GET /api/v1/broadcasts), not this tab's: it is there after a reload.
    secretary.driver.execute_script("sessionStorage.removeItem('huisheng.broadcasts')")
    secretary.driver.refresh()
    secretary.until(lambda d: any("停水通知" in li.text for li in d.find_elements(By.CSS_SELECTOR, "#broadcasts li")),
                    "the broadcast listed again after a reload")


def test_english_on_the_new_pages(secretary):
    try:
        secretary.click("#toggle-lang")
        for route, heading in (("#/s/volunteers", "Volunteers"), ("#/s/broadcasts", "Broadcasts"),
                               ("#/s/reports", "Reports")):
            secretary.go(route)
            assert secretary.find("#main h1").text == heading, route
            shown = secretary.find("#main").text
            assert not re.search(r"\b(?:nav|b|w|rs|sk|q|o)_[a-z_]+\b", shown), route  # no untranslated key
        assert secretary.find("#chart-trend title").get_attribute("textContent").startswith("Response")
        assert secretary.find("#nav-daily").text == "Daily"
    finally:
        secretary.click("#toggle-lang")
        secretary.until(lambda d: d.find_element(By.ID, "toggle-lang").text == "English", "back to Chinese")


def test_no_new_page_had_a_script_error_or_a_refused_resource(resident, worker, secretary):
    for console in (resident, worker, secretary):
        assert not console.page_errors()


def test_a_resident_sends_a_photo_with_the_category_s_answers_and_sees_them_in_the_ticket(resident, tmp_path):
    picture = tmp_path / "漏水.png"
    picture.write_bytes(tiny_png(24, 16))  # a real PNG from a temp file, as a phone's file chooser hands it over
    resident.go("#/r/new")
    resident.wait_for("#request-form")
    photo = resident.find("#photo")
    assert (photo.get_attribute("accept"), photo.get_attribute("capture")) == ("image/*", "environment")
    assert resident.find("label[for=photo]").text.startswith("照片")
    resident.choose("#service", "roof_leak")
    resident.wait_for("#attr-floor")
    resident.type("#description", "阳台顶上渗水，墙皮起泡")
    resident.type("#address", "1单元101")
    resident.type("#attr-floor", "5")
    resident.choose("#attr-still_leaking", "rain_only")
    resident.click("#attr-leak_spots-wall")
    photo.send_keys(str(picture))
    resident.driver.execute_script("document.getElementById('flash').textContent = ''")
    resident.click("#submit-request")
    number = resident.until(lambda d: re.search(r"XQ-\d{8}-\d{4,}", d.find_element(By.ID, "flash").text),
                            "the new ticket's number").group(0)

    resident.go("#/r/mine")
    resident.click(f'a.ticket-link[data-number="{number}"]')
    resident.wait_for("#ticket")
    # the answers are the ticket's own, under the questions' wording (not pasted into the description)
    assert "补充信息" not in resident.find("#ticket").text
    assert resident.texts("#answers dt") == ["漏水发生在几楼？", "现在还在漏水吗？", "漏水的位置（可多选）"]
    assert resident.texts("#answers dd") == ["5", "下雨时漏", "墙面"]
    # the photo, fetched with her session and shown with its alt text, as wide as the PNG is
    resident.until(lambda d: d.execute_script(
        "const img = document.querySelector('#photos img.photo'); return img && img.complete && img.naturalWidth"),
        "the photo loaded")
    image = resident.find("#photos img.photo")
    assert image.get_attribute("alt") == "现场照片 1"
    assert resident.driver.execute_script("return document.querySelector('#photos img.photo').naturalWidth") == 24
    assert resident.driver.execute_script("return document.documentElement.scrollWidth") <= PHONE[0]
    assert not serious(resident)
    assert not resident.page_errors()
    resident.shot("resident-ticket-photo")

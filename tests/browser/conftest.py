"""The web console in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by Selenium).

This folder is a pytest process of its own (``make test-browser``; the main run does not collect it: see
``norecursedirs`` in pyproject.toml). It starts one platform like tests/e2e (``huisheng up -d`` on free
ports) and one browser per role, each signed in through the console's own page with the SMS code the
stand-in received. A missing browser or driver FAILS the run (``.ci/run`` installs them): a console that
no test opened is not a tested console.

``HUISHENG_SCREENSHOTS=DIR`` keeps the pages' screenshots in DIR (``make screenshots``: docs/screenshots);
otherwise they go to the run's temporary folder, so the same code runs every time.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.e2e import conftest as e2e
from tests.e2e.conftest import RunningPlatform

ROOT = Path(__file__).resolve().parents[2]
FAILURES = ROOT / "var" / "browser-failures"  # what the page looked like when a wait timed out
AXE = Path(__file__).with_name("support") / "axe.min.js"
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage")
PHONE = (360, 740)
DESKTOP = (1280, 900)
WAIT = 20.0
DEMO_PASSWORD = "huisheng-demo"  # services/directory/data/demo_community.json

running_platform = e2e.running_platform  # the platform fixture of tests/e2e: `huisheng up -d` once per session


def executable(names: tuple[str, ...], package: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(f"{' or '.join(names)} is not installed: `apt-get install chromium chromium-driver` "
                f"(.ci/run does; the browser tests fail rather than skip without {package})", pytrace=False)


class Console:
    """One browser window on the console, as one person uses it."""

    def __init__(self, driver: WebDriver, platform: RunningPlatform, shots: Path) -> None:
        self.driver, self.platform, self.shots = driver, platform, shots

    # --- navigation and waiting ---------------------------------------------------------------------------
    def open(self, route: str = "") -> None:
        self.driver.get(f"{self.platform.gateway}/console{route}")
        self.wait_for("#main")

    def go(self, route: str) -> None:
        """A hash route of the app (``#/r/mine``), loaded afresh."""
        # forget the page shown, so that waiting cannot mistake it for the new one; the same hash again re-renders
        self.driver.execute_script(
            "document.getElementById('main').dataset.page = '';"
            "if (location.hash === arguments[0]) window.dispatchEvent(new HashChangeEvent('hashchange'));"
            "else location.hash = arguments[0];", route)
        self.settled(route)

    def settled(self, route: str | None = None) -> None:
        """Until the page for ``route`` (or the current one) has rendered (the app marks it on ``#main``)."""
        def done(driver: WebDriver) -> bool:
            main = driver.find_element(By.ID, "main")
            page = main.get_attribute("data-page") or ""
            loading = main.find_elements(By.CSS_SELECTOR, ":scope > p.muted")
            wanted = "/".join(route.split("/")[:3]) if route else page
            return bool(page) and page == wanted and not loading
        self.until(done, f"page {route}")

    def until(self, condition: Callable[[WebDriver], object], what: str, timeout: float = WAIT):
        try:
            # a page that re-renders replaces its elements: look again rather than fail on a stale one
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1,
                                 ignored_exceptions=(StaleElementReferenceException,)).until(condition)
        except TimeoutException:
            self.shot(f"timeout-{re.sub(r'[^A-Za-z0-9_-]+', '_', what)[:40]}", FAILURES)
            raise AssertionError(f"waited {timeout}s for {what}; the page says: "
                                 f"{self.driver.find_element(By.TAG_NAME, 'body').text[:1500]}") from None

    def wait_for(self, css: str, timeout: float = WAIT) -> WebElement:
        return self.until(ec.visibility_of_element_located((By.CSS_SELECTOR, css)), css, timeout)

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def type(self, css: str, text: str) -> None:
        element = self.wait_for(css)
        element.clear()
        element.send_keys(text)

    def choose(self, css: str, value: str) -> None:
        Select(self.wait_for(css)).select_by_value(value)

    def click(self, css: str) -> None:
        def clicked(driver: WebDriver) -> bool:
            element = driver.find_element(By.CSS_SELECTOR, css)
            if not (element.is_displayed() and element.is_enabled()):
                return False
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
            element.click()
            return True
        self.until(clicked, f"{css} clicked")

    def texts(self, css: str) -> list[str]:
        """The text of every element ``css`` selects, read in one go (no element can go stale between)."""
        return self.driver.execute_script(
            "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText)", css)

    def page_errors(self) -> list[str]:
        """The page's script errors and CSP refusals since the last look (an API's 4xx is not one)."""
        return [entry["message"] for entry in self.driver.get_log("browser")
                if entry["level"] == "SEVERE" and "Failed to load resource" not in entry["message"]]

    def flash(self) -> str:
        return self.until(lambda d: d.find_element(By.ID, "flash").text.strip(), "a message in #flash")

    # --- people -------------------------------------------------------------------------------------------
    def sign_in(self, phone: str, password: str | None = None) -> None:
        """The console's own sign-in: ask for a code, read it from the SMS stand-in's journal, sign in."""
        self.open("#/signin")
        self.wait_for("#signin-form")
        before = len(self.platform.sent_sms(phone))
        self.type("#phone", phone)
        self.click("#send-code")
        deadline = time.monotonic() + WAIT
        while len(sent := self.platform.sent_sms(phone)) <= before:
            assert time.monotonic() < deadline, f"no SMS code reached {phone[:3]}****"
            time.sleep(0.1)
        self.type("#code", sent[-1]["template_param"]["code"])
        if password:
            self.type("#password", password)
        self.click("#signin")
        self.until(lambda d: "#/signin" not in d.current_url and d.find_element(By.ID, "main")
                   .get_attribute("data-page") not in (None, "", "#/signin"), f"signed in as {phone[:3]}****")
        self.settled()

    # --- checks -------------------------------------------------------------------------------------------
    def axe(self) -> list[dict]:
        """axe-core's violations of the current page (all rules of WCAG 2.x A/AA and best practice)."""
        if not self.driver.execute_script("return typeof window.axe === 'object'"):
            self.driver.execute_script(AXE.read_text("utf-8"))
        return self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations.map(v => ({"
            "id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))))"
            ".catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));")

    def shot(self, name: str, folder: Path | None = None) -> Path:
        """A screenshot of the whole page (as tall as its content)."""
        folder = folder or self.shots
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.png"
        width, height = self.driver.execute_script(
            "return [document.documentElement.clientWidth, Math.max(document.body.scrollHeight, innerHeight)]")
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": min(int(height), 4000), "deviceScaleFactor": 1, "mobile": width <= 480})
        try:
            self.driver.save_screenshot(str(path))
        finally:
            self.size(width, self.viewport_height)
        return path

    def size(self, width: int, height: int) -> None:
        """The viewport, exactly (a phone's, with touch, or a desktop's)."""
        self.viewport_height = height
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width <= 480})
        self.driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": width <= 480})


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """The browser and its driver, from the OS (no test tool downloads a browser here)."""
    return (executable(("chromium", "chromium-browser"), "chromium"),
            executable(("chromedriver", "chromium-driver"), "chromium-driver"))


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    chosen = os.environ.get("HUISHENG_SCREENSHOTS")
    return (ROOT / chosen if not Path(chosen).is_absolute() else Path(chosen)) if chosen \
        else tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="session")
def open_console(chromium, running_platform, screenshots, tmp_path_factory) -> Iterator[Callable[..., Console]]:
    """Opens a fresh browser (its own profile) on the console: ``open_console(width, height)``."""
    browser, driver_path = chromium
    drivers: list[WebDriver] = []

    def start(width: int, height: int, language: str = "zh-CN") -> Console:
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for argument in CHROMIUM_ARGS:
            options.add_argument(argument)
        profile = tmp_path_factory.mktemp("chromium-profile")
        downloads = tmp_path_factory.mktemp("downloads")
        options.add_argument(f"--user-data-dir={profile}")
        options.add_argument(f"--window-size={max(width, 500)},{height}")
        options.add_argument(f"--lang={language}")
        options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                                  "download.prompt_for_download": False,
                                                  "intl.accept_languages": language})
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page's console: errors, CSP refusals
        driver = webdriver.Chrome(service=Service(driver_path, log_output=str(profile / "chromedriver.log")),
                                  options=options)
        drivers.append(driver)
        driver.set_script_timeout(30)
        driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
        console = Console(driver, running_platform, screenshots)
        console.downloads = downloads
        console.size(width, height)
        return console

    yield start
    for driver in drivers:
        driver.quit()


@pytest.fixture(scope="session")
def resident(open_console) -> Console:
    """王秀英 (resident-01, building b01 in grid g1), on a phone."""
    console = open_console(*PHONE)
    console.sign_in("13800002001")
    return console


@pytest.fixture(scope="session")
def worker(open_console) -> Console:
    """张伟, grid g1's worker, at a desk."""
    console = open_console(*DESKTOP)
    console.sign_in("13800001001", DEMO_PASSWORD)
    return console


@pytest.fixture(scope="session")
def secretary(open_console) -> Console:
    """刘丽丽, the community's secretary."""
    console = open_console(*DESKTOP)
    console.sign_in("13800001000", DEMO_PASSWORD)
    return console


@pytest.fixture(scope="session")
def ops(open_console) -> Console:
    """孙浩, who runs the machines."""
    console = open_console(*DESKTOP)
    console.sign_in("13800001010", DEMO_PASSWORD)
    return console

"""The dashboard in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, ``make chromium``) driven by Selenium, against a real ``lmgate serve``
that served real traffic (``ui_server.py``). Logs in, checks the numbers shown equal the
store's, draws the charts, clicks filter → detail, watches the live tail, logs a key holder in
(own calls only), logs out. Screenshots go to a temp dir, or to ``$LMGATE_SCREENSHOTS``
(``make screenshots`` writes docs/img/, which docs/ui.md shows)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ui_server import MASTER, UiTraffic, chat, start

pytest.importorskip("sqlalchemy")
pytest.importorskip("jinja2")
webdriver = pytest.importorskip("selenium.webdriver")

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from lmgate.store import Filters, Page  # noqa: E402
from lmgate.ui.pages import count, milliseconds, money, percent  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="needs Debian's chromium and chromium-driver: make chromium",
)
WAIT_S = 20  # an upper bound for WebDriverWait's polling, never a sleep


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiTraffic]:
    yield from start(tmp_path_factory.mktemp("ui-browser"))


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1000",
        "--force-device-scale-factor=1",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def shots() -> Path:
    target = os.environ.get("LMGATE_SCREENSHOTS")
    path = Path(target) if target else Path(tempfile.mkdtemp(prefix="lmgate-ui-shots-"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def text(driver: Any, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def wait_for(driver: Any, condition: Any) -> Any:
    return WebDriverWait(driver, WAIT_S, poll_frequency=0.05).until(condition)


def log_in(driver: Any, url: str, key: str) -> None:
    driver.delete_all_cookies()
    driver.get(f"{url}/ui")
    wait_for(driver, lambda d: "/ui/login" in d.current_url)
    driver.find_element(By.ID, "key").send_keys(key)
    driver.find_element(By.ID, "login").click()
    wait_for(driver, lambda d: "/ui/login" not in d.current_url)


def test_admin_overview_shows_the_stores_numbers_and_draws_charts(
    browser: Any, traffic: UiTraffic, shots: Path
) -> None:
    log_in(browser, traffic.url, MASTER)
    browser.get(f"{traffic.url}/ui/overview?range=24h")
    store = traffic.store()
    try:
        totals = store.totals(Filters(since=0))
        models = {g["group"]: g for g in store.stats("model")}
    finally:
        store.close()
    assert text(browser, "t-requests") == count(totals["requests"]) == str(traffic.total)
    assert text(browser, "t-cost") == money(totals["cost"])
    assert text(browser, "t-error-rate") == percent(totals["error_rate"])
    assert text(browser, "t-p50") == milliseconds(totals["p50_ms"])
    assert text(browser, "t-p95") == milliseconds(totals["p95_ms"])
    assert text(browser, "viewer") == "admin"
    for chart in ("chart-spend", "chart-requests", "chart-latency", "chart-tokens"):
        element = wait_for(
            browser, lambda d, c=chart: d.find_element(By.ID, c).get_attribute("data-drawn") == "1"
        )
        assert element
        assert browser.find_element(By.ID, chart).find_elements(By.TAG_NAME, "canvas")
    rows = browser.find_elements(By.CSS_SELECTOR, "#breakdown tbody tr")
    shown = {
        r.find_elements(By.TAG_NAME, "td")[0].text: r.find_elements(By.TAG_NAME, "td")[1].text for r in rows
    }
    assert shown == {name: str(g["requests"]) for name, g in models.items()}
    browser.save_screenshot(str(shots / "overview.png"))
    errors = [
        e for e in browser.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]
    ]
    assert errors == []


def test_filter_then_detail(browser: Any, traffic: UiTraffic, shots: Path) -> None:
    log_in(browser, traffic.url, MASTER)
    browser.get(f"{traffic.url}/ui/logs")
    browser.find_element(By.ID, "f-model").send_keys("claude-3-5-haiku")
    browser.find_element(By.ID, "f-apply").click()
    wait_for(browser, lambda d: "model=claude-3-5-haiku" in d.current_url)
    store = traffic.store()
    try:
        expected = store.query(Filters(model="claude-3-5-haiku"), Page(limit=100))
    finally:
        store.close()
    rows = browser.find_elements(By.CSS_SELECTOR, "#logs tbody tr")
    assert [r.get_attribute("data-id") for r in rows] == [e["call_id"] for e in expected]
    browser.get(f"{traffic.url}/ui/logs")
    browser.save_screenshot(str(shots / "logs.png"))
    browser.back()
    wait_for(browser, lambda d: "model=claude" in d.current_url)
    browser.find_elements(By.CSS_SELECTOR, "#logs a.detail")[0].click()
    wait_for(browser, lambda d: "/ui/logs/" in d.current_url)
    first = expected[0]
    assert text(browser, "call-id") == first["call_id"]
    assert text(browser, "c-model") == first["model"]
    assert text(browser, "c-cost") == money(first["cost"])
    assert "question" in text(browser, "c-messages")
    assert text(browser, "c-answer") == "Hello from a mock Claude"
    browser.save_screenshot(str(shots / "call.png"))


def test_live_tail_shows_a_new_call(browser: Any, traffic: UiTraffic) -> None:
    log_in(browser, traffic.url, MASTER)
    browser.get(f"{traffic.url}/ui/logs?user=live-watcher")
    assert browser.find_elements(By.ID, "empty")  # nothing yet: the empty state says what to do
    browser.find_element(By.ID, "live").click()
    chat(traffic.url, MASTER, "gpt-4o-mini", "a call to watch arrive", user="live-watcher")
    traffic.total += 1
    row = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#logs tbody tr.new"))
    assert "gpt-4o-mini" in row[0].text
    assert not browser.find_elements(By.ID, "empty")


def test_spend_and_health_pages(browser: Any, traffic: UiTraffic, shots: Path) -> None:
    log_in(browser, traffic.url, MASTER)  # on its own too: run alone, no earlier test logged in
    browser.get(f"{traffic.url}/ui/spend?range=24h")
    assert text(browser, "s-requests") == str(traffic.total)
    assert browser.find_elements(By.CSS_SELECTOR, "#budgets tbody tr")
    browser.save_screenshot(str(shots / "spend.png"))
    browser.get(f"{traffic.url}/ui/health")
    cells = browser.find_element(By.CSS_SELECTOR, "#health tbody tr").find_elements(By.TAG_NAME, "td")
    assert cells[0].text == "store" and cells[1].text == "healthy"
    assert int(cells[2].text.replace(",", "")) == traffic.total  # delivered
    browser.save_screenshot(str(shots / "health.png"))


def test_logout_then_a_key_holder_sees_only_their_calls(
    browser: Any, traffic: UiTraffic, shots: Path
) -> None:
    log_in(browser, traffic.url, MASTER)
    browser.get(f"{traffic.url}/ui/overview")
    browser.find_element(By.ID, "logout").click()
    wait_for(browser, lambda d: "/ui/login" in d.current_url)
    browser.get(f"{traffic.url}/ui/overview")
    wait_for(browser, lambda d: "/ui/login" in d.current_url)  # the session is gone
    browser.save_screenshot(str(shots / "login.png"))
    log_in(browser, traffic.url, traffic.keys["alice"])
    assert text(browser, "viewer") == "key alice"
    browser.get(f"{traffic.url}/ui/overview?range=24h")
    assert text(browser, "t-requests") == str(traffic.sent["alice"])
    assert not browser.find_elements(By.LINK_TEXT, "Health")
    browser.get(f"{traffic.url}/ui/logs")
    rows = browser.find_elements(By.CSS_SELECTOR, "#logs tbody tr")
    store = traffic.store()
    try:
        mine = store.query(Filters(key=traffic.hashes["alice"]), Page(limit=100))
    finally:
        store.close()
    assert [r.get_attribute("data-id") for r in rows] == [m["call_id"] for m in mine]
    assert traffic.keys["alice"] not in browser.page_source and MASTER not in browser.page_source
    browser.save_screenshot(str(shots / "key-holder.png"))
    browser.find_element(By.ID, "logout").click()
    wait_for(browser, lambda d: "/ui/login" in d.current_url)


def test_markup_sent_through_the_proxy_or_stored_as_a_model_name_never_runs(
    browser: Any, traffic: UiTraffic, tmp_path: Path
) -> None:
    """A prompt and tags holding markup, sent with the openai client, and a model name holding
    ``</script>`` (a stored call, shown by ``lmgate ui``): shown as text, no element made, no
    script run. The CSP alone would stop the scripts; the checks on elements show the escaping."""
    from test_ui_local import lmgate_ui
    from test_ui_review import EVIL_PROMPT, hostile_store

    before = traffic.api("/ui/api/overview", range="all").json()["totals"]["requests"]
    chat(
        traffic.url,
        MASTER,
        "gpt-4o-mini",
        EVIL_PROMPT,
        extra_body={"metadata": {"tags": ['<img src=x onerror="window.__xss=4">']}},
    )
    traffic.wait_stored(before + 1)
    log_in(browser, traffic.url, MASTER)
    evil = traffic.api("/ui/api/logs", search="window.__xss=3", limit=1).json()["rows"][0]["call_id"]

    def clean(path: str) -> None:
        browser.get(path)
        wait_for(browser, lambda d: d.execute_script("return document.readyState") == "complete")
        assert browser.execute_script("return window.__xss === undefined"), path
        assert not browser.find_elements(
            By.CSS_SELECTOR, "img[src='x'], main b, main script:not(#chart-data)"
        ), path

    clean(f"{traffic.url}/ui/logs/{evil}")
    assert "<script>window.__xss=3</script>" in browser.find_element(By.TAG_NAME, "main").text
    clean(f"{traffic.url}/ui/overview?range=all&by=tag")
    clean(f"{traffic.url}/ui/logs?search=window.__xss")
    db = tmp_path / "logs.sqlite3"
    import time

    hostile_store(db, time.time())
    with lmgate_ui(db) as url:
        clean(f"{url}/ui/overview?range=all")
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".uplot"))  # the charts still draw
        clean(f"{url}/ui/logs/evil-model")

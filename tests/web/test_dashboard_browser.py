"""The supervisor dashboard and /docs in a real headless browser (issue 10): Debian's ``chromium``
driven by its ``chromedriver`` through Selenium, against the real API (``qifu serve``) on a scratch
PostgreSQL database whose tickets were made through the API.

Checked: the page loads without console errors and makes no request outside the server; the KPI
cards equal the API's summary; a period and a grouping change redraw the charts with the API's
data; a click on a number opens the ticket list whose count equals the figure; the four export
buttons download files of the right type; a department account sees its own scope; /docs renders
Swagger UI from the server's own files. A screenshot is saved to ``tests/artifacts/dashboard.png``.

Skipped only on a machine without chromium; in CI (``CI`` set) a missing browser fails, because
``.ci/run`` installs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.scratch_db import scratch_database

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
PG_SERVER = os.environ.get("QIFU_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
PASSWORD = "qifu-demo-2026"
HOST = "127.0.0.1"

if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("CI"):
        raise RuntimeError("chromium and chromium-driver are missing: .ci/run installs them (apt-get install -y "
                           "chromium chromium-driver)")
    pytest.skip("chromium/chromedriver absent on this machine (apt-get install -y chromium chromium-driver)",
                allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from bench.harness import free_port  # noqa: E402

pytestmark = pytest.mark.slow




class Api:
    """A logged-in client of the running API."""

    def __init__(self, base: str, username: str):
        self.client = httpx.Client(base_url=f"{base}/api/v1", timeout=30)
        resp = self.client.post("/auth/token", data={"username": username, "password": PASSWORD})
        assert resp.status_code == 200, resp.text
        self.client.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"

    def post(self, url: str, body: dict | None = None) -> dict:
        resp = self.client.post(url, json=body)
        assert resp.status_code in (200, 201), (url, resp.text)
        return resp.json()

    def get(self, url: str, **params) -> httpx.Response:
        resp = self.client.get(url, params=params)
        assert resp.status_code == 200, (url, resp.text)
        return resp


def _make_tickets(base: str) -> None:
    """Tickets in every stage through the API: submitted, dispatched to RSJ, claimed, replied,
    closed with a rating; two by hotline (the officer's intake), one dispatched elsewhere."""
    ent, officer, rsj = Api(base, "ent1"), Api(base, "officer1"), Api(base, "dept_rsj")
    numbers = [ent.post("/tickets", {"title": f"招工难 {i}", "description": "急需焊工，希望对接招聘渠道",
                                     "category_code": "problem.labour"})["number"] for i in range(7)]
    enterprise_id = officer.get("/tickets/" + numbers[0]).json()["enterprise_id"]
    for i in range(2):
        numbers.append(officer.post("/tickets", {"enterprise_id": enterprise_id, "channel": "hotline",
                                                 "title": f"用电报装进度 {i}", "description": "来电反映用电报装未答复",
                                                 "category_code": "problem.power"})["number"])
    for n in numbers[:5]:
        officer.post(f"/tickets/{n}/accept")
        officer.post(f"/tickets/{n}/dispatch", {})
    officer.post(f"/tickets/{numbers[7]}/accept")
    officer.post(f"/tickets/{numbers[7]}/dispatch", {})  # problem.power: another department
    for n in numbers[:4]:
        rsj.post(f"/tickets/{n}/claim")
    for n in numbers[:3]:
        rsj.post(f"/tickets/{n}/reply", {"text": "已安排专场招聘会"})
    ent.post(f"/tickets/{numbers[0]}/confirm", {"rating": "satisfied"})
    ent.post(f"/tickets/{numbers[1]}/confirm", {"rating": "basically_satisfied"})


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """``qifu serve`` on a free port over a fresh migrated, seeded database with some tickets."""
    with scratch_database(PG_SERVER, f"qifu_test_dashboard_{os.getpid()}", enterprises=40) as url:
        port = free_port()
        env = {**os.environ, "QIFU_DATABASE_URL": url, "QIFU_ENVIRONMENT": "test", "QIFU_REDIS_URL": ""}
        log_path = ARTIFACTS / f"dashboard-server-{os.getpid()}.log"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "qifu.cli", "serve", "--host", HOST, "--port", str(port),
                                     "--workers", "1", "--log-level", "warning"],
                                    cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://{HOST}:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, log_path.read_text(errors="replace")
                try:
                    if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "the API did not start"
                time.sleep(0.2)
            _make_tickets(base)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log_path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[webdriver.Chrome]:
    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,2400", "--lang=zh-CN", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False,
                                              # four files from one page: allow more than one download
                                              "profile.default_content_setting_values.automatic_downloads": 1})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER,
                                                               env={**os.environ, "TZ": "Asia/Shanghai"}))
    driver.set_page_load_timeout(60)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads  # type: ignore[attr-defined]
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """The dashboard as the browser shows it, and what the browser logged."""

    def __init__(self, driver, base: str):
        self.d, self.base = driver, base
        self.console: list[dict] = []
        self.requests: list[str] = []

    def collect_logs(self) -> None:
        self.console += self.d.get_log("browser")
        for entry in self.d.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                self.requests.append(message["params"]["request"]["url"])

    def assert_clean(self) -> None:
        self.collect_logs()
        errors = [e for e in self.console if e["level"] == "SEVERE"]
        assert errors == [], errors
        outside = [u for u in self.requests if not u.startswith((self.base + "/", "data:", "blob:"))]
        assert outside == [], outside

    def wait(self, condition, what: str, timeout: float = 30):
        return WebDriverWait(self.d, timeout, poll_frequency=0.1).until(lambda d: condition(), message=what)

    def js(self, script: str, *args):
        return self.d.execute_script(script, *args)

    def renders(self) -> int:
        return self.js("return window.__qifuRenderCount || 0")

    def login(self, username: str) -> None:
        before = self.renders()
        self.wait(lambda: self.d.find_element(By.ID, "login").is_displayed(), "the login form")
        self.d.find_element(By.ID, "username").clear()
        self.d.find_element(By.ID, "username").send_keys(username)
        self.d.find_element(By.ID, "password").send_keys(PASSWORD)
        self.d.find_element(By.ID, "login-submit").click()
        self.wait(lambda: self.renders() > before, f"the dashboard of {username} rendered")

    def change(self, action) -> None:
        """Do ``action`` (a picker change) and wait for the charts to be redrawn."""
        before = self.renders()
        action()
        self.wait(lambda: self.renders() > before, "the charts redrawn")

    def set_input(self, element_id: str, value: str) -> None:
        self.js("const e = document.getElementById(arguments[0]); e.value = arguments[1];"
                "e.dispatchEvent(new Event('change', {bubbles: true}));", element_id, value)

    def kpi(self, key: str) -> str:
        return self.d.find_element(By.CSS_SELECTOR, f'[data-kpi="{key}"] .value').get_attribute("data-value")

    def chart(self, name: str) -> dict:
        return self.js("const c = echarts.getInstanceByDom(document.getElementById('chart-' + arguments[0]));"
                       "const o = c.getOption(); return {axis: o.xAxis[0].data || o.yAxis[0].data,"
                       "series: o.series.map(s => s.data.map(d => d.value))};", name)

    def drill(self, element, click=None) -> int:
        """Click ``element`` (or do ``click``) and return the count of the ticket list it opened."""
        self.js("const o = document.getElementById('drill-count'); delete o.dataset.count;")
        (click or element.click)()
        self.wait(lambda: self.d.find_element(By.ID, "drill-count").get_attribute("data-count") is not None,
                  "the ticket list")
        count = int(self.d.find_element(By.ID, "drill-count").get_attribute("data-count"))
        rows = self.d.find_elements(By.CSS_SELECTOR, "#drill-table tbody tr td:first-child")
        assert len(rows) == min(count, 20) or (count == 0 and len(rows) == 1)
        self.d.find_element(By.ID, "drill-close").click()
        return count


RATES = ("closure_rate", "on_time_rate", "response_rate", "satisfaction_rate", "rated_share", "reopen_rate",
         "return_rate")
COUNTS = ("received", "closed", "overdue")


def _assert_kpis_equal(page: Page, total: dict) -> None:
    for key in COUNTS:
        assert int(page.kpi(key)) == total[key], key
    for key in RATES:
        shown = page.kpi(key)
        assert (shown == "" and total[key] is None) or float(shown) == pytest.approx(total[key]), key


def test_dashboard_in_a_real_browser(server, browser):
    page = Page(browser, server)
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    year = today.year
    browser.get(f"{server}/dashboard?period={year}")
    page.login("supervisor1")

    # the KPI cards are the API's summary (the year, every §6 rate and count)
    sup = Api(server, "supervisor1")
    year_total = sup.get("/stats/summary", date_from=f"{year}-01-01", date_to=f"{year}-12-31").json()["total"]
    assert year_total["received"] == 9
    _assert_kpis_equal(page, year_total)
    previous = sup.get("/stats/summary", date_from=f"{year - 1}-01-01", date_to=f"{year - 1}-12-31").json()["total"]
    assert previous["received"] == 0  # the change is against last year's (empty) figures
    trend_year = page.chart("trend")
    assert trend_year["axis"] == [f"{year}-{today.month:02d}"]

    # a click on a number opens the ticket list whose count is the figure
    received = browser.find_element(By.CSS_SELECTOR, '[data-kpi="received"] .value')
    assert page.drill(received) == 9
    closed = browser.find_element(By.CSS_SELECTOR, '[data-kpi="closure_rate"] .parts button[data-measure="closed"]')
    assert page.drill(closed) == year_total["closed"] == 2
    row = browser.find_element(By.CSS_SELECTOR, '#group-table tbody tr:first-child td:nth-child(2) button')
    assert page.drill(row) == int(row.get_attribute("data-value"))

    # the period picker: this month, by day
    def to_month():
        Select(browser.find_element(By.ID, "period-kind")).select_by_value("month")
    page.change(to_month)
    page.change(lambda: page.set_input("period-month", f"{year}-{today.month:02d}"))
    trend_month = page.chart("trend")
    assert trend_month["axis"] != trend_year["axis"] and trend_month["axis"] == [today.isoformat()]
    month = sup.get("/stats/summary", date_from=f"{year}-{today.month:02d}-01", date_to=today.isoformat(),
                    group_by="day").json()
    assert trend_month["series"][0] == [r["received"] for r in month["rows"]]

    # the grouping picker redraws the grouped chart with the API's groups
    group_before = page.chart("group")
    page.change(lambda: Select(browser.find_element(By.ID, "group-by")).select_by_value("channel"))
    group_after = page.chart("group")
    by_channel = sup.get("/stats/summary", date_from=f"{year}-{today.month:02d}-01",
                         date_to=f"{year}-{today.month:02d}-{_month_end(year, today.month):02d}",
                         group_by="channel").json()
    assert group_after != group_before
    assert group_after["axis"] == [r["label"] for r in by_channel["rows"]]
    assert group_after["series"][0] == [r["received"] for r in by_channel["rows"]]
    # a click on a chart bar opens the tickets of that bar (the middle of the first group's 收件 bar)
    x, y, width, height = page.js(
        "const el = document.getElementById('chart-group'); const c = echarts.getInstanceByDom(el);"
        "const r = c.getModel().getSeriesByIndex(0).getData().getItemLayout(0);"  # the bar's rectangle
        "return [r.x + r.width / 2, r.y + r.height / 2, el.clientWidth, el.clientHeight];")
    bar = browser.find_element(By.ID, "chart-group")
    assert page.drill(bar, lambda: ActionChains(browser).move_to_element_with_offset(
        bar, int(x - width / 2), int(y - height / 2)).click().perform()) == by_channel["rows"][0]["received"]
    # and a group's figure drills to exactly its tickets
    hotline = browser.find_element(By.CSS_SELECTOR, '#group-table button[data-group="hotline"][data-measure="received"]')
    assert page.drill(hotline) == 2

    # the export buttons download the summary and the ranking as CSV and Excel
    for button in ("export-summary-csv", "export-summary-xlsx", "export-ranking-csv", "export-ranking-xlsx"):
        browser.find_element(By.ID, button).click()
    page.wait(lambda: len(page.js("return window.__qifu.exports")) == 4, "four exports")
    exports = page.js("return window.__qifu.exports")
    xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert {(e["what"], e["status"], e["type"].split(";")[0]) for e in exports} == {
        ("summary", 200, "text/csv"), ("summary", 200, xlsx), ("ranking", 200, "text/csv"), ("ranking", 200, xlsx)}
    assert all(e["size"] > 0 for e in exports)
    page.wait(lambda: len([p for p in browser.downloads.iterdir() if not p.name.endswith(".crdownload")]) == 4,
              "four downloaded files")
    assert sorted(p.suffix for p in browser.downloads.iterdir()) == [".csv", ".csv", ".xlsx", ".xlsx"]

    # the ranking lists the departments with score and rank
    ranked = browser.find_elements(By.CSS_SELECTOR, "#ranking tbody tr[data-department]")
    api_ranking = sup.get("/stats/ranking", period=f"{year}-{today.month:02d}").json()
    assert len(ranked) == len(api_ranking["rows"])
    assert ranked[0].find_element(By.CSS_SELECTOR, "td:first-child").text == "1"

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))
    page.assert_clean()

    # a department account sees the same page for its own scope only
    browser.find_element(By.ID, "logout").click()
    page.login("dept_rsj")
    rsj = Api(server, "dept_rsj")
    rsj_total = rsj.get("/stats/summary", date_from=f"{year}-{today.month:02d}-01",
                        date_to=f"{year}-{today.month:02d}-{_month_end(year, today.month):02d}").json()["total"]
    assert rsj_total["received"] == 5  # dispatched to RSJ; not the submitted ones nor the other department's
    _assert_kpis_equal(page, rsj_total)
    assert page.drill(browser.find_element(By.CSS_SELECTOR, '[data-kpi="received"] .value')) == 5
    # and an officer, the tickets of their grids' enterprises
    browser.find_element(By.ID, "logout").click()
    page.login("officer1")
    officer_total = Api(server, "officer1").get(
        "/stats/summary", date_from=f"{year}-{today.month:02d}-01",
        date_to=f"{year}-{today.month:02d}-{_month_end(year, today.month):02d}").json()["total"]
    assert officer_total["received"] == 9  # ent1 is in officer1's grid
    _assert_kpis_equal(page, officer_total)
    assert "服务专员" in browser.find_element(By.ID, "who").text
    page.assert_clean()


def test_docs_render_offline(server, browser):
    """/docs: Swagger UI from the server's own files, no request leaves the server."""
    page = Page(browser, server)
    page.collect_logs()  # drop what earlier pages logged
    page.console, page.requests = [], []
    browser.get(f"{server}/docs")
    page.wait(lambda: browser.find_elements(By.CSS_SELECTOR, ".swagger-ui .information-container .title"),
              "Swagger UI rendered")
    page.wait(lambda: browser.find_elements(By.CSS_SELECTOR, ".opblock-tag"), "the operations listed")
    assert "Qifu" in browser.find_element(By.CSS_SELECTOR, ".swagger-ui .information-container .title").text
    resources = page.js("return performance.getEntriesByType('resource').map(e => e.name)")
    assert any(u.endswith("/swagger-ui-bundle.js") for u in resources)
    assert all(u.startswith(server + "/") for u in resources), resources
    page.assert_clean()


def _month_end(year: int, month: int) -> int:
    import calendar

    return calendar.monthrange(year, month)[1]

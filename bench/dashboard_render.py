"""The dashboard's first render in a real browser (issue 10: under 1 s with 10 M tickets).

    uv run python bench/dashboard_render.py --db qifu_bench_stats                 # a bench/stats.py database
    uv run python bench/dashboard_render.py --url postgresql+psycopg://...   --runs 7 --period 2026-05

What it does: serves the API (``qifu serve --workers 2``, as in production, on ``--port``) over
the database, logs in as ``--user`` through the API, then opens ``/dashboard?period=...`` in headless Debian ``chromium``
(``chromedriver``) ``--runs`` times and reads ``window.__qifuRendered``: milliseconds from the
navigation start (``performance.timeOrigin``) to the moment every chart of the page finished
drawing after all its API calls answered (see qifu/web/static/dashboard/dashboard.js). The first
run has a cold browser cache (it downloads ECharts); the others reload the page with the vendored
files cached (they are immutable), as a supervisor's daily visit does. Beside each run: the
slowest API call of the page (resource timing) and the number of calls.

The database of ``bench/stats.py`` has five years of tickets before 2026-06-10, so the default
period is the month before it (2026-05), the page a supervisor opens first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"


def _wait_healthy(base: str, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the API exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("the API did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="qifu_bench_stats", help="database name on --pg-url")
    parser.add_argument("--pg-url", default=PG_SERVER)
    parser.add_argument("--url", default="", help="full database URL (instead of --db)")
    parser.add_argument("--port", type=int, default=18030)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2, help="API processes (qifu serve --workers)")
    parser.add_argument("--period", default="2026-05", help="2026-05 | 2026-Q2 | 2026")
    parser.add_argument("--group-by", default="department")
    parser.add_argument("--user", default="supervisor1")
    parser.add_argument("--password", default="qifu-demo-2026")
    parser.add_argument("--verbose", action="store_true", help="print every API call of each run")
    parser.add_argument("--warm-server", action="store_true",
                        help="open the page once before run 1 and then clear the browser's cache: run 1 is a "
                             "browser's first visit to an API that has been running (not a just-started one)")
    parser.add_argument("--screenshot", default="", help="save a screenshot of the last run here (PNG)")
    args = parser.parse_args()

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    url = args.url or f"{args.pg_url}/{args.db}"
    base = f"http://127.0.0.1:{args.port}"
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", args.port)) == 0:
            raise SystemExit(f"port {args.port} is in use")
    env = {**os.environ, "QIFU_DATABASE_URL": url, "QIFU_REDIS_URL": "", "QIFU_ENVIRONMENT": "development"}
    proc = subprocess.Popen([sys.executable, "-m", "qifu.cli", "serve", "--host", "127.0.0.1", "--port",
                             str(args.port), "--workers", str(args.workers), "--log-level", "warning"],
                            cwd=ROOT, env=env, start_new_session=True)
    driver = None
    try:
        _wait_healthy(base, proc)
        token = httpx.post(f"{base}/api/v1/auth/token", data={"username": args.user, "password": args.password},
                           timeout=30).json()["access_token"]
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    "--window-size=1400,2400", "--no-first-run", "--disable-extensions",
                    "--disable-background-networking", "--disable-component-update"):
            options.add_argument(arg)
        driver = webdriver.Chrome(options=options, service=Service(
            executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver"))
        driver.set_page_load_timeout(120)
        driver.get(f"{base}/static/dashboard/dashboard.css")  # the origin, without loading the page
        driver.execute_script("sessionStorage.setItem('qifu.dashboard.token', arguments[0])", token)
        page = f"{base}/dashboard?period={args.period}&group_by={args.group_by}"
        print(f"{page}  (load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f})")
        if args.warm_server:  # the API processes and PostgreSQL's buffers warm; then a cold browser cache
            driver.get(page)
            WebDriverWait(driver, 300, poll_frequency=0.05).until(lambda d: d.execute_script(
                "return window.__qifuRendered"))
            driver.execute_cdp_cmd("Network.clearBrowserCache", {})
            print("server warmed by one page load (not counted); browser cache cleared", flush=True)
        times = []
        for run in range(args.runs):
            driver.get(page)
            outcome = WebDriverWait(driver, 300, poll_frequency=0.05).until(lambda d: d.execute_script(
                "const s = document.getElementById('status');"
                "return window.__qifuRendered || (s.classList.contains('error') && s.textContent)"))
            if isinstance(outcome, str):
                print(f"run {run + 1}: the page reports an error: {outcome}", flush=True)
                continue
            rendered = outcome
            calls = driver.execute_script(
                "return performance.getEntriesByType('resource').filter(e => e.name.includes('/api/v1/'))"
                ".map(e => [decodeURIComponent(e.name.split('/api/v1/')[1]), e.duration])")
            slowest = max(calls, key=lambda c: c[1]) if calls else ("-", 0)
            marks = driver.execute_script("return window.__qifuTimes")
            times.append(rendered)
            if args.verbose:
                for name, duration in calls:
                    print(f"    {duration:7.0f} ms  {name}")
            print(f"run {run + 1} ({'cold cache' if run == 0 else 'warm cache'}): first render {rendered:7.0f} ms; "
                  f"script started {marks['start']:.0f} ms, "
                  + (f"ECharts ready {marks['echarts']:.0f} ms, " if marks.get('echarts') else "")
                  + f"data in {marks['data']:.0f} ms, drawn {marks['drawn']:.0f} ms; "
                  f"{len(calls)} API calls, slowest {slowest[1]:.0f} ms ({slowest[0][:80]})", flush=True)
        if args.screenshot:
            driver.save_screenshot(args.screenshot)
        if not times:
            raise SystemExit("no run rendered")
        warm = times[1:] or times
        print(f"first render: run 1 {times[0]:.0f} ms; warm median {statistics.median(warm):.0f} ms, "
              f"max {max(warm):.0f} ms over {len(warm)} runs; load average {os.getloadavg()[0]:.2f}")
    finally:
        if driver is not None:
            driver.quit()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()

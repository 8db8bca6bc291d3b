"""Sustained mixed load (issue #11 "Load"): capacity first, then a long run at half of it with the
memory of every API process sampled each minute. Prints one line per minute and a summary.

    uv run python bench/load_mixed.py                          # capacity 20 s, then 30 min at 50 %
    uv run python bench/load_mixed.py --minutes 5 --clients 16

1. A fresh database ``qifu_load`` on ``--pg-url`` (migrated, seeded), ``qifu serve --workers 2``
   on it (``bench.harness.ApiServer``), no broker (notifications stay in the database).
2. **Mix** (per request, at random): 40 % ``POST /tickets`` (an enterprise), 30 % ``GET /tickets``
   (an officer's list, first page), 20 % an action (``accept`` of a submitted ticket of that
   officer, else a ``GET /tickets/{number}``), 10 % ``GET /stats/summary`` (a supervisor).
3. **Capacity**: ``--clients`` threads send back to back for ``--capacity-seconds``; the
   responses per second are the capacity.
4. **Run**: the same clients paced to ``--fraction`` (0.5) of the capacity for ``--minutes``;
   each minute: requests, errors (any status >= 500, or a 4xx other than a lost race 409/412),
   p50/p99 latency (ms), and the RSS (MiB) of the supervisor and of each API process.

"Flat memory" is judged from the RSS column: compare the later minutes with the second one (the
first includes warm-up).
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from collections import Counter
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.harness import ApiServer  # noqa: E402


def _headers(db_url: str) -> dict[str, list[dict]]:
    from sqlmodel import Session, select

    from service.auth.security import create_access_token
    from service.db import make_engine
    from service.enterprises.models import Enterprise
    from service.users.models import User

    engine = make_engine(db_url)
    out: dict[str, list[dict]] = {"enterprise": [], "officer": [], "supervisor": []}
    with Session(engine) as s:
        rows = s.exec(select(User, Enterprise.officer_id).join(Enterprise, Enterprise.id == User.enterprise_id)
                      .where(User.role == "enterprise", Enterprise.officer_id.is_not(None)).limit(20)).all()
        for user, officer_id in rows:
            officer = s.get(User, officer_id)
            out["enterprise"].append({"Authorization": "Bearer " + create_access_token(user.id, user.role)[0]})
            out["officer"].append({"Authorization": "Bearer " + create_access_token(officer.id, officer.role)[0]})
        for sup in s.exec(select(User).where(User.role == "supervisor", User.region_id.is_(None)).limit(2)).all():
            out["supervisor"].append({"Authorization": "Bearer " + create_access_token(sup.id, sup.role)[0]})
    engine.dispose()
    return out


class Mix:
    """One client's request mix; records ``(second, status, latency)`` in ``log``."""

    def __init__(self, url: str, people: dict[str, list[dict]], seed: int) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)
        self.people = people
        self.rng = random.Random(seed)
        self.submitted: list[tuple[int, str]] = []  # (person index, number)
        self.log: list[tuple[float, int, float]] = []

    def one(self) -> None:
        r = self.rng.random()
        i = self.rng.randrange(len(self.people["enterprise"]))
        started = time.monotonic()
        try:
            if r < 0.4:
                resp = self.http.post("/api/v1/tickets", headers=self.people["enterprise"][i], json={
                    "title": "负载演练：用工缺口", "description": "订单增加，普工缺口约50人。",
                    "category_code": "problem.labour"})
                if resp.status_code == 201:
                    self.submitted.append((i, resp.json()["number"]))
            elif r < 0.7:
                resp = self.http.get("/api/v1/tickets", headers=self.people["officer"][i], params={"limit": 20})
            elif r < 0.9:
                if self.submitted:
                    j, number = self.submitted.pop(0)
                    resp = self.http.post(f"/api/v1/tickets/{number}/accept", headers=self.people["officer"][j], json={})
                else:
                    resp = self.http.get("/api/v1/tickets", headers=self.people["officer"][i], params={"limit": 5})
            else:
                today = date.today()
                resp = self.http.get("/api/v1/stats/summary", headers=self.people["supervisor"][0],
                                     params={"date_from": today.replace(month=1, day=1).isoformat(),
                                             "date_to": today.isoformat()})
            status = resp.status_code
        except httpx.HTTPError:
            status = 0
        self.log.append((started, status, time.monotonic() - started))


def _drive(mixes: list[Mix], until: float, rate: float | None) -> None:
    """Each client loops until ``until``; with ``rate`` (requests/s in all) each is paced to
    ``rate / clients`` (open loop per client: it waits for its next slot)."""

    def loop(mix: Mix) -> None:
        interval = len(mixes) / rate if rate else 0.0
        next_at = time.monotonic() + random.uniform(0, interval)
        while time.monotonic() < until:
            if interval:
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                next_at += interval
            mix.one()

    threads = [threading.Thread(target=loop, args=(m,), daemon=True) for m in mixes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _bad(status: int) -> bool:
    return status == 0 or status >= 500 or (400 <= status < 500 and status not in (409, 412))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    parser.add_argument("--db", default="qifu_load")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--capacity-seconds", type=float, default=20.0)
    parser.add_argument("--fraction", type=float, default=0.5)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--sample-seconds", type=float, default=60.0, help="RSS and latency window")
    args = parser.parse_args(argv)

    from tests.scratch_db import build_database, create_database

    url = create_database(args.pg_url, args.db)
    build_database(url, enterprises=60)
    server = ApiServer({"QIFU_DATABASE_URL": url, "QIFU_REDIS_URL": "", "QIFU_WEBHOOK_URL": "", "QIFU_SMTP_HOST": ""},
                       workers=args.workers).start()
    try:
        people = _headers(url)
        mixes = [Mix(server.url, people, seed) for seed in range(args.clients)]
        began = time.monotonic()
        _drive(mixes, began + args.capacity_seconds, None)
        done = [e for m in mixes for e in m.log]
        capacity = len(done) / args.capacity_seconds
        print(f"capacity: {capacity:.1f} req/s with {args.clients} clients "
              f"(errors {sum(_bad(s) for _, s, _ in done)}); run at {args.fraction:.0%} = {capacity * args.fraction:.1f} req/s")
        for m in mixes:
            m.log.clear()
        rate = capacity * args.fraction
        start = time.monotonic()
        end = start + args.minutes * 60
        print("minute  requests  errors  p50_ms  p99_ms  rss_mib(per process)")
        rss_rows = []
        worker = threading.Thread(target=_drive, args=(mixes, end, rate), daemon=True)
        worker.start()
        minute = 0
        total_errors = 0
        p99s = []
        while time.monotonic() < end:
            time.sleep(max(0.0, start + (minute + 1) * args.sample_seconds - time.monotonic()))
            lo, hi = start + minute * args.sample_seconds, start + (minute + 1) * args.sample_seconds
            window = [e for m in mixes for e in list(m.log) if lo <= e[0] < hi]
            lat = sorted(e[2] for e in window) or [0.0]
            errors = sum(_bad(s) for _, s, _ in window)
            total_errors += errors
            rss = server.rss_kib()
            rss_rows.append(rss)
            p99 = lat[int(len(lat) * 0.99)] * 1000
            p99s.append(p99)
            print(f"{minute + 1:6d}  {len(window):8d}  {errors:6d}  {lat[len(lat) // 2] * 1000:6.1f}  {p99:6.1f}  "
                  + " ".join(f"{pid}:{kib / 1024:.1f}" for pid, kib in sorted(rss.items())), flush=True)
            minute += 1
        worker.join()
        statuses = Counter(s for m in mixes for _, s, _ in m.log)
        print("statuses:", dict(sorted(statuses.items())))
        if len(rss_rows) >= 3:
            second, last = rss_rows[1], rss_rows[-1]
            growth = {pid: round((last.get(pid, 0) - kib) / 1024, 1) for pid, kib in second.items()}
            print("RSS growth from minute 2 to the last (MiB):", growth)
        print(f"errors: {total_errors}; p99 by minute (ms): min {min(p99s):.0f}, max {max(p99s):.0f}")
        return 0 if total_errors == 0 else 1
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())

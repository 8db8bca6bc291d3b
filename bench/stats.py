"""Statistics benchmark (SPEC §6, issue 10): the summary of every grouping over a large ticket table,
through the service and through HTTP.

    uv run python bench/stats.py                        # 100,000 tickets
    uv run python bench/stats.py --tickets 1000000      # 1 M (about a minute to build)
    uv run python bench/stats.py --tickets 10000000 --db qifu_bench_stats10m --build-only
                                                        # 10 M: ≈ 4 GB; load 11 min + rollup (loaded host)
    uv run python bench/stats.py --reuse --db qifu_bench_stats10m          # time again, no rebuild
    uv run python bench/stats.py --reuse --db ... --periods 1m --via service --groupings month,grid

What it does:

1. builds a fresh PostgreSQL database (``--db``, default ``qifu_bench_stats``, on ``--pg-url``):
   Alembic migrations to head and the seed county (:func:`tests.scratch_db.build_database`);
2. bulk-loads ``--tickets`` tickets submitted over the five years before ``NOW``, in submission
   order (ids grow with ``submitted_at``, as in production, so a month's rows lie together on
   disk), with set-based ``INSERT ... SELECT FROM generate_series`` statements of 1 M rows, each
   its own transaction (secondary indexes dropped during the load and rebuilt after it, exactly as
   the migrations define them), with a realistic mix: 10 channels, every category (its default
   department, its service type), the enterprises' grids and officers; 5 % rejected, 78 % closed
   (8 % of them late, 30 % rated basically satisfied, 55 % satisfied, 10 % closed without
   feedback), the rest open in every status, with deadlines (some passed: overdue now), 6 %
   returned, 4 % reopened, consultations partly answered directly; milestones a few working hours
   to a few weeks apart. Then ``VACUUM ANALYZE``. The load bypasses the rollup's triggers
   (``session_replication_role = replica``); the rollup is then filled in one pass, as
   ``qifu stats rebuild`` does (:func:`fill_rollup`). Prints the time of each step;
3. times, for every grouping of ``service.stats.service.GROUPINGS`` over the last month, year and
   five years (``--periods``), ``--repeat`` times each, p50 and p99 (nearest rank: with fewer than
   100 repetitions p99 is the maximum):
   (a) :func:`service.stats.service.summary` for the seeded supervisor ``supervisor1`` (the whole
   county; every SPEC §6 measure), with ``now = NOW``;
   (b) ``GET /api/v1/stats/summary`` through the real API (``qifu serve`` on ``--port``, logged in
   as ``supervisor1``; the API's "now" is the clock), with one keep-alive httpx client;
   (c) beside them, in the same run, the plain ``SELECT <group>, count(*), count(*) FILTER
   (closed) ... GROUP BY`` over the same rows (``--plain-repeat`` times: the floor any query on the
   raw table pays);
   (d) the recount check: the total received and closed of (a) and (b) and the sum of their
   groups' received equal the plain counts;
   then the monthly (2026-05) and quarterly (2026-Q1) department ranking (service and
   ``GET /stats/ranking``) and the first page of the drill-down list (``GET /stats/tickets``,
   measure ``received``) per period; with ``--exact-check 1m`` (once the rollup exists) every count
   of every group and of the total equals the ``exact=True`` path (the raw rows) over that period.
   Prints a table with the load average beside each row; ``--json`` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from sqlmodel import Session  # noqa: E402

from tests.scratch_db import build_database, create_database  # noqa: E402

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
NOW = datetime(2026, 6, 10, 2, 0, tzinfo=UTC)  # a Wednesday, 10:00 in Asia/Shanghai
PERIODS = {"1 month": (date(2026, 5, 1), date(2026, 5, 31)), "1 year": (date(2025, 6, 1), date(2026, 5, 31)),
           "5 years": (date(2021, 6, 1), date(2026, 5, 31))}
CHANNELS = ["web", "app", "hotline", "window", "inquiry", "clinic", "email", "open311", "web", "hotline"]

LOAD_SQL = """
WITH ent AS (SELECT row_number() OVER (ORDER BY id) AS rn, id, officer_id, grid_id FROM enterprise),
cat AS (SELECT row_number() OVER (ORDER BY id) AS rn, id, service_type, default_department_id AS dept
        FROM category WHERE default_department_id IS NOT NULL)
INSERT INTO ticket (number, enterprise_id, channel, service_type, category_id, title, description,
    priority, status, lead_department_id, officer_id, grid_id, rating, reopen_count, return_count,
    escalation_level, remind_count, version, submitted_at, accepted_at, rejected_at, answered_at,
    dispatched_at, claimed_at, first_replied_at, replied_at, closed_at, updated_at, accept_by, claim_by,
    reply_by, feedback_by, due_step, due_at, hold_seconds, extension_count, overdue_count)
SELECT 'QS' || lpad(g.i::text, 10, '0'), e.id, (CAST(:channels AS text[]))[1 + g.i % 10], c.service_type, c.id, '基准诉求', '基准',
    'normal', s.status,
    CASE WHEN s.dispatched THEN c.dept END, e.officer_id, e.grid_id,
    CASE WHEN s.status = 'closed' THEN CASE WHEN v.r3 < 0.55 THEN 'satisfied' WHEN v.r3 < 0.85
        THEN 'basically_satisfied' WHEN v.r3 < 0.90 THEN 'dissatisfied' ELSE 'none' END END,
    CASE WHEN v.r4 < 0.04 THEN 1 ELSE 0 END, CASE WHEN v.r4 BETWEEN 0.5 AND 0.56 THEN 1 ELSE 0 END,
    0, 0, 1, t.sub,
    CASE WHEN s.status NOT IN ('submitted', 'rejected') AND NOT s.answered THEN t.sub + t.h1 END,
    CASE WHEN s.status = 'rejected' THEN t.sub + t.h1 END,
    CASE WHEN s.answered THEN t.sub + t.h1 END,
    CASE WHEN s.dispatched THEN t.sub + t.h1 + interval '1 hour' END,
    CASE WHEN s.claimed THEN t.sub + t.h1 + interval '1 hour' + t.h2 END,
    CASE WHEN s.answered THEN t.sub + t.h1 WHEN s.replied THEN t.sub + t.h1 + t.h2 + t.h3 END,
    CASE WHEN s.answered THEN t.sub + t.h1 WHEN s.replied THEN t.sub + t.h1 + t.h2 + t.h3 END,
    CASE WHEN s.status = 'closed' THEN t.sub + t.h1 + t.h2 + t.h3 + interval '2 days' END,
    :now, t.sub + interval '1 day',
    CASE WHEN s.dispatched THEN t.sub + t.h1 + interval '1 day 1 hour' END,
    CASE WHEN s.claimed OR s.answered THEN t.sub + interval '21 days' END,
    CASE WHEN s.replied OR s.answered THEN t.sub + t.h1 + t.h2 + t.h3 + interval '7 days' END,
    CASE s.status WHEN 'submitted' THEN 'accept' WHEN 'dispatched' THEN 'claim' WHEN 'in_progress' THEN 'reply'
        WHEN 'replied' THEN 'feedback' END,
    CASE s.status WHEN 'submitted' THEN t.sub + interval '1 day' WHEN 'dispatched' THEN t.sub + interval '2 days'
        WHEN 'in_progress' THEN t.sub + interval '21 days' WHEN 'replied' THEN :now + interval '3 days' END,
    0, 0, 0
FROM generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)) AS g(i)
JOIN ent e ON e.rn = 1 + g.i % (SELECT count(*) FROM ent)
JOIN cat c ON c.rn = 1 + (g.i / 7) % (SELECT count(*) FROM cat)
CROSS JOIN LATERAL (SELECT random() + 0 * g.i AS r1, random() + 0 * g.i AS r2, random() + 0 * g.i AS r3,
                           random() + 0 * g.i AS r4, random() + 0 * g.i AS r5) v
CROSS JOIN LATERAL (
    SELECT :now - interval '1 day' * :days * (1 - (g.i - v.r1) / CAST(:n AS float8)) AS sub,  -- in id order
           interval '1 hour' * (1 + 30 * v.r2) AS h1,            -- accepted/answered
           interval '1 hour' * (1 + 40 * v.r5) AS h2,            -- claimed after dispatch
           interval '1 day' * (1 + 25 * v.r3 * v.r2) AS h3       -- replied after claim
) t
CROSS JOIN LATERAL (
    SELECT x.status, x.status IN ('dispatched', 'in_progress', 'on_hold', 'replied', 'closed') AND NOT x.answered
               AS dispatched,
           x.status IN ('in_progress', 'on_hold', 'replied', 'closed') AND NOT x.answered AS claimed,
           x.status IN ('replied', 'closed') AND NOT x.answered AS replied, x.answered
    FROM (SELECT CASE WHEN t.sub < :now - interval '60 days' THEN
                     CASE WHEN v.r4 < 0.05 THEN 'rejected' WHEN v.r4 < 0.97 THEN 'closed' ELSE 'in_progress' END
                 ELSE CASE WHEN v.r4 < 0.05 THEN 'rejected' WHEN v.r4 < 0.15 THEN 'submitted'
                           WHEN v.r4 < 0.25 THEN 'dispatched' WHEN v.r4 < 0.45 THEN 'in_progress'
                           WHEN v.r4 < 0.50 THEN 'on_hold' WHEN v.r4 < 0.65 THEN 'replied' ELSE 'closed' END
                 END AS status,
                 c.service_type = 'consultation' AND v.r5 < 0.6 AS answered) x0
    CROSS JOIN LATERAL (SELECT CASE WHEN x0.answered AND x0.status NOT IN ('rejected', 'submitted', 'closed')
                                    THEN 'replied' ELSE x0.status END AS status, x0.answered
                                    AND x0.status NOT IN ('rejected', 'submitted') AS answered) x
) s
"""


def load_tickets(url: str, n: int, seed: float = 0.42, step: int = 1_000_000, days: int = 1826) -> float:
    """Bulk-load ``n`` tickets, ``step`` per statement (each its own transaction), with the secondary
    indexes of ``ticket`` dropped during the load and rebuilt after it, submitted over the ``days``
    before ``NOW``; returns the seconds it took (load + index rebuild + ``VACUUM ANALYZE``)."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    t0 = time.perf_counter()
    with engine.connect() as conn:
        indexes = conn.execute(sa.text(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = 'ticket' "
            "AND i.indexname NOT IN (SELECT conname FROM pg_constraint WHERE conrelid = 'ticket'::regclass)"
        )).all()
        for name, _ in indexes:
            conn.execute(sa.text(f'DROP INDEX "{name}"'))
        conn.execute(sa.text("SET synchronous_commit = off"))
        # no rollup trigger during the bulk load (7x slower through them): fill_rollup recomputes
        # the rollup from the loaded rows in one pass afterwards
        conn.execute(sa.text("SET session_replication_role = replica"))
        conn.execute(sa.text("SET maintenance_work_mem = '512MB'"))
        conn.execute(sa.text("SELECT setseed(:s)"), {"s": seed})
        for start in range(0, n, step):
            count = min(step, n - start)
            t1 = time.perf_counter()
            conn.execute(sa.text(LOAD_SQL), {"lo": start + 1, "hi": start + count, "n": n, "days": days, "now": NOW,
                                             "channels": CHANNELS})
            print(f"  rows {start + count:,}: {time.perf_counter() - t1:.1f} s", flush=True)
        t1 = time.perf_counter()
        for _, ddl in indexes:
            conn.execute(sa.text(ddl))
        print(f"  indexes rebuilt: {time.perf_counter() - t1:.1f} s", flush=True)
        t1 = time.perf_counter()
        conn.execute(sa.text("VACUUM ANALYZE ticket"))
        print(f"  vacuum analyze: {time.perf_counter() - t1:.1f} s", flush=True)
    engine.dispose()
    return time.perf_counter() - t0


def due_horizon_at_now(url: str) -> float | None:
    """The deadline rollup (PostgreSQL, docs/statistics.md "Deadline rollup") compacts the deadline
    days before its horizon, the folding clock's yesterday; a summary "as of" an earlier day counts
    "overdue now" live instead. The service timings ask "as of" :data:`NOW`, so the bench recounts
    the deadline rollup with the horizon at ``NOW``'s yesterday (the state a fold on that day
    leaves) unless it is already there. Returns the seconds it took (``None``: nothing to do)."""
    try:
        from service.stats import rollup
    except ImportError:  # pragma: no cover - before the rollup
        return None
    if not hasattr(rollup, "install_due"):
        return None
    from service.calendar.service import get_calendar

    engine = sa.create_engine(url)
    t0 = time.perf_counter()
    with Session(engine) as session:
        tz = get_calendar(session).tz
        horizon = rollup.local_day_number(NOW, tz) - 1
        conn = session.connection()
        if rollup.due_is_current(conn, str(tz)) and rollup.due_horizon(conn) == horizon:
            engine.dispose()
            return None
        rollup.install_due(conn, str(tz), force=True, horizon=horizon)
        session.commit()
    seconds = round(time.perf_counter() - t0, 1)
    engine.dispose()
    print(f"  deadline rollup recounted with its horizon at NOW's yesterday: {seconds:.1f} s", flush=True)
    return seconds


def fill_rollup(url: str) -> float | None:
    """The load bypassed the statistics rollup's triggers (``session_replication_role =
    replica``); recompute the rollup from the tickets in one pass, as ``qifu stats rebuild`` does
    (:func:`service.stats.rollup.install` with ``force``). Returns the seconds it took, ``None``
    without a rollup."""
    try:
        from service.stats.rollup import DUE_TABLES, ROLLUP_TABLES, install
    except ImportError:  # before the rollup (issue 10)
        return None
    engine = sa.create_engine(url)
    t0 = time.perf_counter()
    with Session(engine) as session:
        install(session, force=True)
        session.commit()
        vacuum = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with vacuum.connect() as conn:
            # the main rollup's tables, the day percentiles and the deadline rollup's (planner
            # statistics as autovacuum would leave them after such a bulk write)
            for table in [t for t in (*ROLLUP_TABLES, "stats_day_pct", *DUE_TABLES) if t != "stats_delta"]:
                conn.execute(sa.text(f"VACUUM ANALYZE {table}"))
        vacuum.dispose()
    seconds = round(time.perf_counter() - t0, 1)
    engine.dispose()
    print(f"  rollup filled in one pass (and vacuumed): {seconds:.1f} s", flush=True)
    return seconds


PLAIN_EXPR = {"department": "lead_department_id", "region": "g.region_id", "grid": "t.grid_id",
              "category": "category_id", "service_type": "service_type", "channel": "channel",
              "officer": "t.officer_id",
              "day": "to_char(submitted_at AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM-DD')",
              "week": "date_trunc('week', submitted_at AT TIME ZONE 'Asia/Shanghai')",
              "month": "to_char(submitted_at AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM')",
              "quarter": "to_char(submitted_at AT TIME ZONE 'Asia/Shanghai', 'YYYY-\"Q\"Q')"}


def plain_group_by(session: Session, group_by: str, first: date, last: date) -> tuple[int, int]:
    """The floor: ``SELECT <group>, count(*), count(*) FILTER (closed) FROM ticket WHERE submitted in
    period GROUP BY 1``; returns ``(received, closed)`` summed over the groups."""
    from service.stats.service import period_bounds

    join = "LEFT JOIN grid g ON g.id = t.grid_id" if group_by == "region" else ""
    start, end = period_bounds(first, last)
    rows = session.execute(sa.text(f"SELECT {PLAIN_EXPR[group_by]}, count(*), "
                                   "count(*) FILTER (WHERE status = 'closed') FROM ticket t "
                                   f"{join} WHERE submitted_at >= :s AND submitted_at < :e GROUP BY 1"),
                           {"s": start, "e": end}).all()
    return sum(r[1] for r in rows), sum(r[2] for r in rows)


def _pct(values: list[float], q: float) -> float:
    """The ``q`` quantile by nearest rank; with fewer than 100 values p99 is the maximum."""
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def _timed(fn, repeat: int) -> tuple[list[float], object]:
    """Call ``fn`` ``repeat`` times; ``(milliseconds of each call, the last result)``."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(1000 * (time.perf_counter() - t0))
    return times, out


def _stat(times: list[float]) -> dict:
    return {"p50_ms": round(statistics.median(times), 1), "p99_ms": round(_pct(times, 0.99), 1), "n": len(times)}


def _cell(row: dict, key: str) -> str:
    v = row.get(key)
    return f"{v['p50_ms']:>8.0f} ms{v['p99_ms']:>7.0f} ms" if v else f"{'-':>11}{'-':>10}"


def supervisor_actor(session: Session, username: str):
    """The :class:`Actor` of a seeded supervisor (``supervisor1``: the whole county)."""
    from service.auth.actor import actor_of
    from service.users.models import User

    user = session.execute(sa.select(User).where(User.username == username)).scalar_one()
    return actor_of(user)


class Api:
    """The real API (``qifu serve``) on ``port`` against ``url``, logged in as ``username``."""

    def __init__(self, url: str, port: int, workers: int, username: str) -> None:
        import httpx

        from bench.intake import start_api, wait_ready

        os.environ.setdefault("QIFU_ENVIRONMENT", "development")
        self.base = f"http://127.0.0.1:{port}"
        self.proc = start_api(url, port, workers, [], {})
        wait_ready(self.base, self.proc)
        self.client = httpx.Client(base_url=self.base, timeout=600)
        r = self.client.post("/api/v1/auth/token", data={"username": username, "password": PASSWORD})
        r.raise_for_status()
        self.client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"

    def get(self, path: str, **params) -> dict:
        r = self.client.get(f"/api/v1/stats/{path}", params=params)
        if r.status_code != 200:
            raise SystemExit(f"GET {path} {params}: {r.status_code} {r.text[:500]}")
        return r.json()

    def close(self) -> None:
        from bench.intake import stop_api

        self.client.close()
        stop_api(self.proc)


def exact_check(session: Session, actor, first: date, last: date, groupings: list[str]) -> str:
    """After the rollup: every count of every group and of the total equals the ``exact=True`` path
    (the raw-row computation) for one period; percentiles: the largest difference in hours."""
    from service.stats.metrics import COUNTS
    from service.stats.service import summary

    bad, worst = [], 0.0
    for g in groupings:
        fast = summary(session, actor, first, last, g, now=NOW)
        exact = summary(session, actor, first, last, g, now=NOW, exact=True)
        session.rollback()
        pairs = [("total", fast[1], exact[1])]
        fr, er = {r.key: r for r in fast[0]}, {r.key: r for r in exact[0]}
        if set(fr) != set(er):
            bad.append(f"{g}: groups differ {sorted(set(fr) ^ set(er), key=str)[:5]}")
        pairs += [(k, fr[k], er[k]) for k in fr.keys() & er.keys()]
        for key, a, b in pairs:
            da, db = a.as_dict(), b.as_dict()
            for name in COUNTS:
                if da.get(name) != db.get(name):
                    bad.append(f"{g}/{key}/{name}: {da.get(name)} != {db.get(name)}")
            for name, v in da.items():
                if name.startswith("hours_") and isinstance(v, (int, float)) and isinstance(db.get(name), (int, float)):
                    worst = max(worst, abs(v - db[name]))
    head = "ok" if not bad else f"{len(bad)} MISMATCH: " + "; ".join(bad[:5])
    return f"{head} (largest working-hour percentile difference {worst:.2f} h)"


def run(args: argparse.Namespace, url: str, meta: dict) -> list[dict]:
    from service.stats.service import GROUPINGS, department_ranking, summary

    engine = sa.create_engine(url)
    groupings = [g for g in args.groupings.split(",") if g] or list(GROUPINGS)
    periods = {PERIOD_KEYS[p]: PERIODS[PERIOD_KEYS[p]] for p in args.periods.split(",") if p}
    vias = set(args.via.split(","))
    api = Api(url, args.port, args.workers, args.user) if "http" in vias else None
    results: list[dict] = []
    try:
        with Session(engine) as session:
            actor = supervisor_actor(session, args.user)
            meta["tickets"] = session.execute(sa.text("SELECT count(*) FROM ticket")).scalar_one()
            print(f"tickets in the table: {meta['tickets']:,}; service now = {NOW.isoformat()} "
                  f"(HTTP: the clock); actor {args.user}; repeat {args.repeat}, plain {args.plain_repeat}; "
                  f"load average {_load()}", flush=True)
            print(f"{'grouping':<13}{'period':<9}{'tickets':>10}{'groups':>7} | {'service p50':>11}{'p99':>10}"
                  f" | {'HTTP p50':>11}{'p99':>10} | {'GROUP BY p50':>12}{'p99':>9} | {'load':>14} | recount",
                  flush=True)
            for period, (first, last) in periods.items():
                for g in groupings:
                    row: dict = {"grouping": g, "period": period, "date_from": str(first), "date_to": str(last)}
                    checks = []
                    if "service" in vias:
                        def svc(g=g, first=first, last=last):
                            out = summary(session, actor, first, last, g, now=NOW)
                            session.rollback()
                            return out
                        times, (rows, tot) = _timed(svc, args.repeat)
                        row["service"] = _stat(times)
                        row["tickets"], row["groups"] = tot.received, len(rows)
                        checks.append(("service", tot.received, tot.closed, sum(r.received for r in rows)))
                    if api is not None:
                        times, body = _timed(lambda g=g, first=first, last=last: api.get(
                            "summary", date_from=str(first), date_to=str(last), group_by=g), args.repeat)
                        row["http"] = _stat(times)
                        row.setdefault("tickets", body["total"]["received"])
                        row.setdefault("groups", len(body["rows"]))
                        checks.append(("http", body["total"]["received"], body["total"]["closed"],
                                       sum(r["received"] for r in body["rows"])))
                    if args.plain_repeat:
                        def plain(g=g, first=first, last=last):
                            out = plain_group_by(session, g, first, last)
                            session.rollback()
                            return out
                        times, (received, closed) = _timed(plain, args.plain_repeat)
                        row["plain"] = _stat(times)
                        bad = [f"{via}: received {r}/{s} closed {c} vs plain {received}/{closed}"
                               for via, r, c, s in checks if not (r == s == received and c == closed)]
                        row["recount"] = "ok" if not bad else "MISMATCH " + "; ".join(bad)
                    else:
                        row["recount"] = "not checked"
                    row["load"] = _load()
                    results.append(row)
                    print(f"{g:<13}{period:<9}{row.get('tickets', 0):>10,}{row.get('groups', 0):>7} | "
                          f"{_cell(row, 'service')} | {_cell(row, 'http')} | {_cell(row, 'plain'):>21} | "
                          f"{row['load']:>14} | {row['recount']}",
                          flush=True)

            for kind, period in RANKINGS.items():
                row = {"grouping": f"ranking {kind}", "period": period}
                first_last = {"monthly": (date(2026, 5, 1), date(2026, 5, 31)),
                              "quarterly": (date(2026, 1, 1), date(2026, 3, 31))}[kind]
                if "service" in vias:
                    def rank(first_last=first_last):
                        out = department_ranking(session, actor, *first_last, now=NOW)
                        session.rollback()
                        return out
                    times, _ = _timed(rank, args.repeat)
                    row["service"] = _stat(times)
                if api is not None:
                    times, body = _timed(lambda period=period: api.get("ranking", period=period), args.repeat)
                    row["http"] = _stat(times)
                    row["groups"] = len(body["rows"])
                row["load"] = _load()
                results.append(row)
                print(f"ranking {kind} {period}: service {row.get('service')} HTTP {row.get('http')} "
                      f"load {row['load']}", flush=True)
            if api is not None and args.drill_repeat > 0:
                for period, (first, last) in periods.items():
                    times, body = _timed(lambda first=first, last=last: api.get(
                        "tickets", date_from=str(first), date_to=str(last), measure="received", limit=100),
                        args.drill_repeat)
                    row = {"grouping": "drill-down received, first 100", "period": period,
                           "http": _stat(times), "tickets": body["count"], "load": _load()}
                    results.append(row)
                    print(f"drill-down {period}: {row['http']} count {body['count']:,} load {row['load']}", flush=True)
            if args.exact_check:
                import inspect

                if "exact" not in inspect.signature(summary).parameters:
                    meta["exact_check"] = "not available (summary has no exact= path: no rollup)"
                else:
                    first, last = PERIODS[PERIOD_KEYS[args.exact_check]]
                    t0 = time.perf_counter()
                    meta["exact_check"] = (f"{PERIOD_KEYS[args.exact_check]}, every grouping: "
                                           + exact_check(session, actor, first, last, groupings)
                                           + f"; {time.perf_counter() - t0:.0f} s")
                print(f"exact check: {meta['exact_check']}", flush=True)
    finally:
        if api is not None:
            api.close()
        engine.dispose()
    return results


PERIOD_KEYS = {"1m": "1 month", "1y": "1 year", "5y": "5 years"}
RANKINGS = {"monthly": "2026-05", "quarterly": "2026-Q1"}
PASSWORD = "qifu-demo-2026"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5, help="repetitions of each summary (service and HTTP)")
    parser.add_argument("--plain-repeat", type=int, default=2, help="repetitions of each plain GROUP BY (0: skip)")
    parser.add_argument("--drill-repeat", type=int, default=1, help="repetitions of each drill-down page")
    parser.add_argument("--days", type=int, default=1826,
                        help="spread the tickets over this many days before NOW (default five years); "
                             "e.g. --tickets 340000 --days 62: the density of 10 M over five years")
    parser.add_argument("--db", default="qifu_bench_stats")
    parser.add_argument("--pg-url", default=PG_SERVER)
    parser.add_argument("--reuse", action="store_true", help="time on the database already built")
    parser.add_argument("--build-only", action="store_true", help="build the database and stop")
    parser.add_argument("--groupings", default="", help="comma-separated subset (default: all)")
    parser.add_argument("--periods", default="1m,1y,5y", help="comma-separated subset of 1m, 1y, 5y")
    parser.add_argument("--via", default="service,http", help="service, http or both (service,http)")
    parser.add_argument("--port", type=int, default=18020, help="port of the API for the HTTP timings")
    parser.add_argument("--workers", type=int, default=1, help="API processes for the HTTP timings")
    parser.add_argument("--user", default="supervisor1", help="seeded supervisor to log in as")
    parser.add_argument("--exact-check", default="", choices=["", *PERIOD_KEYS],
                        help="compare every count with the exact=True path over this period (rollup)")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()

    url = f"{args.pg_url}/{args.db}"
    meta: dict = {"db": args.db, "date": datetime.now(UTC).isoformat(timespec="seconds"), "load_start": _load(),
                  "argv": sys.argv[1:]}
    if not args.reuse:
        t0 = time.perf_counter()
        create_database(args.pg_url, args.db)
        build_database(url)
        print(f"schema + seeds: {time.perf_counter() - t0:.1f} s", flush=True)
        meta["load_s"] = round(load_tickets(url, args.tickets, days=args.days), 1)
        meta["rollup_s"] = fill_rollup(url)
        meta["build_s"] = round(time.perf_counter() - t0, 1)
        print(f"load {args.tickets:,} tickets: {meta['load_s']:.1f} s; build total: {meta['build_s']:.1f} s; "
              f"load average {_load()}", flush=True)
        if args.build_only:
            return
    meta["due_s"] = due_horizon_at_now(url)
    results = run(args, url, meta)
    meta["load_end"] = _load()
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "results": results}, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()

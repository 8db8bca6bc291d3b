"""Statistics benchmark (SPEC §6, issue 10): the summary of every grouping over a large ticket table.

    uv run python bench/stats.py                        # 100,000 tickets
    uv run python bench/stats.py --tickets 1000000      # 1 M (about a minute to build)
    uv run python bench/stats.py --tickets 10000000     # 10 M (≈ 10 GB of disk)
    uv run python bench/stats.py --reuse --tickets ...  # time again on the database already built

What it does:

1. builds a fresh PostgreSQL database (``--db``, default ``qifu_bench_stats``, on ``--pg-url``):
   Alembic migrations to head and the seed county (:func:`tests.scratch_db.build_database`);
2. bulk-loads ``--tickets`` tickets submitted over the five years before ``NOW`` with one set-based
   ``INSERT ... SELECT FROM generate_series`` (secondary indexes dropped during the load and rebuilt
   after it, exactly as the migrations define them), with a realistic mix: 10 channels, every
   category (its default department, its service type), the enterprises' grids and officers;
   5 % rejected, 78 % closed (8 % of them late, 30 % rated basically satisfied, 55 % satisfied,
   10 % closed without feedback), the rest open in every status, with deadlines (some passed: overdue
   now), 6 % returned, 4 % reopened, consultations partly answered directly; milestones a few
   working hours to a few weeks apart. Then ``VACUUM ANALYZE``;
3. times :func:`service.stats.service.summary` (every SPEC §6 measure: 15 counts, 7 rates, 6
   working-hour percentiles) for every grouping over the last month, year and five years,
   ``--repeat`` times each, and prints p50/p99 (with few repetitions p99 is the maximum); beside it
   the plain ``SELECT <group>, count(*) ... GROUP BY`` over the same rows (the floor any query on
   the raw table pays), and the recount check (the summary's total received = the plain count).
"""

from __future__ import annotations

import argparse
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
    SELECT :now - interval '1826 days' * v.r1 AS sub,
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


def load_tickets(url: str, n: int, seed: float = 0.42) -> float:
    """Bulk-load ``n`` tickets; returns the seconds it took (load + index rebuild + analyze)."""
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
        conn.execute(sa.text("SET maintenance_work_mem = '512MB'"))
        conn.execute(sa.text("SELECT setseed(:s)"), {"s": seed})
        step = 1_000_000
        for start in range(0, n, step):
            count = min(step, n - start)
            conn.execute(sa.text(LOAD_SQL), {"lo": start + 1, "hi": start + count, "now": NOW,
                                             "channels": CHANNELS})
        for _, ddl in indexes:
            conn.execute(sa.text(ddl))
        conn.execute(sa.text("VACUUM ANALYZE ticket"))
    engine.dispose()
    return time.perf_counter() - t0


def plain_group_by(session: Session, group_by: str, first: date, last: date) -> int:
    """The floor: ``SELECT <group>, count(*) FROM ticket WHERE submitted in period GROUP BY 1``."""
    from service.stats.service import period_bounds

    expr = {"department": "lead_department_id", "region": "g.region_id", "grid": "t.grid_id",
            "category": "category_id", "service_type": "service_type", "channel": "channel",
            "officer": "t.officer_id", "day": "to_char(submitted_at AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM-DD')",
            "week": "date_trunc('week', submitted_at AT TIME ZONE 'Asia/Shanghai')",
            "month": "to_char(submitted_at AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM')",
            "quarter": "to_char(submitted_at AT TIME ZONE 'Asia/Shanghai', 'YYYY-\"Q\"Q')"}[group_by]
    join = "LEFT JOIN grid g ON g.id = t.grid_id" if group_by == "region" else ""
    start, end = period_bounds(first, last)
    rows = session.execute(sa.text(f"SELECT {expr}, count(*) FROM ticket t {join} "
                                   "WHERE submitted_at >= :s AND submitted_at < :e GROUP BY 1"),
                           {"s": start, "e": end}).all()
    return sum(r[1] for r in rows)


def _pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--db", default="qifu_bench_stats")
    parser.add_argument("--pg-url", default=PG_SERVER)
    parser.add_argument("--reuse", action="store_true", help="time on the database already built")
    parser.add_argument("--groupings", default="", help="comma-separated subset (default: all)")
    args = parser.parse_args()

    from service.auth.actor import Actor
    from service.stats.service import GROUPINGS, summary

    url = f"{args.pg_url}/{args.db}"
    if not args.reuse:
        t0 = time.perf_counter()
        create_database(args.pg_url, args.db)
        build_database(url)
        print(f"schema + seeds: {time.perf_counter() - t0:.1f} s", flush=True)
        print(f"load {args.tickets:,} tickets: {load_tickets(url, args.tickets):.1f} s", flush=True)
    engine = sa.create_engine(url)
    groupings = [g for g in args.groupings.split(",") if g] or list(GROUPINGS)
    with Session(engine) as session:
        total = session.execute(sa.text("SELECT count(*) FROM ticket")).scalar_one()
        print(f"tickets in the table: {total:,}; now = {NOW.isoformat()}; repeat {args.repeat}")
        print(f"{'grouping':<13}{'period':<9}{'rows':>8}{'groups':>8}   {'summary p50':>12}{'p99':>9}"
              f"   {'GROUP BY p50':>13}{'p99':>9}   recount")
        for period, (first, last) in PERIODS.items():
            for g in groupings:
                s_times, p_times = [], []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    rows, tot = summary(session, Actor.system(), first, last, g, now=NOW)
                    s_times.append(time.perf_counter() - t0)
                    session.rollback()
                    t0 = time.perf_counter()
                    plain = plain_group_by(session, g, first, last)
                    p_times.append(time.perf_counter() - t0)
                    session.rollback()
                ok = "ok" if tot.received == plain == sum(r.received for r in rows) else "MISMATCH"
                print(f"{g:<13}{period:<9}{tot.received:>8}{len(rows):>8}   "
                      f"{1000 * statistics.median(s_times):>9.0f} ms{1000 * _pct(s_times, 0.99):>6.0f} ms   "
                      f"{1000 * statistics.median(p_times):>10.0f} ms{1000 * _pct(p_times, 0.99):>6.0f} ms   {ok}",
                      flush=True)
    engine.dispose()


if __name__ == "__main__":
    main()

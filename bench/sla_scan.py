"""SLA sweeps benchmark (SPEC §4, issue #3): the three sweeps over a large ticket table.

    uv run python bench/sla_scan.py                       # 1,000,000 tickets
    uv run python bench/sla_scan.py --tickets 10000000    # 10 M (≈ 10 GB of disk, a few minutes)
    uv run python bench/sla_scan.py --explain             # also EXPLAIN ANALYZE each claim

What it does:

1. builds a fresh PostgreSQL database (``--db``, default ``qifu_bench_sla``; dropped and
   recreated on ``--pg-url``): Alembic migrations to head, then the seed county with 300
   enterprises (:func:`seeds.loader.load_seeds`);
2. bulk-loads ``--tickets`` tickets with one set-based ``INSERT ... SELECT FROM generate_series``
   (secondary indexes dropped during the load and rebuilt after it, exactly as the migrations
   define them): 90 % closed, 10 % open. Of the open tickets, nine in ten wait on a deadline spread
   over ±30 days around *now* (submitted/accept, dispatched/claim, in progress/reply, replied/
   feedback, a few on hold), with the triggers a live system would have: a past trigger has
   already fired (NULL), a future one is armed. One open ticket in ten (≈ 1 % of all tickets) has
   something due inside the sweep window (``--window-minutes`` before now): a reminder (40 %),
   an overdue (30 %), a level-2 escalation (10 %) or an auto-close (20 %). Then ``VACUUM ANALYZE``;
3. times each sweep (:func:`service.sla.sweeps.send_reminders`, ``mark_overdue``,
   ``auto_close``), each in its own transaction including the commit, on a first run (claims
   ≈ 1 % of the table, writes events and notifications) and on an immediate second run (finds
   nothing to do);
4. for comparison, in transactions rolled back afterwards: a naive full-table UPDATE of the same
   shape (``SET remind_at = CASE WHEN remind_at <= now THEN NULL ...`` on every row, as a sweep
   without a WHERE clause would), and the sweep's own reminder UPDATE forced to a sequential scan
   (index scans off), i.e. without the partial index.

Notification deliveries are not queued unless a webhook or SMTP host is configured (as in the
default settings); the bench does not configure any.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from sqlmodel import Session  # noqa: E402

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
#: the measured instant: a Wednesday morning (the sweeps take ``now``; nothing reads the clock)
NOW = datetime(2026, 6, 10, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai


# --------------------------------------------------------------------------------------------- build

# the database helpers are shared with bench/intake.py
from tests.scratch_db import build_database as migrate_and_seed  # noqa: E402
from tests.scratch_db import create_database  # noqa: E402

#: One row per ticket ``i`` (``lo``..``hi``). ``v`` draws the ticket's fate, ``d`` its deadlines.
LOAD_SQL = """
WITH ent AS (SELECT row_number() OVER (ORDER BY id) AS rn, id, officer_id, grid_id FROM enterprise),
cat AS (SELECT row_number() OVER (ORDER BY id) AS rn, id, service_type, default_department_id AS dept
        FROM category WHERE default_department_id IS NOT NULL)
INSERT INTO ticket (number, enterprise_id, channel, service_type, category_id, title, description,
    priority, status, lead_department_id, officer_id, grid_id, rating, reopen_count, return_count,
    escalation_level, remind_count, version, submitted_at, accepted_at, dispatched_at, claimed_at,
    replied_at, closed_at, updated_at, accept_by, claim_by, reply_by, feedback_by, due_step, due_at,
    remind_at, overdue_at, level2_at, held_at, hold_seconds, extension_count, overdue_count)
SELECT 'QB' || lpad(g.i::text, 10, '0'), e.id, 'web', c.service_type, c.id, '基准诉求', '基准测试工单',
    CASE WHEN g.i % 7 = 0 THEN 'urgent' ELSE 'normal' END,
    d.status,
    CASE WHEN d.status IN ('dispatched', 'in_progress', 'on_hold', 'replied', 'closed') THEN c.dept END,
    e.officer_id, e.grid_id, CASE WHEN d.status = 'closed' THEN 'satisfied' END, 0, 0,
    d.level, 0, 1, d.submitted, d.submitted + interval '3 hours', d.submitted + interval '4 hours',
    CASE WHEN d.status IN ('in_progress', 'on_hold', 'replied', 'closed') THEN d.submitted + interval '1 day' END,
    CASE WHEN d.status IN ('replied', 'closed') THEN d.submitted + interval '10 days' END,
    CASE WHEN d.status = 'closed' THEN d.submitted + interval '12 days' END,
    :now,
    d.submitted + interval '1 day',
    d.submitted + interval '2 days',
    CASE WHEN d.status = 'submitted' THEN NULL WHEN d.step = 'reply' THEN d.due ELSE d.submitted + interval '21 days' END,
    CASE WHEN d.step = 'feedback' THEN d.due END,
    d.step, d.due,
    CASE WHEN d.remind IS NOT NULL THEN d.remind
         WHEN d.due > :now + interval '1 day' AND d.step <> 'feedback' THEN d.due - interval '1 day' END,
    CASE WHEN d.overdue IS NOT NULL THEN d.overdue
         WHEN d.due > :now AND d.step <> 'feedback' THEN d.due END,
    CASE WHEN d.level2 IS NOT NULL THEN d.level2
         WHEN d.due + interval '7 days' > :now AND d.step <> 'feedback' THEN d.due + interval '7 days' END,
    CASE WHEN d.status = 'on_hold' THEN :now - interval '10 days' * v.r2 END,
    0, 0, d.level
FROM generate_series(:lo, :hi) AS g(i)
JOIN ent e ON e.rn = 1 + g.i % (SELECT count(*) FROM ent)
JOIN cat c ON c.rn = 1 + (g.i / 3) % (SELECT count(*) FROM cat)
CROSS JOIN LATERAL (
    SELECT g.i % 10 = 0 AS open, (g.i / 10) % 100 AS k,
           random() + 0 * g.i AS r1, random() + 0 * g.i AS r2
) v
CROSS JOIN LATERAL (
    -- t: an instant inside the sweep window (now - window, now]
    SELECT :now - :window * v.r1 AS t,
           -- a deadline outside the window: ±30 days around now
           CASE WHEN v.r2 < 0.5 THEN :now - :window - interval '30 days' * v.r1
                ELSE :now + interval '30 days' * v.r1 + interval '1 second' END AS spread
) w
CROSS JOIN LATERAL (
    SELECT
        CASE WHEN NOT v.open THEN 'closed'
             WHEN v.k < 8 THEN 'in_progress'   -- a reminder, overdue or level 2 due in the window
             WHEN v.k < 10 THEN 'replied'      -- an auto-close due in the window
             WHEN v.k < 20 THEN 'submitted'
             WHEN v.k < 30 THEN 'dispatched'
             WHEN v.k < 70 THEN 'in_progress'
             WHEN v.k < 75 THEN 'on_hold'
             ELSE 'replied' END AS status,
        CASE WHEN NOT v.open OR v.k BETWEEN 70 AND 74 THEN NULL
             WHEN v.k < 8 THEN 'reply' WHEN v.k < 10 THEN 'feedback'
             WHEN v.k < 20 THEN 'accept' WHEN v.k < 30 THEN 'claim' WHEN v.k < 70 THEN 'reply'
             ELSE 'feedback' END AS step,
        CASE WHEN NOT v.open OR v.k BETWEEN 70 AND 74 THEN NULL
             WHEN v.k < 4 THEN w.t + interval '1 day'     -- reminder due now, deadline tomorrow
             WHEN v.k < 7 THEN w.t                        -- deadline now
             WHEN v.k < 8 THEN w.t - interval '7 days'    -- deadline a week (5 working days) ago
             WHEN v.k < 10 THEN w.t                       -- feedback deadline now
             WHEN v.k >= 75 THEN :now + interval '7 days' * v.r1 + interval '1 second'  -- feedback ahead
             ELSE w.spread END AS due,
        CASE WHEN v.open AND v.k < 4 THEN w.t END AS remind,
        CASE WHEN v.open AND v.k BETWEEN 4 AND 6 THEN w.t END AS overdue,
        CASE WHEN v.open AND v.k = 7 THEN w.t END AS level2,
        CASE WHEN NOT v.open THEN 0 WHEN v.k = 7 THEN 1
             WHEN v.k >= 10 AND v.k < 70 AND v.r2 < 0.5 THEN 1 ELSE 0 END AS level,
        CASE WHEN v.open THEN :now - interval '40 days' * v.r1 - interval '1 day'
             ELSE :now - interval '730 days' * v.r1 - interval '15 days' END AS submitted
) d
"""


def load_tickets(url: str, n: int, window: timedelta, seed: float = 0.42) -> float:
    """Bulk-load ``n`` tickets; returns the seconds it took (load + index rebuild)."""
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
        conn.execute(sa.text("SET maintenance_work_mem = '1GB'"))
        conn.execute(sa.text("SELECT setseed(:s)"), {"s": seed})
        step = 2_000_000
        for start in range(0, n, step):  # chunks keep each transaction (and its WAL) moderate
            count = min(step, n - start)
            conn.execute(sa.text(LOAD_SQL), {"lo": start + 1, "hi": start + count, "now": NOW, "window": window})
        for _, ddl in indexes:
            conn.execute(sa.text(ddl))
        conn.execute(sa.text("VACUUM ANALYZE ticket"))
        conn.execute(sa.text("VACUUM ANALYZE"))
    engine.dispose()
    return time.perf_counter() - t0


RESET_SQL = """
UPDATE ticket t SET
    status = CASE WHEN x.k < 8 THEN 'in_progress' ELSE 'replied' END,
    due_step = CASE WHEN x.k < 8 THEN 'reply' ELSE 'feedback' END,
    due_at = CASE WHEN x.k < 4 THEN x.t + interval '1 day' WHEN x.k = 7 THEN x.t - interval '7 days' ELSE x.t END,
    remind_at = CASE WHEN x.k < 4 THEN x.t END,
    overdue_at = CASE WHEN x.k < 4 THEN x.t + interval '1 day' WHEN x.k < 7 THEN x.t END,
    level2_at = CASE WHEN x.k < 4 THEN x.t + interval '8 days' WHEN x.k < 7 THEN x.t + interval '7 days'
                     WHEN x.k = 7 THEN x.t END,
    feedback_by = CASE WHEN x.k >= 8 THEN x.t END,
    escalation_level = CASE WHEN x.k = 7 THEN 1 ELSE 0 END, overdue_count = CASE WHEN x.k = 7 THEN 1 ELSE 0 END,
    remind_count = 0, rating = NULL, closed_at = NULL, version = 1, updated_at = :now
FROM (SELECT id, (substr(number, 3)::bigint / 10) % 100 AS k, :now - :window * random() AS t
      FROM ticket WHERE number LIKE 'QB%' AND substr(number, 3)::bigint % 10 = 0
      AND (substr(number, 3)::bigint / 10) % 100 < 10) x
WHERE t.id = x.id
"""


def reset_due(url: str, window: timedelta) -> float:
    """Re-arm what the load made due in the window (after a run claimed it), forget the sweeps'
    events and notifications, VACUUM ANALYZE: ``--reuse`` measures a first run again."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    t0 = time.perf_counter()
    with engine.connect() as conn:
        conn.execute(sa.text("DELETE FROM notification"))
        conn.execute(sa.text("DELETE FROM ticket_event WHERE actor_role = 'system'"))
        conn.execute(sa.text(RESET_SQL), {"now": NOW, "window": window})
        for table in ("ticket", "ticket_event", "notification"):
            conn.execute(sa.text(f"VACUUM ANALYZE {table}"))
    engine.dispose()
    return time.perf_counter() - t0


def census(url: str, window: timedelta) -> dict[str, int]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        row = conn.execute(sa.text("""
            SELECT count(*) AS tickets,
                   count(*) FILTER (WHERE status <> 'closed') AS open,
                   count(*) FILTER (WHERE remind_at <= :now) AS remind_due,
                   count(*) FILTER (WHERE overdue_at <= :now) AS overdue_due,
                   count(*) FILTER (WHERE level2_at <= :now AND overdue_at IS NULL) AS level2_due,
                   count(*) FILTER (WHERE status = 'replied' AND due_step = 'feedback' AND due_at <= :now) AS close_due,
                   count(*) FILTER (WHERE remind_at IS NOT NULL) AS remind_armed,
                   count(*) FILTER (WHERE overdue_at IS NOT NULL) AS overdue_armed,
                   count(*) FILTER (WHERE level2_at IS NOT NULL) AS level2_armed,
                   count(*) FILTER (WHERE remind_at <= :now - :window OR overdue_at <= :now - :window
                                    OR level2_at <= :now - :window) AS stale
            FROM ticket"""), {"now": NOW, "window": window}).mappings().one()
        size = conn.execute(sa.text("SELECT pg_size_pretty(pg_total_relation_size('ticket'))")).scalar_one()
    engine.dispose()
    return {**row, "size": size}


# --------------------------------------------------------------------------------------------- measure

def time_sweeps(url: str) -> list[tuple[str, float, float, str, str]]:
    """``(sweep, first s, second s, first result, second result)``, each run committed."""
    from service.db import make_engine
    from service.sla import sweeps

    engine = make_engine(url)
    with Session(engine) as s:  # warm the connection, the statement cache and the calendar
        sweeps.scan(s, NOW - timedelta(days=400))
        s.rollback()
    rows = []
    for name, fn in (("send_reminders", sweeps.send_reminders), ("mark_overdue", sweeps.mark_overdue),
                     ("auto_close", sweeps.auto_close)):
        results = []
        for _ in range(2):
            with Session(engine) as s:
                t0 = time.perf_counter()
                result = fn(s, NOW)
                s.commit()
                results.append((time.perf_counter() - t0, result))
        rows.append((name, results[0][0], results[1][0], str(results[0][1]), str(results[1][1])))
    engine.dispose()
    return rows


NAIVE_FULL = """UPDATE ticket SET remind_count = remind_count + coalesce((remind_at <= :now)::int, 0),
    remind_at = CASE WHEN remind_at <= :now THEN NULL ELSE remind_at END"""
CLAIM_REMINDERS = """UPDATE ticket SET remind_at = NULL, remind_count = remind_count + 1, version = version + 1,
    updated_at = :now WHERE remind_at <= :now RETURNING id, status, due_step, due_at"""


def time_naive(url: str, repeat: int = 1) -> list[tuple[str, float]]:
    engine = sa.create_engine(url)
    out = []
    for label, sql, setup in (
        ("naive full-table UPDATE (every row)", NAIVE_FULL, None),
        ("reminder UPDATE, seq scan (no index)", CLAIM_REMINDERS,
         "SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_indexonlyscan = off"),
    ):
        times = []
        for _ in range(repeat):
            with engine.connect() as conn:
                trans = conn.begin()
                if setup:
                    for stmt in setup.split(";"):
                        conn.execute(sa.text(stmt))
                t0 = time.perf_counter()
                conn.execute(sa.text(sql), {"now": NOW}).all() if "RETURNING" in sql else \
                    conn.execute(sa.text(sql), {"now": NOW})
                times.append(time.perf_counter() - t0)
                trans.rollback()
        out.append((label, statistics.median(times)))
    engine.dispose()
    return out


def explain(url: str) -> None:
    """EXPLAIN ANALYZE the claim statements (rolled back)."""
    engine = sa.create_engine(url)
    statements = {
        "reminders": CLAIM_REMINDERS,
        "overdue": "UPDATE ticket SET overdue_at = NULL WHERE overdue_at <= :now RETURNING id",
        "level 2": "UPDATE ticket SET level2_at = NULL WHERE level2_at <= :now AND overdue_at IS NULL RETURNING id",
        "auto-close": "UPDATE ticket SET status = 'closed' WHERE status = 'replied' AND due_step = 'feedback' "
                      "AND due_at <= :now RETURNING id",
    }
    for label, sql in statements.items():
        with engine.connect() as conn:
            trans = conn.begin()
            plan = conn.execute(sa.text("EXPLAIN (ANALYZE, BUFFERS) " + sql), {"now": NOW}).scalars().all()
            trans.rollback()
        print(f"\n-- {label}\n" + "\n".join(plan))
    engine.dispose()


# --------------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tickets", type=int, default=1_000_000)
    ap.add_argument("--pg-url", default=PG_SERVER, help="PostgreSQL server URL (no database name)")
    ap.add_argument("--db", default="qifu_bench_sla")
    ap.add_argument("--window-minutes", type=float, default=15.0, help="the sweep window (time since the last sweep)")
    ap.add_argument("--reuse", action="store_true", help="measure the existing database again (no rebuild: "
                    "the due tickets are re-armed, the sweeps' events and notifications deleted)")
    ap.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE the claim statements first")
    ap.add_argument("--no-naive", action="store_true", help="skip the naive full-table UPDATE comparison")
    ap.add_argument("--drop", action="store_true", help="drop the database at the end")
    args = ap.parse_args(argv)
    window = timedelta(minutes=args.window_minutes)
    server = args.pg_url.rstrip("/")

    if args.reuse:
        url = f"{server}/{args.db}"
        print(f"re-armed the due tickets: {reset_due(url, window):.1f} s", flush=True)
    else:
        t0 = time.perf_counter()
        url = create_database(server, args.db)
        migrate_and_seed(url)
        print(f"schema + seeds: {time.perf_counter() - t0:.1f} s", flush=True)
        print(f"loading {args.tickets:,} tickets ...", flush=True)
        print(f"load + indexes + VACUUM ANALYZE: {load_tickets(url, args.tickets, window):.1f} s", flush=True)
    c = census(url, window)
    print(f"tickets {c['tickets']:,} ({c['size']}), open {c['open']:,}; due in the window: reminders "
          f"{c['remind_due']:,}, overdue {c['overdue_due']:,}, level 2 {c['level2_due']:,}, auto-close "
          f"{c['close_due']:,}; armed: remind {c['remind_armed']:,}, overdue {c['overdue_armed']:,}, "
          f"level 2 {c['level2_armed']:,}; stale (due before the window) {c['stale']:,}")
    if args.explain:
        explain(url)

    sweeps_rows = time_sweeps(url)
    naive_rows = [] if args.no_naive else time_naive(url)
    if naive_rows:  # the rolled-back full-table UPDATE left a dead version of every row
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text("VACUUM ANALYZE ticket"))
        engine.dispose()
    n = c["tickets"]
    print(f"\nSLA sweeps over {n:,} tickets (now = {NOW.isoformat()}, window {args.window_minutes:g} min)")
    print(f"{'sweep':<16} {'1st run':>9} {'2nd run':>9}  {'1st claimed':<18} {'2nd':<8}")
    for name, first, second, r1, r2 in sweeps_rows:
        print(f"{name:<16} {first * 1000:>7.0f} ms {second * 1000:>6.1f} ms  {r1:<18} {r2:<8}")
    total1 = sum(r[1] for r in sweeps_rows)
    total2 = sum(r[2] for r in sweeps_rows)
    print(f"{'all three':<16} {total1 * 1000:>7.0f} ms {total2 * 1000:>6.1f} ms")
    for label, seconds in naive_rows:
        print(f"{label:<40} {seconds * 1000:>7.0f} ms (rolled back)")
    ok = all(r[1] < 1.0 for r in sweeps_rows) and all(r[2] < 0.1 for r in sweeps_rows)
    print("targets (each sweep < 1 s, second run < 100 ms):", "met" if ok else "MISSED")

    if args.drop:
        admin = sa.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)'))
        admin.dispose()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

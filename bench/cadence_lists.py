"""Daily inquiry lists benchmark (SPEC §5, issue #4): building every officer's 08:30 list for
10,000 enterprises and 200 officers, with a year of contact history.

    uv run python bench/cadence_lists.py                 # 10,000 enterprises, 200 officers
    uv run python bench/cadence_lists.py --enterprises 50000 --officers 1000 --repeat 5

What it does:

1. builds a fresh PostgreSQL database (``--db``, default ``qifu_bench_cadence``; dropped and
   recreated): Alembic migrations to head, then the seed county without enterprises;
2. adds ``--officers`` officers spread over the county's 43 grids (officer–grid links; two thirds
   of the grids get officers, so some enterprises need the fallback assignment), and
   ``--enterprises`` enterprises (a sixth tagged 重点, 60 % with a point-to-point officer);
3. adds a year of contact history: each enterprise contacted every 7 (重点) or 30 days up to a
   random phase, so a realistic share is due on the measured day (~12 inquiries per enterprise);
4. times :func:`service.cadences.inquiries.build_daily_lists` for Monday 2026-03-02 ``--repeat``
   times, each in its own transaction rolled back afterwards, and prints the median and the worst
   wall time with the number of list items written.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"


def build(db: str, n_enterprises: int, n_officers: int) -> str:
    import sqlalchemy as sa
    from sqlmodel import Session

    from service.db import make_engine

    admin = sa.create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{db}"'))
    admin.dispose()
    url = f"{PG_SERVER}/{db}"
    from alembic import command

    from qifu.cli import _alembic_config

    cfg = _alembic_config()
    cfg.attributes["url"] = url
    command.upgrade(cfg, "head")
    from seeds.loader import load_seeds

    engine = make_engine(url)
    rnd = random.Random(20260302)
    with Session(engine) as s:
        load_seeds(s, enterprises=0)
        s.commit()
        grids = [g for (g,) in s.execute(sa.text("SELECT id FROM grid ORDER BY id"))]
        now = datetime(2026, 3, 1, tzinfo=UTC)
        s.execute(sa.text(
            "INSERT INTO user_account (username, full_name, password_hash, role, is_active, created_at) "
            "SELECT 'bench_officer' || i, '专员' || i, 'x', 'officer', true, :now FROM generate_series(1, :n) i"),
            {"n": n_officers, "now": now})
        officers = [o for (o,) in s.execute(sa.text(
            "SELECT id FROM user_account WHERE username LIKE 'bench_officer%' ORDER BY id"))]
        staffed = grids[: len(grids) * 2 // 3]
        links = {(o, staffed[i % len(staffed)]) for i, o in enumerate(officers)}
        s.execute(sa.text("INSERT INTO officer_grid (officer_id, grid_id) VALUES (:o, :g) ON CONFLICT DO NOTHING"),
                  [{"o": o, "g": g} for o, g in links])
        rows = []
        for i in range(n_enterprises):
            key = rnd.random() < 1 / 6
            rows.append({"uscc": None, "ext": f"bench-{i}", "name": f"企业{i}", "grid": rnd.choice(grids),
                         "tags": '["重点"]' if key else "[]",
                         "officer": rnd.choice(officers) if rnd.random() < 0.6 else None, "now": now})
        s.execute(sa.text("INSERT INTO enterprise (uscc, external_ref, name, grid_id, tags, officer_id, created_at) "
                          "VALUES (:uscc, :ext, :name, :grid, CAST(:tags AS json), :officer, :now)"), rows)
        ents = s.execute(sa.text("SELECT id, officer_id, tags::text LIKE '%重点%' FROM enterprise")).all()
        inquiries = []
        start, day = date(2025, 3, 2), date(2026, 3, 2)
        for ent_id, officer_id, key in ents:
            step = 7 if key else 30
            d = day - timedelta(days=rnd.randint(1, step + 3))
            while d >= start:
                inquiries.append({"e": ent_id, "o": officer_id or officers[0], "d": d,
                                  "at": datetime.combine(d, datetime.min.time(), tzinfo=UTC)})
                d -= timedelta(days=step)
        for k in range(0, len(inquiries), 20000):
            s.execute(sa.text(
                "INSERT INTO inquiry (enterprise_id, officer_id, method, finding, ticket_ids, contacted_at, "
                "contact_date, created_at) VALUES (:e, :o, 'visit', 'none', CAST('[]' AS json), :at, :d, :at)"),
                inquiries[k:k + 20000])
        s.commit()
        s.execute(sa.text("ANALYZE"))
        print(f"built: {n_enterprises} enterprises, {len(officers)} officers, {len(links)} officer-grid links, "
              f"{len(inquiries)} inquiries")
    engine.dispose()
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="qifu_bench_cadence")
    parser.add_argument("--enterprises", type=int, default=10_000)
    parser.add_argument("--officers", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    url = build(args.db, args.enterprises, args.officers)

    from sqlmodel import Session

    from service.cadences import inquiries
    from service.db import make_engine

    engine = make_engine(url)
    times, items = [], 0
    for _ in range(args.repeat):
        with engine.connect() as conn:
            trans = conn.begin()
            with Session(bind=conn) as s:
                t0 = time.perf_counter()
                items = inquiries.build_daily_lists(s, date(2026, 3, 2))
                times.append(time.perf_counter() - t0)
            trans.rollback()
    engine.dispose()
    print(f"build_daily_lists(2026-03-02): {args.enterprises} enterprises, {args.officers} officers -> "
          f"{items} list items; median {statistics.median(times) * 1000:.0f} ms, "
          f"worst {max(times) * 1000:.0f} ms over {args.repeat} runs")


if __name__ == "__main__":
    main()

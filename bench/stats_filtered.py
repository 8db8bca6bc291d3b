"""Filtered summaries (the rollup's fine level, ``stats_day``) on a ``bench/stats.py`` database,
through the service: the figures of docs/performance.md "Filtered summaries (the fine level) at 10 M".

    uv run python bench/stats_filtered.py --db stats_bench10m
    uv run python bench/stats_filtered.py --db stats_bench10m --filter channel=hotline --groupings month

Times :func:`service.stats.service.summary` as ``--user`` (a county supervisor: unlimited
visibility, so the filter alone sends it to the fine level) with ``Filters(<--filter>)`` over the
bench's one month, one year and five years (``bench.stats.PERIODS``, "now" = ``bench.stats.NOW``),
``--repeat`` times per grouping, and prints each time (ms), the path taken and the load average.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402
from sqlmodel import Session  # noqa: E402

from bench.stats import NOW, PERIODS, supervisor_actor  # noqa: E402
from service.stats.service import Filters, summary, summary_path  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="qifu_bench_stats")
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    parser.add_argument("--filter", default="service_type=problem", help="FIELD=VALUE of service.stats.service.Filters")
    parser.add_argument("--groupings", default="department,month")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--user", default="supervisor1")
    args = parser.parse_args()
    field, value = args.filter.split("=", 1)
    filters = Filters(**{field: int(value) if field.endswith("_id") else value})
    engine = sa.create_engine(f"{args.pg_url}/{args.db}")
    with Session(engine) as session:
        actor = supervisor_actor(session, args.user)
        for period, (first, last) in PERIODS.items():
            for grouping in args.groupings.split(","):
                times = []
                for _ in range(args.repeat):
                    started = time.perf_counter()
                    summary(session, actor, first, last, grouping, filters, now=NOW)
                    times.append(round((time.perf_counter() - started) * 1000))
                    session.rollback()
                path = summary_path(session, actor, first, last, grouping, filters)
                load = "/".join(f"{x:.1f}" for x in os.getloadavg())
                print(f"{period:8} {grouping:12} {args.filter}: {times} ms (path {path}; load {load})", flush=True)
    engine.dispose()


if __name__ == "__main__":
    main()

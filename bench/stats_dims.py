"""Time the statistics summary's two rollup levels on an existing database (``QIFU_DATABASE_URL``,
e.g. the dense database built by ``bench/stats.py`` on branch wip/statsbench): one month
(2026-05) by department, category and month, unfiltered (the per-dimension level, "dim") and
filtered by service type (``stats_day``, "fine"), then the bare reads of both levels for the same
unfiltered query, and a check that the dim path's counts equal the exact recount.

    QIFU_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/qifu_bench_statsbench_dense \\
        uv run python bench/stats_dims.py [repetitions]
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from datetime import UTC, date, datetime

import sqlalchemy as sa
from sqlmodel import Session

from service.auth.actor import Actor
from service.calendar.core import EPOCH
from service.db import make_engine
from service.stats import rollup
from service.stats.service import Filters, summary, summary_path


def _timed(fn, reps: int) -> str:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return (f"p50={statistics.median(times) * 1000:6.0f} ms max={max(times) * 1000:6.0f} ms "
            f"load={os.getloadavg()[0]:.2f}")


def main() -> None:
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    engine = make_engine(os.environ["QIFU_DATABASE_URL"])
    first, last = date(2026, 5, 1), date(2026, 5, 31)
    dn_from, dn_to = (first - EPOCH).days, (last - EPOCH).days
    now = datetime(2026, 6, 10, tzinfo=UTC)
    actor = Actor.system()
    with Session(engine) as s:
        for g in ("department", "category", "month"):
            for label, filters in (("unfiltered", None), ("service_type=problem", Filters(service_type="problem"))):
                path = summary_path(s, actor, first, last, g, filters)
                print(f"summary {g:10} {label:21} path={path:5}",
                      _timed(lambda g=g, filters=filters: summary(s, actor, first, last, g, filters, now=now), reps),
                      flush=True)
        for g in ("department", "category", "month"):
            print(f"read    {g:10} fine (stats_day)     ",
                  _timed(lambda g=g: rollup.read(s, g, dn_from, dn_to, lambda c: sa.true()), reps), flush=True)
            print(f"read    {g:10} dim (stats_dim_day)  ",
                  _timed(lambda g=g: rollup.read_dims(s, g, dn_from, dn_to), reps), flush=True)
        for g in ("department", "month"):
            a = summary(s, actor, first, last, g, now=now)
            b = summary(s, actor, first, last, g, now=now, exact=True)
            same = a[1].counts() == b[1].counts() and {r.key: r.counts() for r in a[0]} == \
                {r.key: r.counts() for r in b[0]}
            print(f"{g}: dim counts == exact recount: {same}")


if __name__ == "__main__":
    main()

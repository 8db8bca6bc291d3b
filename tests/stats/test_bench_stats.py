"""The statistics benchmark's harness (bench/stats.py, issue 10) on a small database: the chunked
load gives the documented mix and restores every index, and the timing run's recount and its
comparison with the exact path (the rollup against the raw rows) hold."""

from __future__ import annotations

import argparse
import os

import pytest
import sqlalchemy as sa

from bench import stats as bench
from tests.scratch_db import scratch_database

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench_url() -> str:
    with scratch_database(bench.PG_SERVER, f"qifu_test_benchstats_{os.getpid()}", enterprises=50) as url:
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            before = set(conn.execute(sa.text("SELECT indexdef FROM pg_indexes WHERE tablename = 'ticket'"))
                         .scalars())
        bench.load_tickets(url, 3000, step=1000)
        bench.fill_rollup(url)
        with engine.connect() as conn:
            after = set(conn.execute(sa.text("SELECT indexdef FROM pg_indexes WHERE tablename = 'ticket'"))
                        .scalars())
        engine.dispose()
        assert after == before  # dropped for the load, rebuilt exactly as the migrations define them
        yield url


def test_load_gives_the_documented_mix(bench_url: str) -> None:
    engine = sa.create_engine(bench_url)
    with engine.connect() as conn:
        n, statuses, channels, first, last, reopened, returned = conn.execute(sa.text(
            "SELECT count(*), count(DISTINCT status), count(DISTINCT channel), min(submitted_at), "
            "max(submitted_at), count(*) FILTER (WHERE reopen_count > 0), "
            "count(*) FILTER (WHERE return_count > 0) FROM ticket")).one()
        numbers = conn.execute(sa.text("SELECT count(DISTINCT number) FROM ticket")).scalar_one()
    engine.dispose()
    assert n == numbers == 3000
    assert statuses >= 6 and channels == 8
    assert (last - first).days > 4 * 365 and last <= bench.NOW
    assert 0 < reopened < n // 10 and 0 < returned < n // 10


def test_service_run_recounts(bench_url: str) -> None:
    args = argparse.Namespace(groupings="department,region,day", periods="1y", via="service", repeat=1,
                              plain_repeat=1, drill_repeat=1, port=0, workers=1, user="supervisor1",
                              exact_check="1y")
    meta: dict = {}
    results = bench.run(args, bench_url, meta)
    summaries = [r for r in results if r["grouping"] in ("department", "region", "day")]
    assert meta["tickets"] == 3000
    assert len(summaries) == 3 and all(r["recount"] == "ok" and r["tickets"] > 0 for r in summaries)
    assert {r["grouping"] for r in results} >= {"ranking monthly", "ranking quarterly"}
    assert meta["exact_check"].startswith("1 year, every grouping: ok"), meta["exact_check"]

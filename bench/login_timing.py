"""How long a failed login takes for a real user, an inactive one and an unknown name (issue 11).

The three must cost the same (one Argon2 verification each), or the answer time tells which
accounts exist. Builds a scratch PostgreSQL database ``qifu_bench_login`` (dropped afterwards),
calls ``POST /api/v1/auth/token`` in process (``TestClient``) ``--rounds`` times per case, the
cases interleaved, with a fresh login throttle before each call, and prints the median and the
10th/90th percentiles in milliseconds::

    uv run python bench/login_timing.py --rounds 30
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("QIFU_ENVIRONMENT", "test")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    args = parser.parse_args()

    from fastapi.testclient import TestClient
    from sqlmodel import Session, select

    from qifu.main import create_app
    from service.auth.login import login_throttle
    from service.config import get_settings
    from service.db import get_engine
    from service.users.models import User
    from tests.scratch_db import scratch_database

    with scratch_database(args.pg_url, "qifu_bench_login", enterprises=20) as url:
        os.environ["QIFU_DATABASE_URL"] = url
        get_settings.cache_clear()
        get_engine.cache_clear()
        with Session(get_engine()) as s:  # an inactive user
            user = s.exec(select(User).where(User.username == "ent2")).one()
            user.is_active = False
            s.commit()
        cases = {"real user, wrong password": "ent1", "inactive user": "ent2", "unknown name": "nobody-here"}
        times: dict[str, list[float]] = {case: [] for case in cases}
        with TestClient(create_app()) as client:
            for _ in range(args.rounds):
                for case, username in cases.items():
                    login_throttle.cache_clear()
                    started = time.perf_counter()
                    resp = client.post("/api/v1/auth/token", data={"username": username, "password": "wrong-pw-1"})
                    times[case].append((time.perf_counter() - started) * 1000)
                    assert resp.status_code == 401, resp.text
        get_engine().dispose()
    for case, values in times.items():
        deciles = statistics.quantiles(values, n=10)
        print(f"{case:28s} median {statistics.median(values):6.1f} ms   p10 {deciles[0]:6.1f}   "
              f"p90 {deciles[-1]:6.1f}   ({len(values)} logins)")


if __name__ == "__main__":
    main()

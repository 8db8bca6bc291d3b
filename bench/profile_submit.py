"""CPU cost of one ``POST /api/v1/tickets`` inside the API process, without network or load
generator: the ASGI application is called directly, one request at a time, on a fresh database.

    uv run python bench/profile_submit.py                 # CPU ms per request, SQL statements per request
    uv run python bench/profile_submit.py --profile       # plus a cProfile summary (top functions)
    uv run python bench/profile_submit.py --pyinstrument  # plus a pyinstrument tree (if installed)
    uv run python bench/profile_submit.py --open311       # POST /open311/v2/requests.json instead

It answers "where does the API's CPU go" on a busy, shared machine where the throughput
benchmark (``bench/intake.py``) is noisy: process CPU time is not inflated by other processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.intake import DESCRIPTION, build_database, create_database  # noqa: E402


async def _call(app, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "state": {},
    }
    sent = False
    status, chunks = 0, []

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)

    async def send(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    p.add_argument("--db", default="qifu_profile")
    p.add_argument("-n", type=int, default=2000, help="measured requests (default 2000)")
    p.add_argument("--profile", action="store_true", help="print a cProfile summary")
    p.add_argument("--pyinstrument", action="store_true", help="print a pyinstrument tree")
    p.add_argument("--idempotency-key", action="store_true")
    p.add_argument("--open311", action="store_true",
                   help="Open311 GeoReport v2 POSTs (form-encoded, an API key bound to ent1's enterprise)")
    args = p.parse_args(argv)

    url = create_database(args.pg_url, args.db)
    build_database(url)
    os.environ["QIFU_DATABASE_URL"] = url
    os.environ.setdefault("QIFU_ENVIRONMENT", "development")
    if args.open311:  # the per-key throttle runs but does not refuse
        os.environ.setdefault("QIFU_OPEN311_REQUESTS_PER_KEY_PER_MINUTE", "100000000")

    import sqlalchemy as sa

    from service.config import get_settings
    from service.db import get_engine

    get_settings.cache_clear()  # build_database() read the settings before the URL was set
    get_engine.cache_clear()
    from qifu.app import app

    statements = [0]
    sa.event.listen(get_engine(), "before_cursor_execute", lambda *a: statements.__setitem__(0, statements[0] + 1))

    async def run() -> None:
        from service.db import close_async_pools, open_async_pools

        await open_async_pools()  # as the application's lifespan does under uvicorn
        try:
            await measure()
        finally:
            await close_async_pools()

    async def measure() -> None:
        status, body = await _call(app, "POST", "/api/v1/auth/token",
                                   {"content-type": "application/x-www-form-urlencoded"},
                                   b"username=ent1&password=qifu-demo-2026")
        assert status == 200, body
        token = json.loads(body)["access_token"]
        headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}

        key = None
        if args.open311:
            from urllib.parse import urlencode

            from bench.intake import open311_keys

            key = open311_keys(url)[0]

        async def submit(i: int) -> None:
            if key is not None:
                payload = urlencode({"api_key": key, "service_code": "problem.labour", "lat": "30.74",
                                     "long": "120.95", "description": f"招工难 {i}：{DESCRIPTION}"}).encode()
                status, body = await _call(app, "POST", "/open311/v2/requests.json",
                                           {"content-type": "application/x-www-form-urlencoded"}, payload)
                assert status == 201, body
                return
            h = {**headers, "idempotency-key": f"k{i}"} if args.idempotency_key else headers
            payload = json.dumps({"title": f"招工难 {i}", "description": DESCRIPTION,
                                  "category_code": "problem.labour"}, ensure_ascii=False).encode()
            status, body = await _call(app, "POST", "/api/v1/tickets", h, payload)
            assert status == 201, body

        for i in range(200):  # warm-up: pools, caches, prepared statements
            await submit(-i - 1)
        statements[0] = 0
        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        elif args.pyinstrument:
            from pyinstrument import Profiler

            profiler = Profiler(async_mode="disabled")
            profiler.start()
        chunks: list[float] = []  # CPU ms per request of each chunk of 100
        c0, t0 = time.process_time(), time.perf_counter()
        for start in range(0, args.n, 100):
            cs = time.process_time()
            for i in range(start, min(args.n, start + 100)):
                await submit(i)
            chunks.append(1000 * (time.process_time() - cs) / (min(args.n, start + 100) - start))
        c1, t1 = time.process_time(), time.perf_counter()
        if args.profile:
            import pstats

            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        elif args.pyinstrument:
            profiler.stop()
            print(profiler.output_text(unicode=True, color=False, show_all=False))
        chunks.sort()
        print(f"{args.n} requests, one at a time, in-process: CPU per request {1000 * (c1 - c0) / args.n:.3f} ms "
              f"(best chunk of 100: {chunks[0]:.3f} ms, median chunk: {chunks[len(chunks) // 2]:.3f} ms), "
              f"wall {1000 * (t1 - t0) / args.n:.3f} ms, {statements[0] / args.n:.1f} SQL statements per request "
              "through SQLAlchemy (an enterprise's submission on PostgreSQL is one psycopg statement, not counted)")

    asyncio.run(run())
    get_engine().dispose()
    import sqlalchemy as sa2

    admin = sa2.create_engine(f"{args.pg_url}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa2.text(f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)'))
    admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Reliability runs (SPEC §9; issue #11), each printing its figures (docs/reliability.md).

    uv run python bench/reliability.py pg-restart                  # 64 clients, 60 s, PostgreSQL restarted twice
    uv run python bench/reliability.py pg-restart --clients 16 --duration 12
    uv run python bench/reliability.py worker-kill --kills 100     # the run of tests/reliability/test_reliability.py, bigger
    uv run python bench/reliability.py redis-down --submissions 10000
    uv run python bench/reliability.py deliver-rate --deliveries 2000   # one worker's webhook deliveries per second

``pg-restart``: a private PostgreSQL cluster (``bench.harness.PrivatePostgres``: initdb on a free
port; the shared server is never touched), migrated and seeded; the production command ``qifu serve
--workers 2`` on it; ``--clients`` threads each submitting ``POST /api/v1/tickets`` back to back,
every submission with its own ``Idempotency-Key`` and retried with that key on 503 or a broken
connection until it is acknowledged (201). PostgreSQL is restarted (fast shutdown: every
connection cut) ``--restarts`` times, evenly spread over ``--duration`` seconds. Afterwards, read
from the database: the run's tickets = the distinct keys acknowledged, no key with two tickets,
every acknowledged number is the ticket of its key, and no 500 was answered.

The other two runs live in tests/reliability/test_reliability.py (their CI sizes) and are called from here
with the bench sizes.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.harness import ApiServer, PrivatePostgres  # noqa: E402


@dataclass
class ClientStats:
    acked: dict[str, str] = field(default_factory=dict)  # Idempotency-Key -> ticket number
    statuses: Counter = field(default_factory=Counter)  # every answer's status (and "conn" errors)
    retries: int = 0
    unacked: list[str] = field(default_factory=list)  # keys given up (none expected)
    latencies: list[float] = field(default_factory=list)  # seconds, acknowledged submissions, first try to ack


def _client(url: str, headers: dict, marker: str, stop: threading.Event, stats: ClientStats,
            give_up_after: float = 90.0) -> None:
    with httpx.Client(base_url=url, timeout=15.0) as http:
        i = 0
        while not stop.is_set():
            i += 1
            key = uuid.uuid4().hex
            body = {"title": f"{marker} {i}", "description": "重启演练：断电影响生产。", "category_code": "problem.power"}
            first = time.monotonic()
            while True:
                try:
                    resp = http.post("/api/v1/tickets", json=body, headers={**headers, "Idempotency-Key": key})
                except httpx.TransportError:
                    stats.statuses["conn"] += 1
                    code = None
                else:
                    code = resp.status_code
                    stats.statuses[code] += 1
                if code in (200, 201):
                    stats.acked[key] = resp.json()["number"]
                    stats.latencies.append(time.monotonic() - first)
                    break
                if code is not None and code < 500 and code != 429:
                    stats.unacked.append(key)  # a 4xx: the body is fine, so none is expected
                    break
                if time.monotonic() - first > give_up_after:
                    stats.unacked.append(key)
                    break
                stats.retries += 1
                time.sleep(random.uniform(0.05, 0.25))


def _tokens(db_url: str, n: int) -> list[dict]:
    from sqlmodel import Session, select

    from service.auth.security import create_access_token
    from service.db import make_engine
    from service.users.models import User

    engine = make_engine(db_url)
    with Session(engine) as s:
        users = s.exec(select(User).where(User.role == "enterprise", User.enterprise_id.is_not(None))
                       .order_by(User.id).limit(n)).all()
        tokens = [{"Authorization": "Bearer " + create_access_token(u.id, u.role)[0]} for u in users]
    engine.dispose()
    return tokens


def _check(db_url: str, marker: str, stats: ClientStats) -> dict:
    import sqlalchemy as sa

    from service.db import make_engine

    engine = make_engine(db_url)
    with engine.connect() as conn:
        tickets = conn.execute(sa.text("SELECT number FROM ticket WHERE title LIKE :m"),
                               {"m": f"{marker} %"}).scalars().all()
        keys = dict(conn.execute(sa.text(
            "SELECT k.key, t.number FROM idempotency_key k JOIN ticket t ON t.id = k.ticket_id "
            "WHERE t.title LIKE :m"), {"m": f"{marker} %"}).all())
    engine.dispose()
    wrong = [k for k, number in stats.acked.items() if keys.get(k) != number]
    return {"tickets": len(tickets), "distinct_tickets": len(set(tickets)), "acked_keys": len(stats.acked),
            "key_rows": len(keys), "acked_with_other_ticket": len(wrong), "unacked": len(stats.unacked),
            "http_500": stats.statuses.get(500, 0),
            "ok": (len(tickets) == len(set(tickets)) == len(stats.acked) == len(keys) and not wrong
                   and not stats.unacked and not any(s >= 500 and s != 503 for s in stats.statuses if s != "conn"))}


def pg_restart(clients: int = 64, duration: float = 60.0, restarts: int = 2, workers: int = 2,
               enterprises: int = 64, verbose: bool = True) -> dict:
    """Run the PostgreSQL-restart scenario (module docstring); returns its figures and ``ok``."""
    from tests.scratch_db import build_database, create_database

    say = print if verbose else (lambda *a, **k: None)
    pg = PrivatePostgres()
    server = None
    try:
        started = time.monotonic()
        pg.start()
        db_url = create_database(pg.server_url, "qifu_restart")
        build_database(db_url, enterprises=enterprises)
        say(f"private PostgreSQL on port {pg.port} ready in {time.monotonic() - started:.1f} s")
        server = ApiServer({"QIFU_DATABASE_URL": db_url, "QIFU_REDIS_URL": "", "QIFU_WEBHOOK_URL": "",
                            "QIFU_SMTP_HOST": ""}, workers=workers).start()
        tokens = _tokens(db_url, min(clients, 20))
        marker = f"restart-{uuid.uuid4().hex[:8]}"
        stop = threading.Event()
        stats = [ClientStats() for _ in range(clients)]
        threads = [threading.Thread(target=_client, args=(server.url, tokens[i % len(tokens)], marker, stop, stats[i]),
                                    daemon=True) for i in range(clients)]
        began = time.monotonic()
        for t in threads:
            t.start()
        downtimes = []
        for r in range(restarts):
            time.sleep(max(0.0, began + duration * (r + 1) / (restarts + 1) - time.monotonic()))
            t0 = time.monotonic()
            pg.restart()
            downtimes.append(round(time.monotonic() - t0, 2))
            say(f"restart {r + 1}: PostgreSQL back after {downtimes[-1]} s")
        time.sleep(max(0.0, began + duration - time.monotonic()))
        stop.set()
        for t in threads:
            t.join(timeout=120)
        elapsed = time.monotonic() - began
        total = ClientStats()
        for s in stats:
            total.acked.update(s.acked)
            total.statuses.update(s.statuses)
            total.retries += s.retries
            total.unacked += s.unacked
            total.latencies += s.latencies
        server.stop()
        log_path = Path(tempfile.gettempdir()) / f"qifu-{marker}-server.log"
        log_path.write_text("".join(server.lines), encoding="utf-8")
        server = None
        result = _check(db_url, marker, total)
        result["server_log"] = str(log_path)
        lat = sorted(total.latencies)
        result.update({
            "clients": clients, "duration_s": round(elapsed, 1), "restarts": restarts, "restart_seconds": downtimes,
            "statuses": {str(k): v for k, v in sorted(total.statuses.items(), key=lambda kv: str(kv[0]))},
            "retries": total.retries, "acked_per_s": round(len(total.acked) / elapsed, 1),
            "p50_ms": round(lat[len(lat) // 2] * 1000, 1) if lat else None,
            "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 1) if lat else None,
            "max_ms": round(lat[-1] * 1000, 1) if lat else None,
        })
        say(json.dumps(result, ensure_ascii=False, indent=1))
        return result
    finally:
        if server is not None:
            server.stop()
        pg.cleanup()


def _with_db_and_redis(args) -> dict:
    """The worker-kill and Redis-down runs of tests/reliability/test_reliability.py at bench sizes, on a scratch
    database of the shared PostgreSQL (``--pg-url``) and a private ``redis-server``."""
    import os

    os.environ.setdefault("QIFU_ENVIRONMENT", "test")
    from tests.reliability.test_reliability import redis_down_run, worker_kill_run
    from tests.scratch_db import scratch_database
    from tests.workers.test_celery_integration import PrivateRedis

    with scratch_database(args.pg_url, f"qifu_bench_rel_{uuid.uuid4().hex[:6]}", enterprises=20) as url:
        redis = PrivateRedis()
        redis.start()
        try:
            if args.run == "worker-kill":
                return worker_kill_run(url, redis, kills=args.kills, seed=args.seed, whole_every=args.whole_every,
                                       per_cycle=(args.armed, args.closing))
            return redis_down_run(url, redis, submissions=args.submissions, stale_seconds=args.stale_seconds,
                                  stall_seconds=args.stall_seconds)
        finally:
            if redis.proc is not None:
                redis.stop()


def deliver_rate(pg_url: str, deliveries: int = 2000, per_task: int = 1) -> dict:
    """One solo Celery worker (as in the Redis-down run) delivering ``deliveries`` webhook
    deliveries queued as ``notifications.deliver`` messages of ``per_task`` ids each (a
    submission or an action queues one or two); returns deliveries per second from the first
    message to the last ``sent``, and whether each reached the receiver exactly once."""
    import os

    os.environ.setdefault("QIFU_ENVIRONMENT", "test")
    import sqlalchemy as sa

    from service.db import make_engine
    from tests import factories as f
    from tests.notifications.test_notifications import SECRET, WebhookReceiver, wait_until
    from tests.scratch_db import scratch_database
    from tests.workers.test_celery_integration import PrivateRedis, Workers
    from workers.celery_app import make_celery

    with scratch_database(pg_url, f"qifu_bench_rate_{uuid.uuid4().hex[:6]}", enterprises=20) as url:
        engine = make_engine(url)
        from sqlmodel import Session

        with Session(engine) as s:
            ticket = f.make_ticket(s, "submitted", enterprise="ent1")
            s.commit()
            ticket_id, user_id = ticket.id, ticket.submitted_by_id or ticket.officer_id
        with engine.begin() as conn:
            nids = conn.execute(sa.text(
                "INSERT INTO notification (user_id, ticket_id, kind, title, body, payload, created_at) "
                "SELECT :u, :t, 'submitted', '新工单：演练 ' || g, '', '{}', now() FROM generate_series(1, :n) g "
                "RETURNING id"), {"u": user_id, "t": ticket_id, "n": deliveries}).scalars().all()
            ids = conn.execute(sa.text(
                "INSERT INTO notification_delivery (notification_id, channel, target, state, attempts) "
                "SELECT unnest(CAST(:n AS int[])), 'webhook', :target, 'pending', 0 RETURNING id"),
                {"n": list(nids), "target": "placeholder"}).scalars().all()
        redis = PrivateRedis()
        redis.start()
        try:
            with WebhookReceiver() as receiver:
                with engine.begin() as conn:
                    conn.execute(sa.text("UPDATE notification_delivery SET target = :t WHERE id = ANY(:ids)"),
                                 {"t": receiver.url, "ids": list(ids)})
                env = {"QIFU_DATABASE_URL": url, "QIFU_REDIS_URL": redis.url, "QIFU_WEBHOOK_URL": receiver.url,
                       "QIFU_WEBHOOK_SECRET": SECRET, "QIFU_DELIVERY_STALE_SECONDS": "3600"}
                workers = Workers(env)
                try:
                    workers.main()
                    app = make_celery(redis.url)
                    began = time.monotonic()
                    for start in range(0, len(ids), per_task):
                        app.send_task("notifications.deliver", kwargs={"delivery_ids": ids[start:start + per_task]},
                                      queue="notifications", retry=False, ignore_result=True)

                    def sent() -> int:
                        with engine.connect() as conn:
                            return conn.execute(sa.text("SELECT count(*) FROM notification_delivery "
                                                        "WHERE state = 'sent' AND id = ANY(:ids)"),
                                                {"ids": list(ids)}).scalar()

                    wait_until(lambda: sent() == len(ids), timeout=3600, interval=0.5)
                    elapsed = time.monotonic() - began
                finally:
                    workers.stop_all()
                per = receiver.per_delivery()
        finally:
            redis.stop()
            engine.dispose()
    return {"deliveries": len(ids), "per_task": per_task, "seconds": round(elapsed, 1),
            "per_second": round(len(ids) / elapsed, 1), "received": sum(per.values()),
            "loadavg": open("/proc/loadavg").read().split()[:3],
            "ok": per == Counter({str(n): 1 for n in nids})}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="run", required=True)
    p = sub.add_parser("pg-restart")
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--restarts", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    w = sub.add_parser("worker-kill")
    w.add_argument("--kills", type=int, default=100)
    w.add_argument("--whole-every", type=int, default=5, help="every Nth kill takes the whole worker")
    w.add_argument("--seed", type=int, default=None)
    w.add_argument("--armed", type=int, default=4, help="tickets armed (remind, overdue, level 2) per cycle")
    w.add_argument("--closing", type=int, default=2, help="replied tickets auto-closed per cycle")
    r = sub.add_parser("redis-down")
    r.add_argument("--submissions", type=int, default=10_000)
    r.add_argument("--stale-seconds", type=float, default=10.0, help="QIFU_DELIVERY_STALE_SECONDS of the run")
    r.add_argument("--stall-seconds", type=float, default=300.0,
                   help="give up waiting for the deliveries when none was sent for this long (>> stale)")
    d = sub.add_parser("deliver-rate")
    d.add_argument("--deliveries", type=int, default=2000)
    d.add_argument("--per-task", type=int, default=1, help="delivery ids per notifications.deliver message")
    for q in (w, r, d):
        q.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    args = parser.parse_args(argv)
    if args.run == "pg-restart":
        result = pg_restart(args.clients, args.duration, args.restarts, args.workers)
    elif args.run == "deliver-rate":
        result = deliver_rate(args.pg_url, args.deliveries, args.per_task)
        print(json.dumps(result, ensure_ascii=False, indent=1))
    else:
        result = _with_db_and_redis(args)
        print(json.dumps(result, ensure_ascii=False, indent=1))
    print("check:", "OK" if result["ok"] else "FAILED")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

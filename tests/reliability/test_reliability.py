"""The reliability promises of SPEC §9 (issue #11), in CI with bounded sizes; the full sizes run
with ``bench/reliability.py`` and their figures are in docs/reliability.md.

1. **PostgreSQL restarted twice under load** — a private cluster (``bench.harness.PrivatePostgres``,
   never the shared server), the production ``qifu serve --workers 2`` on it, clients submitting
   with ``Idempotency-Key`` and retrying on 503: tickets = distinct keys acknowledged, none twice,
   no 500.
2. **Redis down for the middle third** of the submissions and actions (a private ``redis-server``):
   every request is answered, the outbox holds the middle third's jobs, and once Redis is back
   every notification is delivered exactly once by a real Celery worker to a webhook receiver.
   Checked there too: **the request id** of a submission is in the API's access-log line and in
   the log lines of the Celery task that delivers its notification.
3. **Worker killed** (SIGKILL) repeatedly while it sweeps, relays and delivers: every reminder,
   overdue mark, level-2 escalation, auto-close and delivery happens exactly once.

One module database (migrated and seeded, dropped at the end) and one private Redis serve 2-3.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from bench.harness import ApiServer
from service import clock
from service.auth.security import create_access_token
from service.db import make_engine
from service.enterprises.models import Enterprise
from service.users.models import User
from tests.conftest import PG_SERVER
from tests.notifications.test_notifications import SECRET, WebhookReceiver, wait_until
from tests.scratch_db import scratch_database
from tests.workers.test_celery_integration import PrivateRedis, Workers

pytestmark = pytest.mark.slow


# =========================================================================== shared pieces

@pytest.fixture(scope="module")
def rel_db() -> Iterator[str]:
    with scratch_database(PG_SERVER, f"qifu_rel_{os.getpid()}_{uuid.uuid4().hex[:6]}", enterprises=20) as url:
        yield url


@pytest.fixture(scope="module")
def rel_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None:
            server.stop()


def submitters(db_url: str, n: int = 10) -> list[tuple[dict, dict]]:
    """``(enterprise headers, its officer's headers)`` for enterprise users whose enterprise has an
    officer (every submission then notifies someone)."""
    engine = make_engine(db_url)
    with Session(engine) as s:
        rows = s.exec(select(User, Enterprise.officer_id).join(Enterprise, Enterprise.id == User.enterprise_id)
                      .where(User.role == "enterprise", Enterprise.officer_id.is_not(None))
                      .order_by(User.id).limit(n)).all()
        out = []
        for user, officer_id in rows:
            officer = s.get(User, officer_id)
            out.append(({"Authorization": "Bearer " + create_access_token(user.id, user.role)[0]},
                        {"Authorization": "Bearer " + create_access_token(officer.id, officer.role)[0]}))
    engine.dispose()
    return out


def deliveries_of(engine, ticket_ids: list[int]) -> list[tuple[int, int, str]]:
    """``(delivery id, notification id, state)`` of the tickets' notifications."""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT d.id, d.notification_id, d.state FROM notification_delivery d "
            "JOIN notification n ON n.id = d.notification_id WHERE n.ticket_id = ANY(:ids) ORDER BY d.id"),
            {"ids": ticket_ids}).all()]


def only_in_broker(engine, ticket_ids: list[int]) -> set[int]:
    """The tickets' deliveries still ``pending`` whose outbox messages were all relayed: their
    only message is in Redis (queued, or taken by the worker and not yet acknowledged)."""
    with engine.connect() as conn:
        unrelayed = conn.execute(sa.text("SELECT kwargs FROM outbox_message WHERE sent_at IS NULL "
                                         "AND task = 'notifications.deliver'")).scalars().all()
        pending = set(conn.execute(sa.text(
            "SELECT d.id FROM notification_delivery d JOIN notification n ON n.id = d.notification_id "
            "WHERE n.ticket_id = ANY(:ids) AND d.state = 'pending'"), {"ids": ticket_ids}).scalars())
    for k in unrelayed:
        pending -= set(k.get("delivery_ids", ()))
    return pending


def queued_again(engine, delivery_ids: set[int]) -> int:
    """How many of ``delivery_ids`` have more than one ``notifications.deliver`` outbox message
    (queued again by the stale sweep of ``notifications.retry_failed``)."""
    if not delivery_ids:
        return 0
    with engine.connect() as conn:
        kwargs = conn.execute(sa.text("SELECT kwargs FROM outbox_message WHERE task = 'notifications.deliver' "
                                      "AND id >= (SELECT min(id) FROM outbox_message WHERE task = 'notifications.deliver' "
                                      "AND CAST(kwargs AS jsonb)->'delivery_ids' @> to_jsonb(CAST(:d AS int)))"),
                              {"d": min(delivery_ids)}).scalars().all()
    seen = Counter(d for k in kwargs for d in k.get("delivery_ids", ()) if d in delivery_ids)
    return sum(1 for v in seen.values() if v > 1)


def pending_outbox_for(engine, delivery_ids: set[int]) -> int:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT kwargs FROM outbox_message WHERE sent_at IS NULL")).scalars().all()
    return sum(1 for k in rows if set(k.get("delivery_ids", ())) & delivery_ids)


class Beat(threading.Thread):
    """Stands in for ``qifu beat``: sends the periodic tasks every ``interval`` seconds to the
    private Redis (skipping a round while Redis is down or the queue still has work)."""

    TASKS = ("sla.send_reminders", "sla.mark_overdue", "tickets.auto_close", "outbox.relay",
             "notifications.retry_failed")

    def __init__(self, redis: PrivateRedis, interval: float = 0.5, tasks: tuple[str, ...] = TASKS) -> None:
        super().__init__(daemon=True)
        from workers.celery_app import make_celery

        self.app = make_celery(redis.url)
        self.redis, self.interval, self.tasks = redis, interval, tasks
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                client = self.redis.client()
                if client.llen("sla") + client.llen("celery") > 4:
                    continue
                for task in self.tasks:
                    self.app.send_task(task, retry=False, ignore_result=True)
            except Exception:  # noqa: BLE001 - Redis down: try again next round
                continue

    def stop(self) -> None:
        self.stopping.set()
        if self.is_alive():
            self.join(timeout=10)


def json_lines(lines: list[str]) -> list[dict]:
    out = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


# =========================================================================== 1. PostgreSQL restart

def test_postgres_restarted_twice_under_load_loses_and_doubles_nothing():
    from bench.reliability import pg_restart

    result = pg_restart(clients=12, duration=10.0, restarts=2, enterprises=20, verbose=False)
    assert result["ok"], json.dumps(result)
    assert result["tickets"] == result["acked_keys"] > 0
    assert result["http_500"] == 0 and len(result["restart_seconds"]) == 2


# =========================================================================== 2. Redis down

def redis_down_run(db_url: str, redis: PrivateRedis, submissions: int = 30, stale_seconds: float = 5.0,
                   stall_seconds: float = 60.0) -> dict:
    """Submit ``submissions`` tickets through ``qifu serve``, accept and dispatch each (the officer
    is notified of the submission, the department's handlers of the dispatch: a webhook delivery
    each); Redis is stopped for the middle third. Then wait until every delivery is ``sent``,
    giving up only when none was sent for ``stall_seconds`` (keep it well above
    ``stale_seconds``, the ``QIFU_DELIVERY_STALE_SECONDS`` after which a delivery the restarted
    Redis forgot is queued again). Returns figures (with ``pending_rows``: the rows still pending,
    read before the database goes) and ``ok``."""
    engine = make_engine(db_url)
    people = submitters(db_url)
    with WebhookReceiver() as receiver:
        env = {"QIFU_DATABASE_URL": db_url, "QIFU_REDIS_URL": redis.url, "QIFU_WEBHOOK_URL": receiver.url,
               "QIFU_WEBHOOK_SECRET": SECRET, "QIFU_DELIVERY_STALE_SECONDS": str(stale_seconds)}
        workers = Workers(env)
        server = ApiServer({**env, "QIFU_LOG_FORMAT": "json"}, workers=1, access_log=True)
        beat = Beat(redis, interval=1.0, tasks=("outbox.relay", "notifications.retry_failed"))
        try:
            main_pid = workers.main().pid
            server.start()
            beat.start()
            statuses: Counter = Counter()
            rid = str(uuid.uuid4())
            echoed = None
            tickets: list[tuple[int, str]] = []  # (third, number)
            outage = slow = 0.0
            held = 0
            in_broker: set[int] = set()
            third = max(1, submissions // 3)
            with httpx.Client(base_url=server.url, timeout=30) as http:
                for i in range(submissions):
                    part = min(i // third, 2)
                    if i == max(0, third - 2):
                        # hold the webhook from here on (each delivery's first request, < the 10 s
                        # send timeout): the worker blocks on one, so the messages queued behind it
                        # are still in Redis when it stops — not left to the worker's pace
                        receiver.hold_first = 8.0
                    if i == third:
                        first = _ids(engine, [n for _, n in tickets])
                        wait_until(lambda ids=first: bool(only_in_broker(engine, ids)), timeout=10)
                        in_broker = only_in_broker(engine, first)
                        redis.stop()
                        outage = time.monotonic()
                        receiver.release()
                    if i == 2 * third:
                        middle = [n for p, n in tickets if p == 1]
                        ids = _ids(engine, middle)
                        held_ids = {d for d, _, _ in deliveries_of(engine, ids)}
                        held = pending_outbox_for(engine, held_ids)
                        time.sleep(max(0.0, outage + 3.0 - time.monotonic()))  # down at least 3 s
                        redis.start()
                        outage = time.monotonic() - outage
                    if i == 1 and tickets:
                        # the first submission's deliveries sent by their own messages, before any
                        # outage (a message re-sent by the relay after one carries no request id):
                        # on a loaded machine the worker could otherwise still hold them at the stop
                        first_id = _ids(engine, [tickets[0][1]])
                        wait_until(lambda ids=first_id: (lambda rows: bool(rows) and all(
                            s == "sent" for _, _, s in rows))(deliveries_of(engine, ids)), timeout=30)
                    ent, officer = people[i % len(people)]
                    started = time.monotonic()
                    if i == 0:  # the request id of the first submission, followed into its task's log lines
                        ent = {**ent, "X-Request-ID": rid}
                    resp = http.post("/api/v1/tickets", headers=ent, json={
                        "title": f"Redis 演练 {i}", "description": "园区线路检修后多次跳闸。", "category_code": "problem.power"})
                    statuses[resp.status_code] += 1
                    if resp.status_code != 201:
                        continue
                    number = resp.json()["number"]
                    tickets.append((part, number))
                    if i == 0:
                        echoed = resp.headers.get("X-Request-ID")
                    for action in ("accept", "dispatch"):  # dispatch notifies the department's handlers
                        done = http.post(f"/api/v1/tickets/{number}/{action}", headers=officer, json={})
                        statuses[done.status_code] += 1
                    slow = max(slow, time.monotonic() - started)
            ids = _ids(engine, [n for _, n in tickets])
            submitted = time.monotonic()
            # every notification delivered: the outbox relayed (periodic relay after the outage)
            done = wait_while_progressing(lambda: all(s == "sent" for _, _, s in deliveries_of(engine, ids)),
                                          lambda: sum(s == "sent" for _, _, s in deliveries_of(engine, ids)),
                                          stall=stall_seconds)
            drained = time.monotonic() - submitted
            pending_rows = _unsent(engine, ids)
            wait_until(redis.idle, timeout=20)
            time.sleep(0.5)
            rows = deliveries_of(engine, ids)
            per = receiver.per_delivery()
            expected = Counter({str(n): 1 for _, n, _ in rows})
            # the first request's id: echoed, on its access-log line, and on its delivery task's lines
            task_events = {r.get("event") for r in json_lines(workers.procs[0].output)  # type: ignore[attr-defined]
                           if r.get("request_id") == rid and r.get("task") == "notifications.deliver"}
            request_logged = any(r.get("request_id") == rid and "POST /api/v1/tickets" in r.get("event", "")
                                 for r in json_lines(server.lines))
            result = {
                "submissions": submissions, "statuses": dict(statuses), "tickets": len(tickets),
                "deliveries": len(rows), "held_in_outbox_during_outage": held,
                "in_redis_when_stopped": len(in_broker), "queued_again": queued_again(engine, in_broker),
                "outage_seconds": round(outage, 1), "slowest_submit_accept_s": round(slow, 2),
                "all_sent": done, "delivered_once": per == expected,
                "duplicates": sum(v - 1 for v in per.values() if v > 1),
                "not_received": sorted(set(expected) - set(per))[:10],
                "unexpected": sorted(set(per) - set(expected))[:10],
                "request_id": {"echoed": echoed == rid, "in_request_log": request_logged,
                               "in_task_log": {"task started", "task finished"} <= task_events},
                "states": dict(Counter(st for _, _, st in rows)),
                "drain_after_last_request_s": round(drained, 1), "pending_rows": pending_rows,
                "outbox_pending_after": pending_outbox_for(engine, {d for d, _, _ in rows}),
                "worker_alive": workers.main().pid == main_pid,
                "ok": done and per == expected and set(statuses) <= {200, 201} and len(tickets) == submissions
                and held > 0 and len(rows) > submissions and all(r["valid"] for r in receiver.requests)
                and len(in_broker) > 0,
            }
            return result
        finally:
            beat.stop()
            server.stop()
            workers.stop_all()
            if not redis.up():
                redis.start()
            engine.dispose()
            if os.environ.get("QIFU_RELIABILITY_DEBUG"):
                print("".join(server.lines)[-5000:], "".join(workers.procs[0].output)[-5000:])


def _unsent(engine, ticket_ids: list[int], sample: int = 10) -> dict:
    """The tickets' deliveries not ``sent``: how many, and a sample with their attempts, next
    attempt, last error and how many outbox messages (relayed or not) carry their id."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT d.id, d.state, d.attempts, d.next_attempt_at, d.last_error, n.created_at FROM notification_delivery d "
            "JOIN notification n ON n.id = d.notification_id WHERE n.ticket_id = ANY(:ids) AND d.state <> 'sent' "
            "ORDER BY d.id"), {"ids": ticket_ids}).all()
        out = []
        for r in rows[:sample]:
            messages = conn.execute(sa.text(
                "SELECT count(*) FILTER (WHERE sent_at IS NOT NULL), count(*) FILTER (WHERE sent_at IS NULL) "
                "FROM outbox_message WHERE task = 'notifications.deliver' "
                "AND CAST(kwargs AS jsonb)->'delivery_ids' @> to_jsonb(CAST(:d AS int))"), {"d": r.id}).one()
            out.append({"id": r.id, "state": r.state, "attempts": r.attempts,
                        "next_attempt_at": str(r.next_attempt_at), "last_error": r.last_error,
                        "notified_at": str(r.created_at), "outbox_relayed": messages[0], "outbox_pending": messages[1]})
    return {"count": len(rows), "sample": out}


def _ids(engine, numbers: list[str]) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT id FROM ticket WHERE number = ANY(:n)"), {"n": numbers}).scalars())


def test_redis_down_for_the_middle_third_every_notification_delivered_once(rel_db, rel_redis):
    """Also the request id: the first submission's ``X-Request-ID`` is echoed, is on the API's
    access-log line and on the ``task started``/``task finished`` lines of its delivery task in
    the Celery worker (JSON logs of both processes)."""
    result = redis_down_run(rel_db, rel_redis, submissions=24)
    assert result["ok"], json.dumps(result)
    assert result["request_id"] == {"echoed": True, "in_request_log": True, "in_task_log": True}, result


# =========================================================================== 3. worker killed

def worker_kill_run(db_url: str, redis: PrivateRedis, kills: int = 12, per_cycle: tuple[int, int] = (4, 2),
                    seed: int | None = None, whole_every: int = 5) -> dict:
    """Kill the Celery worker ``kills`` times while beat keeps sending the sweeps and relays.

    Before each cycle, ``per_cycle[0]`` submitted tickets get their reminder, deadline and level-2
    triggers armed (due now) and ``per_cycle[1]`` replied tickets their feedback deadline (auto-
    close); 0.2-1.0 s later the worker's pool process is SIGKILLed (its parent starts another and
    requeues the message: ``task_reject_on_worker_lost``), and every ``whole_every``-th time the
    whole worker, parent and child (the message stays unacknowledged in Redis until the visibility
    timeout gives it to the next worker). Then one worker runs to the end. Expected, read back from the database: one ``remind``, one ``overdue`` and one
    ``escalate`` event per armed ticket, one ``auto_close`` per replied one, one notification per
    (ticket, kind, recipient), every delivery ``sent``; and each delivery's effect (distinct
    ``X-Qifu-Delivery`` at the receiver) arrived. Returns the figures and ``ok``.
    """
    from tests import factories as f

    rng = random.Random(seed)
    t_setup = time.monotonic()
    engine = make_engine(db_url)
    armed: list[int] = []
    closing: list[int] = []
    with Session(engine, expire_on_commit=False) as s:
        batches = []
        for _ in range(kills):
            a = [f.make_ticket(s, "submitted", enterprise="ent1").id for _ in range(per_cycle[0])]
            b = [f.make_ticket(s, "replied", enterprise="ent1").id for _ in range(per_cycle[1])]
            batches.append((a, b))
        all_ids = [i for a, b in batches for i in a + b]
        # nothing fires before its cycle arms it
        s.execute(sa.text("UPDATE ticket SET remind_at = NULL, overdue_at = NULL, level2_at = NULL, "
                          "due_at = CASE WHEN due_step = 'feedback' THEN now() + interval '30 days' ELSE due_at END "
                          "WHERE id = ANY(:ids)"), {"ids": all_ids})
        s.commit()
    in_flight: Counter = Counter()
    with WebhookReceiver() as receiver:
        env = {"QIFU_DATABASE_URL": db_url, "QIFU_REDIS_URL": redis.url, "QIFU_WEBHOOK_URL": receiver.url,
               "QIFU_WEBHOOK_SECRET": SECRET, "QIFU_DELIVERY_STALE_SECONDS": "5"}
        workers = Workers(env)
        beat = Beat(redis, interval=0.3)
        started = time.monotonic()
        setup = started - t_setup
        proc = None
        kinds: Counter = Counter()
        try:
            beat.start()
            for k, (a, b) in enumerate(batches):
                past = clock.now() - timedelta(seconds=1)
                with engine.begin() as conn:
                    conn.execute(sa.text("UPDATE ticket SET remind_at = :t, overdue_at = :t, level2_at = :t "
                                         "WHERE id = ANY(:ids)"), {"t": past, "ids": a})
                    conn.execute(sa.text("UPDATE ticket SET due_at = :t WHERE id = ANY(:ids)"), {"t": past, "ids": b})
                armed += a
                closing += b
                if proc is None:
                    proc = workers.start(f"victim{k}", pool="prefork")
                child = wait_for_child(proc)
                seen = len(proc.output)  # type: ignore[attr-defined]
                time.sleep(rng.uniform(0.2, 1.0))
                whole = (k + 1) % whole_every == 0
                if whole:  # the whole worker at once (power cut, container killed)
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
                else:  # its pool process (the OOM killer): the parent starts another one
                    os.kill(child, signal.SIGKILL)
                kinds["worker" if whole else "pool process"] += 1
                time.sleep(0.1)
                in_flight[_task_in_flight(proc.output[seen:])] += 1  # type: ignore[attr-defined]
                if whole:
                    proc = None
            killed_in = time.monotonic() - started
            if proc is None:
                workers.start("survivor", pool="prefork")

            def finished() -> bool:
                with engine.connect() as conn:
                    counts = dict(conn.execute(sa.text(
                        "SELECT action, count(*) FROM ticket_event WHERE ticket_id = ANY(:ids) "
                        "AND action IN ('remind', 'overdue', 'escalate', 'auto_close') GROUP BY action"),
                        {"ids": all_ids}).all())
                if (counts.get("remind", 0) < len(armed) or counts.get("overdue", 0) < len(armed)
                        or counts.get("escalate", 0) < len(armed) or counts.get("auto_close", 0) < len(closing)):
                    return False
                return all(state == "sent" for _, _, state in deliveries_of(engine, all_ids))

            done = wait_while_progressing(finished, lambda: sum(
                1 for _, _, state in deliveries_of(engine, all_ids) if state == "sent"), stall=90)
            drained = time.monotonic() - started - killed_in
            beat.stop()
            wait_until(redis.idle, timeout=30)
            time.sleep(0.5)
            with engine.connect() as conn:
                events = Counter(tuple(r) for r in conn.execute(sa.text(
                    "SELECT ticket_id, action FROM ticket_event WHERE ticket_id = ANY(:ids) "
                    "AND action IN ('remind', 'overdue', 'escalate', 'auto_close')"), {"ids": all_ids}).all())
                notes = Counter(tuple(r) for r in conn.execute(sa.text(
                    "SELECT ticket_id, kind, user_id FROM notification WHERE ticket_id = ANY(:ids) "
                    "AND kind IN ('reminded', 'overdue', 'escalated', 'closed')"), {"ids": all_ids}).all())
            expected_events = Counter({**{(t, a): 1 for t in armed for a in ("remind", "overdue", "escalate")},
                                       **{(t, "auto_close"): 1 for t in closing}})
            rows = deliveries_of(engine, all_ids)
            per = receiver.per_delivery()
            received = set(per)
            wanted = {str(n) for _, n, _ in rows}
            result = {
                "kills": kills, "tickets_armed": len(armed), "tickets_auto_closed": len(closing),
                "setup_seconds": round(setup, 1), "kill_phase_seconds": round(killed_in, 1),
                "drain_seconds": round(drained, 1), "in_flight_at_kill": dict(in_flight), "killed": dict(kinds),
                "events": sum(events.values()), "events_exactly_once": events == expected_events,
                "notifications": sum(notes.values()), "notifications_once": all(v == 1 for v in notes.values()),
                "deliveries": len(rows), "deliveries_sent": sum(1 for r in rows if r[2] == "sent"),
                "effects_received": len(received & wanted), "redelivered_posts": sum(v - 1 for v in per.values()),
                "finished": done,
            }
            result["ok"] = (done and result["events_exactly_once"] and result["notifications_once"]
                            and result["deliveries_sent"] == len(rows) > 0 and received == wanted)
            return result
        finally:
            beat.stop()
            workers.stop_all()
            engine.dispose()


def wait_while_progressing(predicate, progress, stall: float = 90.0, limit: float = 3600.0) -> bool:
    """Wait until ``predicate()``; give up when ``progress()`` (a count) has not grown for
    ``stall`` seconds, or after ``limit`` seconds. A big run drains slowly on a loaded machine;
    a stuck one stops growing."""
    began = last_change = time.monotonic()
    last = progress()
    while time.monotonic() - began < limit:
        if predicate():
            return True
        time.sleep(1.0)
        now = progress()
        if now != last:
            last, last_change = now, time.monotonic()
        elif time.monotonic() - last_change > stall:
            return predicate()
    return predicate()


def wait_for_child(proc, timeout: float = 30.0) -> int:
    """The pid of the prefork worker ``proc``'s pool process (waits until there is one)."""
    path = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    found: list[int] = []

    def child() -> bool:
        try:
            found[:] = [int(p) for p in path.read_text().split()]
        except OSError:
            return False
        return bool(found)

    assert wait_until(child, timeout=timeout, interval=0.05), "no pool process"
    return found[0]


def _task_in_flight(output: list[str]) -> str:
    """The task a killed worker was running (a ``task started`` log line without its ``task
    finished``), from its JSON log lines; ``idle`` when none."""
    running: dict[str, str] = {}
    for record in json_lines(output):
        if record.get("event") == "task started":
            running[record.get("task_id", "")] = record.get("task", "?")
        elif record.get("event") == "task finished":
            running.pop(record.get("task_id", ""), None)
    return next(iter(running.values()), "idle")


def test_worker_killed_repeatedly_everything_happens_exactly_once(rel_db, rel_redis):
    result = worker_kill_run(rel_db, rel_redis, kills=12, seed=11, whole_every=6)
    assert result["ok"], json.dumps(result)
    assert result["events"] == 3 * result["tickets_armed"] + result["tickets_auto_closed"]

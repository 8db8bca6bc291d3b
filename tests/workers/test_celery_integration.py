"""Real Celery workers on a real, private Redis (issue #3 acceptance):

(a) a task runs exactly once: a notification delivered to a local webhook receiver arrives once;
(b) Redis stopped during submissions: every ``POST /tickets`` is 201 and saved, the outbox keeps
    the deliveries pending; Redis back, the running worker reconnects, a relay sends: each delivery
    arrives exactly once;
(c) a worker SIGKILLed mid-task: the message is redelivered (``acks_late``; Redis visibility
    timeout ``QIFU_BROKER_VISIBILITY_TIMEOUT``) to a new worker, the delivery ends ``sent`` once and
    the receiver's effect (distinct ``X-Qifu-Delivery``) is not doubled.

The private ``redis-server`` runs on a free port and is stopped and restarted by these tests; the
shared Redis on 6379 is never touched. Workers get ``QIFU_DATABASE_URL`` = this process's test
database, so they see the committed tickets.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from service import jobs
from service.auth.security import create_access_token
from service.enterprises.models import Enterprise
from service.notifications.models import Notification, NotificationDelivery
from service.outbox_models import OutboxMessage
from service.tickets.models import Ticket
from service.users.models import User
from tests import factories as f
from tests.notifications.test_notifications import (
    SECRET,
    WebhookReceiver,
    free_port,
    settings_env,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]
QUEUES = ("celery", "sla", "notifications", "cadence")


@pytest.fixture
def env_setter() -> Iterator[Callable[..., None]]:
    with settings_env() as set_env:
        yield set_env


class PrivateRedis:
    """A ``redis-server`` of our own (no persistence) that a test may stop and start again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=2)

    def up(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_until(self.up, timeout=10), "private redis-server did not start"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None
        assert not self.up()

    def idle(self) -> bool:
        """No message waiting in a queue and none taken but unacknowledged."""
        c = self.client()
        return all(c.llen(q) == 0 for q in QUEUES) and c.hlen("unacked") == 0


@pytest.fixture(scope="module")
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Workers:
    """Starts ``celery worker`` child processes (solo pool, all queues) and stops them by pid.

    Every worker here runs with ``QIFU_BROKER_VISIBILITY_TIMEOUT=2``: a message taken by a worker
    that dies is given to another worker two seconds later (production keeps the default hour).
    """

    def __init__(self, env: dict[str, str]) -> None:
        self.env = {**env, "QIFU_BROKER_VISIBILITY_TIMEOUT": "2"}
        self.procs: list[subprocess.Popen] = []
        self._main: subprocess.Popen | None = None

    def start(self, name: str, pool: str = "solo") -> subprocess.Popen:
        """A worker named ``name``; ``pool="prefork"`` runs the tasks in one child process (its
        own process group, so that the whole worker can be killed at once)."""
        extra = ["--concurrency=1"] if pool == "prefork" else []
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.celery_app:celery_app", "worker",
             f"--pool={pool}", *extra, "-Q", ",".join(QUEUES), "-n", f"{name}@%h", "--loglevel=INFO",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env={**os.environ, **self.env}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=pool == "prefork")
        proc.output = []  # type: ignore[attr-defined]
        ready = threading.Event()

        def read() -> None:
            for line in proc.stdout:
                proc.output.append(line)  # type: ignore[attr-defined]
                if " ready." in line:
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        self.procs.append(proc)
        if not ready.wait(120):  # a loaded machine imports slowly
            raise AssertionError("worker not ready:\n" + "".join(proc.output))  # type: ignore[attr-defined]
        return proc

    def main(self) -> subprocess.Popen:
        """The long-running worker of this module (started again if a test killed it)."""
        if self._main is None or self._main.poll() is not None:
            self._main = self.start("main")
        return self._main

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()  # test workers: every message they took is acknowledged or moot
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def workers(pg_url, private_redis) -> Iterator[Workers]:
    pool = Workers({"QIFU_REDIS_URL": private_redis.url, "QIFU_DATABASE_URL": pg_url,
                    "QIFU_WEBHOOK_SECRET": SECRET})
    try:
        yield pool
    finally:
        pool.stop_all()


@pytest.fixture
def stack(pg_url, private_redis, workers, env_setter) -> Iterator[dict]:
    """This process on the private Redis and the test database, with the after-commit relay on;
    the webhook receiver is configured by the test (``configure(receiver)``)."""
    if private_redis.up():
        private_redis.client().flushall()

    def configure(receiver: WebhookReceiver) -> None:
        env_setter(QIFU_REDIS_URL=private_redis.url, QIFU_DATABASE_URL=pg_url,
                   QIFU_WEBHOOK_URL=receiver.url, QIFU_WEBHOOK_SECRET=SECRET)

    jobs.set_dispatcher(None)
    jobs.set_relay_enabled(True)
    try:
        yield {"workers": workers, "redis": private_redis, "configure": configure}
    finally:
        if not private_redis.up():
            private_redis.start()


def deliveries(engine, ticket_ids: list[int]) -> list[NotificationDelivery]:
    with Session(engine) as s:
        return list(s.exec(
            select(NotificationDelivery).join(Notification, Notification.id == NotificationDelivery.notification_id)
            .where(Notification.ticket_id.in_(ticket_ids)).order_by(NotificationDelivery.id)).all())


def outbox_after(engine, after_id: int) -> list[OutboxMessage]:
    with Session(engine) as s:
        return list(s.exec(select(OutboxMessage).where(OutboxMessage.id > after_id)
                           .order_by(OutboxMessage.id)).all())


def max_outbox_id(engine) -> int:
    with Session(engine) as s:
        return s.exec(select(sa.func.coalesce(sa.func.max(OutboxMessage.id), 0))).one()


def all_sent(engine, ticket_ids: list[int]) -> bool:
    rows = deliveries(engine, ticket_ids)
    return bool(rows) and all(d.state == "sent" for d in rows)


# --------------------------------------------------------------------------- (a) exactly once

def test_a_task_runs_exactly_once_on_a_real_worker(engine, stack):
    with WebhookReceiver() as receiver:
        stack["configure"](receiver)
        stack["workers"].main()
        before = max_outbox_id(engine)
        with Session(engine, expire_on_commit=False) as s:
            ticket = f.make_ticket(s, "submitted")  # commit -> after-commit relay -> broker -> worker
        [delivery] = deliveries(engine, [ticket.id])

        assert wait_until(lambda: all_sent(engine, [ticket.id]), timeout=30), receiver.requests
        assert wait_until(stack["redis"].idle, timeout=10), "the message was acknowledged"
        [message] = outbox_after(engine, before)
        assert (message.task, message.kwargs) == ("notifications.deliver", {"delivery_ids": [delivery.id]})
        assert message.sent_at is not None and message.attempts == 1

        # relaying again sends nothing: the row is no longer pending
        with Session(engine) as s:
            assert jobs.relay(s, [message.id]) == (0, 0)
        time.sleep(0.5)
        assert receiver.per_delivery() == {str(delivery.notification_id): 1}
        assert all(r["valid"] for r in receiver.requests)
        [done] = deliveries(engine, [ticket.id])
        assert (done.state, done.attempts, done.last_error) == ("sent", 1, None)


# --------------------------------------------------------------------------- (b) Redis down

def test_b_redis_down_during_submissions_nothing_lost(engine, stack, pg_url):
    n = 4
    with WebhookReceiver() as receiver:
        stack["configure"](receiver)
        worker = stack["workers"].main()  # a worker is up, and stays up through the outage
        stack["redis"].stop()
        before = max_outbox_id(engine)
        from qifu.main import create_app

        with Session(engine) as s:  # users of enterprises with an officer: one notification each
            submitters = s.exec(select(User).join(Enterprise, Enterprise.id == User.enterprise_id)
                                .where(User.role == "enterprise", Enterprise.officer_id.is_not(None))
                                .order_by(User.id).limit(n)).all()
            headers = [{"Authorization": "Bearer " + create_access_token(u.id, u.role)[0]} for u in submitters]
        assert len(headers) == n
        numbers = []
        with TestClient(create_app()) as client:  # the real app on the test database, no overrides
            for i, h in enumerate(headers):
                started = time.monotonic()
                resp = client.post("/api/v1/tickets", headers=h, json={
                    "title": f"断电影响生产 {i}", "description": "园区线路检修后多次跳闸。",
                    "category_code": "problem.power"})
                assert resp.status_code == 201, resp.text
                if i:  # (the first request also opens the app's pool) a failing send takes 2 s
                    assert time.monotonic() - started < 2, "a submission never waits for the broker"
                numbers.append(resp.json()["number"])

        with Session(engine) as s:
            tickets = s.exec(select(Ticket).where(Ticket.number.in_(numbers))).all()
        assert len(tickets) == n and {t.status for t in tickets} == {"submitted"}
        ids = [t.id for t in tickets]
        rows = deliveries(engine, ids)
        assert len(rows) == n and {d.state for d in rows} == {"pending"}
        messages = outbox_after(engine, before)
        assert sorted(d for m in messages for d in m.kwargs["delivery_ids"]) == [d.id for d in rows]

        # the after-commit relay tries them and fails (about 2 s each): they stay pending, with the error
        def tried() -> list[OutboxMessage]:
            return [m for m in outbox_after(engine, before) if m.attempts]

        assert wait_until(tried, timeout=10)
        for m in tried():
            assert m.sent_at is None and "OperationalError" in m.last_error
        assert len(receiver) == 0

        # Redis back (empty: no persistence); the worker reconnects; a relay (the periodic
        # ``outbox.relay`` or the after-commit thread, whichever comes first) sends what is pending
        stack["redis"].start()
        message_ids = [m.id for m in messages]

        def relayed() -> bool:
            with Session(engine) as s:
                jobs.relay(s, message_ids)
            return all(m.sent_at is not None for m in outbox_after(engine, before))

        assert wait_until(relayed, timeout=20, interval=0.5)
        assert wait_until(lambda: all_sent(engine, ids), timeout=40), "".join(worker.output)
        assert worker.poll() is None, "the worker survived the outage"
        assert wait_until(stack["redis"].idle, timeout=10)
        time.sleep(0.5)
        expected = {str(d.notification_id): 1 for d in rows}
        assert receiver.per_delivery() == expected, "each delivery arrived exactly once"
        assert all(r["valid"] for r in receiver.requests)


# --------------------------------------------------------------------------- (c) worker killed

def test_c_worker_killed_mid_task_is_redelivered_not_doubled(engine, stack):
    with WebhookReceiver(hold_first=60) as receiver:
        stack["configure"](receiver)
        first = stack["workers"].main()
        with Session(engine, expire_on_commit=False) as s:
            ticket = f.make_ticket(s, "submitted")
        [delivery] = deliveries(engine, [ticket.id])
        key = str(delivery.notification_id)

        assert wait_until(lambda: len(receiver) == 1, timeout=30), "".join(first.output)
        assert stack["redis"].client().hlen("unacked") == 1, "taken, not acknowledged (acks_late)"
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        receiver.release()  # the held request ends; its worker is gone
        [held] = deliveries(engine, [ticket.id])
        assert (held.state, held.attempts) == ("pending", 0), "nothing of the killed worker's work was committed"

        stack["workers"].start("rescuer")
        assert wait_until(lambda: all_sent(engine, [ticket.id]), timeout=40), receiver.requests
        assert wait_until(stack["redis"].idle, timeout=10)
        [done] = deliveries(engine, [ticket.id])
        assert (done.state, done.attempts) == ("sent", 1)
        assert receiver.per_delivery() == {key: 2}, "redelivered once after the kill"

        # one more redelivery of the same message: the idempotent consumer skips the sent row
        from workers.celery_app import get_celery

        get_celery().send_task("notifications.deliver", kwargs={"delivery_ids": [delivery.id]},
                               ignore_result=True)
        time.sleep(0.3)
        assert wait_until(stack["redis"].idle, timeout=10)
        time.sleep(0.3)
        assert receiver.per_delivery() == {key: 2}
        assert len({r["delivery"] for r in receiver.requests}) == 1, "the effect is not doubled"
        [after] = deliveries(engine, [ticket.id])
        assert (after.state, after.attempts) == ("sent", 1)

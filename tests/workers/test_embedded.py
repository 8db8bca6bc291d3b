"""The embedded default (SPEC §8): no Redis, a SQLite file, the scheduler and the worker in the
API's process. ``run_periodic_once()`` runs the SLA sweeps and re-relays the outbox, whose
messages the in-process worker threads execute (a webhook receiver counts the deliveries);
``EmbeddedScheduler`` starts and stops cleanly; ``qifu standalone`` starts it only without Redis.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from service import clock, jobs
from service.config import DEV_SECRET, get_settings
from service.db import get_engine, session_scope
from service.notifications.models import Notification, NotificationDelivery
from service.outbox_models import OutboxMessage
from service.tickets.models import Ticket
from tests import factories as f
from tests.notifications.test_notifications import SECRET, WebhookReceiver, settings_env, wait_until
from tests.scratch_db import build_database
from workers import embedded


@pytest.fixture
def env_setter() -> Iterator[Callable[..., None]]:
    with settings_env() as set_env:
        yield set_env


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("embedded-worker") / "qifu.db"
    url = f"sqlite:///{path}"
    build_database(url)
    return url


@pytest.fixture
def embedded_env(sqlite_url, env_setter) -> Iterator[Callable[..., None]]:
    """Settings of the embedded default on the SQLite file (no ``QIFU_REDIS_URL``), the real
    dispatcher, the after-commit relay on; the application engine is disposed afterwards."""
    env_setter(QIFU_DATABASE_URL=sqlite_url, QIFU_REDIS_URL=None, QIFU_WEBHOOK_URL=None)
    assert get_settings().is_sqlite and not get_settings().redis_url
    jobs.set_dispatcher(None)
    jobs.set_relay_enabled(True)
    yield env_setter
    jobs.set_relay_enabled(True)
    jobs._relay_thread().drain()
    get_engine().dispose()


@pytest.fixture
def no_job_errors(caplog) -> Iterator[None]:
    """The relay, the embedded worker threads and the round's outbox/delivery tasks log no error."""
    caplog.set_level(logging.ERROR)
    yield
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR and (
        r.name == "qifu.jobs" or any(t in r.getMessage() for t in ("outbox.relay", "notifications.")))]
    assert not bad, [r.getMessage() for r in bad]


def _deliveries(ticket_id: int) -> list[NotificationDelivery]:
    with Session(get_engine()) as s:
        return list(s.exec(
            select(NotificationDelivery).join(Notification, Notification.id == NotificationDelivery.notification_id)
            .where(Notification.ticket_id == ticket_id).order_by(NotificationDelivery.id)).all())


def _kinds(ticket_id: int) -> Counter:
    """Notifications of the ticket per kind (one per recipient)."""
    with Session(get_engine()) as s:
        return Counter(s.exec(select(Notification.kind).where(Notification.ticket_id == ticket_id)).all())


def _unsent_messages_of(ticket_id: int) -> list[int]:
    """Outbox messages carrying a delivery of the ticket that are still pending."""
    mine = {d.id for d in _deliveries(ticket_id)}
    with Session(get_engine()) as s:
        rows = s.exec(select(OutboxMessage).where(OutboxMessage.sent_at.is_(None))).all()
        return [m.id for m in rows if mine & set(m.kwargs.get("delivery_ids", ()))]


def _age_outbox(minutes: int = 5) -> None:
    """Make every pending outbox message look older than the periodic relay's minimum age."""
    with session_scope() as s:
        s.execute(sa.update(OutboxMessage).where(OutboxMessage.sent_at.is_(None))
                  .values(created_at=clock.now() - timedelta(minutes=minutes)))


def test_periodic_round_sweeps_and_runs_the_outbox_in_process(embedded_env, no_job_errors):
    with WebhookReceiver() as receiver:
        embedded_env(QIFU_WEBHOOK_URL=receiver.url, QIFU_WEBHOOK_SECRET=SECRET)
        jobs.set_relay_enabled(False)  # the after-commit relay "missed" these: the round re-relays
        with session_scope() as s:
            ticket = f.submit(s, at=clock.now() - timedelta(days=30))  # every deadline has passed
            ticket_id = ticket.id
        [submitted] = _deliveries(ticket_id)
        _age_outbox()

        embedded.run_periodic_once()
        # the old message went to the in-process worker threads, which delivered it
        assert wait_until(lambda: _deliveries(ticket_id)[0].state == "sent", timeout=15), receiver.requests
        with Session(get_engine()) as s:
            t = s.get(Ticket, ticket_id)
            assert (t.remind_count, t.overdue_count, t.escalation_level) == (1, 1, 2)
        kinds = _kinds(ticket_id)
        assert set(kinds) == {"submitted", "reminded", "overdue", "escalated"}
        fresh = [d for d in _deliveries(ticket_id) if d.id != submitted.id]
        assert fresh and {d.state for d in fresh} == {"pending"}, "younger than the relay's minimum age"

        _age_outbox()
        embedded.run_periodic_once()  # nothing swept twice; the rest of the outbox is executed
        assert wait_until(lambda: {d.state for d in _deliveries(ticket_id)} == {"sent"}, timeout=15)
        assert _kinds(ticket_id) == kinds
        wanted = {str(d.notification_id) for d in _deliveries(ticket_id)}
        got = receiver.per_delivery()
        assert {k: got[k] for k in wanted} == dict.fromkeys(wanted, 1), "each delivered once"
        assert all(r["valid"] for r in receiver.requests)
        assert _unsent_messages_of(ticket_id) == []


def test_after_commit_relay_runs_jobs_in_process(embedded_env, no_job_errors):
    with WebhookReceiver() as receiver:
        embedded_env(QIFU_WEBHOOK_URL=receiver.url, QIFU_WEBHOOK_SECRET=SECRET)
        with session_scope() as s:
            ticket = f.make_ticket(s, "dispatched", lead_department="RSJ", commit=False)
            ticket_id = ticket.id
        assert wait_until(lambda: {d.state for d in _deliveries(ticket_id)} == {"sent"}, timeout=15)
        assert {r["delivery"] for r in receiver.requests} >= {str(d.notification_id) for d in _deliveries(ticket_id)}
        assert _unsent_messages_of(ticket_id) == []


def test_scheduler_starts_and_stops_cleanly(embedded_env, monkeypatch):
    rounds: list[float] = []
    real_round = embedded.run_periodic_once

    def counting_round() -> None:
        real_round()
        rounds.append(time.monotonic())

    monkeypatch.setattr(embedded, "run_periodic_once", counting_round)
    scheduler = embedded.EmbeddedScheduler(interval=0.2)
    assert scheduler.interval == 0.2
    assert scheduler.start() is scheduler
    assert scheduler._thread.is_alive() and scheduler._thread.daemon
    assert wait_until(lambda: len(rounds) >= 2, timeout=20)
    started = time.monotonic()
    scheduler.stop()
    assert time.monotonic() - started < 10 and not scheduler._thread.is_alive()
    done = len(rounds)
    time.sleep(0.5)
    assert len(rounds) == done, "no round after stop()"


def test_a_failing_task_does_not_stop_the_round(embedded_env, monkeypatch):
    from workers import tasks

    ran = []

    def boom() -> None:
        raise RuntimeError("sweep failed")

    monkeypatch.setattr(tasks, "send_reminders", type("T", (), {"__call__": lambda self: boom(),
                                                                  "name": "sla.send_reminders"})())
    monkeypatch.setattr(tasks, "retry_failed", lambda: ran.append("retry_failed"))
    embedded.run_periodic_once()
    assert ran == ["retry_failed"]


def test_standalone_runs_the_scheduler_only_without_redis(embedded_env, monkeypatch):
    from qifu import cli

    seen: list[list[str]] = []
    # the development secret counts as unset: standalone exports the one it generates, and the
    # monkeypatch takes it back afterwards
    monkeypatch.setenv("QIFU_JWT_SECRET", DEV_SECRET)
    monkeypatch.setattr(cli, "serve", lambda **kw: seen.append([t.name for t in threading.enumerate()]))
    monkeypatch.setattr(cli, "run_seeds", lambda: {"users": 0})  # the file is seeded; migrate runs
    cli.standalone(host="127.0.0.1", port=0)
    assert "qifu-embedded-scheduler" in seen[-1]
    assert get_settings().jwt_secret != DEV_SECRET  # generated, beside the SQLite file
    assert wait_until(lambda: "qifu-embedded-scheduler" not in [t.name for t in threading.enumerate()],
                      timeout=10), "stopped when the server returns"

    embedded_env(QIFU_REDIS_URL="redis://127.0.0.1:6390/0")  # production: Celery beat does it
    monkeypatch.setattr(cli, "run_migrations", lambda: None)
    cli.standalone(host="127.0.0.1", port=0)
    assert "qifu-embedded-scheduler" not in seen[-1]

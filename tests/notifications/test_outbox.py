"""The transactional outbox (SPEC §9, ARCHITECTURE rule 3): a job is recorded with the change and
sent after commit; a rollback drops it; a broker that is down leaves it pending with its error
until a later relay sends it, once; two relays on two connections never send a row twice.

Every test here commits to the test database (the relay runs on its own connections); the rows a
test made are deleted at its end.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
import redis
import sqlalchemy as sa
from sqlmodel import Session, select

from service import clock, jobs
from service.outbox_models import OutboxMessage
from tests.notifications.test_notifications import RecordingDispatcher, settings_env, wait_until

BROKER_DB = "redis://127.0.0.1:6379/14"
UNREACHABLE = "redis://127.0.0.1:6390/0"  # nothing listens there


@pytest.fixture
def env_setter() -> Iterator[Callable[..., None]]:
    with settings_env() as set_env:
        yield set_env


@pytest.fixture
def outbox(engine) -> Iterator[dict]:
    """A recording dispatcher, the after-commit relay off (tests turn it on), and a ``marker`` put
    in every message's kwargs; the test's rows are deleted afterwards."""
    marker = uuid.uuid4().hex
    recorder = RecordingDispatcher()
    jobs.set_dispatcher(recorder)
    jobs.set_relay_enabled(False)
    try:
        yield {"marker": marker, "recorder": recorder}
    finally:
        jobs.set_dispatcher(None)
        jobs.set_relay_enabled(True)
        with Session(engine) as s:
            for m in s.exec(select(OutboxMessage)).all():
                if m.kwargs.get("marker") == marker:
                    s.delete(m)
            s.commit()


def _mine(recorder: RecordingDispatcher, marker: str) -> list[dict]:
    with recorder.lock:
        return [kw for _, kw in recorder.sent if kw.get("marker") == marker]


def _commit_messages(engine, marker: str, n: int, task: str = "ops.ping") -> list[int]:
    with Session(engine) as s:
        messages = [jobs.enqueue(s, task, marker=marker, n=i) for i in range(n)]
        s.commit()
        return [m.id for m in messages]


def test_rolled_back_enqueue_leaves_nothing(engine, outbox):
    jobs.set_relay_enabled(True)
    with Session(engine) as s:
        message = jobs.enqueue(s, "ops.ping", marker=outbox["marker"])
        s.flush()
        assert message.id is not None
        message_id = message.id
        s.rollback()
        assert jobs._PENDING_KEY not in s.info
    with Session(engine) as s:
        assert s.get(OutboxMessage, message_id) is None
        # a later commit of the same session object does not resurrect or relay it
        s.commit()
    jobs._relay_thread().drain()
    assert _mine(outbox["recorder"], outbox["marker"]) == []


def test_committed_enqueue_is_relayed_after_commit(engine, outbox):
    jobs.set_relay_enabled(True)
    with Session(engine) as s:
        message = jobs.enqueue(s, "ops.ping", marker=outbox["marker"])
        s.flush()
        assert _mine(outbox["recorder"], outbox["marker"]) == [], "nothing is sent before the commit"
        s.commit()
        message_id = message.id

    def sent() -> bool:
        with Session(engine) as s:
            return s.get(OutboxMessage, message_id).sent_at is not None

    assert wait_until(sent, timeout=10)
    with Session(engine) as s:
        row = s.get(OutboxMessage, message_id)
        assert (row.attempts, row.last_error) == (1, None)
        assert row.task == "ops.ping" and row.kwargs == {"marker": outbox["marker"]}
    assert _mine(outbox["recorder"], outbox["marker"]) == [{"marker": outbox["marker"]}]
    # relaying again sends nothing: it is no longer pending
    with Session(engine) as s:
        assert jobs.relay(s, [message_id]) == (0, 0)
    assert len(_mine(outbox["recorder"], outbox["marker"])) == 1


def _queued_on_broker(client: redis.Redis, marker: str) -> int:
    """Messages waiting in the broker's default queue whose kwargs carry ``marker``."""
    return sum(1 for raw in client.lrange("celery", 0, -1)
               if marker in json.loads(raw)["headers"].get("kwargsrepr", ""))


def test_broker_down_keeps_pending_then_one_send(engine, outbox, env_setter):
    """The real dispatcher (Celery ``send_task``) against a Redis URL where nothing listens, then
    against a live Redis: pending with attempts and error, then sent once."""
    jobs.set_dispatcher(None)
    env_setter(QIFU_REDIS_URL=UNREACHABLE)
    with Session(engine) as s:
        pending_before = jobs.pending_count(s)
    [message_id] = _commit_messages(engine, outbox["marker"], 1)
    with Session(engine) as s:
        assert jobs.pending_count(s) == pending_before + 1
        started = time.monotonic()
        assert jobs.relay(s, [message_id]) == (0, 1)
        assert time.monotonic() - started < 10, "a dead broker fails fast (no result-backend retries)"
    with Session(engine) as s:
        row = s.get(OutboxMessage, message_id)
        assert row.sent_at is None and row.attempts == 1
        assert "OperationalError" in row.last_error and "6390" in row.last_error

    broker = redis.Redis.from_url(BROKER_DB)
    broker.flushdb()
    try:
        env_setter(QIFU_REDIS_URL=BROKER_DB)
        with Session(engine) as s:
            assert jobs.relay(s, [message_id]) == (1, 0)
            assert jobs.relay(s, [message_id]) == (0, 0)
            assert jobs.pending_count(s) == pending_before
        with Session(engine) as s:
            row = s.get(OutboxMessage, message_id)
            assert row.sent_at is not None and row.attempts == 2
        assert _queued_on_broker(broker, outbox["marker"]) == 1
    finally:
        broker.flushdb()


def test_periodic_relay_takes_only_old_enough_rows(engine, outbox):
    """``relay(min_age_seconds=...)`` (the ``outbox.relay`` beat task) leaves a message that the
    after-commit relay may still be sending, and takes one that is older."""
    old, fresh = _commit_messages(engine, outbox["marker"], 2)
    with Session(engine) as s:
        s.get(OutboxMessage, old).created_at = clock.now() - timedelta(minutes=5)
        s.commit()
    with Session(engine) as s:
        jobs.relay(s, min_age_seconds=10)
    assert [kw["n"] for kw in _mine(outbox["recorder"], outbox["marker"])] == [0]
    with Session(engine) as s:
        assert s.get(OutboxMessage, fresh).sent_at is None
        assert s.get(OutboxMessage, old).sent_at is not None


def test_relay_stops_early_when_the_broker_is_down(engine, outbox):
    ids = _commit_messages(engine, outbox["marker"], 6)

    def down(task: str, kwargs: dict) -> None:
        raise ConnectionError("broker down")

    jobs.set_dispatcher(down)
    with Session(engine) as s:
        assert jobs.relay(s, ids) == (0, 3)
    with Session(engine) as s:
        attempts = [s.get(OutboxMessage, i).attempts for i in ids]
    assert attempts == [1, 1, 1, 0, 0, 0]
    jobs.set_dispatcher(outbox["recorder"])
    with Session(engine) as s:
        assert jobs.relay(s, ids) == (6, 0)
    assert sorted(kw["n"] for kw in _mine(outbox["recorder"], outbox["marker"])) == list(range(6))


def test_two_relays_skip_locked_rows(engine, outbox):
    """Relay A holds its claimed rows (mid-send); relay B on another connection neither waits for
    them nor sends them; each row is sent once."""
    ids = _commit_messages(engine, outbox["marker"], 5)
    recorder: RecordingDispatcher = outbox["recorder"]
    a_sending, b_done = threading.Event(), threading.Event()

    def dispatcher(task: str, kwargs: dict) -> None:
        if threading.current_thread().name == "relay-a" and not a_sending.is_set():
            a_sending.set()
            assert b_done.wait(10)
        recorder(task, kwargs)

    jobs.set_dispatcher(dispatcher)
    results: dict[str, tuple[int, int]] = {}

    def run(name: str) -> None:
        with Session(engine) as s:
            results[name] = jobs.relay(s, ids)

    a = threading.Thread(target=run, args=("a",), name="relay-a")
    a.start()
    assert a_sending.wait(10)
    b = threading.Thread(target=run, args=("b",), name="relay-b")
    b.start()
    b.join(10)
    assert not b.is_alive(), "SKIP LOCKED: relay B does not wait for A's rows"
    b_done.set()
    a.join(10)
    assert results == {"a": (5, 0), "b": (0, 0)}
    assert sorted(kw["n"] for kw in _mine(recorder, outbox["marker"])) == list(range(5))


def test_many_concurrent_relays_send_each_row_once(engine, outbox):
    ids = _commit_messages(engine, outbox["marker"], 40)
    recorder: RecordingDispatcher = outbox["recorder"]
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait(10)
            with Session(engine) as s:
                while True:
                    sent, failed = jobs.relay(s, ids, limit=3)
                    if not sent and not failed and not s.exec(
                            select(sa.func.count()).select_from(OutboxMessage)
                            .where(OutboxMessage.id.in_(ids), OutboxMessage.sent_at.is_(None))).one():
                        return
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    counts = Counter(kw["n"] for kw in _mine(recorder, outbox["marker"]))
    assert counts == Counter(range(40)), "every row sent exactly once"
    with Session(engine) as s:
        rows = s.exec(select(OutboxMessage).where(OutboxMessage.id.in_(ids))).all()
        assert all(r.sent_at is not None and r.attempts == 1 for r in rows)

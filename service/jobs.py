"""Jobs after commit: the transactional outbox (SPEC §9; ARCHITECTURE rule 3).

:func:`enqueue` writes the task to ``outbox_message`` in the caller's transaction: a rollback drops
it, a commit keeps it even when the broker is down. After the commit, the message ids are handed to
a background relay thread of this process, which sends them to the broker through the dispatcher
the workers layer registered (:func:`register_dispatcher`: Celery on Redis when ``QIFU_REDIS_URL``
is set, else the embedded in-process executor) and stamps ``sent_at``. What the
broker did not take stays pending and is re-sent by the periodic ``outbox.relay`` task. Consumers
are idempotent, so a message relayed twice does no harm.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlmodel import Session, select

from service import clock
from service.logs import current_request_id, request_id_bound
from service.outbox_models import OutboxMessage

log = logging.getLogger("qifu.jobs")
_PENDING_KEY = "qifu_outbox_pending"


def enqueue(session: Session, task: str, **kwargs: Any) -> OutboxMessage:
    """Record ``task(**kwargs)`` in the outbox, in the caller's transaction (ids only in kwargs).

    The message is relayed after the transaction commits; on rollback it never existed.
    """
    message = OutboxMessage(task=task, kwargs=kwargs, created_at=clock.now())
    session.add(message)
    session.info.setdefault(_PENDING_KEY, []).append(message)
    return message


def relay_after_commit(session: Session, ids: Iterable[int]) -> None:
    """Relay outbox messages written in ``session``'s transaction by plain SQL (not through
    :func:`enqueue`) once that transaction commits; dropped on rollback, as enqueued ones are."""
    session.info.setdefault(_PENDING_KEY, []).extend(_Written(i) for i in ids)


def relay_committed(ids: Iterable[int], bind) -> None:
    """Relay outbox messages that are already committed (written outside a Session)."""
    ids = list(ids)
    if ids and relay_enabled():
        _relay_thread().submit(ids, bind)


class _Written:
    """An outbox row known by id only (see :func:`relay_after_commit`)."""

    __slots__ = ("id",)

    def __init__(self, id_: int) -> None:
        self.id = id_


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    messages = session.info.pop(_PENDING_KEY, None)
    if messages:
        relay_committed([m.id for m in messages if m.id is not None], session.get_bind())


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)


# ------------------------------------------------------------------ dispatching to a broker

_dispatcher: Callable[[str, dict], None] | None = None  # registered by the workers layer at start
_dispatcher_override: Callable[[str, dict], None] | None = None  # tests
_relay_enabled = True


class NoDispatcher(RuntimeError):
    """No broker dispatcher is registered in this process: the message stays pending (the
    periodic ``outbox.relay`` of a process that has one sends it)."""


def relay_enabled() -> bool:
    return _relay_enabled


def set_relay_enabled(enabled: bool) -> None:
    """Turn the after-commit relay thread on or off (tests drive the relay by hand)."""
    global _relay_enabled
    _relay_enabled = enabled


def register_dispatcher(dispatch: Callable[[str, dict], None]) -> None:
    """Register how a message is handed to the broker: ``dispatch(task_name, kwargs)``, raising
    when the broker does not take it. The domain never imports the broker; the workers layer
    registers it when a process starts (``workers.dispatch.register``: the API, the CLI, Celery
    workers and the embedded scheduler)."""
    global _dispatcher
    _dispatcher = dispatch


def set_dispatcher(dispatch: Callable[[str, dict], None] | None) -> None:
    """Replace the registered dispatcher for a while (tests); ``None`` = the registered one."""
    global _dispatcher_override
    _dispatcher_override = dispatch


def dispatch(task: str, kwargs: dict) -> None:
    """Hand ``task(**kwargs)`` to the broker. Raises :class:`NoDispatcher` when none is registered,
    or whatever the broker raises."""
    send = _dispatcher_override or _dispatcher
    if send is None:
        raise NoDispatcher("no broker dispatcher registered in this process (workers.dispatch.register)")
    send(task, kwargs)


def relay(session: Session, ids: Iterable[int] | None = None, *, min_age_seconds: float = 0,
          limit: int = 1000) -> tuple[int, int]:
    """Send pending outbox messages (``ids``, or all pending at least ``min_age_seconds`` old) to
    the broker and stamp them sent; commits per batch. Returns ``(sent, failed)``.

    Rows are claimed with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so concurrent relays never send
    the same row at the same time; a send that fails leaves the row pending with its error.
    """
    stmt = select(OutboxMessage).where(OutboxMessage.sent_at.is_(None)).order_by(OutboxMessage.id).limit(limit)
    if ids is not None:
        stmt = stmt.where(OutboxMessage.id.in_(list(ids)))
    elif min_age_seconds:
        stmt = stmt.where(OutboxMessage.created_at <= clock.now() - timedelta(seconds=min_age_seconds))
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    elif dialect == "sqlite":
        # No row locks on SQLite: take the database write lock before reading (a no-op UPDATE).
        # Else the embedded worker thread that runs a just-dispatched task commits between our
        # read and our write, the write fails with "database is locked" (SQLITE_BUSY_SNAPSHOT),
        # and the messages stay pending and are re-sent on every round.
        session.execute(sa.update(OutboxMessage).where(sa.false()).values(attempts=OutboxMessage.attempts))
    sent = failed = 0
    for message in session.exec(stmt).all():
        try:
            dispatch(message.task, dict(message.kwargs))
        except Exception as exc:  # noqa: BLE001 - broker down: keep it pending
            message.attempts += 1
            message.last_error = f"{type(exc).__name__}: {exc}"[:500]
            failed += 1
            if failed >= 3 and sent == 0:
                break  # the broker is down: stop trying the rest now, the periodic relay retries
        else:
            message.sent_at = clock.now()
            message.attempts += 1
            sent += 1
    session.commit()
    return sent, failed


def pending_count(session: Session) -> int:
    return session.exec(select(sa.func.count()).select_from(OutboxMessage)
                        .where(OutboxMessage.sent_at.is_(None))).one()


class _RelayThread:
    """A daemon thread per process that relays ids handed over by committed sessions."""

    def __init__(self) -> None:
        self.queue: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="qifu-outbox-relay", daemon=True)
        self.thread.start()

    def submit(self, ids: list[int], bind) -> None:
        self.queue.put((ids, bind, current_request_id()))  # the committing request's id, for the tasks

    def _run(self) -> None:
        while True:
            ids, bind, request_id = self.queue.get()
            engine = getattr(bind, "engine", bind)
            try:
                with Session(engine) as session, request_id_bound(request_id):
                    relay(session, ids)
            except Exception:  # noqa: BLE001 - never kill the thread; the periodic relay retries
                log.exception("outbox relay failed")

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until the queue is empty (tests)."""
        import time

        deadline = time.monotonic() + timeout
        while not self.queue.empty() and time.monotonic() < deadline:
            time.sleep(0.01)


_relay: _RelayThread | None = None
_relay_lock = threading.Lock()


def _relay_thread() -> _RelayThread:
    global _relay
    with _relay_lock:
        if _relay is None:
            _relay = _RelayThread()
    return _relay

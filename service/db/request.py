"""The request's session: the FastAPI session dependency, the per-event-loop request slots that
keep requests from deadlocking on the pool, and the one-hop commit of the hottest routes.

Services never commit (ARCHITECTURE rule 2): the request's session dependency commits on success
and rolls back on error, before the response is sent (FastAPI ``Depends(..., scope="function")``).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import anyio
import sqlalchemy as sa
from sqlmodel import Session

from service.db.engine import get_engine

T = TypeVar("T")


async def get_session() -> AsyncIterator[Session]:
    """FastAPI dependency: one session per request, committed before the response is sent.

    An async generator on purpose (docs/performance.md): creating a ``Session`` does no I/O, so it
    costs no worker-thread hop; the commit (or rollback) and close run in one hop at the end, and
    only when the request used the database. ``def`` routes still use it as a plain sync Session.
    """
    async with _request_slots():
        session = Session(get_engine(), expire_on_commit=False)
        try:
            yield session
        except BaseException:
            await anyio.to_thread.run_sync(_finish, session, False)
            raise
        if session.in_transaction() or session.new or session.dirty or session.deleted:
            await anyio.to_thread.run_sync(_finish, session, True)
        else:
            session.close()  # nothing to commit and no connection held: no I/O


#: Connections of the pool kept out of the request slots, for a request's second connection
#: (e.g. creating the year's ticket-number sequence) and background threads (the outbox relay).
POOL_RESERVE = 2
_SLOTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.Semaphore] = weakref.WeakKeyDictionary()


def _request_slots() -> anyio.Semaphore:
    """How many requests of this event loop may hold a session at once: the pool's steady size
    (``QIFU_DB_POOL_SIZE``), less :data:`POOL_RESERVE` when the overflow cannot cover it.

    - A request keeps its pooled connection across several worker-thread hops (auth, route,
      commit). Without a bound, under load every worker thread could block waiting for a pooled
      connection while the requests holding the connections wait for a free worker thread: a
      deadlock until the pool timeout, answered with 500s. Waiting here costs no thread.
    - Requests never use the overflow, so its connections are not opened and closed again on
      every burst (a new PostgreSQL connection costs more than a whole submission).
    """
    loop = asyncio.get_running_loop()
    slots = _SLOTS.get(loop)
    if slots is None:
        pool = get_engine().pool
        size = 1000  # a pool that never makes a checkout wait (static, null, unlimited overflow)
        if isinstance(pool, sa.pool.QueuePool) and pool._max_overflow >= 0:
            size = max(1, min(pool.size(), pool.size() + pool._max_overflow - POOL_RESERVE))
        slots = _SLOTS[loop] = anyio.Semaphore(size)
    return slots


async def commit_in_thread(session: Session, work: Callable[[], T]) -> T:
    """Run ``work()`` (sync code using the request's ``session``) in a worker thread and commit
    there: one thread hop for a request's whole unit of work instead of two (route, then the
    dependency's commit). For the hottest routes only (docs/performance.md); the commit still
    happens before the response is sent, and if ``work`` or the commit raises, the session
    dependency rolls back and the error is answered (never a 2xx)."""

    def run() -> T:
        result = work()
        session.commit()
        return result

    return await anyio.to_thread.run_sync(run)


def _finish(session: Session, commit: bool) -> None:
    try:
        if commit:
            session.commit()
        else:
            session.rollback()
    finally:
        session.close()

"""Async psycopg connection pools, one per event loop and engine, for statements that run on the
event loop without a worker thread (the intake statement, docs/performance.md)."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.engine import Engine

from service.config import get_settings
from service.db import engine as _engine

_ASYNC_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Engine, asyncio.Future]] = \
    weakref.WeakKeyDictionary()


def _conninfo(engine: Engine) -> str:
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


async def open_async_pools() -> None:
    """Let this event loop keep async connection pools (application start-up: the pools live as
    long as the application's lifespan and are closed by :func:`close_async_pools`)."""
    _ASYNC_POOLS.setdefault(asyncio.get_running_loop(), {})


async def close_async_pools() -> None:
    """Close this event loop's async pools (application shutdown)."""
    pools = _ASYNC_POOLS.pop(asyncio.get_running_loop(), {})
    for opening in pools.values():
        await (await opening).close()


@asynccontextmanager
async def async_connection(engine: Engine) -> AsyncIterator[psycopg.AsyncConnection]:
    """An autocommit psycopg async connection to ``engine``'s PostgreSQL database, for statements
    that run on the event loop without a worker thread (the intake statement,
    docs/performance.md).

    Inside the application's lifespan (:func:`open_async_pools`) it comes from this loop's pool of
    up to ``QIFU_DB_POOL_SIZE`` connections, opened as needed. Elsewhere (an ASGI call without a
    lifespan, e.g. a test client used without ``with``) a connection is opened and closed for the
    call, so nothing outlives its event loop.
    """
    pools = _ASYNC_POOLS.get(asyncio.get_running_loop())
    if pools is None:
        conn = await psycopg.AsyncConnection.connect(_conninfo(engine), autocommit=True)
        try:
            yield conn
        finally:
            await conn.close()
        return
    opening = pools.get(engine)
    if opening is None:  # opened once; concurrent first callers await the same future
        opening = pools[engine] = asyncio.ensure_future(_opened(_new_pool(engine)))
        opening.add_done_callback(lambda done, pools=pools, engine=engine: _forget_failed(pools, engine, done))
    pool = await asyncio.shield(opening)  # a cancelled caller does not cancel the opening
    async with pool.connection() as conn:
        try:
            yield conn
        except psycopg.OperationalError:
            if conn.broken:  # the server went away: its other connections are likely gone too
                pool.run_task_drain()
            raise


class _AsyncPool(AsyncConnectionPool):
    """psycopg's async pool with SQLAlchemy's disconnect handling (:func:`service.db.engine._ping_when_idle`):
    a connection idle for more than ``PING_AFTER_IDLE_SECONDS`` is pinged before it is handed out
    (under load none is), and one dead connection, found by the ping or by a statement, replaces
    every idle connection of the pool (:meth:`drain`). After a database restart the pool's other
    connections are dead too: checking them one at a time would cost the waiting request the
    pool's growing pauses between attempts (1, 2, 4 ... s), up to a ``PoolTimeout``."""

    def __init__(self, conninfo: str, size: int) -> None:
        super().__init__(conninfo, min_size=1, max_size=size, open=False, kwargs={"autocommit": True},
                         name="qifu-async", configure=_mark_idle, reset=_mark_idle, check=self._check_when_idle)
        self._draining: asyncio.Task | None = None

    async def _check_when_idle(self, conn: psycopg.AsyncConnection) -> None:
        if not _engine.idle_too_long(getattr(conn, "_qifu_idle_since", None)):
            return
        try:
            await AsyncConnectionPool.check_connection(conn)
        except psycopg.Error:
            await self.drain()
            raise  # the pool discards this connection and waits for a new one

    def run_task_drain(self) -> None:
        """Drain in the background (one drain at a time): called where the caller cannot wait."""
        if self._draining is None or self._draining.done():
            self._draining = asyncio.ensure_future(self.drain())


def _new_pool(engine: Engine) -> _AsyncPool:
    return _AsyncPool(_conninfo(engine), max(1, get_settings().db_pool_size))


async def _opened(pool: _AsyncPool) -> _AsyncPool:
    await pool.open()  # connections are made in the background; a request waits for one
    return pool


def _forget_failed(pools: dict[Engine, asyncio.Future], engine: Engine, opening: asyncio.Future) -> None:
    """Drop a pool whose opening was cancelled or raised (e.g. the loop shutting down while it
    opened), so the next request opens a new one instead of failing on the cached outcome for the
    life of the process. (A database that is down at the first request is not such a failure: the
    pool opens without connecting, and requests wait for a connection up to ``PoolTimeout``.)"""
    if (opening.cancelled() or opening.exception() is not None) and pools.get(engine) is opening:
        del pools[engine]


async def _mark_idle(conn: psycopg.AsyncConnection) -> None:
    """Pool callback (``configure``, ``reset``): the connection is idle in the pool from now."""
    conn._qifu_idle_since = time.monotonic()  # type: ignore[attr-defined]

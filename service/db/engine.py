"""Database engine, metadata naming convention, column types and the request session.

Services never commit (ARCHITECTURE rule 2): the request's session dependency commits on success
and rolls back on error, before the response is sent (FastAPI ``Depends(..., scope="function")``).
"""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from functools import lru_cache, partial
from typing import TypeVar

import anyio
import psycopg
import sqlalchemy as sa
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import Session, SQLModel

from service.config import get_settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata.naming_convention = NAMING_CONVENTION
T = TypeVar("T")


class UTCDateTime(sa.types.TypeDecorator):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL stores ``timestamptz``; SQLite stores naive UTC text. Values read back are always
    aware UTC datetimes; writing a naive value raises ``ValueError`` (all Qifu times are aware).
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def check_in(column: str, values) -> sa.CheckConstraint:
    """A CHECK constraint ``column IN (...)`` named ``<column>_valid`` (enums as strings)."""
    quoted = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({quoted})", name=f"{column}_valid")


#: JSON columns keep Chinese readable in the database (no \\uXXXX escapes).
_json_dumps = partial(json.dumps, ensure_ascii=False)


def make_engine(url: str | None = None) -> Engine:
    """Create an engine for ``url`` (default: settings). SQLite gets WAL and foreign keys on."""
    settings = get_settings()
    url = url or settings.database_url
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                                  echo=settings.sql_echo, json_serializer=_json_dumps)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
            # pysqlite opens transactions lazily (only before DML), so a SAVEPOINT issued first
            # became the outermost transaction and its RELEASE committed: begin_nested() then
            # leaked writes past an outer rollback. Take over transaction control (SQLAlchemy's
            # documented pysqlite recipe): no implicit BEGIN, an explicit one on every begin.
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # pragma: no cover - trivial
            # IMMEDIATE: take the write lock at the start, so a transaction that reads and then
            # writes never fails with "database is locked" because another one committed in
            # between; concurrent writers wait (busy_timeout) instead. The embedded default has
            # few writers; production runs on PostgreSQL.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    engine = sa.create_engine(url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow,
                              echo=settings.sql_echo, json_serializer=_json_dumps)
    _ping_when_idle(engine)
    return engine


#: A pooled connection idle for longer than this is pinged before use (a dead one is replaced).
PING_AFTER_IDLE_SECONDS = 2.0


def _ping_when_idle(engine: Engine) -> None:
    """``pool_pre_ping``, but only for connections that sat idle (docs/performance.md): under load
    a connection is handed out again within milliseconds, and a ping per checkout is one more
    round trip per request. SQLAlchemy's "pessimistic disconnect handling" recipe with events."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn, record) -> None:
        record.info["qifu_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn, record, _proxy) -> None:
        if not _idle_too_long(record.info.get("qifu_idle_since")):
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # the pool replaces the connection and retries
            raise sa.exc.DisconnectionError(f"stale pooled connection: {exc}") from exc


def _idle_too_long(idle_since: float | None) -> bool:
    """Whether a pooled connection idle since ``idle_since`` (monotonic seconds; None: never
    returned to the pool, i.e. new) must be pinged before use: idle for more than
    :data:`PING_AFTER_IDLE_SECONDS`. The rule of both pools (sync engine, async intake pool)."""
    return idle_since is not None and time.monotonic() - idle_since > PING_AFTER_IDLE_SECONDS


def insert_now(session: Session, objs: Sequence[SQLModel]) -> None:
    """INSERT new table models of one table at once, with one Core statement (an executemany for
    several), and attach them to ``session`` as persistent, clean objects, as a flush would leave
    them (database-generated ``id`` filled in).

    A fraction of the unit of work's CPU cost, for rows written on hot paths (a submission's
    ticket, event and notification; docs/performance.md). For tables whose rows need no ORM
    relationship handling; the values are the objects' column attributes as they are.
    """
    if not objs:
        return
    table = objs[0].__table__
    statements = _INSERTS.get(table)
    if statements is None:  # built once per table: a new construct costs a cache-key walk per call
        pk = table.c.id if "id" in table.c else None
        returning = sa.insert(table).returning(pk, sort_by_parameter_order=True) if pk is not None else None
        statements = _INSERTS[table] = (sa.insert(table), returning)
    rows = [{c.key: getattr(obj, c.key) for c in table.columns} for obj in objs]
    if statements[1] is not None and all(row["id"] is None for row in rows):
        for row in rows:
            del row["id"]
        ids = session.execute(statements[1], rows).scalars().all()
        for obj, new_id in zip(objs, ids, strict=True):
            obj.id = new_id
    else:
        session.execute(statements[0], rows)
    for obj in objs:
        make_transient_to_detached(obj)
        session.add(obj)


_INSERTS: dict[sa.Table, tuple[sa.Insert, sa.Insert | None]] = {}


def database_key(session: Session) -> str:
    """The URL (with password) of the database ``session`` talks to, as a key for per-process
    caches of that database's reference data. Rendering a URL costs as much as a small request
    step, so it is done once per engine."""
    engine = session.get_bind().engine
    key = _URL_KEYS.get(engine)
    if key is None:
        key = _URL_KEYS[engine] = engine.url.render_as_string(hide_password=False)
    return key


_URL_KEYS: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()


@lru_cache
def get_engine() -> Engine:
    """The process-wide engine (cached; tests clear it with ``get_engine.cache_clear()``)."""
    return make_engine()


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A unit of work for CLI, imports and tasks: commits on success, rolls back on error."""
    with Session(engine or get_engine(), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


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
    """psycopg's async pool with SQLAlchemy's disconnect handling (:func:`_ping_when_idle`):
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
        if not _idle_too_long(getattr(conn, "_qifu_idle_since", None)):
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


def _finish(session: Session, commit: bool) -> None:
    try:
        if commit:
            session.commit()
        else:
            session.rollback()
    finally:
        session.close()

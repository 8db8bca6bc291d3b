"""The database engine (sync, pooled), the units of work of CLI, imports and tasks
(:func:`session_scope`), and the Core insert of hot paths (:func:`insert_now`).

Services never commit (ARCHITECTURE rule 2): the request's session dependency
(:mod:`service.db.request`) or :func:`session_scope` commits.
"""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache, partial
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.base import NO_VALUE
from sqlmodel import Session, SQLModel

from service.config import get_settings

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
        if not idle_too_long(record.info.get("qifu_idle_since")):
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # the pool replaces the connection and retries
            raise sa.exc.DisconnectionError(f"stale pooled connection: {exc}") from exc


def idle_too_long(idle_since: float | None) -> bool:
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

M = TypeVar("M", bound=SQLModel)


def new_row(model: type[M], values: dict[str, Any]) -> M:
    """``model(**values)`` for a SQLModel table model, the same new transient object, built without
    SQLModel's per-attribute ``__setattr__`` (each goes through SQLAlchemy's and pydantic's
    ``__setattr__``: about 0.2 ms for a ticket's 60 columns, a fifth of an imported row's cost).

    Like SQLModel's table constructor it does not validate: the given values are kept as they are,
    the fields not given get their defaults (``default_factory`` called), a required field not
    given stays unset, and ``model_fields_set`` is the given names. The values go into the
    instance's ``__dict__`` and the ORM state records each as added (``committed_state``,
    ``modified``), as the constructor's attribute events leave them. It falls back to
    ``model(**values)`` when that would do more: a value that is not a field (SQLModel ignores
    it), relationships, aliases, ``extra="allow"``, a ``model_post_init`` or an attribute ``set``
    listener. ``tests/test_db_rows.py`` compares the two, before and after :func:`insert_now`.
    """
    plan = _NEW_ROW_PLANS.get(model)
    if plan is None:
        plan = _NEW_ROW_PLANS[model] = _new_row_plan(model)
    if not plan or not values.keys() <= plan[1].keys():
        return model(**values)
    manager, fields = plan
    obj = manager.new_instance()  # model.__new__ (SQLModel sets the pydantic slots) + the ORM state
    target = obj.__dict__
    defaults = {}
    for name, field in fields.items():
        if name in values:
            target[name] = values[name]
        elif not field.is_required():
            defaults[name] = field.get_default(call_default_factory=True)
    target.update(defaults)
    object.__setattr__(obj, "__pydantic_fields_set__", set(values))
    # as each attribute event of the constructor leaves a new object: every value "added", none
    # committed (what a flush or insert_now's make_transient_to_detached then commits)
    state = sa.orm.attributes.instance_state(obj)
    state.committed_state.update(dict.fromkeys(target.keys() - {"_sa_instance_state"}, NO_VALUE))
    state.modified = True
    return obj


def _new_row_plan(model: type[SQLModel]) -> tuple[Any, dict[str, Any]] | tuple[()]:
    """``(class manager, model fields)`` when :func:`new_row` may build ``model`` itself, else ``()``."""
    sa.orm.configure_mappers()  # what the constructor's ``init`` event would do
    manager = sa.orm.instrumentation.manager_of_class(model)
    fields = dict(model.model_fields)
    if (manager is None or model.__sqlmodel_relationships__ or model.__pydantic_post_init__
            or model.model_config.get("extra") == "allow" or any(f.alias for f in fields.values())
            or any(manager[name].dispatch.set for name in fields if name in manager)):
        return ()
    return manager, fields


_NEW_ROW_PLANS: dict[type, tuple[Any, dict[str, Any]] | tuple[()]] = {}


def insert_unless_duplicate(session: Session, obj: M) -> M | None:
    """Add and flush ``obj`` in a savepoint; ``None`` (and nothing written) when a unique or
    primary key refuses it: the loser of two concurrent claims of the same key (a cadence period,
    a report, a session) gives up quietly instead of failing its transaction."""
    try:
        with session.begin_nested():
            session.add(obj)
            session.flush()
    except IntegrityError:
        return None
    return obj


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



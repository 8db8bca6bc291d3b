"""Database engine, metadata naming convention, column types and the request session.

Services never commit (ARCHITECTURE rule 2): the request's session dependency commits on success
and rolls back on error, before the response is sent (FastAPI ``Depends(..., scope="function")``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache, partial

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
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
            conn.exec_driver_sql("BEGIN")

        return engine
    return sa.create_engine(url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow,
                            pool_pre_ping=True, echo=settings.sql_echo, json_serializer=_json_dumps)


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


def get_session() -> Iterator[Session]:
    """FastAPI dependency: one session per request, committed before the response is sent."""
    with session_scope() as session:
        yield session

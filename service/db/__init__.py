"""The database layer: naming rules (:mod:`.naming`), column types (:mod:`.types`), the engine and
units of work (:mod:`.engine`), the request's session (:mod:`.request`) and the async pools of the
intake statement (:mod:`.async_pool`).

Every public name is importable from ``service.db`` (``from service.db import session_scope``);
the naming rules are applied to ``SQLModel.metadata`` first, before any table model is defined.
The async pools' names are loaded on first use (:func:`__getattr__`): :mod:`.async_pool` imports
psycopg and psycopg_pool (about 0.1 s), which a process on SQLite or without the intake statement
(``qifu import``, the workers) never needs.
"""

from service.db.naming import NAMING_CONVENTION  # noqa: I001  (first: the metadata's naming rules)
from service.db.engine import (
    PING_AFTER_IDLE_SECONDS,
    database_key,
    get_engine,
    idle_too_long,
    insert_now,
    insert_unless_duplicate,
    make_engine,
    new_row,
    session_scope,
)
from service.db.request import POOL_RESERVE, commit_in_thread, get_session
from service.db.types import UTCDateTime, check_in

__all__ = [
    "NAMING_CONVENTION", "PING_AFTER_IDLE_SECONDS", "POOL_RESERVE", "UTCDateTime", "async_connection",
    "check_in", "close_async_pools", "commit_in_thread", "database_key", "get_engine", "get_session",
    "idle_too_long", "insert_now", "insert_unless_duplicate", "make_engine", "new_row", "open_async_pools",
    "session_scope",
]

_ASYNC_POOL_NAMES = frozenset({"async_connection", "close_async_pools", "open_async_pools"})


def __getattr__(name: str):
    """``service.db.async_connection``, ``open_async_pools``, ``close_async_pools``: imported from
    :mod:`.async_pool` on first use (PEP 562); ``AttributeError`` for any other missing name."""
    if name in _ASYNC_POOL_NAMES:
        from service.db import async_pool

        return getattr(async_pool, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

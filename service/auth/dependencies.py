"""FastAPI dependencies for authentication and role checks."""

from __future__ import annotations

import asyncio
import random
import time
import weakref
from typing import Annotated

import anyio
import sqlalchemy as sa
from fastapi import Depends
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session

from service import clock
from service.auth.actor import Actor, actor_of
from service.auth.security import decode_access_token
from service.auth.throttle import user_request_limit
from service.config import get_settings
from service.db import get_session
from service.errors import NotAllowed, Unauthenticated
from service.users.models import User

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)

SessionDep = Annotated[Session, Depends(get_session, scope="function")]


#: Longest time (seconds) this process reuses a token user's :class:`Actor` without reading
#: ``user_account`` again; each entry lives a random 75-100 % of it (docs/performance.md: the
#: read and its worker-thread hop are a large share of a cheap request). A change to a user
#: flushed through this process clears the cache at once (and again if that transaction rolls
#: back); other API processes see the change within this time.
ACTOR_TTL_SECONDS = 5.0
#: per engine: user id -> (expires, actor, the user's ``token_version``)
_actors: weakref.WeakKeyDictionary[Engine, dict[int, tuple[float, Actor, int]]] = weakref.WeakKeyDictionary()
_generation = [0]  # bumped by every clear: a lookup that raced with a clear is not cached
_USERS_CHANGED = "qifu_users_changed"


def clear_actor_cache() -> None:
    """Forget every cached actor (after a change to users, and between tests)."""
    _generation[0] += 1
    _actors.clear()


async def get_current_actor(session: SessionDep, token: Annotated[str | None, Depends(oauth2_scheme)]) -> Actor:
    """Resolve the bearer token to an :class:`Actor` and count the request against the user's
    rate limit (``requests_per_user_per_minute``, SPEC §9; :class:`~service.auth.throttle.UserRequestLimit`).

    Raises:
        Unauthenticated (401): see :func:`_actor_of_token`.
        TooManyRequests (429): the user's requests of this minute are used up.
    """
    actor = await _actor_of_token(session, token)
    user_request_limit(get_settings().requests_per_user_per_minute).hit(actor.user_id)
    return actor


async def _actor_of_token(session: Session, token: str | None) -> Actor:
    """Resolve the bearer token to an :class:`Actor`.

    Async on purpose: the token is checked on the event loop; the user row is read in a worker
    thread only when this process has no fresh copy (:data:`ACTOR_TTL_SECONDS`).

    A token issued before the user's password or role changed (its ``ver`` claim differs from
    ``user_account.token_version``) is refused: at once in the process that made the change,
    within :data:`ACTOR_TTL_SECONDS` in the others.

    Raises:
        Unauthenticated (401): no token, bad or expired token, unknown or inactive user, token
            revoked by a password or role change.
    """
    if not token:
        raise Unauthenticated("需要登录（Authorization: Bearer <token>）")
    user_id, version = _token_user(token)
    bind = session.get_bind()
    engine = getattr(bind, "engine", bind)
    cached = _actors.get(engine, {}).get(user_id)
    if cached is not None and time.monotonic() < cached[0]:
        return _current(cached, version)
    # One read per user at a time: when the entry expires under load, the requests of that user
    # that arrive meanwhile wait for that read instead of each reading (docs/performance.md)
    key = (engine, user_id)
    loading = _loading.get(key)
    if loading is not None and loading.get_loop() is asyncio.get_running_loop():
        await asyncio.shield(loading)  # always resolved with None, also when that read failed
        cached = _actors.get(engine, {}).get(user_id)
        if cached is not None and time.monotonic() < cached[0]:
            return _current(cached, version)
    loading = _loading[key] = asyncio.get_running_loop().create_future()
    generation = _generation[0]
    try:
        actor, current = await anyio.to_thread.run_sync(_load_actor, session, user_id)
        entry = (0.0, actor, current)
        if generation == _generation[0]:
            # expires after 75-100 % of the TTL: entries read together (at start-up) are not all
            # read again at the same moment
            expires = time.monotonic() + ACTOR_TTL_SECONDS * random.uniform(0.75, 1.0)
            entry = _actors.setdefault(engine, {})[user_id] = (expires, actor, current)
        return _current(entry, version)
    finally:
        if _loading.get(key) is loading:
            del _loading[key]
        loading.set_result(None)


_loading: dict[tuple[Engine, int], asyncio.Future] = {}


def _current(entry: tuple[float, Actor, int], version: int) -> Actor:
    """The cached actor when the token was issued for the user's current ``token_version``."""
    if entry[2] != version:
        raise Unauthenticated("密码或角色已变更，请重新登录")
    return entry[1]


_TOKENS_MAX = 10_000
# token -> (exp, user id, token version, secret it was verified with)
_tokens: dict[str, tuple[float, int, int, str]] = {}


def _token_user(token: str) -> tuple[int, int]:
    """``(user id, token version)`` of a valid token (a token without ``ver`` has version 0). A
    signature is verified once per process; the expiry on every use (verifying HS256 with PyJWT
    costs as much as a small query)."""
    secret = get_settings().jwt_secret
    hit = _tokens.get(token)
    if hit is not None and hit[3] == secret and clock.now().timestamp() < hit[0]:
        return hit[1], hit[2]
    claims = decode_access_token(token)
    try:
        user_id, exp, version = int(claims["sub"]), float(claims["exp"]), int(claims.get("ver", 0))
    except (TypeError, ValueError) as exc:
        raise Unauthenticated("无效的访问令牌") from exc
    if len(_tokens) >= _TOKENS_MAX:
        _tokens.clear()
    _tokens[token] = (exp, user_id, version, secret)
    return user_id, version


def _load_actor(session: Session, user_id: int) -> tuple[Actor, int]:
    # the few columns an Actor needs, not the ORM entity
    user = session.execute(_ACTOR_QUERY, {"user_id": user_id}).first()
    if user is None or not user.is_active:
        raise Unauthenticated("用户不存在或已停用")
    return actor_of(user), user.token_version


_ACTOR_QUERY = sa.select(
    User.id, User.role, User.enterprise_id, User.department_id, User.region_id, User.username, User.is_active,
    User.token_version,
).where(User.id == sa.bindparam("user_id"))


@sa.event.listens_for(OrmSession, "after_flush")
def _users_flushed(session: OrmSession, _flush_context) -> None:
    if any(isinstance(o, User) for o in (*session.new, *session.dirty, *session.deleted)):
        clear_actor_cache()
        session.connection().info[_USERS_CHANGED] = True


@sa.event.listens_for(OrmSession, "do_orm_execute")
def _users_bulk_changed(state) -> None:
    if (state.is_update or state.is_delete) and state.bind_mapper is not None \
            and state.bind_mapper.class_ is User:
        clear_actor_cache()
        state.session.connection().info[_USERS_CHANGED] = True


@sa.event.listens_for(Engine, "commit")
def _committed(conn) -> None:
    conn.info.pop(_USERS_CHANGED, None)


@sa.event.listens_for(Engine, "rollback")
def _rolled_back(conn) -> None:
    if conn.invalidated:  # the connection was lost (database restart): its info is out of reach
        clear_actor_cache()
        return
    if conn.info.pop(_USERS_CHANGED, None):
        clear_actor_cache()  # actors read inside the transaction that changed users


@sa.event.listens_for(Engine, "rollback_savepoint")
def _rolled_back_savepoint(conn, _name, _context) -> None:
    if conn.info.get(_USERS_CHANGED):
        clear_actor_cache()


CurrentActor = Annotated[Actor, Depends(get_current_actor)]


def require_roles(*roles: str):
    """Dependency factory: the caller must have one of ``roles`` (else 403)."""

    async def _check(actor: CurrentActor) -> Actor:  # async: no worker-thread hop for a comparison
        if actor.role not in roles:
            raise NotAllowed(f"需要角色：{'、'.join(roles)}")
        return actor

    return _check


AdminActor = Annotated[Actor, Depends(require_roles("admin"))]

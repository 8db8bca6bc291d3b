"""FastAPI dependencies for authentication and role checks."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import OAuth2PasswordBearer
from sqlmodel import Session

from service.auth.actor import Actor
from service.auth.security import decode_access_token
from service.db import get_session
from service.errors import NotAllowed, Unauthenticated
from service.users.models import User

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)

SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def get_current_actor(session: SessionDep, token: Annotated[str | None, Depends(oauth2_scheme)]) -> Actor:
    """Resolve the bearer token to an :class:`Actor`.

    Raises:
        Unauthenticated (401): no token, bad or expired token, unknown or inactive user.
    """
    if not token:
        raise Unauthenticated("需要登录（Authorization: Bearer <token>）")
    claims = decode_access_token(token)
    try:
        user_id = int(claims["sub"])
    except (TypeError, ValueError) as exc:
        raise Unauthenticated("无效的访问令牌") from exc
    user = session.get(User, user_id)
    if user is None or not user.is_active:
        raise Unauthenticated("用户不存在或已停用")
    return actor_of(user)


def actor_of(user: User) -> Actor:
    """Build the :class:`Actor` of a user row."""
    return Actor(user_id=user.id, role=user.role, enterprise_id=user.enterprise_id,
                 department_id=user.department_id, region_id=user.region_id, username=user.username)


CurrentActor = Annotated[Actor, Depends(get_current_actor)]


def require_roles(*roles: str):
    """Dependency factory: the caller must have one of ``roles`` (else 403)."""

    def _check(actor: CurrentActor) -> Actor:
        if actor.role not in roles:
            raise NotAllowed(f"需要角色：{'、'.join(roles)}")
        return actor

    return _check


AdminActor = Annotated[Actor, Depends(require_roles("admin"))]

"""Password hashing (Argon2 via pwdlib) and access tokens (JWT HS256 via PyJWT). SPEC §9."""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from typing import Any

import jwt
from pwdlib import PasswordHash

from service import clock
from service.config import get_settings
from service.errors import Unauthenticated

ALGORITHM = "HS256"


@lru_cache
def _hasher() -> PasswordHash:
    return PasswordHash.recommended()  # Argon2id with pwdlib's recommended parameters


def hash_password(password: str) -> str:
    """Hash ``password`` with Argon2id; returns the PHC string."""
    return _hasher().hash(password)


@lru_cache
def dummy_password_hash() -> str:
    """An Argon2id hash of a random password made once per process, with the same parameters as
    real ones: a login for an unknown or inactive user verifies against it, so that it costs what
    a wrong password for a real user costs (~100 ms) and its timing does not tell which accounts
    exist (issue 11)."""
    import secrets

    return hash_password(secrets.token_urlsafe(32))


def verify_password(password: str, password_hash: str) -> bool:
    """True when ``password`` matches ``password_hash``."""
    try:
        return _hasher().verify(password, password_hash)
    except Exception:  # malformed hash: treat as a failed login, never a 500
        return False


def create_access_token(user_id: int, role: str, minutes: int | None = None, *,
                        token_version: int = 0) -> tuple[str, int]:
    """Create a signed token for ``user_id``; returns ``(token, lifetime_seconds)``.

    Claims: ``sub`` (user id as string), ``role``, ``ver`` (the user's ``token_version``: the
    token stops working when it changes, on a password or role change), ``iat``, ``exp`` (UTC,
    seconds).
    """
    settings = get_settings()
    lifetime = timedelta(minutes=minutes if minutes is not None else settings.access_token_minutes)
    issued = clock.now()
    payload: dict[str, Any] = {"sub": str(user_id), "role": role, "ver": token_version, "iat": issued,
                               "exp": issued + lifetime}
    return jwt.encode(payload, settings.jwt_secret, algorithm=ALGORITHM), int(lifetime.total_seconds())


def decode_access_token(token: str) -> dict[str, Any]:
    """Verify signature and expiry; return the claims.

    Raises:
        Unauthenticated (401): bad signature, malformed or expired token.
    """
    try:
        return jwt.decode(token, get_settings().jwt_secret, algorithms=[ALGORITHM],
                          options={"require": ["sub", "exp"]})
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated("登录已过期，请重新登录") from exc
    except jwt.PyJWTError as exc:
        raise Unauthenticated("无效的访问令牌") from exc

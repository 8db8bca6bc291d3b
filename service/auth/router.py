"""``/api/v1/auth/token`` (OAuth2 password flow) and ``/api/v1/me``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel

from service.auth.dependencies import CurrentActor, SessionDep
from service.auth.login import authenticate
from service.auth.security import create_access_token
from service.errors import FieldError
from service.users.models import User
from service.users.schemas import UserRead

router = APIRouter(tags=["auth"])


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    role: str


@router.post("/auth/token", response_model=Token, summary="登录：OAuth2 密码模式，返回 JWT",
             description="用户名或密码错误为 401；同一账号连续尝试过多或同一地址失败过多为 429（带 "
                         "Retry-After，单位秒），账号是否存在不影响答复。")
def login(request: Request, session: SessionDep, form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> Token:
    if "\x00" in form.username:  # PostgreSQL refuses NUL in text: bad input, not a server error
        raise FieldError("username", "不能包含 NUL（\\x00）字符")
    address = request.client.host if request.client else "unknown"
    user = authenticate(session, form.username, form.password, address)
    token, lifetime = create_access_token(user.id, user.role, token_version=user.token_version)
    return Token(access_token=token, expires_in=lifetime, role=user.role)


@router.get("/me", response_model=UserRead, summary="当前登录用户")
def me(session: SessionDep, actor: CurrentActor) -> User:
    return session.get(User, actor.user_id)

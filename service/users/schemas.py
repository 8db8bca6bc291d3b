"""User request/response models."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from service.common.enums import Role
from service.common.schemas import EmailAddress, InputModel

#: ``user_account.full_name`` holds 100 characters.
FullName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    full_name: str
    role: str
    enterprise_id: int | None
    department_id: int | None
    region_id: int | None
    phone: str | None
    email: str | None = None
    is_active: bool
    created_at: datetime


class UserCreate(InputModel):
    """Body of ``POST /users`` (admin). The role decides which scope field is required."""

    username: str = Field(min_length=2, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    full_name: FullName
    password: str = Field(min_length=8, max_length=128)
    role: Role
    enterprise_id: int | None = Field(default=None, ge=1)
    department_id: int | None = Field(default=None, ge=1)
    region_id: int | None = Field(default=None, ge=1)
    grid_ids: list[int] = Field(default_factory=list, max_length=100)
    phone: str | None = Field(default=None, max_length=32)
    email: EmailAddress | None = None


class UserUpdate(InputModel):
    """Body of ``PATCH /users/{id}`` (admin): only the fields given change; ``null`` clears
    ``phone`` and ``email`` and is a 422 for the others (their columns refuse it). A new ``password`` ends the
    user's current sessions (their access tokens stop working)."""

    full_name: FullName = None  # type: ignore[assignment]
    password: str = Field(default=None, min_length=8, max_length=128)  # type: ignore[assignment]
    is_active: bool = None  # type: ignore[assignment]
    phone: str | None = Field(default=None, max_length=32)
    email: EmailAddress | None = None


class UserRoleChange(InputModel):
    """Body of ``PUT /users/{id}/role`` (admin): the user's new role and its scope (SPEC §1), as in
    :class:`UserCreate`: ``enterprise_id`` for an enterprise user, ``department_id`` for a
    department user, ``region_id`` optional (a supervisor's region); the other fields are cleared.
    A change of role ends the user's current sessions (their access tokens stop working)."""

    role: Role
    enterprise_id: int | None = Field(default=None, ge=1)
    department_id: int | None = Field(default=None, ge=1)
    region_id: int | None = Field(default=None, ge=1)

"""Login users, their role and their scope (SPEC §1)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from service import clock
from service.common.enums import Role
from service.db import UTCDateTime, check_in


class User(SQLModel, table=True):
    """A person who logs in.

    Scope by role: ``enterprise`` users have ``enterprise_id``; ``department`` users have
    ``department_id``; officers see the enterprises assigned to them (``Enterprise.officer_id``)
    and those in their grids (:class:`OfficerGrid`); supervisors see their ``region_id`` subtree
    (``None`` = the whole county); admins see everything.
    """

    __tablename__ = "user_account"
    __table_args__ = (check_in("role", [r.value for r in Role]),)

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64, unique=True)
    full_name: str = Field(max_length=100)
    password_hash: str = Field(max_length=255)
    role: str = Field(max_length=16, index=True)
    enterprise_id: int | None = Field(default=None, foreign_key="enterprise.id", index=True)
    department_id: int | None = Field(default=None, foreign_key="department.id", index=True)
    region_id: int | None = Field(default=None, foreign_key="region.id")
    phone: str | None = Field(default=None, max_length=32)
    email: str | None = Field(default=None, max_length=254)
    is_active: bool = True
    #: Bumped when the password or the role changes: access tokens carry the value they were
    #: issued with (claim ``ver``) and stop working once it differs (issue 11, SPEC §9).
    token_version: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    created_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)


class OfficerGrid(SQLModel, table=True):
    """An officer's grid assignment (网格连企): the officer sees tickets of every enterprise in it."""

    __tablename__ = "officer_grid"

    officer_id: int = Field(foreign_key="user_account.id", primary_key=True)
    grid_id: int = Field(foreign_key="grid.id", primary_key=True, index=True)

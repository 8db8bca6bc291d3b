"""Departments (承办单位) that handle dispatched tickets (SPEC §2)."""

from __future__ import annotations

from sqlmodel import Field, SQLModel


class Department(SQLModel, table=True):
    """A handling unit such as 人社局 or 供电公司."""

    __tablename__ = "department"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=32, unique=True)
    name: str = Field(max_length=100, unique=True)
    is_active: bool = True

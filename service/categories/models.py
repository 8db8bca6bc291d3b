"""Category tree with the service type at the top (SPEC §2)."""

from __future__ import annotations

from sqlmodel import Field

from service.common.enums import ServiceType
from service.common.models import CodedRow
from service.db import check_in


class Category(CodedRow, table=True):
    """A category; ``service_type`` is inherited from the root, ``default_department_id`` routes."""

    __tablename__ = "category"
    __table_args__ = (check_in("service_type", [s.value for s in ServiceType]),)

    code: str = Field(max_length=64, unique=True)
    service_type: str = Field(max_length=16)
    parent_id: int | None = Field(default=None, foreign_key="category.id", index=True)
    default_department_id: int | None = Field(default=None, foreign_key="department.id")

"""Region tree (county → town/street/park) and grids (SPEC §2)."""

from __future__ import annotations

from sqlmodel import Field, SQLModel

from service.common.enums import RegionKind
from service.db import check_in


class Region(SQLModel, table=True):
    """A node of the region tree: county/district, town, street or park (镇/街道/园区)."""

    __tablename__ = "region"
    __table_args__ = (check_in("kind", [k.value for k in RegionKind]),)

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=32, unique=True)
    name: str = Field(max_length=100)
    kind: str = Field(max_length=16)
    parent_id: int | None = Field(default=None, foreign_key="region.id", index=True)


class Grid(SQLModel, table=True):
    """A grid (网格) inside a town, street or park; enterprises belong to one grid."""

    __tablename__ = "grid"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=32, unique=True)
    name: str = Field(max_length=100)
    region_id: int = Field(foreign_key="region.id", index=True)

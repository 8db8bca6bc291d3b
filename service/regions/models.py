"""Region tree (county → town/street/park) and grids (SPEC §2)."""

from __future__ import annotations

from sqlmodel import Field

from service.common.enums import RegionKind
from service.common.models import CodedRow
from service.db import check_in


class Region(CodedRow, table=True):
    """A node of the region tree: county/district, town, street or park (镇/街道/园区)."""

    __tablename__ = "region"
    __table_args__ = (check_in("kind", [k.value for k in RegionKind]),)

    kind: str = Field(max_length=16)
    parent_id: int | None = Field(default=None, foreign_key="region.id", index=True)


class Grid(CodedRow, table=True):
    """A grid (网格) inside a town, street or park; enterprises belong to one grid."""

    __tablename__ = "grid"

    region_id: int = Field(foreign_key="region.id", index=True)

"""Column sets shared by table models."""

from __future__ import annotations

from sqlmodel import Field, SQLModel


class CodedRow(SQLModel):
    """The columns of a reference row (a region, a grid, a category): ``id``, a unique ``code``
    (32 characters unless the table says otherwise) and a ``name`` (100 characters)."""

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=32, unique=True)
    name: str = Field(max_length=100)

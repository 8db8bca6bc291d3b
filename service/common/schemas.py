"""Shared request/response-model building blocks: trimmed, length-limited text; the bases of request
bodies (:class:`InputModel`) and of rows read back (:class:`RowRead`)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints, field_validator

#: Largest value of an ``INTEGER`` column (every id in the schema): larger ids cannot exist.
INT32_MAX = 2**31 - 1

#: A required, stripped, single-purpose short text (titles, names), 1-200 characters.
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
#: A required, stripped long text (descriptions, replies), 1-20,000 characters.
LongText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]
#: A required reason, 1-2,000 characters.
ReasonText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2_000)]
#: An optional note, up to 2,000 characters.
NoteText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2_000)]


def _check_storable(value: Any) -> Any:
    """Refuse what PostgreSQL cannot store: NUL in text, integers beyond the ``INTEGER`` range."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("不能包含 NUL（\\x00）字符")
    if isinstance(value, int) and not isinstance(value, bool) and not -INT32_MAX - 1 <= value <= INT32_MAX:
        raise ValueError(f"超出允许范围（最大 {INT32_MAX}）")
    if isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _check_storable(item)
    return value


class InputModel(BaseModel):
    """Base of request bodies: unknown fields are refused, and every field's value must be
    storable (no NUL character, integers within ``INTEGER``) so bad input is a 422 naming the
    field, never a database error (SPEC §9)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return _check_storable(value)


class RowRead(BaseModel):
    """Base of response models read from a table row (``from_attributes``), ``id`` first."""

    model_config = ConfigDict(from_attributes=True)

    id: int

"""Shared request-model building blocks at the edge of the API (SPEC §9: bad input is a 4xx
problem naming the field, never a 500): bounded ids, bounded dates and datetimes, trimmed,
length-limited text without NUL, and :class:`InputModel`, the base of every request body.

The bounds are one definition each, used by query and path parameters (``Id``, ``ApiDate``,
``ApiDateTime``; ``QueryId`` in :mod:`service.common.params`) and by every body field (:class:`InputModel` checks each value with the same
functions), see docs/decisions.md "Bounds at the edge of the API".
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import Annotated, Any

from annotated_types import Interval
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    PlainSerializer,
    StringConstraints,
    field_validator,
)

#: Largest value of an ``INTEGER`` column (every id in the schema): larger ids cannot exist.
INT32_MAX = 2**31 - 1

#: First and last day the API accepts (any date or datetime, query, path or body): the working
#: calendar's range (``/calendar`` years 1990-2100). Far enough from ``date.min``/``date.max``
#: that adding days or converting time zones never overflows.
MIN_DATE = date(1990, 1, 1)
MAX_DATE = date(2100, 12, 31)

#: A row id (path, query or body): ``1 .. INT32_MAX`` (an ``INTEGER`` column).
Id = Annotated[int, Interval(ge=1, le=INT32_MAX)]


def check_date(value: date) -> date:
    """``value`` if it lies in ``MIN_DATE .. MAX_DATE`` (a datetime: its own calendar day,
    whatever its offset), else ``ValueError`` (a 422 naming the field)."""
    day = value.date() if isinstance(value, datetime) else value
    if not MIN_DATE <= day <= MAX_DATE:
        raise ValueError(f"日期须在 {MIN_DATE} 至 {MAX_DATE} 之间")
    return value


#: A calendar date the API accepts: ``1990-01-01 .. 2100-12-31``.
ApiDate = Annotated[date, AfterValidator(check_date)]
#: A datetime the API accepts: its date in ``1990-01-01 .. 2100-12-31`` (naive = Asia/Shanghai).
ApiDateTime = Annotated[datetime, AfterValidator(check_date)]

#: A required, stripped, single-purpose short text (titles, names), 1-200 characters.
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
#: A required, stripped long text (descriptions, replies), 1-20,000 characters.
LongText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]
#: A required reason, 1-2,000 characters.
ReasonText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2_000)]
#: An optional note, up to 2,000 characters.
NoteText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2_000)]


#: The office's offset: Asia/Shanghai is UTC+08:00 all year (no daylight saving time).
OFFICE_OFFSET = timezone(timedelta(hours=8))


def office_wall_time(value: time) -> time:
    """A wall-clock time of the office, stored naive: ``value`` without an offset is taken as
    Asia/Shanghai; with one, it must be ``+08:00`` (a schedule is local, never converted).

    Raises:
        ValueError: another offset (a 422 naming the field).
    """
    if value.tzinfo is not None:
        if value.utcoffset() != OFFICE_OFFSET.utcoffset(None):
            raise ValueError("须为北京时间：不带偏移或 +08:00")
        value = value.replace(tzinfo=None)
    return value


def _with_office_offset(value: time) -> time:
    return value.replace(tzinfo=OFFICE_OFFSET)


#: A local time of the office (clinic schedules): naive or ``+08:00`` in, served with its offset
#: (``"14:30:00+08:00"``, RFC 3339 ``full-time`` as ``format: time`` asks).
OfficeTime = Annotated[time, AfterValidator(office_wall_time),
                       PlainSerializer(_with_office_offset, return_type=time, when_used="json")]


def check_storable(value: Any) -> Any:
    """Refuse what PostgreSQL cannot store or the API does not accept, at any depth of lists,
    dicts and nested models: NUL in text, integers beyond the ``INTEGER`` range, dates and
    datetimes outside ``MIN_DATE .. MAX_DATE``.

    Raises:
        ValueError: the first such value (pydantic turns it into a 422 naming the field).
    """
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("不能包含 NUL（\\x00）字符")
    if isinstance(value, int) and not isinstance(value, bool) and not -INT32_MAX - 1 <= value <= INT32_MAX:
        raise ValueError(f"超出允许范围（最大 {INT32_MAX}）")
    if isinstance(value, date):
        check_date(value)
    if isinstance(value, list | tuple | set | frozenset):
        for item in value:
            check_storable(item)
    if isinstance(value, dict):
        for key, item in value.items():
            check_storable(key)
            check_storable(item)
    return value


class InputModel(BaseModel):
    """Base of every request body: unknown fields are refused, and every field's value must be
    storable (:func:`check_storable`: no NUL character, integers within ``INTEGER``, dates within
    ``MIN_DATE .. MAX_DATE``) so bad input is a 422 naming the field, never a database error
    (SPEC §9).

    ``PATCH`` bodies: a field whose column refuses ``NULL`` is declared with its plain type and a
    ``None`` default (``name: Name = None``): omitted, it is left alone; sent as ``null``, it is a
    422 naming it. Only the columns that may be cleared are ``X | None``.
    """

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return check_storable(value)


class RowRead(BaseModel):
    """Base of response models read from a table row (``from_attributes``), ``id`` first."""

    model_config = ConfigDict(from_attributes=True)

    id: int


#: An e-mail address (254 characters, RFC 5321 §4.5.3.1.3): ``user_account.email`` (where the
#: user's notification e-mails go, and for an enterprise user the sender address the e-mail
#: intake recognises) and ``enterprise.contact_email`` (docs/mail_intake.md). ``local@domain``
#: with a dot in the domain; no blanks.
EmailAddress = Annotated[str, StringConstraints(strip_whitespace=True, max_length=254,
                                                pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]

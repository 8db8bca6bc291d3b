"""The one source of time. Tests freeze it with time-machine (ARCHITECTURE rule 7).

All datetimes in Qifu are timezone-aware. They are stored in UTC and shown/evaluated in the
office time zone: the ``timezone`` setting (``QIFU_TIMEZONE``, default ``Asia/Shanghai``), given
by :func:`office_zone` and nowhere else.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from service.config import get_settings


def now() -> datetime:
    """Current instant as an aware UTC datetime."""
    return datetime.now(UTC)


def office_zone() -> ZoneInfo:
    """The office's time zone (the ``timezone`` setting; ``ZoneInfo`` caches the instance)."""
    return ZoneInfo(get_settings().timezone)


def as_utc(value: datetime) -> datetime:
    """Return ``value`` in UTC; a naive value is taken to be office time (:func:`office_zone`).

    Naive datetimes come from imported files (which hold China time without a zone).
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=office_zone())
    return value.astimezone(UTC)

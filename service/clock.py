"""The one source of time. Tests freeze it with time-machine (ARCHITECTURE rule 7).

All datetimes in Qifu are timezone-aware. They are stored in UTC and shown/evaluated in the
office time zone (``Asia/Shanghai`` by default).
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")


def now() -> datetime:
    """Current instant as an aware UTC datetime."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Return ``value`` in UTC; a naive value is taken to be China time (UTC+8).

    Naive datetimes come from imported files (which hold China time without a zone).
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=SHANGHAI)
    return value.astimezone(UTC)

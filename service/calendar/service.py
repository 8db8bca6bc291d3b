"""Loading the working calendar with its overrides, and managing overrides (SPEC §4)."""

from __future__ import annotations

import time
from datetime import date
from functools import lru_cache

import sqlalchemy as sa
from sqlmodel import Session, select

from service import clock
from service.calendar.core import WorkingCalendar, WorkingHours
from service.calendar.models import CalendarOverride
from service.config import get_settings
from service.db import database_key


@lru_cache(maxsize=16)
def _calendar(overrides: tuple[tuple[date, bool], ...], hours: str, tz: str) -> WorkingCalendar:
    return WorkingCalendar(dict(overrides), WorkingHours.parse(hours), tz)


#: Seconds an override set read from the database is reused by this process. Overrides change a
#: few times a year; a change made by another process is seen within this time (this process's own
#: changes at once: the writers below clear it).
OVERRIDES_TTL_SECONDS = 5.0
_overrides_cache: dict[str, tuple[float, tuple[tuple[date, bool], ...]]] = {}


def clear_cache() -> None:
    """Forget the cached override set (after a change, and between tests)."""
    _overrides_cache.clear()


def calendar_is_fresh(session: Session) -> bool:
    """True when :func:`get_calendar` answers without a query (checked by the async intake path
    before it uses the calendar on the event loop)."""
    cached = _overrides_cache.get(database_key(session))
    return cached is not None and time.monotonic() - cached[0] <= OVERRIDES_TTL_SECONDS


def get_calendar(session: Session) -> WorkingCalendar:
    """The working calendar in force: official data + the stored overrides + the configured
    working hours (``QIFU_WORKING_HOURS``) and time zone. Instances are cached per override set and
    the override set for :data:`OVERRIDES_TTL_SECONDS`, so a call is usually free of queries."""
    settings = get_settings()
    url = database_key(session)
    cached = _overrides_cache.get(url)
    now = time.monotonic()
    if cached is None or now - cached[0] > OVERRIDES_TTL_SECONDS:
        rows = session.exec(select(CalendarOverride.day, CalendarOverride.is_working_day)
                            .order_by(CalendarOverride.day)).all()
        cached = (now, tuple((d, bool(w)) for d, w in rows))
        _overrides_cache[url] = cached
    return _calendar(cached[1], settings.working_hours, settings.timezone)


def list_overrides(session: Session, year: int | None = None) -> list[CalendarOverride]:
    """Overrides, oldest first; only ``year`` when given."""
    stmt = select(CalendarOverride).order_by(CalendarOverride.day)
    if year is not None:
        stmt = stmt.where(CalendarOverride.day >= date(year, 1, 1), CalendarOverride.day < date(year + 1, 1, 1))
    return list(session.exec(stmt).all())


def set_overrides(session: Session, entries: list[tuple[date, bool, str | None]]) -> int:
    """Insert or replace overrides ``(day, is_working_day, note)``; returns how many were written."""
    now = clock.now()
    for day, working, note in entries:
        row = session.get(CalendarOverride, day)
        if row is None:
            session.add(CalendarOverride(day=day, is_working_day=working, note=note, updated_at=now))
        else:
            row.is_working_day, row.note, row.updated_at = working, note, now
    session.flush()
    clear_cache()
    return len(entries)


def delete_override(session: Session, day: date) -> bool:
    """Remove the override of ``day``; True when one existed."""
    result = session.execute(sa.delete(CalendarOverride).where(CalendarOverride.day == day))
    clear_cache()
    return bool(result.rowcount)


def year_entries(year: int, holidays: list[date], workdays: list[date], note: str | None):
    """Validate a year's schedule into override entries.

    Raises:
        FieldError (422): a date outside ``year`` (field ``holidays[i]`` / ``workdays[i]``).
    """
    from service.errors import FieldError

    entries = []
    for name, days, working in (("holidays", holidays, False), ("workdays", workdays, True)):
        for i, d in enumerate(days):
            if d.year != year:
                raise FieldError(f"{name}[{i}]", f"{d} 不在 {year} 年")
            entries.append((d, working, note))
    return entries


def replace_year(session: Session, year: int, entries: list[tuple[date, bool, str | None]]) -> int:
    """Replace every override of ``year`` with ``entries`` (one request or one file per year)."""
    session.execute(sa.delete(CalendarOverride).where(CalendarOverride.day >= date(year, 1, 1),
                                                      CalendarOverride.day < date(year + 1, 1, 1)))
    return set_overrides(session, entries)

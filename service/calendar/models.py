"""Admin overrides of the working calendar (SPEC §4)."""

from __future__ import annotations

from datetime import date, datetime

from sqlmodel import Field, SQLModel

from service import clock
from service.db import UTCDateTime


class CalendarOverride(SQLModel, table=True):
    """One day declared a working day or a day off by an admin; wins over the official calendar.

    Used to enter a new year's holidays and make-up working days (调休) when the State Council
    publishes them, before ``chinese-calendar`` ships them, or for local days off.
    """

    __tablename__ = "calendar_override"

    day: date = Field(primary_key=True)
    is_working_day: bool
    note: str | None = Field(default=None, max_length=100)
    updated_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)

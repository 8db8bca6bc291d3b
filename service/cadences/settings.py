"""Settings of the five cadences (SPEC §5), read once from the environment (prefix ``QIFU_CADENCE_``).

Kept apart from :mod:`service.config` so the cadence domain owns its knobs; every value can be
overridden, e.g. ``QIFU_CADENCE_INQUIRY_INTERVALS='{"重点": 7, "专精特新": 14}'``.
"""

from __future__ import annotations

from datetime import time
from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class CadenceSettings(BaseSettings):
    """Cadence configuration.

    Attributes:
        inquiry_intervals: contact interval in calendar days per enterprise tag; an enterprise with
            several configured tags gets the shortest (default ``{"重点": 7}``).
        inquiry_default_interval_days: interval of enterprises with no configured tag (30 days).
        inquiry_daily_cap: most enterprises on one officer's list per working day (10).
        inquiry_lookahead_working_days: enterprises coming due within this many working days fill
            the list up to the cap, to smooth the load (2).
        clinic_weekday: default clinic weekday, ISO (1 = Monday ... 7 = Sunday; default 3 = Wednesday).
        clinic_time / clinic_capacity: default start time (local) and bookings per session.
        clinic_stalled_working_days: a ticket with no event for this many working days is stalled (5).
        joint_offset_working_days: the joint consultation is held this many working days after the
            quarterly run (3), so invitations arrive in time.
        follow_up_expiry_working_days: an unanswered follow-up / return visit expires after this (10).
        long_open_days: open tickets older than this (calendar days) go to supervisors (30).
        catch_up_days: how far back (calendar days) missed periods are caught up (40).
        ranking_weights: weights of the quarterly ranking's score (normalised over available rates).
        run_times: local time of day at which each cadence becomes due on its run date.
    """

    model_config = SettingsConfigDict(env_prefix="QIFU_CADENCE_", env_file=".env", extra="ignore")

    inquiry_intervals: dict[str, int] = Field(default_factory=lambda: {"重点": 7})
    inquiry_default_interval_days: int = Field(default=30, ge=1, le=366)
    inquiry_daily_cap: int = Field(default=10, ge=1, le=500)
    inquiry_lookahead_working_days: int = Field(default=2, ge=0, le=20)
    clinic_weekday: int = Field(default=3, ge=1, le=7)
    clinic_time: time = time(9, 0)
    clinic_capacity: int = Field(default=10, ge=1, le=1000)
    clinic_stalled_working_days: int = Field(default=5, ge=1, le=60)
    joint_offset_working_days: int = Field(default=3, ge=0, le=20)
    follow_up_expiry_working_days: int = Field(default=10, ge=1, le=60)
    long_open_days: int = Field(default=30, ge=1, le=366)
    catch_up_days: int = Field(default=40, ge=1, le=400)
    ranking_weights: dict[str, float] = Field(default_factory=lambda: {
        "closure_rate": 0.25, "on_time_rate": 0.25, "response_rate": 0.15, "satisfaction_rate": 0.2,
        "reopen_rate": 0.075, "return_rate": 0.075})
    run_times: dict[str, time] = Field(default_factory=lambda: {
        "daily": time(8, 30), "weekly": time(8, 0), "monthly": time(8, 0), "quarterly": time(8, 0),
        "annual": time(8, 0)})

    @field_validator("inquiry_intervals")
    @classmethod
    def _positive(cls, value: dict[str, int]) -> dict[str, int]:
        for tag, days in value.items():
            if not 1 <= int(days) <= 366:
                raise ValueError(f"{tag}: interval must be 1-366 days")
        return value


@lru_cache
def get_cadence_settings() -> CadenceSettings:
    """The process-wide cadence settings (cached; tests call ``get_cadence_settings.cache_clear()``)."""
    return CadenceSettings()

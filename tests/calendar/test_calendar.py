"""The working calendar engine (SPEC §4) on real dates.

Every official date below was checked against ``chinese_calendar.is_workday`` (package data for the
State Council schedules 2004-2026) before it was written down, and :func:`test_official_data` asserts
the library still says so, so a changed package shows up as one clear failure.

Official schedules used (国务院办公厅 notices):

- 2025 春节: 1/28-2/4 off; Sun 1/26 and Sat 2/8 worked (调休).
- 2025 国庆+中秋: 10/1-10/8 off; Sun 9/28 and Sat 10/11 worked.
- 2026 春节: 2/15-2/23 off (nine days); Sat 2/14 and Sat 2/28 worked.
- 2026 中秋: Fri 9/25-Sun 9/27 off; 国庆: 10/1-10/7 off; Sun 9/20 and Sat 10/10 worked.
- 2026 元旦: 1/1-1/3 off; Sun 1/4 worked.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.calendar.core import WorkingCalendar, WorkingHours

SH = ZoneInfo("Asia/Shanghai")
CAL = WorkingCalendar()  # shared: pure, and its per-year caches make the property tests fast


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    """A local (Asia/Shanghai) instant."""
    return datetime(y, mo, d, h, mi, s, tzinfo=SH)


def local(instant: datetime) -> datetime:
    """``instant`` in Shanghai, after checking the engine returned it in UTC."""
    assert instant.tzinfo is not None and instant.utcoffset() == timedelta(0), instant
    return instant.astimezone(SH)


# --------------------------------------------------------------------------- the official data

# (date, weekday, is a working day) - printed from chinese_calendar.is_workday before writing.
OFFICIAL = [
    # 2025 Spring Festival
    (date(2025, 1, 24), "Fri", True),
    (date(2025, 1, 25), "Sat", False),
    (date(2025, 1, 26), "Sun", True),   # 调休
    (date(2025, 1, 27), "Mon", True),
    (date(2025, 1, 28), "Tue", False),  # 除夕, a statutory holiday since 2025
    (date(2025, 1, 31), "Fri", False),
    (date(2025, 2, 4), "Tue", False),
    (date(2025, 2, 5), "Wed", True),
    (date(2025, 2, 8), "Sat", True),    # 调休
    (date(2025, 2, 9), "Sun", False),
    # 2025 National Day + Mid-Autumn
    (date(2025, 9, 27), "Sat", False),
    (date(2025, 9, 28), "Sun", True),   # 调休
    (date(2025, 9, 30), "Tue", True),
    (date(2025, 10, 1), "Wed", False),
    (date(2025, 10, 6), "Mon", False),  # 中秋
    (date(2025, 10, 8), "Wed", False),
    (date(2025, 10, 9), "Thu", True),
    (date(2025, 10, 11), "Sat", True),  # 调休
    (date(2025, 10, 12), "Sun", False),
    # 2026 New Year
    (date(2026, 1, 2), "Fri", False),
    (date(2026, 1, 4), "Sun", True),    # 调休
    # 2026 Spring Festival
    (date(2026, 2, 13), "Fri", True),
    (date(2026, 2, 14), "Sat", True),   # 调休
    (date(2026, 2, 15), "Sun", False),
    (date(2026, 2, 16), "Mon", False),
    (date(2026, 2, 23), "Mon", False),
    (date(2026, 2, 24), "Tue", True),
    (date(2026, 2, 28), "Sat", True),   # 调休
    (date(2026, 3, 1), "Sun", False),
    # 2026 Mid-Autumn and National Day
    (date(2026, 9, 19), "Sat", False),
    (date(2026, 9, 20), "Sun", True),   # 调休
    (date(2026, 9, 25), "Fri", False),  # 中秋
    (date(2026, 9, 28), "Mon", True),
    (date(2026, 9, 30), "Wed", True),
    (date(2026, 10, 1), "Thu", False),
    (date(2026, 10, 7), "Wed", False),
    (date(2026, 10, 8), "Thu", True),
    (date(2026, 10, 10), "Sat", True),  # 调休
    (date(2026, 10, 11), "Sun", False),
    # an ordinary week
    (date(2026, 3, 11), "Wed", True),
    (date(2026, 3, 12), "Thu", True),
    (date(2026, 3, 14), "Sat", False),
    (date(2026, 3, 15), "Sun", False),
]


@pytest.mark.parametrize(("day", "weekday", "working"), OFFICIAL, ids=[str(d) for d, _, _ in OFFICIAL])
def test_official_data(day: date, weekday: str, working: bool) -> None:
    assert day.strftime("%a") == weekday
    assert chinese_calendar.is_workday(day) is working  # the package data itself
    assert CAL.is_working_day(day) is working            # and the engine over it


def test_working_days_per_year_match_the_package() -> None:
    for year, expected in ((2024, 251), (2025, 248), (2026, 248)):
        days = list(CAL.working_days(date(year, 1, 1), date(year, 12, 31)))
        assert len(days) == expected
        assert not CAL.is_fallback_year(year)


def test_no_spurious_fallback_warning_for_covered_years(caplog) -> None:
    """Computing a 2026 deadline touches no year without data, so nothing is logged."""
    cal = WorkingCalendar()
    with caplog.at_level(logging.WARNING, logger="qifu.calendar"):
        cal.add_working_hours(at(2026, 5, 6, 10), 2)
        cal.add_working_days(at(2026, 5, 6, 10), 15)
    assert caplog.records == []


# --------------------------------------------------------------------------- SPEC §4 examples

def test_spec_one_working_day_from_wednesday() -> None:
    assert local(CAL.add_working_days(at(2026, 3, 11, 10), 1)) == at(2026, 3, 12, 17, 30)


def test_spec_one_working_day_from_national_day_eve() -> None:
    assert local(CAL.add_working_days(at(2026, 9, 30, 16), 1)) == at(2026, 10, 8, 17, 30)


def test_spec_two_working_hours_across_lunch() -> None:
    assert local(CAL.add_working_hours(at(2026, 3, 11, 11, 30), 2)) == at(2026, 3, 11, 15, 0)


# --------------------------------------------------------------------------- holidays and 调休

@pytest.mark.parametrize(("start", "n", "due"), [
    # 2025 Spring Festival: the make-up Sunday and Saturday count, the eight days off do not
    (at(2025, 1, 24, 10), 1, at(2025, 1, 26, 17, 30)),
    (at(2025, 1, 24, 10), 2, at(2025, 1, 27, 17, 30)),
    (at(2025, 1, 27, 10), 1, at(2025, 2, 5, 17, 30)),
    (at(2025, 2, 7, 10), 1, at(2025, 2, 8, 17, 30)),
    (at(2025, 2, 8, 10), 1, at(2025, 2, 10, 17, 30)),
    (at(2025, 1, 30, 10), 1, at(2025, 2, 5, 17, 30)),   # started during the holiday
    (at(2025, 1, 27, 10), 5, at(2025, 2, 10, 17, 30)),  # 2/5, 2/6, 2/7, 2/8 (Sat), 2/10
    # 2026 Spring Festival: nine days off between two make-up Saturdays
    (at(2026, 2, 13, 10), 1, at(2026, 2, 14, 17, 30)),
    (at(2026, 2, 13, 10), 2, at(2026, 2, 24, 17, 30)),
    (at(2026, 2, 27, 10), 1, at(2026, 2, 28, 17, 30)),
    (at(2026, 2, 28, 10), 1, at(2026, 3, 2, 17, 30)),
    # 2025 National Day: 9/28 (Sun) and 10/11 (Sat) are worked
    (at(2025, 9, 26, 10), 1, at(2025, 9, 28, 17, 30)),
    (at(2025, 9, 30, 16), 1, at(2025, 10, 9, 17, 30)),
    (at(2025, 10, 10, 10), 1, at(2025, 10, 11, 17, 30)),
    (at(2025, 9, 26, 10), 5, at(2025, 10, 10, 17, 30)),  # 9/28, 9/29, 9/30, 10/9, 10/10
    # 2026 Mid-Autumn + National Day: 9/20 (Sun) and 10/10 (Sat) are worked
    (at(2026, 9, 18, 10), 1, at(2026, 9, 20, 17, 30)),
    (at(2026, 9, 24, 10), 1, at(2026, 9, 28, 17, 30)),
    (at(2026, 10, 3, 10), 1, at(2026, 10, 8, 17, 30)),
    (at(2026, 10, 9, 10), 1, at(2026, 10, 10, 17, 30)),
    (at(2026, 9, 30, 16), 3, at(2026, 10, 10, 17, 30)),
    # 2026 New Year: Sun 1/4 is worked
    (at(2025, 12, 31, 10), 1, at(2026, 1, 4, 17, 30)),
    # SPEC default "15 working days from claim" across 2026 National Day
    (at(2026, 9, 21, 10), 15, at(2026, 10, 19, 17, 30)),
], ids=lambda v: v.strftime("%Y-%m-%d %H:%M") if isinstance(v, datetime) else str(v))
def test_add_working_days_across_holidays(start: datetime, n: int, due: datetime) -> None:
    assert local(CAL.add_working_days(start, n)) == due


@pytest.mark.parametrize(("start", "hours", "due"), [
    (at(2025, 1, 27, 16), 3, at(2025, 2, 5, 10, 30)),     # 1.5 h before Spring Festival, 1.5 h after
    (at(2025, 2, 7, 17), 1, at(2025, 2, 8, 9, 30)),       # into the make-up Saturday
    (at(2025, 2, 8, 17), 1, at(2025, 2, 10, 9, 30)),      # Sunday 2/9 is off again
    (at(2025, 9, 30, 17), 7, at(2025, 10, 9, 17, 0)),     # 0.5 h + 6.5 h
    (at(2025, 9, 26, 17), 2, at(2025, 9, 28, 10, 30)),    # Saturday off, make-up Sunday on
    (at(2026, 2, 14, 17), 1, at(2026, 2, 24, 9, 30)),     # make-up Saturday, then nine days off
    (at(2026, 9, 30, 16), 2, at(2026, 10, 8, 9, 30)),     # 1.5 h + 0.5 h
    (at(2026, 9, 24, 17), 1, at(2026, 9, 28, 9, 30)),     # Mid-Autumn Friday-Sunday off
    (at(2026, 9, 18, 17), 1, at(2026, 9, 20, 9, 30)),     # Saturday off, make-up Sunday on
    (at(2026, 9, 30, 9), 14, at(2026, 10, 8, 17, 30)),    # exactly two days: 9/30 and 10/8
], ids=lambda v: v.strftime("%Y-%m-%d %H:%M") if isinstance(v, datetime) else str(v))
def test_add_working_hours_across_holidays(start: datetime, hours: float, due: datetime) -> None:
    result = CAL.add_working_hours(start, hours)
    assert local(result) == due
    assert CAL.working_hours_between(start, result) == pytest.approx(hours)


def test_working_time_across_holidays() -> None:
    # 2025 Spring Festival: 1/27 09:00 to 2/5 09:00 is one working day (7 h)
    assert CAL.working_hours_between(at(2025, 1, 27, 9), at(2025, 2, 5, 9)) == pytest.approx(7)
    # 2026 Spring Festival: from the make-up Saturday's start to the first day back's start
    assert CAL.working_hours_between(at(2026, 2, 14, 9), at(2026, 2, 24, 9)) == pytest.approx(7)
    # 2026 National Day: 9/30 16:00 to 10/8 10:00 = 1.5 h + 1 h
    assert CAL.working_hours_between(at(2026, 9, 30, 16), at(2026, 10, 8, 10)) == pytest.approx(2.5)
    # the whole 2025 holiday period, calendar 9/27 to 10/12: 9/28, 9/29, 9/30, 10/9, 10/10, 10/11
    assert CAL.working_hours_between(at(2025, 9, 27), at(2025, 10, 12)) == pytest.approx(6 * 7)
    # a whole year of working time
    assert CAL.working_hours_between(at(2026, 1, 1), at(2027, 1, 1)) == pytest.approx(248 * 7)


# --------------------------------------------------------------------------- lunch, night, weekends

@pytest.mark.parametrize(("start", "minutes", "due"), [
    (at(2026, 3, 11, 11, 59), 2, at(2026, 3, 11, 13, 31)),   # lunch skipped
    (at(2026, 3, 11, 17, 29), 2, at(2026, 3, 12, 9, 1)),     # night skipped
    (at(2026, 3, 13, 17, 29), 2, at(2026, 3, 16, 9, 1)),     # Friday: the weekend skipped too
    (at(2026, 3, 11, 11, 30), 30, at(2026, 3, 11, 12, 0)),   # ends exactly at the lunch break
    (at(2026, 3, 11, 17, 0), 30, at(2026, 3, 11, 17, 30)),   # ends exactly at the day end
    (at(2026, 3, 11, 12, 30), 60, at(2026, 3, 11, 14, 30)),  # started at lunch: counts from 13:30
    (at(2026, 3, 11, 20, 0), 60, at(2026, 3, 12, 10, 0)),    # started at night: counts from 09:00
    (at(2026, 3, 11, 7, 0), 60, at(2026, 3, 11, 10, 0)),     # started before work
    (at(2026, 3, 15, 10, 0), 60, at(2026, 3, 16, 10, 0)),    # started on a Sunday
    (at(2026, 3, 11, 9, 0), 7 * 60, at(2026, 3, 11, 17, 30)),  # one full day
    (at(2026, 3, 11, 9, 0), 7 * 60 + 1, at(2026, 3, 12, 9, 1)),
])
def test_lunch_and_day_end(start: datetime, minutes: int, due: datetime) -> None:
    assert local(CAL.add_working_seconds(start, minutes * 60)) == due
    assert local(CAL.add_working_hours(start, minutes / 60)) == due


@pytest.mark.parametrize(("start", "end", "hours"), [
    (at(2026, 3, 11, 11), at(2026, 3, 11, 14), 1.5),         # lunch does not count
    (at(2026, 3, 11, 12, 10), at(2026, 3, 11, 13, 20), 0),   # inside lunch
    (at(2026, 3, 11, 16, 30), at(2026, 3, 12, 10), 2),       # night does not count
    (at(2026, 3, 11, 18), at(2026, 3, 12, 8), 0),            # inside the night
    (at(2026, 3, 13, 17), at(2026, 3, 16, 9, 30), 1),        # weekend does not count
    (at(2026, 3, 14, 10), at(2026, 3, 15, 16), 0),           # inside a weekend
    (at(2026, 3, 11, 0), at(2026, 3, 12, 0), 7),
    (at(2026, 3, 12, 14), at(2026, 3, 11, 11), -(5 + 3.5)),  # reversed: negative
])
def test_working_hours_between(start: datetime, end: datetime, hours: float) -> None:
    assert CAL.working_hours_between(start, end) == pytest.approx(hours)
    assert CAL.working_seconds_between(start, end) == pytest.approx(hours * 3600)


@pytest.mark.parametrize(("instant", "working"), [
    (at(2026, 3, 11, 8, 59, 59), False),
    (at(2026, 3, 11, 9, 0), True),
    (at(2026, 3, 11, 11, 59, 59), True),
    (at(2026, 3, 11, 12, 0), False),      # period ends are excluded
    (at(2026, 3, 11, 13, 29), False),
    (at(2026, 3, 11, 13, 30), True),
    (at(2026, 3, 11, 17, 29, 59), True),
    (at(2026, 3, 11, 17, 30), False),
    (at(2026, 3, 14, 10), False),         # Saturday
    (at(2025, 2, 8, 10), True),           # make-up Saturday
    (at(2025, 9, 28, 10), True),          # make-up Sunday
    (at(2025, 10, 1, 10), False),         # National Day
    (at(2026, 2, 17, 10), False),         # Spring Festival
])
def test_is_working_time(instant: datetime, working: bool) -> None:
    assert CAL.is_working_time(instant) is working
    assert CAL.is_working_time(instant.astimezone(UTC)) is working


def test_local_calendar_date_decides_not_utc() -> None:
    # Thursday 2026-03-12 00:30 in Shanghai is still Wednesday 16:30 in UTC
    start = datetime(2026, 3, 11, 16, 30, tzinfo=UTC)
    assert local(CAL.add_working_days(start, 1)) == at(2026, 3, 13, 17, 30)
    # Wednesday 23:00 local: the starting day is not counted, so Thursday is day 1
    assert local(CAL.add_working_days(at(2026, 3, 11, 23), 1)) == at(2026, 3, 12, 17, 30)


def test_results_are_utc_and_inputs_must_be_aware() -> None:
    assert CAL.add_working_hours(at(2026, 3, 11, 10), 1).tzinfo is UTC
    assert CAL.add_working_days(at(2026, 3, 11, 10), 1).tzinfo is UTC
    naive = datetime(2026, 3, 11, 10)
    for call in (lambda: CAL.add_working_hours(naive, 1), lambda: CAL.add_working_days(naive, 1),
                 lambda: CAL.is_working_time(naive), lambda: CAL.working_clock(naive)):
        with pytest.raises(ValueError):
            call()


def test_zero_and_negative_amounts() -> None:
    lunch = at(2026, 3, 11, 12, 30)
    assert local(CAL.add_working_seconds(lunch, 0)) == lunch  # zero is the start unchanged
    with pytest.raises(ValueError):
        CAL.add_working_seconds(lunch, -1)
    with pytest.raises(ValueError):
        CAL.add_working_hours(lunch, -0.5)
    with pytest.raises(ValueError):
        CAL.add_working_days(lunch, 0)
    with pytest.raises(ValueError):
        CAL.next_working_day(date(2026, 3, 11), 0)


def test_a_tiny_amount_never_goes_backwards() -> None:
    """Regression: an amount below the float clock's resolution used to return the earliest instant
    with the same clock value - the previous working day's 17:30, before the start."""
    start = at(2024, 1, 1)  # New Year's Day, a Monday
    for tiny in (1e-45, 1e-12, 1e-9):
        due = CAL.add_working_seconds(start, tiny)
        assert due >= start
        assert local(due) == at(2024, 1, 2, 9, 0)
    assert local(CAL.add_working_seconds(at(2026, 3, 11, 12, 30), 1e-12)) == at(2026, 3, 11, 13, 30)


def test_next_working_day() -> None:
    assert CAL.next_working_day(date(2026, 9, 30)) == date(2026, 10, 8)
    assert CAL.next_working_day(date(2026, 9, 30), 3) == date(2026, 10, 10)
    assert CAL.next_working_day(date(2025, 1, 25)) == date(2025, 1, 26)
    assert CAL.next_working_day(date(2026, 3, 13)) == date(2026, 3, 16)


def test_working_clock_round_trip() -> None:
    for instant in (at(2026, 3, 11, 10, 15), at(2025, 2, 8, 14, 0), at(2026, 10, 10, 17, 29)):
        assert local(CAL.from_working_clock(CAL.working_clock(instant))) == instant
    # outside working time the clock stands still; the inverse gives the earliest such instant
    assert CAL.working_clock(at(2026, 10, 1, 10)) == CAL.working_clock(at(2026, 9, 30, 17, 30))
    assert local(CAL.from_working_clock(CAL.working_clock(at(2026, 10, 5)))) == at(2026, 9, 30, 17, 30)
    assert local(CAL.from_working_clock(CAL.working_clock(at(2026, 3, 11, 13)))) == at(2026, 3, 11, 12)


def test_working_clock_round_trip_far_from_the_epoch() -> None:
    """The inverse holds far from 2004 too, where the year estimate (250 working days a year) is
    off by years (Monday-Friday fallback: ~261 a year): 1950, 2300, 2700 (working days all).
    A value that is not a number, or outside the years 1900-9999, is a ValueError, at once."""
    cal = WorkingCalendar()
    for instant in (at(1950, 6, 7, 10, 15), at(2300, 3, 14, 15, 45), at(2700, 12, 28, 16, 59)):
        assert cal.is_working_time(instant)
        assert local(cal.from_working_clock(cal.working_clock(instant))) == instant
    for bad in (float("nan"), float("inf"), -float("inf"), -1e12, 1e18):
        with pytest.raises(ValueError):
            cal.from_working_clock(bad)
    before_1900 = cal.working_clock(at(1900, 1, 1, 0, 0)) - 3600
    with pytest.raises(ValueError, match="before 1900"):
        cal.from_working_clock(before_1900)


# --------------------------------------------------------------------------- overrides, fallback

def test_override_declares_a_holiday_working() -> None:
    cal = WorkingCalendar({date(2026, 10, 5): True})
    assert cal.is_working_day(date(2026, 10, 5))
    assert local(cal.add_working_days(at(2026, 9, 30, 16), 1)) == at(2026, 10, 5, 17, 30)
    assert local(cal.add_working_hours(at(2026, 9, 30, 17), 1)) == at(2026, 10, 5, 9, 30)
    assert cal.working_hours_between(at(2026, 10, 1), at(2026, 10, 8)) == pytest.approx(7)
    assert CAL.working_hours_between(at(2026, 10, 1), at(2026, 10, 8)) == 0  # official: nothing


def test_override_declares_a_working_day_off() -> None:
    cal = WorkingCalendar({date(2026, 3, 12): False, date(2025, 2, 8): False})
    assert not cal.is_working_day(date(2026, 3, 12))
    assert local(cal.add_working_days(at(2026, 3, 11, 10), 1)) == at(2026, 3, 13, 17, 30)
    assert local(cal.add_working_hours(at(2026, 3, 11, 17), 1)) == at(2026, 3, 13, 9, 30)
    assert not cal.is_working_time(at(2026, 3, 12, 10))
    # a make-up Saturday cancelled locally
    assert local(cal.add_working_days(at(2025, 2, 7, 10), 1)) == at(2025, 2, 10, 17, 30)
    assert cal.working_hours_between(at(2026, 3, 11), at(2026, 3, 14)) == pytest.approx(14)


def test_fallback_year_is_monday_to_friday_with_a_warning(caplog) -> None:
    cal = WorkingCalendar()
    assert cal.is_fallback_year(2027)
    assert cal.is_fallback_year(2003)
    assert not cal.is_fallback_year(2026)
    assert not cal.is_fallback_year(2004)
    with caplog.at_level(logging.WARNING, logger="qifu.calendar"):
        assert cal.is_working_day(date(2027, 1, 1))       # a Friday: New Year unknown, so worked
        assert not cal.is_working_day(date(2027, 1, 2))   # Saturday
        assert not cal.is_working_day(date(2027, 1, 3))   # Sunday
        assert local(cal.add_working_days(at(2026, 12, 31, 10), 1)) == at(2027, 1, 1, 17, 30)
        assert local(cal.add_working_days(at(2027, 1, 1, 10), 1)) == at(2027, 1, 4, 17, 30)
        assert local(cal.add_working_hours(at(2027, 1, 1, 17), 1)) == at(2027, 1, 4, 9, 30)
        assert len(list(cal.working_days(date(2027, 1, 1), date(2027, 12, 31)))) == 261
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings if "2027" in r.getMessage()], warnings
    assert len([r for r in warnings if "2027" in r.getMessage()]) == 1  # once per calendar, not per call
    assert all("2027" in r.getMessage() for r in warnings), [r.getMessage() for r in warnings]


def test_admin_entered_2027_schedule_takes_effect(caplog) -> None:
    """Illustrative dates (the real 2027 schedule is not published yet): New Year Fri 1/1 off,
    Spring Festival Fri 2/5 - Sat 2/13 off with Sun 1/31 and Sun 2/14 worked. Once entered, the
    year is no longer "without data": no warning (issue 11)."""
    holidays = [date(2027, 1, 1)] + [date(2027, 2, 5) + timedelta(days=i) for i in range(9)]
    workdays = [date(2027, 1, 31), date(2027, 2, 14)]
    cal = WorkingCalendar({**dict.fromkeys(holidays, False), **dict.fromkeys(workdays, True)})
    assert cal.is_fallback_year(2027)  # still no official data; the overrides fill it in
    assert cal.has_admin_schedule(2027) and not cal.has_admin_schedule(2028)
    assert not WorkingCalendar({date(2027, 1, 31): True}).has_admin_schedule(2027)  # a worked day only
    with caplog.at_level(logging.WARNING, logger="qifu.calendar"):
        assert len(list(cal.working_days(date(2027, 1, 1), date(2027, 12, 31)))) == 261 - 7 + 2
    assert not [r for r in caplog.records if "2027" in r.getMessage()]
    assert local(cal.add_working_days(at(2026, 12, 31, 10), 1)) == at(2027, 1, 4, 17, 30)
    assert local(cal.add_working_days(at(2027, 1, 29, 10), 1)) == at(2027, 1, 31, 17, 30)
    assert local(cal.add_working_days(at(2027, 2, 4, 10), 1)) == at(2027, 2, 14, 17, 30)
    assert local(cal.add_working_hours(at(2027, 2, 4, 17), 1)) == at(2027, 2, 14, 9, 30)
    assert len(list(cal.working_days(date(2027, 1, 1), date(2027, 12, 31)))) == 261 - 7 + 2


# --------------------------------------------------------------------------- working hours

def test_default_working_hours() -> None:
    hours = WorkingHours()
    assert hours == WorkingHours.parse("09:00-12:00,13:30-17:30")
    assert hours.day_seconds == 7 * 3600
    assert hours.day_end == time(17, 30)


def test_custom_working_hours() -> None:
    hours = WorkingHours.parse("08:30-12:00, 14:00-18:00")
    assert hours.day_seconds == int(7.5 * 3600)
    assert hours.day_end == time(18, 0)
    cal = WorkingCalendar(hours=hours)
    assert local(cal.add_working_days(at(2026, 3, 11, 10), 1)) == at(2026, 3, 12, 18, 0)
    assert local(cal.add_working_hours(at(2026, 3, 11, 11, 30), 1)) == at(2026, 3, 11, 14, 30)
    assert local(cal.add_working_hours(at(2026, 3, 11, 17, 30), 1)) == at(2026, 3, 12, 9, 0)
    assert local(cal.add_working_hours(at(2026, 9, 30, 17), 7.5)) == at(2026, 10, 8, 17, 0)
    assert cal.is_working_time(at(2026, 3, 11, 8, 30)) and not cal.is_working_time(at(2026, 3, 11, 13))
    assert cal.working_hours_between(at(2026, 3, 11), at(2026, 3, 12)) == pytest.approx(7.5)

    single = WorkingCalendar(hours=WorkingHours.parse("09:00-17:00"))
    assert local(single.add_working_hours(at(2026, 3, 11, 11, 30), 2)) == at(2026, 3, 11, 13, 30)
    three = WorkingCalendar(hours=WorkingHours.parse("08:00-10:00,10:30-12:00,14:00-16:00"))
    assert local(three.add_working_hours(at(2026, 3, 11, 9), 2)) == at(2026, 3, 11, 11, 30)


@pytest.mark.parametrize("spec", [
    "", "9-5", "abc", "09:00", "09:00-12:00,", "09:00-12:00-13:00", "25:00-26:00",
    "12:00-09:00",                     # empty (reversed)
    "09:00-09:00",                     # empty
    "09:00-12:00,11:00-13:00",         # overlapping
    "13:30-17:30,09:00-12:00",         # unsorted
])
def test_invalid_working_hours(spec: str) -> None:
    with pytest.raises(ValueError):
        WorkingHours.parse(spec)


def test_no_working_period() -> None:
    with pytest.raises(ValueError):
        WorkingHours(())


# --------------------------------------------------------------------------- properties

MICRO = 10**6
instants = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2027, 12, 31, 23, 59, 59),
                        timezones=st.sampled_from([SH, UTC]))
amounts = st.one_of(  # 0-200 working hours, as any float and as whole microseconds
    st.floats(min_value=0, max_value=200 * 3600),
    st.integers(min_value=0, max_value=200 * 3600 * MICRO).map(lambda us: us / MICRO),
)
PROPS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PERIOD_ENDS = {end for _start, end in CAL.hours.periods}


@PROPS
@given(start=instants, seconds=amounts)
def test_prop_adding_then_measuring_gives_the_amount(start: datetime, seconds: float) -> None:
    due = CAL.add_working_seconds(start, seconds)
    assert abs(CAL.working_seconds_between(start, due) - seconds) <= 1e-6
    assert due >= start


@PROPS
@given(start=instants, seconds=amounts.filter(lambda s: s > 0))
def test_prop_result_is_in_working_time_or_at_a_period_end(start: datetime, seconds: float) -> None:
    due = local(CAL.add_working_seconds(start, seconds))
    assert CAL.is_working_day(due.date()), due
    assert CAL.is_working_time(due) or due.timetz().replace(tzinfo=None) in PERIOD_ENDS, due


@PROPS
@given(start=instants, a=amounts, b=amounts)
def test_prop_monotonic_in_the_amount(start: datetime, a: float, b: float) -> None:
    a, b = min(a, b), max(a, b)
    assert CAL.add_working_seconds(start, a) <= CAL.add_working_seconds(start, b)


@PROPS
@given(start=instants, n=st.integers(min_value=1, max_value=30))
def test_prop_add_working_days(start: datetime, n: int) -> None:
    due = local(CAL.add_working_days(start, n))
    start_day = start.astimezone(SH).date()
    assert due.time() == time(17, 30)
    assert CAL.is_working_day(due.date())
    assert due.date() > start_day
    assert len(list(CAL.working_days(start_day + timedelta(days=1), due.date()))) == n


@PROPS
@given(a=instants, b=instants)
def test_prop_working_clock_non_decreasing(a: datetime, b: datetime) -> None:
    a, b = min(a, b), max(a, b)
    assert CAL.working_clock(a) <= CAL.working_clock(b)
    earliest = CAL.from_working_clock(CAL.working_clock(a))
    assert earliest <= a
    assert CAL.working_clock(earliest) == pytest.approx(CAL.working_clock(a), abs=1e-6)

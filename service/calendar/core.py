"""The working calendar (SPEC §4): Chinese working days and office working hours. Pure, no I/O.

Working days come from the official calendar (public holidays and make-up working days, 调休) via
PyPI ``chinese-calendar``, plus admin overrides that always win. Years outside the library's data
fall back to Monday-Friday, with a logged warning and :meth:`WorkingCalendar.is_fallback_year`.

Working hours default to 09:00-12:00 and 13:30-17:30 in ``Asia/Shanghai``.

The engine is a *working clock*: ``W(t)`` = working seconds elapsed from 2004-01-01 00:00 (local)
to the instant ``t``. It is a non-decreasing step-and-ramp function, computed from per-year prefix
sums, so "working time between a and b" is ``W(b) - W(a)`` and "add N working hours" is the
earliest instant with ``W = W(start) + N·3600`` (a binary search). Every query is O(log days).

Counting rules (SPEC §4, as in Chinese law on periods: the starting day is not counted):

- **N working days**: the end of working hours (17:30) of the N-th working day *after* the calendar
  day on which the clock started. Started Wed 10:00 + 1 → Thu 17:30; started 2026-09-30 16:00 + 1
  → 2026-10-08 17:30.
- **N working hours**: N hours of working time counted from the start instant; time outside
  working hours does not count; a start outside working hours counts from the next working moment.
  Started 11:30 + 2 h → 15:00 the same day.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
from calendar import isleap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo

import chinese_calendar

from service.clock import office_zone

log = logging.getLogger("qifu.calendar")

# The clock's origin: the first year of chinese-calendar's data, so that computing the prefix sums of a
# covered year never touches (and warns about) a year without official data.
EPOCH = date(2004, 1, 1)
DEFAULT_PERIODS: tuple[tuple[time, time], ...] = ((time(9, 0), time(12, 0)), (time(13, 30), time(17, 30)))


#: Most ``(date, n)`` answers a calendar keeps for :meth:`WorkingCalendar.next_working_day`
#: (dropped all at once beyond: ten years of days times a few limits fit).
_NEXT_CACHE_SIZE = 100_000


def _seconds(t: time) -> int:
    return t.hour * 3600 + t.minute * 60 + t.second


def _day_of_year(d: date) -> int:
    """0 for January 1st."""
    return d.toordinal() - date(d.year, 1, 1).toordinal()


@dataclass(frozen=True)
class WorkingHours:
    """The working periods of a working day, as ``(start, end)`` local times, sorted, disjoint.

    Raises:
        ValueError: a period is empty, unsorted or overlapping.
    """

    periods: tuple[tuple[time, time], ...] = DEFAULT_PERIODS

    def __post_init__(self) -> None:
        last_end = -1
        for start, end in self.periods:
            s, e = _seconds(start), _seconds(end)
            if not s < e or s < last_end:
                raise ValueError(f"工作时段无效或重叠：{start}-{end}")
            last_end = e
        if not self.periods:
            raise ValueError("至少需要一个工作时段")

    @classmethod
    def parse(cls, spec: str) -> WorkingHours:
        """Parse ``"09:00-12:00,13:30-17:30"``.

        Raises:
            ValueError: malformed text.
        """
        periods = []
        for part in spec.split(","):
            start, end = (time.fromisoformat(x.strip()) for x in part.split("-"))
            periods.append((start, end))
        return cls(tuple(periods))

    @cached_property
    def spans(self) -> tuple[tuple[int, int], ...]:
        """The periods as ``(start, end)`` seconds of the local day."""
        return tuple((_seconds(s), _seconds(e)) for s, e in self.periods)

    @cached_property
    def day_seconds(self) -> int:
        """Working seconds in one working day (default 3 h + 4 h = 7 h = 25,200 s)."""
        return sum(e - s for s, e in self.spans)

    @property
    def day_end(self) -> time:
        """The end of the last period (default 17:30): the instant an N-working-day limit ends."""
        return self.periods[-1][1]

    def elapsed(self, seconds_of_day: float) -> float:
        """Working seconds from local midnight to ``seconds_of_day`` on a working day."""
        total = 0.0
        for s, e in self.spans:
            if seconds_of_day <= s:
                break
            total += min(seconds_of_day, e) - s
        return total

    def instant_of(self, working_seconds: float) -> float:
        """Inverse of :meth:`elapsed`: the earliest second-of-day at which ``working_seconds`` of
        working time have elapsed (``0 < working_seconds <= day_seconds``)."""
        remaining = working_seconds
        for s, e in self.spans:
            length = e - s
            if remaining <= length:
                return s + remaining
            remaining -= length
        return float(self.spans[-1][1])


class WorkingCalendar:
    """Working days and hours in one time zone, with admin overrides.

    Args:
        overrides: ``{date: is_working_day}`` entered by an admin; they win over the official data.
        hours: the working periods of a day.
        tz: the office time zone (default: the ``timezone`` setting, :func:`service.clock.office_zone`).

    All instants taken and returned are aware datetimes; results are in UTC.
    """

    def __init__(
        self,
        overrides: Mapping[date, bool] | None = None,
        hours: WorkingHours | None = None,
        tz: str | ZoneInfo | None = None,
    ) -> None:
        self.overrides: dict[date, bool] = dict(overrides or {})
        self.hours = hours or WorkingHours()
        self.tz = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz) if tz else office_zone()
        self._day = self.hours.day_seconds
        self._years: dict[int, tuple[list[bool], list[int]]] = {}
        self._year_start_cum: dict[int, int] = {}
        self._fallback: set[int] = set()
        #: ``(d, n) -> next_working_day(d, n)``: a deadline of N working days walks N+ days, and an
        #: import computes the same few thousand over and over (bounded: :data:`_NEXT_CACHE_SIZE`)
        self._next: dict[tuple[date, int], date] = {}
        # one thread fills a year's tables; the others wait instead of computing it again (the
        # first requests of an API process would otherwise each compute every year since the epoch)
        self._fill_lock = threading.Lock()

    # ---------------------------------------------------------------- days
    def _official_is_working(self, d: date) -> bool:
        try:
            return chinese_calendar.is_workday(d)
        except NotImplementedError:
            if d.year not in self._fallback:
                self._fallback.add(d.year)
                if self.has_admin_schedule(d.year):  # the admin's days off and make-up days rule
                    return d.weekday() < 5
                log.warning("no official holiday data for %s: Monday-Friday assumed; enter the year's "
                            "holidays as calendar overrides", d.year)
            return d.weekday() < 5

    def is_fallback_year(self, year: int) -> bool:
        """True when ``year`` has no official data (Monday-Friday is assumed unless overridden)."""
        try:
            chinese_calendar.is_workday(date(year, 6, 1))
        except NotImplementedError:
            return True
        return False

    def has_admin_schedule(self, year: int) -> bool:
        """True when an admin has entered days off for ``year`` (an override marking a day not
        worked): the State Council's schedule of a year the official data does not cover yet is
        entered this way (``PUT /api/v1/calendar/years/{year}``, or day by day), and its other
        days are then Monday-Friday by that schedule, so no "no official data" warning is due."""
        return any(not working and d.year == year for d, working in self.overrides.items())

    def is_working_day(self, d: date) -> bool:
        """Whether the local calendar date ``d`` is a working day (override > official > Mon-Fri)."""
        flags, _cum = self._year(d.year)
        return flags[_day_of_year(d)]

    def _is_working_uncached(self, d: date) -> bool:
        override = self.overrides.get(d)
        if override is not None:
            return override
        return self._official_is_working(d)

    def _year(self, year: int) -> tuple[list[bool], list[int]]:
        """``(working flags, cumulative working seconds before each day)`` of ``year``."""
        cached = self._years.get(year)
        if cached is None:
            with self._fill_lock:
                cached = self._years.get(year) or self._fill_year(year)
        return cached

    def _fill_year(self, year: int) -> tuple[list[bool], list[int]]:
        first = date(year, 1, 1)
        days = 366 if isleap(year) else 365  # not date(year + 1, 1, 1): no year 10000
        flags = [self._is_working_uncached(first + timedelta(days=i)) for i in range(days)]
        cum, total = [], 0
        for flag in flags:
            cum.append(total)
            total += self._day if flag else 0
        self._years[year] = (flags, cum)
        return self._years[year]

    def _cum_at_year(self, year: int) -> int:
        """Working seconds from the epoch to ``year``-01-01 00:00 (years before the epoch: negative)."""
        if year in self._year_start_cum:
            return self._year_start_cum[year]
        if year == EPOCH.year:
            value = 0
        elif year > EPOCH.year:
            prev = self._cum_at_year(year - 1) if (year - 1) in self._year_start_cum else None
            if prev is None:
                value = 0
                for y in range(EPOCH.year, year):
                    flags, cum = self._year(y)
                    value += cum[-1] + (self._day if flags[-1] else 0)
            else:
                flags, cum = self._year(year - 1)
                value = prev + cum[-1] + (self._day if flags[-1] else 0)
        else:
            value = 0
            for y in range(year, EPOCH.year):
                flags, cum = self._year(y)
                value -= cum[-1] + (self._day if flags[-1] else 0)
        self._year_start_cum[year] = value
        return value

    def _cum_before(self, d: date) -> int:
        """Working seconds from the epoch to local midnight starting ``d``."""
        _flags, cum = self._year(d.year)
        return self._cum_at_year(d.year) + cum[_day_of_year(d)]

    def next_working_day(self, d: date, n: int = 1) -> date:
        """The ``n``-th working day strictly after ``d`` (``n >= 1``).

        Raises:
            ValueError: ``n < 1``.
        """
        if n < 1:
            raise ValueError("n must be >= 1")
        key = (d, n)
        found = self._next.get(key)
        if found is not None:
            return found
        current = d
        while n:
            current += timedelta(days=1)
            if self.is_working_day(current):
                n -= 1
        if len(self._next) >= _NEXT_CACHE_SIZE:
            self._next.clear()
        self._next[key] = current
        return current

    # ---------------------------------------------------------------- the working clock
    def _local(self, instant: datetime) -> datetime:
        if instant.tzinfo is None:
            raise ValueError("naive datetime: pass an aware instant")
        return instant.astimezone(self.tz)

    def working_clock(self, instant: datetime) -> float:
        """``W(instant)``: working seconds from the epoch (2004-01-01 00:00 local) to ``instant``."""
        local = self._local(instant)
        d = local.date()
        base = self._cum_before(d)
        if not self.is_working_day(d):
            return float(base)
        sod = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
        return base + self.hours.elapsed(sod)

    def from_working_clock(self, value: float) -> datetime:
        """The earliest instant ``t`` with ``W(t) = value`` (aware, UTC).

        Raises:
            ValueError: ``value`` is not finite, or falls before 1900 or after 9999 (the bound
                checked first, without building tables, is that no year has more than 366
                working days).
        """
        if not math.isfinite(value):
            raise ValueError(f"working clock value must be finite, got {value!r}")
        if not -(EPOCH.year - 1900) * 366 * self._day <= value <= (9999 - EPOCH.year) * 366 * self._day:
            raise ValueError(f"working clock value {value!r} is outside the years 1900-9999")
        # find the year (starting from an estimate: about 250 working days a year, kept inside
        # the years datetime holds), then the day whose working span holds `value`
        year = min(max(EPOCH.year + int(value // (250 * self._day)), 1901), 9998)
        while self._cum_at_year(year) >= value and year > 1900:
            year -= 1
        if self._cum_at_year(year) > value:
            raise ValueError(f"working clock value {value!r} falls before 1900")
        while self._cum_at_year(year + 1) < value:
            year += 1
        flags, cum = self._year(year)
        offset = value - self._cum_at_year(year)
        i = bisect.bisect_left(cum, offset) - 1  # last day whose cumulative start < offset
        i = max(i, 0)
        while not flags[i] or cum[i] + self._day < offset:
            i += 1
        d = date(year, 1, 1) + timedelta(days=i)
        sod = self.hours.instant_of(offset - cum[i])
        local = datetime.combine(d, time.min, tzinfo=self.tz) + timedelta(seconds=sod)
        return local.astimezone(UTC)

    # ---------------------------------------------------------------- public arithmetic
    def is_working_time(self, instant: datetime) -> bool:
        """Whether ``instant`` falls inside working hours of a working day (period ends excluded)."""
        local = self._local(instant)
        if not self.is_working_day(local.date()):
            return False
        sod = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
        return any(_seconds(s) <= sod < _seconds(e) for s, e in self.hours.periods)

    def working_seconds_between(self, start: datetime, end: datetime) -> float:
        """Working seconds from ``start`` to ``end`` (negative when ``end < start``)."""
        return self.working_clock(end) - self.working_clock(start)

    def working_hours_between(self, start: datetime, end: datetime) -> float:
        """Working hours from ``start`` to ``end`` (see :meth:`working_seconds_between`)."""
        return self.working_seconds_between(start, end) / 3600.0

    def add_working_seconds(self, start: datetime, seconds: float) -> datetime:
        """The instant at which ``seconds`` of working time have elapsed since ``start`` (UTC).

        ``seconds == 0`` returns ``start`` unchanged.

        Raises:
            ValueError: negative ``seconds``.
        """
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        if seconds == 0:
            return start.astimezone(UTC)
        clock = self.working_clock(start)
        # an amount too small to change the float clock must still move forward, never to the
        # earliest instant of the same clock value (which can lie before ``start``)
        return self.from_working_clock(max(clock + seconds, math.nextafter(clock, math.inf)))

    def add_working_hours(self, start: datetime, hours: float) -> datetime:
        """SPEC §4 "N working hours" from ``start`` (UTC result). Example: 11:30 + 2 → 15:00."""
        return self.add_working_seconds(start, hours * 3600.0)

    def add_working_days(self, start: datetime, days: int) -> datetime:
        """SPEC §4 "N working days": 17:30 (end of working hours) of the ``days``-th working day
        after the local calendar date of ``start`` (UTC result).

        Raises:
            ValueError: ``days < 1``.
        """
        d = self.next_working_day(self._local(start).date(), days)
        return datetime.combine(d, self.hours.day_end, tzinfo=self.tz).astimezone(UTC)

    def working_days(self, start: date, end: date) -> Iterable[date]:
        """The working days in ``[start, end]`` (local dates)."""
        d = start
        while d <= end:
            if self.is_working_day(d):
                yield d
            d += timedelta(days=1)

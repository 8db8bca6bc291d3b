"""Cadence periods and their run dates on the working calendar (SPEC §5). Pure, no I/O.

Each cadence is held once per period; the period's *run date* is its nominal day moved to the next
working day when that is not a working day (Asia/Shanghai, official calendar + overrides):

| kind | period key | nominal run day |
|---|---|---|
| daily | ``2026-03-02`` | the day itself (only working days have a period) |
| weekly | ``2026-W10`` (ISO week of the sessions) | Monday of the week before |
| monthly | ``2026-04`` | the 1st of the month |
| quarterly | ``2026-Q2`` | the 1st of the quarter |
| annual | ``2027`` | January 1st |
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from service.calendar.core import WorkingCalendar
from service.errors import FieldError

KINDS = ("daily", "weekly", "monthly", "quarterly", "annual")


@dataclass(frozen=True, order=True)
class Period:
    """One cadence period: ``run_date`` first so periods sort by when they run."""

    run_date: date
    kind: str
    key: str


def first_working_on_or_after(cal: WorkingCalendar, d: date) -> date:
    """``d`` if it is a working day, else the next working day."""
    return d if cal.is_working_day(d) else cal.next_working_day(d)


def iso_week_key(d: date) -> str:
    y, w, _ = d.isocalendar()
    return f"{y}-W{w:02d}"


def week_monday(key: str) -> date:
    """Monday of the ISO week ``2026-W10``.

    Raises:
        FieldError (422, ``period_key``): malformed key.
    """
    try:
        year, week = key.split("-W")
        return date.fromisocalendar(int(year), int(week), 1)
    except ValueError as exc:
        raise FieldError("period_key", f"周期 {key!r} 不是 ISO 周（如 2026-W10）") from exc


def _nominal(kind: str, d: date) -> tuple[str, date]:
    """The period that ``d`` belongs to (by nominal day) and its nominal run day."""
    if kind == "daily":
        return d.isoformat(), d
    if kind == "weekly":
        monday = d - timedelta(days=d.weekday())
        return iso_week_key(monday + timedelta(days=7)), monday
    if kind == "monthly":
        return f"{d.year}-{d.month:02d}", date(d.year, d.month, 1)
    if kind == "quarterly":
        q = (d.month - 1) // 3 + 1
        return f"{d.year}-Q{q}", date(d.year, 3 * q - 2, 1)
    if kind == "annual":
        return str(d.year), date(d.year, 1, 1)
    raise FieldError("kind", f"未知的周期类型 {kind!r}，可选：{', '.join(KINDS)}")


def _next_nominal(kind: str, nominal: date) -> date:
    if kind == "daily":
        return nominal + timedelta(days=1)
    if kind == "weekly":
        return nominal + timedelta(days=7)
    months = {"monthly": 1, "quarterly": 3, "annual": 12}[kind]
    m = nominal.month - 1 + months
    return date(nominal.year + m // 12, m % 12 + 1, 1)


def periods_between(cal: WorkingCalendar, kind: str, start: date, end: date) -> list[Period]:
    """Periods of ``kind`` whose run date lies in ``[start, end]``, in order.

    Daily periods exist only for working days. Two weekly periods can share a run date (the run
    due in a week with no working day moves into the next week).

    Raises:
        FieldError (422, ``kind``): unknown kind.
    """
    _nominal(kind, start)  # validates kind
    result: list[Period] = []
    # start one period early: its run date may have moved into [start, end]
    key, nominal = _nominal(kind, start - timedelta(days=40 if kind != "daily" else 1))
    while nominal <= end:
        nxt = _next_nominal(kind, nominal)
        if kind == "daily":
            if cal.is_working_day(nominal) and start <= nominal:
                result.append(Period(nominal, kind, nominal.isoformat()))
        else:
            run = first_working_on_or_after(cal, nominal)
            if start <= run <= end:
                result.append(Period(run, kind, key))
        nominal = nxt
        key = _nominal(kind, nominal)[0]
    return result


def period_at(cal: WorkingCalendar, kind: str, d: date) -> Period | None:
    """The period of ``kind`` that was (or is) run last on or before ``d``: what the cadence's task
    does when it runs on ``d``. ``None`` for ``daily`` on a non-working day.

    Raises:
        FieldError (422, ``kind``): unknown kind.
    """
    if kind == "daily":
        return Period(d, kind, d.isoformat()) if cal.is_working_day(d) else None
    lookback = {"weekly": 21, "monthly": 70, "quarterly": 190, "annual": 400}.get(kind)
    if lookback is None:
        _nominal(kind, d)
    found = periods_between(cal, kind, d - timedelta(days=lookback), d)
    return found[-1] if found else None


def previous_month(key: str) -> tuple[date, date]:
    """``[first day, first day of next)`` of the month before the monthly period ``2026-04``."""
    year, month = (int(x) for x in key.split("-"))
    start_next = date(year, month, 1)
    prev = date(year - 1, 12, 1) if month == 1 else date(year, month - 1, 1)
    return prev, start_next


def previous_quarter(key: str) -> tuple[str, date, date]:
    """``(key, first day, first day of next)`` of the quarter before ``2026-Q2``."""
    year, q = key.split("-Q")
    year, q = int(year), int(q)
    if q == 1:
        year, q = year - 1, 4
    else:
        q -= 1
    start = date(year, 3 * q - 2, 1)
    end = date(year + 1, 1, 1) if q == 4 else date(year, 3 * q + 1, 1)
    return f"{year}-Q{q}", start, end

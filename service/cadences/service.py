"""Running the five cadences (SPEC §5): claim a period, do its work, catch up what was missed.

Every run first *claims* its period by inserting ``cadence_run(kind, period_key)`` inside a
savepoint (as ``service.ticketing.submission._reserve_idempotency_key`` does): a second run of the same
period — twice by beat, by hand, or concurrently on two workers (the loser waits on the primary key,
then finds it taken) — does nothing. The claim and the work commit together, so a failed run
leaves no claim and is retried.

:func:`run_due` is what beat, the hourly catch-up and the embedded scheduler call: every period
of the kinds asked whose run date (moved to a working day) lies within ``catch_up_days`` and is
today after the cadence's time of day (08:30 daily, 08:00 the others) or earlier, and that has no
claim, is run — oldest first. Missed daily lists are not rebuilt for past days (the rotation
already puts overdue enterprises first); only today's list is built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta

from sqlmodel import Session, select

from service import clock
from service.auth.actor import actor_of
from service.cadences import follow_ups, inquiries, reports, return_visits, sessions
from service.cadences.common import local_date
from service.cadences.models import CadenceRun
from service.cadences.periods import (
    KINDS,
    Period,
    period_at,
    periods_between,
    previous_month,
    previous_quarter,
)
from service.cadences.schemas import RunResult
from service.calendar.service import get_calendar
from service.clock import office_zone
from service.common.schemas import check_date
from service.config import get_settings
from service.db import insert_unless_duplicate
from service.errors import FieldError
from service.notifications import service as notifications
from service.tickets.visibility import scope_of
from service.users.models import User

# ------------------------------------------------------------------ the work of each cadence

def _daily(session: Session, period: Period, now: datetime) -> dict:
    items = inquiries.build_daily_lists(session, period.run_date)
    added = sessions.refresh_upcoming(session, period.run_date, now)
    return {"list_items": items, "agenda_items_added": added, **follow_ups.expire(session, now)}


def _weekly(session: Session, period: Period, now: datetime) -> dict:
    return sessions.create_weekly_clinics(session, period.key, now)


def _notify_long_open(session: Session, period_key: str, rows: list[dict], days: int, now: datetime) -> None:
    """Tell every supervisor how many long-open tickets *they* may see (SPEC §1: a supervisor of
    a region is told about their region's, not the county's, and not when they have none)."""
    supervisors = session.exec(select(User).where(User.role == "supervisor", User.is_active)).all()
    by_count: dict[int, list[int]] = {}
    for user in supervisors:
        n = len(rows) if user.region_id is None else len(
            scope_of(session, actor_of(user)).visible_numbers(r["number"] for r in rows))
        if n or user.region_id is None:
            by_count.setdefault(n, []).append(user.id)
    for n, user_ids in sorted(by_count.items()):
        notifications.notify(session, None, "follow_up", user_ids, body=f"{n} 件工单已超过 {days} 天未办结，请督办",
                             payload={"report": "long_open", "period_key": period_key, "count": n}, at=now)


def _monthly(session: Session, period: Period, now: datetime) -> dict:
    result = follow_ups.create_monthly(session, period.key, period.run_date, now)
    rows = follow_ups.long_open(session, period.run_date)
    days = get_settings().cadence_long_open_days
    start, end = previous_month(period.key)
    month_key = start.strftime("%Y-%m")
    ranking = reports.store(session, "monthly_ranking", month_key, f"{month_key} 承办单位月度排名",
                            reports.ranking_document(session, month_key, start, end), now)
    report = reports.store(session, "long_open", period.key, f"{period.key} 超{days}天未办结工单清单",
                           {"period": period.key, "as_of": period.run_date.isoformat(), "days": days,
                            "count": len(rows), "tickets": rows}, now)
    if report is not None:
        _notify_long_open(session, period.key, rows, days, now)
    return {**result, "long_open": len(rows), "ranking": month_key if ranking is not None else None}


def _quarterly(session: Session, period: Period, now: datetime) -> dict:
    result = sessions.create_joint_consultation(session, period.key, period.run_date, now)
    q_key, start, end = previous_quarter(period.key)
    data = reports.ranking_document(session, q_key, start, end)
    stored = reports.store(session, "quarterly_ranking", q_key, f"{q_key} 承办单位晾晒排名", data, now)
    return {**result, "report": q_key if stored else None}


def _annual(session: Session, period: Period, now: datetime) -> dict:
    year = int(period.key) - 1
    result = return_visits.create_annual(session, year, period.run_date, now)
    stored = reports.store(session, "annual", str(year), f"{year} 年度企业服务报告",
                           reports.annual_report(session, year), now)
    return {**result, "report": str(year) if stored else None}


RUNNERS: dict[str, Callable[[Session, Period, datetime], dict]] = {
    "daily": _daily, "weekly": _weekly, "monthly": _monthly, "quarterly": _quarterly, "annual": _annual,
}


# ------------------------------------------------------------------ claiming and running

def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise FieldError("kind", f"周期类型只能是 {', '.join(KINDS)}")
    return kind


def claim(session: Session, period: Period, now: datetime) -> CadenceRun | None:
    """Insert the period's ``cadence_run`` row; ``None`` when it was claimed before."""
    if session.get(CadenceRun, (period.kind, period.key)) is not None:
        return None
    return insert_unless_duplicate(
        session, CadenceRun(kind=period.kind, period_key=period.key, run_date=period.run_date, ran_at=now))


def run_period(session: Session, period: Period, now: datetime | None = None) -> RunResult:
    """Run one period unless it ran before. Flushes, never commits.

    Returns a :class:`RunResult`; ``ran`` is False when the period had been claimed already.
    """
    now = now or clock.now()
    row = claim(session, period, now)
    if row is None:
        return RunResult(kind=period.kind, period_key=period.key, run_date=period.run_date, ran=False)
    summary = RUNNERS[period.kind](session, period, now)
    row.summary = summary
    session.add(row)
    session.flush()
    return RunResult(kind=period.kind, period_key=period.key, run_date=period.run_date, ran=True, summary=summary)


def run_for_date(session: Session, kind: str, d: date, now: datetime | None = None) -> RunResult:
    """Run by hand what the ``kind`` cadence does on day ``d`` (``qifu cadence run daily --date
    2026-03-02``): the period whose run date is the last on or before ``d``. Nothing happens when it
    ran before, or (daily) when ``d`` is not a working day.

    Raises:
        FieldError (422, ``kind``): unknown kind.
    """
    _check_kind(kind)
    cal = get_calendar(session)
    period = period_at(cal, kind, d)
    if period is None:
        return RunResult(kind=kind, period_key=None, run_date=None, ran=False,
                         summary={"detail": f"{d} 不是工作日，没有问诊清单"})
    return run_period(session, period, now)


#: How far from today a cadence may be run by hand without ``force`` (days back, days ahead):
#: a year back covers the last annual period; a month ahead covers preparing the next one.
RUN_WINDOW_DAYS = (366, 31)


def check_run_date(d: date, *, force: bool = False, now: datetime | None = None) -> date:
    """``d`` if a cadence may be run by hand for it (API ``POST /cadences/{kind}/run`` and
    ``qifu cadence run``): within :data:`RUN_WINDOW_DAYS` of today (Asia/Shanghai), or anywhere in
    ``MIN_DATE .. MAX_DATE`` with ``force`` (a deliberate back-fill). A date typed a century off
    would otherwise claim and build a period nobody meant.

    Raises:
        FieldError (422, ``date``): outside the API's dates, or far from today without ``force``.
    """
    try:
        check_date(d)
    except ValueError as exc:
        raise FieldError("date", str(exc)) from exc
    now_day = today(now)
    back, ahead = RUN_WINDOW_DAYS
    if not force and not now_day - timedelta(days=back) <= d <= now_day + timedelta(days=ahead):
        raise FieldError("date", f"{d} 距今天（{now_day}）超过 {back} 天之前或 {ahead} 天之后；"
                                 "确需补跑请加 force=true（命令行 --force）")
    return d


def due_periods(session: Session, kinds: Iterable[str] = KINDS, now: datetime | None = None) -> list[Period]:
    """Periods that should have run by ``now`` and have not (see the module docstring), oldest first."""
    now = now or clock.now()
    settings = get_settings()
    cal = get_calendar(session)
    local = now.astimezone(office_zone())
    today = local.date()
    result: list[Period] = []
    for kind in kinds:
        _check_kind(kind)
        ready = local.time() >= settings.cadence_run_times[kind]
        start = today if kind == "daily" else today - timedelta(days=settings.cadence_catch_up_days)
        for p in periods_between(cal, kind, start, today):
            if p.run_date == today and not ready:
                continue
            if session.get(CadenceRun, (p.kind, p.key)) is None:
                result.append(p)
    return sorted(result, key=lambda p: (p.run_date, KINDS.index(p.kind)))


def run_due(session: Session, kinds: Iterable[str] = KINDS, now: datetime | None = None) -> list[RunResult]:
    """Run every due period of ``kinds`` (beat, catch-up, embedded scheduler). Flushes, never commits."""
    now = now or clock.now()
    return [run_period(session, p, now) for p in due_periods(session, kinds, now)]


def today(now: datetime | None = None) -> date:
    """Today's date in Asia/Shanghai."""
    return local_date(now or clock.now())

"""The measures of SPEC §6, each defined once, as SQL over the ``ticket`` table.

Everything that counts tickets for supervisors (the summary, the monthly and quarterly department
rankings, the drill-down ticket lists, the cadence reports) builds its SQL from this module, so a
number and the list of tickets behind it can never disagree. The precise definitions, with the
reasons for each choice, are in ``docs/statistics.md``; in short, over the *population* (tickets
submitted in the period, Asia/Shanghai days, that the reader may see, matching the filters):

- :data:`COUNTS`: each a predicate on one ticket row; the count is the number of rows for which it
  holds (``received`` holds for every row). The drill-down lists exactly those rows.
- :data:`RATES`: ``numerator / denominator`` of two counts (``None`` when the denominator is 0).
- :data:`DURATIONS`: working hours between two milestone columns (SPEC §4 working calendar), over
  the rows where both are set; reported as the median (p50) and 90th percentile (p90), interpolated
  linearly between ranks (PostgreSQL ``percentile_cont``; the same formula in Python for SQLite).

**Working hours in SQL, set-based.** The calendar's working clock ``W(t)`` (working seconds since
2004-01-01 local, :meth:`service.calendar.core.WorkingCalendar.working_clock`) is
``cum(day(t)) + working(day(t)) · elapsed(second_of_day(t))``, where ``cum`` (working seconds before
local midnight) and ``working`` (0/1) come from a small per-day table computed by the calendar in
Python for the days the query can touch (about 365 rows a year, sent as a literal ``VALUES`` CTE),
and ``elapsed`` is a ``CASE`` sum over the working periods (09:00-12:00, 13:30-17:30 by default).
Working hours between ``a`` and ``b`` = ``(W(b) − W(a)) / 3600``: an array lookup (SQLite: a join)
per timestamp, no per-row Python, and the same value as the calendar to the microsecond.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa

from service.calendar.core import EPOCH, WorkingCalendar
from service.sla.deadlines import overdue_clause
from service.tickets.models import Ticket

T = Ticket.__table__.c

SATISFIED = ("satisfied", "basically_satisfied")
RATED = ("satisfied", "basically_satisfied", "dissatisfied")


def _reply_in_time():
    # the last reply (a direct answer stamps replied_at too) at or before the reply deadline in
    # force (reply_by: moved out by hold time and approved extensions, renewed on reopen)
    return sa.or_(T.reply_by.is_(None), sa.and_(T.replied_at.is_not(None), T.replied_at <= T.reply_by))


def _responded():
    claimed = sa.and_(T.claimed_at.is_not(None), sa.or_(T.claim_by.is_(None), T.claimed_at <= T.claim_by))
    answered = sa.and_(T.answered_at.is_not(None), sa.or_(T.accept_by.is_(None), T.answered_at <= T.accept_by))
    return sa.or_(claimed, answered)


@dataclass(frozen=True)
class Count:
    """A count measure: ``predicate(now)`` is true for the ticket rows it counts.

    ``now`` (aware UTC) matters only for ``overdue`` (deadlines passed by now)."""

    name: str
    label: str
    predicate: Callable[[datetime], sa.ColumnElement[bool]]


@dataclass(frozen=True)
class Rate:
    """``numerator / denominator`` (names of :data:`COUNTS`), a fraction in [0, 1]."""

    name: str
    label: str
    numerator: str
    denominator: str
    lower_is_better: bool = False


@dataclass(frozen=True)
class Duration:
    """Working hours from column ``start`` to column ``end`` over the rows where ``end`` is set."""

    name: str
    label: str
    start: str
    end: str


COUNTS: dict[str, Count] = {c.name: c for c in (
    Count("received", "收件", lambda now: sa.true()),
    Count("accepted", "受理", lambda now: T.status != "rejected"),  # merged = rejected as duplicate
    Count("answered", "直接答复", lambda now: T.answered_at.is_not(None)),
    Count("dispatched", "交办", lambda now: T.dispatched_at.is_not(None)),
    Count("replied", "已答复", lambda now: T.first_replied_at.is_not(None)),
    Count("closed", "办结", lambda now: T.status == "closed"),
    Count("closed_on_time", "按期办结", lambda now: sa.and_(T.status == "closed", _reply_in_time())),
    Count("overdue", "当前超期", overdue_clause),
    Count("response_due", "应响应", lambda now: sa.or_(T.dispatched_at.is_not(None), T.answered_at.is_not(None))),
    Count("responded", "按时响应", lambda now: _responded()),
    Count("rated", "已评价", lambda now: T.rating.in_(RATED)),
    Count("satisfied", "满意", lambda now: T.rating.in_(SATISFIED)),
    Count("closed_rated", "办结已回访", lambda now: sa.and_(T.status == "closed", T.rating.in_(RATED))),
    Count("reopened", "重办", lambda now: T.reopen_count > 0),
    Count("returned", "退单", lambda now: T.return_count > 0),
)}

RATES: dict[str, Rate] = {r.name: r for r in (
    Rate("closure_rate", "办结率", "closed", "accepted"),
    Rate("on_time_rate", "按期办结率", "closed_on_time", "closed"),
    Rate("response_rate", "响应率", "responded", "response_due"),
    Rate("satisfaction_rate", "满意率", "satisfied", "rated"),
    Rate("rated_share", "回访率", "closed_rated", "closed"),
    Rate("reopen_rate", "重办率", "reopened", "replied", lower_is_better=True),
    Rate("return_rate", "退单率", "returned", "dispatched", lower_is_better=True),
)}

DURATIONS: dict[str, Duration] = {d.name: d for d in (
    Duration("hours_to_claim", "签收用时", "dispatched_at", "claimed_at"),
    Duration("hours_to_reply", "答复用时", "submitted_at", "first_replied_at"),
    Duration("hours_to_close", "办结用时", "submitted_at", "closed_at"),
)}
PERCENTILES = ((50, 0.5), (90, 0.9))
#: The fractions of :data:`PERCENTILES`, in that order.
FRACTIONS: tuple[float, ...] = tuple(frac for _, frac in PERCENTILES)


def duration_condition(d: Duration) -> sa.ColumnElement[bool]:
    """The rows a duration is taken over (its drill-down): both milestones set, and for
    ``hours_to_close`` the ticket closed now (a reopened ticket's old ``closed_at`` is cleared)."""
    cond = sa.and_(T[d.start].is_not(None), T[d.end].is_not(None))
    return sa.and_(cond, T.status == "closed") if d.name == "hours_to_close" else cond


def duration_columns() -> list[str]:
    """The output names of the duration figures: ``hours_to_claim_p50``, ``..._p90``, ..."""
    return [f"{name}_p{p}" for name in DURATIONS for p, _ in PERCENTILES]


def rate(num: int, den: int) -> float | None:
    """``num / den`` rounded to 4 places, ``None`` when ``den`` is 0."""
    return round(num / den, 4) if den else None


_RATE_TERMS = tuple((r.name, r.numerator, r.denominator) for r in RATES.values())


def rates_of(counts: dict[str, int]) -> dict[str, float | None]:
    """Every rate of :data:`RATES` (:func:`rate`) from a row of counts ``{count name: n}``."""
    return {name: rate(counts[num], counts[den]) for name, num, den in _RATE_TERMS}


def count_sql(name: str, now: datetime) -> sa.ColumnElement[int]:
    """``SUM(CASE WHEN <predicate> THEN 1 ELSE 0 END)`` for the count ``name`` (0 on no rows)."""
    if name == "received":
        return sa.func.count()
    return sa.func.coalesce(sa.func.sum(sa.case((COUNTS[name].predicate(now), 1), else_=0)), 0)


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The ``fraction`` percentile of ``values`` interpolated linearly between the closest ranks,
    exactly as PostgreSQL's ``percentile_cont``: with ``v`` sorted and ``x = fraction·(n−1)``,
    ``v[⌊x⌋] + (x − ⌊x⌋)·(v[⌊x⌋+1] − v[⌊x⌋])``. ``None`` for no values."""
    if not values:
        return None
    v = sorted(values)
    x = fraction * (len(v) - 1)
    lo = int(x)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (x - lo) * (v[hi] - v[lo])


# --------------------------------------------------------------------------- time in SQL

class LocalTime:
    """Local (office time zone) calendar expressions on a UTC timestamp column, per dialect.

    PostgreSQL converts with ``timezone(<zone>, ts)``; SQLite (naive UTC text) adds the zone's fixed
    offset (Asia/Shanghai has had no daylight saving since 1991).
    """

    def __init__(self, dialect: str, tz) -> None:
        self.dialect = dialect
        self.zone = str(tz)
        offset = datetime(2000, 1, 1, tzinfo=UTC).astimezone(tz).utcoffset() or timedelta(0)
        self.offset = int(offset.total_seconds())
        minutes = self.offset // 60
        self.modifier = f"{'+' if minutes >= 0 else '-'}{abs(minutes)} minutes"
        # a zone without daylight saving in the years Qifu serves (Asia/Shanghai since 1991): local
        # time is UTC + a constant, which PostgreSQL computes far faster than timezone(<zone>, ts)
        self.fixed = all(datetime(y, m, 1, tzinfo=UTC).astimezone(tz).utcoffset() == offset
                         for y in (1992, 2004, 2026, 2050) for m in (1, 7))

    @property
    def pg(self) -> bool:
        return self.dialect == "postgresql"

    def _local(self, ts):
        return sa.func.timezone(sa.literal_column(f"'{self.zone}'"), ts)

    def day(self, ts) -> sa.ColumnElement[str]:
        """``'YYYY-MM-DD'`` of the local day."""
        if self.pg:
            return sa.func.to_char(self._local(ts), "YYYY-MM-DD")
        return sa.func.date(ts, self.modifier)

    def week(self, ts) -> sa.ColumnElement[str]:
        """``'YYYY-MM-DD'`` of the Monday of the local ISO week."""
        if self.pg:
            return sa.func.to_char(sa.func.date_trunc("week", self._local(ts)), "YYYY-MM-DD")
        return sa.func.date(ts, self.modifier, "weekday 0", "-6 days")

    def month(self, ts) -> sa.ColumnElement[str]:
        """``'YYYY-MM'``."""
        if self.pg:
            return sa.func.to_char(self._local(ts), "YYYY-MM")
        return sa.func.strftime("%Y-%m", ts, self.modifier)

    def quarter(self, ts) -> sa.ColumnElement[str]:
        """``'YYYY-Qn'``."""
        if self.pg:
            return sa.func.to_char(self._local(ts), 'YYYY-"Q"Q')
        month = sa.cast(sa.func.strftime("%m", ts, self.modifier), sa.Integer)
        return sa.func.strftime("%Y", ts, self.modifier) + "-Q" + sa.cast((month + 2) // 3, sa.String)

    def _local_epoch(self, ts):
        return sa.func.date_part("epoch", ts) + float(self.offset)  # float8, unlike EXTRACT (numeric)

    def day_number(self, ts) -> sa.ColumnElement[int]:
        """Local days since the calendar's epoch (2004-01-01 = 0)."""
        if self.pg and self.fixed:
            return sa.cast(sa.func.floor(self._local_epoch(ts) / 86400.0), sa.Integer) - (EPOCH - date(1970, 1, 1)).days
        if self.pg:
            return sa.type_coerce(
                sa.cast(self._local(ts), sa.Date) - sa.literal_column(f"DATE '{EPOCH.isoformat()}'"), sa.Integer)
        return sa.cast(sa.func.julianday(sa.func.date(ts, self.modifier)) - sa.func.julianday(EPOCH.isoformat()),
                       sa.Integer)

    def second_of_day(self, ts) -> sa.ColumnElement[float]:
        """Seconds since local midnight (with the fraction)."""
        if self.pg and self.fixed:
            le = self._local_epoch(ts)
            return le - 86400.0 * sa.func.floor(le / 86400.0)
        if self.pg:
            return sa.extract("epoch", sa.cast(self._local(ts), sa.Time))
        return (sa.func.julianday(ts, self.modifier) - sa.func.julianday(sa.func.date(ts, self.modifier))) * 86400.0


class WorkingClockSQL:
    """The working clock ``W(t)`` of ``calendar`` in SQL, for timestamps whose local day lies in
    ``[first, last]`` (outside: ``NULL``).

    Use :meth:`join` once per timestamp column, then :meth:`clock` in the select list.
    """

    def __init__(self, calendar: WorkingCalendar, local: LocalTime, first: date, last: date,
                 days: sa.FromClause | None = None, correlated: bool = False) -> None:
        self.calendar, self.local = calendar, local
        self._aliases: dict[str, sa.FromClause] = {}
        self.first_dn = (first - EPOCH).days
        self.correlated = correlated
        self.joined = (days is not None or not local.pg) and not correlated
        if days is not None:
            # a stored per-day table (``working_day``: dn, cum, wd), joined like SQLite's CTE
            self.days = days
            return
        rows = []
        d = first
        while d <= last:
            midnight = datetime.combine(d, time.min, tzinfo=calendar.tz)
            rows.append(((d - EPOCH).days, int(calendar.working_clock(midnight)),
                         1 if calendar.is_working_day(d) else 0))
            d += timedelta(days=1)
        cols = (sa.column("dn", sa.Integer), sa.column("cum", sa.BigInteger), sa.column("wd", sa.Integer))
        if local.pg:
            # PostgreSQL: two array parameters indexed by the day number (no join at all)
            from sqlalchemy.dialects.postgresql import ARRAY
            from sqlalchemy.sql.elements import Grouping

            self.cum = Grouping(sa.bindparam("wc_cum", [r[1] for r in rows], type_=ARRAY(sa.BigInteger)))
            self.wd = Grouping(sa.bindparam("wc_wd", [r[2] for r in rows], type_=ARRAY(sa.Integer)))
        else:  # SQLite names VALUES columns column1..3 and takes no column aliases on a derived table
            literal = ", ".join(f"({int(a)}, {int(b)}, {int(c)})" for a, b, c in rows)
            self.days = sa.text(f"SELECT column1 AS dn, column2 AS cum, column3 AS wd FROM (VALUES {literal})"
                                ).columns(*cols).cte("wday")

    @classmethod
    def on_table(cls, calendar: WorkingCalendar, local: LocalTime, days: sa.FromClause,
                 correlated: bool = False) -> WorkingClockSQL:
        """The clock over a stored per-day table ``days`` (columns ``dn``, ``cum``, ``wd``: the
        rollup's ``working_day``) instead of the literal days of a query, for every dialect:
        joined once per timestamp column (scans), or with ``correlated`` a scalar sub-select per
        use, evaluated only where a duration applies (a trigger's few rows)."""
        return cls(calendar, local, EPOCH, EPOCH, days=days, correlated=correlated)

    def alias(self, column: str) -> sa.FromClause:
        if column not in self._aliases:
            self._aliases[column] = self.days.alias(f"wd_{column}")
        return self._aliases[column]

    def join(self, from_clause, column: str):
        """``from_clause LEFT JOIN wday AS wd_<column> ON wd_<column>.dn = day_number(ticket.<column>)``."""
        if not self.joined:
            return from_clause
        a = self.alias(column)
        return from_clause.outerjoin(a, a.c.dn == self.local.day_number(T[column]))

    def elapsed(self, sod) -> sa.ColumnElement[float]:
        """Working seconds from local midnight to second-of-day ``sod`` of a working day."""
        greatest, least = (sa.func.greatest, sa.func.least) if self.local.pg else (sa.func.max, sa.func.min)
        parts = [greatest(0.0, least(sod, float(e)) - float(s)) for s, e in self.calendar.hours.spans]
        total = parts[0]
        for p in parts[1:]:
            total = total + p
        return total

    def clock(self, column: str) -> sa.ColumnElement[float]:
        """``W(ticket.<column>)`` in working seconds (needs :meth:`join` for ``column``)."""
        sod = self.local.second_of_day(T[column])
        if self.correlated:
            d = self.days
            return (sa.select(d.c.cum + d.c.wd * self.elapsed(sod))
                    .where(d.c.dn == self.local.day_number(T[column])).scalar_subquery())
        if not self.joined:
            i = self.local.day_number(T[column]) - (self.first_dn - 1)
            return self.cum[i] + self.wd[i] * self.elapsed(sod)
        a = self.alias(column)
        return a.c.cum + a.c.wd * self.elapsed(sod)

    def hours(self, d: Duration) -> sa.ColumnElement[float]:
        """Working hours of duration ``d`` on one row (``NULL`` where it does not apply)."""
        return sa.case((duration_condition(d), (self.clock(d.end) - self.clock(d.start)) / 3600.0), else_=None)

    def columns(self) -> list[str]:
        """The timestamp columns the durations read (each needs one join)."""
        return list(dict.fromkeys(c for d in DURATIONS.values() for c in (d.start, d.end)))

"""Statistics for supervisors (SPEC §6): the summary, the department rankings and the drill-down.

The measures themselves are defined once in :mod:`service.stats.metrics` (and in
``docs/statistics.md``); this module chooses the *population* and the *grouping* and runs them:

- population: tickets submitted in ``[date_from, date_to]`` (calendar dates in Asia/Shanghai, both
  inclusive) that the actor may see (SPEC §1 row visibility), narrowed by :class:`Filters`;
- grouping (:data:`GROUPINGS`): ``department`` (lead department; not yet dispatched =「未交办」),
  ``region`` (the town/street/park of the ticket's grid: a town groups its grids), ``grid``,
  ``category``, ``service_type``, ``channel``, ``officer``, or a time grouping of the submission
  date: ``day``, ``week`` (ISO week, key = its Monday), ``month``, ``quarter``. Time groups come in
  date order, the others by volume (received, descending).

Every figure of a group can be drilled into with :func:`drill`: the same population and grouping,
narrowed by the measure's own predicate, lists exactly the tickets counted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, date, datetime, time, timedelta
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Session

from service import clock
from service.auth.actor import Actor
from service.calendar.core import EPOCH
from service.calendar.service import get_calendar
from service.categories.models import Category
from service.clock import office_zone
from service.common.enums import Channel, ServiceType
from service.common.trees import subtree_ids
from service.config import get_settings
from service.departments.models import Department
from service.errors import FieldError
from service.regions.models import Grid, Region
from service.stats import metrics, rollup
from service.stats.metrics import (
    COUNTS,
    DURATIONS,
    FRACTIONS,
    PERCENTILES,
    RATES,
    LocalTime,
    T,
    WorkingClockSQL,
)
from service.tickets.models import Ticket
from service.tickets.visibility import scope_of, ticket_visibility
from service.users.models import User

TIME_GROUPINGS = ("day", "week", "month", "quarter")
GROUPINGS = ("department", "region", "grid", "category", "service_type", "channel", "officer", *TIME_GROUPINGS)
GROUPING_LABELS = {"department": "承办单位", "region": "镇街园区", "grid": "网格", "category": "类别",
                   "service_type": "服务类型", "channel": "渠道", "officer": "服务专员", "day": "日",
                   "week": "周", "month": "月", "quarter": "季度"}
SERVICE_TYPE_LABELS = {"problem": "问题交办", "consultation": "政策咨询", "agency": "项目代办", "matching": "服务对接"}
CHANNEL_LABELS = {"web": "网站", "app": "移动端", "hotline": "热线", "window": "专窗", "inquiry": "问诊",
                  "clinic": "坐诊", "email": "邮件", "open311": "Open311", "import": "导入"}
# the calendar's range (service/calendar/core.py): dates outside it cannot be converted
MIN_DATE, MAX_DATE = date(1900, 1, 1), date(9999, 12, 31)


@dataclass
class Filters:
    """Narrow the population (all optional, combined with AND). Region and category include their
    subtrees (a town's grids; a service type's topics)."""

    department_id: int | None = None
    region_id: int | None = None
    grid_id: int | None = None
    category_id: int | None = None
    service_type: str | None = None
    channel: str | None = None
    officer_id: int | None = None


@dataclass(slots=True)
class SummaryRow:
    """One group of the summary (or the total). ``key`` is the group's id or value (``None`` = no
    value), ``label`` its Chinese name. Counts are ticket counts (:data:`metrics.COUNTS`), rates
    fractions in [0, 1] or ``None`` (:data:`metrics.RATES`), ``hours_*`` working hours (SPEC §4)
    rounded to 0.01 or ``None`` (:data:`metrics.DURATIONS`)."""

    key: Any
    label: str
    received: int = 0
    accepted: int = 0
    answered: int = 0
    dispatched: int = 0
    replied: int = 0
    closed: int = 0
    closed_on_time: int = 0
    overdue: int = 0
    response_due: int = 0
    responded: int = 0
    rated: int = 0
    satisfied: int = 0
    closed_rated: int = 0
    reopened: int = 0
    returned: int = 0
    closure_rate: float | None = None
    on_time_rate: float | None = None
    response_rate: float | None = None
    satisfaction_rate: float | None = None
    rated_share: float | None = None
    reopen_rate: float | None = None
    return_rate: float | None = None
    hours_to_claim_p50: float | None = None
    hours_to_claim_p90: float | None = None
    hours_to_reply_p50: float | None = None
    hours_to_reply_p90: float | None = None
    hours_to_close_p50: float | None = None
    hours_to_close_p90: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTS}


SUMMARY_FIELDS = [f.name for f in fields(SummaryRow)]
assert set(COUNTS) | set(RATES) | set(metrics.duration_columns()) == set(SUMMARY_FIELDS) - {"key", "label"}


def column_label(name: str) -> str:
    """The Chinese header of a summary/ranking column."""
    if name in COUNTS:
        return COUNTS[name].label
    if name in RATES:
        return RATES[name].label
    for d in DURATIONS.values():
        for p, _ in PERCENTILES:
            if name == f"{d.name}_p{p}":
                return f"{d.label}{'中位数' if p == 50 else f'P{p}'}(工作小时)"
    return {"key": "键", "label": "分组", "department": "承办单位", "code": "代码", "rank": "名次",
            "score": "得分"}.get(name, name)


# --------------------------------------------------------------------------- population

def period_bounds(date_from: date, date_to: date) -> tuple[datetime, datetime]:
    """``[date_from 00:00, date_to+1 00:00)`` in Asia/Shanghai as aware datetimes.

    Raises:
        FieldError (422, ``date_from``/``date_to``): a date outside 1900-01-01..9999-12-31 (the
            working calendar's range), or the period ends before it starts.
    """
    for name, value in (("date_from", date_from), ("date_to", date_to)):
        if not MIN_DATE <= value <= MAX_DATE:
            raise FieldError(name, f"日期须在 {MIN_DATE} 至 {MAX_DATE} 之间")
    if date_to < date_from:
        raise FieldError("date_to", "结束日期不能早于开始日期")
    start = datetime.combine(date_from, time.min, tzinfo=office_zone())
    if date_to == MAX_DATE:
        end = datetime.combine(date_to, time.max, tzinfo=office_zone())
    else:
        end = datetime.combine(date_to + timedelta(days=1), time.min, tzinfo=office_zone())
    return start, end


def _subtree(session: Session, model, root_id: int, field_name: str, what: str) -> list[int]:
    ids = subtree_ids(session, model, root_id)
    if not ids:
        raise FieldError(field_name, f"{what} {root_id} 不存在")
    return ids


def filter_condition(session: Session, filters: Filters, columns: Any = None) -> sa.ColumnElement[bool]:
    """The SQL condition of ``filters`` on ``ticket`` (or on ``columns``: the same columns of
    another table by ``ticket``'s names, e.g. the rollup's, :func:`rollup.table_columns`).

    Raises:
        FieldError (422, the filter's name): an unknown region, category, service type or channel.
    """
    T = Ticket.__table__.c if columns is None else columns  # noqa: N806 - the ticket columns' usual name
    conds: list[sa.ColumnElement[bool]] = []
    if filters.department_id is not None:
        conds.append(T.lead_department_id == filters.department_id)
    if filters.region_id is not None:
        regions = _subtree(session, Region, filters.region_id, "region_id", "区域")
        grids = sa.select(Grid.id).where(Grid.region_id.in_(regions)).scalar_subquery()
        conds.append(T.grid_id.in_(grids))
    if filters.grid_id is not None:
        conds.append(T.grid_id == filters.grid_id)
    if filters.category_id is not None:
        conds.append(T.category_id.in_(_subtree(session, Category, filters.category_id, "category_id", "类别")))
    if filters.service_type is not None:
        if filters.service_type not in {s.value for s in ServiceType}:
            raise FieldError("service_type", f"可选：{', '.join(s.value for s in ServiceType)}")
        conds.append(T.service_type == filters.service_type)
    if filters.channel is not None:
        if filters.channel not in {c.value for c in Channel}:
            raise FieldError("channel", f"可选：{', '.join(c.value for c in Channel)}")
        conds.append(T.channel == filters.channel)
    if filters.officer_id is not None:
        conds.append(T.officer_id == filters.officer_id)
    return sa.and_(sa.true(), *conds)


@dataclass
class _Query:
    """A resolved population and grouping."""

    where: sa.ColumnElement[bool]
    group: sa.ColumnElement[Any]
    from_: Any
    local: LocalTime
    start: datetime
    end: datetime
    now: datetime


def _group_expr(group_by: str, local: LocalTime):
    grid = Grid.__table__
    if group_by == "department":
        return T.lead_department_id, Ticket.__table__
    if group_by == "region":
        return grid.c.region_id, Ticket.__table__.outerjoin(grid, grid.c.id == T.grid_id)
    if group_by in ("grid", "category", "officer"):
        return T[f"{group_by}_id"], Ticket.__table__
    if group_by in ("service_type", "channel"):
        return T[group_by], Ticket.__table__
    if group_by in TIME_GROUPINGS:
        return getattr(local, group_by)(T.submitted_at), Ticket.__table__
    raise FieldError("group_by", f"可选分组：{', '.join(GROUPINGS)}")


def _prepare(session: Session, actor: Actor, date_from: date, date_to: date, group_by: str,
             filters: Filters | None, now: datetime | None) -> _Query:
    if group_by not in GROUPINGS:
        raise FieldError("group_by", f"可选分组：{', '.join(GROUPINGS)}")
    start, end = period_bounds(date_from, date_to)
    local = LocalTime(session.get_bind().dialect.name, get_calendar(session).tz)
    group, from_ = _group_expr(group_by, local)
    where = sa.and_(T.submitted_at >= start, T.submitted_at < end, ticket_visibility(session, actor),
                    filter_condition(session, filters or Filters()))
    return _Query(where, group, from_, local, start, end, now or clock.now())


# --------------------------------------------------------------------------- labels

def _week_label(key: str) -> str:
    monday = date.fromisoformat(key)
    year, week, _ = monday.isocalendar()
    return f"{year}-W{week:02d}"


def group_labels(session: Session, group_by: str, keys: list[Any]) -> dict[Any, str]:
    """Chinese names of the group keys (``None`` =「未交办」for departments,「无」otherwise)."""
    ids = [k for k in keys if k is not None]
    model = {"department": Department, "category": Category, "grid": Grid, "region": Region}.get(group_by)
    none_label = "未交办" if group_by == "department" else "无"
    if model is not None or group_by == "officer":
        if group_by == "officer":
            stmt = sa.select(User.id, User.full_name).where(User.id.in_(ids))
        else:
            stmt = sa.select(model.id, model.name).where(model.id.in_(ids))
        names = dict(session.execute(stmt).all()) if ids else {}
        return {k: (names.get(k, str(k)) if k is not None else none_label) for k in keys}
    names = {"service_type": SERVICE_TYPE_LABELS, "channel": CHANNEL_LABELS}.get(group_by, {})
    if group_by == "week":
        return {k: _week_label(k) if k is not None else none_label for k in keys}
    return {k: names.get(k, str(k)) if k is not None else none_label for k in keys}


# --------------------------------------------------------------------------- the summary

def _day_range(session: Session, q: _Query) -> tuple[date, date] | None:
    """The local days the population's milestones can fall on: from the first submission in the
    population to today (tomorrow, for safety at midnight); ``None`` when the population is empty."""
    first = session.execute(sa.select(sa.func.min(T.submitted_at)).select_from(q.from_).where(q.where)).scalar()
    if first is None:
        return None
    if isinstance(first, str):  # SQLite through a bare select: naive UTC text
        first = datetime.fromisoformat(first)
    if first.tzinfo is None:
        first = first.replace(tzinfo=UTC)
    tz = office_zone()
    lo = first.astimezone(tz).date()
    # milestones lie before the real clock; ``now`` may be later (a caller's "as of")
    hi = max(q.now.astimezone(tz).date(), clock.now().astimezone(tz).date(), lo) + timedelta(days=1)
    return lo, min(hi, MAX_DATE)


def summary(session: Session, actor: Actor, date_from: date, date_to: date, group_by: str = "department",
            filters: Filters | None = None, now: datetime | None = None,
            exact: bool = False) -> tuple[list[SummaryRow], SummaryRow]:
    """Every SPEC §6 measure per group and in total over the population (see the module docstring).

    Read from the rollup (:mod:`service.stats.rollup`: rows grow with days × groups, not tickets;
    percentiles from histograms within the bound of :func:`rollup.hist_percentile`) when the
    population is expressible on its key — an unlimited reader or a supervisor (visibility by
    grid), any filters — and the installed rollup is current: without filters and for an
    unlimited reader, or for a time grouping of one dimension's values (:func:`_one_dimension`),
    from the per-dimension level (``stats_dim_*``, :func:`rollup.read_dims`), otherwise from
    ``stats_day`` (:func:`rollup.read`); :func:`summary_path` tells which. Otherwise, or with
    ``exact``, from the ticket rows (exact percentiles). ``overdue``: on the per-dimension path
    from the deadline rollup plus today's deadlines counted live (:func:`_overdue_now`), otherwise
    counted live on the tickets.

    Args:
        now: the instant "overdue now" refers to (default: the clock).
        exact: recount the ticket rows (exact percentiles; slower at scale).

    Returns:
        ``(rows, total)``: time groupings in date order, the others by received (descending), then key.

    Raises:
        FieldError (422): unknown ``group_by``, a bad period, an unknown filter value.
    """
    q = _prepare(session, actor, date_from, date_to, group_by, filters, now)
    rolled = None if exact else _summary_rollup(session, actor, q, date_from, date_to, group_by, filters)
    groups, total = rolled if rolled is not None else _summary_raw(session, q)
    labels = group_labels(session, group_by, list(groups))
    out = [_row(key, labels[key], figures) for key, figures in groups.items()]
    if group_by in TIME_GROUPINGS:
        out.sort(key=lambda r: (r.key is None, r.key or ""))
    else:
        out.sort(key=lambda r: (-r.received, r.key is None, str(r.key)))
    return out, _row(None, "合计", total)


#: ``{count name: 0}``: the counts of no tickets.
_EMPTY = {name: 0 for name in COUNTS}
#: ``{duration: (its p50 name, its p90 name)}`` (:data:`PERCENTILES`); all of them in that order.
_PERCENTILE_NAMES = {d: tuple(f"{d}_p{p}" for p, _ in PERCENTILES) for d in DURATIONS}
_ALL_PERCENTILE_NAMES = tuple(name for d in DURATIONS for name in _PERCENTILE_NAMES[d])
assert tuple(DURATIONS) == rollup.ROLLUP_DURATIONS  # the order of DimRead.percentiles' values


def _row(key: Any, label: str, figures: dict[str, Any]) -> SummaryRow:
    """The :class:`SummaryRow` of a group's figures by field name: every count of :data:`COUNTS`
    and the percentiles known (missing ones are ``None``), with its rates (:func:`metrics.rates_of`)."""
    return SummaryRow(key, label, **figures, **metrics.rates_of(figures))


def _put_percentiles(figures: dict[str, Any], duration: str | None, values: Any) -> None:
    """Store the :data:`PERCENTILES` of a duration (working hours, in that order; ``values`` None
    when there are none) into ``figures``, rounded to 0.01 h: the one rounding of every path.
    ``duration`` None: ``values`` holds those of every duration of :data:`DURATIONS` in turn."""
    if values is None:
        return
    names = _ALL_PERCENTILE_NAMES if duration is None else _PERCENTILE_NAMES[duration]
    figures.update(zip(names, [None if v is None else round(float(v), 2) for v in values], strict=True))


def _summary_raw(session: Session, q: _Query) -> tuple[dict[Any, dict[str, Any]], dict[str, Any]]:
    """``({group key: figures}, total figures)`` (as :func:`_row` takes them) recounted on the
    ticket rows."""
    counts = [metrics.count_sql(name, q.now).label(name) for name in COUNTS]
    grp = q.group.label("grp")
    span = _day_range(session, q)
    if q.local.pg and span is not None:
        # PostgreSQL: counts and percentiles of every group and the total in one scan
        return _summary_pg(session, q, counts, span)
    grouped = session.execute(sa.select(grp, *counts).select_from(q.from_).where(q.where).group_by(grp)).all()
    rows = {r.grp: {n: int(getattr(r, n)) for n in COUNTS} for r in grouped}
    total = {n: sum(r[n] for r in rows.values()) for n in COUNTS}
    if span is not None:
        _durations_sqlite(session, q, rows, total, span)
    return rows, total


def _rollup_population(session: Session, actor: Actor, filters: Filters):
    """The population's condition on the rollup's key columns (a function of
    :func:`rollup.table_columns`), or ``None`` when the reader's visibility is not a condition on
    the key (departments: co-handling; officers: their enterprises; enterprises)."""
    scope = scope_of(session, actor)
    if scope.unlimited:
        grids = None
    elif actor.role == "supervisor":
        grids = scope.grid_ids() or [-1]
    else:
        return None
    filters_of = filters

    def where(columns: Any) -> sa.ColumnElement[bool]:
        visible = sa.true() if grids is None else columns.grid_id.in_(grids)
        return sa.and_(visible, filter_condition(session, filters_of, columns))
    return where


def _one_dimension(session: Session, actor: Actor, filters: Filters) -> tuple[str, list[str]] | None:
    """The population as the values of one rollup dimension, ``(dim, keys)`` (keys as the
    per-dimension tables store them: ids and names as text), or ``None`` when it is not: an
    unlimited reader with exactly one filter (a region: its subtree's grids; a category: its
    subtree), or a region's supervisor without a filter (its grids)."""
    scope = scope_of(session, actor)
    if not scope.unlimited:
        if actor.role != "supervisor" or filters != Filters():
            return None
        return "grid", [str(g) for g in scope.grid_ids()]
    given = {name: value for name, value in asdict(filters).items() if value is not None}
    if len(given) != 1:
        return None
    (name, value), = given.items()
    if name == "region_id":
        regions = _subtree(session, Region, value, "region_id", "区域")
        return "grid", [str(g) for g in session.scalars(sa.select(Grid.id).where(Grid.region_id.in_(regions)))]
    if name == "category_id":
        return "category", [str(c) for c in _subtree(session, Category, value, "category_id", "类别")]
    dim = {column: dim for dim, column in rollup.DIMS}[name]  # the filters are named as the key's columns
    return dim, [str(value)]


def _choose_path(session: Session, actor: Actor, date_from: date, date_to: date, group_by: str,
                 filters: Filters | None, exact: bool) -> tuple[str, Any]:
    """``(path, where)``: "dim" (the per-dimension level: no filter and unlimited visibility, or
    a time grouping of one dimension's values, ``where`` = :func:`_one_dimension`'s ``(dim,
    keys)``), "fine" (``stats_day`` narrowed by ``where``) or "exact" (the ticket rows)."""
    if exact:
        return "exact", None
    filters = filters or Filters()
    where = _rollup_population(session, actor, filters)
    if where is None:
        return "exact", None
    if group_by in ("week", "month", "quarter") and not (date_from >= rollup.FIRST_DAY and date_to <= rollup.LAST_DAY):
        return "exact", None  # the rollup's calendar table names the weeks and months of 1990-2100 only
    if not rollup.is_current(session):
        return "exact", None  # not installed, or the calendar changed and the fold has not applied it yet
    if filters == Filters() and scope_of(session, actor).unlimited:
        return "dim", None
    if group_by in TIME_GROUPINGS:
        only = _one_dimension(session, actor, filters)
        if only is not None:  # the dimension's own rows, grouped by time: no key combination read
            return "dim", only
    return "fine", where


def summary_path(session: Session, actor: Actor, date_from: date, date_to: date, group_by: str = "department",
                 filters: Filters | None = None, exact: bool = False) -> str:
    """Which source :func:`summary` reads for these arguments: "dim" (``stats_dim_day``: no
    filter and unlimited visibility), "fine" (``stats_day`` narrowed to the population) or
    "exact" (the ticket rows). For tests and diagnostics."""
    return _choose_path(session, actor, date_from, date_to, group_by, filters, exact)[0]


def _summary_rollup(session: Session, actor: Actor, q: _Query, date_from: date, date_to: date, group_by: str,
                    filters: Filters | None) -> tuple[dict[Any, dict[str, Any]], dict[str, Any]] | None:
    """``({group key: figures}, total figures)`` (as :func:`_row` takes them) read from the rollup,
    or ``None`` when :func:`_choose_path` says the ticket rows must be recounted."""
    path, where = _choose_path(session, actor, date_from, date_to, group_by, filters, False)
    if path == "exact":
        return None
    dn_from, dn_to = (date_from - EPOCH).days, (date_to - EPOCH).days
    if path == "dim":
        read = rollup.read_dims(session, group_by, dn_from, dn_to, only=where)
    else:
        read = rollup.DimRead(*rollup.read(session, group_by, dn_from, dn_to, where))
    dim = path == "dim"
    overdue = _overdue_now(session, q, group_by, (dn_from, dn_to) if dim else None, only=where if dim else None)
    groups = read.counts  # filled in place: the read is this call's own
    everything: dict[str, dict[int, int]] = {d: {} for d in DURATIONS}
    no_hists: dict[str, dict[int, int]] = {}
    for key, figures in groups.items():
        figures["overdue"] = int(overdue.get(key, 0))
        kept = read.percentiles.get(key)
        if kept is not None:  # the day's percentiles as the fold stored them (the same estimator)
            _put_percentiles(figures, None, kept)
            continue
        per = read.hists.get(key, no_hists)
        for d, hist in per.items():
            if read.total_hist is None:
                into = everything[d]
                for b, n in hist.items():
                    into[b] = into.get(b, 0) + n
            _put_percentiles(figures, d, rollup.hist_percentiles(hist, FRACTIONS))
    names = tuple(COUNTS)
    columns = zip(*map(itemgetter(*names), groups.values()), strict=True)  # one tuple of the groups' figures per count
    total = {name: sum(column) for name, column in zip(names, columns, strict=True)} if groups else dict(_EMPTY)
    for d, hist in (read.total_hist or everything).items():
        _put_percentiles(total, d, rollup.hist_percentiles(hist, FRACTIONS))
    return groups, total


def _time_key(group_by: str, day: date) -> str:
    """The key of a time grouping (as :meth:`LocalTime.day`/``week``/``month``/``quarter`` give it)
    of a local day."""
    if group_by == "day":
        return day.isoformat()
    if group_by == "week":
        return (day - timedelta(days=day.weekday())).isoformat()
    if group_by == "month":
        return f"{day.year:04d}-{day.month:02d}"
    return f"{day.year:04d}-Q{(day.month + 2) // 3}"


def _overdue_now(session: Session, q: _Query, group_by: str,
                 whole: tuple[int, int] | None = None, only: tuple[str, list[str]] | None = None) -> dict[Any, int]:
    """``{group key: overdue now}`` over the population (:data:`metrics.COUNTS` ``overdue``:
    ``sla.deadlines.overdue_clause``).

    ``whole``: the period's local day numbers ``(from, to)`` on the per-dimension path (everything,
    or ``only`` one dimension's values): then the deadlines due before today come from the deadline rollup
    (:func:`rollup.read_due`: rows grow with days or months × the dimension's values, not with the
    running tickets) and only the tickets due today by ``now`` are counted live (an index range of
    ``ix_ticket_running_due_at``); ``only``: the population is these values of one dimension
    (:func:`_one_dimension`). Otherwise, or when the deadline rollup cannot answer (SQLite,
    an "as of" before its horizon), everything is counted live on the running tickets."""
    cond = COUNTS["overdue"].predicate(q.now)
    if whole is not None:
        stored = rollup.read_due(session, group_by, whole[0], whole[1], q.now, only=only)
        if stored is not None:
            tz = get_calendar(session).tz
            midnight = datetime.combine(q.now.astimezone(tz).date(), time.min, tzinfo=tz).astimezone(UTC)
            for key, n in _count_overdue(session, q, group_by, sa.and_(cond, T.due_at >= midnight)).items():
                stored[key] = stored.get(key, 0) + n
            return stored
    return _count_overdue(session, q, group_by, cond)


def _count_overdue(session: Session, q: _Query, group_by: str, cond: sa.ColumnElement[bool]) -> dict[Any, int]:
    """``{group key: tickets}`` of the population matching ``cond``, counted on the ticket rows
    (an index-only scan of the running deadlines). Time groupings are counted per local day number
    (arithmetic on the timestamp, not a formatted string per row) and summed per week/month/quarter
    here."""
    if group_by not in TIME_GROUPINGS:
        grp = q.group.label("grp")
        return dict(session.execute(sa.select(grp, sa.func.count()).select_from(q.from_)
                                    .where(q.where, cond).group_by(grp)).all())
    dn = q.local.day_number(T.submitted_at).label("dn")
    out: dict[Any, int] = {}
    for day_number, n in session.execute(sa.select(dn, sa.func.count()).select_from(q.from_)
                                         .where(q.where, cond).group_by(dn)).all():
        key = _time_key(group_by, EPOCH + timedelta(days=int(day_number)))
        out[key] = out.get(key, 0) + int(n)
    return out



def _summary_pg(session: Session, q: _Query, counts: list, span: tuple[date, date]):
    wc = WorkingClockSQL(get_calendar(session), q.local, *span)
    # percentile_cont(ARRAY[0.5, 0.9]): both percentiles of a duration from one sort
    fractions = sa.literal_column("ARRAY[" + ", ".join(map(str, FRACTIONS)) + "]::float8[]")
    aggs = [sa.type_coerce(sa.func.percentile_cont(fractions).within_group(wc.hours(DURATIONS[d])),
                           ARRAY(sa.Float)).label(d) for d in DURATIONS]
    stmt = (sa.select(q.group.label("grp"), sa.func.grouping(q.group).label("is_total"), *counts, *aggs)
            .select_from(q.from_).where(q.where)
            .group_by(sa.func.grouping_sets(sa.tuple_(q.group), sa.tuple_())))
    rows: dict[Any, dict[str, Any]] = {}
    total: dict[str, Any] = dict(_EMPTY)
    for r in session.execute(stmt).all():
        figures = {n: int(getattr(r, n)) for n in COUNTS}
        for d in DURATIONS:
            _put_percentiles(figures, d, getattr(r, d))
        if r.is_total:
            total = figures
        else:
            rows[r.grp] = figures
    return rows, total


def _durations_sqlite(session: Session, q: _Query, rows: dict[Any, dict[str, Any]], total: dict[str, Any],
                      span: tuple[date, date]) -> None:
    """Fill the ``hours_*_p50/p90`` figures (working hours) of every group and the total."""
    wc = WorkingClockSQL(get_calendar(session), q.local, *span)
    from_ = q.from_
    for column in wc.columns():
        from_ = wc.join(from_, column)
    hours = {d.name: wc.hours(d) for d in DURATIONS.values()}
    grp = q.group.label("grp")
    # SQLite: no percentile aggregate; the same per-row working hours, interpolated in Python
    stmt = sa.select(grp, *(hours[d].label(d) for d in DURATIONS)).select_from(from_).where(
        q.where, sa.or_(*(metrics.duration_condition(d) for d in DURATIONS.values())))
    values: dict[Any, dict[str, list[float]]] = {}
    everything: dict[str, list[float]] = {d: [] for d in DURATIONS}
    for r in session.execute(stmt).all():
        per = values.setdefault(r.grp, {d: [] for d in DURATIONS})
        for d in DURATIONS:
            v = getattr(r, d)
            if v is not None:
                per[d].append(float(v))
                everything[d].append(float(v))
    for target, per in [*((rows.get(key), per) for key, per in values.items()), (total, everything)]:
        if target is None:
            continue
        for d in DURATIONS:
            _put_percentiles(target, d, [metrics.percentile(per[d], frac) for frac in FRACTIONS])


# --------------------------------------------------------------------------- drill-down

DRILLABLE = (*COUNTS, *DURATIONS)


def parse_group_key(group_by: str, key: str | None) -> Any:
    """The group key as given in a URL (``"none"`` = the group without a value).

    Raises:
        FieldError (422, ``group``): an id grouping with a non-integer key.
    """
    if key is None or key == "none":
        return None
    if group_by in ("department", "region", "grid", "category", "officer"):
        try:
            return int(key)
        except ValueError as exc:
            raise FieldError("group", "分组键须为整数编号或 none") from exc
    return key


def drill_condition(session: Session, actor: Actor, date_from: date, date_to: date, measure: str,
                    group_by: str | None = None, group: Any = None, filters: Filters | None = None,
                    now: datetime | None = None):
    """``(from_clause, where)`` selecting exactly the tickets behind one figure of :func:`summary`:
    the count ``measure`` (or the rows of the duration ``measure``) of the group ``group`` of
    ``group_by`` (no ``group_by``: the total).

    Raises:
        FieldError (422): unknown ``measure`` or ``group_by``, a bad period or filter.
    """
    if measure not in DRILLABLE:
        raise FieldError("measure", f"可选：{', '.join(DRILLABLE)}")
    q = _prepare(session, actor, date_from, date_to, group_by or "department", filters, now)
    cond = (COUNTS[measure].predicate(q.now) if measure in COUNTS
            else metrics.duration_condition(DURATIONS[measure]))
    where = sa.and_(q.where, cond)
    if group_by is not None:
        where = sa.and_(where, q.group.is_(None) if group is None else q.group == group)
    return q.from_, where


def drill(session: Session, actor: Actor, date_from: date, date_to: date, measure: str,
          group_by: str | None = None, group: Any = None, filters: Filters | None = None,
          now: datetime | None = None, limit: int = 100, offset: int = 0) -> tuple[int, list[Ticket]]:
    """``(count, tickets[offset:offset+limit])`` behind one figure (see :func:`drill_condition`),
    newest submission first. ``count`` is the figure itself: for a count measure read from
    :func:`summary` (the rollup where it applies: no ``count(*)`` over millions of tickets), for a
    duration the rows it is taken over, counted on the tickets."""
    now = now or clock.now()  # one instant for the figure and the list ("overdue now")
    from_, where = drill_condition(session, actor, date_from, date_to, measure, group_by, group, filters, now)
    if measure in COUNTS:
        rows, total = summary(session, actor, date_from, date_to, group_by or "department", filters, now)
        row = total if group_by is None else next((r for r in rows if r.key == group), None)
        count = getattr(row, measure) if row is not None else 0
    else:
        count = session.execute(sa.select(sa.func.count()).select_from(from_).where(where)).scalar_one()
    ids = sa.select(T.id).select_from(from_).where(where).order_by(T.submitted_at.desc(), T.id.desc())
    tickets = list(session.scalars(sa.select(Ticket).where(Ticket.id.in_(ids.limit(limit).offset(offset).scalar_subquery()))
                                   .order_by(Ticket.submitted_at.desc(), Ticket.id.desc())).all())
    return int(count), tickets


# --------------------------------------------------------------------------- rankings

@dataclass
class RankingRow:
    """One department of a ranking: its summary figures, score (0-100) and rank (``None``: no
    tickets in the period, listed last)."""

    rank: int | None
    department_id: int
    department: str
    code: str
    score: float | None
    figures: SummaryRow = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        figures = self.figures.as_dict()
        figures.pop("key"), figures.pop("label")
        return {"rank": self.rank, "department_id": self.department_id, "department": self.department,
                "code": self.code, "score": self.score, **figures}


def score(rates: dict[str, float | None], weights: dict[str, float]) -> float | None:
    """The weighted score 100 × Σ wᵢ·vᵢ / Σ wᵢ over the rates available (``None`` skipped), where vᵢ
    is the rate, or 1 − rate for rates where lower is better (reopen, return); ``None`` when no
    weighted rate is available.

    Raises:
        FieldError (422, ``weights``): a weight names no rate of SPEC §6.
    """
    num = den = 0.0
    for name, w in weights.items():
        if name not in RATES:
            raise FieldError("weights", f"未知指标 {name}；可选：{', '.join(RATES)}")
        v = rates.get(name)
        if v is None or w <= 0:
            continue
        num += w * ((1 - v) if RATES[name].lower_is_better else v)
        den += w
    return round(100 * num / den, 2) if den else None


def ranking_weights() -> dict[str, float]:
    """The configured weights of the ranking score (``QIFU_CADENCE_RANKING_WEIGHTS``)."""
    return dict(get_settings().cadence_ranking_weights)


def parse_period(period: str) -> tuple[str, date, date]:
    """``("month"|"quarter", first day, last day)`` of ``2026-05`` or ``2026-Q2``.

    Raises:
        FieldError (422, ``period``): neither form.
    """
    try:
        year_s, part = period.split("-")
        year = int(year_s)
        if part.upper().startswith("Q"):
            q = int(part[1:])
            if not 1 <= q <= 4:
                raise ValueError(period)
            first = date(year, 3 * q - 2, 1)
            last = date(year, 12, 31) if q == 4 else date(year, 3 * q + 1, 1) - timedelta(days=1)
            return "quarter", first, last
        m = int(part)
        first = date(year, m, 1)
        last = date(year, 12, 31) if m == 12 else date(year, m + 1, 1) - timedelta(days=1)
        return "month", first, last
    except (ValueError, OverflowError) as exc:
        raise FieldError("period", "周期须为 YYYY-MM（月）或 YYYY-Qn（季度）") from exc


def department_ranking(session: Session, actor: Actor, date_from: date, date_to: date,
                       weights: dict[str, float] | None = None, filters: Filters | None = None,
                       now: datetime | None = None, exact: bool = False) -> list[RankingRow]:
    """The department league table (晾晒) over tickets submitted in ``[date_from, date_to]``: the
    :func:`summary` by department, scored with :func:`score` (weights default to the configured
    ones), ranked by score (ties: department code); departments without tickets last, unranked.
    Used for the monthly and the quarterly ranking alike (SPEC §5, §6); ``exact`` as in
    :func:`summary`."""
    weights = ranking_weights() if weights is None else weights
    rows, _total = summary(session, actor, date_from, date_to, "department", filters, now, exact=exact)
    by_id = {r.key: r for r in rows}
    out = []
    for dept in session.execute(sa.select(Department).order_by(Department.code)).scalars():
        figures = by_id.get(dept.id) or SummaryRow(key=dept.id, label=dept.name)
        rates = {name: getattr(figures, name) for name in RATES}
        s = score(rates, weights) if figures.received else None
        out.append(RankingRow(None, dept.id, dept.name, dept.code, s, figures))
    out.sort(key=lambda r: (r.score is None, -(r.score or 0), r.code))
    for i, r in enumerate(out, 1):
        r.rank = i if r.score is not None else None
    return out

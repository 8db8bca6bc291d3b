"""Summary statistics for supervisors (SPEC §6), computed set-based in SQL.

Definitions (SPEC §6), over tickets *submitted* in the period ``[date_from, date_to]`` (calendar
dates in Asia/Shanghai, both inclusive):

- ``received``: tickets submitted;
- ``accepted``: received minus rejected and merged (a merged ticket is ``rejected`` with reason
  ``duplicate``), i.e. every ticket not in status ``rejected``;
- ``answered``: answered directly by an officer (consultations, ``answered_at`` set);
- ``closed``: tickets in status ``closed`` now;
- ``closure_rate`` (办结率) = closed / accepted;
- ``satisfaction_rate`` (满意率) = (satisfied + basically_satisfied) / rated, where rated = tickets
  whose rating is satisfied, basically_satisfied or dissatisfied (``none`` = closed without
  feedback, not rated);
- ``median_hours_to_reply``: median of (first reply − submission) in hours of elapsed time, over
  tickets with a first reply. (Working-hour figures come with the working calendar, issue #3.)

Rates are ``None`` when their denominator is 0. Grouping: ``department`` (lead department; tickets
not yet dispatched fall in the group ``None``/「未交办」), ``category``, ``service_type``,
``channel``, ``grid`` or ``month`` (of submission, Asia/Shanghai).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from service.auth.actor import Actor
from service.categories.models import Category
from service.clock import office_zone
from service.config import get_settings
from service.departments.models import Department
from service.errors import FieldError
from service.regions.models import Grid
from service.tickets.models import Ticket
from service.tickets.visibility import ticket_visibility

GROUPINGS = ("department", "category", "service_type", "channel", "grid", "month")
SATISFIED = ("satisfied", "basically_satisfied")
RATED = ("satisfied", "basically_satisfied", "dissatisfied")


@dataclass
class SummaryRow:
    """One group of the summary. ``key`` is the group id/value (``None`` = no value), ``label`` its
    Chinese name; counts are ticket counts; rates are fractions in [0, 1]; hours are elapsed hours."""

    key: Any
    label: str
    received: int
    accepted: int
    answered: int
    closed: int
    rated: int
    satisfied: int
    closure_rate: float | None
    satisfaction_rate: float | None
    median_hours_to_reply: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def period_bounds(date_from: date, date_to: date) -> tuple[datetime, datetime]:
    """``[date_from 00:00, date_to+1 00:00)`` in Asia/Shanghai as aware datetimes.

    Raises:
        FieldError (422, ``date_to``): the period ends before it starts.
    """
    if date_to < date_from:
        raise FieldError("date_to", "结束日期不能早于开始日期")
    start = datetime.combine(date_from, time.min, tzinfo=office_zone())
    end = datetime.combine(date_to + timedelta(days=1), time.min, tzinfo=office_zone())
    return start, end


def _group_expr(session: Session, group_by: str):
    if group_by == "department":
        return Ticket.lead_department_id
    if group_by == "category":
        return Ticket.category_id
    if group_by in ("service_type", "channel"):
        return getattr(Ticket, group_by)
    if group_by == "grid":
        return Ticket.grid_id
    if group_by == "month":
        if session.get_bind().dialect.name == "postgresql":
            return sa.func.to_char(sa.func.timezone(get_settings().timezone, Ticket.submitted_at), "YYYY-MM")
        return sa.func.strftime("%Y-%m", Ticket.submitted_at, "+8 hours")
    raise FieldError("group_by", f"可选分组：{', '.join(GROUPINGS)}")


def _labels(session: Session, group_by: str, keys: list[Any]) -> dict[Any, str]:
    ids = [k for k in keys if k is not None]
    model = {"department": Department, "category": Category, "grid": Grid}.get(group_by)
    if model is not None:
        names = dict(session.execute(sa.select(model.id, model.name).where(model.id.in_(ids))).all()) if ids else {}
        none_label = "未交办" if group_by == "department" else "无"
        return {k: names.get(k, str(k)) if k is not None else none_label for k in keys}
    return {k: str(k) if k is not None else "无" for k in keys}


def _reply_seconds(session: Session):
    if session.get_bind().dialect.name == "postgresql":
        return sa.func.extract("epoch", Ticket.first_replied_at - Ticket.submitted_at)
    return (sa.func.julianday(Ticket.first_replied_at) - sa.func.julianday(Ticket.submitted_at)) * 86400.0


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def summary(
    session: Session, actor: Actor, date_from: date, date_to: date, group_by: str = "department"
) -> tuple[list[SummaryRow], SummaryRow]:
    """Compute the summary per group and in total over the tickets ``actor`` may see.

    Returns ``(rows sorted by received desc, total)``.

    Raises:
        FieldError (422): unknown ``group_by`` or an inverted period.
    """
    start, end = period_bounds(date_from, date_to)
    group = _group_expr(session, group_by).label("grp")
    where = sa.and_(Ticket.submitted_at >= start, Ticket.submitted_at < end, ticket_visibility(session, actor))

    def count_if(cond):
        return sa.func.coalesce(sa.func.sum(sa.case((cond, 1), else_=0)), 0)

    counts = [
        sa.func.count().label("received"),
        count_if(Ticket.status != "rejected").label("accepted"),
        count_if(Ticket.answered_at.is_not(None)).label("answered"),
        count_if(Ticket.status == "closed").label("closed"),
        count_if(Ticket.rating.in_(RATED)).label("rated"),
        count_if(Ticket.rating.in_(SATISFIED)).label("satisfied"),
    ]
    grouped = session.execute(sa.select(group, *counts).where(where).group_by(group)).all()
    totals = session.execute(sa.select(*counts).where(where)).one()

    # median time to first reply: PostgreSQL computes it; SQLite has no percentile aggregate,
    # so it returns only the durations (one number per replied ticket) and Python takes the median.
    secs = _reply_seconds(session)
    replied = sa.and_(where, Ticket.first_replied_at.is_not(None))
    if session.get_bind().dialect.name == "postgresql":
        pct = sa.func.percentile_cont(0.5).within_group(secs)
        medians = dict(session.execute(sa.select(group, pct).where(replied).group_by(group)).all())
        total_median = session.execute(sa.select(pct).where(replied)).scalar()
    else:
        by_group: dict[Any, list[float]] = {}
        for key, value in session.execute(sa.select(group, secs).where(replied)).all():
            by_group.setdefault(key, []).append(float(value))
        medians = {k: statistics.median(v) for k, v in by_group.items()}
        everything = [x for v in by_group.values() for x in v]
        total_median = statistics.median(everything) if everything else None

    labels = _labels(session, group_by, [r.grp for r in grouped])

    def make(key, label, r, median) -> SummaryRow:
        return SummaryRow(
            key=key, label=label, received=int(r.received), accepted=int(r.accepted),
            answered=int(r.answered), closed=int(r.closed), rated=int(r.rated), satisfied=int(r.satisfied),
            closure_rate=_rate(int(r.closed), int(r.accepted)),
            satisfaction_rate=_rate(int(r.satisfied), int(r.rated)),
            median_hours_to_reply=round(float(median) / 3600, 2) if median is not None else None,
        )

    rows = [make(r.grp, labels[r.grp], r, medians.get(r.grp)) for r in grouped]
    rows.sort(key=lambda row: (-row.received, str(row.key)))
    return rows, make(None, "合计", totals, total_median)

"""Stored cadence reports (SPEC §5, §6): the quarterly department ranking (晾晒), the annual report,
and the monthly list of tickets open over 30 days; downloadable as JSON or Excel (xlsx, openpyxl).

**Quarterly ranking** — per lead department, over the tickets it handled in the quarter: tickets
whose lead department it is and that were submitted, closed or reopened in the quarter (so a ticket
reopened by a follow-up counts in the quarter of the reopening). Rates (fractions in [0, 1], ``None``
when the denominator is 0):

- closure rate 办结率 = closed / handled;
- on-time rate 按期办结率 = closed without a missed deadline (``overdue_count = 0``) / closed;
- response rate 响应率 = claimed within the claim limit (``claimed_at <= claim_by``, or no limit set)
  / handled (all were dispatched);
- satisfaction rate 满意率 = (satisfied + basically satisfied) / rated;
- reopen rate 重办率 = tickets reopened in the quarter (a ``reopen`` event) / handled;
- return rate 退单率 = returns by the department / dispatches to it (events in the quarter).

Score = 100 × Σ wᵢ·vᵢ / Σ wᵢ over the available rates, where vᵢ is the rate, or 1 − rate for the
reopen and return rates (lower is better); weights ``ranking_weights``. Departments without tickets
are listed last with no score.
"""

from __future__ import annotations

import io
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from service import clock
from service.auth.actor import Actor
from service.cadences.common import local_start
from service.cadences.models import AgendaItem, CadenceReport, CadenceSession, FollowUp, Inquiry, ReturnVisit
from service.categories.models import Category
from service.common.enums import OPEN_STATUSES
from service.config import get_settings
from service.db import insert_unless_duplicate
from service.departments.models import Department
from service.errors import FieldError, NotAllowed, NotFound
from service.tickets.models import Ticket, TicketEvent
from service.tickets.visibility import scope_of

RATE_LABELS = {"closure_rate": "办结率", "on_time_rate": "按期办结率", "response_rate": "响应率",
               "satisfaction_rate": "满意率", "reopen_rate": "重办率", "return_rate": "退单率"}
LOWER_IS_BETTER = ("reopen_rate", "return_rate")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def _sum_if(cond):
    return sa.func.coalesce(sa.func.sum(sa.case((cond, 1), else_=0)), 0)


def score(rates: dict[str, float | None], weights: dict[str, float]) -> float | None:
    """The weighted score (0-100) over the available rates; ``None`` when none is available."""
    num = den = 0.0
    for name, w in weights.items():
        v = rates.get(name)
        if v is None or w <= 0:
            continue
        num += w * ((1 - v) if name in LOWER_IS_BETTER else v)
        den += w
    return round(100 * num / den, 2) if den else None


def department_ranking(session: Session, start: date, end: date) -> list[dict[str, Any]]:
    """Per-department figures and score over ``[start, end)`` (local dates), ranked by score."""
    s, e = local_start(start), local_start(end)
    t = Ticket.__table__
    reopened_in = sa.exists().where(TicketEvent.ticket_id == t.c.id, TicketEvent.action == "reopen",
                                    TicketEvent.created_at >= s, TicketEvent.created_at < e)
    population = sa.and_(t.c.lead_department_id.is_not(None), sa.or_(
        sa.and_(t.c.submitted_at >= s, t.c.submitted_at < e),
        sa.and_(t.c.closed_at >= s, t.c.closed_at < e), reopened_in))
    rows = session.execute(sa.select(
        t.c.lead_department_id.label("dept"), sa.func.count().label("handled"),
        _sum_if(t.c.status == "closed").label("closed"),
        _sum_if(sa.and_(t.c.status == "closed", t.c.overdue_count == 0)).label("on_time"),
        _sum_if(sa.and_(t.c.claimed_at.is_not(None), sa.or_(t.c.claim_by.is_(None), t.c.claimed_at <= t.c.claim_by)))
        .label("responded"),
        _sum_if(t.c.rating.in_(("satisfied", "basically_satisfied", "dissatisfied"))).label("rated"),
        _sum_if(t.c.rating.in_(("satisfied", "basically_satisfied"))).label("satisfied"),
        _sum_if(reopened_in).label("reopened"),
    ).where(population).group_by(t.c.lead_department_id)).all()
    ev = TicketEvent.__table__
    in_q = sa.and_(ev.c.created_at >= s, ev.c.created_at < e)
    dispatch_dept = ev.c.payload["lead_department_id"].as_integer()
    return_dept = ev.c.payload["department_id"].as_integer()
    dispatches = dict(session.execute(sa.select(dispatch_dept, sa.func.count()).where(
        in_q, ev.c.action.in_(("dispatch", "reopen"))).group_by(dispatch_dept)).all())
    returns = dict(session.execute(sa.select(return_dept, sa.func.count()).where(
        in_q, ev.c.action == "return").group_by(return_dept)).all())
    by_dept = {r.dept: r for r in rows}
    weights = get_settings().cadence_ranking_weights
    result = []
    for dept in session.exec(select(Department).order_by(Department.code)).all():
        r = by_dept.get(dept.id)
        handled = int(r.handled) if r else 0
        closed = int(r.closed) if r else 0
        rated = int(r.rated) if r else 0
        n_dispatch, n_return = int(dispatches.get(dept.id, 0)), int(returns.get(dept.id, 0))
        rates = {
            "closure_rate": _rate(closed, handled),
            "on_time_rate": _rate(int(r.on_time) if r else 0, closed),
            "response_rate": _rate(int(r.responded) if r else 0, handled),
            "satisfaction_rate": _rate(int(r.satisfied) if r else 0, rated),
            "reopen_rate": _rate(int(r.reopened) if r else 0, handled),
            "return_rate": _rate(n_return, n_dispatch),
        }
        result.append({"department_id": dept.id, "department": dept.name, "code": dept.code, "handled": handled,
                       "closed": closed, "on_time": int(r.on_time) if r else 0,
                       "responded": int(r.responded) if r else 0, "rated": rated,
                       "satisfied": int(r.satisfied) if r else 0, "reopened": int(r.reopened) if r else 0,
                       "dispatches": n_dispatch, "returns": n_return, **rates, "score": score(rates, weights)})
    result.sort(key=lambda x: (x["score"] is None, -(x["score"] or 0), x["code"]))
    for i, row in enumerate(result, 1):
        row["rank"] = i if row["score"] is not None else None
    return result


def quarterly_ranking(session: Session, quarter_key: str, start: date, end: date) -> dict[str, Any]:
    """The quarterly ranking document (晾晒) for ``quarter_key`` (``2026-Q1``)."""
    return {"period": quarter_key, "from": start.isoformat(), "to": end.isoformat(),
            "generated_at": clock.now().isoformat(), "weights": get_settings().cadence_ranking_weights,
            "departments": department_ranking(session, start, end)}


def annual_report(session: Session, year: int) -> dict[str, Any]:
    """The annual report of ``year``: volumes, rates, top categories, top unresolved issues, and the
    cadences' own figures (inquiries, clinics, follow-ups, return visits)."""
    s, e = local_start(date(year, 1, 1)), local_start(date(year + 1, 1, 1))
    t = Ticket.__table__
    in_year = sa.and_(t.c.submitted_at >= s, t.c.submitted_at < e)
    v = session.execute(sa.select(
        sa.func.count().label("received"), _sum_if(t.c.status != "rejected").label("accepted"),
        _sum_if(t.c.status == "closed").label("closed"),
        _sum_if(sa.and_(t.c.status == "closed", t.c.overdue_count == 0)).label("on_time"),
        _sum_if(t.c.rating.in_(("satisfied", "basically_satisfied", "dissatisfied"))).label("rated"),
        _sum_if(t.c.rating.in_(("satisfied", "basically_satisfied"))).label("satisfied"),
        _sum_if(t.c.reopen_count > 0).label("reopened"), _sum_if(t.c.return_count > 0).label("returned"),
    ).where(in_year)).one()
    by_channel = dict(session.execute(sa.select(t.c.channel, sa.func.count()).where(in_year)
                                      .group_by(t.c.channel)).all())
    by_type = dict(session.execute(sa.select(t.c.service_type, sa.func.count()).where(in_year)
                                   .group_by(t.c.service_type)).all())
    top_categories = [{"category": name, "tickets": n} for name, n in session.execute(
        sa.select(Category.name, sa.func.count()).select_from(t.join(Category.__table__, Category.id == t.c.category_id))
        .where(in_year)
        .group_by(Category.name).order_by(sa.func.count().desc(), Category.name).limit(10)).all()]
    unresolved = [{"number": r.number, "title": r.title, "status": r.status, "reopen_count": r.reopen_count,
                   "submitted_at": r.submitted_at.isoformat()} for r in session.execute(
        sa.select(t.c.number, t.c.title, t.c.status, t.c.reopen_count, t.c.submitted_at)
        .where(t.c.status.in_(OPEN_STATUSES), t.c.submitted_at < e)
        .order_by(t.c.reopen_count.desc(), t.c.escalation_level.desc(), t.c.submitted_at).limit(10)).all()]
    follow = dict(session.execute(sa.select(FollowUp.status, sa.func.count())
                                  .where(FollowUp.asked_at >= s, FollowUp.asked_at < e)
                                  .group_by(FollowUp.status)).all())
    visits = session.execute(sa.select(sa.func.count(), sa.func.avg(ReturnVisit.satisfaction))
                             .where(ReturnVisit.year == year - 1)).one()
    cadences = {
        "inquiries": session.execute(sa.select(sa.func.count()).select_from(Inquiry).where(
            Inquiry.contact_date >= date(year, 1, 1), Inquiry.contact_date < date(year + 1, 1, 1))).scalar_one(),
        "enterprises_contacted": session.execute(sa.select(sa.func.count(sa.distinct(Inquiry.enterprise_id))).where(
            Inquiry.contact_date >= date(year, 1, 1), Inquiry.contact_date < date(year + 1, 1, 1))).scalar_one(),
        "clinics": session.execute(sa.select(sa.func.count()).select_from(CadenceSession).where(
            CadenceSession.kind == "clinic", CadenceSession.session_date >= date(year, 1, 1),
            CadenceSession.session_date < date(year + 1, 1, 1))).scalar_one(),
        "joint_consultations": session.execute(sa.select(sa.func.count()).select_from(CadenceSession).where(
            CadenceSession.kind == "joint", CadenceSession.session_date >= date(year, 1, 1),
            CadenceSession.session_date < date(year + 1, 1, 1))).scalar_one(),
        "agenda_items_resolved": session.execute(sa.select(sa.func.count()).select_from(AgendaItem).join(
            CadenceSession, CadenceSession.id == AgendaItem.session_id).where(
            AgendaItem.outcome == "resolved", CadenceSession.session_date >= date(year, 1, 1),
            CadenceSession.session_date < date(year + 1, 1, 1))).scalar_one(),
        "follow_ups": {k: int(follow.get(k, 0)) for k in ("pending", "solved", "not_solved", "expired")},
        "previous_return_visits": int(visits[0] or 0),
        "previous_return_visit_satisfaction": round(float(visits[1]), 2) if visits[1] is not None else None,
    }
    accepted = int(v.accepted)
    return {
        "year": year, "generated_at": clock.now().isoformat(),
        "volumes": {"received": int(v.received), "accepted": accepted, "closed": int(v.closed),
                    "by_channel": by_channel, "by_service_type": by_type},
        "rates": {"closure_rate": _rate(int(v.closed), accepted), "on_time_rate": _rate(int(v.on_time), int(v.closed)),
                  "satisfaction_rate": _rate(int(v.satisfied), int(v.rated)),
                  "reopen_rate": _rate(int(v.reopened), accepted), "return_rate": _rate(int(v.returned), accepted)},
        "top_categories": top_categories, "top_unresolved": unresolved, "cadences": cadences,
        "departments": department_ranking(session, date(year, 1, 1), date(year + 1, 1, 1)),
    }


def store(session: Session, kind: str, period_key: str, title: str, data: dict[str, Any],
          now: datetime | None = None) -> CadenceReport | None:
    """Insert the report unless ``(kind, period_key)`` exists; returns it, or ``None`` if it did."""
    if session.exec(select(CadenceReport.id).where(CadenceReport.kind == kind,
                                                   CadenceReport.period_key == period_key)).first():
        return None
    return insert_unless_duplicate(session, CadenceReport(kind=kind, period_key=period_key, title=title, data=data,
                                                          created_at=now or clock.now()))


def _require_supervisor(actor: Actor) -> None:
    if actor.role not in ("supervisor", "admin"):
        raise NotAllowed("只有督办人员和管理员可以查看报告")


def list_reports(session: Session, actor: Actor, kind: str | None = None) -> list[CadenceReport]:
    """Stored reports, newest first (supervisors and admins).

    Raises:
        NotAllowed (403): other roles.
    """
    _require_supervisor(actor)
    stmt = select(CadenceReport)
    if kind is not None:
        stmt = stmt.where(CadenceReport.kind == kind)
    return list(session.exec(stmt.order_by(CadenceReport.id.desc())).all())


def get_report(session: Session, actor: Actor, kind: str, period_key: str) -> CadenceReport:
    """One stored report, as the caller may see it: a supervisor limited to a region gets the
    document without the rows that name tickets outside their region (long-open tickets, top
    unresolved issues; :meth:`service.tickets.visibility.Scope.redact`), as a copy that is not
    attached to the session (the stored report is never changed). County-wide figures (volumes,
    rates, the department ranking) are kept: they name no ticket.

    Raises:
        NotAllowed (403): not a supervisor or admin.
        NotFound (404): no such report.
    """
    _require_supervisor(actor)
    row = session.exec(select(CadenceReport).where(CadenceReport.kind == kind,
                                                   CadenceReport.period_key == period_key)).first()
    if row is None:
        raise NotFound(f"报告 {kind}/{period_key} 不存在")
    scope = scope_of(session, actor)
    if scope.unlimited:
        return row
    return CadenceReport(id=row.id, kind=row.kind, period_key=row.period_key, title=row.title,
                         data=scope.redact(row.data), created_at=row.created_at)


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        import json

        return json.dumps(value, ensure_ascii=False)
    return value


def to_xlsx(report: CadenceReport) -> bytes:
    """The report as an Excel workbook: a 概要 sheet with the scalar fields (nested dicts
    flattened to ``a.b``), and one sheet per list of rows (columns = the rows' keys)."""
    from openpyxl import Workbook

    wb = Workbook()
    summary = wb.active
    summary.title = "概要"
    summary.append(["报告", report.title])
    summary.append(["周期", report.period_key])

    def flatten(prefix: str, value: Any):
        if isinstance(value, dict):
            for k, v in value.items():
                yield from flatten(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, list):
            tables.append((prefix, value))
        else:
            yield prefix, value

    tables: list[tuple[str, list]] = []
    for key, value in flatten("", report.data):
        summary.append([key, _cell(value)])
    for name, rows in tables:
        ws = wb.create_sheet(title=name.replace(".", "_")[:31] or "rows")
        dict_rows = [r for r in rows if isinstance(r, dict)]
        if not dict_rows:
            for r in rows:
                ws.append([_cell(r)])
            continue
        columns = list(dict.fromkeys(k for r in dict_rows for k in r))
        ws.append([RATE_LABELS.get(c, c) for c in columns])
        for r in dict_rows:
            ws.append([_cell(r.get(c)) for c in columns])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def check_kind(kind: str) -> str:
    """Raises FieldError (422, ``kind``) for an unknown report kind."""
    from service.cadences.models import REPORT_KINDS

    if kind not in REPORT_KINDS:
        raise FieldError("kind", f"报告类型只能是 {', '.join(REPORT_KINDS)}")
    return kind

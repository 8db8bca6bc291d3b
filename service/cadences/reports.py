"""Stored cadence reports (SPEC §5, §6): the monthly and quarterly department rankings (晾晒), the
annual report, and the monthly list of tickets open over 30 days; downloadable as JSON or Excel
(xlsx, openpyxl).

**Monthly and quarterly rankings** — the department league table of
:func:`service.stats.service.department_ranking` over the tickets submitted in the month (stored by
the monthly cadence for the month before, key ``2026-05``) or the quarter (stored by the quarterly
cadence, key ``2026-Q1``) (SPEC §6: periods are by submission date): the same
measures, rates and weighted score (``ranking_weights``) as ``GET /api/v1/stats/ranking`` and the
summary, defined once in service/stats/metrics.py and docs/statistics.md. Departments without tickets
are listed last with no score. The annual report's volumes and rates are the summary's total.
"""

from __future__ import annotations

import io
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from service import clock
from service.auth.actor import Actor
from service.cadences.common import local_start
from service.cadences.models import AgendaItem, CadenceReport, CadenceSession, FollowUp, Inquiry, ReturnVisit
from service.categories.models import Category
from service.common.enums import OPEN_STATUSES
from service.db import insert_unless_duplicate
from service.errors import FieldError, NotAllowed, NotFound
from service.stats import service as stats_service
from service.stats.metrics import RATES
from service.stats.service import column_label
from service.tickets.models import Ticket
from service.tickets.visibility import scope_of

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def department_ranking(session: Session, start: date, end: date) -> list[dict[str, Any]]:
    """Per-department figures and score over tickets submitted in ``[start, end)`` (local dates),
    ranked by score: :func:`service.stats.service.department_ranking` as dicts."""
    rows = stats_service.department_ranking(session, Actor.system(), start, end - timedelta(days=1))
    return [r.as_dict() for r in rows]


def ranking_document(session: Session, period_key: str, start: date, end: date) -> dict[str, Any]:
    """The department ranking document of the month ``2026-05`` or the quarter ``2026-Q1`` over
    tickets submitted in ``[start, end)`` (local dates): the same figures and weighted score as
    ``GET /api/v1/stats/ranking`` (SPEC §5 晾晒, §6)."""
    return {"period": period_key, "from": start.isoformat(), "to": end.isoformat(),
            "generated_at": clock.now().isoformat(), "weights": stats_service.ranking_weights(),
            "departments": department_ranking(session, start, end)}


def annual_report(session: Session, year: int) -> dict[str, Any]:
    """The annual report of ``year``: volumes, rates, top categories, top unresolved issues, and the
    cadences' own figures (inquiries, clinics, follow-ups, return visits)."""
    s, e = local_start(date(year, 1, 1)), local_start(date(year + 1, 1, 1))
    t = Ticket.__table__
    in_year = sa.and_(t.c.submitted_at >= s, t.c.submitted_at < e)
    _groups, v = stats_service.summary(session, Actor.system(), date(year, 1, 1), date(year, 12, 31), "month")
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
    return {
        "year": year, "generated_at": clock.now().isoformat(),
        "volumes": {"received": v.received, "accepted": v.accepted, "closed": v.closed,
                    "by_channel": by_channel, "by_service_type": by_type},
        "rates": {name: getattr(v, name) for name in RATES},
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
        ws.append([column_label(c) for c in columns])
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

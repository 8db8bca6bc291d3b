"""Annual return visit (每年一回诊, SPEC §5).

On the first working day of the year every enterprise served in the past year (a ticket submitted
or an inquiry logged in that year, Asia/Shanghai) gets a return-visit survey: overall satisfaction
1-5, what to improve, open problems (each becomes a ticket: channel ``web`` when the enterprise
answers itself, ``inquiry`` when its officer records the answer after a visit or call).
Unanswered surveys expire like follow-ups.
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Session, select

from service import clock
from service.auth.actor import Actor
from service.cadences import schemas
from service.cadences.common import (
    add_working_days,
    end_of_working_day,
    local_start,
    notify_from_select,
    raise_problems,
    run_instant,
)
from service.cadences.models import Inquiry, ReturnVisit
from service.calendar.service import get_calendar
from service.config import get_settings
from service.enterprises.models import Enterprise
from service.errors import Conflict, NotAllowed, NotFound
from service.tickets.models import Ticket
from service.tickets.visibility import enterprise_visibility
from service.users.models import User


def create_annual(session: Session, year: int, run_date: date, now: datetime | None = None) -> dict:
    """Create the return visits for the enterprises served in ``year`` (one ``INSERT ... SELECT``)
    and notify their users and officers. Returns ``{"return_visits": n, "notified": n}``."""
    now = now or clock.now()
    cal = get_calendar(session)
    expires = end_of_working_day(cal, add_working_days(cal, run_date, get_settings().cadence_follow_up_expiry_working_days))
    start, end = local_start(date(year, 1, 1)), local_start(date(year + 1, 1, 1))
    r, e = ReturnVisit.__table__, Enterprise.__table__
    served = sa.or_(
        sa.exists().where(Ticket.enterprise_id == e.c.id, Ticket.submitted_at >= start, Ticket.submitted_at < end),
        sa.exists().where(Inquiry.enterprise_id == e.c.id, Inquiry.contact_date >= date(year, 1, 1),
                          Inquiry.contact_date < date(year + 1, 1, 1)))
    before = session.execute(sa.select(sa.func.coalesce(sa.func.max(r.c.id), 0))).scalar_one()
    asked_at = run_instant("annual", run_date, now)  # a back-dated run: its own instant, not now
    sel = sa.select(e.c.id, sa.literal(year), sa.literal("pending"), sa.literal(asked_at, type_=r.c.asked_at.type),
                    sa.literal(expires, type_=r.c.expires_at.type)).where(
        served, ~sa.exists().where(r.c.enterprise_id == e.c.id, r.c.year == year))
    created = len(session.connection().execute(sa.insert(r).from_select(
        ["enterprise_id", "year", "status", "asked_at", "expires_at"], sel).returning(r.c.id)).all())
    u = User.__table__
    title = sa.literal(f"{year} 年度回访：请评价我们的服务")
    mine = sa.and_(r.c.year == year, r.c.id > before)
    to_users = sa.select(u.c.id, sa.null(), title, sa.literal("请对一年来的服务打分（1-5），并提出改进意见和未解决的问题")) \
        .select_from(r.join(u, sa.and_(u.c.enterprise_id == r.c.enterprise_id, u.c.role == "enterprise", u.c.is_active))) \
        .where(mine)
    to_officers = sa.select(e.c.officer_id, sa.null(), title, sa.literal("企业未在线答复的，请走访或电话回访后代为登记")) \
        .select_from(r.join(e, e.c.id == r.c.enterprise_id)).where(mine, e.c.officer_id.is_not(None))
    notified = notify_from_select(session, to_users, "follow_up", now) + \
        notify_from_select(session, to_officers, "follow_up", now)
    return {"return_visits": created, "notified": notified}


def _scope(session: Session, actor: Actor):
    if actor.role in ("department",):
        raise NotAllowed("承办单位不参与年度回访")
    return ReturnVisit.enterprise_id.in_(select(Enterprise.id).where(enterprise_visibility(session, actor)))


def list_return_visits(session: Session, actor: Actor, *, year: int | None = None, status: str | None = None,
                       limit: int = 100) -> list[ReturnVisit]:
    """Return visits of the enterprises the caller may see, newest first.

    Raises:
        NotAllowed (403): department handlers.
    """
    stmt = select(ReturnVisit).where(_scope(session, actor))
    if year is not None:
        stmt = stmt.where(ReturnVisit.year == year)
    if status is not None:
        stmt = stmt.where(ReturnVisit.status == status)
    return list(session.exec(stmt.order_by(ReturnVisit.id.desc()).limit(limit)).all())


def answer(session: Session, actor: Actor, visit_id: int, data: schemas.ReturnVisitAnswerIn,
           now: datetime | None = None) -> ReturnVisit:
    """Answer a return visit (enterprise user, or an officer after a visit/call); open problems
    become tickets in the same transaction.

    Raises:
        NotAllowed (403): not an enterprise user or officer.
        NotFound (404): unknown, or outside the caller's enterprises.
        Conflict (409): already answered or expired.
        FieldError (422, ``problems[i].category_*``): unknown category.
    """
    if actor.role not in ("enterprise", "officer"):
        raise NotAllowed("只有企业用户或服务专员可以答复年度回访")
    now = now or clock.now()
    row = session.exec(select(ReturnVisit).where(ReturnVisit.id == visit_id, _scope(session, actor))
                       .with_for_update().execution_options(populate_existing=True)).first()
    if row is None:
        raise NotFound(f"年度回访 {visit_id} 不存在")
    if row.status != "pending":
        raise Conflict("该回访已答复或已过期", current_status=row.status)
    enterprise = session.get(Enterprise, row.enterprise_id)
    channel = "web" if actor.role == "enterprise" else "inquiry"
    tickets = raise_problems(session, actor, enterprise, data.problems, channel, now)
    row.status, row.satisfaction, row.improve = "answered", data.satisfaction, data.improve
    row.answered_at, row.answered_by_id = now, actor.user_id
    row.ticket_ids = [t.id for t in tickets]
    session.add(row)
    session.flush()
    return row

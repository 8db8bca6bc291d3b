"""Monthly follow-up (每月一复诊, SPEC §5).

On the first working day of the month every ticket closed in the previous month (Asia/Shanghai)
gets a follow-up ("is the problem still solved?"), and so does every ticket whose last follow-up
said "not solved" (source ``repeat``). The enterprise answers (``POST /follow-ups/{id}/answer``) or
its officer records the answer after a call. "Not solved" on a closed ticket reopens it (重办, same
lead department, by the system, the reason naming the follow-up). A follow-up unanswered by
``expires_at`` (``follow_up_expiry_working_days`` = 10 working days, at 17:30) becomes ``expired``
and counts as such in statistics. Tickets open more than ``long_open_days`` (30) are listed for
supervisors (a stored ``long_open`` report and a notification).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from service import clock
from service.auth.actor import Actor
from service.cadences import schemas
from service.cadences.common import (
    add_working_days,
    end_of_working_day,
    local_start,
    notify_from_select,
    run_instant,
)
from service.cadences.models import FollowUp, ReturnVisit
from service.cadences.periods import previous_month
from service.calendar.service import get_calendar
from service.common.enums import OPEN_STATUSES
from service.config import get_settings
from service.errors import Conflict, NotAllowed, NotFound
from service.ticketing import service as ticket_service
from service.tickets.models import Ticket
from service.tickets.visibility import ticket_visibility
from service.users.models import User


def create_monthly(session: Session, period_key: str, run_date: date, now: datetime | None = None) -> dict:
    """Create the follow-ups of the monthly period ``period_key`` (``2026-04``) in two
    ``INSERT ... SELECT`` statements and notify the enterprises' users and officers. Returns
    ``{"closed": n, "repeat": n, "notified": n}``. Running it again adds nothing (unique per
    ticket and period)."""
    now = now or clock.now()
    asked_at = run_instant("monthly", run_date, now)  # a back-dated run: its own instant, not now
    cal = get_calendar(session)
    expires = end_of_working_day(cal, add_working_days(cal, run_date, get_settings().cadence_follow_up_expiry_working_days))
    start, end = previous_month(period_key)
    f, t = FollowUp.__table__, Ticket.__table__
    before = session.execute(sa.select(sa.func.coalesce(sa.func.max(f.c.id), 0))).scalar_one()
    not_yet = ~sa.exists().where(f.c.ticket_id == t.c.id, f.c.period_key == period_key)

    def insert(select_, source):
        sel = select_.add_columns(sa.literal(period_key), sa.literal(source), sa.literal("pending"),
                                  sa.literal(asked_at, type_=f.c.asked_at.type),
                                  sa.literal(expires, type_=f.c.expires_at.type),
                                  sa.false())
        return len(session.connection().execute(sa.insert(f).from_select(
            ["ticket_id", "enterprise_id", "period_key", "source", "status", "asked_at", "expires_at", "reopened"],
            sel).returning(f.c.id)).all())

    closed = insert(sa.select(t.c.id, t.c.enterprise_id).where(
        t.c.status == "closed", t.c.closed_at >= local_start(start), t.c.closed_at < local_start(end), not_yet),
        "closed")
    f2 = f.alias("f2")
    latest = sa.select(sa.func.max(f2.c.id)).where(f2.c.ticket_id == t.c.id, f2.c.period_key != period_key) \
        .scalar_subquery()
    repeat = insert(sa.select(t.c.id, t.c.enterprise_id).where(
        not_yet, sa.exists().where(f.c.id == latest, f.c.status == "not_solved")), "repeat")
    u = User.__table__
    title = sa.func.substr(sa.literal("复诊：您反映的问题解决了吗？") + t.c.number + sa.literal(" ") + t.c.title, 1, 200)
    mine = sa.and_(f.c.period_key == period_key, f.c.id > before)
    to_enterprises = sa.select(u.c.id, t.c.id, title, sa.literal("请回复问题是否已解决")).select_from(
        f.join(t, t.c.id == f.c.ticket_id).join(u, sa.and_(u.c.enterprise_id == t.c.enterprise_id,
                                                          u.c.role == "enterprise", u.c.is_active))).where(mine)
    to_officers = sa.select(t.c.officer_id, t.c.id, title, sa.literal("企业未在线答复的，请电话回访后代为登记")) \
        .select_from(f.join(t, t.c.id == f.c.ticket_id)).where(mine, t.c.officer_id.is_not(None))
    notified = notify_from_select(session, to_enterprises, "follow_up", now) + \
        notify_from_select(session, to_officers, "follow_up", now)
    return {"closed": closed, "repeat": repeat, "notified": notified}


def long_open(session: Session, run_date: date) -> list[dict]:
    """Tickets open (not closed or rejected) more than ``long_open_days`` calendar days on
    ``run_date``, oldest first, as plain rows for the ``long_open`` report."""
    days = get_settings().cadence_long_open_days
    cutoff = local_start(run_date - timedelta(days=days))
    rows = session.execute(sa.select(Ticket.number, Ticket.title, Ticket.status, Ticket.submitted_at,
                                     Ticket.lead_department_id, Ticket.officer_id, Ticket.reopen_count)
                           .where(Ticket.status.in_(OPEN_STATUSES), Ticket.submitted_at < cutoff)
                           .order_by(Ticket.submitted_at, Ticket.id)).all()
    start = local_start(run_date)
    return [{"number": r.number, "title": r.title, "status": r.status,
             "submitted_at": r.submitted_at.isoformat(), "days_open": (start - r.submitted_at).days,
             "lead_department_id": r.lead_department_id, "officer_id": r.officer_id,
             "reopen_count": r.reopen_count} for r in rows]


def expire(session: Session, now: datetime | None = None) -> dict:
    """Mark pending follow-ups and return visits past ``expires_at`` as ``expired`` (set-based)."""
    now = now or clock.now()
    n1 = len(session.connection().execute(sa.update(FollowUp.__table__).where(FollowUp.status == "pending", FollowUp.expires_at <= now)
                         .values(status="expired").returning(sa.literal(1))).all())
    n2 = len(session.connection().execute(sa.update(ReturnVisit.__table__).where(ReturnVisit.status == "pending", ReturnVisit.expires_at <= now)
                         .values(status="expired").returning(sa.literal(1))).all())
    return {"follow_ups_expired": n1, "return_visits_expired": n2}


def _visible(session: Session, actor: Actor):
    if actor.role == "department":
        raise NotAllowed("承办单位不参与复诊")
    return ticket_visibility(session, actor)


def list_follow_ups(session: Session, actor: Actor, *, status: str | None = None, period_key: str | None = None,
                    limit: int = 100) -> list[schemas.FollowUpRead]:
    """Follow-ups of the tickets the caller may see (enterprise: its own), newest first.

    Raises:
        NotAllowed (403): department handlers.
    """
    stmt = (sa.select(FollowUp, Ticket.number, Ticket.title).join(Ticket, Ticket.id == FollowUp.ticket_id)
            .where(_visible(session, actor)))
    if status is not None:
        stmt = stmt.where(FollowUp.status == status)
    if period_key is not None:
        stmt = stmt.where(FollowUp.period_key == period_key)
    rows = session.execute(stmt.order_by(FollowUp.id.desc()).limit(limit)).all()
    return [schemas.FollowUpRead.model_validate({**fu.model_dump(), "ticket_number": number, "ticket_title": title})
            for fu, number, title in rows]


def answer(session: Session, actor: Actor, follow_up_id: int, data: schemas.FollowUpAnswerIn,
           now: datetime | None = None) -> FollowUp:
    """Answer a follow-up: by the enterprise, or by an officer after a call (SPEC §5). "Not solved"
    on a closed ticket reopens it (重办, same lead department) with the follow-up named in the reason.

    Raises:
        NotAllowed (403): not the enterprise's user or an officer/supervisor.
        NotFound (404): unknown follow-up, or one of a ticket the caller may not see.
        Conflict (409): already answered or expired.
    """
    if actor.role not in ("enterprise", "officer", "supervisor"):
        raise NotAllowed("只有企业用户或服务专员可以答复复诊")
    now = now or clock.now()
    row = session.execute(sa.select(FollowUp).join(Ticket, Ticket.id == FollowUp.ticket_id)
                          .where(FollowUp.id == follow_up_id, ticket_visibility(session, actor))
                          .with_for_update(of=FollowUp.__table__)
                          .execution_options(populate_existing=True)).scalar()
    if row is None:
        raise NotFound(f"复诊 {follow_up_id} 不存在")
    if row.status != "pending":
        raise Conflict(f"该复诊已{ {'solved': '答复（已解决）', 'not_solved': '答复（未解决）', 'expired': '过期'}[row.status] }，不能再答复",
                       current_status=row.status)
    row.status = "solved" if data.solved else "not_solved"
    row.answered_at, row.answered_by_id, row.comment = now, actor.user_id, data.comment
    row.answer_channel = "enterprise" if actor.role == "enterprise" else "officer_call"
    ticket = session.get(Ticket, row.ticket_id)
    if not data.solved and ticket.status == "closed":
        reason = f"复诊（{row.period_key}，#{row.id}）反馈问题未解决" + (f"：{data.comment}" if data.comment else "")
        ticket_service.apply_action(session, Actor.system(), ticket, "reopen", {"reason": reason[:2000]}, at=now)
        row.reopened = True
    session.add(row)
    session.flush()
    return row

"""Weekly clinics (每周一坐诊) and quarterly joint consultations (每季一会诊), SPEC §5.

A :class:`~service.cadences.models.CadenceSession` has an agenda of
:class:`~service.cadences.models.AgendaItem` rows. Agendas are built set-based (one SELECT of the
qualifying tickets, one INSERT of the new items) when the session is created and refreshed by the
daily run for sessions in the coming week, so a ticket that qualifies after creation (reopened by a
follow-up, say) still reaches the next session. An item is never added twice (unique per session).

Clinic agenda (tickets of the session's region that are not yet replied): stalled (no event for
``clinic_stalled_working_days`` = 5 working days), returned at least once, with co-handling
departments, reopened, or booked by an enterprise. Joint agenda (county): reopened ≥ 2,
escalation level 2, cross-department (co-handling), or flagged by a supervisor.

Invitations: the handlers of every lead and co-handling department on the agenda get an
``invited`` notification once per session; joint consultations also invite the county's
supervisors (leaders).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, select

from service import clock
from service.auth.actor import Actor
from service.cadences import schemas
from service.cadences.common import (
    local_at,
    local_date,
    local_start,
    raise_problems,
)
from service.cadences.models import AgendaItem, CadenceSession, ClinicBooking, ClinicSchedule, HardCaseFlag
from service.cadences.periods import first_working_on_or_after, week_monday
from service.calendar.core import WorkingCalendar
from service.calendar.service import get_calendar
from service.common.enums import AWAITING_REPLY_STATUSES, OPEN_STATUSES
from service.config import get_settings
from service.db import insert_unless_duplicate
from service.errors import Conflict, FieldError, NotAllowed, NotFound
from service.notifications import service as notifications
from service.regions.models import Grid, Region
from service.ticketing import service as ticket_service
from service.tickets.models import Ticket, TicketCoDepartment, TicketEvent
from service.tickets.visibility import region_subtree_ids, scope_of, ticket_visibility
from service.users.models import User

CLINIC_REGION_KINDS = ("town", "street", "park")
REASON_ORDER = ("booked", "raised", "flagged", "escalated", "reopened", "returned", "co_handling", "stalled")


# ------------------------------------------------------------------ schedules

def schedules(session: Session) -> list[tuple[Region, ClinicSchedule]]:
    """Every town, street and park with its clinic schedule (stored, else the configured default:
    weekday ``clinic_weekday``, ``clinic_time``, at 「<region>企业服务中心」)."""
    settings = get_settings()
    regions = session.exec(select(Region).where(Region.kind.in_(CLINIC_REGION_KINDS)).order_by(Region.code)).all()
    stored = {s.region_id: s for s in session.exec(select(ClinicSchedule)).all()}
    result = []
    for r in regions:
        s = stored.get(r.id) or ClinicSchedule(region_id=r.id, weekday=settings.cadence_clinic_weekday,
                                               start_time=settings.cadence_clinic_time,
                                               place=f"{r.name}企业服务中心", capacity=settings.cadence_clinic_capacity)
        result.append((r, s))
    return result


def set_schedule(session: Session, region_id: int, data: schemas.ClinicScheduleIn) -> ClinicSchedule:
    """Create or replace a region's clinic schedule (admin). Future sessions already created keep
    their date.

    Raises:
        NotFound (404): no such town, street or park.
    """
    region = session.get(Region, region_id)
    if region is None or region.kind not in CLINIC_REGION_KINDS:
        raise NotFound(f"镇/街道/园区 {region_id} 不存在")
    row = session.get(ClinicSchedule, region_id) or ClinicSchedule(region_id=region_id, **data.model_dump())
    for k, v in data.model_dump().items():
        setattr(row, k, v)
    session.add(row)
    session.flush()
    return row


# ------------------------------------------------------------------ creating sessions

def _insert_session(session: Session, cs: CadenceSession) -> CadenceSession | None:
    """Insert ``cs`` unless its key exists (savepoint: a concurrent twin loses quietly)."""
    if session.exec(select(CadenceSession.id).where(CadenceSession.key == cs.key)).first() is not None:
        return None
    return insert_unless_duplicate(session, cs)


def clinic_date(cal: WorkingCalendar, period_key: str, weekday: int) -> date | None:
    """The clinic day of ISO week ``period_key`` on ``weekday``, moved to the next working day;
    ``None`` when that falls outside the week (a holiday week: no clinic)."""
    monday = week_monday(period_key)
    nominal = monday + timedelta(days=weekday - 1)
    moved = first_working_on_or_after(cal, nominal)
    return moved if moved < monday + timedelta(days=7) else None


def create_weekly_clinics(session: Session, period_key: str, now: datetime | None = None) -> dict:
    """Create the clinic sessions of ISO week ``period_key`` for every town/street/park with their
    agendas and invitations (SPEC §5 weekly clinic). Returns ``{"sessions", "skipped", "items"}``."""
    now = now or clock.now()
    cal = get_calendar(session)
    created = skipped = items = 0
    for region, sched in schedules(session):
        if not sched.is_active:
            continue
        day = clinic_date(cal, period_key, sched.weekday)
        if day is None:
            skipped += 1
            continue
        cs = _insert_session(session, CadenceSession(
            key=f"clinic:{region.code}:{period_key}", kind="clinic", period_key=period_key, region_id=region.id,
            session_date=day, starts_at=local_at(day, sched.start_time), place=sched.place,
            capacity=sched.capacity, created_at=now))
        if cs is not None:
            created += 1
            items += refresh_agenda(session, cs, now)
    return {"sessions": created, "skipped_holiday": skipped, "items": items}


def create_joint_consultation(session: Session, period_key: str, run_date: date,
                              now: datetime | None = None) -> dict:
    """Create the quarter's joint consultation (county-wide) ``joint_offset_working_days`` after
    ``run_date``, with its agenda of hard cases; invite departments and the county's supervisors."""
    now = now or clock.now()
    cal = get_calendar(session)
    settings = get_settings()
    day = cal.next_working_day(run_date, settings.cadence_joint_offset_working_days) \
        if settings.cadence_joint_offset_working_days else run_date
    cs = _insert_session(session, CadenceSession(
        key=f"joint:{period_key}", kind="joint", period_key=period_key, region_id=None, session_date=day,
        starts_at=local_at(day, settings.cadence_clinic_time), place="县企业服务中心会议室", capacity=0, created_at=now))
    if cs is None:
        return {"sessions": 0, "items": 0}
    items = refresh_agenda(session, cs, now)
    leaders = list(session.exec(select(User.id).where(User.role == "supervisor", User.is_active,
                                                      User.region_id.is_(None))).all())
    notifications.notify(session, None, "invited", leaders,
                         body=f"{day} 召开季度会诊（{period_key}），议题 {items} 项",
                         payload={"session_id": cs.id, "kind": "joint", "session_date": day.isoformat()}, at=now)
    return {"sessions": 1, "items": items}


# ------------------------------------------------------------------ agendas

def _region_grid_ids(session: Session, region_id: int) -> list[int]:
    return list(session.execute(sa.select(Grid.id).where(
        Grid.region_id.in_(region_subtree_ids(session, region_id)))).scalars())


def _candidates(session: Session, cs: CadenceSession, now: datetime) -> dict[int, list[str]]:
    """Qualifying ticket ids and their reasons, in one SELECT."""
    t = Ticket.__table__
    has_co = sa.exists().where(TicketCoDepartment.ticket_id == t.c.id)
    if cs.kind == "clinic":
        cal = get_calendar(session)
        n = get_settings().cadence_clinic_stalled_working_days
        as_of = min(local_date(now), cs.session_date)
        cutoff = local_start(_back(cal, as_of, n))
        last_event = sa.select(sa.func.max(TicketEvent.created_at)).where(
            TicketEvent.ticket_id == t.c.id).scalar_subquery()
        flags = {
            "stalled": last_event < cutoff,
            "returned": t.c.return_count >= 1,
            "co_handling": has_co,
            "reopened": t.c.reopen_count >= 1,
        }
        scope = sa.and_(t.c.status.in_(AWAITING_REPLY_STATUSES),
                        t.c.grid_id.in_(_region_grid_ids(session, cs.region_id) or [-1]))
    else:
        flagged = sa.exists().where(HardCaseFlag.ticket_id == t.c.id)
        flags = {
            "reopened": t.c.reopen_count >= 2,
            "escalated": t.c.escalation_level >= 2,
            "co_handling": has_co,
            "flagged": flagged,
        }
        scope = t.c.status.in_(OPEN_STATUSES)
    cols = [sa.case((cond, 1), else_=0).label(name) for name, cond in flags.items()]
    stmt = sa.select(t.c.id, *cols).where(scope, sa.or_(*flags.values()))
    result = {}
    for row in session.execute(stmt).all():
        reasons = [name for name in flags if getattr(row, name)]
        result[row.id] = sorted(reasons, key=REASON_ORDER.index)
    return result


def _back(cal: WorkingCalendar, d: date, n: int) -> date:
    """The ``n``-th working day before ``d``: stalled = no event on or after it."""
    current = d
    while n:
        current -= timedelta(days=1)
        if cal.is_working_day(current):
            n -= 1
    return current


def refresh_agenda(session: Session, cs: CadenceSession, now: datetime | None = None) -> int:
    """Add the tickets that qualify now to ``cs``'s agenda (never twice) and invite the departments
    not invited yet. Returns the number of items added."""
    now = now or clock.now()
    candidates = _candidates(session, cs, now)
    present = set(session.execute(sa.select(AgendaItem.ticket_id).where(
        AgendaItem.session_id == cs.id, AgendaItem.ticket_id.is_not(None))).scalars())
    new_ids = [tid for tid in candidates if tid not in present]
    if new_ids:
        titles = dict(session.execute(sa.select(Ticket.id, Ticket.number + " " + Ticket.title)
                                      .where(Ticket.id.in_(new_ids))).all())
        session.execute(sa.insert(AgendaItem), [
            {"session_id": cs.id, "ticket_id": tid, "booking_id": None, "reason": candidates[tid][0],
             "reasons": candidates[tid], "topic": titles[tid][:500], "created_at": now} for tid in new_ids])
    _invite_departments(session, cs, now)
    return len(new_ids)


def _invite_departments(session: Session, cs: CadenceSession, now: datetime) -> None:
    ticket_ids = sa.select(AgendaItem.ticket_id).where(AgendaItem.session_id == cs.id,
                                                       AgendaItem.ticket_id.is_not(None))
    leads = session.execute(sa.select(Ticket.lead_department_id).where(
        Ticket.id.in_(ticket_ids), Ticket.lead_department_id.is_not(None))).scalars()
    cos = session.execute(sa.select(TicketCoDepartment.department_id).where(
        TicketCoDepartment.ticket_id.in_(ticket_ids))).scalars()
    wanted = set(leads) | set(cos)
    new = sorted(wanted - set(cs.invited_department_ids or []))
    if not new:
        return
    users = list(session.exec(select(User.id).where(User.role == "department", User.is_active,
                                                    User.department_id.in_(new))).all())
    label = "坐诊" if cs.kind == "clinic" else "季度会诊"
    notifications.notify(session, None, "invited", users,
                         body=f"请于 {cs.session_date} 参加{label}（{cs.place}），议题涉及贵单位承办的工单",
                         payload={"session_id": cs.id, "kind": cs.kind, "session_date": cs.session_date.isoformat()},
                         at=now)
    cs.invited_department_ids = sorted(set(cs.invited_department_ids or []) | set(new))
    session.add(cs)
    session.flush()


def refresh_upcoming(session: Session, today: date, now: datetime | None = None) -> int:
    """Refresh the agendas of scheduled sessions held from ``today`` to 7 days later (daily run)."""
    sessions = session.exec(select(CadenceSession).where(
        CadenceSession.status == "scheduled", CadenceSession.session_date >= today,
        CadenceSession.session_date <= today + timedelta(days=7))).all()
    return sum(refresh_agenda(session, cs, now) for cs in sessions)


# ------------------------------------------------------------------ reading

def list_sessions(session: Session, actor: Actor, kind: str, *, region_id: int | None = None,
                  date_from: date | None = None, date_to: date | None = None, limit: int = 100) -> list[CadenceSession]:
    """Sessions of ``kind`` the caller may see (:func:`_session_visible`), soonest first.

    Raises:
        NotAllowed (403): an enterprise user listing joint consultations.
    """
    if actor.role == "enterprise" and kind != "clinic":
        raise NotAllowed("企业用户不能查看会诊")
    stmt = select(CadenceSession).where(CadenceSession.kind == kind, _session_visible(session, actor))
    if region_id is not None:
        stmt = stmt.where(CadenceSession.region_id == region_id)
    if date_from is not None:
        stmt = stmt.where(CadenceSession.session_date >= date_from)
    if date_to is not None:
        stmt = stmt.where(CadenceSession.session_date <= date_to)
    return list(session.exec(stmt.order_by(CadenceSession.session_date, CadenceSession.id).limit(limit)).all())


def _session_visible(session: Session, actor: Actor) -> sa.ColumnElement[bool]:
    """Which sessions the caller may see (SPEC §1 through :class:`~service.tickets.visibility.Scope`):
    a clinic of a region in the caller's region scope (a supervisor's subtree, an enterprise
    user's own region; officers, departments and admins: every region), and the county's joint
    consultations for every staff role (enterprise users never)."""
    clinic = sa.and_(CadenceSession.kind == "clinic", scope_of(session, actor).regions(CadenceSession.region_id))
    if actor.role == "enterprise":
        return clinic
    return sa.or_(CadenceSession.kind != "clinic", clinic)


def _agenda_visible(session: Session, actor: Actor) -> sa.ColumnElement[bool]:
    """Which agenda items the caller may see (the query joins :class:`Ticket` and
    :class:`ClinicBooking`): an item about a ticket if the ticket is visible, a booking if the
    booking's enterprise is visible (SPEC §1)."""
    scope = scope_of(session, actor)
    return sa.or_(sa.and_(AgendaItem.ticket_id.is_not(None), scope.tickets()),
                  sa.and_(AgendaItem.ticket_id.is_(None), AgendaItem.booking_id.is_not(None),
                          scope.enterprise_ids(ClinicBooking.enterprise_id)))


def session_read(session: Session, actor: Actor, cs: CadenceSession, *, with_agenda: bool = True) -> schemas.SessionRead:
    """The session with its agenda. The agenda lists only the items the caller may see
    (:func:`_agenda_visible`: an enterprise user its own bookings and tickets)."""
    bookings = session.execute(sa.select(sa.func.count()).select_from(ClinicBooking)
                               .where(ClinicBooking.session_id == cs.id)).scalar_one()
    agenda = []
    if with_agenda:
        rows = session.execute(
            sa.select(AgendaItem, Ticket.number).outerjoin(Ticket, Ticket.id == AgendaItem.ticket_id)
            .outerjoin(ClinicBooking, ClinicBooking.id == AgendaItem.booking_id)
            .where(AgendaItem.session_id == cs.id, _agenda_visible(session, actor)).order_by(AgendaItem.id)).all()
        agenda = [schemas.AgendaItemRead.model_validate({**item.model_dump(), "ticket_number": number})
                  for item, number in rows]
    return schemas.SessionRead.model_validate({**cs.model_dump(), "bookings": bookings, "agenda": agenda})


def get_session(session: Session, actor: Actor, session_id: int, kind: str, *,
                for_update: bool = False) -> CadenceSession:
    """Load a session visible to ``actor`` (:func:`_session_visible`).

    Raises:
        NotFound (404): unknown, or outside the caller's scope (SPEC §1: a refused read is 404).
    """
    stmt = select(CadenceSession).where(CadenceSession.id == session_id, CadenceSession.kind == kind,
                                        _session_visible(session, actor))
    if for_update:
        stmt = stmt.with_for_update()
    cs = session.exec(stmt).first()
    if cs is None:
        raise NotFound(f"{'坐诊' if kind == 'clinic' else '会诊'} {session_id} 不存在")
    return cs


# ------------------------------------------------------------------ bookings, outcomes, problems

def book(session: Session, actor: Actor, session_id: int, data: schemas.BookingIn,
         now: datetime | None = None) -> ClinicBooking:
    """Book a slot at a clinic for the caller's enterprise with a topic (SPEC §5); the booking goes
    on the agenda (reason ``booked``).

    Raises:
        NotAllowed (403): not an enterprise user.
        NotFound (404): unknown clinic, or one of another region.
        Conflict (409): the session is past or not scheduled, full (capacity), or already booked by
            this enterprise.
    """
    if actor.role != "enterprise" or actor.enterprise_id is None:
        raise NotAllowed("只有企业用户可以预约坐诊")
    now = now or clock.now()
    cs = get_session(session, actor, session_id, "clinic", for_update=True)  # serialises bookings of the session
    if cs.status != "scheduled" or cs.session_date < local_date(now):
        raise Conflict("该坐诊已结束或已取消，不能预约")
    taken = session.execute(sa.select(sa.func.count()).select_from(ClinicBooking)
                            .where(ClinicBooking.session_id == cs.id)).scalar_one()
    if session.exec(select(ClinicBooking.id).where(ClinicBooking.session_id == cs.id,
                                                   ClinicBooking.enterprise_id == actor.enterprise_id)).first():
        raise Conflict("本企业已预约该场坐诊")
    if taken >= cs.capacity:
        raise Conflict(f"该场坐诊已约满（{cs.capacity} 个名额）")
    booking = ClinicBooking(session_id=cs.id, enterprise_id=actor.enterprise_id, user_id=actor.user_id,
                            topic=data.topic, created_at=now)
    session.add(booking)
    session.flush()
    session.add(AgendaItem(session_id=cs.id, booking_id=booking.id, reason="booked", reasons=["booked"],
                           topic=data.topic, created_at=now))
    session.flush()
    return booking


def record_outcome(session: Session, actor: Actor, kind: str, session_id: int, item_id: int,
                   data: schemas.OutcomeIn, now: datetime | None = None) -> AgendaItem:
    """Record the outcome of an agenda item (SPEC §5): ``resolved`` on the spot (the lead
    department's handler replies to an in-progress ticket; otherwise the note is added as a public
    comment), ``planned`` (a public comment with the agreed date), ``escalated`` (督办 one level up).
    The session becomes ``held``.

    Raises:
        NotAllowed (403): not an officer, supervisor or department handler; a handler recording a
            booking (an item without a ticket).
        NotFound (404): unknown session or item, or one outside the caller's scope: a session of
            another region, an item about a ticket (or a booking by an enterprise) the caller
            may not see (SPEC §1; nothing is written).
        Conflict (409): the outcome was already recorded.
        FieldError (422, ``planned_date``): a plan date before the session.
    """
    if actor.role not in ("officer", "supervisor", "department"):
        raise NotAllowed("只有服务专员、督办人员和承办单位可以记录议题结果")
    now = now or clock.now()
    cs = get_session(session, actor, session_id, kind)
    item = session.exec(select(AgendaItem).where(AgendaItem.id == item_id, AgendaItem.session_id == cs.id)
                        .with_for_update()).first()
    visible = item is not None and session.execute(
        sa.select(AgendaItem.id).outerjoin(ClinicBooking, ClinicBooking.id == AgendaItem.booking_id)
        .outerjoin(Ticket, Ticket.id == AgendaItem.ticket_id)
        .where(AgendaItem.id == item.id, _agenda_visible(session, actor))).first() is not None
    if not visible:  # unknown, or about a ticket or enterprise outside the caller's scope (SPEC §1)
        raise NotFound(f"议题 {item_id} 不存在")
    if actor.role == "department" and item.ticket_id is None:
        raise NotAllowed("承办单位只能记录本单位工单的议题结果")
    if item.outcome is not None:
        raise Conflict("该议题已记录结果")
    if data.planned_date is not None and data.planned_date < cs.session_date:
        raise FieldError("planned_date", "计划完成日期不能早于坐诊日期")
    ticket = session.get(Ticket, item.ticket_id) if item.ticket_id else None
    if ticket is not None:
        _apply_outcome(session, actor, ticket, cs, data, now)
    item.outcome, item.outcome_note, item.planned_date = data.outcome, data.note, data.planned_date
    item.recorded_by_id, item.recorded_at = actor.user_id, now
    cs.status = "held"
    session.add_all([item, cs])
    session.flush()
    return item


def _apply_outcome(session: Session, actor: Actor, ticket: Ticket, cs: CadenceSession,
                   data: schemas.OutcomeIn, now: datetime) -> None:
    label = "坐诊" if cs.kind == "clinic" else "季度会诊"
    if data.outcome == "resolved" and actor.role == "department" and ticket.status == "in_progress" \
            and ticket.lead_department_id == actor.department_id:
        ticket_service.apply_action(session, actor, ticket, "reply", {"text": data.note}, at=now)
        return
    if data.outcome == "escalated":
        if ticket.escalation_level < 2 and ticket.status in OPEN_STATUSES:
            by = actor if actor.role == "supervisor" else Actor.system()
            ticket_service.apply_action(session, by, ticket, "escalate",
                                        {"reason": f"{label}（{cs.session_date}）提请督办：{data.note}"[:2000]}, at=now)
        return
    text = {"resolved": f"{label}现场答复：{data.note}",
            "planned": f"{label}议定：{data.note}（计划于 {data.planned_date} 前办结）"}[data.outcome]
    ticket_service.apply_action(session, actor, ticket, "comment", {"text": text[:20000], "internal": False}, at=now)


def raise_problem(session: Session, actor: Actor, kind: str, session_id: int, data: schemas.RaiseProblemIn,
                  now: datetime | None = None) -> tuple[Ticket, AgendaItem]:
    """A new problem raised at a session becomes a ticket with channel ``clinic`` and an agenda item
    (reason ``raised``).

    Raises:
        NotAllowed (403): not an officer or supervisor.
        NotFound (404): unknown session, or one outside the caller's region scope.
        FieldError (422): ``enterprise_id`` unknown or outside the caller's scope (as
            ``POST /tickets``); unknown category.
    """
    if actor.role not in ("officer", "supervisor"):
        raise NotAllowed("只有服务专员和督办人员可以登记坐诊中提出的问题")
    now = now or clock.now()
    cs = get_session(session, actor, session_id, kind)
    # the same rule as POST /tickets on behalf of an enterprise: only one in the caller's scope
    enterprise = scope_of(session, actor).require_enterprise(data.enterprise_id, field="enterprise_id")
    (ticket,) = raise_problems(session, actor, enterprise, [data], "clinic", now, field="body")
    item = AgendaItem(session_id=cs.id, ticket_id=ticket.id, reason="raised", reasons=["raised"],
                      topic=f"{ticket.number} {ticket.title}"[:500], created_at=now)
    session.add(item)
    session.flush()
    return ticket, item


def flag_hard_case(session: Session, actor: Actor, data: schemas.FlagIn, now: datetime | None = None) -> HardCaseFlag:
    """A supervisor flags a ticket for the next joint consultation (idempotent per ticket).

    Raises:
        NotAllowed (403): not a supervisor.
        FieldError (422, ``ticket_number``): unknown or invisible ticket.
    """
    if actor.role != "supervisor":
        raise NotAllowed("只有督办人员可以提请会诊")
    ticket = session.exec(select(Ticket).where(Ticket.number == data.ticket_number,
                                               ticket_visibility(session, actor))).first()
    if ticket is None:
        raise FieldError("ticket_number", f"工单 {data.ticket_number} 不存在")
    row = session.get(HardCaseFlag, ticket.id)
    if row is None:
        row = HardCaseFlag(ticket_id=ticket.id, flagged_by_id=actor.user_id, reason=data.reason or "",
                           created_at=now or clock.now())
        session.add(row)
        session.flush()
    return row

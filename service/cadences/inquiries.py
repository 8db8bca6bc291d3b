"""Daily inquiry (每日一问诊, SPEC §5): assignment, contact cadence, the 08:30 lists, logging a
contact, history and coverage.

Assignment (who contacts an enterprise), computed in SQL for all enterprises at once:

1. its point-to-point officer (``Enterprise.officer_id``, an active officer);
2. else the officer of its grid (``OfficerGrid``; the lowest id when a grid has several);
3. else, so that no enterprise is forgotten, an officer of its region (town/park) in turn
   (enterprise id modulo the region's officers), else one of the county's officers in turn —
   these are marked ``fallback`` so supervisors can fix the assignment.

Cadence: an enterprise must be contacted every N calendar days, N the shortest interval of its
tags (``{"重点": 7}``) or the default (30). It is *due by* ``last contact + N``, moved to the next
working day when that is not one (as Chinese law counts periods); never contacted = due at once.
The list of a working day holds, per officer, the enterprises due by today or within the lookahead
(2 working days), most overdue first (then never contacted, shorter interval, enterprise id), at
most ``inquiry_daily_cap`` (10). What is not reached today keeps its earlier due date and so comes
first tomorrow.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, select

from service import clock
from service.auth.actor import Actor
from service.cadences import schemas
from service.cadences.common import (
    add_working_days,
    end_of_working_day,
    local_date,
    previous_working_day,
    raise_problems,
)
from service.cadences.models import Inquiry, InquiryListItem
from service.calendar.core import WorkingCalendar
from service.calendar.service import get_calendar
from service.common.enums import OPEN_STATUSES
from service.config import get_settings
from service.enterprises.models import Enterprise
from service.errors import FieldError, NotAllowed, NotFound
from service.regions.models import Grid
from service.tickets.models import Ticket
from service.tickets.visibility import enterprise_visibility, scope_of
from service.users.models import User

MAX_BACKDATE_DAYS = 30


# ------------------------------------------------------------------ SQL building blocks

def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _has_tag(dialect: str, param: str) -> str:
    if dialect == "postgresql":
        return f"(CAST(e.tags AS jsonb) @> jsonb_build_array(CAST(:{param} AS text)))"
    return f"EXISTS (SELECT 1 FROM json_each(e.tags) WHERE json_each.value = :{param})"


def _add_days(dialect: str, date_sql: str, days_sql: str) -> str:
    if dialect == "postgresql":
        return f"({date_sql} + {days_sql})"
    return f"date({date_sql}, '+' || {days_sql} || ' days')"


def assignment_cte(session: Session, as_of: date) -> tuple[str, dict]:
    """SQL ``WITH`` clauses ending in ``assignment(enterprise_id, grid_id, officer_id, fallback,
    interval_days, last_contact, due_raw)`` for every enterprise with an officer, and its params.

    ``due_raw`` is ``last_contact + interval_days`` (not moved off holidays; ``NULL`` = never
    contacted). Comparing ``due_raw <= D`` for a *working day* D is the same as comparing the
    moved due date, so no calendar is needed in SQL.
    """
    dialect = _dialect(session)
    settings = get_settings()
    params: dict = {"default_interval": settings.cadence_inquiry_default_interval_days, "as_of": as_of}
    cases = []
    for i, (tag, days) in enumerate(sorted(settings.cadence_inquiry_intervals.items(), key=lambda kv: kv[1])):
        params[f"tag{i}"], params[f"days{i}"] = tag, int(days)
        cases.append(f"WHEN {_has_tag(dialect, f'tag{i}')} THEN :days{i}")
    interval = f"CASE {' '.join(cases)} ELSE :default_interval END" if cases else ":default_interval"
    true = "true" if dialect == "postgresql" else "1"
    sql = f"""
    WITH officers AS (
        SELECT id FROM user_account WHERE role = 'officer' AND is_active = {true}
    ), grid_officer AS (
        SELECT og.grid_id, MIN(og.officer_id) AS officer_id
        FROM officer_grid og JOIN officers o ON o.id = og.officer_id GROUP BY og.grid_id
    ), region_pairs AS (
        SELECT DISTINCT g.region_id, og.officer_id
        FROM officer_grid og JOIN grid g ON g.id = og.grid_id JOIN officers o ON o.id = og.officer_id
    ), region_officer AS (
        SELECT region_id, officer_id,
               ROW_NUMBER() OVER (PARTITION BY region_id ORDER BY officer_id) - 1 AS rn,
               COUNT(*) OVER (PARTITION BY region_id) AS n
        FROM region_pairs
    ), county_officer AS (
        SELECT id AS officer_id, ROW_NUMBER() OVER (ORDER BY id) - 1 AS rn, COUNT(*) OVER () AS n
        FROM officers
    ), last_contact AS (
        SELECT enterprise_id, MAX(contact_date) AS last_contact FROM inquiry
        WHERE contact_date <= :as_of GROUP BY enterprise_id
    ), assigned AS (
        SELECT e.id AS enterprise_id, e.grid_id,
               COALESCE(eo.id, gof.officer_id, ro.officer_id, co.officer_id) AS officer_id,
               (eo.id IS NULL AND gof.officer_id IS NULL) AS fallback,
               {interval} AS interval_days,
               lc.last_contact
        FROM enterprise e
        LEFT JOIN officers eo ON eo.id = e.officer_id
        LEFT JOIN grid_officer gof ON gof.grid_id = e.grid_id
        LEFT JOIN grid g ON g.id = e.grid_id
        LEFT JOIN region_officer ro ON ro.region_id = g.region_id AND ro.rn = e.id % ro.n
        LEFT JOIN county_officer co ON co.rn = e.id % co.n
        LEFT JOIN last_contact lc ON lc.enterprise_id = e.id
    ), assignment AS (
        SELECT a.*, {_add_days(dialect, 'a.last_contact', 'a.interval_days')} AS due_raw
        FROM assigned a WHERE a.officer_id IS NOT NULL
    )
    """
    return sql, params


def _as_date(value) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


# ------------------------------------------------------------------ the daily lists

def _list_select(session: Session, list_date: date, horizon: date, officer_id: int | None) -> tuple[str, dict]:
    cte, params = assignment_cte(session, list_date)
    settings = get_settings()
    params.update(list_date=list_date, horizon=horizon, cap=settings.cadence_inquiry_daily_cap)
    officer_filter = "AND officer_id = :officer_id" if officer_id is not None else ""
    if officer_id is not None:
        params["officer_id"] = officer_id
    sql = cte + f"""
    , ranked AS (
        SELECT officer_id, enterprise_id, interval_days, last_contact, fallback,
               COALESCE(due_raw, :list_date) AS due,
               ROW_NUMBER() OVER (PARTITION BY officer_id
                                  ORDER BY COALESCE(due_raw, :list_date),
                                           CASE WHEN last_contact IS NULL THEN 0 ELSE 1 END,
                                           interval_days, enterprise_id) AS position
        FROM assignment
        WHERE (due_raw IS NULL OR due_raw <= :horizon) {officer_filter}
    )
    SELECT :list_date AS list_date, officer_id, enterprise_id, position, interval_days, due,
           last_contact, fallback
    FROM ranked WHERE position <= :cap
    """
    return sql, params


def _horizon(cal: WorkingCalendar, list_date: date) -> date:
    return add_working_days(cal, list_date, get_settings().cadence_inquiry_lookahead_working_days)


def build_daily_lists(session: Session, list_date: date) -> int:
    """Build every officer's inquiry list of the working day ``list_date`` in one
    ``INSERT ... SELECT`` (SPEC §5 daily inquiry); due dates falling on non-working days are then
    moved to the next working day. Returns the number of list items written.

    Idempotent: items already stored for ``list_date`` are kept (the caller claims the period).

    Raises:
        FieldError (422, ``date``): ``list_date`` is not a working day.
    """
    cal = get_calendar(session)
    if not cal.is_working_day(list_date):
        raise FieldError("date", f"{list_date} 不是工作日，没有问诊清单")
    exists = session.execute(sa.select(sa.literal(1)).where(InquiryListItem.list_date == list_date)
                             .limit(1)).first()
    if exists:
        return 0
    select_sql, params = _list_select(session, list_date, _horizon(cal, list_date), None)
    insert = ("INSERT INTO inquiry_list_item (list_date, officer_id, enterprise_id, position, interval_days,"
              " due_date, last_contact_date, fallback) ")
    written = len(session.execute(sa.text(insert + select_sql + " RETURNING 1"), params).all())
    _move_due_dates(session, cal, list_date)
    return written


def _move_due_dates(session: Session, cal: WorkingCalendar, list_date: date) -> None:
    """Move the list's due dates off non-working days (few distinct dates: one UPDATE each)."""
    t = InquiryListItem.__table__
    dates = session.execute(sa.select(t.c.due_date).where(t.c.list_date == list_date).distinct()).scalars()
    moves = [(d, cal.next_working_day(d)) for d in (_as_date(x) for x in dates) if not cal.is_working_day(d)]
    for old, new in moves:
        session.execute(sa.update(t).where(t.c.list_date == list_date, t.c.due_date == old).values(due_date=new))


def _preview(session: Session, cal: WorkingCalendar, list_date: date, officer_id: int) -> list[InquiryListItem]:
    sql, params = _list_select(session, list_date, _horizon(cal, list_date), officer_id)
    rows = session.execute(sa.text(sql), params).all()
    items = []
    for r in rows:
        due = _as_date(r.due)
        if not cal.is_working_day(due):
            due = cal.next_working_day(due)
        items.append(InquiryListItem(list_date=list_date, officer_id=r.officer_id, enterprise_id=r.enterprise_id,
                                     position=r.position, interval_days=r.interval_days, due_date=due,
                                     last_contact_date=_as_date(r.last_contact), fallback=bool(r.fallback)))
    return items


def today_list(session: Session, actor: Actor, on: date | None = None) -> schemas.TodayRead:
    """The officer's inquiry list of ``on`` (default today, Asia/Shanghai): the stored 08:30 list, or
    a provisional one computed now when it was not built (before 08:30, or a non-working day shows
    the next working day's); plus the officer's tickets due by the end of that day or overdue.

    Raises:
        NotAllowed (403): not an officer.
    """
    if actor.role != "officer":
        raise NotAllowed("只有服务专员有问诊清单")
    cal = get_calendar(session)
    now = clock.now()
    on = on or local_date(now)
    if not cal.is_working_day(on):
        on = cal.next_working_day(on)
    stored = list(session.exec(select(InquiryListItem).where(
        InquiryListItem.list_date == on, InquiryListItem.officer_id == actor.user_id)
        .order_by(InquiryListItem.position)).all())
    provisional = False
    if not stored:
        built = session.execute(sa.select(sa.literal(1)).where(InquiryListItem.list_date == on).limit(1)).first()
        if not built:
            stored, provisional = _preview(session, cal, on, actor.user_id), True
    ent_ids = [i.enterprise_id for i in stored]
    names = dict(session.execute(sa.select(Enterprise.id, Enterprise.name)
                                 .where(Enterprise.id.in_(ent_ids))).all()) if ent_ids else {}
    contacted = set(session.execute(sa.select(Inquiry.enterprise_id).where(
        Inquiry.enterprise_id.in_(ent_ids), Inquiry.contact_date >= on)).scalars()) if ent_ids else set()
    enterprises = [schemas.ListItemRead(
        enterprise_id=i.enterprise_id, enterprise_name=names.get(i.enterprise_id, ""), position=i.position,
        interval_days=i.interval_days, due_date=i.due_date, last_contact_date=i.last_contact_date,
        overdue=i.due_date < on, contacted=i.enterprise_id in contacted, fallback=i.fallback) for i in stored]
    end = end_of_working_day(cal, on)
    due = session.exec(select(Ticket).where(
        Ticket.officer_id == actor.user_id, Ticket.status.in_(OPEN_STATUSES), Ticket.due_at.is_not(None),
        Ticket.due_at <= end).order_by(Ticket.due_at, Ticket.id)).all()
    tickets = [schemas.DueTicketRead(number=t.number, title=t.title, status=t.status, due_step=t.due_step,
                                     due_at=t.due_at, overdue=t.due_at <= now) for t in due]
    return schemas.TodayRead(list_date=on, officer_id=actor.user_id, provisional=provisional,
                             enterprises=enterprises, tickets=tickets)


# ------------------------------------------------------------------ logging a contact

def _enterprise_for_officer(session: Session, actor: Actor, enterprise_id: int) -> Enterprise:
    """The enterprise if the officer may contact it: visible to them (own or grid), or on one of
    their inquiry lists (fallback assignment)."""
    visible = session.exec(select(Enterprise).where(Enterprise.id == enterprise_id,
                                                    enterprise_visibility(session, actor))).first()
    if visible is not None:
        return visible
    listed = session.exec(select(InquiryListItem.enterprise_id).where(
        InquiryListItem.enterprise_id == enterprise_id, InquiryListItem.officer_id == actor.user_id).limit(1)).first()
    enterprise = session.get(Enterprise, enterprise_id) if listed else None
    if enterprise is None:
        raise FieldError("enterprise_id", f"企业 {enterprise_id} 不存在或不在您的服务范围内")
    return enterprise


def log_inquiry(session: Session, actor: Actor, data: schemas.InquiryCreate,
                now: datetime | None = None) -> tuple[Inquiry, list[Ticket]]:
    """Log a contact (SPEC §5 daily inquiry); problems found become tickets with channel
    ``inquiry`` in the same transaction. Returns ``(inquiry, tickets)``.

    Raises:
        NotAllowed (403): not an officer.
        FieldError (422): ``enterprise_id`` unknown or not the officer's; ``problems`` empty with
            finding ``problems`` or given with finding ``none``; ``contacted_at`` in the future or
            over 30 days back; ``problems[i].category_*`` unknown.
    """
    if actor.role != "officer":
        raise NotAllowed("只有服务专员可以登记问诊")
    now = now or clock.now()
    if data.finding == "problems" and not data.problems:
        raise FieldError("problems", "发现问题时须至少填写一个问题")
    if data.finding == "none" and data.problems:
        raise FieldError("problems", "未发现问题时不能填写问题；请把 finding 设为 problems")
    contacted_at = clock.as_utc(data.contacted_at) if data.contacted_at else now
    if contacted_at > now + timedelta(minutes=5):
        raise FieldError("contacted_at", "联系时间不能晚于现在")
    if contacted_at < now - timedelta(days=MAX_BACKDATE_DAYS):
        raise FieldError("contacted_at", f"只能补登 {MAX_BACKDATE_DAYS} 天内的联系")
    enterprise = _enterprise_for_officer(session, actor, data.enterprise_id)
    tickets = raise_problems(session, actor, enterprise, data.problems, "inquiry", now)
    inquiry = Inquiry(enterprise_id=enterprise.id, officer_id=actor.user_id, method=data.method,
                      finding=data.finding, note=data.note, ticket_ids=[t.id for t in tickets],
                      contacted_at=contacted_at, contact_date=local_date(contacted_at), created_at=now)
    session.add(inquiry)
    session.flush()
    return inquiry, tickets


def inquiry_read(session: Session, inquiry: Inquiry, actor: Actor | None = None) -> schemas.InquiryRead:
    """The inquiry as read by ``actor``: the numbers of the tickets it raised that ``actor`` may
    see (all when ``actor`` is None)."""
    numbers = []
    if inquiry.ticket_ids:
        visible = scope_of(session, actor).tickets() if actor is not None else sa.true()
        numbers = list(session.execute(sa.select(Ticket.number).where(Ticket.id.in_(inquiry.ticket_ids), visible)
                                       .order_by(Ticket.id)).scalars())
    return schemas.InquiryRead.model_validate({**inquiry.model_dump(), "ticket_numbers": numbers})


def history(session: Session, actor: Actor, enterprise_id: int, limit: int = 100) -> list[Inquiry]:
    """The enterprise's inquiries, newest first (staff who may see the enterprise).

    Raises:
        NotAllowed (403): enterprise users and departments.
        NotFound (404): enterprise unknown or outside the caller's scope.
    """
    if actor.role not in ("officer", "supervisor", "admin"):
        raise NotAllowed("只有服务专员、督办人员和管理员可以查看问诊记录")
    if actor.role == "officer":
        _enterprise_for_officer_or_404(session, actor, enterprise_id)
    else:
        found = session.exec(select(Enterprise.id).where(Enterprise.id == enterprise_id,
                                                         enterprise_visibility(session, actor))).first()
        if found is None:
            raise NotFound(f"企业 {enterprise_id} 不存在")
    return list(session.exec(select(Inquiry).where(Inquiry.enterprise_id == enterprise_id)
                             .order_by(Inquiry.contacted_at.desc(), Inquiry.id.desc()).limit(limit)).all())


def _enterprise_for_officer_or_404(session: Session, actor: Actor, enterprise_id: int) -> Enterprise:
    try:
        return _enterprise_for_officer(session, actor, enterprise_id)
    except FieldError as exc:
        raise NotFound(f"企业 {enterprise_id} 不存在") from exc


# ------------------------------------------------------------------ coverage

def coverage(session: Session, actor: Actor, on: date | None = None) -> schemas.CoverageRead:
    """Share of assigned enterprises contacted within their cadence on ``on`` (default today), per
    officer, per grid and in total (supervisors: their region; admins: all). An enterprise is
    covered when it was contacted and its (moved) due date is not before ``on``.

    Raises:
        NotAllowed (403): not a supervisor or admin.
    """
    if actor.role not in ("supervisor", "admin"):
        raise NotAllowed("只有督办人员和管理员可以查看问诊覆盖率")
    cal = get_calendar(session)
    on = on or local_date(clock.now())
    last_ok = previous_working_day(cal, on)  # overdue <=> due_raw <= the last working day before `on`
    cte, params = assignment_cte(session, on)
    params["last_ok"] = last_ok
    where = ""
    grid_ids = scope_of(session, actor).grid_ids()  # a supervisor's region (SPEC §1); None = all
    if grid_ids is not None:
        where = f"WHERE grid_id IN ({', '.join(str(int(g)) for g in grid_ids or [-1])})"
    base = cte + f"""
    , cov AS (
        SELECT officer_id, grid_id,
               CASE WHEN last_contact IS NOT NULL AND due_raw > :last_ok THEN 1 ELSE 0 END AS covered
        FROM assignment {where}
    )
    """
    rows_o = session.execute(sa.text(base + "SELECT officer_id AS k, COUNT(*) AS n, SUM(covered) AS c "
                                            "FROM cov GROUP BY officer_id ORDER BY officer_id"), params).all()
    rows_g = session.execute(sa.text(base + "SELECT grid_id AS k, COUNT(*) AS n, SUM(covered) AS c "
                                            "FROM cov GROUP BY grid_id ORDER BY grid_id"), params).all()
    officer_names = dict(session.execute(sa.select(User.id, User.full_name).where(
        User.id.in_([r.k for r in rows_o if r.k is not None]))).all()) if rows_o else {}
    grid_names = dict(session.execute(sa.select(Grid.id, Grid.name).where(
        Grid.id.in_([r.k for r in rows_g if r.k is not None]))).all()) if rows_g else {}

    def row(key, label, n, c) -> schemas.CoverageRow:
        n, c = int(n or 0), int(c or 0)
        return schemas.CoverageRow(key=key, label=label, enterprises=n, covered=c,
                                   coverage_rate=round(c / n, 4) if n else None)

    by_officer = [row(r.k, officer_names.get(r.k, str(r.k)), r.n, r.c) for r in rows_o]
    by_grid = [row(r.k, grid_names.get(r.k, "无网格") if r.k is not None else "无网格", r.n, r.c) for r in rows_g]
    total = row(None, "合计", sum(r.enterprises for r in by_officer), sum(r.covered for r in by_officer))
    return schemas.CoverageRead(on=on, by_officer=by_officer, by_grid=by_grid, total=total)

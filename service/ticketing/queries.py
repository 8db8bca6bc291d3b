"""The read side of tickets: the response model, visibility-checked loads, history, lists (SPEC §1, §7)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, select

from service import clock
from service.auth.actor import Actor
from service.calendar.service import get_calendar
from service.common.enums import STATUS_LABELS, Role
from service.common.schemas import INT32_MAX
from service.errors import FieldError, NotFound
from service.sla.deadlines import deadline_view
from service.tickets import schemas
from service.tickets.models import Ticket, TicketCoDepartment, TicketEvent
from service.tickets.visibility import scope_of, ticket_visibility


def ticket_read(session: Session, ticket: Ticket, actor: Actor) -> schemas.TicketRead:
    """The response model of ``ticket`` as ``actor`` reads it: with its co-handling departments, and
    the number of the ticket it was merged into only when ``actor`` may open that ticket (SPEC §1: a
    number of a ticket out of scope is not shown, whatever path would reveal it)."""
    co: list[int] = []
    if ticket.lead_department_id is not None:  # co-handlers exist only beside a lead (dispatch sets
        co = session.exec(                     # both, return clears both): no query otherwise
            select(TicketCoDepartment.department_id).where(TicketCoDepartment.ticket_id == ticket.id)
        ).all()
    dup = None
    if ticket.duplicate_of_id is not None and scope_of(session, actor).can_see_ticket(ticket.duplicate_of_id):
        dup = session.get(Ticket, ticket.duplicate_of_id).number
    data = ticket.model_dump()
    data.update(status_label=STATUS_LABELS[ticket.status], co_department_ids=sorted(co), duplicate_of=dup)
    data.update(deadline_view(get_calendar(session), ticket, clock.now()))
    return schemas.TicketRead.model_validate(data)


#: Event payload entries that name another ticket (merge's ``into``, link's ``other``).
OTHER_TICKET_KEYS = ("into", "other")


def list_events(session: Session, actor: Actor, ticket: Ticket) -> list[schemas.TicketEventRead]:
    """The ticket's history, oldest first; enterprise users do not see internal events. A payload
    entry naming another ticket the actor may not open (:data:`OTHER_TICKET_KEYS`) reads ``None``
    (SPEC §1)."""
    stmt = select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)
    if actor.role == Role.enterprise:
        stmt = stmt.where(TicketEvent.visibility == "public")
    events = [schemas.TicketEventRead.model_validate(e) for e in session.exec(stmt.order_by(TicketEvent.id)).all()]
    named = {e.payload[k] for e in events for k in OTHER_TICKET_KEYS if isinstance(e.payload.get(k), str)}
    if named:
        visible = scope_of(session, actor).visible_numbers(named)
        for e in events:
            hidden = {k: None for k in OTHER_TICKET_KEYS if isinstance(e.payload.get(k), str)
                      and e.payload[k] not in visible}
            if hidden:
                e.payload = {**e.payload, **hidden}
    return events


@dataclass
class TicketFilter:
    """Filters of ``GET /tickets`` (all optional; combined with AND).

    ``created_from``/``created_to`` bound ``submitted_at`` (aware datetimes, half-open
    ``[from, to)``); ``q`` is a case-insensitive substring of title or description.
    """

    status: list[str] = field(default_factory=list)
    department_id: int | None = None
    grid_id: int | None = None
    category_id: int | None = None
    service_type: str | None = None
    channel: str | None = None
    enterprise_id: int | None = None
    priority: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    q: str | None = None


SORT_KEYS = {"submitted_at": Ticket.submitted_at, "updated_at": Ticket.updated_at}


def _encode_cursor(value: datetime, ticket_id: int) -> str:
    raw = json.dumps([value.isoformat(), ticket_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value, ticket_id = json.loads(raw)
        value, ticket_id = clock.as_utc(datetime.fromisoformat(value)), int(ticket_id)
        if not 0 <= ticket_id <= INT32_MAX:
            raise ValueError(ticket_id)
        return value, ticket_id
    except (ValueError, TypeError, OverflowError, json.JSONDecodeError) as exc:
        raise FieldError("cursor", "无效的分页游标") from exc


def list_tickets(
    session: Session, actor: Actor, flt: TicketFilter, *, sort: str = "-submitted_at",
    limit: int = 50, cursor: str | None = None,
) -> tuple[list[Ticket], str | None]:
    """A page of visible tickets with keyset (cursor) pagination.

    ``sort`` is ``submitted_at`` or ``updated_at``, ``-`` prefix for descending; ties by id.
    Returns ``(tickets, next_cursor)``; ``next_cursor`` is ``None`` on the last page.

    Raises:
        FieldError (422): unknown sort key or malformed cursor.
    """
    desc = sort.startswith("-")
    key = sort.lstrip("-")
    if key not in SORT_KEYS:
        raise FieldError("sort", f"只能按 {', '.join(SORT_KEYS)} 排序（前缀 - 表示倒序）")
    col = SORT_KEYS[key]
    stmt = select(Ticket).where(ticket_visibility(session, actor))
    if flt.status:
        stmt = stmt.where(Ticket.status.in_(flt.status))
    if flt.department_id is not None:
        co = sa.exists().where(TicketCoDepartment.ticket_id == Ticket.id,
                               TicketCoDepartment.department_id == flt.department_id)
        stmt = stmt.where(sa.or_(Ticket.lead_department_id == flt.department_id, co))
    for column, value in ((Ticket.grid_id, flt.grid_id), (Ticket.category_id, flt.category_id),
                          (Ticket.service_type, flt.service_type), (Ticket.channel, flt.channel),
                          (Ticket.enterprise_id, flt.enterprise_id), (Ticket.priority, flt.priority)):
        if value is not None:
            stmt = stmt.where(column == value)
    if flt.created_from is not None:
        stmt = stmt.where(Ticket.submitted_at >= flt.created_from)
    if flt.created_to is not None:
        stmt = stmt.where(Ticket.submitted_at < flt.created_to)
    if flt.q:
        pattern = "%" + flt.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(sa.or_(Ticket.title.ilike(pattern, escape="\\"),
                                 Ticket.description.ilike(pattern, escape="\\")))
    if cursor:
        value, last_id = _decode_cursor(cursor)
        if desc:
            stmt = stmt.where(sa.or_(col < value, sa.and_(col == value, Ticket.id < last_id)))
        else:
            stmt = stmt.where(sa.or_(col > value, sa.and_(col == value, Ticket.id > last_id)))
    order = (col.desc(), Ticket.id.desc()) if desc else (col.asc(), Ticket.id.asc())
    rows = list(session.exec(stmt.order_by(*order).limit(limit + 1)).all())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = _encode_cursor(getattr(last, key), last.id)
    return rows, next_cursor



def find_ticket(session: Session, number: str) -> Ticket:
    """Load a ticket by number with no visibility check (workers, imports).

    Raises:
        NotFound (404): no such ticket.
    """
    ticket = session.exec(select(Ticket).where(Ticket.number == number)).first()
    if ticket is None:
        raise NotFound(f"工单 {number} 不存在")
    return ticket

"""Ticket use cases: submit, apply an action, read, list (SPEC §3, §7).

Plain functions taking a session; they flush but never commit (ARCHITECTURE rule 2). Every state
change goes through :func:`apply_action`: check the pure workflow table, apply the action's rule,
stamp the milestone column, append the event, bump the version (optimistic concurrency).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import Session, SQLModel, select

from service import clock
from service.auth.actor import Actor

# imported at the bottom of the dependency graph: sla and notifications import ticket models
from service.calendar.service import get_calendar  # noqa: E402
from service.categories.models import Category
from service.common.enums import STATUS_LABELS, Role, TicketStatus
from service.common.schemas import INT32_MAX
from service.config import get_settings
from service.db import insert_now
from service.departments.models import Department
from service.enterprises.models import Enterprise
from service.errors import (
    AppError,
    Conflict,
    FieldError,
    NotAllowed,
    NotFound,
    TicketNotFound,
    VersionConflict,
)
from service.notifications import service as notifications  # noqa: E402
from service.sla.deadlines import apply_sla, deadline_view  # noqa: E402
from service.tickets import intake, schemas
from service.tickets import workflow as wf
from service.tickets.models import (
    IdempotencyKey,
    Ticket,
    TicketCoDepartment,
    TicketEvent,
    TicketLink,
    TicketNumberCounter,
)
from service.tickets.visibility import enterprise_visibility, ticket_visibility

Action = wf.Action

ON_BEHALF_ROLES = intake.ON_BEHALF_ROLES  # kept importable from here
SELF_SERVICE_CHANNELS = intake.SELF_SERVICE_CHANNELS


class IdempotencyMismatch(AppError):
    """The ``Idempotency-Key`` was used before with another body (422)."""

    status, title, slug = 422, "幂等键已用于不同的请求", "idempotency-key-reused"


# --------------------------------------------------------------------------- numbers

def next_ticket_number(session: Session, year: int) -> str:
    """Allocate the next ticket number of ``year``: ``QF2026-000123`` (prefix from settings).

    PostgreSQL: one sequence per year (``ticket_number_<year>``), non-blocking under concurrency;
    a rolled-back submission leaves a gap (numbers are unique and increasing, not gap-free).
    SQLite: a counter row per year (writers are serialised anyway).
    """
    prefix = get_settings().ticket_number_prefix
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        seq = f"ticket_number_{int(year)}"
        # One round trip and no SAVEPOINT: to_regclass() gives NULL (not an error that would
        # abort the transaction) when the sequence does not exist yet, and nextval(NULL) is NULL.
        value = session.execute(sa.text("SELECT nextval(to_regclass(:seq))"), {"seq": seq}).scalar_one()
        if value is None:
            # First ticket of the year: create the sequence in its own committed transaction
            # (``bind`` is a Connection when the session is bound to one, as in tests), then call
            # nextval by OID. By name would still fail: this transaction's failed lookup left a
            # negative catalog-cache entry that a lock-free name lookup does not refresh.
            oid = _create_sequence(bind, seq)
            value = session.execute(sa.text("SELECT nextval(CAST(:oid AS regclass))"),
                                    {"oid": oid}).scalar_one()
    else:
        c = TicketNumberCounter.__table__.c
        # on the session's connection (Core): through session.execute this UPDATE of a mapped
        # table takes the ORM's bulk path, which walks the session's objects to synchronise them
        # (a third of an import's time on SQLite, docs/import.md)
        value = session.connection().execute(
            sa.update(TicketNumberCounter.__table__).where(c.year == year)
            .values(last_value=c.last_value + 1).returning(c.last_value)).scalar()
        if value is None:
            session.execute(sa.insert(TicketNumberCounter.__table__).values(year=year, last_value=1))
            value = 1
    return f"{prefix}{year}-{value:06d}"


def reserve_ticket_numbers(session: Session, year: int, count: int) -> list[str]:
    """``count`` ticket numbers of ``year`` for :func:`create_ticket` (``number=``), in order.

    SQLite: one UPDATE of the year's counter for all of them (the importer reserves a batch's
    numbers at once: a number per row cost a statement per row). A reserved number that is not
    used leaves a gap, as a rolled-back submission does on PostgreSQL. PostgreSQL: one
    :func:`next_ticket_number` each (``nextval`` is cheap there).

    Raises:
        ValueError: ``count < 0``.
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    if count == 0:
        return []
    if session.get_bind().dialect.name == "postgresql":
        return [next_ticket_number(session, year) for _ in range(count)]
    prefix = get_settings().ticket_number_prefix
    c = TicketNumberCounter.__table__.c
    last = session.connection().execute(
        sa.update(TicketNumberCounter.__table__).where(c.year == year)
        .values(last_value=c.last_value + count).returning(c.last_value)).scalar()
    if last is None:
        session.connection().execute(sa.insert(TicketNumberCounter.__table__).values(year=year, last_value=count))
        last = count
    return [f"{prefix}{year}-{value:06d}" for value in range(last - count + 1, last + 1)]


def _create_sequence(bind: sa.Engine | sa.Connection, seq: str) -> int:
    """``CREATE SEQUENCE IF NOT EXISTS seq`` on a connection of its own (committed at once, so it
    outlives a rolled-back submission); returns its OID. Two processes creating it at the same
    moment can collide on the catalog's unique index: the loser reads the winner's sequence."""
    engine = bind.engine if isinstance(bind, sa.Connection) else bind
    for attempt in range(3):
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f"CREATE SEQUENCE IF NOT EXISTS {seq}"))
                oid = conn.execute(sa.text("SELECT CAST(to_regclass(:seq) AS oid)"), {"seq": seq}).scalar_one()
                conn.commit()
                return int(oid)
        except sa.exc.IntegrityError:  # pragma: no cover - concurrent first tickets of a year
            if attempt == 2:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


# --------------------------------------------------------------------------- reading

def ticket_read(session: Session, ticket: Ticket) -> schemas.TicketRead:
    """The response model of ``ticket`` (with co-handling departments and duplicate-of number)."""
    co: list[int] = []
    if ticket.lead_department_id is not None:  # co-handlers exist only beside a lead (dispatch sets
        co = session.exec(                     # both, return clears both): no query otherwise
            select(TicketCoDepartment.department_id).where(TicketCoDepartment.ticket_id == ticket.id)
        ).all()
    dup = session.get(Ticket, ticket.duplicate_of_id).number if ticket.duplicate_of_id else None
    data = ticket.model_dump()
    data.update(status_label=STATUS_LABELS[ticket.status], co_department_ids=sorted(co), duplicate_of=dup)
    data.update(deadline_view(get_calendar(session), ticket, clock.now()))
    return schemas.TicketRead.model_validate(data)


def get_visible_ticket(session: Session, actor: Actor, number: str, *, for_update: bool = False) -> Ticket:
    """Load the ticket ``number`` if ``actor`` may see it.

    Raises:
        TicketNotFound (404): no such ticket, or not visible to ``actor`` (SPEC §1).
    """
    if "\x00" in number:  # cannot exist (and PostgreSQL refuses NUL in text)
        raise TicketNotFound(f"工单 {number!r} 不存在")
    stmt = select(Ticket).where(Ticket.number == number, ticket_visibility(session, actor))
    if for_update:
        stmt = stmt.with_for_update()
    ticket = session.exec(stmt).first()
    if ticket is None:
        raise TicketNotFound(f"工单 {number} 不存在")
    return ticket


def list_events(session: Session, actor: Actor, ticket: Ticket) -> list[TicketEvent]:
    """The ticket's history, oldest first; enterprise users do not see internal events."""
    stmt = select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)
    if actor.role == Role.enterprise:
        stmt = stmt.where(TicketEvent.visibility == "public")
    return list(session.exec(stmt.order_by(TicketEvent.id)).all())


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


# --------------------------------------------------------------------------- submission

def _resolve_category(session: Session, category_id: int | None, category_code: str | None) -> Category:
    if category_id is not None:
        category = session.get(Category, category_id)
        if category is None:
            raise FieldError("category_id", f"分类 {category_id} 不存在")
    else:
        category = session.exec(select(Category).where(Category.code == category_code)).first()
        if category is None:
            raise FieldError("category_code", f"分类 {category_code} 不存在")
    return category


def request_hash(data: BaseModel) -> str:
    """SHA-256 of the canonical JSON of a validated request body (for idempotency)."""
    canonical = json.dumps(data.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def create_ticket(
    session: Session,
    *,
    enterprise: Enterprise,
    category: Category,
    title: str,
    description: str,
    channel: str,
    priority: str = "normal",
    actor: Actor,
    at: datetime | None = None,
    external_ref: str | None = None,
    history: bool = False,
    number: str | None = None,
) -> Ticket:
    """Insert a new ``submitted`` ticket and its ``submit`` event (no authorisation checks:
    callers such as :func:`submit_ticket` and the importer do those).

    ``at`` (aware) is the submission instant, default now; ``grid_id`` and ``officer_id`` are
    copied from the enterprise at this moment. ``history=True`` replays a known past submission
    (imports): deadlines are recorded but no reminder/escalation is armed and nobody is notified.
    ``number``: a number reserved with :func:`reserve_ticket_numbers` for the submission's year
    (default: the next one, :func:`next_ticket_number`).
    """
    at = at or clock.now()
    columns = intake.new_ticket_columns(
        session, enterprise_id=enterprise.id, grid_id=enterprise.grid_id,
        officer_id=enterprise.officer_id or intake.fallback_officer(actor), category_id=category.id,
        service_type=category.service_type, title=title, description=description, channel=channel,
        priority=priority, submitted_by_id=actor.user_id, at=at, external_ref=external_ref, arm=not history,
    )
    ticket = Ticket(number=number or next_ticket_number(session, at.astimezone(clock.SHANGHAI).year), **columns)
    _insert_new(session, ticket)
    if not history:
        notifications.notify_ticket(session, ticket, "submitted", at=at)
    _EventDraft(ticket_id=ticket.id, actor_id=actor.user_id, actor_role=actor.role, action="submit",
                from_status=None, to_status=ticket.status, created_at=at,
                payload={"channel": channel}).insert(session)  # Core: no table-model instance
    return ticket


def _insert_new(session: Session, obj: SQLModel) -> None:
    """INSERT ``obj`` at once and keep it as a persistent, clean object (:func:`service.db.insert_now`)."""
    insert_now(session, [obj])


def submit_ticket(
    session: Session, actor: Actor, data: schemas.TicketCreate, *, idempotency_key: str | None = None
) -> tuple[Ticket, bool]:
    """Submit a ticket (SPEC §3, §7). Returns ``(ticket, created)``; ``created`` is False when an
    earlier submission with the same ``Idempotency-Key`` and body is replayed.

    Raises:
        NotAllowed (403): role may not submit, or an enterprise submits for another enterprise.
        FieldError (422): unknown enterprise/category, missing channel for an on-behalf submission.
        IdempotencyMismatch (422): the key was used with another body.
    """
    enterprise_id, channel = intake.resolve_submitter(actor, data)

    key_row: IdempotencyKey | None = None
    if idempotency_key is not None:
        if not 1 <= len(idempotency_key) <= 255:
            raise FieldError("Idempotency-Key", "长度须为1-255个字符")
        digest = request_hash(data)
        replay = _reserve_idempotency_key(session, actor, idempotency_key, digest)
        if isinstance(replay, Ticket):
            return replay, False
        key_row = replay

    # enterprise (with visibility) and category in one round trip; when either is missing, the
    # separate lookups below name the field at fault
    category_cond = (Category.id == data.category_id if data.category_id is not None
                     else Category.code == data.category_code)
    found = session.execute(
        select(Enterprise, Category).join_from(Enterprise, Category, sa.true())
        .where(Enterprise.id == enterprise_id, enterprise_visibility(session, actor), category_cond)
    ).first()
    if found is None:
        enterprise = session.exec(
            select(Enterprise).where(Enterprise.id == enterprise_id, enterprise_visibility(session, actor))
        ).first()
        if enterprise is None:
            raise FieldError("enterprise_id", f"企业 {enterprise_id} 不存在或不在您的服务范围内")
        category = _resolve_category(session, data.category_id, data.category_code)
    else:
        enterprise, category = found
    ticket = create_ticket(session, enterprise=enterprise, category=category, title=data.title,
                           description=data.description, channel=channel,
                           priority=data.priority.value, actor=actor)
    if key_row is not None:
        key_row.ticket_id = ticket.id
    session.flush()
    return ticket, True


def _reserve_idempotency_key(session: Session, actor: Actor, key: str, digest: str) -> Ticket | IdempotencyKey:
    """Claim ``key`` for this submission, or return the ticket of the earlier one.

    The key row is inserted first (``INSERT ... ON CONFLICT DO NOTHING``: one round trip, no
    savepoint): a concurrent retry blocks on the primary key until the first transaction
    commits, inserts nothing, then reads the committed row (PostgreSQL READ COMMITTED).
    """
    def existing() -> Ticket | None:
        row = session.get(IdempotencyKey, (actor.user_id, key), populate_existing=True)
        if row is None:
            return None
        if row.request_hash != digest:
            raise IdempotencyMismatch("该 Idempotency-Key 已用于内容不同的提交", field="Idempotency-Key")
        ticket = session.get(Ticket, row.ticket_id) if row.ticket_id else None
        if ticket is None:  # pragma: no cover - a reserved key always gets its ticket in the same tx
            raise VersionConflict("相同 Idempotency-Key 的提交正在处理，请稍后重试", status=409)
        return ticket

    row = IdempotencyKey(user_id=actor.user_id, key=key, request_hash=digest)
    table = IdempotencyKey.__table__
    dialect_insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = (dialect_insert(table).on_conflict_do_nothing(index_elements=[table.c.user_id, table.c.key])
            .returning(table.c.user_id))
    if session.execute(stmt, {c.key: getattr(row, c.key) for c in table.columns}).first() is not None:
        make_transient_to_detached(row)  # persistent, clean: setting ticket_id later is an UPDATE
        session.add(row)
        return row
    found = existing()
    if found is None:  # pragma: no cover - the conflicting row is committed when we get here
        raise VersionConflict("相同 Idempotency-Key 的提交正在处理，请稍后重试", status=409)
    return found


# --------------------------------------------------------------------------- actions

#: The request body model of each action (one endpoint each).
ACTION_BODIES: dict[Action, type[BaseModel]] = {
    Action.accept: schemas.EmptyIn,
    Action.reject: schemas.ReasonIn,
    Action.answer: schemas.TextIn,
    Action.dispatch: schemas.DispatchIn,
    Action.claim: schemas.EmptyIn,
    Action.return_: schemas.ReasonIn,
    Action.hold: schemas.ReasonIn,
    Action.resume: schemas.EmptyIn,
    Action.reply: schemas.TextIn,
    Action.confirm: schemas.ConfirmIn,
    Action.reopen: schemas.ReopenIn,
    Action.comment: schemas.CommentIn,
    Action.add_info: schemas.AddInfoIn,
    Action.remind: schemas.RemindIn,
    Action.escalate: schemas.EscalateIn,
    Action.merge: schemas.MergeIn,
    Action.link: schemas.LinkIn,
    Action.auto_close: schemas.EmptyIn,
    Action.request_extension: schemas.RequestExtensionIn,
    Action.approve_extension: schemas.DecideExtensionIn,
    Action.deny_extension: schemas.DecideExtensionIn,
}


@dataclass
class _EventDraft:
    """The event an action appends, filled in by its handler, inserted with one Core INSERT
    (a table-model instance per event costs more than the rest of a replayed action)."""

    ticket_id: int
    actor_id: int | None
    actor_role: str
    action: str
    from_status: str | None
    created_at: datetime
    reason: str | None = None
    to_status: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    visibility: str = "public"

    def insert(self, session: Session) -> None:
        deferred = session.info.get(_DEFERRED_EVENTS)
        if deferred is not None:  # inside deferred_events(): written together at its end
            deferred.append(dict(self.__dict__))
            return
        session.execute(sa.insert(TicketEvent.__table__), [self.__dict__])


_DEFERRED_EVENTS = "qifu.deferred_events"


@contextmanager
def deferred_events(session: Session) -> Iterator[None]:
    """Collect the events that :func:`create_ticket` and :func:`apply_action` append inside the
    block and insert them, in order, with one statement when it ends without an error (dropped
    on an error: the caller rolls back). For replays of history (the importer: six events per
    replied row cost six statements). Nothing inside may read the ticket's events back.
    """
    if session.info.get(_DEFERRED_EVENTS) is not None:
        yield  # nested: the outer block writes them
        return
    events: list[dict[str, Any]] = []
    session.info[_DEFERRED_EVENTS] = events
    try:
        yield
    finally:
        session.info.pop(_DEFERRED_EVENTS, None)
    if events:
        session.execute(sa.insert(TicketEvent.__table__), events)


@dataclass
class _Ctx:
    session: Session
    actor: Actor
    ticket: Ticket
    body: Any
    at: datetime
    event: _EventDraft
    extension_days: int | None = None  # set by approve_extension: moves the reply deadline


#: Which notification each action sends (recipients: service.notifications.service.recipients).
NOTIFY_ON: dict[Action, str] = {
    Action.dispatch: "dispatched", Action.reopen: "reopened", Action.return_: "returned",
    Action.reply: "replied", Action.answer: "replied", Action.confirm: "closed",
    Action.auto_close: "closed", Action.remind: "reminded", Action.escalate: "escalated",
    Action.request_extension: "extension_requested", Action.approve_extension: "extension_decided",
    Action.deny_extension: "extension_decided",
}


def _require_lead_department(ctx: _Ctx) -> None:
    if ctx.actor.role == Role.department and ctx.actor.department_id != ctx.ticket.lead_department_id:
        raise NotAllowed("只有主办单位可以执行此操作，协办单位可以评论")


def _on_accept(ctx: _Ctx) -> None:
    ctx.ticket.accepted_at = ctx.at


def _on_reject(ctx: _Ctx) -> None:
    ctx.ticket.rejected_at = ctx.at
    ctx.ticket.reject_reason = ctx.body.reason


def _on_answer(ctx: _Ctx) -> None:
    t = ctx.ticket
    t.answered_at = t.replied_at = ctx.at
    t.first_replied_at = t.first_replied_at or ctx.at
    t.reply_text = ctx.body.text
    ctx.event.payload = {"text": ctx.body.text}


def _active_department(session: Session, department_id: int, field_name: str) -> Department:
    dept = session.get(Department, department_id)
    if dept is None or not dept.is_active:
        raise FieldError(field_name, f"承办单位 {department_id} 不存在或已停用")
    return dept


def _on_dispatch(ctx: _Ctx) -> None:
    t, body, session = ctx.ticket, ctx.body, ctx.session
    lead_id = body.lead_department_id
    if lead_id is None:
        lead_id = session.get(Category, t.category_id).default_department_id
        if lead_id is None:
            raise FieldError("lead_department_id", "该分类没有默认承办单位，请指定主办单位")
    _active_department(session, lead_id, "lead_department_id")
    co_ids = sorted(set(body.co_department_ids) - {lead_id})
    for i, dept_id in enumerate(co_ids):
        _active_department(session, dept_id, f"co_department_ids[{i}]")
    if t.lead_department_id is not None:  # co-handlers exist only beside a lead (return clears both)
        session.execute(sa.delete(TicketCoDepartment).where(TicketCoDepartment.ticket_id == t.id))
    session.add_all(TicketCoDepartment(ticket_id=t.id, department_id=d) for d in co_ids)
    t.lead_department_id = lead_id
    t.dispatched_at = ctx.at
    ctx.event.payload = {"lead_department_id": lead_id, "co_department_ids": co_ids}
    ctx.event.visibility = "public"


def _on_claim(ctx: _Ctx) -> None:
    _require_lead_department(ctx)
    ctx.ticket.claimed_at = ctx.at


def _on_return(ctx: _Ctx) -> None:
    _require_lead_department(ctx)
    t = ctx.ticket
    # delete first: the DELETE autoflushes, and a dirty ticket would be flushed (and its version
    # bumped) twice in one action
    ctx.session.execute(sa.delete(TicketCoDepartment).where(TicketCoDepartment.ticket_id == t.id))
    ctx.event.payload = {"department_id": t.lead_department_id}
    t.return_count += 1
    t.lead_department_id = None
    t.claimed_at = None


def _on_hold(ctx: _Ctx) -> None:
    _require_lead_department(ctx)


def _on_resume(ctx: _Ctx) -> None:
    _require_lead_department(ctx)


def _on_reply(ctx: _Ctx) -> None:
    _require_lead_department(ctx)
    t = ctx.ticket
    t.replied_at = ctx.at
    t.first_replied_at = t.first_replied_at or ctx.at
    t.reply_text = ctx.body.text
    ctx.event.payload = {"text": ctx.body.text, "department_id": t.lead_department_id}


def _on_confirm(ctx: _Ctx) -> None:
    t = ctx.ticket
    t.rating = ctx.body.rating
    t.closed_at = ctx.at
    ctx.event.payload = {"rating": ctx.body.rating, "comment": ctx.body.comment,
                         "callback": ctx.actor.role == Role.officer}


def _on_auto_close(ctx: _Ctx) -> None:
    ctx.ticket.rating = "none"
    ctx.ticket.closed_at = ctx.at


def _on_reopen(ctx: _Ctx) -> None:
    t = ctx.ticket
    if t.lead_department_id is None:  # pragma: no cover - replied/closed tickets of answer have none
        raise AppError("该工单没有主办单位，无法重办")
    if t.status == TicketStatus.replied:
        t.rating = "dissatisfied"
    t.reopen_count += 1
    t.dispatched_at = ctx.at
    t.claimed_at = None
    t.closed_at = None
    ctx.event.payload = {"lead_department_id": t.lead_department_id}


def _on_comment(ctx: _Ctx) -> None:
    if ctx.body.internal and ctx.actor.role == Role.enterprise:
        raise FieldError("internal", "企业用户不能发表内部评论")
    ctx.event.reason = ctx.body.text
    ctx.event.visibility = "internal" if ctx.body.internal else "public"


def _on_add_info(ctx: _Ctx) -> None:
    ctx.event.reason = ctx.body.text


def _on_remind(ctx: _Ctx) -> None:
    ctx.ticket.remind_count += 1
    ctx.event.reason = ctx.body.note
    ctx.event.visibility = "internal"


def _on_escalate(ctx: _Ctx) -> None:
    t = ctx.ticket
    level = ctx.body.level or min(t.escalation_level + 1, 2)
    if level <= t.escalation_level:
        raise FieldError("level", f"督办级别须高于当前级别 {t.escalation_level}")
    t.escalation_level = level
    if level >= 2:  # the running deadline is at level 2 by hand: its automatic level 2 is moot
        t.level2_at = None
    ctx.event.reason = ctx.body.reason
    ctx.event.payload = {"level": level}
    ctx.event.visibility = "internal"


def _other_ticket(ctx: _Ctx, number: str, field_name: str) -> Ticket:
    other = ctx.session.exec(
        select(Ticket).where(Ticket.number == number, ticket_visibility(ctx.session, ctx.actor))
    ).first()
    if other is None:
        raise FieldError(field_name, f"工单 {number} 不存在")
    if other.id == ctx.ticket.id:
        raise FieldError(field_name, "不能指向工单自身")
    return other


def _on_merge(ctx: _Ctx) -> None:
    survivor = _other_ticket(ctx, ctx.body.into, "into")
    if survivor.status == TicketStatus.rejected:
        raise FieldError("into", f"工单 {survivor.number} 已不予受理，不能作为合并目标")
    t = ctx.ticket
    t.duplicate_of_id = survivor.id
    t.reject_reason = "duplicate"
    t.rejected_at = ctx.at
    ctx.session.add(TicketLink(ticket_id=t.id, other_ticket_id=survivor.id, kind="duplicate_of",
                               created_at=ctx.at))
    ctx.event.reason = "duplicate"
    ctx.event.payload = {"into": survivor.number}


def _on_link(ctx: _Ctx) -> None:
    other = _other_ticket(ctx, ctx.body.other, "other")
    exists = ctx.session.get(TicketLink, (ctx.ticket.id, other.id, "related"))
    if exists is None:
        ctx.session.add(TicketLink(ticket_id=ctx.ticket.id, other_ticket_id=other.id, kind="related",
                                   created_at=ctx.at))
    ctx.event.reason = ctx.body.note
    ctx.event.payload = {"other": other.number}


def _on_request_extension(ctx: _Ctx) -> None:
    """SPEC §3-§4: asked by the lead department before the reply deadline, at most 15 working days
    per request and 2 approved per ticket, one pending at a time."""
    _require_lead_department(ctx)
    t = ctx.ticket
    if t.extension_requested_days is not None:
        raise Conflict(f"已有待审批的延期申请（{t.extension_requested_days}个工作日）")
    if t.extension_count >= wf.MAX_EXTENSIONS:
        raise Conflict(f"每件工单最多延期{wf.MAX_EXTENSIONS}次")
    if t.reply_by is None or (t.status == TicketStatus.in_progress and ctx.at >= t.reply_by):
        raise Conflict("延期须在答复期限届满前申请")
    t.extension_requested_days = ctx.body.days
    ctx.event.payload = {"days": ctx.body.days, "reply_by": t.reply_by.isoformat()}
    ctx.event.visibility = "internal"


def _decide_extension(ctx: _Ctx, approved: bool) -> None:
    t = ctx.ticket
    if t.extension_requested_days is None:
        raise Conflict("没有待审批的延期申请")
    days = t.extension_requested_days
    t.extension_requested_days = None
    if approved:
        t.extension_count += 1
        ctx.extension_days = days
    ctx.event.reason = ctx.body.note
    ctx.event.payload = {"days": days, "approved": approved}
    ctx.event.visibility = "internal"


def _on_approve_extension(ctx: _Ctx) -> None:
    _decide_extension(ctx, True)


def _on_deny_extension(ctx: _Ctx) -> None:
    _decide_extension(ctx, False)


HANDLERS: dict[Action, Callable[[_Ctx], None]] = {
    Action.request_extension: _on_request_extension, Action.approve_extension: _on_approve_extension,
    Action.deny_extension: _on_deny_extension,
    Action.accept: _on_accept, Action.reject: _on_reject, Action.answer: _on_answer,
    Action.dispatch: _on_dispatch, Action.claim: _on_claim, Action.return_: _on_return,
    Action.hold: _on_hold, Action.resume: _on_resume, Action.reply: _on_reply,
    Action.confirm: _on_confirm, Action.reopen: _on_reopen, Action.comment: _on_comment,
    Action.add_info: _on_add_info, Action.remind: _on_remind, Action.escalate: _on_escalate,
    Action.merge: _on_merge, Action.link: _on_link, Action.auto_close: _on_auto_close,
}


def apply_action(
    session: Session,
    actor: Actor,
    ticket: Ticket,
    action: Action | str,
    body: BaseModel | dict | None = None,
    *,
    expected_version: int | None = None,
    at: datetime | None = None,
    history: bool = False,
) -> Ticket:
    """Apply ``action`` to ``ticket`` as ``actor`` (SPEC §3) and flush.

    Args:
        body: the action's request model (see :data:`ACTION_BODIES`) or a dict validated into it.
        expected_version: the ``If-Match`` version; a mismatch changes nothing.
        at: the instant of the action (aware; default now); imports replay original times.
        history: replaying a known past action (imports): no notification, no sweep trigger
            armed, and no flush — the caller flushes once after the ticket's whole history (one
            UPDATE for all its actions; the version still guards that UPDATE).

    Raises:
        IllegalTransition (409): not legal from the current status (names status and allowed actions).
        NotAllowed (403): wrong role, or a co-handling department acting as the lead.
        VersionConflict: 412 when ``expected_version`` is stale; 409 when a concurrent update won.
        FieldError (422): bad body field (unknown department, ticket, ...).
    """
    action = Action(action)
    model = ACTION_BODIES[action]
    if body is None:
        body = model()
    elif isinstance(body, dict):
        body = model.model_validate(body)
    if expected_version is not None and expected_version != ticket.version:
        raise VersionConflict(
            f"工单已被修改（当前版本 {ticket.version}，请求版本 {expected_version}），请刷新后重试",
            current_version=ticket.version,
        )
    transition = wf.check(ticket.status, action, actor.role, return_count=ticket.return_count,
                          service_type=ticket.service_type)
    at = at or clock.now()
    from_status = ticket.status
    reason = getattr(body, "reason", None)
    event = _EventDraft(ticket_id=ticket.id, actor_id=actor.user_id, actor_role=actor.role,
                        action=action.value, from_status=from_status, reason=reason, created_at=at)
    ctx = _Ctx(session=session, actor=actor, ticket=ticket, body=body, at=at, event=event)
    # Nothing is flushed until the ticket, its event and its deadlines are complete: the flush
    # below is the one UPDATE ... WHERE version = <loaded> that wins or loses a race.
    with session.no_autoflush:
        HANDLERS[action](ctx)
        if transition.next_status is not None:
            ticket.status = transition.next_status.value
        event.to_status = ticket.status
        ticket.updated_at = at
        apply_sla(session, ticket, action.value, at, extension_days=ctx.extension_days, arm=not history)
    session.add(ticket)
    if history:
        event.insert(session)  # the ticket's UPDATE waits for the caller's one flush
        return ticket
    try:
        session.flush()
    except StaleDataError as exc:
        raise VersionConflict("工单已被他人同时修改，请刷新后重试", status=409) from exc
    event.insert(session)
    kind = NOTIFY_ON.get(action)
    if kind is not None:
        notifications.notify_ticket(session, ticket, kind, step=ticket.due_step, at=at,
                                    body=event.reason or "")
    return ticket


def find_ticket(session: Session, number: str) -> Ticket:
    """Load a ticket by number with no visibility check (workers, imports).

    Raises:
        NotFound (404): no such ticket.
    """
    ticket = session.exec(select(Ticket).where(Ticket.number == number)).first()
    if ticket is None:
        raise NotFound(f"工单 {number} 不存在")
    return ticket

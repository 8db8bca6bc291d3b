"""Submission through the ORM (SPEC §3 ``submit``, §7): the general path (SQLite, imports, cadences,
on-behalf submissions, and whatever :mod:`service.ticketing.intake_pg` hands back).

Plain functions taking a session; they flush but never commit (ARCHITECTURE rule 2).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import Session, SQLModel, select

from service import clock
from service.auth.actor import Actor
from service.categories.models import Category
from service.db import insert_now, new_row
from service.enterprises.models import Enterprise
from service.errors import AppError, FieldError, VersionConflict
from service.notifications import fanout
from service.ticketing import intake
from service.ticketing.actions import EventDraft
from service.tickets import schemas
from service.tickets.effects import EFFECTS
from service.tickets.models import IdempotencyKey, Ticket
from service.tickets.numbering import next_ticket_number
from service.tickets.visibility import enterprise_visibility
from service.triage import duplicates


class IdempotencyMismatch(AppError):
    """The ``Idempotency-Key`` was used before with another body (422)."""

    status, title, slug = 422, "幂等键已用于不同的请求", "idempotency-key-reused"


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
    event_payload: dict | None = None,
) -> Ticket:
    """Insert a new ``submitted`` ticket and its ``submit`` event (no authorisation checks:
    callers such as :func:`submit_ticket` and the importer do those).

    ``at`` (aware) is the submission instant, default now; ``grid_id`` and ``officer_id`` are
    copied from the enterprise at this moment. ``history=True`` replays a known past submission
    (imports): deadlines are recorded but no reminder/escalation is armed and nobody is notified.
    ``number``: a number reserved with :func:`service.tickets.numbering.reserve_ticket_numbers` for
    the submission's year (default: the next one, :func:`next_ticket_number`). ``event_payload``:
    more members of the ``submit`` event's payload beside ``channel`` (an intake channel's own
    data, e.g. Open311's location and ``media_url``).
    """
    at = at or clock.now()
    columns = intake.new_ticket_columns(
        session, enterprise_id=enterprise.id, grid_id=enterprise.grid_id,
        officer_id=enterprise.officer_id or intake.fallback_officer(actor), category_id=category.id,
        service_type=category.service_type, title=title, description=description, channel=channel,
        priority=priority, submitted_by_id=actor.user_id, at=at, external_ref=external_ref, arm=not history,
    )
    number = number or next_ticket_number(session, at.astimezone(clock.office_zone()).year)
    ticket = new_row(Ticket, {"number": number, **columns})  # Ticket(number=..., **columns), cheaper
    _insert_new(session, ticket)
    if not history:  # the near-duplicate index of open tickets (imports: run reindex_open after)
        duplicates.index_ticket(session, ticket.id, title, description)
    effects = EFFECTS["submit"]
    if not history:
        fanout.notify_tickets(session, [ticket.id], effects.notify, at=at)
    EventDraft(ticket_id=ticket.id, actor_id=actor.user_id, actor_role=actor.role, action="submit",
               from_status=None, to_status=ticket.status, created_at=at, payload={**(event_payload or {}), "channel": channel},
               visibility=effects.visibility).insert(session)  # Core (or deferred_events): no model instance
    return ticket


def _insert_new(session: Session, obj: SQLModel) -> None:
    """INSERT ``obj`` at once and keep it as a persistent, clean object (:func:`service.db.insert_now`)."""
    insert_now(session, [obj])


def submit_ticket(
    session: Session, actor: Actor, data: schemas.TicketCreate, *, idempotency_key: str | None = None,
    event_payload: dict | None = None,
) -> tuple[Ticket, bool]:
    """Submit a ticket (SPEC §3, §7). Returns ``(ticket, created)``; ``created`` is False when an
    earlier submission with the same ``Idempotency-Key`` and body is replayed. ``event_payload``:
    see :func:`create_ticket`.

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
                           priority=data.priority.value, actor=actor, event_payload=event_payload)
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


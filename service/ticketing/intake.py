"""Ticket intake rules (SPEC §1 who may submit, §3 ``submit``, §4 deadlines): what a new ticket is.

Every way a ticket comes into being goes through these functions, so the rules live in one place:

- :func:`resolve_submitter` decides for whom and through which channel a caller submits;
- :func:`new_ticket_columns` gives the column values of the new ``submitted`` ticket, with its
  SLA deadlines and sweep triggers (:func:`service.sla.deadlines.apply_sla`).

Two writers use them: :func:`service.ticketing.service.create_ticket` (the ORM path: SQLite, imports,
submissions on behalf of an enterprise) and :mod:`service.ticketing.intake_pg` (PostgreSQL: a
self-service submission as one statement, docs/performance.md).
"""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import Any

from pydantic_core import PydanticUndefined
from sqlmodel import Session

from service.auth.actor import Actor
from service.common.enums import Channel, Role, TicketStatus
from service.errors import FieldError, NotAllowed
from service.sla.deadlines import apply_sla
from service.tickets import schemas
from service.tickets.models import Ticket

#: Roles that may submit on behalf of an enterprise, with a channel (SPEC §1).
ON_BEHALF_ROLES = frozenset({Role.officer.value, Role.admin.value})
#: Channels an enterprise user may use for itself (``open311``: through an Open311 API key bound to
#: the enterprise, service/open311, docs/open311.md).
SELF_SERVICE_CHANNELS = frozenset({Channel.web.value, Channel.app.value, Channel.email.value,
                                   Channel.open311.value})


def resolve_submitter(actor: Actor, data: schemas.TicketCreate) -> tuple[int, str]:
    """``(enterprise_id, channel)`` of a submission by ``actor`` (SPEC §1, §7).

    An enterprise user submits for its own enterprise through a self-service channel (default
    ``web``); an officer or admin submits on behalf of a named enterprise and names the channel
    (hotline, window, ...). Whether that enterprise exists and is in the officer's scope is the
    writer's check (it needs the database).

    Raises:
        NotAllowed (403): the role may not submit, or an enterprise submits for another one.
        FieldError (422): a self-service submission through a staff channel; an on-behalf
            submission without ``enterprise_id`` or ``channel``.
    """
    if actor.role == Role.enterprise:
        if data.enterprise_id is not None and data.enterprise_id != actor.enterprise_id:
            raise NotAllowed("企业用户只能为本企业提交诉求", field="enterprise_id")
        channel = (data.channel or Channel.web).value
        if channel not in SELF_SERVICE_CHANNELS:
            raise FieldError("channel", f"企业自行提交只能使用 {', '.join(sorted(SELF_SERVICE_CHANNELS))}")
        if actor.enterprise_id is None:
            raise NotAllowed("该企业用户未关联企业", field="enterprise_id")
        return actor.enterprise_id, channel
    if actor.role in ON_BEHALF_ROLES:
        if data.enterprise_id is None:
            raise FieldError("enterprise_id", "代企业提交时必须指定 enterprise_id")
        if data.channel is None:
            raise FieldError("channel", "代企业提交时必须指定渠道 channel")
        return data.enterprise_id, data.channel.value
    raise NotAllowed(f"角色 {actor.role} 不能提交诉求")


def fallback_officer(actor: Actor) -> int | None:
    """The responsible officer when the enterprise has none: the officer who submits for it."""
    return actor.user_id if actor.role == Role.officer else None


def _column_defaults() -> dict[str, Any]:
    # the model's defaults of every ticket column but ``id`` and ``number`` (None where the model
    # has none, or a factory: those are set below)
    out = {}
    for column in Ticket.__table__.columns:
        if column.key in ("id", "number"):
            continue
        f = Ticket.model_fields[column.key]
        out[column.key] = None if f.default is PydanticUndefined or f.default_factory else f.default
    return out


_DEFAULTS = _column_defaults()


def new_ticket_columns(
    session: Session,
    *,
    enterprise_id: int,
    grid_id: int | None,
    officer_id: int | None,
    category_id: int,
    service_type: str,
    title: str,
    description: str,
    channel: str,
    priority: str,
    submitted_by_id: int | None,
    at: datetime,
    external_ref: str | None = None,
    arm: bool = True,
) -> dict[str, Any]:
    """The column values of a new ``submitted`` ticket (every column but ``id`` and ``number``).

    ``at`` is the submission instant (aware); ``grid_id`` and ``officer_id`` are the enterprise's
    at that moment (``officer_id``: else :func:`fallback_officer`). The SLA deadlines run from
    ``at`` with the policy and calendar in force (SPEC §4): ``accept_by``, and for a consultation
    also ``reply_by`` (its first reply is due from submission); ``due_*`` and the sweep triggers
    follow. ``arm=False`` (replayed history) records the deadlines but arms no trigger.

    ``session`` is used only to read the calendar and the policies, which are cached per process
    (no query while :func:`service.calendar.service.calendar_is_fresh` and
    :func:`service.sla.policy.snapshot_is_fresh` hold).
    """
    columns = dict(_DEFAULTS)
    columns.update(
        enterprise_id=enterprise_id, submitted_by_id=submitted_by_id, channel=channel,
        service_type=service_type, category_id=category_id, title=title, description=description,
        priority=priority, status=TicketStatus.submitted.value, officer_id=officer_id, grid_id=grid_id,
        submitted_at=at, updated_at=at, external_ref=external_ref,
    )
    draft = SimpleNamespace(id=None, **columns)  # apply_sla reads and sets ticket attributes
    apply_sla(session, draft, "submit", at, arm=arm)  # type: ignore[arg-type]
    result = vars(draft)
    del result["id"]
    return result

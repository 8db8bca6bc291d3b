"""Tickets (诉求/工单), their append-only events, links, co-handling departments and
idempotency keys (SPEC §3)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from service import clock
from service.common.enums import Channel, Priority, Role, ServiceType, TicketStatus
from service.db import UTCDateTime, check_in

_version_column = sa.Column("version", sa.Integer, nullable=False)


class Ticket(SQLModel, table=True):
    """A ticket. Status changes only through :func:`service.ticketing.service.apply_action`.

    Milestone columns (``*_at``, aware UTC) are stamped by the workflow; ``version`` is the
    optimistic-concurrency counter exposed as the ETag; counters ``reopen_count`` and
    ``return_count`` feed the statistics (SPEC §6).
    """

    __tablename__ = "ticket"
    __table_args__ = (
        check_in("status", [s.value for s in TicketStatus]),
        check_in("channel", [c.value for c in Channel]),
        check_in("service_type", [s.value for s in ServiceType]),
        check_in("priority", [p.value for p in Priority]),
        sa.CheckConstraint(
            "rating IS NULL OR rating IN ('satisfied', 'basically_satisfied', 'dissatisfied', 'none')",
            name="rating_valid",
        ),
        sa.Index("ix_ticket_status_submitted_at", "status", "submitted_at"),
        sa.Index("ix_ticket_submitted_at_id", "submitted_at", "id"),
        # the SLA sweeps (service/sla/sweeps.py) read only rows whose trigger is armed
        sa.Index("ix_ticket_remind_at", "remind_at", postgresql_where=sa.text("remind_at IS NOT NULL"),
                 sqlite_where=sa.text("remind_at IS NOT NULL")),
        sa.Index("ix_ticket_overdue_at", "overdue_at", postgresql_where=sa.text("overdue_at IS NOT NULL"),
                 sqlite_where=sa.text("overdue_at IS NOT NULL")),
        sa.Index("ix_ticket_level2_at", "level2_at", postgresql_where=sa.text("level2_at IS NOT NULL"),
                 sqlite_where=sa.text("level2_at IS NOT NULL")),
        sa.Index("ix_ticket_feedback_due", "due_at", postgresql_where=sa.text("status = 'replied'"),
                 sqlite_where=sa.text("status = 'replied'")),
        sa.Index("ix_ticket_officer_due", "officer_id", "due_at",
                 postgresql_where=sa.text("due_at IS NOT NULL"), sqlite_where=sa.text("due_at IS NOT NULL")),
        # "overdue now" of the statistics (sla.deadlines.overdue_clause) over a submission period:
        # only running tickets with a deadline, with every column a grouping, filter or visibility
        # of the statistics reads, so the live count is an index-only scan (docs/statistics.md)
        sa.Index("ix_ticket_running_due", "submitted_at", "due_at", "lead_department_id", "grid_id",
                 "category_id", "channel", "officer_id", "service_type",
                 postgresql_where=sa.text("due_at IS NOT NULL AND due_step <> 'feedback'"),
                 sqlite_where=sa.text("due_at IS NOT NULL AND due_step <> 'feedback'")),
    )
    # Optimistic concurrency: every UPDATE is "... WHERE version = <loaded>" and bumps it;
    # a lost race raises StaleDataError, rendered as 409 (SPEC §3).
    __mapper_args__ = {"version_id_col": _version_column}

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=32, unique=True)
    enterprise_id: int = Field(foreign_key="enterprise.id", index=True)
    submitted_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    # channel (10 values) and service_type (3) have no index of their own: too few values to pay
    # for one more index update on every submission (docs/performance.md)
    channel: str = Field(max_length=16)
    service_type: str = Field(max_length=16)
    category_id: int = Field(foreign_key="category.id", index=True)
    title: str = Field(max_length=200)
    description: str = Field(sa_type=sa.Text)
    priority: str = Field(default=Priority.normal.value, max_length=16)
    status: str = Field(default=TicketStatus.submitted.value, max_length=16)
    lead_department_id: int | None = Field(default=None, foreign_key="department.id", index=True)
    officer_id: int | None = Field(default=None, foreign_key="user_account.id", index=True)
    grid_id: int | None = Field(default=None, foreign_key="grid.id", index=True)
    rating: str | None = Field(default=None, max_length=32)
    reopen_count: int = 0
    return_count: int = 0
    escalation_level: int = 0
    remind_count: int = 0
    version: int = Field(default=1, sa_column=_version_column)
    reply_text: str | None = Field(default=None, sa_type=sa.Text)
    reject_reason: str | None = Field(default=None, max_length=2000)
    duplicate_of_id: int | None = Field(default=None, foreign_key="ticket.id")
    external_ref: str | None = Field(default=None, max_length=64, unique=True)
    submitted_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)
    accepted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    rejected_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    answered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    dispatched_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    claimed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    first_replied_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    replied_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)
    # ---- SLA (SPEC §4; see service/sla/deadlines.py): deadlines of each step reached ...
    accept_by: datetime | None = Field(default=None, sa_type=UTCDateTime)
    claim_by: datetime | None = Field(default=None, sa_type=UTCDateTime)
    reply_by: datetime | None = Field(default=None, sa_type=UTCDateTime)
    feedback_by: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # ... the running one and the sweep triggers (NULL = not armed / already fired)
    due_step: str | None = Field(default=None, max_length=16)
    due_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    remind_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    overdue_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    level2_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # hold (挂起) and extensions (延期)
    held_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    hold_seconds: int = 0  # working seconds spent on hold, in total
    extension_count: int = 0  # approved extensions
    extension_requested_days: int | None = None  # a pending request (working days)
    overdue_count: int = 0  # deadlines missed (each counted once, by the sweep)
    attachment_count: int = 0  # attachments stored (EFFECTS["attach"] bumps it; docs/attachments.md)


class TicketCoDepartment(SQLModel, table=True):
    """A co-handling department (协办) of a ticket."""

    __tablename__ = "ticket_co_department"

    ticket_id: int = Field(foreign_key="ticket.id", primary_key=True)
    department_id: int = Field(foreign_key="department.id", primary_key=True, index=True)


class TicketEvent(SQLModel, table=True):
    """One entry of a ticket's history (流转记录). Append-only: never updated or deleted.

    ``visibility`` is ``public`` (the enterprise sees it) or ``internal`` (staff only).
    """

    __tablename__ = "ticket_event"
    __table_args__ = (
        check_in("actor_role", [r.value for r in Role] + ["system"]),
        check_in("visibility", ["public", "internal"]),
        sa.Index("ix_ticket_event_ticket_id_id", "ticket_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id")
    actor_id: int | None = Field(default=None, foreign_key="user_account.id")
    actor_role: str = Field(max_length=16)
    action: str = Field(max_length=32)
    from_status: str | None = Field(default=None, max_length=16)
    to_status: str | None = Field(default=None, max_length=16)
    reason: str | None = Field(default=None, sa_type=sa.Text)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    visibility: str = Field(default="public", max_length=16)
    created_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)


class TicketLink(SQLModel, table=True):
    """A link between two tickets: ``duplicate_of`` (set by merge) or ``related``."""

    __tablename__ = "ticket_link"
    __table_args__ = (check_in("kind", ["duplicate_of", "related"]),)

    ticket_id: int = Field(foreign_key="ticket.id", primary_key=True)
    other_ticket_id: int = Field(foreign_key="ticket.id", primary_key=True, index=True)
    kind: str = Field(max_length=16, primary_key=True)
    created_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)


class TicketNumberCounter(SQLModel, table=True):
    """Per-year ticket number counter (SQLite only; PostgreSQL uses a sequence per year)."""

    __tablename__ = "ticket_number_counter"

    year: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    last_value: int = 0


class IdempotencyKey(SQLModel, table=True):
    """A submission's ``Idempotency-Key`` (per user), the hash of its body and the ticket it made."""

    __tablename__ = "idempotency_key"

    user_id: int = Field(foreign_key="user_account.id", primary_key=True)
    key: str = Field(max_length=255, primary_key=True)
    request_hash: str = Field(max_length=64)
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id")  # set in the same transaction
    status_code: int = 201
    created_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)





class Attachment(SQLModel, table=True):
    """A file attached to a ticket (附件), optionally to one of its events (docs/attachments.md).

    Written only by :func:`service.attachments.service.store`, which checks size and type on the
    bytes and appends the ticket's ``attach`` event. ``content_type`` is the type detected from
    the bytes (never the client's); ``filename`` is the sanitised name shown and offered on
    download (display only: the bytes live under ``storage_key``, the content address
    ``sha256/<2>/<2>/<sha256>`` in the configured store, so equal bytes are stored once).
    ``size`` in bytes. One row per (ticket, bytes): the same file uploaded again to the same
    ticket is the row already there.
    """

    __tablename__ = "attachment"
    __table_args__ = (
        sa.UniqueConstraint("ticket_id", "sha256"),
        sa.CheckConstraint("size > 0", name="size_positive"),
    )

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id")  # indexed by the unique (ticket_id, sha256)
    event_id: int | None = Field(default=None, foreign_key="ticket_event.id", index=True)
    filename: str = Field(max_length=255)
    content_type: str = Field(max_length=128)
    size: int
    sha256: str = Field(max_length=64, index=True)
    storage_key: str = Field(max_length=512)
    uploaded_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    created_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)

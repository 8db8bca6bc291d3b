"""The transactional outbox table (SPEC §9; ARCHITECTURE rule 3). See :mod:`service.jobs`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from service import clock
from service.db import UTCDateTime


class OutboxMessage(SQLModel, table=True):
    """A task recorded in the same transaction as the change that causes it.

    ``task`` is the Celery task name (``<domain>.<verb_noun>``), ``kwargs`` its keyword arguments
    (ids only). ``sent_at`` is set once the broker (or the embedded worker) took it; rows with
    ``sent_at IS NULL`` are re-relayed by ``outbox.relay``.
    """

    __tablename__ = "outbox_message"
    __table_args__ = (
        sa.Index("ix_outbox_message_pending", "id", postgresql_where=sa.text("sent_at IS NULL"),
                 sqlite_where=sa.text("sent_at IS NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    task: str = Field(max_length=100)
    kwargs: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    created_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=500)

"""SLA policies (SPEC §4): a limit per category, priority and step."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from service import clock
from service.db import UTCDateTime, check_in

STEPS = ("accept", "claim", "first_reply", "reply", "feedback")
UNITS = ("working_hours", "working_days")


class SlaPolicy(SQLModel, table=True):
    """The limit of one step for tickets of ``category_id`` (and its sub-categories, unless they
    have their own) at ``priority``.

    Steps (SPEC §4): ``accept`` (accept or reject after submission), ``claim`` (claim or return after
    dispatch), ``first_reply`` (consultations: first reply after submission), ``reply`` (problem,
    agency, matching: reply after claim), ``feedback`` (enterprise feedback after a reply, else
    auto-close). ``amount`` is counted in ``unit``: ``working_hours`` or ``working_days``.
    """

    __tablename__ = "sla_policy"
    __table_args__ = (
        check_in("step", STEPS),
        check_in("unit", UNITS),
        check_in("priority", ("normal", "urgent")),
        sa.CheckConstraint("amount > 0 AND amount <= 1000", name="amount_range"),
        sa.UniqueConstraint("category_id", "priority", "step"),
    )

    id: int | None = Field(default=None, primary_key=True)
    category_id: int = Field(foreign_key="category.id", index=True)
    priority: str = Field(max_length=16)
    step: str = Field(max_length=16)
    amount: int
    unit: str = Field(max_length=16)
    updated_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)

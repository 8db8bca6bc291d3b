"""Notifications (SPEC §3-§5): one record per recipient, and its deliveries per channel."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from service import clock
from service.db import UTCDateTime, check_in

KINDS = ("submitted", "dispatched", "reminded", "overdue", "escalated", "replied", "closed", "reopened",
         "returned", "extension_requested", "extension_decided", "invited", "follow_up")
CHANNELS = ("webhook", "email", "sms")
DELIVERY_STATES = ("pending", "sent", "failed", "dead")


class Notification(SQLModel, table=True):
    """A message for one user (enterprise user, officer, department handler, supervisor)."""

    __tablename__ = "notification"
    __table_args__ = (
        check_in("kind", KINDS),
        sa.Index("ix_notification_user_id_id", "user_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user_account.id")
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", index=True)
    kind: str = Field(max_length=32)
    title: str = Field(max_length=200)
    body: str = Field(default="", sa_type=sa.Text)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    created_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)
    read_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class NotificationDelivery(SQLModel, table=True):
    """One attempt series to deliver a notification over a channel (webhook, email, sms).

    ``state``: pending → sent, or failed (retried with backoff at ``next_attempt_at``) → dead
    after the configured number of attempts (dead letter).
    """

    __tablename__ = "notification_delivery"
    __table_args__ = (
        check_in("channel", CHANNELS),
        check_in("state", DELIVERY_STATES),
        sa.UniqueConstraint("notification_id", "channel"),
        sa.Index("ix_notification_delivery_retry", "next_attempt_at",
                 postgresql_where=sa.text("state = 'failed'"), sqlite_where=sa.text("state = 'failed'")),
    )

    id: int | None = Field(default=None, primary_key=True)
    notification_id: int = Field(foreign_key="notification.id")
    channel: str = Field(max_length=16)
    target: str = Field(max_length=500)
    state: str = Field(default="pending", max_length=16)
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=500)
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

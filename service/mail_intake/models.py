"""The ledger of inbound e-mail (issue 12, docs/mail_intake.md): one row per message taken from
the office's mailbox, whatever became of it.

The unique ``message_key`` is what makes the intake exactly-once: the row is inserted in the
transaction that creates the ticket (or the ``add_info``, the quarantine entry, the ignored
record), so a message is either wholly processed or not at all, and a second worker or a restart
finds the key and skips the message.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from service import clock
from service.db import UTCDateTime, check_in

#: What became of a message:
#: ``ticket`` a new ticket from a registered enterprise contact; ``add_info`` / ``comment`` a
#: reply to a notification, added to its ticket (``comment`` when the ticket is closed or
#: rejected: add_info is only legal on open tickets, SPEC §3); ``quarantined`` an unknown sender,
#: waiting for an officer, who ``attached`` it to an enterprise (a ticket) or ``discarded`` it;
#: ``ignored`` an auto-reply, bounce or our own mail (never a ticket, never answered); ``failed``
#: a message that could not be read (kept so it is not retried forever).
STATES = ("ticket", "add_info", "comment", "quarantined", "attached", "discarded", "ignored", "failed")


class InboundMail(SQLModel, table=True):
    """One message read from the intake mailbox.

    ``message_key``: the normalised ``Message-ID`` (``mid:<id>``, lower case), or for a message
    without one ``sha256:<hex>`` of its main headers and body (:func:`service.mail_intake.parsing.message_key`).
    ``raw`` keeps the message's bytes only while it is ``quarantined`` (attaching it later
    needs its body and attachments); it is cleared when an officer decides.
    """

    __tablename__ = "inbound_mail"
    __table_args__ = (
        check_in("state", STATES),
        sa.Index("ix_inbound_mail_quarantined", "id",
                 postgresql_where=sa.text("state = 'quarantined'"), sqlite_where=sa.text("state = 'quarantined'")),
    )

    id: int | None = Field(default=None, primary_key=True)
    message_key: str = Field(max_length=255, unique=True)
    message_id: str | None = Field(default=None, max_length=500)
    folder: str = Field(default="INBOX", max_length=200)
    imap_uid: int | None = Field(default=None, sa_type=sa.BigInteger)
    from_address: str = Field(default="", max_length=254)
    from_name: str | None = Field(default=None, max_length=200)
    subject: str = Field(default="", max_length=500)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    received_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)
    state: str = Field(max_length=16)
    reason: str | None = Field(default=None, max_length=500)
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", index=True)
    sender_user_id: int | None = Field(default=None, foreign_key="user_account.id")
    body_text: str | None = Field(default=None, sa_type=sa.Text)
    attachment_names: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    raw: bytes | None = Field(default=None, sa_type=sa.LargeBinary)
    decided_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

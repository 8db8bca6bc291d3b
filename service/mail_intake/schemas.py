"""Request and response bodies of the quarantine endpoints (``/api/v1/mail/quarantine``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.common.schemas import Id, InputModel, NoteText, ShortText


class QuarantinedMailRead(BaseModel):
    """A message of the quarantine: who sent it, what it says (``text``, up to 20,000 characters),
    why it waits (``reason``), and once decided what became of it (``state``: ``quarantined`` |
    ``attached`` | ``discarded``; ``ticket_number`` when attached)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    state: str
    from_address: str
    from_name: str | None
    subject: str
    sent_at: datetime | None
    received_at: datetime
    reason: str | None
    text: str = Field(description="邮件正文（纯文本；HTML 邮件转为文本）")
    attachment_names: list[str]
    ticket_number: str | None = None
    decided_at: datetime | None


class AttachIn(InputModel):
    """Body of attach: the enterprise the message is for (in the officer's scope), optionally the
    category (default ``QIFU_MAIL_DEFAULT_CATEGORY``) and a title (default: the subject)."""

    enterprise_id: Id
    category_id: Id | None = None
    category_code: str | None = Field(default=None, min_length=1, max_length=64)
    title: ShortText | None = None

    @model_validator(mode="after")
    def _one_category(self) -> AttachIn:
        if self.category_id is not None and self.category_code is not None:
            raise ValueError("category_id 与 category_code 只能提供一个")
        return self


class DiscardIn(InputModel):
    """Body of discard: an optional reason (kept with the message)."""

    reason: NoteText | None = None

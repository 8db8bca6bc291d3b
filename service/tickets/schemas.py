"""Request and response models of the ticket API (SPEC §3, §7)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.common.enums import Channel, Priority
from service.common.schemas import InputModel, LongText, NoteText, ReasonText, ShortText


class TicketCreate(InputModel):
    """Body of ``POST /api/v1/tickets``.

    An enterprise user submits for its own enterprise (``enterprise_id`` may be omitted; channel
    defaults to ``web``). An officer or admin submits on behalf of an enterprise and must give
    ``enterprise_id`` and ``channel`` (hotline, window, ...). Give ``category_id`` or
    ``category_code``; the service type is the category root's.
    """

    model_config = ConfigDict(extra="forbid")

    title: ShortText
    description: LongText
    category_id: int | None = Field(default=None, ge=1)
    category_code: str | None = Field(default=None, min_length=1, max_length=64)
    priority: Priority = Priority.normal
    channel: Channel | None = None
    enterprise_id: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _category_given(self) -> TicketCreate:
        if self.category_id is None and self.category_code is None:
            raise ValueError("category_id 或 category_code 必须提供一个")
        if self.channel == Channel.import_:
            raise ValueError("channel 'import' 仅供数据导入使用")
        return self


class TicketRead(BaseModel):
    """A ticket as shown to a caller who may see it."""

    model_config = ConfigDict(from_attributes=True)

    number: str
    status: str
    status_label: str
    title: str
    description: str
    channel: str
    service_type: str
    category_id: int
    priority: str
    enterprise_id: int
    submitted_by_id: int | None
    lead_department_id: int | None
    co_department_ids: list[int] = []
    officer_id: int | None
    grid_id: int | None
    rating: str | None
    reply_text: str | None
    reopen_count: int
    return_count: int
    escalation_level: int
    remind_count: int
    attachment_count: int = 0  # files attached (GET /tickets/{number}/attachments lists them)
    version: int
    reject_reason: str | None
    duplicate_of: str | None = None
    submitted_at: datetime
    accepted_at: datetime | None
    rejected_at: datetime | None
    answered_at: datetime | None
    dispatched_at: datetime | None
    claimed_at: datetime | None
    first_replied_at: datetime | None
    replied_at: datetime | None
    closed_at: datetime | None
    updated_at: datetime
    # SLA (SPEC §4): every deadline reached, the running one, working hours left, overdue now
    accept_by: datetime | None = None
    claim_by: datetime | None = None
    reply_by: datetime | None = None
    feedback_by: datetime | None = None
    due_step: str | None = None
    due_at: datetime | None = None
    working_hours_left: float | None = None
    overdue: bool = False
    overdue_count: int = 0
    on_hold_since: datetime | None = None
    hold_working_hours: float = 0.0
    extension_count: int = 0
    extension_requested_days: int | None = None


class TicketPage(BaseModel):
    """One page of tickets; pass ``next_cursor`` as ``cursor`` for the next page (``None`` = last)."""

    items: list[TicketRead]
    next_cursor: str | None


class TicketEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    action: str
    actor_id: int | None
    actor_role: str
    from_status: str | None
    to_status: str | None
    reason: str | None
    payload: dict[str, Any]
    visibility: str
    created_at: datetime


# ---- action bodies (one per action; all optional fields have sensible defaults) ----

class _Body(InputModel):
    """Action bodies: unknown fields refused, values storable (see :class:`InputModel`)."""


class EmptyIn(_Body):
    """Body of actions that need nothing (claim, resume): ``{}`` or an optional note."""

    note: NoteText | None = None


class AcceptIn(_Body):
    """Body of accept (受理): an optional note and an optional corrected ``category_id``.

    The officer's correction of the category at triage (issue 13): the ticket takes the new
    category (of the same service type), the event records ``from_category_id`` and
    ``category_id``, a later dispatch without a lead department follows the new category's default
    department, and training reads the category as finally set (docs/decisions.md).
    """

    note: NoteText | None = None
    category_id: int | None = Field(default=None, ge=1, description="更正后的分类（须与原分类同一服务类型）；省略则不变")


class ReasonIn(_Body):
    """Body of reject, return, hold: a required ``reason``."""

    reason: ReasonText


class TextIn(_Body):
    """Body of answer and reply: ``text`` is what was done or the answer (答复意见)."""

    text: LongText


class DispatchIn(_Body):
    """Body of dispatch: the lead department (default: the category's) and co-handling ones, and
    an optional corrected ``category_id`` (as :class:`AcceptIn`; applied before the default lead
    department is looked up, e.g. after a return for a wrong category)."""

    lead_department_id: int | None = Field(default=None, ge=1)
    category_id: int | None = Field(default=None, ge=1, description="更正后的分类（须与原分类同一服务类型）；省略则不变")
    co_department_ids: list[int] = Field(default_factory=list, max_length=20)
    note: NoteText | None = None


class ConfirmIn(_Body):
    """Body of confirm: the enterprise's rating (满意 / 基本满意) and an optional comment."""

    rating: Literal["satisfied", "basically_satisfied"]
    comment: NoteText | None = None


class ReopenIn(_Body):
    """Body of reopen (重办): why the reply did not solve the problem."""

    reason: ReasonText


class CommentIn(_Body):
    """Body of comment: ``internal`` comments are hidden from the enterprise."""

    text: LongText
    internal: bool = False


class AddInfoIn(_Body):
    text: LongText


class RemindIn(_Body):
    note: NoteText | None = None


class EscalateIn(_Body):
    """Body of escalate (督办): level 1 or 2; default one level up from the current."""

    level: int | None = Field(default=None, ge=1, le=2)
    reason: NoteText | None = None


class MergeIn(_Body):
    """Body of merge: the surviving ticket's number; this ticket becomes rejected (duplicate)."""

    into: ShortText


class LinkIn(_Body):
    other: ShortText
    note: NoteText | None = None


class RequestExtensionIn(_Body):
    """Body of request_extension (申请延期): why, and how many working days (1-15, SPEC §4)."""

    reason: ReasonText
    days: int = Field(ge=1, le=15)


class DecideExtensionIn(_Body):
    """Body of approve_extension / deny_extension: an optional note."""

    note: NoteText | None = None


class AttachIn(_Body):
    """Body of the ``attach`` action (no endpoint of its own: :func:`service.attachments.service.store`
    applies it after storing the file): the attachment stored, an optional note."""

    attachment_id: int = Field(ge=1)
    note: NoteText | None = None
    declared_type: str | None = Field(default=None, max_length=128)  # the client's, kept for audit

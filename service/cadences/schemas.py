"""Request and response models of the cadence API (SPEC §5, §7)."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from service.common.enums import Priority
from service.common.schemas import InputModel, LongText, NoteText, RowRead, ShortText


class ProblemIn(InputModel):
    """A problem found at an inquiry, clinic or return visit; becomes a ticket. Give
    ``category_id`` or ``category_code``."""

    title: ShortText
    description: LongText
    category_id: int | None = Field(default=None, ge=1)
    category_code: str | None = Field(default=None, min_length=1, max_length=64)
    priority: Priority = Priority.normal

    @model_validator(mode="after")
    def _category_given(self) -> ProblemIn:
        if self.category_id is None and self.category_code is None:
            raise ValueError("category_id 或 category_code 必须提供一个")
        return self


class InquiryCreate(InputModel):
    """Body of ``POST /api/v1/inquiries``: a contact with an enterprise (问诊).

    ``finding`` ``none`` takes no problems; ``problems`` takes 1-10, each becoming a ticket with
    channel ``inquiry`` in the same transaction. ``contacted_at`` defaults to now; it may not lie in
    the future nor more than 30 days back.
    """

    enterprise_id: int = Field(ge=1)
    method: Literal["visit", "phone", "online"]
    finding: Literal["none", "problems"]
    note: NoteText | None = None
    problems: list[ProblemIn] = Field(default_factory=list, max_length=10)
    contacted_at: datetime | None = None


class InquiryRead(RowRead):
    enterprise_id: int
    officer_id: int
    method: str
    finding: str
    note: str | None
    ticket_ids: list[int]
    ticket_numbers: list[str] = []
    contacted_at: datetime
    contact_date: date


class ListItemRead(BaseModel):
    enterprise_id: int
    enterprise_name: str
    position: int
    interval_days: int
    due_date: date
    last_contact_date: date | None
    overdue: bool
    contacted: bool
    fallback: bool


class DueTicketRead(BaseModel):
    number: str
    title: str
    status: str
    due_step: str | None
    due_at: datetime | None
    overdue: bool


class TodayRead(BaseModel):
    """An officer's inquiry list of a day: enterprises to contact and tickets due or overdue.
    ``provisional`` is true when the 08:30 list was not built yet (computed now, not stored)."""

    list_date: date
    officer_id: int
    provisional: bool
    enterprises: list[ListItemRead]
    tickets: list[DueTicketRead]


class CoverageRow(BaseModel):
    key: int | None
    label: str
    enterprises: int
    covered: int
    coverage_rate: float | None


class CoverageRead(BaseModel):
    """Share of assigned enterprises contacted within their cadence on ``on`` (SPEC §5)."""

    on: date
    by_officer: list[CoverageRow]
    by_grid: list[CoverageRow]
    total: CoverageRow


class ClinicScheduleIn(InputModel):
    """Body of ``PUT /api/v1/clinics/schedules/{region_id}`` (admin)."""

    weekday: int = Field(ge=1, le=7, description="ISO 星期：1=周一 … 7=周日")
    start_time: time
    place: ShortText
    capacity: int = Field(default=10, ge=1, le=1000)
    is_active: bool = True


class ClinicScheduleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    region_id: int
    weekday: int
    start_time: time
    place: str
    capacity: int
    is_active: bool


class AgendaItemRead(RowRead):
    ticket_id: int | None
    ticket_number: str | None = None
    booking_id: int | None
    reason: str
    reasons: list[str]
    topic: str
    outcome: str | None
    outcome_note: str | None
    planned_date: date | None
    recorded_by_id: int | None
    recorded_at: datetime | None


class SessionRead(RowRead):
    key: str
    kind: str
    period_key: str
    region_id: int | None
    session_date: date
    starts_at: datetime
    place: str
    capacity: int
    bookings: int = 0
    status: str
    invited_department_ids: list[int]
    agenda: list[AgendaItemRead] = []


class BookingIn(InputModel):
    """Body of ``POST /api/v1/clinics/{id}/bookings`` (enterprise users): the topic to discuss."""

    topic: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class BookingRead(RowRead):
    session_id: int
    enterprise_id: int
    topic: str
    created_at: datetime


class OutcomeIn(InputModel):
    """Body of ``POST .../items/{item_id}/outcome``: ``resolved`` (on the spot; ``note`` is the reply),
    ``planned`` (plan agreed; ``planned_date`` required) or ``escalated`` (督办)."""

    outcome: Literal["resolved", "planned", "escalated"]
    note: LongText
    planned_date: date | None = None

    @model_validator(mode="after")
    def _plan_date(self) -> OutcomeIn:
        if self.outcome == "planned" and self.planned_date is None:
            raise ValueError("planned_date: 议定计划须给出完成日期")
        return self


class RaiseProblemIn(ProblemIn):
    """Body of ``POST /api/v1/clinics/{id}/problems``: a new problem raised at the session."""

    enterprise_id: int = Field(ge=1)


class FlagIn(InputModel):
    """Body of ``POST /api/v1/joint-consultations/flags`` (supervisor): put a ticket on the next
    joint consultation's agenda."""

    ticket_number: ShortText
    reason: NoteText


class FollowUpRead(RowRead):
    ticket_id: int
    ticket_number: str | None = None
    ticket_title: str | None = None
    enterprise_id: int
    period_key: str
    source: str
    status: str
    asked_at: datetime
    expires_at: datetime
    answered_at: datetime | None
    answer_channel: str | None
    comment: str | None
    reopened: bool


class FollowUpAnswerIn(InputModel):
    """Body of ``POST /api/v1/follow-ups/{id}/answer``: is the problem still solved?"""

    solved: bool
    comment: NoteText | None = None


class ReturnVisitRead(RowRead):
    enterprise_id: int
    year: int
    status: str
    asked_at: datetime
    expires_at: datetime
    answered_at: datetime | None
    satisfaction: int | None
    improve: str | None
    ticket_ids: list[int]


class ReturnVisitAnswerIn(InputModel):
    """Body of ``POST /api/v1/return-visits/{id}/answer``: overall satisfaction 1-5, what to improve,
    open problems (each becomes a ticket)."""

    satisfaction: int = Field(ge=1, le=5)
    improve: NoteText | None = None
    problems: list[ProblemIn] = Field(default_factory=list, max_length=10)


class RunRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    kind: str
    period_key: str
    run_date: date
    ran_at: datetime
    summary: dict[str, Any]


class RunResult(BaseModel):
    """What a manual run did: the period, whether it ran now (``False`` = it had run before)."""

    kind: str
    period_key: str | None
    run_date: date | None
    ran: bool
    summary: dict[str, Any] = {}


class ReportMeta(RowRead):
    kind: str
    period_key: str
    title: str
    created_at: datetime

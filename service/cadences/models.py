"""Tables of the five cadences (SPEC §5).

- :class:`CadenceRun` — one row per (cadence, period): the idempotency claim of every run.
- :class:`Inquiry`, :class:`InquiryListItem` — daily inquiry (每日一问诊): contacts logged, and each
  officer's list of the day.
- :class:`ClinicSchedule`, :class:`CadenceSession`, :class:`AgendaItem`, :class:`ClinicBooking`,
  :class:`HardCaseFlag` — weekly clinics (每周一坐诊) and quarterly joint consultations (每季一会诊).
- :class:`FollowUp` — monthly follow-ups (每月一复诊).
- :class:`ReturnVisit` — annual return visits (每年一回诊).
- :class:`CadenceReport` — stored reports (quarterly ranking, annual report, long-open list).
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any, Literal

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from service import clock
from service.db import UTCDateTime, check_in

CADENCE_KINDS = ("daily", "weekly", "monthly", "quarterly", "annual")
INQUIRY_METHODS = ("visit", "phone", "online")
INQUIRY_FINDINGS = ("none", "problems")
SESSION_KINDS = ("clinic", "joint")
SESSION_STATUSES = ("scheduled", "held", "cancelled")
AGENDA_REASONS = ("stalled", "returned", "co_handling", "reopened", "booked", "raised", "escalated",
                  "flagged")
OUTCOMES = ("resolved", "planned", "escalated")
FOLLOW_UP_STATUSES = ("pending", "solved", "not_solved", "expired")
FOLLOW_UP_SOURCES = ("closed", "repeat")
ANSWER_CHANNELS = ("enterprise", "officer_call")
RETURN_VISIT_STATUSES = ("pending", "answered", "expired")
REPORT_KINDS = ("monthly_ranking", "quarterly_ranking", "annual", "long_open")
ReportKind = Literal["monthly_ranking", "quarterly_ranking", "annual", "long_open"]


class CadenceRun(SQLModel, table=True):
    """The claim of one cadence period: inserted first, so running a period twice does nothing twice.

    ``period_key``: daily ``2026-03-02``, weekly ``2026-W10`` (the ISO week of the sessions),
    monthly ``2026-04``, quarterly ``2026-Q2``, annual ``2027`` — the period in which the cadence
    is held. ``run_date`` is the (working) day it was scheduled for; ``summary`` what it created.
    """

    __tablename__ = "cadence_run"
    __table_args__ = (check_in("kind", CADENCE_KINDS),)

    kind: str = Field(max_length=16, primary_key=True)
    period_key: str = Field(max_length=16, primary_key=True)
    run_date: date
    ran_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)
    summary: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)


class Inquiry(SQLModel, table=True):
    """One logged contact with an enterprise (问诊): how, when, what was found, the tickets raised."""

    __tablename__ = "inquiry"
    __table_args__ = (
        check_in("method", INQUIRY_METHODS),
        check_in("finding", INQUIRY_FINDINGS),
        sa.Index("ix_inquiry_enterprise_id_contact_date", "enterprise_id", "contact_date"),
        sa.Index("ix_inquiry_officer_id_contact_date", "officer_id", "contact_date"),
    )

    id: int | None = Field(default=None, primary_key=True)
    enterprise_id: int = Field(foreign_key="enterprise.id")
    officer_id: int = Field(foreign_key="user_account.id")
    method: str = Field(max_length=16)
    finding: str = Field(max_length=16)
    note: str | None = Field(default=None, max_length=2000)
    ticket_ids: list[int] = Field(default_factory=list, sa_type=sa.JSON)
    contacted_at: datetime = Field(sa_type=UTCDateTime)
    contact_date: date  # local (Asia/Shanghai) date of contacted_at
    created_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)


class InquiryListItem(SQLModel, table=True):
    """One enterprise on an officer's inquiry list of a working day (built at 08:30).

    ``position`` is 1-based (most overdue first); ``due_date`` the day by which the enterprise must be
    contacted (last contact + interval, moved to the next working day); ``last_contact_date`` is
    ``None`` for an enterprise never contacted; ``fallback`` marks an enterprise with no officer
    of its own or of its grid (assigned to an officer of its region, else of the county, in turn).
    """

    __tablename__ = "inquiry_list_item"

    list_date: date = Field(primary_key=True)
    officer_id: int = Field(foreign_key="user_account.id", primary_key=True)
    enterprise_id: int = Field(foreign_key="enterprise.id", primary_key=True)
    position: int
    interval_days: int
    due_date: date
    last_contact_date: date | None = None
    fallback: bool = False


class ClinicSchedule(SQLModel, table=True):
    """The weekly clinic of a town, street or park: weekday (ISO 1-7), time, place, capacity."""

    __tablename__ = "clinic_schedule"
    __table_args__ = (sa.CheckConstraint("weekday BETWEEN 1 AND 7", name="weekday_valid"),)

    region_id: int = Field(foreign_key="region.id", primary_key=True, sa_column_kwargs={"autoincrement": False})
    weekday: int
    start_time: time
    place: str = Field(max_length=200)
    capacity: int = 10
    is_active: bool = True


class CadenceSession(SQLModel, table=True):
    """A weekly clinic (``clinic``, per region) or a quarterly joint consultation (``joint``, county).

    ``key`` is unique: ``clinic:<region code>:2026-W10`` or ``joint:2026-Q2``.
    """

    __tablename__ = "cadence_session"
    __table_args__ = (
        check_in("kind", SESSION_KINDS),
        check_in("status", SESSION_STATUSES),
        sa.Index("ix_cadence_session_kind_session_date", "kind", "session_date"),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=64, unique=True)
    kind: str = Field(max_length=16)
    period_key: str = Field(max_length=16)
    region_id: int | None = Field(default=None, foreign_key="region.id", index=True)
    session_date: date
    starts_at: datetime = Field(sa_type=UTCDateTime)
    place: str = Field(max_length=200)
    capacity: int = 10
    status: str = Field(default="scheduled", max_length=16)
    invited_department_ids: list[int] = Field(default_factory=list, sa_type=sa.JSON)
    created_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)


class ClinicBooking(SQLModel, table=True):
    """An enterprise's booking of a clinic slot, with its topic (one per enterprise and session)."""

    __tablename__ = "clinic_booking"
    __table_args__ = (sa.UniqueConstraint("session_id", "enterprise_id"),)

    id: int | None = Field(default=None, primary_key=True)
    session_id: int = Field(foreign_key="cadence_session.id")
    enterprise_id: int = Field(foreign_key="enterprise.id", index=True)
    user_id: int = Field(foreign_key="user_account.id")
    topic: str = Field(max_length=500)
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id")
    created_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)


class AgendaItem(SQLModel, table=True):
    """One item of a session's agenda: a ticket (with the reason it is there) or a booking, and the
    outcome recorded at the session (resolved on the spot / plan agreed with a date / escalated)."""

    __tablename__ = "agenda_item"
    __table_args__ = (
        check_in("reason", AGENDA_REASONS),
        sa.CheckConstraint("outcome IS NULL OR outcome IN ('resolved', 'planned', 'escalated')",
                           name="outcome_valid"),
        sa.UniqueConstraint("session_id", "ticket_id"),
        sa.UniqueConstraint("session_id", "booking_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    session_id: int = Field(foreign_key="cadence_session.id", index=True)
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", index=True)
    booking_id: int | None = Field(default=None, foreign_key="clinic_booking.id")
    reason: str = Field(max_length=16)
    reasons: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    topic: str = Field(max_length=500)
    outcome: str | None = Field(default=None, max_length=16)
    outcome_note: str | None = Field(default=None, max_length=2000)
    planned_date: date | None = None
    recorded_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    recorded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)


class HardCaseFlag(SQLModel, table=True):
    """A supervisor's flag putting a ticket on the next joint consultation's agenda."""

    __tablename__ = "hard_case_flag"

    ticket_id: int = Field(foreign_key="ticket.id", primary_key=True, sa_column_kwargs={"autoincrement": False})
    flagged_by_id: int = Field(foreign_key="user_account.id")
    reason: str = Field(max_length=2000)
    created_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)


class FollowUp(SQLModel, table=True):
    """A monthly follow-up (复诊) of a ticket: "is the problem still solved?".

    ``source``: ``closed`` (closed in the previous month) or ``repeat`` (its last follow-up said
    not solved). ``status``: pending → solved | not_solved (answered by the enterprise or recorded
    by its officer after a call) | expired (unanswered by ``expires_at``).
    """

    __tablename__ = "follow_up"
    __table_args__ = (
        check_in("status", FOLLOW_UP_STATUSES),
        check_in("source", FOLLOW_UP_SOURCES),
        sa.CheckConstraint("answer_channel IS NULL OR answer_channel IN ('enterprise', 'officer_call')",
                           name="answer_channel_valid"),
        sa.UniqueConstraint("ticket_id", "period_key"),
        sa.Index("ix_follow_up_pending_expires_at", "expires_at",
                 postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'")),
    )

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id")
    enterprise_id: int = Field(foreign_key="enterprise.id", index=True)
    period_key: str = Field(max_length=16, index=True)
    source: str = Field(max_length=16)
    status: str = Field(default="pending", max_length=16)
    asked_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    answered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    answered_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    answer_channel: str | None = Field(default=None, max_length=16)
    comment: str | None = Field(default=None, max_length=2000)
    reopened: bool = False


class ReturnVisit(SQLModel, table=True):
    """The annual return-visit survey (回诊) of an enterprise served in ``year``: overall satisfaction
    1-5, what to improve, open problems (which become tickets)."""

    __tablename__ = "return_visit"
    __table_args__ = (
        check_in("status", RETURN_VISIT_STATUSES),
        sa.CheckConstraint("satisfaction IS NULL OR satisfaction BETWEEN 1 AND 5", name="satisfaction_valid"),
        sa.UniqueConstraint("enterprise_id", "year"),
    )

    id: int | None = Field(default=None, primary_key=True)
    enterprise_id: int = Field(foreign_key="enterprise.id")
    year: int = Field(index=True)  # the year reviewed
    status: str = Field(default="pending", max_length=16)
    asked_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    answered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    answered_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    satisfaction: int | None = None
    improve: str | None = Field(default=None, max_length=2000)
    ticket_ids: list[int] = Field(default_factory=list, sa_type=sa.JSON)


class CadenceReport(SQLModel, table=True):
    """A stored report: ``monthly_ranking`` (月度排名, key ``2026-05``), ``quarterly_ranking`` (晾晒, key ``2026-Q1``), ``annual`` (key ``2026``) or
    ``long_open`` (tickets open over 30 days, key ``2026-04``). ``data`` is the JSON document."""

    __tablename__ = "cadence_report"
    __table_args__ = (check_in("kind", REPORT_KINDS), sa.UniqueConstraint("kind", "period_key"))

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32)
    period_key: str = Field(max_length=16)
    title: str = Field(max_length=200)
    data: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    created_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)

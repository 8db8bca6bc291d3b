"""Enumerations of SPEC §1-§3, stored as strings with CHECK constraints (portable to SQLite)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """User roles (SPEC §1)."""

    enterprise = "enterprise"
    officer = "officer"
    department = "department"
    supervisor = "supervisor"
    admin = "admin"


class ServiceType(StrEnum):
    """Top level of the category tree (SPEC §2)."""

    problem = "problem"  # 问题交办
    consultation = "consultation"  # 政策咨询
    agency = "agency"  # 项目代办
    matching = "matching"  # 服务对接


class Channel(StrEnum):
    """How a ticket came in (SPEC §3)."""

    web = "web"
    app = "app"
    hotline = "hotline"
    window = "window"
    inquiry = "inquiry"
    clinic = "clinic"
    email = "email"
    open311 = "open311"
    import_ = "import"


class Priority(StrEnum):
    normal = "normal"
    urgent = "urgent"


class TicketStatus(StrEnum):
    """Ticket states (SPEC §3)."""

    submitted = "submitted"
    accepted = "accepted"
    rejected = "rejected"
    dispatched = "dispatched"
    in_progress = "in_progress"
    on_hold = "on_hold"
    replied = "replied"
    closed = "closed"


#: Open tickets: neither closed nor rejected (SPEC §3), replied ones included (the enterprise may
#: still reopen them). The one definition, used by the transition table, the cadences and SQL.
OPEN_STATUSES: tuple[TicketStatus, ...] = (
    TicketStatus.submitted, TicketStatus.accepted, TicketStatus.dispatched, TicketStatus.in_progress,
    TicketStatus.on_hold, TicketStatus.replied)
#: Open and not replied yet: the office or a department still owes the enterprise an answer
#: (the cadences' stalled tickets and hard cases).
AWAITING_REPLY_STATUSES: tuple[TicketStatus, ...] = tuple(s for s in OPEN_STATUSES if s != TicketStatus.replied)
#: With a department: dispatched to it and not replied yet.
WITH_DEPARTMENT_STATUSES: tuple[TicketStatus, ...] = (
    TicketStatus.dispatched, TicketStatus.in_progress, TicketStatus.on_hold)


class Rating(StrEnum):
    """The enterprise's rating of a reply. ``none`` = closed without feedback."""

    satisfied = "satisfied"
    basically_satisfied = "basically_satisfied"
    dissatisfied = "dissatisfied"
    none = "none"


class RegionKind(StrEnum):
    county = "county"
    town = "town"
    street = "street"
    park = "park"


STATUS_LABELS: dict[str, str] = {
    "submitted": "已提交",
    "accepted": "已受理",
    "rejected": "不予受理",
    "dispatched": "已交办",
    "in_progress": "办理中",
    "on_hold": "已挂起",
    "replied": "已答复",
    "closed": "已办结",
}

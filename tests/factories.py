"""Typed factory helpers: seeded actors and tickets driven to any status through the services.

Every ticket made here has a valid history: it is submitted with
:func:`service.ticketing.service.submit_ticket` (or ``create_ticket`` when a submission instant is
given) and moved with :func:`service.ticketing.service.apply_action` by the seeded user who would
really do it (the enterprise's contact, its service officer, the lead department's handler).

The helpers commit the test session at the end: in the test fixture that only releases a savepoint
(the test's outer transaction is still rolled back), but it keeps the ticket when a later request
fails and the request's session rolls back.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from service.auth.actor import Actor
from service.auth.dependencies import actor_of
from service.categories.models import Category
from service.common.enums import Role, TicketStatus
from service.departments.models import Department
from service.enterprises.models import Enterprise
from service.ticketing import service as ticket_service
from service.tickets import schemas
from service.tickets.models import Ticket, TicketEvent
from service.users.models import User

#: The office zone of the tests' settings (QIFU_TIMEZONE unset: the default).
SHANGHAI = ZoneInfo("Asia/Shanghai")

DEMO_PASSWORD = "qifu-demo-2026"

#: The path of state-changing actions from ``submitted`` to each status (``answer`` is separate).
PATHS: dict[str, tuple[str, ...]] = {
    "submitted": (),
    "accepted": ("accept",),
    "rejected": ("reject",),
    "dispatched": ("accept", "dispatch"),
    "in_progress": ("accept", "dispatch", "claim"),
    "on_hold": ("accept", "dispatch", "claim", "hold"),
    "replied": ("accept", "dispatch", "claim", "reply"),
    "closed": ("accept", "dispatch", "claim", "reply", "confirm"),
}

#: A valid body for every action (those needing another ticket get it from :func:`action_body`).
BODIES: dict[str, dict[str, Any]] = {
    "accept": {},
    "reject": {"reason": "不属于受理范围"},
    "answer": {"text": "根据现行政策，可按以下流程申报。"},
    "dispatch": {},
    "claim": {},
    "return": {"reason": "不属于本单位职责"},
    "hold": {"reason": "等待企业补充材料"},
    "resume": {},
    "reply": {"text": "已协调解决，详见答复意见。"},
    "confirm": {"rating": "satisfied", "comment": "谢谢"},
    "reopen": {"reason": "问题没有解决"},
    "comment": {"text": "请尽快处理", "internal": False},
    "add_info": {"text": "补充：涉及员工约30人"},
    "remind": {"note": "请加快办理"},
    "escalate": {"reason": "超期未答复"},
    "merge": {},
    "link": {"note": "同一园区的同类问题"},
    "auto_close": {},
    "request_extension": {"reason": "需跨部门会商，申请延期", "days": 5},
    "approve_extension": {"note": "同意"},
    "deny_extension": {"note": "理由不充分"},
    "attach": {"note": "现场照片"},  # + attachment_id: action_body makes the row
}


# --------------------------------------------------------------------------- seeded rows

def user(session: Session, username: str) -> User:
    """The seeded user ``username`` (raises if absent)."""
    return session.exec(select(User).where(User.username == username)).one()


def actor(session: Session, username: str) -> Actor:
    """The :class:`Actor` of the seeded user ``username``."""
    return actor_of(user(session, username))


def enterprise_of(session: Session, username: str) -> Enterprise:
    """The enterprise of the enterprise user ``username`` (``ent1`` → enterprise #1)."""
    ent_id = user(session, username).enterprise_id
    assert ent_id is not None, f"{username} is not an enterprise user"
    return session.get(Enterprise, ent_id)


def category(session: Session, code: str) -> Category:
    return session.exec(select(Category).where(Category.code == code)).one()


def department(session: Session, code: str) -> Department:
    return session.exec(select(Department).where(Department.code == code)).one()


def handler_of(session: Session, department_id: int) -> Actor:
    """The seeded handler (``dept_<code>``) of ``department_id``."""
    row = session.exec(
        select(User).where(User.department_id == department_id, User.role == Role.department.value)
        .order_by(User.id)
    ).first()
    assert row is not None, f"no handler for department {department_id}"
    return actor_of(row)


def enterprise_user_of(session: Session, enterprise_id: int) -> Actor | None:
    row = session.exec(
        select(User).where(User.enterprise_id == enterprise_id).order_by(User.id)
    ).first()
    return actor_of(row) if row is not None else None


def officer_for(session: Session, ticket: Ticket) -> Actor:
    """The ticket's responsible officer, else ``officer1``."""
    if ticket.officer_id is not None:
        return actor_of(session.get(User, ticket.officer_id))
    return actor(session, "officer1")


def events(session: Session, ticket: Ticket) -> list[TicketEvent]:
    """The ticket's events, oldest first (fresh from the database)."""
    return list(session.exec(
        select(TicketEvent).where(TicketEvent.ticket_id == ticket.id).order_by(TicketEvent.id)
    ).all())


def reload(session: Session, ticket: Ticket) -> Ticket:
    """``ticket`` re-read from the database (drops any unflushed or rolled-back state)."""
    session.expire_all()
    return session.get(Ticket, ticket.id)


# --------------------------------------------------------------------------- tickets

def submit(
    session: Session,
    *,
    enterprise: str = "ent1",
    category_code: str = "problem.labour",
    title: str = "招工难，需要协调用工",
    description: str = "今年订单增加，普工缺口约50人，希望人社部门协助招聘。",
    priority: str = "normal",
    channel: str | None = None,
    by: str | None = None,
    at: datetime | None = None,
) -> Ticket:
    """Submit one ticket for the enterprise of user ``enterprise``.

    ``by`` (an officer or admin username) submits on behalf, with ``channel`` (default hotline).
    ``at`` (aware) backdates the submission (uses ``create_ticket``, as the importer does).
    """
    ent = enterprise_of(session, enterprise)
    if at is not None:
        submitter = actor(session, by or enterprise)
        return ticket_service.create_ticket(
            session, enterprise=ent, category=category(session, category_code), title=title,
            description=description, channel=channel or ("hotline" if by else "web"),
            priority=priority, actor=submitter, at=at,
        )
    if by is not None:
        data = schemas.TicketCreate(title=title, description=description, category_code=category_code,
                                    priority=priority, channel=channel or "hotline", enterprise_id=ent.id)
        ticket, _ = ticket_service.submit_ticket(session, actor(session, by), data)
    else:
        data = schemas.TicketCreate(title=title, description=description, category_code=category_code,
                                    priority=priority, channel=channel)
        ticket, _ = ticket_service.submit_ticket(session, actor(session, enterprise), data)
    return ticket


def act(
    session: Session,
    ticket: Ticket,
    action: str,
    body: dict[str, Any] | None = None,
    *,
    by: Actor | str | None = None,
    at: datetime | None = None,
) -> Ticket:
    """Apply ``action`` as ``by`` (default: the seeded actor who would do it)."""
    if isinstance(by, str):
        by = actor(session, by)
    if by is None:
        by = default_actor(session, ticket, action)
    return ticket_service.apply_action(session, by, ticket, action,
                                       BODIES.get(action, {}) if body is None else body, at=at)


def default_actor(session: Session, ticket: Ticket, action: str) -> Actor:
    """The seeded user who normally performs ``action`` on ``ticket``."""
    if action in ("claim", "return", "hold", "resume", "reply", "request_extension"):
        assert ticket.lead_department_id is not None, "no lead department"
        return handler_of(session, ticket.lead_department_id)
    if action in ("confirm", "add_info"):
        ent_actor = enterprise_user_of(session, ticket.enterprise_id)
        if ent_actor is not None:
            return ent_actor
    if action in ("escalate", "approve_extension", "deny_extension"):
        return actor(session, "supervisor1")
    if action == "dispatch" and ticket.return_count >= 2:
        return actor(session, "supervisor1")
    if action == "auto_close":
        return Actor.system()
    return officer_for(session, ticket)


def make_ticket(
    session: Session,
    status: str | TicketStatus = "submitted",
    *,
    enterprise: str = "ent1",
    category_code: str = "problem.labour",
    lead_department: str | None = None,
    co_departments: Sequence[str] = (),
    returns: int = 0,
    answer: bool = False,
    title: str = "招工难，需要协调用工",
    description: str = "今年订单增加，普工缺口约50人，希望人社部门协助招聘。",
    priority: str = "normal",
    channel: str | None = None,
    by: str | None = None,
    at: datetime | None = None,
    commit: bool = True,
) -> Ticket:
    """A ticket for ``enterprise``'s enterprise driven to ``status`` through the services.

    Args:
        status: the target status (``TicketStatus`` value).
        lead_department / co_departments: department codes for the dispatch (default: the
            category's default department, no co-handlers).
        returns: how many times the lead department returns it before the final dispatch
            (``>= 2`` makes the final dispatch a supervisor's, as the workflow requires).
        answer: reach ``replied`` (or ``closed``) by a direct answer (consultations only).
        by: submit on behalf as this officer/admin (channel default hotline).
        at: backdate the submission instant (aware datetime).
        commit: commit the test session at the end (see the module docstring).
    """
    status = TicketStatus(status).value
    ticket = submit(session, enterprise=enterprise, category_code=category_code, title=title,
                    description=description, priority=priority, channel=channel, by=by, at=at)
    if answer:
        assert status in ("replied", "closed"), "answer leads to replied/closed only"
        path: tuple[str, ...] = ("answer",) + (("confirm",) if status == "closed" else ())
    else:
        path = PATHS[status]
    dispatch_body: dict[str, Any] = {}
    if lead_department is not None:
        dispatch_body["lead_department_id"] = department(session, lead_department).id
    if co_departments:
        dispatch_body["co_department_ids"] = [department(session, c).id for c in co_departments]
    for action in path:
        if action == "dispatch":
            for _ in range(returns):
                act(session, ticket, "dispatch", dispatch_body)
                act(session, ticket, "return")
            act(session, ticket, "dispatch", dispatch_body)
        else:
            act(session, ticket, action)
    assert ticket.status == status, (ticket.status, status)
    if commit:
        session.commit()
    return ticket


def make_returned(session: Session, returns: int = 2, **kwargs: Any) -> Ticket:
    """An ``accepted`` ticket that departments returned ``returns`` times."""
    ticket = make_ticket(session, "accepted", commit=False, **kwargs)
    for _ in range(returns):
        act(session, ticket, "dispatch", {})
        act(session, ticket, "return")
    session.commit()
    assert ticket.status == "accepted" and ticket.return_count == returns
    return ticket


def action_body(session: Session, ticket: Ticket, action: str) -> dict[str, Any]:
    """A valid body for ``action`` on ``ticket`` (merge/link get a fresh other ticket)."""
    if action in ("merge", "link"):
        other = make_ticket(session, "submitted", enterprise=_username_of_enterprise(session, ticket),
                            title="另一件同类诉求")
        key = "into" if action == "merge" else "other"
        return {**BODIES[action], key: other.number}
    if action == "attach":  # the file's row, as service.attachments.service.store writes it first
        from service.tickets.models import Attachment

        sha = uuid.uuid4().hex * 2
        row = Attachment(ticket_id=ticket.id, filename="现场照片.png", content_type="image/png", size=68,
                         sha256=sha, storage_key=f"sha256/{sha[:2]}/{sha[2:4]}/{sha}")
        session.add(row)
        session.flush()
        return {**BODIES[action], "attachment_id": row.id}
    if action in ("approve_extension", "deny_extension") and ticket.extension_requested_days is None:
        act(session, ticket, "request_extension")  # a decision needs a pending request
    return dict(BODIES[action])


def _username_of_enterprise(session: Session, ticket: Ticket) -> str:
    ent_actor = enterprise_user_of(session, ticket.enterprise_id)
    assert ent_actor is not None
    return ent_actor.username

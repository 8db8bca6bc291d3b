"""The one fan-out of notifications (issue #3, issue 9): who is told of what, as one query.

``RECIPIENTS[kind]`` names the groups told of each notification kind about a ticket;
:func:`insert_statement` turns a kind into one ``INSERT INTO notification ... SELECT ...
RETURNING`` over a set of tickets. Every writer uses it: single actions
(:func:`service.ticketing.actions.apply_action`), the ORM submission, the SLA sweeps (many tickets
at once), and the one-statement intake on PostgreSQL (compiled into its ``WITH``). Notifications
that are not about one ticket's kind (the cadences') go through :func:`notify_select` or
:func:`service.notifications.service.notify`. New rows are found by ``RETURNING``, never by
``max(id)``; their deliveries and outbox messages are queued in the same transaction.

Groups (users inactive are never told, except the responsible officer, as before):

- ``officer``: the ticket's responsible officer;
- ``lead_department``: the handlers (role department) of the lead department;
- ``co_departments``: the handlers of the co-handling departments;
- ``lead_department_else_officer``: the lead department's handlers, or the officer while the
  ticket has no lead department (not dispatched yet, or returned);
- ``enterprise``: the enterprise's users;
- ``enterprise_else_officer``: the enterprise's users, or the officer when the enterprise has no
  active user (a ticket raised on its behalf: the officer confirms by a callback);
- ``county_supervisors``: the supervisors without a region (county level).

A kind may tell other groups, under another title, while the ticket's running step
(``due_step``) is a given one (:data:`STEP_RECIPIENTS`, :data:`STEP_TITLES`): a reminder of the
feedback deadline (SPEC §4: one working day, urgent two working hours, before it) goes to the
enterprise, which must give the feedback, titled 请评价办理结果, not to the department. The step
is read from the ticket row in the same statement, so the sweep, a reminder by hand and
:func:`recipients` agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlmodel import Session

from service import jobs
from service.config import get_settings
from service.db import UTCDateTime
from service.notifications.models import Notification, NotificationDelivery
from service.tickets.models import Ticket, TicketCoDepartment
from service.users.models import User

TITLES = {
    "submitted": "新诉求待受理", "dispatched": "新交办工单待签收", "reminded": "催办提醒",
    "overdue": "工单已超期（督办）", "escalated": "工单督办升级", "replied": "您的诉求已答复",
    "closed": "工单已办结", "reopened": "工单重办", "returned": "工单被退回",
    "extension_requested": "延期申请待审批", "extension_decided": "延期申请已审批",
}

_OVERDUE = ("lead_department", "officer", "county_supervisors")
#: The groups told of each kind of ticket notification (see the module docstring).
RECIPIENTS: dict[str, tuple[str, ...]] = {
    "submitted": ("officer",),
    "returned": ("officer",),
    "dispatched": ("lead_department", "co_departments"),
    "reopened": ("lead_department", "officer"),
    "reminded": ("lead_department_else_officer",),
    "overdue": _OVERDUE,
    "escalated": _OVERDUE,
    "replied": ("enterprise",),
    "closed": ("enterprise", "lead_department"),
    "extension_requested": ("county_supervisors",),
    "extension_decided": ("officer", "lead_department"),
}
DEFAULT_RECIPIENTS = ("officer",)
#: The groups told of a kind while the ticket's running step is a given one, instead of
#: ``RECIPIENTS[kind]`` (see the module docstring).
STEP_RECIPIENTS: dict[str, dict[str, tuple[str, ...]]] = {
    "reminded": {"feedback": ("enterprise_else_officer",)},
}
#: The title of a kind while the ticket's running step is a given one, instead of ``TITLES[kind]``.
STEP_TITLES: dict[str, dict[str, str]] = {
    "reminded": {"feedback": "请评价办理结果"},
}

T = Ticket.__table__
U = User.__table__
CO = TicketCoDepartment.__table__
N = Notification.__table__

#: the ticket columns the fan-out reads (a relation standing for the tickets must have them)
TICKET_COLUMNS = ("id", "number", "title", "status", "due_step", "officer_id", "lead_department_id",
                  "enterprise_id")


def groups_of(kind: str, step: str | None = None) -> tuple[str, ...]:
    """The recipient groups of ``kind`` about a ticket whose running step is ``step`` (``due_step``)."""
    by_step = STEP_RECIPIENTS.get(kind, {})
    if step in by_step:
        return by_step[step]
    return RECIPIENTS.get(kind, DEFAULT_RECIPIENTS)


def title_of(kind: str, step: str | None = None) -> str:
    """The title (before ``：<number> <title>``) of ``kind`` about a ticket whose running step is ``step``."""
    return STEP_TITLES.get(kind, {}).get(step or "", TITLES.get(kind, kind))


def _group(name: str, t: sa.FromClause, where) -> list[sa.Select]:
    """``SELECT user_id, ticket_id`` statements of one group over the tickets ``t`` (filtered by ``where``)."""
    def users_of(on) -> sa.Select:
        return sa.select(U.c.id.label("user_id"), t.c.id.label("ticket_id")).select_from(
            t.join(U, sa.and_(on, U.c.is_active)))

    def department_handlers() -> sa.Select:
        return users_of(sa.and_(U.c.department_id == t.c.lead_department_id, U.c.role == "department"))

    enterprise_user = sa.and_(U.c.enterprise_id == t.c.enterprise_id, U.c.role == "enterprise")

    def officer() -> sa.Select:
        return sa.select(t.c.officer_id.label("user_id"), t.c.id.label("ticket_id")).where(
            t.c.officer_id.is_not(None))

    if name == "officer":
        sel = officer()
    elif name == "lead_department":
        sel = department_handlers()
    elif name == "lead_department_else_officer":
        return [_filter(department_handlers(), where),
                _filter(officer().where(t.c.lead_department_id.is_(None)), where)]
    elif name == "co_departments":
        sel = sa.select(U.c.id.label("user_id"), t.c.id.label("ticket_id")).select_from(
            t.join(CO, CO.c.ticket_id == t.c.id)
            .join(U, sa.and_(U.c.department_id == CO.c.department_id, U.c.role == "department", U.c.is_active)))
    elif name == "enterprise":
        sel = users_of(enterprise_user)
    elif name == "enterprise_else_officer":
        return [_filter(users_of(enterprise_user), where),
                _filter(officer().where(~sa.exists().where(enterprise_user, U.c.is_active)), where)]
    elif name == "county_supervisors":
        sel = users_of(sa.and_(U.c.role == "supervisor", U.c.region_id.is_(None)))
    else:  # pragma: no cover - RECIPIENTS names only the groups above
        raise ValueError(f"unknown recipient group {name!r}")
    return [_filter(sel, where)]


def _filter(sel: sa.Select, where) -> sa.Select:
    return sel if where is None else sel.where(where)


def _and(where, condition):
    return condition if where is None else sa.and_(where, condition)


def recipients_select(kind: str, t: sa.FromClause = T, where=None):
    """``(user_id, ticket_id)`` pairs told of ``kind``, each pair once (``UNION``), over the
    tickets ``t`` (the ticket table or a relation with :data:`TICKET_COLUMNS`) filtered by ``where``;
    the groups of :data:`STEP_RECIPIENTS` for the tickets whose ``due_step`` names them."""
    by_step = STEP_RECIPIENTS.get(kind, {})
    if by_step:
        other_steps = sa.func.coalesce(t.c.due_step, "").not_in(sorted(by_step))
        parts = [sel for g in groups_of(kind) for sel in _group(g, t, _and(where, other_steps))]
        for step, groups in by_step.items():
            parts += [sel for g in groups for sel in _group(g, t, _and(where, t.c.due_step == step))]
    else:
        parts = [sel for g in groups_of(kind) for sel in _group(g, t, where)]
    return parts[0] if len(parts) == 1 else sa.union(*parts)


def _title_prefix(kind: str, t: sa.FromClause):
    """``<title>：`` of ``kind`` as SQL: a ``CASE`` on ``due_step`` when :data:`STEP_TITLES` has the kind."""
    default = sa.literal(TITLES.get(kind, kind) + "：")
    by_step = STEP_TITLES.get(kind, {})
    if not by_step:
        return default
    return sa.case(*((t.c.due_step == step, sa.literal(title + "：")) for step, title in by_step.items()),
                   else_=default)


def insert_statement(kind: str, t: sa.FromClause = T, where=None, *, at, body, dialect: str):
    """``INSERT INTO notification ... SELECT ... RETURNING id, user_id``: one row per recipient of
    ``kind`` per ticket of ``t`` (filtered by ``where``). ``at`` and ``body`` are SQL expressions
    or values (the instant, aware UTC; the text, the event's reason or ''). The title is
    ``<title_of(kind, due_step)>：<number> <title>`` cut at 200 characters; the payload names the ticket's number,
    status and running step after the change. ``dialect``: ``postgresql`` or ``sqlite`` (JSON)."""
    r = recipients_select(kind, t, where).subquery("r")
    title = sa.func.substr(_title_prefix(kind, t) + t.c.number + sa.literal(" ") + t.c.title, 1, 200)
    json_object = sa.func.json_build_object if dialect == "postgresql" else sa.func.json_object
    payload = json_object(sa.literal_column("'number'"), t.c.number, sa.literal_column("'status'"), t.c.status,
                          sa.literal_column("'step'"), t.c.due_step)
    if not isinstance(at, sa.ColumnElement):
        at = sa.literal(at, type_=UTCDateTime)
    if not isinstance(body, sa.ColumnElement):
        body = sa.literal(body, type_=sa.Text)
    sel = sa.select(r.c.user_id, t.c.id, sa.literal(kind), title, body, payload, at).select_from(
        r.join(t, t.c.id == r.c.ticket_id))
    return (sa.insert(N).from_select(["user_id", "ticket_id", "kind", "title", "body", "payload", "created_at"], sel)
            .returning(N.c.id, N.c.user_id))


def notify_tickets(session: Session, ticket_ids: Sequence[int], kind: str, *, at: datetime,
                   body: str = "") -> list[int]:
    """Notify the recipients of ``kind`` (:data:`RECIPIENTS`) on each ticket of ``ticket_ids``, in
    one statement, and queue their deliveries. Returns the new notifications' ids."""
    if not ticket_ids:
        return []
    ids = list(ticket_ids)
    dialect = session.get_bind().dialect.name
    if len(ids) == 1:
        where = T.c.id == ids[0]
    elif dialect == "postgresql":  # one array parameter, however many tickets and groups
        where = T.c.id == sa.any_(sa.bindparam("ticket_ids", ids, type_=postgresql.ARRAY(sa.Integer)))
    else:
        where = T.c.id.in_(ids)
    if len(ids) > 1 and dialect == "postgresql":
        # the tickets read once, then each group joins them: left to itself the planner may walk a
        # whole ticket index for a group with few users (the enterprise's, at the feedback step:
        # 100 ms at 200,000 tickets, bench/sla_scan.py)
        tickets = sa.select(*(T.c[c] for c in TICKET_COLUMNS)).where(where).cte("t").prefix_with("MATERIALIZED")
        stmt = insert_statement(kind, tickets, None, at=at, body=body or "", dialect=dialect)
    else:
        stmt = insert_statement(kind, T, where, at=at, body=body or "", dialect=dialect)
    new_ids = [row.id for row in session.execute(stmt)]
    queue_deliveries(session, new_ids)
    return new_ids


def recipients(session: Session, ticket: Ticket, kind: str, *, step: str | None = None) -> list[int]:
    """User ids told of ``kind`` on ``ticket`` (read only; the same query as :func:`notify_tickets`).
    ``step`` is accepted for old callers: the step that matters (:data:`STEP_RECIPIENTS`) is the
    ticket row's ``due_step``, read by the query."""
    sel = recipients_select(kind, T, T.c.id == ticket.id).subquery()
    return sorted(session.execute(sa.select(sel.c.user_id)).scalars())


def notify_select(session: Session, rows_select, kind: str, at: datetime) -> int:
    """Set-based notifications whose recipients are not a ticket kind's (the cadences):
    ``rows_select`` yields ``(user_id, ticket_id, title, body)``; one ``INSERT ... SELECT ...
    RETURNING`` writes them (kind ``kind``) and their deliveries are queued. Returns how many."""
    sel = rows_select.add_columns(sa.literal(kind), sa.literal(at, type_=UTCDateTime))
    new_ids = list(session.execute(sa.insert(N).from_select(
        ["user_id", "ticket_id", "title", "body", "kind", "created_at"], sel).returning(N.c.id)).scalars())
    queue_deliveries(session, new_ids)
    return len(new_ids)


def channels() -> list[tuple[str, str]]:
    """Configured channels as ``(channel, target)``; e-mail targets are per user (``"user"``)."""
    settings = get_settings()
    result = []
    if settings.webhook_url:
        result.append(("webhook", settings.webhook_url))
    if settings.smtp_host:
        result.append(("email", "user"))
    return result


def queue_deliveries(session: Session, notification_ids: Sequence[int]) -> None:
    """A delivery per configured channel for each notification (e-mail only to users with an
    address), and their ``notifications.deliver`` outbox messages (200 deliveries each)."""
    if not notification_ids or not channels():
        return
    emails = {}
    if get_settings().smtp_host:
        emails = dict(session.execute(
            sa.select(Notification.id, User.email).join(User, User.id == Notification.user_id)
            .where(Notification.id.in_(notification_ids), User.email.is_not(None))).all())
    deliveries = []
    for channel, target in channels():
        for nid in notification_ids:
            if channel == "email":
                if not emails.get(nid):
                    continue
                target = emails[nid]
            deliveries.append(NotificationDelivery(notification_id=nid, channel=channel, target=target))
    session.add_all(deliveries)
    session.flush()
    ids = [d.id for d in deliveries]
    for start in range(0, len(ids), 200):
        jobs.enqueue(session, "notifications.deliver", delivery_ids=ids[start:start + 200])

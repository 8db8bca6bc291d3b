"""Notifications (issue #3): who is told what, and delivery over webhook and e-mail.

One :class:`Notification` row per recipient is written in the transaction of the change that
causes it (readable at ``GET /api/v1/notifications`` at once). For every configured channel a
:class:`NotificationDelivery` row is added and a ``notifications.deliver`` task is put in the
outbox (:mod:`service.jobs`). Delivery is idempotent (a sent or dead delivery is never re-sent);
a failure is retried with exponential backoff (``delivery_backoff_seconds`` doubling) by the
``notifications.retry_failed`` sweep, and dead-lettered after ``delivery_max_attempts``.

Recipients per kind:

- submitted → the responsible officer; dispatched, reopened, reminded, returned-to → the
  handlers of the lead (and co-handling, on dispatch) department;
- reminded for the accept step → the officer;
- reminded for the feedback step (SPEC §4: one working day, urgent two working hours, before the
  feedback deadline) → the enterprise's users, who must give the feedback; when the enterprise
  has no active user (a ticket raised on its behalf), the officer, who confirms by a callback;
- overdue / escalated → lead department handlers, the officer and the county supervisors;
- replied, closed → the enterprise's users (closed also the lead department's handlers).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from email.message import EmailMessage

import httpx
import sqlalchemy as sa
from sqlmodel import Session, select

from service import clock, jobs
from service.config import get_settings
from service.db import insert_now
from service.notifications.models import Notification, NotificationDelivery
from service.tickets.models import Ticket, TicketCoDepartment
from service.users.models import User

TITLES = {
    "submitted": "新诉求待受理", "dispatched": "新交办工单待签收", "reminded": "催办提醒",
    "overdue": "工单已超期（督办）", "escalated": "工单督办升级", "replied": "您的诉求已答复",
    "closed": "工单已办结", "reopened": "工单重办", "returned": "工单被退回",
    "extension_requested": "延期申请待审批", "extension_decided": "延期申请已审批",
}
#: the title of a reminder of the feedback deadline (to the enterprise, SPEC §4)
FEEDBACK_REMINDER_TITLE = "请评价办理结果"


def _active_users(session: Session, *conditions) -> list[int]:
    stmt = select(User.id).where(User.is_active, *conditions)
    return list(session.exec(stmt).all())


def recipients(session: Session, ticket: Ticket, kind: str, *, step: str | None = None) -> list[int]:
    """User ids to notify of ``kind`` on ``ticket`` (see module docstring)."""
    def dept_users(include_co: bool = False) -> list[int]:
        dept_ids = [ticket.lead_department_id] if ticket.lead_department_id else []
        if include_co:
            dept_ids += list(session.exec(select(TicketCoDepartment.department_id)
                                          .where(TicketCoDepartment.ticket_id == ticket.id)).all())
        if not dept_ids:
            return []
        return _active_users(session, User.role == "department", User.department_id.in_(dept_ids))

    officer = [ticket.officer_id] if ticket.officer_id else []

    def enterprise_users() -> list[int]:
        return _active_users(session, User.role == "enterprise", User.enterprise_id == ticket.enterprise_id)

    def supervisors() -> list[int]:
        return _active_users(session, User.role == "supervisor", User.region_id.is_(None))

    if kind in ("submitted", "returned"):
        users = officer
    elif kind == "extension_decided":
        users = officer + dept_users()
    elif kind == "dispatched":
        users = dept_users(include_co=True)
    elif kind == "reopened":
        users = dept_users() + officer
    elif kind == "reminded" and step == "feedback":
        users = enterprise_users() or officer
    elif kind == "reminded":
        users = officer if step in ("accept", None) and not ticket.lead_department_id else dept_users()
    elif kind in ("overdue", "escalated"):
        users = dept_users() + officer + supervisors()
    elif kind == "replied":
        users = enterprise_users()
    elif kind == "closed":
        users = enterprise_users() + dept_users()
    elif kind == "extension_requested":
        users = supervisors()
    else:
        users = officer
    return list(dict.fromkeys(users))


def channels() -> list[tuple[str, str]]:
    """Configured channels as ``(channel, target)``; e-mail targets are per user (``"user"``)."""
    settings = get_settings()
    result = []
    if settings.webhook_url:
        result.append(("webhook", settings.webhook_url))
    if settings.smtp_host:
        result.append(("email", "user"))
    return result


def notify(session: Session, ticket: Ticket | None, kind: str, user_ids: Iterable[int], *,
           body: str = "", payload: dict | None = None, at: datetime | None = None) -> list[Notification]:
    """Write one notification per recipient and queue its deliveries (same transaction)."""
    at = at or clock.now()
    title = TITLES.get(kind, kind)
    if ticket is not None:
        title = f"{title}：{ticket.number} {ticket.title}"[:200]
    rows = [Notification(user_id=u, ticket_id=ticket.id if ticket else None, kind=kind, title=title,
                         body=body, payload=payload or {}, created_at=at) for u in user_ids]
    if not rows:
        return rows
    insert_now(session, rows)  # one Core INSERT, not a unit-of-work flush: on every submission
    if channels():
        session.flush()
        _queue_deliveries(session, [n.id for n in rows])
    return rows


def notify_ticket(session: Session, ticket: Ticket, kind: str, *, step: str | None = None,
                  body: str = "", at: datetime | None = None) -> list[Notification]:
    """:func:`notify` the standard recipients of ``kind`` on ``ticket``."""
    return notify(session, ticket, kind, recipients(session, ticket, kind, step=step), body=body,
                  payload={"number": ticket.number, "status": ticket.status, "step": step}, at=at)


def _queue_deliveries(session: Session, notification_ids: Sequence[int]) -> None:
    if not notification_ids:
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


def notify_many(session: Session, ticket_ids: Sequence[int], kind: str, *, at: datetime,
                step_by_ticket: dict[int, str] | None = None) -> int:
    """Set-based notifications for the sweeps: recipients of ``kind`` for many tickets in a few
    INSERT ... SELECT statements (lead-department handlers, officers, county supervisors).
    Returns the number of notifications written."""
    if not ticket_ids:
        return 0
    title_prefix = TITLES.get(kind, kind) + "："
    t = Ticket.__table__
    u = User.__table__

    def titled(prefix: str):
        return sa.func.substr(sa.literal(prefix) + t.c.number + sa.literal(" ") + t.c.title, 1, 200)

    title = titled(title_prefix)
    ids = list(ticket_ids)
    selects = []
    # a reminder of the feedback deadline goes to the enterprise (recipients(): "reminded", feedback)
    not_feedback = sa.func.coalesce(t.c.due_step, "") != "feedback"
    if kind in ("reminded", "overdue", "escalated"):
        cond = t.c.id.in_(ids) & (not_feedback if kind == "reminded" else sa.true())
        selects.append(sa.select(u.c.id, t.c.id, title).select_from(
            t.join(u, sa.and_(u.c.department_id == t.c.lead_department_id, u.c.role == "department",
                              u.c.is_active))).where(cond))
    if kind in ("overdue", "escalated") or kind == "reminded":
        cond = t.c.id.in_(ids) & t.c.officer_id.is_not(None)
        if kind == "reminded":
            cond = cond & t.c.lead_department_id.is_(None) & not_feedback
        selects.append(sa.select(t.c.officer_id, t.c.id, title).where(cond))
    if kind in ("overdue", "escalated"):
        selects.append(sa.select(u.c.id, t.c.id, title).select_from(
            t.join(u, sa.and_(u.c.role == "supervisor", u.c.region_id.is_(None), u.c.is_active)))
            .where(t.c.id.in_(ids)))
    enterprise_user = sa.and_(u.c.enterprise_id == t.c.enterprise_id, u.c.role == "enterprise", u.c.is_active)
    if kind == "closed" or kind == "reminded":
        feedback = kind == "reminded"
        cond = t.c.id.in_(ids) & (t.c.due_step == "feedback" if feedback else sa.true())
        selects.append(sa.select(u.c.id, t.c.id, titled(FEEDBACK_REMINDER_TITLE + "：") if feedback else title)
                       .select_from(t.join(u, enterprise_user)).where(cond))
    if kind == "reminded":  # an enterprise without an active user: its officer calls back
        selects.append(sa.select(t.c.officer_id, t.c.id, titled(FEEDBACK_REMINDER_TITLE + "：")).where(
            t.c.id.in_(ids), t.c.due_step == "feedback", t.c.officer_id.is_not(None),
            ~sa.exists().where(enterprise_user)))
    n = Notification.__table__
    before = session.execute(sa.select(sa.func.coalesce(sa.func.max(n.c.id), 0))).scalar_one()
    written = 0
    for sel in selects:
        sel = sel.add_columns(sa.literal(kind), sa.literal(""), sa.literal(at, type_=n.c.created_at.type))
        result = session.execute(sa.insert(n).from_select(
            ["user_id", "ticket_id", "title", "kind", "body", "created_at"], sel))
        written += result.rowcount or 0
    if channels() and written:
        new_ids = list(session.execute(sa.select(n.c.id).where(n.c.id > before, n.c.kind == kind,
                                                               n.c.ticket_id.in_(ids))).scalars())
        _queue_deliveries(session, new_ids)
    return written


# ------------------------------------------------------------------ reading

def list_for_user(session: Session, user_id: int, *, unread_only: bool = False, limit: int = 50,
                  before_id: int | None = None) -> list[Notification]:
    """The user's notifications, newest first (keyset by id)."""
    stmt = select(Notification).where(Notification.user_id == user_id)
    if unread_only:
        stmt = stmt.where(Notification.read_at.is_(None))
    if before_id is not None:
        stmt = stmt.where(Notification.id < before_id)
    return list(session.exec(stmt.order_by(Notification.id.desc()).limit(limit)).all())


def mark_read(session: Session, user_id: int, ids: Sequence[int] | None) -> int:
    """Mark the user's notifications read (all unread when ``ids`` is None); returns the count."""
    stmt = sa.update(Notification).where(Notification.user_id == user_id, Notification.read_at.is_(None))
    if ids is not None:
        stmt = stmt.where(Notification.id.in_(list(ids)))
    return session.execute(stmt.values(read_at=clock.now())).rowcount or 0


# ------------------------------------------------------------------ delivery

def sign(body: bytes, secret: str) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of the exact request body with the webhook secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _send_webhook(target: str, notification: Notification) -> None:
    settings = get_settings()
    body = json.dumps({
        "id": notification.id, "kind": notification.kind, "title": notification.title,
        "body": notification.body, "user_id": notification.user_id, "ticket_id": notification.ticket_id,
        "payload": notification.payload, "created_at": notification.created_at.isoformat(),
    }, ensure_ascii=False, sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "X-Qifu-Delivery": str(notification.id),
               "X-Qifu-Signature": sign(body, settings.webhook_secret)}
    response = httpx.post(target, content=body, headers=headers, timeout=10.0)
    response.raise_for_status()


def _send_email(target: str, notification: Notification) -> None:
    settings = get_settings()
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = target
    message["Subject"] = notification.title
    message.set_content(notification.body or notification.title)
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=10) as smtp:
        smtp.send_message(message)


SENDERS = {"webhook": _send_webhook, "email": _send_email}


def deliver(session: Session, delivery_id: int) -> str:
    """Attempt one delivery; returns its state afterwards. Idempotent: a ``sent`` or ``dead``
    delivery is left alone. The row is locked while sending so two workers never send it twice
    at once. Failures schedule a retry with exponential backoff, then dead-letter.
    """
    stmt = select(NotificationDelivery).where(NotificationDelivery.id == delivery_id)
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    elif dialect == "sqlite":
        # No row locks on SQLite: take the database write lock first (a no-op UPDATE, waiting on
        # busy_timeout). Reading first and writing after the send failed with "database is
        # locked" (SQLITE_BUSY_SNAPSHOT) whenever another thread committed during the send, and
        # left the delivery pending for good. The send is bounded by its 10 s timeout.
        session.execute(sa.update(NotificationDelivery).where(NotificationDelivery.id == delivery_id)
                        .values(attempts=NotificationDelivery.attempts))
    delivery = session.exec(stmt).first()
    if delivery is None or delivery.state in ("sent", "dead"):
        return delivery.state if delivery else "missing"
    settings = get_settings()
    notification = session.get(Notification, delivery.notification_id)
    delivery.attempts += 1
    try:
        SENDERS[delivery.channel](delivery.target, notification)
    except Exception as exc:  # noqa: BLE001 - any failure is recorded and retried
        delivery.last_error = f"{type(exc).__name__}: {exc}"[:500]
        if delivery.attempts >= settings.delivery_max_attempts:
            delivery.state, delivery.next_attempt_at = "dead", None
        else:
            delivery.state = "failed"
            delay = settings.delivery_backoff_seconds * 2 ** (delivery.attempts - 1)
            delivery.next_attempt_at = clock.now() + timedelta(seconds=delay)
    else:
        delivery.state, delivery.sent_at, delivery.next_attempt_at = "sent", clock.now(), None
    session.flush()
    return delivery.state


def retry_failed(session: Session) -> int:
    """Claim failed deliveries whose retry time has come (set them ``pending`` in one UPDATE, so a
    second sweep cannot queue them again) and queue ``notifications.deliver`` for them."""
    d = NotificationDelivery.__table__
    ids = list(session.execute(
        sa.update(d).where(d.c.state == "failed", d.c.next_attempt_at <= clock.now())
        .values(state="pending").returning(d.c.id)).scalars())
    for start in range(0, len(ids), 200):
        jobs.enqueue(session, "notifications.deliver", delivery_ids=ids[start:start + 200])
    return len(ids)

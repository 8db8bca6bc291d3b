"""Notifications (issue #3): who is told what, and delivery over webhook and e-mail.

One :class:`Notification` row per recipient is written in the transaction of the change that
causes it (readable at ``GET /api/v1/notifications`` at once). For every configured channel a
:class:`NotificationDelivery` row is added and a ``notifications.deliver`` task is put in the
outbox (:mod:`service.jobs`). Delivery is idempotent (a sent or dead delivery is never re-sent);
a failure is retried with exponential backoff (``delivery_backoff_seconds`` doubling) by the
``notifications.retry_failed`` sweep, and dead-lettered after ``delivery_max_attempts``.

Who is told of what about a ticket is defined once, in :mod:`service.notifications.fanout`
(``RECIPIENTS``), and written by its one ``INSERT ... SELECT ... RETURNING``.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import os
import smtplib
import threading
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from email.message import EmailMessage

import httpx
import sqlalchemy as sa
from sqlmodel import Session, select

from service import clock, jobs
from service.config import get_settings
from service.db import insert_now
from service.notifications.fanout import (  # noqa: F401 - re-exported: the one fan-out
    TITLES,
    channels,
    queue_deliveries,
    recipients,
)
from service.notifications.models import Notification, NotificationDelivery
from service.tickets.models import Ticket


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
    insert_now(session, rows)  # one Core INSERT, not a unit-of-work flush
    if channels():
        session.flush()
        queue_deliveries(session, [n.id for n in rows])
    return rows


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


def _send_webhook(target: str, notification: Notification, ticket_number: str | None = None) -> None:
    settings = get_settings()
    body = json.dumps({
        "id": notification.id, "kind": notification.kind, "title": notification.title,
        "body": notification.body, "user_id": notification.user_id, "ticket_id": notification.ticket_id,
        "payload": notification.payload, "created_at": notification.created_at.isoformat(),
    }, ensure_ascii=False, sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "X-Qifu-Delivery": str(notification.id),
               "X-Qifu-Signature": sign(body, settings.webhook_secret)}
    response = http_client().post(target, content=body, headers=headers)
    response.raise_for_status()


_http: tuple[int, httpx.Client] | None = None
_http_lock = threading.Lock()


def http_client() -> httpx.Client:
    """The process's one HTTP client for webhooks (10 s timeout): its connections are kept alive
    and its TLS context (the CA bundle) is loaded once. ``httpx.post`` built a new client per
    delivery, and loading the CA bundle took ~80 ms of CPU each time: most of a delivery's cost
    (docs/reliability.md §2). Made again in a forked child (a Celery pool process), since
    connections must not be shared across ``fork``; thread-safe (the embedded worker threads)."""
    global _http
    pid = os.getpid()
    current = _http
    if current is not None and current[0] == pid:
        return current[1]
    with _http_lock:
        if _http is None or _http[0] != pid:
            _http = (pid, httpx.Client(timeout=10.0))
        return _http[1]


def email_message(target: str, notification: Notification, ticket_number: str | None = None) -> EmailMessage:
    """The e-mail of a notification (issue 3; issue 12 for the headers a reply is matched by).

    About a ticket, its ``Message-ID`` is ``<ticket-<number>.<uuid>@<QIFU_MAIL_MESSAGE_ID_DOMAIN>>``
    and its subject carries the ticket number, so the e-mail intake recognises a reply by its
    ``In-Reply-To``/``References`` or subject (docs/mail_intake.md). Every notification says it
    is automatic (RFC 3834 ``Auto-Submitted: auto-generated``; ``X-Auto-Response-Suppress: All``
    for Exchange), so well-behaved responders do not answer it: no mail loop.
    """
    settings = get_settings()
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = target
    subject = notification.title
    if ticket_number and ticket_number not in subject:
        subject = f"[{ticket_number}] {subject}"
    message["Subject"] = subject
    message["Date"] = email.utils.format_datetime(clock.now())
    domain = settings.mail_message_id_domain
    message["Message-ID"] = (f"<ticket-{ticket_number}.{uuid.uuid4().hex}@{domain}>" if ticket_number
                             else email.utils.make_msgid(idstring=f"n{notification.id}", domain=domain))
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message.set_content(notification.body or notification.title)
    return message


def _send_email(target: str, notification: Notification, ticket_number: str | None = None) -> None:
    settings = get_settings()
    message = email_message(target, notification, ticket_number)
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=10) as smtp:
        smtp.send_message(message)


SENDERS = {"webhook": _send_webhook, "email": _send_email}


def deliver(session: Session, delivery_id: int) -> str:
    """Attempt one delivery; returns its state afterwards (``sent``, ``failed``, ``dead``;
    ``missing`` when no such row, or when another transaction holds its lock: that one sends it,
    or the stale sweep of :func:`retry_failed` queues it again). Idempotent: a ``sent`` or
    ``dead`` delivery is left alone. The row is locked (``FOR UPDATE SKIP LOCKED``) while sending,
    so two workers never send it twice at once; the caller commits right after, and a crash
    between the send and that commit is the one way a receiver gets a delivery twice (same
    ``X-Qifu-Delivery``: at-least-once, workers.md). Failures schedule a retry with exponential
    backoff (``QIFU_DELIVERY_BACKOFF_SECONDS`` doubling), then dead-letter after
    ``QIFU_DELIVERY_MAX_ATTEMPTS`` (SPEC §9).
    """
    stmt = (select(NotificationDelivery, Notification, Ticket.number)
            .join(Notification, Notification.id == NotificationDelivery.notification_id)
            .outerjoin(Ticket, Ticket.id == Notification.ticket_id)
            .where(NotificationDelivery.id == delivery_id)
            .execution_options(populate_existing=True))  # the row as locked, not as cached
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        stmt = stmt.with_for_update(of=NotificationDelivery, skip_locked=True)
    elif dialect == "sqlite":
        # No row locks on SQLite: take the database write lock first (a no-op UPDATE, waiting on
        # busy_timeout). Reading first and writing after the send failed with "database is
        # locked" (SQLITE_BUSY_SNAPSHOT) whenever another thread committed during the send, and
        # left the delivery pending for good. The send is bounded by its 10 s timeout.
        session.execute(sa.update(NotificationDelivery).where(NotificationDelivery.id == delivery_id)
                        .values(attempts=NotificationDelivery.attempts))
    row = session.exec(stmt).first()  # one round trip: the delivery (locked), its notification, the number
    if row is None:
        return "missing"
    delivery, notification, number = row
    if delivery.state in ("sent", "dead"):
        return delivery.state
    settings = get_settings()
    delivery.attempts += 1
    try:
        SENDERS[delivery.channel](delivery.target, notification, number)
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


def deliver_batch(session: Session, delivery_ids: Sequence[int]) -> list[str]:
    """Deliver ``delivery_ids`` (one ``notifications.deliver`` message: up to 200) in order, each
    in its own transaction (:func:`deliver`, then a commit), on one session and connection
    (the first one also holds the read below).
    Returns each one's state afterwards, as :func:`deliver` does.

    First one query reads which of them are still to be sent (``pending`` or ``failed``): the
    others (``sent``, ``dead``, unknown) are answered from it without a lock or a transaction
    each. A message queued again by the stale sweep of :func:`retry_failed` for deliveries that
    were only waiting in a long queue (not lost) then costs one query, not one per delivery.
    A database error propagates (the task fails); the deliveries not yet committed stay
    ``pending`` and the stale sweep queues them again (SPEC §9: nothing accepted is lost).
    """
    ids = list(delivery_ids)
    if not ids:
        return []
    states = dict(session.execute(sa.select(NotificationDelivery.id, NotificationDelivery.state)
                                  .where(NotificationDelivery.id.in_(ids))).all())
    out = []
    for delivery_id in ids:
        state = states.get(delivery_id, "missing")
        if state in ("pending", "failed"):
            state = deliver(session, delivery_id)
            session.commit()
        out.append(state)
    return out


def retry_failed(session: Session) -> int:
    """Claim failed deliveries whose retry time has come (set them ``pending`` in one UPDATE, so a
    second sweep cannot queue them again) and queue ``notifications.deliver`` for them.

    Also claims **lost** deliveries: still ``pending`` ``QIFU_DELIVERY_STALE_SECONDS`` after their
    notification was written (or after their last queueing). Their message left the outbox but
    the broker lost it: a Redis restart without persistence drops the queued messages (found by
    tests/test_reliability.py, Redis down for the middle third). Each claim moves
    ``next_attempt_at`` one stale period ahead, so a delivery is queued again at most once per
    period; :func:`deliver` locks the row and skips a sent one, so a message that was only slow
    (not lost) does no harm (SPEC §9: nothing accepted is lost).
    """
    d = NotificationDelivery.__table__
    n = Notification.__table__
    now = clock.now()
    stale = timedelta(seconds=get_settings().delivery_stale_seconds)
    lost = sa.and_(d.c.state == "pending", sa.or_(
        d.c.next_attempt_at <= now,
        sa.and_(d.c.next_attempt_at.is_(None),
                sa.exists().where(n.c.id == d.c.notification_id, n.c.created_at <= now - stale))))
    ids = list(session.execute(
        sa.update(d).where(sa.or_(sa.and_(d.c.state == "failed", d.c.next_attempt_at <= now), lost))
        .values(state="pending", next_attempt_at=now + stale).returning(d.c.id)).scalars())
    for start in range(0, len(ids), 200):
        jobs.enqueue(session, "notifications.deliver", delivery_ids=ids[start:start + 200])
    return len(ids)

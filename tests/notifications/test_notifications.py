"""Notifications (issue #3): who is told what through the real ticket flows and SLA sweeps, the
``/api/v1/notifications`` endpoints, and delivery over a signed webhook (a real HTTP server in a
thread) and SMTP (a real aiosmtpd server): retries with exponential backoff, dead letter after N
failures, and ``retry_failed`` claiming each failed delivery once, also with two connections.

Also home of :class:`WebhookReceiver` and :func:`settings_env`, used by ``test_celery_integration``
and ``test_embedded``.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa
import time_machine
from aiosmtpd.controller import Controller
from sqlmodel import Session, select

from service import jobs
from service.config import get_settings
from service.db import get_engine
from service.notifications import service as notifications
from service.notifications.models import Notification, NotificationDelivery
from service.outbox_models import OutboxMessage
from service.sla import sweeps
from service.tickets.models import Ticket
from service.users.models import User
from tests import factories as f
from tests.factories import SHANGHAI

SECRET = "whsec-test-5f0c1e"
#: a Monday, a working day (2026-03-02 10:00 in Shanghai): deadlines are predictable
MONDAY = datetime(2026, 3, 2, 10, 0, tzinfo=SHANGHAI)


# =========================================================================== shared helpers

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class WebhookReceiver:
    """A real HTTP server in a thread that records every webhook request.

    ``status``: the HTTP status answered (an int, or ``callable(delivery_header, nth_call)``).
    ``hold_first``: seconds the *first* request of each ``X-Qifu-Delivery`` is held before it is
    answered (a slow receiver, to catch a worker mid-task); :meth:`release` ends the hold.
    """

    def __init__(self, secret: str = SECRET, status: int | Callable[[str, int], int] = 200,
                 hold_first: float = 0.0) -> None:
        self.secret = secret
        self.status = status
        self.hold_first = hold_first
        self.requests: list[dict] = []
        self._counts: Counter = Counter()  # requests per X-Qifu-Delivery (O(1) per request)
        self._lock = threading.Lock()
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a production receiver

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                delivery = self.headers.get("X-Qifu-Delivery", "")
                signature = self.headers.get("X-Qifu-Signature", "")
                expected = "sha256=" + hmac.new(receiver.secret.encode(), body, hashlib.sha256).hexdigest()
                with receiver._lock:
                    receiver._counts[delivery] += 1
                    nth = receiver._counts[delivery]
                    receiver.requests.append({"delivery": delivery, "body": body, "signature": signature,
                                              "valid": hmac.compare_digest(signature, expected),
                                              "path": self.path})
                if nth == 1 and receiver.hold_first:
                    receiver._release.wait(receiver.hold_first)
                status = receiver.status(delivery, nth) if callable(receiver.status) else receiver.status
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the client went away (a killed worker)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/qifu"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    def release(self) -> None:
        self._release.set()

    def per_delivery(self) -> Counter:
        """Requests per ``X-Qifu-Delivery`` value."""
        with self._lock:
            return Counter(self._counts)

    def __len__(self) -> int:
        with self._lock:
            return len(self.requests)


@contextmanager
def settings_env() -> Iterator[Callable[..., None]]:
    """``set_env(QIFU_X="...", ...)`` sets environment variables (``None`` deletes) and clears the
    settings and engine caches; everything is restored (and the caches cleared) on exit."""
    mp = pytest.MonkeyPatch()

    def set_env(**values: str | int | None) -> None:
        for key, value in values.items():
            if value is None:
                mp.delenv(key, raising=False)
            else:
                mp.setenv(key, str(value))
        get_settings.cache_clear()
        get_engine.cache_clear()

    try:
        yield set_env
    finally:
        mp.undo()
        get_settings.cache_clear()
        get_engine.cache_clear()


@pytest.fixture
def env_setter() -> Iterator[Callable[..., None]]:
    with settings_env() as set_env:
        yield set_env


class RecordingDispatcher:
    """Stands in for the broker: records ``(task, kwargs)`` instead of sending."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []
        self.lock = threading.Lock()

    def __call__(self, task: str, kwargs: dict) -> None:
        with self.lock:
            self.sent.append((task, kwargs))


@pytest.fixture(autouse=True)
def _no_broker() -> Iterator[RecordingDispatcher]:
    """No after-commit relay thread and no broker here: this file drives delivery by hand (a
    committed outbox row must never reach another database through the embedded pool)."""
    recorder = RecordingDispatcher()
    jobs.set_relay_enabled(False)
    jobs.set_dispatcher(recorder)
    yield recorder
    jobs.set_dispatcher(None)
    jobs.set_relay_enabled(True)


# =========================================================================== helpers of this file

def notified(session: Session, ticket: Ticket, kind: str) -> list[int]:
    """User ids notified of ``kind`` on ``ticket`` (one row per recipient)."""
    return list(session.exec(select(Notification.user_id).where(
        Notification.ticket_id == ticket.id, Notification.kind == kind)).all())


def users(session: Session, *conditions) -> set[int]:
    return set(session.exec(select(User.id).where(User.is_active, *conditions)).all())


def dept_handlers(session: Session, *codes: str) -> set[int]:
    ids = [f.department(session, c).id for c in codes]
    return users(session, User.role == "department", User.department_id.in_(ids))


def enterprise_users(session: Session, ticket: Ticket) -> set[int]:
    return users(session, User.role == "enterprise", User.enterprise_id == ticket.enterprise_id)


def county_supervisors(session: Session) -> set[int]:
    return users(session, User.role == "supervisor", User.region_id.is_(None))


def deliveries_of(session: Session, ticket: Ticket, channel: str | None = None) -> list[NotificationDelivery]:
    stmt = (select(NotificationDelivery).join(Notification, Notification.id == NotificationDelivery.notification_id)
            .where(Notification.ticket_id == ticket.id).order_by(NotificationDelivery.id))
    if channel:
        stmt = stmt.where(NotificationDelivery.channel == channel)
    return list(session.exec(stmt).all())


def queued_delivery_ids(session: Session, after_id: int = 0) -> list[int]:
    """Delivery ids in ``notifications.deliver`` outbox messages with id > ``after_id``."""
    rows = session.exec(select(OutboxMessage).where(OutboxMessage.task == "notifications.deliver",
                                                    OutboxMessage.id > after_id)).all()
    return [d for m in rows for d in m.kwargs["delivery_ids"]]


def max_outbox_id(session: Session) -> int:
    return session.exec(select(sa.func.coalesce(sa.func.max(OutboxMessage.id), 0))).one()


# =========================================================================== recipients per kind

def test_submitted_goes_to_the_officer(session):
    ticket = f.make_ticket(session, "submitted")
    assert ticket.officer_id is not None
    assert notified(session, ticket, "submitted") == [ticket.officer_id]
    assert notifications.recipients(session, ticket, "submitted") == [ticket.officer_id]


def test_no_channel_configured_means_no_delivery(session):
    assert notifications.channels() == []
    before = max_outbox_id(session)
    ticket = f.make_ticket(session, "dispatched")
    assert deliveries_of(session, ticket) == []
    assert queued_delivery_ids(session, before) == []


def test_dispatched_goes_to_lead_and_co_handling_departments(session):
    ticket = f.make_ticket(session, "dispatched", lead_department="RSJ", co_departments=["JXJ", "SJJ"])
    got = notified(session, ticket, "dispatched")
    assert len(got) == len(set(got)), "one notification per recipient"
    assert set(got) == dept_handlers(session, "RSJ", "JXJ", "SJJ")
    assert ticket.officer_id not in got


def test_replied_goes_to_the_enterprise_users(session):
    ticket = f.make_ticket(session, "replied", lead_department="RSJ")
    expected = enterprise_users(session, ticket)
    assert expected
    assert set(notified(session, ticket, "replied")) == expected


def test_closed_by_confirm_goes_to_enterprise_and_department(session):
    ticket = f.make_ticket(session, "closed", lead_department="RSJ")
    assert set(notified(session, ticket, "closed")) == enterprise_users(session, ticket) | dept_handlers(session, "RSJ")


def test_reopened_goes_to_department_and_officer(session):
    ticket = f.make_ticket(session, "replied", lead_department="ZJJ")
    f.act(session, ticket, "reopen", by=f.enterprise_user_of(session, ticket.enterprise_id))
    assert ticket.status == "dispatched"
    assert set(notified(session, ticket, "reopened")) == dept_handlers(session, "ZJJ") | {ticket.officer_id}


def test_sweeps_remind_overdue_escalate_with_supervisor(session):
    """A ticket past its deadlines: the sweeps remind the lead department, then mark it overdue and
    escalate it (level 1, then level 2) to the department, the officer and the county supervisors
    (a town supervisor is not told). The set-based sweep agrees with ``recipients()``."""
    with time_machine.travel(MONDAY, tick=False):
        ticket = f.make_ticket(session, "in_progress", lead_department="RSJ")
        accept_step = f.make_ticket(session, "submitted", title="还没受理的诉求")
    assert ticket.remind_at and ticket.overdue_at and ticket.level2_at
    assert accept_step.remind_at and accept_step.lead_department_id is None

    assert sweeps.send_reminders(session, ticket.remind_at) >= 1
    handlers = dept_handlers(session, "RSJ")
    assert set(notified(session, ticket, "reminded")) == handlers
    assert set(notifications.recipients(session, ticket, "reminded", step=ticket.due_step)) == handlers

    sweeps.send_reminders(session, accept_step.remind_at)  # accept step, no department: the officer
    assert notified(session, accept_step, "reminded") == [accept_step.officer_id]

    sweeps.mark_overdue(session, ticket.overdue_at)
    told = handlers | {ticket.officer_id} | county_supervisors(session)
    supervisor1 = f.user(session, "supervisor1").id
    assert supervisor1 in told and f.user(session, "supervisor2").id not in told
    got = notified(session, ticket, "overdue")
    assert len(got) == len(set(got)) and set(got) == told
    assert set(notifications.recipients(session, ticket, "overdue")) == told

    level2_at = ticket.level2_at
    sweeps.mark_overdue(session, level2_at)
    assert set(notified(session, ticket, "escalated")) == told
    assert f.reload(session, ticket).escalation_level == 2

    # a second sweep at the same instant tells nobody again
    sweeps.send_reminders(session, level2_at)
    sweeps.mark_overdue(session, level2_at)
    for kind, expected in (("reminded", handlers), ("overdue", told), ("escalated", told)):
        assert sorted(notified(session, ticket, kind)) == sorted(expected)


# =========================================================================== the API

def test_list_is_own_newest_first_with_unread_filter_and_mark_read(session, client, login):
    ticket = f.make_ticket(session, "dispatched", lead_department="RSJ")
    officer = session.get(User, ticket.officer_id)
    handler = f.user(session, "dept_rsj")
    other = session.exec(select(Notification.id).where(Notification.ticket_id == ticket.id,
                                                        Notification.user_id == handler.id)).one()
    headers = login(officer.username)

    resp = client.get("/api/v1/notifications", headers=headers)
    assert resp.status_code == 200, resp.text
    items = resp.json()
    ids = [n["id"] for n in items]
    assert ids == sorted(ids, reverse=True), "newest first"
    own = set(session.exec(select(Notification.id).where(Notification.user_id == officer.id)).all())
    assert set(ids) <= own and other not in ids
    mine = [n for n in items if n["ticket_id"] == ticket.id]
    assert [n["kind"] for n in mine] == ["submitted"]
    assert mine[0]["read_at"] is None and ticket.number in mine[0]["title"]

    # another user's id is not marked; one's own is, once
    resp = client.post("/api/v1/notifications/read", json={"ids": [other, mine[0]["id"]]}, headers=headers)
    assert resp.status_code == 200 and resp.json() == {"updated": 1}
    assert client.post("/api/v1/notifications/read", json={"ids": [mine[0]["id"]]},
                       headers=headers).json() == {"updated": 0}
    session.expire_all()
    assert session.get(Notification, other).read_at is None

    unread = [n["id"] for n in client.get("/api/v1/notifications?unread=true", headers=headers).json()]
    assert mine[0]["id"] not in unread
    again = client.get("/api/v1/notifications", headers=headers).json()
    assert next(n for n in again if n["id"] == mine[0]["id"])["read_at"] is not None

    # the handler: marking all (no ids) clears their unread list
    h_headers = login("dept_rsj")
    assert other in [n["id"] for n in client.get("/api/v1/notifications?unread=true", headers=h_headers).json()]
    assert client.post("/api/v1/notifications/read", json={}, headers=h_headers).json()["updated"] >= 1
    assert client.get("/api/v1/notifications?unread=true", headers=h_headers).json() == []


def test_list_paging_and_bad_input(session, client, login):
    ticket = f.make_ticket(session, "submitted")
    headers = login(session.get(User, ticket.officer_id).username)
    first = client.get("/api/v1/notifications?limit=1", headers=headers).json()
    assert len(first) == 1
    before = client.get(f"/api/v1/notifications?limit=1&before_id={first[0]['id']}", headers=headers).json()
    assert all(n["id"] < first[0]["id"] for n in before)
    assert client.get("/api/v1/notifications?limit=0", headers=headers).status_code == 422
    assert client.post("/api/v1/notifications/read", json={"ids": "x"}, headers=headers).status_code == 422
    assert client.post("/api/v1/notifications/read", json={"extra": 1}, headers=headers).status_code == 422
    assert client.get("/api/v1/notifications").status_code == 401


# =========================================================================== webhook delivery

@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r


def test_webhook_is_signed_over_the_exact_body_and_idempotent(session, env_setter, receiver):
    env_setter(QIFU_WEBHOOK_URL=receiver.url, QIFU_WEBHOOK_SECRET=SECRET)
    before = max_outbox_id(session)
    ticket = f.make_ticket(session, "submitted")
    [delivery] = deliveries_of(session, ticket)
    assert (delivery.channel, delivery.target, delivery.state) == ("webhook", receiver.url, "pending")
    assert queued_delivery_ids(session, before) == [delivery.id], "queued in the same transaction"

    assert notifications.deliver(session, delivery.id) == "sent"
    [req] = receiver.requests
    assert req["valid"], "HMAC-SHA256 of the exact body with the secret"
    assert req["signature"] == notifications.sign(req["body"], SECRET)
    assert req["signature"] != notifications.sign(req["body"], "another-secret")
    payload = json.loads(req["body"])
    assert payload["kind"] == "submitted" and payload["ticket_id"] == ticket.id
    assert payload["user_id"] == ticket.officer_id and payload["payload"]["number"] == ticket.number
    assert req["delivery"] == str(delivery.notification_id)
    assert req["path"] == "/hooks/qifu"
    assert (delivery.state, delivery.attempts, delivery.sent_at is not None) == ("sent", 1, True)

    # a redelivered task (acks_late, a double relay) sends nothing again
    assert notifications.deliver(session, delivery.id) == "sent"
    assert len(receiver) == 1 and delivery.attempts == 1
    assert notifications.deliver(session, 10**9) == "missing"


def test_webhook_failures_back_off_exponentially_then_dead_letter(session, env_setter):
    with WebhookReceiver(status=500) as failing:
        env_setter(QIFU_WEBHOOK_URL=failing.url, QIFU_WEBHOOK_SECRET=SECRET,
                   QIFU_DELIVERY_MAX_ATTEMPTS=3, QIFU_DELIVERY_BACKOFF_SECONDS=30)
        with time_machine.travel(MONDAY, tick=False) as traveller:
            ticket = f.make_ticket(session, "submitted")
            [delivery] = deliveries_of(session, ticket)

            assert notifications.deliver(session, delivery.id) == "failed"
            t1 = MONDAY + timedelta(seconds=30)
            assert (delivery.attempts, delivery.next_attempt_at) == (1, t1)
            assert "500" in delivery.last_error

            # not before its time; at its time, claimed and queued once
            traveller.move_to(t1 - timedelta(seconds=1))
            notifications.retry_failed(session)
            session.refresh(delivery)
            assert delivery.state == "failed"
            traveller.move_to(t1)
            before = max_outbox_id(session)
            assert notifications.retry_failed(session) >= 1
            assert delivery.id in queued_delivery_ids(session, before)
            session.refresh(delivery)
            assert delivery.state == "pending"

            assert notifications.deliver(session, delivery.id) == "failed"
            assert (delivery.attempts, delivery.next_attempt_at) == (2, t1 + timedelta(seconds=60))

            traveller.move_to(t1 + timedelta(seconds=60))
            notifications.retry_failed(session)
            assert notifications.deliver(session, delivery.id) == "dead"
            assert (delivery.attempts, delivery.next_attempt_at) == (3, None)
            assert "500" in delivery.last_error

            # dead letter: never retried, never sent again
            traveller.move_to(t1 + timedelta(days=30))
            before = max_outbox_id(session)
            notifications.retry_failed(session)
            assert delivery.id not in queued_delivery_ids(session, before)
            assert notifications.deliver(session, delivery.id) == "dead"
            assert len(failing) == 3


def test_unreachable_webhook_is_a_recorded_failure(session, env_setter):
    env_setter(QIFU_WEBHOOK_URL=f"http://127.0.0.1:{free_port()}/nobody", QIFU_WEBHOOK_SECRET=SECRET)
    ticket = f.make_ticket(session, "submitted")
    [delivery] = deliveries_of(session, ticket)
    assert notifications.deliver(session, delivery.id) == "failed"
    assert "ConnectError" in delivery.last_error and delivery.next_attempt_at is not None


def test_retry_failed_claims_each_delivery_once(session, env_setter):
    with WebhookReceiver(status=503) as failing:
        env_setter(QIFU_WEBHOOK_URL=failing.url, QIFU_WEBHOOK_SECRET=SECRET, QIFU_DELIVERY_BACKOFF_SECONDS=1)
        ticket = f.make_ticket(session, "dispatched", lead_department="RSJ", co_departments=["JXJ"])
        mine = [d.id for d in deliveries_of(session, ticket)]
        assert len(mine) >= 3
        for d in mine:
            assert notifications.deliver(session, d) == "failed"
        with time_machine.travel(datetime.now(SHANGHAI) + timedelta(minutes=1)):
            before = max_outbox_id(session)
            notifications.retry_failed(session)
            middle = max_outbox_id(session)
            notifications.retry_failed(session)
            first = queued_delivery_ids(session, before)
            second = queued_delivery_ids(session, middle)
        assert sorted(d for d in first if d in mine) == sorted(mine)
        assert not set(second) & set(mine)


def test_deliveries_the_broker_lost_are_queued_again_once_a_period_and_sent_once(session, env_setter, receiver):
    """Redis restarted empty (no persistence) forgets the queued ``notifications.deliver``
    messages, whose outbox rows are already stamped sent: the deliveries stay ``pending``. The
    stale sweep queues each again ``QIFU_DELIVERY_STALE_SECONDS`` after its notification, once a
    period; the original message arriving late as well (only slow, not lost) sends nothing twice,
    and a message naming sent deliveries is answered from one read (SPEC §9)."""
    env_setter(QIFU_WEBHOOK_URL=receiver.url, QIFU_WEBHOOK_SECRET=SECRET, QIFU_DELIVERY_STALE_SECONDS=60)
    with time_machine.travel(MONDAY, tick=False) as traveller:
        ticket = f.make_ticket(session, "dispatched", lead_department="RSJ", co_departments=["JXJ"])
        mine = [d.id for d in deliveries_of(session, ticket)]
        assert len(mine) >= 3 and all(d.state == "pending" for d in deliveries_of(session, ticket))

        traveller.move_to(MONDAY + timedelta(seconds=59))  # not yet stale: maybe only queued behind others
        before = max_outbox_id(session)
        notifications.retry_failed(session)
        assert not set(queued_delivery_ids(session, before)) & set(mine)

        traveller.move_to(MONDAY + timedelta(seconds=60))
        before = max_outbox_id(session)
        notifications.retry_failed(session)
        middle = max_outbox_id(session)
        notifications.retry_failed(session)  # the same period: claimed already
        assert sorted(d for d in queued_delivery_ids(session, before) if d in mine) == sorted(mine)
        assert not set(queued_delivery_ids(session, middle)) & set(mine)

        assert notifications.deliver(session, mine[0]) == "sent"  # one original message was only slow
        traveller.move_to(MONDAY + timedelta(seconds=120))
        before = max_outbox_id(session)
        notifications.retry_failed(session)  # the next period: the still pending ones once more
        assert sorted(d for d in queued_delivery_ids(session, before) if d in mine) == sorted(mine[1:])

        # every copy arrives (the originals, both re-queued ones): each delivery sent once
        assert notifications.deliver_batch(session, mine + mine[1:] + mine[1:]) == ["sent"] * (3 * len(mine) - 2)
        assert notifications.deliver_batch(session, [10**9]) == ["missing"]
    assert receiver.per_delivery() == Counter({str(d.notification_id): 1 for d in deliveries_of(session, ticket)})
    assert all((d.state, d.attempts) == ("sent", 1) for d in deliveries_of(session, ticket))


@pytest.fixture
def committed_failed_deliveries(engine, env_setter):
    """Three failed deliveries of a committed ticket, due for retry; removed afterwards."""
    with WebhookReceiver(status=500) as failing:
        env_setter(QIFU_WEBHOOK_URL=failing.url, QIFU_WEBHOOK_SECRET=SECRET, QIFU_DELIVERY_BACKOFF_SECONDS=1)
        with Session(engine, expire_on_commit=False) as s:
            before = max_outbox_id(s)
            ticket = f.make_ticket(s, "dispatched", lead_department="RSJ", co_departments=["JXJ", "SJJ"])
            ids = [d.id for d in deliveries_of(s, ticket)]
            for d in ids:
                notifications.deliver(s, d)
            s.commit()
    yield ids
    with Session(engine) as s:
        s.execute(sa.delete(OutboxMessage).where(OutboxMessage.id > before,
                                                 OutboxMessage.task == "notifications.deliver"))
        s.execute(sa.update(NotificationDelivery).where(NotificationDelivery.id.in_(ids)).values(state="dead"))
        s.commit()


def test_retry_failed_two_connections_claim_each_once(engine, committed_failed_deliveries):
    """Two sweepers on two connections at once: the second waits for the first's row locks, then
    re-checks ``state = 'failed'`` and skips what the first claimed: each delivery queued once."""
    ids = committed_failed_deliveries
    with Session(engine) as s:
        before = max_outbox_id(s)
    with time_machine.travel(datetime.now(SHANGHAI) + timedelta(minutes=5)), \
            Session(engine) as a, Session(engine) as b:
        assert notifications.retry_failed(a) >= len(ids)  # holds the row locks, not committed
        a.flush()
        thread = threading.Thread(target=lambda: (notifications.retry_failed(b), b.commit()))
        thread.start()
        time.sleep(0.3)
        assert thread.is_alive(), "the second sweeper waits on the first one's locks"
        a.commit()
        thread.join(10)
        assert not thread.is_alive()
    with Session(engine) as s:
        queued = Counter(d for d in queued_delivery_ids(s, before) if d in ids)
        assert queued == Counter(ids)
        assert {d.state for d in s.exec(select(NotificationDelivery)
                                        .where(NotificationDelivery.id.in_(ids))).all()} == {"pending"}


# =========================================================================== e-mail (SMTP)

class Mailbox:
    def __init__(self) -> None:
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


def test_email_goes_through_a_real_smtp_server(session, env_setter, smtp_server):
    mailbox, port = smtp_server
    env_setter(QIFU_SMTP_HOST="127.0.0.1", QIFU_SMTP_PORT=port, QIFU_SMTP_FROM="noreply@qifu.test",
               QIFU_WEBHOOK_URL=None)
    ticket = f.make_ticket(session, "accepted", commit=False)
    officer = session.get(User, ticket.officer_id)
    officer.email = "officer@qifu.test"
    handler = f.user(session, "dept_rsj")
    handler.email = None  # no address, no e-mail delivery
    session.flush()
    f.act(session, ticket, "dispatch", {"lead_department_id": f.department(session, "RSJ").id})
    f.act(session, ticket, "claim")
    f.act(session, ticket, "reply")
    f.act(session, ticket, "reopen", by=f.enterprise_user_of(session, ticket.enterprise_id))

    reopened = [d for d in deliveries_of(session, ticket, "email")
                if session.get(Notification, d.notification_id).kind == "reopened"]
    assert [(d.target, d.state) for d in reopened] == [("officer@qifu.test", "pending")]
    assert notifications.deliver(session, reopened[0].id) == "sent"
    assert notifications.deliver(session, reopened[0].id) == "sent"  # idempotent

    [envelope] = mailbox.envelopes
    assert envelope.mail_from == "noreply@qifu.test"
    assert envelope.rcpt_tos == ["officer@qifu.test"]
    message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    assert message["Subject"].startswith("工单重办") and ticket.number in message["Subject"]
    # replies to it are matched by the e-mail intake (issue 12); automatic responders keep quiet
    assert message["Message-ID"].startswith(f"<ticket-{ticket.number}.") and message["Message-ID"].endswith("@qifu>")
    assert message["Auto-Submitted"] == "auto-generated"
    assert "问题没有解决" in message.get_content()


def test_smtp_down_is_retried(session, env_setter):
    env_setter(QIFU_SMTP_HOST="127.0.0.1", QIFU_SMTP_PORT=free_port(), QIFU_WEBHOOK_URL=None)
    ticket = f.make_ticket(session, "submitted", commit=False)
    session.get(User, ticket.officer_id).email = "officer@qifu.test"
    session.flush()
    f.act(session, ticket, "accept")
    f.act(session, ticket, "dispatch")
    f.act(session, ticket, "claim")
    f.act(session, ticket, "reply")
    f.act(session, ticket, "reopen", by=f.enterprise_user_of(session, ticket.enterprise_id))
    [delivery] = [d for d in deliveries_of(session, ticket, "email")
                  if session.get(Notification, d.notification_id).kind == "reopened"]
    assert notifications.deliver(session, delivery.id) == "failed"
    assert "ConnectionRefused" in delivery.last_error and delivery.next_attempt_at is not None


def test_both_channels_one_delivery_each(session, env_setter, smtp_server, receiver):
    mailbox, port = smtp_server
    env_setter(QIFU_SMTP_HOST="127.0.0.1", QIFU_SMTP_PORT=port, QIFU_WEBHOOK_URL=receiver.url,
               QIFU_WEBHOOK_SECRET=SECRET)
    ent = f.enterprise_of(session, "ent1")
    session.get(User, ent.officer_id).email = "o@qifu.test"
    session.flush()
    ticket = f.make_ticket(session, "submitted")
    got = sorted((d.channel, d.target) for d in deliveries_of(session, ticket))
    assert got == [("email", "o@qifu.test"), ("webhook", receiver.url)]
    for d in deliveries_of(session, ticket):
        assert notifications.deliver(session, d.id) == "sent"
    assert len(mailbox.envelopes) == 1 and len(receiver) == 1

"""The SLA sweeps (SPEC §4, issue #3), set-based.

Each sweep *claims* its rows with one conditional ``UPDATE ... WHERE <trigger> <= now RETURNING``
that also disarms the trigger, so it fires once per deadline even with several workers sweeping at
once (a second UPDATE waits on the row locks, then re-checks the condition and skips them). The
events and notifications of the claimed rows are written in the same transaction with bulk
INSERTs. Each statement reads only rows whose trigger is armed, through a partial index, so a sweep
that finds nothing to do costs one index probe.

- :func:`send_reminders` — 催办 at ``remind_at`` (one working day, urgent two working hours, before
  the running deadline);
- :func:`mark_overdue` — at ``overdue_at`` (= the deadline): overdue, escalation level 1 (督办);
  at ``level2_at`` (five working days later, if still not done): level 2;
- :func:`auto_close` — replied tickets whose feedback deadline passed: closed, rating ``none``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from service import clock
from service.common.enums import TicketStatus
from service.notifications import service as notifications
from service.tickets import workflow as wf
from service.tickets.models import Ticket, TicketEvent

T = Ticket.__table__
E = TicketEvent.__table__

#: the auto-close move, taken from the workflow table so the two can never disagree
AUTO_CLOSE_TO = wf.TRANSITIONS[(TicketStatus.replied, wf.Action.auto_close)].next_status.value


@dataclass
class SweepResult:
    """How many tickets each sweep claimed."""

    reminded: int = 0
    overdue: int = 0
    escalated: int = 0
    closed: int = 0


#: PostgreSQL: the events of a sweep in one statement, the rows shipped as one JSON array (an
#: executemany costs a round trip per row: ~4x slower for thousands of rows, bench/sla_scan.py)
_EVENTS_FROM_JSON = sa.text(
    "INSERT INTO ticket_event (ticket_id, actor_id, actor_role, action, from_status, to_status, reason, payload,"
    " visibility, created_at) SELECT x.t, NULL, 'system', :action, x.f, x.s, :reason, x.p, :visibility, :at"
    " FROM json_to_recordset(CAST(:rows AS json)) AS x(t integer, f text, s text, p json)")


def _events(session: Session, rows, action: str, at: datetime, *, reason: str | None, payload_of,
            from_status=None, to_status=None, visibility: str = "internal") -> None:
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        data = json.dumps([{"t": r.id, "f": from_status or r.status, "s": to_status or r.status, "p": payload_of(r)}
                           for r in rows], ensure_ascii=False)
        session.execute(_EVENTS_FROM_JSON, {"action": action, "reason": reason, "visibility": visibility,
                                            "at": at, "rows": data})
        return
    session.execute(sa.insert(E), [
        {"ticket_id": r.id, "actor_id": None, "actor_role": "system", "action": action,
         "from_status": from_status or r.status, "to_status": to_status or r.status, "reason": reason,
         "payload": payload_of(r), "visibility": visibility, "created_at": at}
        for r in rows
    ])


def send_reminders(session: Session, now: datetime | None = None) -> int:
    """Send the reminders that are due; returns how many tickets were reminded."""
    now = now or clock.now()
    rows = session.execute(
        sa.update(T).where(T.c.remind_at <= now)
        .values(remind_at=None, remind_count=T.c.remind_count + 1, version=T.c.version + 1, updated_at=now)
        .returning(T.c.id, T.c.status, T.c.due_step, T.c.due_at)
    ).all()
    _events(session, rows, "remind", now, reason="临近办理期限，系统自动催办",
            payload_of=lambda r: {"automatic": True, "step": r.due_step, "due_at": r.due_at.isoformat()})
    notifications.notify_many(session, [r.id for r in rows], "reminded", at=now)
    return len(rows)


def mark_overdue(session: Session, now: datetime | None = None) -> tuple[int, int]:
    """Mark deadlines passed as overdue (level 1) and escalate to level 2 five working days later.
    Returns ``(overdue, escalated_to_level_2)``."""
    now = now or clock.now()
    level1 = session.execute(
        sa.update(T).where(T.c.overdue_at <= now)
        .values(overdue_at=None, overdue_count=T.c.overdue_count + 1,
                escalation_level=sa.case((T.c.escalation_level < 1, 1), else_=T.c.escalation_level),
                version=T.c.version + 1, updated_at=now)
        .returning(T.c.id, T.c.status, T.c.due_step, T.c.due_at)
    ).all()
    _events(session, level1, "overdue", now, reason="已超过办理期限，自动督办（一级）",
            payload_of=lambda r: {"level": 1, "step": r.due_step, "due_at": r.due_at.isoformat()})
    notifications.notify_many(session, [r.id for r in level1], "overdue", at=now)

    # one level 2 per deadline missed by five working days, also on a ticket already at level 2
    # for an earlier deadline (a level 2 by hand disarms the running deadline's: service._on_escalate)
    level2 = session.execute(
        sa.update(T).where(T.c.level2_at <= now, T.c.overdue_at.is_(None))
        .values(level2_at=None, escalation_level=2, version=T.c.version + 1, updated_at=now)
        .returning(T.c.id, T.c.status, T.c.due_step, T.c.due_at)
    ).all()
    _events(session, level2, "escalate", now, reason="超期五个工作日仍未办结，自动督办升级（二级）",
            payload_of=lambda r: {"level": 2, "step": r.due_step, "due_at": r.due_at.isoformat() if r.due_at else None,
                                  "automatic": True})
    notifications.notify_many(session, [r.id for r in level2], "escalated", at=now)
    return len(level1), len(level2)


def auto_close(session: Session, now: datetime | None = None) -> int:
    """Close replied tickets whose feedback deadline has passed (rating ``none``, closed at the
    deadline). Returns how many were closed."""
    now = now or clock.now()
    rows = session.execute(
        sa.update(T).where(T.c.status == TicketStatus.replied.value, T.c.due_step == "feedback",
                           T.c.due_at <= now)
        .values(status=AUTO_CLOSE_TO, rating="none", closed_at=T.c.due_at, due_at=None, due_step=None,
                remind_at=None, overdue_at=None, level2_at=None, version=T.c.version + 1, updated_at=now)
        .returning(T.c.id, T.c.status, T.c.closed_at)
    ).all()
    _events(session, rows, wf.Action.auto_close.value, now, reason="答复后逾期未评价，系统自动办结",
            payload_of=lambda r: {"rating": "none", "closed_at": r.closed_at.isoformat()},
            from_status=TicketStatus.replied.value, to_status=AUTO_CLOSE_TO, visibility="public")
    notifications.notify_many(session, [r.id for r in rows], "closed", at=now)
    return len(rows)


def scan(session: Session, now: datetime | None = None) -> SweepResult:
    """Run the three sweeps in order (``qifu sla scan``); the caller commits."""
    now = now or clock.now()
    result = SweepResult()
    result.reminded = send_reminders(session, now)
    result.overdue, result.escalated = mark_overdue(session, now)
    result.closed = auto_close(session, now)
    return result

"""The SLA sweeps (SPEC §4, issue #3), set-based.

Each sweep *claims* its rows with one conditional ``UPDATE ... WHERE <trigger> <= now RETURNING``
that also disarms the trigger, so it fires once per deadline even with several workers sweeping at
once (a second UPDATE waits on the row locks, then re-checks the condition and skips them). The
events and notifications of the claimed rows are written in the same transaction with bulk
INSERTs. Each statement reads only rows whose trigger is armed, through a partial index, so a sweep
that finds nothing to do costs one index probe.

- :func:`send_reminders` — 催办 at ``remind_at`` (one working day, urgent two working hours, before
  the running deadline, the feedback deadline included: SPEC §4). The reminder's recipients come
  from the one fan-out by the ticket's running step: the department (or the officer before a
  dispatch); for the feedback step the enterprise's active users, else the officer, titled
  请评价办理结果 (:data:`service.notifications.fanout.STEP_RECIPIENTS`);
- :func:`mark_overdue` — at ``overdue_at`` (= the deadline, the instant itself included:
  :func:`service.sla.deadlines.is_overdue`): overdue, escalation level 1 (督办); at ``level2_at``
  (17:30 of the 5th working day after the deadline's day, if still not done:
  :func:`service.sla.deadlines.level2_at`): level 2. One of each per deadline, however often it is
  held and resumed (:data:`service.sla.deadlines.DEADLINE_ORIGINS`). Neither for the feedback
  deadline, whose expiry closes the ticket;
- :func:`auto_close` — replied tickets whose feedback deadline passed: closed, rating ``none``.

What each sweep does is not written here: :data:`service.tickets.effects.SWEEPS` says which
trigger fires which action, and the claiming UPDATE, the events and the notifications are built
from that action's declared effects (:func:`claim_values`, :func:`run_sweep`), so an auto-close is
the same ``auto_close`` as :func:`service.ticketing.actions.apply_action`'s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace

import sqlalchemy as sa
from sqlmodel import Session

from service import clock
from service.common.enums import TicketStatus
from service.notifications import fanout
from service.sla.deadlines import running_deadline
from service.tickets import workflow as wf
from service.tickets.effects import STEP_DEADLINE, SWEEPS, Sweep, effects_of
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


def _iso(value):
    return value.isoformat() if value is not None else None


def _no_deadline_after(status: str) -> bool:
    """True when a ticket in ``status`` has no running deadline (closed, rejected, on hold)."""
    probe = SimpleNamespace(status=status, service_type=None, accept_by=1, claim_by=1, reply_by=1, feedback_by=1)
    return running_deadline(probe)[0] is None  # type: ignore[arg-type]


def claim_values(sweep: Sweep, now: datetime) -> tuple[dict, str | None]:
    """The ``SET`` of a sweep's claiming UPDATE, built from the declared effects of its action
    (:data:`service.tickets.effects.EFFECTS`), and the status it moves the tickets to (or None).

    The same columns as :func:`service.ticketing.actions.apply_action` stamps, clears, sets and bumps
    for that action; a status without a running deadline clears ``due_*`` and every trigger, as
    :func:`service.sla.deadlines.apply_sla` does. Raises ValueError for an action whose SLA effect
    needs a deadline planned per ticket (not set-based)."""
    effects = effects_of(sweep.action)
    if not effects.sla.set_based:
        raise ValueError(f"{sweep.action}: its SLA effect is not set-based")
    instant = sa.func.coalesce(T.c[effects.instant], now) if effects.instant else now
    values: dict = {sweep.trigger: None}
    values.update({c: instant for c in effects.stamp})
    values.update({c: sa.func.coalesce(T.c[c], instant) for c in effects.stamp_first})
    values.update({c: None for c in effects.clear})
    values.update(effects.set)
    values.update({c: T.c[c] + 1 for c in effects.bump})
    values.update({STEP_DEADLINE[step]: None for step in effects.sla.clear})
    if sweep.level is not None:
        values["escalation_level"] = sa.case((T.c.escalation_level < sweep.level, sweep.level),
                                             else_=T.c.escalation_level)
    to_status = None
    if sweep.status is not None:
        transition = wf.TRANSITIONS.get((TicketStatus(sweep.status), wf.Action(sweep.action)))
        if transition is not None and transition.next_status is not None:
            to_status = transition.next_status.value
            values["status"] = to_status
            if _no_deadline_after(to_status):
                values.update(due_at=None, due_step=None, remind_at=None, overdue_at=None, level2_at=None)
    values.update(version=T.c.version + 1, updated_at=now)
    return values, to_status


def run_sweep(session: Session, name: str, now: datetime) -> int:
    """Fire the sweep ``name`` of :data:`service.tickets.effects.SWEEPS` on every ticket whose
    trigger is due at ``now``: one ``UPDATE ... RETURNING`` claims them and applies the declared
    effects, one INSERT appends their events, one ``INSERT ... SELECT`` fans the notification
    out (:mod:`service.notifications.fanout`). Returns how many tickets it claimed."""
    sweep = SWEEPS[name]
    effects = effects_of(sweep.action)
    values, to_status = claim_values(sweep, now)
    where = [T.c[sweep.trigger] <= now, *(T.c[c].is_(None) for c in sweep.requires_null)]
    if sweep.status is not None:
        where.append(T.c.status == sweep.status)
    if sweep.step is not None:
        where.append(T.c.due_step == sweep.step)
    returned = ["id", "status", "due_step", "due_at", *effects.payload]
    rows = session.execute(
        sa.update(T).where(*where).values(values)
        .returning(*(T.c[c] for c in dict.fromkeys(returned)))
    ).all()
    reason = sweep.reason or effects.reason

    def payload_of(r) -> dict:
        out = dict(sweep.payload)
        if sweep.deadline:
            out.update(step=r.due_step, due_at=_iso(r.due_at))
        out.update(effects.event_payload(r))
        return out

    _events(session, rows, sweep.action, now, reason=reason, payload_of=payload_of,
            from_status=sweep.status, to_status=to_status, visibility=effects.visibility)
    if effects.notify is not None:
        fanout.notify_tickets(session, [r.id for r in rows], effects.notify, at=now, body=reason or "")
    return len(rows)


def send_reminders(session: Session, now: datetime | None = None) -> int:
    """Send the reminders that are due (催办, ``SWEEPS["remind"]``); returns how many tickets were reminded."""
    return run_sweep(session, "remind", now or clock.now())


def mark_overdue(session: Session, now: datetime | None = None) -> tuple[int, int]:
    """Mark deadlines passed as overdue (level 1, ``SWEEPS["overdue"]``) and escalate to level 2 five
    working days later (``SWEEPS["escalate"]``). Returns ``(overdue, escalated_to_level_2)``.

    One level 2 per deadline missed by five working days, also on a ticket already at level 2 for
    an earlier deadline (a level 2 by hand disarms the running deadline's: actions._on_escalate)."""
    now = now or clock.now()
    return run_sweep(session, "overdue", now), run_sweep(session, "escalate", now)


def auto_close(session: Session, now: datetime | None = None) -> int:
    """Close replied tickets whose feedback deadline has passed (``SWEEPS["auto_close"]``): the same
    ``auto_close`` as :func:`service.ticketing.actions.apply_action` (rating ``none``, closed at the
    feedback deadline, docs/decisions.md). Returns how many were closed."""
    return run_sweep(session, "auto_close", now or clock.now())


def scan(session: Session, now: datetime | None = None) -> SweepResult:
    """Run the three sweeps in order (``qifu sla scan``); the caller commits."""
    now = now or clock.now()
    result = SweepResult()
    result.reminded = send_reminders(session, now)
    result.overdue, result.escalated = mark_overdue(session, now)
    result.closed = auto_close(session, now)
    return result

"""Deadlines on tickets (SPEC §4): set on every transition, swept by the workers.

Each ticket stores the deadline of every step it has reached (``accept_by``, ``claim_by``,
``reply_by``, ``feedback_by``, aware UTC), computed with the policy and calendar in force at that
moment (a later policy change does not move them). The *running* deadline of the current status is
copied to ``due_at``/``due_step`` together with the sweep triggers:

- ``remind_at``: when the reminder (催办) goes out: one working day before the deadline (urgent:
  two working hours); when that would be at or before the clock start, half-way through the limit.
  Not armed for the ``feedback`` step (its expiry closes the ticket, SPEC §3).
- ``overdue_at``: the deadline itself (overdue and escalation level 1, 督办).
- ``level2_at``: five working days after the deadline (escalation level 2).

Sweeps clear a trigger when they fire it, so each fires once per deadline; a trigger is re-armed
only when the running deadline changes (a new step, a resume after hold, an approved extension),
and never for a deadline ``(step, instant)`` whose trigger already fired (the same deadline running
again after a hold that spent no working time, or a consultation's first reply after its claim).
``on_hold`` pauses the clock: the triggers are cleared, and on resume the reply deadline moves out
by the working time spent on hold.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from service.calendar.core import WorkingCalendar
from service.calendar.service import get_calendar
from service.sla.policy import LEVEL2_AFTER_WORKING_DAYS, REMINDER_LEAD_SECONDS, limit_for
from service.tickets.effects import STEP_DEADLINE, effects_of
from service.tickets.models import Ticket, TicketEvent


def running_deadline(ticket: Ticket) -> tuple[str | None, datetime | None]:
    """``(step, deadline)`` running in the ticket's current status, or ``(None, None)``."""
    consultation = ticket.service_type == "consultation"
    reply_step = "first_reply" if consultation else "reply"
    status = ticket.status
    if status == "submitted":
        return "accept", ticket.accept_by
    if status == "accepted":
        return (reply_step, ticket.reply_by) if consultation else (None, None)
    if status == "dispatched":
        return "claim", ticket.claim_by
    if status == "in_progress":
        return reply_step, ticket.reply_by
    if status == "replied":
        return "feedback", ticket.feedback_by
    return None, None  # on_hold (paused), closed, rejected


def _fired(session: Session, ticket: Ticket, step: str, due: datetime) -> set[str]:
    """The sweep actions (``remind``, ``overdue``, ``escalate``) already fired for this very
    deadline ``(step, due)``: it can run again after an interlude (a hold that spent no working
    time; a consultation's first reply after the claim step), and must not fire twice."""
    if ticket.id is None or not (ticket.remind_count or ticket.overdue_count):
        return set()  # nothing was ever fired on this ticket (the sweeps bump these counters)
    rows = session.execute(
        sa.select(TicketEvent.action, TicketEvent.payload).where(
            TicketEvent.ticket_id == ticket.id, TicketEvent.actor_role == "system",
            TicketEvent.action.in_(("remind", "overdue", "escalate")))
    ).all()
    return {action for action, payload in rows
            if (payload or {}).get("step") == step and payload.get("due_at")
            and datetime.fromisoformat(payload["due_at"]) == due}


def _schedule(session: Session, ticket: Ticket, calendar: WorkingCalendar, start: datetime,
              arm: bool = True) -> None:
    step, due = running_deadline(ticket)
    if step == ticket.due_step and due == ticket.due_at:
        return  # same deadline: leave the triggers as they are (each fires once)
    ticket.due_step, ticket.due_at = step, due
    if due is None or not arm:
        ticket.remind_at = ticket.overdue_at = ticket.level2_at = None
        return
    if step == "feedback":
        ticket.remind_at = ticket.overdue_at = ticket.level2_at = None
        return
    fired = _fired(session, ticket, step, due)
    lead = REMINDER_LEAD_SECONDS.get(ticket.priority) or calendar.hours.day_seconds
    due_clock = calendar.working_clock(due)
    start_clock = calendar.working_clock(start)
    remind_clock = due_clock - lead
    if remind_clock <= start_clock:
        remind_clock = start_clock + (due_clock - start_clock) / 2
    ticket.remind_at = (calendar.from_working_clock(remind_clock)
                        if remind_clock > start_clock and "remind" not in fired else None)
    ticket.overdue_at = due if "overdue" not in fired else None
    ticket.level2_at = (calendar.from_working_clock(due_clock + LEVEL2_AFTER_WORKING_DAYS * calendar.hours.day_seconds)
                        if "escalate" not in fired else None)


def apply_sla(session: Session, ticket: Ticket, action: str, at: datetime, *, extension_days: int | None = None,
              arm: bool = True) -> None:
    """Update the ticket's deadlines after ``action`` (already applied to its status) at ``at``.

    The steps each action starts or drops and its effect on the clock are declared in
    :data:`service.tickets.effects.EFFECTS` (``sla``). Rules (SPEC §4): submit → accept-by (and, for consultations, the first-reply deadline from
    submission); dispatch/reopen → claim-by; claim → reply-by from the claim (not for
    consultations, whose reply deadline runs from submission; a reopened consultation gets a new
    one from the reopen); reply/answer → feedback-by; hold pauses; resume pushes reply-by out by the
    working time on hold; an approved extension moves reply-by by ``extension_days`` working days.

    ``arm=False`` (replaying imported history) records the deadlines but arms no sweep trigger:
    a past event is not reminded or escalated now.
    """
    calendar = get_calendar(session)

    def limit(step: str):
        return limit_for(session, ticket.category_id, ticket.priority, step)

    sla = effects_of(action).sla  # the steps it starts/drops and its clock (service/tickets/effects.py)
    for step in sla.steps_started(ticket.service_type):
        setattr(ticket, STEP_DEADLINE[step], limit(step).deadline(calendar, at))
    for step in sla.clear:
        setattr(ticket, STEP_DEADLINE[step], None)
    if sla.clock == "pause":
        ticket.held_at = at
    elif sla.clock == "resume":
        if ticket.held_at is not None:
            held = max(0.0, calendar.working_seconds_between(ticket.held_at, at))
            ticket.hold_seconds = int(ticket.hold_seconds + held)
            if ticket.reply_by is not None:
                ticket.reply_by = calendar.add_working_seconds(ticket.reply_by, held)
            ticket.held_at = None
    elif sla.clock == "extend" and extension_days:
        ticket.reply_by = calendar.add_working_days(ticket.reply_by, extension_days)
    _schedule(session, ticket, calendar, at, arm)


def deadline_view(calendar: WorkingCalendar, ticket: Ticket, now: datetime) -> dict:
    """The read model of the SLA: every deadline, the running one, working hours left (negative
    when overdue) and whether it is overdue now."""
    step, due = running_deadline(ticket)
    left = round(calendar.working_hours_between(now, due), 2) if due is not None else None
    return {
        "accept_by": ticket.accept_by, "claim_by": ticket.claim_by, "reply_by": ticket.reply_by,
        "feedback_by": ticket.feedback_by, "due_step": step, "due_at": due,
        "working_hours_left": left, "overdue": bool(due is not None and now > due and step != "feedback"),
        "on_hold_since": ticket.held_at, "hold_working_hours": round(ticket.hold_seconds / 3600, 2),
    }

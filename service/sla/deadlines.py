"""Deadlines on tickets (SPEC §4): set on every transition, swept by the workers.

Each ticket stores the deadline of every step it has reached (``accept_by``, ``claim_by``,
``reply_by``, ``feedback_by``, aware UTC), computed with the policy and calendar in force at that
moment (a later policy change does not move them). The *running* deadline of the current status is
copied to ``due_at``/``due_step`` together with the sweep triggers:

- ``remind_at``: when the reminder (催办) goes out: one working day before the deadline (urgent:
  two working hours); when that would be at or before the clock start, half-way through the limit.
  Armed for every step, the feedback deadline included (SPEC §4; the feedback reminder goes to
  the enterprise's users, see :data:`service.notifications.fanout.STEP_RECIPIENTS`).
- ``overdue_at``: the deadline itself (overdue and escalation level 1, 督办); the instant itself is
  overdue. Not armed for the ``feedback`` step: its expiry auto-closes the ticket (SPEC §3).
- ``level2_at``: 17:30 of the 5th working day after the deadline's calendar day (escalation level
  2; SPEC §4 counts it by the "N working days" rule). Not armed for ``feedback``.

**One overdue and one level 2 per deadline** (SPEC §4: "one overdue event per deadline, however
often it is held, resumed or swept"). A deadline is born when its step's clock starts (see
:data:`DEADLINE_ORIGINS`: the submission for ``accept``, a dispatch or reopen for ``claim``, the
claim for ``reply`` ...) and keeps its identity while a hold moves it out, while another step runs
in between (a consultation's first reply around its claim step) and however often it is swept; an
approved extension gives a new deadline (a new date agreed by a supervisor). The **reminder** is
one per deadline *instant*: a hold that moves the deadline out re-arms it one working day before
the new instant (the department is told again before the date it now has to meet), never when
that instant is already past, and never twice for the same instant. Sweeps clear a trigger when
they fire it; a trigger is re-armed only when the running deadline changes.
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
from service.tickets.effects import EFFECTS, STEP_DEADLINE, effects_of
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


def _deadline_origins() -> dict[str, frozenset[str]]:
    origins: dict[str, set[str]] = {step: set() for step in STEP_DEADLINE}
    for name, effects in EFFECTS.items():
        origins_of = set(effects.sla.start)
        if effects.sla.clock == "extend":  # an approved extension: a new reply deadline (apply_sla)
            origins_of |= {step for step, column in STEP_DEADLINE.items() if column == "reply_by"}
        for step in origins_of:
            origins[step].add(name)
    return {step: frozenset(names) for step, names in origins.items()}


#: The actions that start a new deadline of each step (a fresh clock), read from the declaration
#: (:data:`service.tickets.effects.EFFECTS`: the steps an action's ``sla.start`` names, and the
#: reply deadline for an approved extension, ``clock="extend"``): ``accept`` ← submit; ``claim`` ←
#: dispatch, reopen; ``first_reply`` ← submit, reopen, approve_extension; ``reply`` ← claim,
#: approve_extension; ``feedback`` ← reply, answer. A hold and resume, or another step running in
#: between, keep the deadline: its overdue and level 2, once fired, stay fired (SPEC §4).
DEADLINE_ORIGINS: dict[str, frozenset[str]] = _deadline_origins()
SWEEP_ACTIONS = ("remind", "overdue", "escalate")


def _fired(session: Session, ticket: Ticket, step: str, due: datetime, action: str) -> set[str]:
    """The sweep actions already fired for the running deadline of ``step``, due at ``due``:
    ``overdue`` and ``escalate`` when a system event of theirs for ``step`` was written since the
    event that started this deadline (the last of :data:`DEADLINE_ORIGINS` [step]), whatever
    instant it had then (a hold moves it); ``remind`` when one was for this very instant. Empty
    when ``action`` (being applied now, its event not yet written) itself starts the deadline."""
    if action in DEADLINE_ORIGINS.get(step, ()):
        return set()
    if ticket.id is None or not (ticket.remind_count or ticket.overdue_count):
        return set()  # nothing was ever fired on this ticket (the sweeps bump these counters)
    origin = session.execute(
        sa.select(sa.func.max(TicketEvent.id)).where(
            TicketEvent.ticket_id == ticket.id, TicketEvent.actor_role != "system",
            TicketEvent.action.in_(sorted(DEADLINE_ORIGINS[step])))
    ).scalar_one_or_none() or 0
    rows = session.execute(
        sa.select(TicketEvent.action, TicketEvent.payload).where(
            TicketEvent.ticket_id == ticket.id, TicketEvent.actor_role == "system",
            TicketEvent.id > origin, TicketEvent.action.in_(SWEEP_ACTIONS))
    ).all()
    fired = set()
    for name, payload in rows:
        if (payload or {}).get("step") != step:
            continue
        if name != "remind" or (payload.get("due_at") and datetime.fromisoformat(payload["due_at"]) == due):
            fired.add(name)
    return fired


def level2_at(calendar: WorkingCalendar, due: datetime) -> datetime:
    """When a deadline ``due`` still missed escalates to level 2: the end of working hours (17:30)
    of the 5th working day after the deadline's calendar day (SPEC §4, by the "N working days"
    rule; a mid-day deadline of Wednesday 11:00 → the next Wednesday 17:30 in a plain week). UTC."""
    return calendar.add_working_days(due, LEVEL2_AFTER_WORKING_DAYS)


def is_overdue(step: str | None, due: datetime | None, now: datetime) -> bool:
    """Whether the running deadline ``(step, due)`` is overdue at ``now``: from the deadline
    instant itself on (SPEC §4, as the sweep's ``overdue_at <= now``); never for ``feedback``,
    whose expiry closes the ticket instead. :func:`overdue_clause` is the same rule in SQL."""
    return due is not None and step != "feedback" and now >= due


def running_deadline_clause() -> sa.ColumnElement[bool]:
    """The ``ticket`` rows whose running deadline can become overdue (:func:`is_overdue` without
    the instant): a deadline (``due_at``) of a step other than the enterprise's feedback (whose
    expiry auto-closes the ticket, SPEC §4). The statistics' deadline rollup counts these rows."""
    t = Ticket.__table__.c
    return sa.and_(t.due_step != "feedback", t.due_at.is_not(None))


def overdue_clause(now: datetime) -> sa.ColumnElement[bool]:
    """:func:`is_overdue` over the ``ticket`` table's running deadline (``due_step``, ``due_at``,
    kept equal to :func:`running_deadline` by :func:`apply_sla`; none while on hold, closed or
    rejected): :func:`running_deadline_clause` with ``due_at <= now``, for the statistics and the
    metrics gauges."""
    return sa.and_(running_deadline_clause(), Ticket.__table__.c.due_at <= now)


_TRIGGERS = ("remind_at", "overdue_at", "level2_at")
_UNSET = object()


def _schedule(session: Session, ticket: Ticket, calendar: WorkingCalendar, start: datetime,
              action: str, arm: bool = True) -> None:
    step, due = running_deadline(ticket)
    if step == ticket.due_step and due == ticket.due_at:
        return  # same deadline: leave the triggers as they are (each fires once)
    ticket.due_step, ticket.due_at = step, due
    if due is None or not arm:
        for trigger in _TRIGGERS:  # not re-set when already clear (a replay's every step: 3 ORM sets)
            if getattr(ticket, trigger, _UNSET) is not None:
                setattr(ticket, trigger, None)
        return
    fired = _fired(session, ticket, step, due, action)
    lead = REMINDER_LEAD_SECONDS.get(ticket.priority) or calendar.hours.day_seconds
    due_clock = calendar.working_clock(due)
    start_clock = calendar.working_clock(start)
    remind_clock = due_clock - lead
    if remind_clock <= start_clock:
        remind_clock = start_clock + (due_clock - start_clock) / 2
    ticket.remind_at = (calendar.from_working_clock(remind_clock)
                        if remind_clock > start_clock and "remind" not in fired else None)
    if step == "feedback":  # its expiry auto-closes the ticket: no overdue, no escalation
        ticket.overdue_at = ticket.level2_at = None
        return
    ticket.overdue_at = due if "overdue" not in fired else None
    ticket.level2_at = level2_at(calendar, due) if "escalate" not in fired else None


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
    _schedule(session, ticket, calendar, at, action, arm)


def deadline_view(calendar: WorkingCalendar, ticket: Ticket, now: datetime) -> dict:
    """The read model of the SLA: every deadline, the running one, working hours left (negative
    when overdue) and whether it is overdue now (:func:`is_overdue`: the deadline instant itself
    included, as the sweep)."""
    step, due = running_deadline(ticket)
    left = round(calendar.working_hours_between(now, due), 2) if due is not None else None
    return {
        "accept_by": ticket.accept_by, "claim_by": ticket.claim_by, "reply_by": ticket.reply_by,
        "feedback_by": ticket.feedback_by, "due_step": step, "due_at": due,
        "working_hours_left": left, "overdue": is_overdue(step, due, now),
        "on_hold_since": ticket.held_at, "hold_working_hours": round(ticket.hold_seconds / 3600, 2),
    }

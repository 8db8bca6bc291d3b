"""What each ticket action does, declared once beside :data:`service.tickets.workflow.TRANSITIONS`
(SPEC §3, §4). Pure: no I/O.

``EFFECTS[name] = Effects(...)`` for every event a ticket can get: ``submit``, each
:class:`~service.tickets.workflow.Action`, and ``overdue`` (the sweep's, no person's action):

- ``stamp``: milestone columns set to the action's instant (``instant`` names a column whose value
  is that instant instead: an auto-close happens at the feedback deadline, docs/decisions.md);
- ``stamp_first``: columns set to the instant only when still empty (``first_replied_at``);
- ``clear`` / ``set``: columns set to NULL / to a constant;
- ``bump``: counters incremented by one;
- ``notify``: the notification kind sent (its recipients: :data:`service.notifications.fanout.RECIPIENTS`);
- ``sla``: the deadline steps the action starts from its instant, the deadlines it drops, and
  what it does to the clock (``pause``, ``resume``, ``extend``): read by
  :func:`service.sla.deadlines.apply_sla`; a status without a running deadline stops it;
- ``visibility``, ``reason``, ``payload``: the event it appends (``payload`` lists the ticket
  columns copied into the event's payload after the action; the handler may add more).

Three writers are built from it: :func:`service.ticketing.actions.apply_action` (one ticket, ORM;
its handlers keep only what is truly action-specific), the set-based sweeps of
:mod:`service.sla.sweeps` (``SWEEPS`` says which trigger fires which action), and the
one-statement intake (:mod:`service.ticketing.intake_pg`, ``submit``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from service.tickets.workflow import Action

A = Action

#: The deadline column of each SLA step (SPEC §4). ``first_reply`` runs for consultations (from
#: submission or reopen), ``reply`` for the other service types (from the claim); both are ``reply_by``.
STEP_DEADLINE: dict[str, str] = {"accept": "accept_by", "claim": "claim_by", "reply": "reply_by",
                                 "first_reply": "reply_by", "feedback": "feedback_by"}
CONSULTATION_ONLY_STEPS = frozenset({"first_reply"})
NOT_CONSULTATION_STEPS = frozenset({"reply"})


@dataclass(frozen=True)
class Sla:
    """An action's effect on the deadlines (SPEC §4).

    ``start``: steps whose deadline runs from the action's instant; ``clear``: steps whose
    deadline is dropped; ``clock``: ``pause`` (hold), ``resume`` (the reply deadline moves out by
    the working time on hold), ``extend`` (an approved extension moves it by the days granted).
    """

    start: tuple[str, ...] = ()
    clear: tuple[str, ...] = ()
    clock: Literal["pause", "resume", "extend"] | None = None

    def steps_started(self, service_type: str | None) -> tuple[str, ...]:
        """The steps of ``start`` that apply to a ticket of ``service_type``."""
        consultation = service_type == "consultation"
        return tuple(s for s in self.start
                     if not (s in CONSULTATION_ONLY_STEPS and not consultation)
                     and not (s in NOT_CONSULTATION_STEPS and consultation))

    @property
    def set_based(self) -> bool:
        """True when the effect needs no per-ticket computation (no deadline to plan)."""
        return not self.start and self.clock is None


@dataclass(frozen=True)
class Effects:
    """The declared effects of one action (see the module docstring)."""

    stamp: tuple[str, ...] = ()
    stamp_first: tuple[str, ...] = ()
    clear: tuple[str, ...] = ()
    set: Mapping[str, Any] = field(default_factory=dict)
    bump: tuple[str, ...] = ()
    notify: str | None = None
    sla: Sla = Sla()
    visibility: Literal["public", "internal"] = "public"
    reason: str | None = None  # the event's reason when the body gives none
    payload: tuple[str, ...] = ()
    instant: str | None = None  # a column holding the instant to stamp (else the action's instant)

    def apply(self, ticket: Any, at: datetime) -> None:
        """Apply the column effects (not the status, not the SLA) to ``ticket`` (any object with
        the ticket's attributes) at ``at`` (aware)."""
        instant = (getattr(ticket, self.instant) if self.instant else None) or at
        for column in self.stamp:
            setattr(ticket, column, instant)
        for column in self.stamp_first:
            if getattr(ticket, column) is None:
                setattr(ticket, column, instant)
        for column in self.clear:
            setattr(ticket, column, None)
        for column, value in self.set.items():
            setattr(ticket, column, value)
        for column in self.bump:
            setattr(ticket, column, getattr(ticket, column) + 1)

    def event_payload(self, ticket: Any) -> dict[str, Any]:
        """The payload entries copied from ``ticket`` after the action (datetimes as ISO 8601, UTC)."""
        out = {}
        for column in self.payload:
            value = getattr(ticket, column)
            out[column] = value.astimezone(UTC).isoformat() if isinstance(value, datetime) else value
        return out


_CLOSE = dict(stamp=("closed_at",), notify="closed", payload=("rating", "closed_at"))

EFFECTS: dict[str, Effects] = {
    "submit": Effects(notify="submitted", sla=Sla(start=("accept", "first_reply"))),
    A.accept: Effects(stamp=("accepted_at",)),
    A.reject: Effects(stamp=("rejected_at",)),
    A.answer: Effects(stamp=("answered_at", "replied_at"), stamp_first=("first_replied_at",), notify="replied",
                      sla=Sla(start=("feedback",))),
    A.dispatch: Effects(stamp=("dispatched_at",), notify="dispatched", sla=Sla(start=("claim",))),
    A.claim: Effects(stamp=("claimed_at",), sla=Sla(start=("reply",))),
    A.return_: Effects(bump=("return_count",), clear=("lead_department_id", "claimed_at"), notify="returned",
                       sla=Sla(clear=("claim",))),
    A.hold: Effects(sla=Sla(clock="pause")),
    A.resume: Effects(sla=Sla(clock="resume")),
    A.reply: Effects(stamp=("replied_at",), stamp_first=("first_replied_at",), notify="replied",
                     sla=Sla(start=("feedback",))),
    A.confirm: Effects(**_CLOSE),
    # no feedback in time: the same close, rating none, at the feedback deadline (docs/decisions.md)
    A.auto_close: Effects(**_CLOSE, set={"rating": "none"}, instant="feedback_by",
                          reason="答复后逾期未评价，系统自动办结"),
    A.reopen: Effects(bump=("reopen_count",), stamp=("dispatched_at",), clear=("claimed_at", "closed_at"),
                      notify="reopened", sla=Sla(start=("claim", "first_reply"), clear=("feedback",))),
    A.comment: Effects(),
    A.add_info: Effects(),
    A.remind: Effects(bump=("remind_count",), notify="reminded", visibility="internal"),
    A.escalate: Effects(notify="escalated", visibility="internal"),
    A.merge: Effects(stamp=("rejected_at",), set={"reject_reason": "duplicate"}),
    A.link: Effects(),
    A.request_extension: Effects(notify="extension_requested", visibility="internal"),
    A.approve_extension: Effects(bump=("extension_count",), notify="extension_decided", visibility="internal",
                                 sla=Sla(clock="extend")),
    A.deny_extension: Effects(notify="extension_decided", visibility="internal"),
    # one file stored (service/attachments/service.py): counted on the ticket and in its history
    A.attach: Effects(bump=("attachment_count",), payload=("attachment_count",)),
    # a deadline passed (the sweep): overdue, escalation level 1 (督办)
    "overdue": Effects(bump=("overdue_count",), notify="overdue", visibility="internal"),
}
EFFECTS = {str(k): v for k, v in EFFECTS.items()}  # keyed by the event's action name

NO_EFFECTS = Effects()


@dataclass(frozen=True)
class Sweep:
    """A system action fired over many tickets at once (:mod:`service.sla.sweeps`).

    ``action``: its effects are ``EFFECTS[action]``; ``trigger``: the column whose instant fires it
    (set to NULL when it fires, so it fires once); ``step``: the running step it requires
    (``due_step``), ``status``: the status it requires (for a status change, the ``from`` of its
    transition); ``requires_null``: columns that must be NULL (a level 2 waits for level 1);
    ``level``: the escalation level raised to; ``reason``: the event's reason; ``payload``:
    constant payload entries; ``deadline``: whether the payload names the deadline fired
    (``step``, ``due_at``: a deadline that runs again after a hold never fires twice).
    """

    action: str
    trigger: str
    reason: str | None = None  # default: the action's declared reason
    payload: Mapping[str, Any] = field(default_factory=dict)
    step: str | None = None
    status: str | None = None
    requires_null: tuple[str, ...] = ()
    level: int | None = None
    deadline: bool = True


SWEEPS: dict[str, Sweep] = {
    "remind": Sweep(A.remind.value, "remind_at", "临近办理期限，系统自动催办", {"automatic": True}),
    "overdue": Sweep("overdue", "overdue_at", "已超过办理期限，自动督办（一级）", {"level": 1}, level=1),
    "escalate": Sweep(A.escalate.value, "level2_at", "超期五个工作日仍未办结，自动督办升级（二级）",
                      {"level": 2, "automatic": True}, requires_null=("overdue_at",), level=2),
    "auto_close": Sweep(A.auto_close.value, "due_at", step="feedback", status="replied", deadline=False),
}


def effects_of(action: str) -> Effects:
    """The declared effects of ``action`` (an event's action name); no effect for unknown names."""
    return EFFECTS.get(str(action), NO_EFFECTS)

"""Resolving the SLA limits in force for a ticket (SPEC §4).

A limit is looked up for the ticket's category, then its parent, up to the root (the service
type); the first policy found for ``(priority, step)`` wins. When the tree has none, the SPEC §4
defaults below apply.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, select

from service.calendar.core import WorkingCalendar
from service.categories.models import Category
from service.sla.models import SlaPolicy


@dataclass(frozen=True)
class Limit:
    """A time limit: ``amount`` in ``unit`` (``working_hours`` or ``working_days``)."""

    amount: int
    unit: str

    def deadline(self, calendar: WorkingCalendar, start: datetime) -> datetime:
        """The deadline of a clock started at ``start`` (SPEC §4 counting rules; UTC)."""
        if self.unit == "working_days":
            return calendar.add_working_days(start, self.amount)
        return calendar.add_working_hours(start, self.amount)

    def label(self) -> str:
        return f"{self.amount}个工作{'日' if self.unit == 'working_days' else '小时'}"


#: SPEC §4 defaults: ``DEFAULTS[priority][step]``.
DEFAULTS: dict[str, dict[str, Limit]] = {
    "normal": {
        "accept": Limit(1, "working_days"),
        "claim": Limit(1, "working_days"),
        "first_reply": Limit(3, "working_days"),
        "reply": Limit(15, "working_days"),
        "feedback": Limit(5, "working_days"),
    },
    "urgent": {
        "accept": Limit(2, "working_hours"),
        "claim": Limit(2, "working_hours"),
        "first_reply": Limit(1, "working_days"),
        "reply": Limit(3, "working_days"),
        "feedback": Limit(5, "working_days"),
    },
}

#: How long before a deadline the reminder (催办) goes out (SPEC §4), in working seconds.
REMINDER_LEAD_SECONDS = {"normal": None, "urgent": 2 * 3600}  # None = one working day
#: Escalation to level 2 this many working days after the deadline (SPEC §4).
LEVEL2_AFTER_WORKING_DAYS = 5


#: Seconds the policy table and category tree read from the database are reused by this process
#: (both are small and change rarely; this process's own changes clear the cache at once).
POLICY_TTL_SECONDS = 5.0
_snapshot_cache: dict[str, tuple[float, dict[int, int | None], dict[tuple[int, str, str], Limit]]] = {}


def clear_cache() -> None:
    """Forget the cached policies and category tree (after a change, and between tests)."""
    _snapshot_cache.clear()


def _snapshot(session: Session) -> tuple[dict[int, int | None], dict[tuple[int, str, str], Limit]]:
    url = str(session.get_bind().engine.url)
    cached = _snapshot_cache.get(url)
    now = time.monotonic()
    if cached is None or now - cached[0] > POLICY_TTL_SECONDS:
        parents = dict(session.exec(select(Category.id, Category.parent_id)).all())
        policies = {(p.category_id, p.priority, p.step): Limit(p.amount, p.unit)
                    for p in session.exec(select(SlaPolicy)).all()}
        cached = (now, parents, policies)
        _snapshot_cache[url] = cached
    return cached[1], cached[2]


def category_chain(session: Session, category_id: int) -> list[int]:
    """``[category_id, parent, ..., root]``."""
    parents, _ = _snapshot(session)
    chain, current = [], category_id
    while current is not None and current not in chain:
        chain.append(current)
        current = parents.get(current)
    return chain


def limit_for(session: Session, category_id: int, priority: str, step: str) -> Limit:
    """The limit in force for ``step`` of a ticket in ``category_id`` at ``priority``: the nearest
    policy up the category tree, else the SPEC §4 default."""
    _, policies = _snapshot(session)
    for cid in category_chain(session, category_id):
        found = policies.get((cid, priority, step))
        if found is not None:
            return found
    return DEFAULTS[priority][step]

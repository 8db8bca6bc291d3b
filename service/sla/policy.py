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
from service.db import database_key
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


@dataclass(frozen=True)
class _Snapshot:
    at: float  # time.monotonic() when read
    parents: dict[int, int | None]
    policies: dict[tuple[int, str, str], Limit]
    categories: dict[int, tuple[str, str]]  # id -> (code, service_type)
    by_code: dict[str, int]


_snapshot_cache: dict[str, _Snapshot] = {}


def clear_cache() -> None:
    """Forget the cached policies and category tree (after a change, and between tests)."""
    _snapshot_cache.clear()


def _url(session: Session) -> str:
    return database_key(session)


def snapshot_is_fresh(session: Session) -> bool:
    """True when :func:`limit_for` and :func:`cached_category` answer without a query (the
    async intake path checks this before using them on the event loop)."""
    cached = _snapshot_cache.get(_url(session))
    return cached is not None and time.monotonic() - cached.at <= POLICY_TTL_SECONDS


def _load(session: Session) -> _Snapshot:
    url = _url(session)
    cached = _snapshot_cache.get(url)
    now = time.monotonic()
    if cached is None or now - cached.at > POLICY_TTL_SECONDS:
        rows = session.exec(select(Category.id, Category.parent_id, Category.code, Category.service_type)).all()
        policies = {(p.category_id, p.priority, p.step): Limit(p.amount, p.unit)
                    for p in session.exec(select(SlaPolicy)).all()}
        cached = _Snapshot(at=now, parents={r[0]: r[1] for r in rows}, policies=policies,
                           categories={r[0]: (r[2], r[3]) for r in rows}, by_code={r[2]: r[0] for r in rows})
        _snapshot_cache[url] = cached
    return cached


def _snapshot(session: Session) -> tuple[dict[int, int | None], dict[tuple[int, str, str], Limit]]:
    snap = _load(session)
    return snap.parents, snap.policies


def cached_category(session: Session, category_id: int | None = None,
                    code: str | None = None) -> tuple[int, str, str] | None:
    """``(id, code, service_type)`` of the category with ``category_id`` (else ``code``) as this
    process last read it (at most :data:`POLICY_TTL_SECONDS` old), or None when unknown. A hint
    only: callers that write must check it against the database (the intake statement does)."""
    snap = _load(session)
    if category_id is None:
        category_id = snap.by_code.get(code or "")
    found = snap.categories.get(category_id) if category_id is not None else None
    return (category_id, found[0], found[1]) if found is not None else None


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

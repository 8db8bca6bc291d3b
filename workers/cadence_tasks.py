"""Celery tasks of the five cadences (五诊, SPEC §5; issue #4). Thin: each calls service.cadences.

Beat fires each task every day at its time (Asia/Shanghai); the task runs whatever period of its
cadence is due by now and not yet claimed (:func:`service.cadences.service.run_due`), so a
non-working day does nothing and the work moves to the next working day, a second firing creates
nothing twice, and ``cadence.catch_up`` (hourly) runs what a downtime missed. Each period runs in
its own transaction: one failing period does not undo the others.
"""

from __future__ import annotations

from celery import shared_task

from service.cadences import service as cadences
from service.db import session_scope


def run_due_each(kinds: tuple[str, ...]) -> list[dict]:
    """Run every due period of ``kinds``, each in its own transaction; returns the run results."""
    with session_scope() as session:
        periods = cadences.due_periods(session, kinds)
    results = []
    for period in periods:
        with session_scope() as session:
            results.append(cadences.run_period(session, period).model_dump(mode="json"))
    return results


@shared_task(name="cadence.run_daily")
def run_daily() -> list[dict]:
    """每日一问诊: build every officer's inquiry list (working days, 08:30)."""
    return run_due_each(("daily",))


@shared_task(name="cadence.run_weekly")
def run_weekly() -> list[dict]:
    """每周一坐诊: create next week's clinic sessions and agendas (first working day of the week)."""
    return run_due_each(("weekly",))


@shared_task(name="cadence.run_monthly")
def run_monthly() -> list[dict]:
    """每月一复诊: follow-ups and the long-open list (first working day of the month)."""
    return run_due_each(("monthly",))


@shared_task(name="cadence.run_quarterly")
def run_quarterly() -> list[dict]:
    """每季一会诊: joint consultation and the ranking report (first working day of the quarter)."""
    return run_due_each(("quarterly",))


@shared_task(name="cadence.run_annual")
def run_annual() -> list[dict]:
    """每年一回诊: return visits and the annual report (first working day of the year)."""
    return run_due_each(("annual",))


@shared_task(name="cadence.catch_up")
def catch_up() -> list[dict]:
    """Run every cadence period missed (downtime), oldest first."""
    return run_due_each(cadences.KINDS)

"""Celery tasks of the five cadences (五诊, SPEC §5; issue #4). Thin: each calls service.cadences.

Beat fires each task every day at its run time (``QIFU_CADENCE_RUN_TIMES``, in the office's time
zone); the task runs whatever period of its cadence is due by now and not yet claimed
(:func:`service.cadences.service.due_periods`), so a non-working day does nothing and the work
moves to the next working day, a second firing creates nothing twice, and ``cadence.catch_up``
(hourly) runs what a downtime missed. Each period runs in its own transaction: one failing period
does not undo the others.
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


def _cadence_task(kind: str, doc: str):
    """The Celery task ``cadence.run_<kind>``: runs the due periods of ``kind``; returns their results."""

    def run() -> list[dict]:
        return run_due_each((kind,))

    run.__name__ = run.__qualname__ = f"run_{kind}"
    run.__doc__ = doc
    return shared_task(name=f"cadence.run_{kind}")(run)


run_daily = _cadence_task("daily", "每日一问诊: build every officer's inquiry list (working days).")
run_weekly = _cadence_task("weekly", "每周一坐诊: next week's clinic sessions and agendas (first working day "
                           "of the week).")
run_monthly = _cadence_task("monthly", "每月一复诊: follow-ups and the long-open list (first working day of "
                            "the month).")
run_quarterly = _cadence_task("quarterly", "每季一会诊: joint consultation and the ranking report (first "
                              "working day of the quarter).")
run_annual = _cadence_task("annual", "每年一回诊: return visits and the annual report (first working day of "
                           "the year).")


@shared_task(name="cadence.catch_up")
def catch_up() -> list[dict]:
    """Run every cadence period missed (downtime), oldest first."""
    return run_due_each(cadences.KINDS)

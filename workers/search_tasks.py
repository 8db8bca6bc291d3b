"""Thin Celery tasks of the triage search features (issue 13): the hot-issue refresh, the batch
job and the sweep of the near-duplicate index, and the harvest of closed tickets' replies for answer suggestions. Each
opens its own session and calls a ``service/triage`` function; each is idempotent."""

from __future__ import annotations

from celery import shared_task

from service.db import session_scope
from service.observability.metrics import timed_sweep
from service.triage import duplicates, hotspots, knowledge


def _swept(name: str, work):
    with timed_sweep(name) as box, session_scope() as session:
        box["result"] = work(session)
    return box["result"]


@shared_task(name="triage.refresh_hot_issues")
def refresh_hot_issues() -> int:
    """Store the hot issues of the last 30 days (the latest run); returns the number of groups."""
    return _swept("triage.refresh_hot_issues", lambda s: len(hotspots.refresh_latest(s).groups))


@shared_task(name="triage.sweep_duplicate_index")
def sweep_duplicate_index() -> int:
    """Delete the near-duplicate index rows of tickets no longer open; returns the rows deleted."""
    return _swept("triage.sweep_duplicate_index", duplicates.sweep)


@shared_task(name="triage.index_duplicates")
def index_duplicates() -> int:
    """Add the near-duplicate index rows of new open tickets that have none (the one-statement
    intake leaves them to this task); returns the number of tickets indexed."""
    return _swept("triage.index_duplicates", duplicates.index_pending)


@shared_task(name="triage.harvest_replies")
def harvest_replies() -> int:
    """Copy the replies of newly closed tickets into the past replies; returns how many."""
    return _swept("triage.harvest_replies", knowledge.harvest_ticket_replies)

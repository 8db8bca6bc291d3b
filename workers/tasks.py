"""Thin Celery tasks: each opens its own session (``session_scope`` commits) and calls a
``service/`` function. Names are ``<domain>.<verb_noun>``; arguments are ids only; every task is
idempotent, so a redelivery (``acks_late``) or a double relay does no harm."""

from __future__ import annotations

from celery import shared_task

from service import jobs
from service.db import session_scope
from service.notifications import service as notifications
from service.observability.metrics import timed_sweep
from service.open311 import media as open311_media
from service.sla import sweeps
from service.stats import rollup


def _in_session(work):
    """``work(session)`` in a unit of work of its own (committed on success)."""
    with session_scope() as session:
        return work(session)


def _swept(name: str, work):
    """:func:`_in_session`, its duration recorded as sweep ``name`` (``/metrics``)."""
    with timed_sweep(name) as box, session_scope() as session:
        box["result"] = work(session)
    return box["result"]


@shared_task(name="ops.ping", ignore_result=False)
def ping() -> str:
    """Liveness probe for workers: returns ``"pong"``."""
    return "pong"


@shared_task(name="sla.send_reminders")
def send_reminders() -> int:
    """催办 every ticket whose reminder time has come (once per deadline)."""
    return _swept("sla.send_reminders", sweeps.send_reminders)


@shared_task(name="sla.mark_overdue")
def mark_overdue() -> list[int]:
    """Overdue + escalation level 1 at the deadline; level 2 five working days later."""
    return list(_swept("sla.mark_overdue", sweeps.mark_overdue))


@shared_task(name="tickets.auto_close")
def auto_close() -> int:
    """Close replied tickets without feedback after the feedback limit (rating none)."""
    return _swept("tickets.auto_close", sweeps.auto_close)


@shared_task(name="stats.fold_rollup")
def fold_rollup() -> int:
    """Fold the statistics rollup's appended changes into its rows (and apply a calendar change);
    returns the number of change rows moved."""
    return _swept("stats.fold_rollup", rollup.fold)


@shared_task(name="outbox.relay")
def relay_outbox() -> list[int]:
    """Re-relay outbox messages the after-commit relay did not get through (broker down)."""
    return list(_swept("outbox.relay", lambda session: jobs.relay(session, min_age_seconds=10)))


@shared_task(name="notifications.deliver")
def deliver(delivery_ids: list[int]) -> list[str]:
    """Deliver notifications (webhook, e-mail); each delivery in its own transaction
    (:func:`service.notifications.service.deliver_batch`)."""
    return _in_session(lambda session: notifications.deliver_batch(session, delivery_ids))


@shared_task(name="open311.fetch_media")
def fetch_open311_media(ticket_id: int) -> str:
    """Fetch an Open311 request's ``media_url`` and store it as an attachment (docs/open311.md);
    queued through the outbox by the submission. Never raises for the URL: a failure is logged and
    the URL stays on the request. Returns the outcome's state."""
    return _in_session(lambda session: open311_media.fetch_media(session, ticket_id)).state


@shared_task(name="notifications.retry_failed")
def retry_failed() -> int:
    """Queue the failed deliveries whose backoff has elapsed."""
    return _swept("notifications.retry_failed", notifications.retry_failed)


@shared_task(name="triage.train")
def train_triage() -> int | None:
    """Retrain the category and department suggestion models (nightly; issue 13); returns the
    new model version (``None``: no labelled example yet)."""
    from service.triage.training import train

    return _in_session(train)["version"]

"""Thin Celery tasks: each opens its own session (``session_scope`` commits) and calls a
``service/`` function. Names are ``<domain>.<verb_noun>``; arguments are ids only; every task is
idempotent, so a redelivery (``acks_late``) or a double relay does no harm."""

from __future__ import annotations

from celery import shared_task

from service import jobs
from service.db import session_scope
from service.notifications import service as notifications
from service.observability.metrics import timed_sweep
from service.sla import sweeps


@shared_task(name="ops.ping", ignore_result=False)
def ping() -> str:
    """Liveness probe for workers: returns ``"pong"``."""
    return "pong"


@shared_task(name="sla.send_reminders")
def send_reminders() -> int:
    """催办 every ticket whose reminder time has come (once per deadline)."""
    with timed_sweep("sla.send_reminders") as box, session_scope() as session:
        box["result"] = sweeps.send_reminders(session)
    return box["result"]


@shared_task(name="sla.mark_overdue")
def mark_overdue() -> list[int]:
    """Overdue + escalation level 1 at the deadline; level 2 five working days later."""
    with timed_sweep("sla.mark_overdue") as box, session_scope() as session:
        box["result"] = sweeps.mark_overdue(session)
    return list(box["result"])


@shared_task(name="tickets.auto_close")
def auto_close() -> int:
    """Close replied tickets without feedback after the feedback limit (rating none)."""
    with timed_sweep("tickets.auto_close") as box, session_scope() as session:
        box["result"] = sweeps.auto_close(session)
    return box["result"]


@shared_task(name="outbox.relay")
def relay_outbox() -> list[int]:
    """Re-relay outbox messages the after-commit relay did not get through (broker down)."""
    with timed_sweep("outbox.relay") as box, session_scope() as session:
        box["result"] = jobs.relay(session, min_age_seconds=10)
    return list(box["result"])


@shared_task(name="notifications.deliver")
def deliver(delivery_ids: list[int]) -> list[str]:
    """Deliver notifications (webhook, e-mail); each delivery in its own transaction."""
    states = []
    for delivery_id in delivery_ids:
        with session_scope() as session:
            states.append(notifications.deliver(session, delivery_id))
    return states


@shared_task(name="notifications.retry_failed")
def retry_failed() -> int:
    """Queue the failed deliveries whose backoff has elapsed."""
    with timed_sweep("notifications.retry_failed") as box, session_scope() as session:
        box["result"] = notifications.retry_failed(session)
    return box["result"]

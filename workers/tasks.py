"""Thin Celery tasks that call ``service/`` functions."""

from __future__ import annotations

from workers.celery_app import celery_app


@celery_app.task(name="ops.ping", ignore_result=False)
def ping() -> str:
    """Liveness probe for workers: returns ``"pong"``."""
    return "pong"

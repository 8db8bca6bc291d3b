"""The Celery application (broker: Redis), configured from ``service.config``.

Conventions (ARCHITECTURE rule 3): task names ``<domain>.<verb_noun>``, tasks take ids only and
are idempotent, ``acks_late`` on, beat in Asia/Shanghai. The SLA sweeps and the five cadences
(issues #3 and #4) register their tasks and beat entries here.
"""

from __future__ import annotations

from celery import Celery

from service.config import get_settings


def make_celery() -> Celery:
    """Build the Celery app; the broker is ``QIFU_REDIS_URL`` (required to run a real worker)."""
    settings = get_settings()
    broker = settings.redis_url or "redis://127.0.0.1:6379/0"
    app = Celery("qifu", broker=broker, backend=broker, include=["workers.tasks"])
    app.conf.update(
        timezone=settings.timezone,
        enable_utc=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,  # tasks record their effects in the database; ping opts in
        result_expires=3600,
        broker_connection_retry_on_startup=True,
        beat_schedule={},
    )
    return app


celery_app = make_celery()

"""The Celery application (broker: Redis), configured from ``service.config``.

Conventions (ARCHITECTURE rule 3): task names ``<domain>.<verb_noun>``, tasks take ids only and
are idempotent, ``acks_late`` on, beat in Asia/Shanghai. Sweeps are beat entries (no multi-day
``eta``): deadlines live in columns and the sweeps claim rows with conditional UPDATEs.
"""

from __future__ import annotations

from functools import lru_cache

from celery import Celery
from celery.schedules import crontab

from service.config import get_settings
from service.observability.logs import connect_celery_signals

BEAT_SCHEDULE = {
    "sla-send-reminders": {"task": "sla.send_reminders", "schedule": 60.0},
    "sla-mark-overdue": {"task": "sla.mark_overdue", "schedule": 60.0},
    "tickets-auto-close": {"task": "tickets.auto_close", "schedule": 300.0},
    "outbox-relay": {"task": "outbox.relay", "schedule": 30.0},
    "notifications-retry": {"task": "notifications.retry_failed", "schedule": 60.0},
    "ops-heartbeat": {"task": "ops.ping", "schedule": crontab(minute=0)},
    # the five cadences (SPEC §5): fired daily at their time in Asia/Shanghai; each task runs the
    # period that is due (non-working days do nothing; the work moves to the next working day)
    "cadence-daily": {"task": "cadence.run_daily", "schedule": crontab(hour=8, minute=30)},
    "cadence-weekly": {"task": "cadence.run_weekly", "schedule": crontab(hour=8, minute=0)},
    "cadence-monthly": {"task": "cadence.run_monthly", "schedule": crontab(hour=8, minute=5)},
    "cadence-quarterly": {"task": "cadence.run_quarterly", "schedule": crontab(hour=8, minute=10)},
    "cadence-annual": {"task": "cadence.run_annual", "schedule": crontab(hour=8, minute=15)},
    "cadence-catch-up": {"task": "cadence.catch_up", "schedule": crontab(minute=45)},
}


def _redelivery_options() -> dict[str, float]:
    """How soon Redis redelivers a message a worker took and never acknowledged (a worker killed
    mid-task; ``acks_late``): ``QIFU_BROKER_VISIBILITY_TIMEOUT`` seconds (default 3600, longer
    than any task: a running task must not be redelivered to a second worker). The unacked sweep
    runs every ``min(10, timeout)`` seconds, so a short timeout also recovers quickly."""
    timeout = get_settings().broker_visibility_timeout
    return {"visibility_timeout": timeout, "unacked_restore_interval": max(1, min(10, int(timeout))),
            "unacked_restore_throttle": 1}


def make_celery(redis_url: str | None = None) -> Celery:
    """Build the Celery app on ``redis_url`` (default ``QIFU_REDIS_URL``)."""
    settings = get_settings()
    broker = redis_url or settings.redis_url or "redis://127.0.0.1:6379/0"
    app = Celery("qifu", broker=broker, backend=broker, include=["workers.tasks", "workers.cadence_tasks"])
    app.conf.update(
        timezone=settings.timezone,
        enable_utc=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,  # tasks record their effects in the database; ping opts in
        result_expires=3600,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=2,
        broker_transport_options={"socket_connect_timeout": 2, "socket_timeout": 5,
                                  **_redelivery_options()},
        task_routes={"sla.*": {"queue": "sla"}, "tickets.*": {"queue": "sla"},
                     "notifications.*": {"queue": "notifications"}, "outbox.*": {"queue": "celery"},
                     "cadence.*": {"queue": "cadence"}},
        beat_schedule=BEAT_SCHEDULE,
    )
    return app


@lru_cache(maxsize=4)
def _celery_for(redis_url: str) -> Celery:
    return make_celery(redis_url or None)


def get_celery() -> Celery:
    """The Celery app for the current settings (cached per broker URL; tests switch URLs)."""
    app = _celery_for(get_settings().redis_url)
    import workers.cadence_tasks  # noqa: F401
    import workers.tasks  # noqa: F401  (registers the shared tasks)

    return app


connect_celery_signals()  # JSON logs; the request id travels in the message headers into the task
celery_app = make_celery()

"""The Celery application (broker: Redis), configured from ``service.config``.

Conventions (ARCHITECTURE rule 3): task names ``<domain>.<verb_noun>``, tasks take ids only and
are idempotent, ``acks_late`` on, beat in the office's time zone (``QIFU_TIMEZONE``). Sweeps are beat entries (no multi-day
``eta``): deadlines live in columns and the sweeps claim rows with conditional UPDATEs.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

from celery import Celery
from celery.schedules import crontab

from service import jobs
from service.config import Settings, get_settings
from service.logs import connect_celery_signals

log = logging.getLogger("qifu.jobs")

def beat_schedule(settings: Settings) -> dict[str, dict]:
    """Beat's entries: the SLA sweeps, the outbox re-relay and delivery retries every minute or
    so, and the five cadences (SPEC §5) daily at their run time (``settings.cadence_run_times``, in
    the office's time zone ``settings.timezone``: Celery's ``timezone``), the very time the domain
    takes them to be due (:func:`service.cadences.service.due_periods`). Each cadence task runs the
    period that is due; non-working days do nothing and the work moves to the next working day.
    With ``QIFU_MAIL_ENABLED``, ``mail-poll`` polls the intake mailbox every
    ``QIFU_MAIL_POLL_SECONDS`` (a firing not started within that time expires: no pile-up)."""
    mail = ({"mail-poll": {"task": "mail.poll", "schedule": settings.mail_poll_seconds,
                           "options": {"expires": settings.mail_poll_seconds}}}
            if settings.mail_enabled else {})
    cadences = {f"cadence-{kind}": {"task": f"cadence.run_{kind}",
                                    "schedule": crontab(hour=at.hour, minute=at.minute)}
                for kind, at in settings.cadence_run_times.items()}
    return {
        "sla-send-reminders": {"task": "sla.send_reminders", "schedule": 60.0},
        "sla-mark-overdue": {"task": "sla.mark_overdue", "schedule": 60.0},
        "tickets-auto-close": {"task": "tickets.auto_close", "schedule": 300.0},
        "outbox-relay": {"task": "outbox.relay", "schedule": 30.0},
        "stats-fold-rollup": {"task": "stats.fold_rollup", "schedule": settings.stats_fold_seconds},
        "notifications-retry": {"task": "notifications.retry_failed", "schedule": 60.0},
        "ops-heartbeat": {"task": "ops.ping", "schedule": crontab(minute=0)},
        **cadences,
        "cadence-catch-up": {"task": "cadence.catch_up", "schedule": crontab(minute=45)},
        **mail,
        "triage-train": {"task": "triage.train", "schedule": crontab(hour=settings.triage_train_time.hour,
                                                                     minute=settings.triage_train_time.minute)},
        # triage search (issue 13): hot issues hourly, the duplicate index and past replies nightly
        "triage-hot-issues": {"task": "triage.refresh_hot_issues", "schedule": crontab(minute=20)},
        "triage-sweep-duplicates": {"task": "triage.sweep_duplicate_index", "schedule": crontab(hour=2, minute=10)},
        # the near-duplicate index rows of new tickets, off the intake statement (docs/performance.md)
        "triage-index-duplicates": {"task": "triage.index_duplicates", "schedule": settings.duplicate_index_seconds,
                                    "options": {"expires": settings.duplicate_index_seconds}},
        "triage-harvest-replies": {"task": "triage.harvest_replies", "schedule": crontab(hour=2, minute=30)},
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
    app = Celery("qifu", broker=broker, backend=broker, include=["workers.tasks", "workers.cadence_tasks",
                                                                   "workers.mail_tasks", "workers.search_tasks"])
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
                     "cadence.*": {"queue": "cadence"}, "stats.*": {"queue": "sla"},
                     "triage.*": {"queue": "cadence"}},
        beat_schedule=beat_schedule(settings),
    )
    return app


@lru_cache(maxsize=4)
def _celery_for(redis_url: str) -> Celery:
    return make_celery(redis_url or None)


def get_celery() -> Celery:
    """The Celery app for the current settings (cached per broker URL; tests switch URLs)."""
    app = _celery_for(get_settings().redis_url)
    import workers.cadence_tasks  # noqa: F401
    import workers.mail_tasks  # noqa: F401
    import workers.search_tasks  # noqa: F401
    import workers.tasks  # noqa: F401  (registers the shared tasks)

    return app


# ------------------------------------------------------------------ the outbox's broker

_local_pool: ThreadPoolExecutor | None = None
_local_lock = threading.Lock()


def dispatch(task: str, kwargs: dict) -> None:
    """Send ``task(**kwargs)`` to Celery when Redis is configured (``QIFU_REDIS_URL``); else run it
    on the embedded worker threads of this process (two threads, ``qifu standalone``).

    Raises whatever the broker raises when it does not take the message (the relay keeps it pending).
    """
    app = get_celery()
    if get_settings().redis_url:
        # ignore_result: nobody waits on an outbox task's result; without it send_task subscribes
        # to the result backend for every message (a leak) and, with Redis down, retries that
        # subscription for ~20 s and leaves the backend broken ("must be restarted").
        app.send_task(task, kwargs=kwargs, retry=False, ignore_result=True)
        return
    global _local_pool
    with _local_lock:
        if _local_pool is None:
            _local_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="qifu-embedded-worker")
    _local_pool.submit(contextvars.copy_context().run, _run_local, task, app.tasks[task], kwargs)  # keeps the request id


def _run_local(name: str, func, kwargs: dict) -> None:
    try:
        func(**kwargs)
    except Exception:  # noqa: BLE001 - the embedded worker logs and goes on, as Celery would
        log.exception("embedded task %s failed", name)


connect_celery_signals()  # JSON logs; the request id travels in the message headers into the task
celery_app = make_celery()
# a Celery worker or beat imports this module at start (-A workers.celery_app): the messages its
# tasks write go to the broker directly (other processes register lazily: workers.dispatch)
jobs.register_dispatcher(dispatch)

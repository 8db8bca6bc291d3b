"""Registering the outbox's broker in a process (:func:`register`), without importing Celery yet.

The domain never imports the broker (``service.jobs.register_dispatcher``); every process that may
relay outbox messages calls :func:`register` at start: the API (``qifu.main.create_app``), the
``qifu`` command and the embedded scheduler. Celery itself (about 2 s of CPU to import) is loaded
at the first message, as before; a Celery worker registers on importing :mod:`workers.celery_app`.
"""

from __future__ import annotations

from service import jobs


def dispatch(task: str, kwargs: dict) -> None:
    """Hand ``task(**kwargs)`` to :func:`workers.celery_app.dispatch` (Celery on Redis, or the
    embedded worker threads when ``QIFU_REDIS_URL`` is empty)."""
    from workers.celery_app import dispatch as send

    send(task, kwargs)


def register() -> None:
    """Make :func:`dispatch` this process's outbox dispatcher (idempotent)."""
    jobs.register_dispatcher(dispatch)

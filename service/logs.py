"""Structured logs with a request id (issue #11 "Operations"; docs/operations.md).

Every log line of the ``qifu`` commands (``serve``, ``worker``, ``beat``, ``standalone``) is one
JSON object (structlog's ``ProcessorFormatter`` over the standard ``logging`` module, so uvicorn's,
Celery's and our own loggers all come out the same way)::

    {"event": "...", "level": "info", "logger": "qifu.jobs", "timestamp": "2026-12-04T13:50:01.2Z",
     "request_id": "0f8e...", "task": "notifications.deliver", "task_id": "..."}

The **request id** is the ``X-Request-ID`` header when it is a UUID, else a new one
(asgi-correlation-id's middleware), echoed in the response's ``X-Request-ID``. It follows the work
the request caused: the outbox relay hands it to Celery as the message header ``request_id``
(:func:`publish_headers`), and the worker binds it while the task runs (:func:`task_started`), so
the request's lines and its tasks' lines share it. A message re-sent by the periodic relay after a
broker outage has no request context any more: its task logs ``outbox_id`` and a fresh id.
"""

from __future__ import annotations

import contextvars
import logging
import logging.config
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from asgi_correlation_id.context import correlation_id

# structlog is imported where logging is configured (an entry point's start), not here: every
# process imports this module through service.jobs, and structlog's import costs ~0.05 s.

REQUEST_ID_HEADER = "request_id"  # the Celery message header


def current_request_id() -> str | None:
    """The request id bound in this context (an HTTP request or a task), else ``None``."""
    return correlation_id.get()


@contextmanager
def request_id_bound(value: str | None) -> Iterator[None]:
    """Bind ``value`` as the request id for the block (threads that relay or run jobs)."""
    token = correlation_id.set(value)
    try:
        yield
    finally:
        correlation_id.reset(token)


def _add_request_id(_logger, _name, event_dict: dict) -> dict:
    rid = correlation_id.get()
    if rid and "request_id" not in event_dict:
        event_dict["request_id"] = rid
    return event_dict


def _add_task(_logger, _name, event_dict: dict) -> dict:
    task = _current_task.get()
    if task and "task" not in event_dict:
        event_dict["task"], event_dict["task_id"] = task
    return event_dict


def _drop_color_message(_logger, _name, event_dict: dict) -> dict:
    event_dict.pop("color_message", None)  # uvicorn's coloured copy of the message
    return event_dict


def _pre_chain() -> list:
    import structlog

    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_request_id,
        _add_task,
        structlog.stdlib.ExtraAdder(),
        _drop_color_message,
    ]


def logging_config(fmt: str | None = None, level: str | None = None) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` dict: one handler on stderr, JSON lines (``fmt="json"``)
    or coloured console lines (``"console"``); defaults from ``QIFU_LOG_FORMAT``/``QIFU_LOG_LEVEL``.
    Given to uvicorn as ``log_config`` so that each API process applies it."""
    import structlog

    from service.config import get_settings

    settings = get_settings()
    fmt = (fmt or settings.log_format).lower()
    level = (level or settings.log_level).upper()
    renderer = (structlog.processors.JSONRenderer(ensure_ascii=False) if fmt == "json"
                else structlog.dev.ConsoleRenderer(colors=False))
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"qifu": {
            "()": structlog.stdlib.ProcessorFormatter,
            "processors": [structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                           structlog.processors.format_exc_info, renderer],
            "foreign_pre_chain": _pre_chain(),
        }},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "qifu",
                                 "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            # uvicorn's own loggers propagate to the root handler instead of their own
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": level, "propagate": True},
        },
    }


def configure_logging(fmt: str | None = None, level: str | None = None) -> None:
    """Apply :func:`logging_config` to this process and set structlog up to log through it."""
    import structlog

    logging.config.dictConfig(logging_config(fmt, level))
    structlog.configure(
        processors=[*_pre_chain()[:1], structlog.stdlib.filter_by_level,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


# ----------------------------------------------------------------- Celery: carry the id into tasks

_current_task: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("qifu_task", default=None)
_task_tokens: dict[str, tuple[Any, Any, float]] = {}
log = logging.getLogger("qifu.tasks")


def publish_headers(headers: dict | None = None, **_kw: Any) -> None:
    """Celery ``before_task_publish``: put the bound request id in the message's headers."""
    rid = correlation_id.get()
    if rid and headers is not None and REQUEST_ID_HEADER not in headers:
        headers[REQUEST_ID_HEADER] = rid


def task_started(task_id: str | None = None, task: Any = None, **_kw: Any) -> None:
    """Celery ``task_prerun``: bind the message's request id (or a new one) and log the start."""
    request = getattr(task, "request", None)
    rid = getattr(request, REQUEST_ID_HEADER, None) or (getattr(request, "headers", None) or {}).get(
        REQUEST_ID_HEADER) or uuid.uuid4().hex
    name = getattr(task, "name", "?")
    _task_tokens[task_id or ""] = (correlation_id.set(rid), _current_task.set((name, task_id or "")),
                                   time.perf_counter())
    log.info("task started")


def task_finished(task_id: str | None = None, state: str | None = None, **_kw: Any) -> None:
    """Celery ``task_postrun``: log the end (state, seconds) and unbind."""
    tokens = _task_tokens.pop(task_id or "", None)
    if tokens is None:
        return
    rid_token, task_token, started = tokens
    log.info("task finished", extra={"state": state, "seconds": round(time.perf_counter() - started, 4)})
    _current_task.reset(task_token)
    correlation_id.reset(rid_token)


def connect_celery_signals() -> None:
    """Connect the handlers above, and make Celery leave logging to :func:`configure_logging`."""
    from celery import signals

    signals.before_task_publish.connect(publish_headers, weak=False)
    signals.task_prerun.connect(task_started, weak=False)
    signals.task_postrun.connect(task_finished, weak=False)

    def _setup_logging(loglevel=None, **_kw: Any) -> None:
        configure_logging(level=logging.getLevelName(loglevel) if isinstance(loglevel, int) else loglevel)

    signals.setup_logging.connect(_setup_logging, weak=False)

"""The embedded scheduler for ``qifu standalone`` (no Redis): a daemon thread that runs the beat
entries' work in-process, SQLite-friendly (one sweep at a time). Outbox messages are executed by
the embedded worker threads of :mod:`workers.celery_app`."""

from __future__ import annotations

import logging
import threading

from service.config import get_settings

log = logging.getLogger("qifu.embedded")


def run_periodic_once() -> None:
    """One round of the periodic work: SLA sweeps, outbox re-relay, delivery retries, the
    cadence periods that are due (SPEC §5; each runs once per period), the statistics rollup's
    fold, the near-duplicate index rows of new tickets, and the e-mail intake's poll when
    ``QIFU_MAIL_ENABLED``."""
    from workers import cadence_tasks, mail_tasks, search_tasks, tasks

    for task in (tasks.send_reminders, tasks.mark_overdue, tasks.auto_close, tasks.relay_outbox,
                 tasks.retry_failed, cadence_tasks.catch_up, tasks.fold_rollup, search_tasks.index_duplicates,
                 mail_tasks.poll_mailbox):
        try:
            task()
        except Exception:  # noqa: BLE001 - log and go on with the next one
            log.exception("embedded periodic task %s failed", task.name)


class EmbeddedScheduler:
    """Runs :func:`run_periodic_once` every ``interval`` seconds until :meth:`stop`."""

    def __init__(self, interval: float | None = None) -> None:
        self.interval = interval or get_settings().embedded_sweep_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="qifu-embedded-scheduler", daemon=True)

    def start(self) -> EmbeddedScheduler:
        from workers.dispatch import register

        register()  # outbox messages of this process run on the embedded worker threads
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            run_periodic_once()

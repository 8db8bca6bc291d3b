"""Issue 9, layers: the domain relays outbox messages through the dispatcher the workers layer
registered; one settings class (beat fires the cadences when the domain takes them due); the office
zone is the ``timezone`` setting; the status sets are defined once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from sqlmodel import Session

from service import clock, jobs
from service.common.enums import (
    AWAITING_REPLY_STATUSES,
    OPEN_STATUSES,
    WITH_DEPARTMENT_STATUSES,
    TicketStatus,
)
from service.outbox_models import OutboxMessage
from service.tickets import workflow
from tests.notifications.test_notifications import settings_env


def test_without_a_registered_dispatcher_a_message_stays_pending(engine):
    """A process that registered no dispatcher (the domain alone) keeps the message pending with
    the reason; once the workers layer registered one, the relay sends it."""
    marker = uuid.uuid4().hex
    saved, mid = jobs._dispatcher, None
    jobs.set_relay_enabled(False)
    try:
        with Session(engine) as s:
            message = jobs.enqueue(s, "ops.ping", marker=marker)
            s.commit()
            mid = message.id
            jobs.register_dispatcher(None)  # type: ignore[arg-type]
            assert jobs.relay(s, [mid]) == (0, 1)
            s.refresh(message)
            assert message.sent_at is None and "NoDispatcher" in message.last_error
            sent: list[tuple[str, dict]] = []
            jobs.register_dispatcher(lambda task, kwargs: sent.append((task, kwargs)))
            assert jobs.relay(s, [mid]) == (1, 0)
            assert sent == [("ops.ping", {"marker": marker})]
    finally:
        jobs.register_dispatcher(saved)
        jobs.set_relay_enabled(True)
        with Session(engine) as s:
            if mid is not None:
                s.delete(s.get(OutboxMessage, mid))
            s.commit()


def test_beat_fires_each_cadence_at_the_domains_run_time():
    """One definition of the run times (QIFU_CADENCE_RUN_TIMES): beat's crontab and the domain's
    due time agree, and changing the setting moves both."""
    from workers.celery_app import beat_schedule

    with settings_env() as set_env:
        from service.config import get_settings

        set_env(QIFU_CADENCE_RUN_TIMES='{"daily": "07:15", "weekly": "08:00", "monthly": "09:30", '
                                       '"quarterly": "08:00", "annual": "08:00"}')
        settings = get_settings()
        schedule = beat_schedule(settings)
        for kind, at in settings.cadence_run_times.items():
            entry = schedule[f"cadence-{kind}"]
            assert entry["task"] == f"cadence.run_{kind}"
            assert entry["schedule"].hour == {at.hour} and entry["schedule"].minute == {at.minute}
        assert settings.cadence_run_times["daily"] == time(7, 15)


def test_the_office_zone_is_the_timezone_setting():
    with settings_env() as set_env:
        assert clock.office_zone() == ZoneInfo("Asia/Shanghai")
        naive = datetime(2026, 3, 2, 9, 0)
        assert clock.as_utc(naive) == datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
        set_env(QIFU_TIMEZONE="Asia/Urumqi")
        assert clock.office_zone() == ZoneInfo("Asia/Urumqi")
        assert clock.as_utc(naive) == datetime(2026, 3, 2, 3, 0, tzinfo=UTC)


def test_status_sets_are_defined_once_and_nest():
    assert workflow.OPEN_STATUSES is OPEN_STATUSES
    assert set(OPEN_STATUSES) == set(TicketStatus) - {TicketStatus.closed, TicketStatus.rejected}
    assert set(AWAITING_REPLY_STATUSES) == set(OPEN_STATUSES) - {TicketStatus.replied}
    assert set(WITH_DEPARTMENT_STATUSES) < set(AWAITING_REPLY_STATUSES)
    assert TicketStatus.submitted not in WITH_DEPARTMENT_STATUSES

"""Helpers shared by the cadences: local dates, raising problems as tickets."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from sqlmodel import Session, select

from service.auth.actor import Actor
from service.calendar.core import WorkingCalendar
from service.categories.models import Category
from service.clock import office_zone
from service.config import get_settings
from service.enterprises.models import Enterprise
from service.errors import FieldError
from service.notifications import fanout
from service.ticketing import service as ticket_service
from service.tickets.models import Ticket


def local_date(instant: datetime) -> date:
    """The office-time (``timezone`` setting) calendar date of an aware instant."""
    return instant.astimezone(office_zone()).date()


def local_start(d: date) -> datetime:
    """00:00 of ``d`` in office time (aware)."""
    return datetime.combine(d, time.min, tzinfo=office_zone())


def local_at(d: date, t: time) -> datetime:
    return datetime.combine(d, t, tzinfo=office_zone())


def run_instant(kind: str, run_date: date, now: datetime) -> datetime:
    """The instant a run of the ``kind`` cadence for ``run_date`` stands for, stored as the
    ``asked_at`` of what it asks: ``now`` when it runs on its run date (or ahead of it, by hand);
    for a back-dated run (catch-up after a downtime, or by hand for a past date) the scheduled time
    of day on the run date (``cadence_run_times``: 08:00 monthly and annual), so that ``asked_at`` lies in
    the period and before its ``expires_at`` (counted from the run date). Aware."""
    if local_date(now) <= run_date:
        return now
    return local_at(run_date, get_settings().cadence_run_times[kind])


def end_of_working_day(cal: WorkingCalendar, d: date) -> datetime:
    """The end of working hours (17:30 by default) of ``d``, aware."""
    return local_at(d, cal.hours.day_end)


def add_working_days(cal: WorkingCalendar, d: date, n: int) -> date:
    """The ``n``-th working day after ``d`` (``d`` itself when ``n == 0``)."""
    return cal.next_working_day(d, n) if n > 0 else d


def previous_working_day(cal: WorkingCalendar, d: date) -> date:
    """The last working day strictly before ``d``."""
    current = d - timedelta(days=1)
    while not cal.is_working_day(current):
        current -= timedelta(days=1)
    return current


def resolve_category(session: Session, category_id: int | None, category_code: str | None, field: str) -> Category:
    """The category by id or code.

    Raises:
        FieldError (422, ``<field>.category_id`` / ``<field>.category_code``): unknown category.
    """
    if category_id is not None:
        category = session.get(Category, category_id)
        if category is None:
            raise FieldError(f"{field}.category_id", f"分类 {category_id} 不存在")
        return category
    category = session.exec(select(Category).where(Category.code == category_code)).first()
    if category is None:
        raise FieldError(f"{field}.category_code", f"分类 {category_code} 不存在")
    return category


def raise_problems(session: Session, actor: Actor, enterprise: Enterprise, problems, channel: str,
                   at: datetime, field: str = "problems") -> list[Ticket]:
    """Create one ``submitted`` ticket per problem (``schemas.ProblemIn``) through the ticket service.

    Raises:
        FieldError (422, ``problems[i].category_*``): unknown category.
    """
    tickets = []
    for i, p in enumerate(problems):
        category = resolve_category(session, p.category_id, p.category_code, f"{field}[{i}]")
        tickets.append(ticket_service.create_ticket(
            session, enterprise=enterprise, category=category, title=p.title, description=p.description,
            channel=channel, priority=p.priority.value, actor=actor, at=at))
    return tickets


def notify_from_select(session: Session, rows_select, kind: str, at: datetime) -> int:
    """Set-based notifications: ``rows_select`` yields ``(user_id, ticket_id, title, body)``; written
    by :func:`service.notifications.fanout.notify_select` (kind ``kind``, deliveries queued).
    Returns how many were written."""
    return fanout.notify_select(session, rows_select, kind, at)

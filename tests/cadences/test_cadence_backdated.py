"""A back-dated cadence run (catch-up after a downtime, or by hand for a past date) stores its own
instant as ``asked_at``, not the real time of the run (issue 11): the scheduled time of day on the
period's run date (08:00 for the monthly follow-up and the annual return visit), so ``asked_at``
lies before ``expires_at``, which counts from the run date. A run on its run date keeps the real
time."""

from __future__ import annotations

from datetime import date, datetime

import time_machine
from sqlmodel import select

from service.cadences import service as cadences
from service.cadences.models import FollowUp, ReturnVisit
from tests import factories as f
from tests.factories import SHANGHAI


def sh(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=SHANGHAI)


def test_back_dated_monthly_follow_up_is_asked_at_the_run_dates_instant(session):
    with time_machine.travel(sh(2026, 3, 10, 9), tick=False):
        ticket = f.make_ticket(session, "closed")
    with time_machine.travel(sh(2026, 5, 20, 10, 15), tick=False):  # seven weeks late
        result = cadences.run_for_date(session, "monthly", date(2026, 4, 1))
        assert result.ran and result.period_key == "2026-04"
        (up,) = session.exec(select(FollowUp).where(FollowUp.ticket_id == ticket.id)).all()
        assert up.asked_at == sh(2026, 4, 1, 8)  # not 2026-05-20 10:15
        assert up.asked_at < up.expires_at


def test_monthly_follow_up_run_on_its_day_keeps_the_real_time(session):
    with time_machine.travel(sh(2026, 3, 10, 9), tick=False):
        ticket = f.make_ticket(session, "closed")
    with time_machine.travel(sh(2026, 4, 1, 9, 40), tick=False):
        cadences.run_for_date(session, "monthly", date(2026, 4, 1))
        (up,) = session.exec(select(FollowUp).where(FollowUp.ticket_id == ticket.id)).all()
        assert up.asked_at == sh(2026, 4, 1, 9, 40)


def test_back_dated_annual_return_visit_is_asked_at_the_run_dates_instant(session):
    ent = f.enterprise_of(session, "ent1")
    with time_machine.travel(sh(2026, 3, 2, 9), tick=False):
        f.make_ticket(session, "closed")
    with time_machine.travel(sh(2027, 2, 10, 15), tick=False):
        result = cadences.run_for_date(session, "annual", date(2027, 1, 4))
        # the first working day of 2027: Friday 01-01 while 2027 has no holiday data (Monday-Friday)
        assert result.ran and result.run_date == date(2027, 1, 1)
        visit = session.exec(select(ReturnVisit).where(ReturnVisit.enterprise_id == ent.id,
                                                       ReturnVisit.year == 2026)).one()
        assert visit.asked_at == sh(2027, 1, 1, 8)
        assert visit.asked_at < visit.expires_at

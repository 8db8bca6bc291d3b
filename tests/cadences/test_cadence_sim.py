"""A simulated year of the five cadences on the seeded county (SPEC §5), on the real 2026 calendar
with its holidays (time-machine): every day at 09:00 the due cadences run (twice: the second run
creates nothing), the officers contact every enterprise on their list, and a few tickets are closed
each month. Then: every enterprise was contacted within its cadence, the clinics, follow-up rounds,
joint consultations with reports and the return-visit round exist exactly once per period; and a
10-day outage is caught up once."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta

import pytest
import sqlalchemy as sa
import time_machine
from sqlmodel import select

from service.auth.actor import Actor
from service.cadences import inquiries
from service.cadences import service as cadences
from service.cadences.models import (
    CadenceReport,
    CadenceRun,
    CadenceSession,
    FollowUp,
    Inquiry,
    InquiryListItem,
    ReturnVisit,
)
from service.cadences.periods import first_working_on_or_after, periods_between
from service.calendar.service import get_calendar
from service.config import get_settings
from service.enterprises.models import Enterprise
from service.regions.models import Region
from tests import factories as f
from tests.factories import SHANGHAI

YEAR = 2026


def _count(session, model, *where) -> int:
    return session.execute(sa.select(sa.func.count()).select_from(model).where(*where)).scalar_one()


def _contact_all_listed(session, day: date) -> int:
    """The officers contact every enterprise on today's lists (bulk, as many officers logging)."""
    items = session.exec(select(InquiryListItem).where(InquiryListItem.list_date == day)).all()
    at = datetime.combine(day, datetime.min.time(), tzinfo=SHANGHAI) + timedelta(hours=10)
    if items:
        session.execute(sa.insert(Inquiry), [
            {"enterprise_id": i.enterprise_id, "officer_id": i.officer_id, "method": "visit", "finding": "none",
             "ticket_ids": [], "contacted_at": at, "contact_date": day, "created_at": at} for i in items])
    return len(items)


def _interval(tags) -> int:
    s = get_settings()
    days = [s.cadence_inquiry_intervals[t] for t in tags or [] if t in s.cadence_inquiry_intervals]
    return min(days) if days else s.cadence_inquiry_default_interval_days


@pytest.mark.slow
def test_simulated_year(session):
    cal = get_calendar(session)
    day = date(YEAR, 1, 1)
    closed_tickets = 0
    while day.year == YEAR:
        with time_machine.travel(datetime.combine(day, datetime.min.time(), tzinfo=SHANGHAI) + timedelta(hours=9),
                                 tick=False):
            first = cadences.run_due(session)
            assert all(r.ran for r in first)
            assert cadences.run_due(session) == []  # running twice creates nothing twice
            for r in first:  # and a manual re-run of the same period does nothing either
                assert cadences.run_for_date(session, r.kind, r.run_date).ran is False
            if cal.is_working_day(day):
                _contact_all_listed(session, day)
                if day.day in (10, 11, 12) and closed_tickets < 2 * day.month:
                    f.make_ticket(session, "closed", commit=False)
                    closed_tickets += 1
        session.commit()
        day += timedelta(days=1)

    # --- daily inquiry: every enterprise contacted within its cadence, all year
    enterprises = {e.id: e for e in session.exec(select(Enterprise)).all()}
    contacts: dict[int, list[date]] = defaultdict(list)
    for ent_id, d in session.execute(sa.select(Inquiry.enterprise_id, Inquiry.contact_date)
                                     .order_by(Inquiry.contact_date)).all():
        contacts[ent_id].append(d)
    assert set(contacts) == set(enterprises), "an enterprise was never contacted"
    first_working = first_working_on_or_after(cal, date(YEAR, 1, 1))
    late = []
    for ent_id, dates in contacts.items():
        n = _interval(enterprises[ent_id].tags)
        assert dates[0] <= cal.next_working_day(first_working, 5), (ent_id, dates[0])  # the go-live backlog
        for prev, nxt in zip(dates, dates[1:], strict=False):
            if nxt > first_working_on_or_after(cal, prev + timedelta(days=n)):
                late.append((ent_id, prev, nxt, n))
        assert first_working_on_or_after(cal, dates[-1] + timedelta(days=n)) >= date(YEAR, 12, 31)
    assert late == []
    coverage = inquiries.coverage(session, Actor(user_id=None, role="admin"), date(YEAR, 12, 31))
    assert coverage.total.enterprises == len(enterprises) and coverage.total.coverage_rate == 1.0

    # --- runs: one per period, nothing twice
    def runs(kind):
        return session.exec(select(CadenceRun.period_key).where(CadenceRun.kind == kind)).all()

    working_days = [d for d in (date(YEAR, 1, 1) + timedelta(days=i) for i in range(365)) if cal.is_working_day(d)]
    assert sorted(runs("daily")) == [d.isoformat() for d in working_days]
    assert sorted(k for k in runs("monthly") if k.startswith(f"{YEAR}-")) == [f"{YEAR}-{m:02d}" for m in range(1, 13)]
    assert sorted(k for k in runs("quarterly") if k.startswith(f"{YEAR}-")) == [f"{YEAR}-Q{q}" for q in range(1, 5)]
    assert [k for k in runs("annual") if k == str(YEAR)] == [str(YEAR)]

    # --- weekly clinics: one per region and ISO week, moved to the next working day inside the week,
    # none in a week where that is impossible (holiday week)
    expected_dates = []
    monday = date(YEAR - 1, 12, 29)  # ISO week 2026-W01
    while monday.year <= YEAR:
        nominal = monday + timedelta(days=get_settings().cadence_clinic_weekday - 1)
        moved = first_working_on_or_after(cal, nominal)
        if moved < monday + timedelta(days=7) and moved.year == YEAR:
            expected_dates.append(moved)
        monday += timedelta(days=7)
    regions = session.exec(select(Region).where(Region.kind.in_(("town", "street", "park")))).all()
    for region in regions:
        got = session.exec(select(CadenceSession.session_date).where(
            CadenceSession.kind == "clinic", CadenceSession.region_id == region.id,
            CadenceSession.session_date >= date(YEAR, 1, 1), CadenceSession.session_date <= date(YEAR, 12, 31))
            .order_by(CadenceSession.session_date)).all()
        assert got == expected_dates, region.code
    assert 48 <= len(expected_dates) <= 53
    assert all(cal.is_working_day(d) for d in expected_dates)

    # --- follow-ups: 12 rounds, one follow-up per ticket closed in the previous month
    assert _count(session, FollowUp, FollowUp.period_key.like(f"{YEAR}-%")) >= closed_tickets - 2
    keys = session.exec(select(FollowUp.ticket_id, FollowUp.period_key)).all()
    assert len(keys) == len(set(keys))
    # --- 4 joint consultations with their reports; 1 return-visit round with its report
    assert _count(session, CadenceSession, CadenceSession.kind == "joint",
                  CadenceSession.period_key.like(f"{YEAR}-Q%")) == 4
    assert {r for r in session.exec(select(CadenceReport.period_key).where(
        CadenceReport.kind == "quarterly_ranking")).all()} >= {f"{YEAR - 1}-Q4", f"{YEAR}-Q1", f"{YEAR}-Q2", f"{YEAR}-Q3"}
    assert _count(session, CadenceReport, CadenceReport.kind == "annual", CadenceReport.period_key == str(YEAR - 1)) == 1
    assert _count(session, CadenceReport, CadenceReport.kind == "long_open") >= 12
    assert _count(session, ReturnVisit, ReturnVisit.year == YEAR - 1) == _count(session, ReturnVisit)


def test_catch_up_after_ten_day_outage(session):
    with time_machine.travel(datetime(YEAR, 3, 20, 9, tzinfo=SHANGHAI), tick=False):
        cadences.run_due(session)  # up to date on Friday March 20
    # down from Saturday March 21 to Wednesday April 1 (10 days + the weekend); back Thursday April 2
    with time_machine.travel(datetime(YEAR, 4, 2, 9, tzinfo=SHANGHAI), tick=False):
        results = cadences.run_due(session)
        assert [(r.kind, r.period_key) for r in results] == [
            ("weekly", f"{YEAR}-W14"),   # due Monday March 23
            ("weekly", f"{YEAR}-W15"),   # due Monday March 30
            ("monthly", f"{YEAR}-04"),   # due Wednesday April 1
            ("quarterly", f"{YEAR}-Q2"),  # due Wednesday April 1
            ("daily", f"{YEAR}-04-02"),  # today's list only: missed lists are not rebuilt
        ]
        assert all(r.ran for r in results)
        assert cadences.run_due(session) == []
        assert _count(session, CadenceSession, CadenceSession.period_key == f"{YEAR}-W14") == 11
        assert _count(session, CadenceReport, CadenceReport.kind == "quarterly_ranking",
                      CadenceReport.period_key == f"{YEAR}-Q1") == 1


def test_daily_task_waits_for_0830_and_skips_non_working_days(session):
    with time_machine.travel(datetime(YEAR, 3, 2, 8, 0, tzinfo=SHANGHAI), tick=False):
        assert [p.kind for p in cadences.due_periods(session, ("daily",))] == []
    with time_machine.travel(datetime(YEAR, 3, 2, 8, 30, tzinfo=SHANGHAI), tick=False):
        assert [p.key for p in cadences.due_periods(session, ("daily",))] == [f"{YEAR}-03-02"]
    with time_machine.travel(datetime(YEAR, 10, 3, 9, tzinfo=SHANGHAI), tick=False):  # National Day
        assert cadences.due_periods(session, ("daily",)) == []
        r = cadences.run_for_date(session, "daily", date(YEAR, 10, 3))
        assert r.ran is False and r.period_key is None


def test_periods_move_to_the_next_working_day(session):
    cal = get_calendar(session)
    monthly = {p.key: p.run_date for p in periods_between(cal, "monthly", date(YEAR, 1, 1), date(YEAR, 12, 31))}
    assert monthly[f"{YEAR}-01"] == date(YEAR, 1, 4)  # Jan 1-3 holiday; Sunday Jan 4 is a make-up day
    assert monthly[f"{YEAR}-10"] == date(YEAR, 10, 8)  # National Day holiday Oct 1-7
    assert monthly[f"{YEAR}-02"] == date(YEAR, 2, 2)  # Feb 1 is a Sunday
    quarterly = [p.run_date for p in periods_between(cal, "quarterly", date(YEAR, 1, 1), date(YEAR, 12, 31))]
    assert quarterly == [date(YEAR, 1, 4), date(YEAR, 4, 1), date(YEAR, 7, 1), date(YEAR, 10, 8)]


def test_daily_list_rotation_caps_and_carries_over(session):
    """With a cap of 10, an officer's backlog is worked in order: what is not reached today is first
    tomorrow, and nothing is listed twice once contacted."""
    first = date(YEAR, 3, 2)
    with time_machine.travel(datetime(YEAR, 3, 2, 9, tzinfo=SHANGHAI), tick=False):
        inquiries.build_daily_lists(session, first)
        officer = f.user(session, "officer1").id
        day1 = session.exec(select(InquiryListItem).where(InquiryListItem.list_date == first,
                                                          InquiryListItem.officer_id == officer)
                            .order_by(InquiryListItem.position)).all()
        assert len(day1) == get_settings().cadence_inquiry_daily_cap
        keys = [i.interval_days for i in day1]
        assert keys == sorted(keys)  # never contacted: key enterprises first
        # contact only the first 3
        for i in day1[:3]:
            session.add(Inquiry(enterprise_id=i.enterprise_id, officer_id=officer, method="phone", finding="none",
                                contacted_at=datetime(YEAR, 3, 2, 10, tzinfo=SHANGHAI), contact_date=first))
        session.flush()
    second = date(YEAR, 3, 3)
    with time_machine.travel(datetime(YEAR, 3, 3, 9, tzinfo=SHANGHAI), tick=False):
        inquiries.build_daily_lists(session, second)
        day2 = session.exec(select(InquiryListItem.enterprise_id).where(
            InquiryListItem.list_date == second, InquiryListItem.officer_id == officer)
            .order_by(InquiryListItem.position)).all()
        assert day2[:7] == [i.enterprise_id for i in day1[3:]]  # skipped yesterday → first today
        assert not set(day2) & {i.enterprise_id for i in day1[:3]}

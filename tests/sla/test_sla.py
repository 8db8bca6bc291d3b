"""SLA deadlines, reminders, escalation and auto-close (SPEC §4) on the real 2026 calendar.

Dates used (Asia/Shanghai): 2026-03-11 is a Wednesday; 2026-04-04..06 is the Qingming holiday;
2026-10-01..07 the National Day holiday (2026-10-08 is the first working day after it, and
2026-10-10, a Saturday, is a make-up working day). Working hours are 09:00-12:00 and 13:30-17:30
(7 working hours a day).

Every expected deadline below is written out by hand from the SPEC §4 counting rules, not computed
with the calendar under test.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import time_machine
from sqlmodel import Session, select

from service.calendar.service import get_calendar
from service.notifications.models import Notification
from service.sla import sweeps
from service.sla.deadlines import deadline_view
from service.tickets.models import Ticket, TicketEvent
from service.users.models import User
from tests import factories as f

CST = ZoneInfo("Asia/Shanghai")
SYSTEM_ACTIONS = ("remind", "overdue", "escalate", "auto_close")

@pytest.fixture(autouse=True)
def _only_this_tests_tickets(request):
    """Sweeps are global: tests on the rolled-back ``session`` see only their own tickets' triggers
    (see ``quiet_sweeps``); tests on their own connections are left alone."""
    if "session" in request.fixturenames:
        request.getfixturevalue("quiet_sweeps")



def cst(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, ss, tzinfo=CST)


def system_events(session: Session, ticket: Ticket) -> list[TicketEvent]:
    return [e for e in f.events(session, ticket) if e.actor_role == "system"]


def notified(session: Session, ticket: Ticket, kind: str) -> list[int]:
    return sorted(session.exec(select(Notification.user_id).where(
        Notification.ticket_id == ticket.id, Notification.kind == kind)).all())


def uid(session: Session, username: str) -> int:
    return f.user(session, username).id


def in_progress(session: Session, *, at: datetime, priority: str = "normal",
                category_code: str = "problem.labour") -> Ticket:
    """A ticket submitted, accepted, dispatched and claimed at ``at`` (+0, +5, +10, +15 min)."""
    t = f.submit(session, at=at, priority=priority, category_code=category_code)
    f.act(session, t, "accept", at=at + timedelta(minutes=5))
    f.act(session, t, "dispatch", at=at + timedelta(minutes=10))
    f.act(session, t, "claim", at=at + timedelta(minutes=15))
    return t


# =============================================================================== deadlines

def test_normal_submission_gives_accept_by_end_of_next_working_day(session):
    t = f.submit(session, at=cst(2026, 3, 11, 10))  # Wednesday 10:00
    assert t.accept_by == cst(2026, 3, 12, 17, 30)  # Thursday 17:30
    assert (t.due_step, t.due_at) == ("accept", t.accept_by)
    # triggers: the reminder one working day before (Wed 17:30 is the same working instant as
    # Thu 09:00; the trigger is the earliest instant), overdue at the deadline, level 2 five
    # working days after it
    assert t.remind_at == cst(2026, 3, 11, 17, 30)
    assert t.overdue_at == cst(2026, 3, 12, 17, 30)
    assert t.level2_at == cst(2026, 3, 19, 17, 30)
    assert t.claim_by is None and t.reply_by is None and t.feedback_by is None


@pytest.mark.parametrize(("submitted", "accept_by", "remind_at"), [
    (cst(2026, 3, 11, 10), cst(2026, 3, 11, 12), cst(2026, 3, 11, 11)),  # +2 h in the morning
    # 11:30 + 2 working hours: half an hour before lunch, one and a half after (SPEC §4)
    (cst(2026, 3, 11, 11, 30), cst(2026, 3, 11, 15), cst(2026, 3, 11, 14)),
    # 16:30 Friday: one hour on Friday, one on Monday morning
    (cst(2026, 3, 13, 16, 30), cst(2026, 3, 16, 10), cst(2026, 3, 13, 17, 30)),
    # a start outside working hours counts from the next working moment
    (cst(2026, 3, 11, 7, 45), cst(2026, 3, 11, 11), cst(2026, 3, 11, 10)),
])
def test_urgent_submission_gives_two_working_hours(session, submitted, accept_by, remind_at):
    t = f.submit(session, at=submitted, priority="urgent")
    assert t.accept_by == accept_by
    # the urgent reminder is two working hours before; with only two hours in all it falls
    # half-way (deadlines.py: a reminder at or before the clock start moves to half-way)
    assert t.remind_at == remind_at


def test_deadline_across_the_national_day_holiday(session):
    t = f.submit(session, at=cst(2026, 9, 30, 16))  # the eve of the holiday
    assert t.accept_by == cst(2026, 10, 8, 17, 30)
    u = f.submit(session, at=cst(2026, 9, 30, 17), priority="urgent")
    assert u.accept_by == cst(2026, 10, 8, 10, 30)  # 0.5 h on 9-30, 1.5 h on 10-08
    # the make-up Saturday 10-10 is a working day: claim on Friday 10-09 → due Saturday
    f.act(session, t, "accept", at=cst(2026, 10, 8, 9))
    f.act(session, t, "dispatch", at=cst(2026, 10, 9, 10))
    assert t.claim_by == cst(2026, 10, 10, 17, 30)


def test_dispatch_sets_claim_by(session):
    t = f.submit(session, at=cst(2026, 3, 11, 10))
    f.act(session, t, "accept", at=cst(2026, 3, 12, 9, 30))
    assert (t.due_step, t.due_at) == (None, None)  # accepted problem: nothing running
    assert t.remind_at is None and t.overdue_at is None and t.level2_at is None
    f.act(session, t, "dispatch", at=cst(2026, 3, 12, 10))
    assert t.claim_by == cst(2026, 3, 13, 17, 30)
    assert (t.due_step, t.due_at, t.overdue_at) == ("claim", t.claim_by, t.claim_by)
    assert t.accept_by == cst(2026, 3, 12, 17, 30)  # earlier deadlines are kept

    u = f.submit(session, at=cst(2026, 3, 12, 9), priority="urgent")
    f.act(session, u, "accept", at=cst(2026, 3, 12, 9, 10))
    f.act(session, u, "dispatch", at=cst(2026, 3, 12, 16, 30))
    assert u.claim_by == cst(2026, 3, 13, 10)  # 1 h on Thursday, 1 h on Friday


def test_claim_starts_the_fifteen_day_reply_clock_for_problems(session):
    t = f.submit(session, at=cst(2026, 3, 11, 10))
    f.act(session, t, "accept", at=cst(2026, 3, 11, 11))
    f.act(session, t, "dispatch", at=cst(2026, 3, 12, 10))
    f.act(session, t, "claim", at=cst(2026, 3, 13, 10))  # Friday
    # 15 working days after Friday 03-13: 03-16..20, 23..27, 03-30..04-03 → Friday 04-03
    assert t.reply_by == cst(2026, 4, 3, 17, 30)
    assert (t.due_step, t.due_at) == ("reply", t.reply_by)
    assert t.remind_at == cst(2026, 4, 2, 17, 30)
    # level 2: five working days after 04-03, across Qingming (04-04..06) → 04-13
    assert t.level2_at == cst(2026, 4, 13, 17, 30)
    f.act(session, t, "reply", at=cst(2026, 4, 3, 10))
    # feedback: 5 working days after Friday 04-03 → 04-07, 08, 09, 10, 13
    assert t.feedback_by == cst(2026, 4, 13, 17, 30)
    assert (t.due_step, t.due_at) == ("feedback", t.feedback_by)
    # SPEC §4: "A reminder (催办) goes out one working day ... before each deadline, the feedback
    # deadline included" → Friday 04-10 17:30; the feedback limit only closes the ticket: no
    # overdue or escalation is armed (before issue 11: no reminder either)
    assert t.remind_at == cst(2026, 4, 10, 17, 30)
    assert t.overdue_at is None and t.level2_at is None

    u = in_progress(session, at=cst(2026, 3, 11, 10), priority="urgent")
    assert u.reply_by == cst(2026, 3, 16, 17, 30)  # urgent: 3 working days from the claim


def test_consultation_first_reply_runs_from_submission(session):
    t = f.submit(session, at=cst(2026, 3, 11, 10), category_code="consultation.policy")
    assert t.accept_by == cst(2026, 3, 12, 17, 30)
    assert t.reply_by == cst(2026, 3, 16, 17, 30)  # 3 working days after Wednesday
    f.act(session, t, "accept", at=cst(2026, 3, 11, 15))
    assert (t.due_step, t.due_at) == ("first_reply", t.reply_by)
    f.act(session, t, "dispatch", at=cst(2026, 3, 12, 10))
    assert (t.due_step, t.due_at) == ("claim", cst(2026, 3, 13, 17, 30))
    f.act(session, t, "claim", at=cst(2026, 3, 13, 9))
    assert t.reply_by == cst(2026, 3, 16, 17, 30)  # the claim does not restart it
    assert (t.due_step, t.due_at) == ("first_reply", t.reply_by)

    answered = f.submit(session, at=cst(2026, 3, 11, 10), category_code="consultation.tax")
    f.act(session, answered, "answer", at=cst(2026, 3, 11, 14))
    assert answered.feedback_by == cst(2026, 3, 18, 17, 30)  # 5 working days after the answer

    urgent = f.submit(session, at=cst(2026, 3, 11, 10), category_code="consultation.tax", priority="urgent")
    assert urgent.reply_by == cst(2026, 3, 12, 17, 30)  # 1 working day


# =============================================================================== policies

def test_sub_category_policy_overrides_the_root_and_does_not_move_existing_deadlines(session, client, login):
    admin = login("admin")
    labour, tax, problem = (f.category(session, c) for c in ("problem.labour", "problem.tax", "problem"))
    r = client.put("/api/v1/sla-policies", headers=admin, json={
        "category_id": labour.id, "priority": "normal", "step": "accept", "amount": 3, "unit": "working_days"})
    assert r.status_code == 200, r.text
    r = client.put("/api/v1/sla-policies", headers=admin, json={
        "category_id": problem.id, "priority": "normal", "step": "claim", "amount": 2, "unit": "working_days"})
    assert r.status_code == 200, r.text
    policies = client.get("/api/v1/sla-policies", headers=login("supervisor1")).json()
    assert {"category_id": labour.id, "priority": "normal", "step": "accept", "amount": 3,
            "unit": "working_days"}.items() <= next(p for p in policies if p["category_id"] == labour.id).items()

    own = f.submit(session, at=cst(2026, 3, 11, 10), category_code="problem.labour")
    sibling = f.submit(session, at=cst(2026, 3, 11, 10), category_code="problem.tax")
    assert own.accept_by == cst(2026, 3, 16, 17, 30)  # its own policy: Thu, Fri, Mon
    assert sibling.accept_by == cst(2026, 3, 12, 17, 30)  # the root's (SPEC default)
    assert sibling.category_id == tax.id
    # the claim limit is inherited from the root (labour has no claim policy of its own)
    f.act(session, own, "accept", at=cst(2026, 3, 11, 11))
    f.act(session, own, "dispatch", at=cst(2026, 3, 11, 12))
    assert own.claim_by == cst(2026, 3, 13, 17, 30)

    # a later change applies to new tickets only
    r = client.put("/api/v1/sla-policies", headers=admin, json={
        "category_id": labour.id, "priority": "normal", "step": "accept", "amount": 2, "unit": "working_hours"})
    assert r.status_code == 200, r.text
    r = client.put("/api/v1/sla-policies", headers=admin, json={
        "category_id": problem.id, "priority": "normal", "step": "claim", "amount": 5, "unit": "working_days"})
    assert r.status_code == 200, r.text
    f.reload(session, own)
    assert own.accept_by == cst(2026, 3, 16, 17, 30)
    assert own.claim_by == cst(2026, 3, 13, 17, 30) == own.due_at
    newer = f.submit(session, at=cst(2026, 3, 11, 10), category_code="problem.labour")
    assert newer.accept_by == cst(2026, 3, 11, 12)

    # validation: first_reply only for consultations, reply not for them; only admins write
    bad = client.put("/api/v1/sla-policies", headers=admin, json={
        "category_id": labour.id, "priority": "normal", "step": "first_reply", "amount": 2, "unit": "working_days"})
    assert bad.status_code == 422
    denied = client.put("/api/v1/sla-policies", headers=login("supervisor1"), json={
        "category_id": labour.id, "priority": "normal", "step": "accept", "amount": 2, "unit": "working_days"})
    assert denied.status_code == 403


# =============================================================================== hold and resume

def test_hold_and_resume_shift_reply_by_by_the_working_time_on_hold(session):
    t = in_progress(session, at=cst(2026, 3, 16, 9, 45))  # claimed Monday 10:00
    assert t.reply_by == cst(2026, 4, 7, 17, 30)  # 15 working days (Qingming skipped)
    f.act(session, t, "hold", at=cst(2026, 3, 17, 10))  # Tuesday 10:00
    assert t.status == "on_hold" and t.held_at == cst(2026, 3, 17, 10)
    assert (t.due_step, t.due_at, t.remind_at, t.overdue_at, t.level2_at) == (None,) * 5
    f.act(session, t, "resume", at=cst(2026, 3, 18, 11))  # Wednesday 11:00
    # on hold: Tue 10-12 (2 h) + 13:30-17:30 (4 h) + Wed 9-11 (2 h) = 8 working hours;
    # 04-07 17:30 + 8 h = 04-08 (7 h) + 1 h → Thursday 04-09 10:00
    assert t.hold_seconds == 8 * 3600 and t.held_at is None
    assert t.reply_by == cst(2026, 4, 9, 10)
    assert (t.due_step, t.due_at, t.overdue_at) == ("reply", t.reply_by, t.reply_by)
    assert t.remind_at == cst(2026, 4, 8, 10)  # one working day (7 h) before

    # a hold over a weekend counts only the working hours: Fri 17:00 → Mon 09:30 = 1 h
    f.act(session, t, "hold", at=cst(2026, 3, 20, 17))
    f.act(session, t, "resume", at=cst(2026, 3, 23, 9, 30))
    assert t.hold_seconds == 9 * 3600
    assert t.reply_by == cst(2026, 4, 9, 11)

    # a hold outside working hours does not move it at all
    f.act(session, t, "hold", at=cst(2026, 3, 23, 18))
    f.act(session, t, "resume", at=cst(2026, 3, 24, 8, 30))
    assert t.hold_seconds == 9 * 3600 and t.reply_by == cst(2026, 4, 9, 11)


def test_hold_pauses_the_sweeps(session):
    t = in_progress(session, at=cst(2026, 3, 11, 9, 45), priority="urgent")  # claimed Wed 10:00
    assert t.reply_by == cst(2026, 3, 16, 17, 30)
    f.act(session, t, "hold", at=cst(2026, 3, 12, 10))
    session.commit()
    # nothing fires while on hold, however late it gets
    assert sweeps.scan(session, cst(2026, 3, 31, 12)) == sweeps.SweepResult()
    f.act(session, f.reload(session, t), "resume", at=cst(2026, 3, 31, 12))
    assert t.reply_by > cst(2026, 3, 31, 12)
    assert system_events(session, t) == []


# =============================================================================== extensions

def _ext(client, login, number: str, action: str, body: dict | None = None, who: str | None = None):
    who = who or ("dept_rsj" if action == "request_extension" else "supervisor1")
    return client.post(f"/api/v1/tickets/{number}/{action}", headers=login(who), json=body or {})


def test_extension_rules_through_the_api(session, client, login):
    start = cst(2026, 3, 16, 9, 45)
    t = in_progress(session, at=start)  # problem.labour → RSJ; claimed Monday 10:00
    session.commit()
    original = cst(2026, 4, 7, 17, 30)
    assert t.reply_by == original
    n = t.number
    with time_machine.travel(cst(2026, 3, 20, 10), tick=False) as tm:
        # bad bodies: days 1-15, a reason
        for days in (0, 16):
            r = _ext(client, login, n, "request_extension", {"reason": "会商", "days": days})
            assert r.status_code == 422, r.text
        assert _ext(client, login, n, "request_extension", {"days": 5}).status_code == 422
        # only the lead department asks, only a supervisor decides
        assert _ext(client, login, n, "request_extension", {"reason": "会商", "days": 5},
                    who="dept_swj").status_code == 404  # another department does not even see it
        assert _ext(client, login, n, "approve_extension").status_code == 409  # nothing pending
        r = _ext(client, login, n, "request_extension", {"reason": "需跨部门会商", "days": 5})
        assert r.status_code == 200, r.text
        assert datetime.fromisoformat(r.json()["reply_by"]) == original
        assert r.json()["extension_count"] == 0
        # one pending at a time
        assert _ext(client, login, n, "request_extension", {"reason": "再延", "days": 3}).status_code == 409
        assert _ext(client, login, n, "approve_extension", who="dept_rsj").status_code == 403
        # deny: nothing moves
        r = _ext(client, login, n, "deny_extension", {"note": "理由不充分"})
        assert r.status_code == 200, r.text
        assert datetime.fromisoformat(r.json()["reply_by"]) == original
        assert r.json()["extension_count"] == 0
        # approve: +5 working days (04-08, 09, 10, 13, 14)
        tm.move_to(cst(2026, 3, 23, 10))
        assert _ext(client, login, n, "request_extension", {"reason": "需跨部门会商", "days": 5}).status_code == 200
        r = _ext(client, login, n, "approve_extension", {"note": "同意"})
        assert r.status_code == 200, r.text
        first = cst(2026, 4, 14, 17, 30)
        assert datetime.fromisoformat(r.json()["reply_by"]) == first
        assert datetime.fromisoformat(r.json()["due_at"]) == first
        assert r.json()["extension_count"] == 1
        # a second one of 15 days: 04-15..17 (3), 20..24 (8), 27..30 (12), May Day 05-01..05,
        # then 05-06, 07, 08 → the 15th working day is Friday 05-08
        assert _ext(client, login, n, "request_extension", {"reason": "等待省厅批复", "days": 15}).status_code == 200
        r = _ext(client, login, n, "approve_extension")
        assert r.status_code == 200, r.text
        second = cst(2026, 5, 8, 17, 30)
        assert datetime.fromisoformat(r.json()["reply_by"]) == second
        # at most two approved
        r = _ext(client, login, n, "request_extension", {"reason": "第三次", "days": 1})
        assert r.status_code == 409, r.text

    # only before the deadline
    late = in_progress(session, at=cst(2026, 3, 16, 9, 45))
    session.commit()
    with time_machine.travel(cst(2026, 4, 7, 17, 30), tick=False):
        r = _ext(client, login, late.number, "request_extension", {"reason": "来不及了", "days": 3})
        assert r.status_code == 409, r.text
        assert "期限" in r.json()["detail"]
    with time_machine.travel(cst(2026, 4, 7, 17, 29), tick=False):
        r = _ext(client, login, late.number, "request_extension", {"reason": "来得及", "days": 3})
        assert r.status_code == 200, r.text

    f.reload(session, t)
    evs = [(e.action, e.payload.get("days"), e.payload.get("approved")) for e in f.events(session, t)
           if "extension" in e.action]
    assert evs == [("request_extension", 5, None), ("deny_extension", 5, False),
                   ("request_extension", 5, None), ("approve_extension", 5, True),
                   ("request_extension", 15, None), ("approve_extension", 15, True)]


def test_approved_extension_rearms_the_sweeps(session):
    t = in_progress(session, at=cst(2026, 3, 16, 9, 45))
    f.act(session, t, "request_extension", {"reason": "会商", "days": 2}, at=cst(2026, 4, 3, 10))
    f.act(session, t, "approve_extension", {}, at=cst(2026, 4, 3, 11))
    assert t.reply_by == cst(2026, 4, 9, 17, 30)  # 04-07 + 2 working days
    assert (t.due_at, t.overdue_at, t.remind_at) == (t.reply_by, t.reply_by, cst(2026, 4, 8, 17, 30))
    session.commit()
    assert sweeps.scan(session, cst(2026, 4, 7, 17, 30)).overdue == 0  # the old deadline is gone
    assert sweeps.scan(session, cst(2026, 4, 9, 17, 30)) == sweeps.SweepResult(reminded=1, overdue=1)


# =============================================================================== read model

def test_read_model_shows_deadlines_hours_left_and_overdue(session, client, login):
    with time_machine.travel(cst(2026, 3, 11, 10), tick=False) as tm:
        r = client.post("/api/v1/tickets", headers=login("ent1"), json={
            "title": "用工缺口", "description": "普工缺口约50人，希望协助招聘。", "category_code": "problem.labour"})
        assert r.status_code == 201, r.text
        n = r.json()["number"]
        body = r.json()
        assert datetime.fromisoformat(body["accept_by"]) == cst(2026, 3, 12, 17, 30)
        assert body["due_step"] == "accept" and body["working_hours_left"] == 13.0  # 6 h + 7 h
        assert body["overdue"] is False

        tm.move_to(cst(2026, 3, 12, 16))
        body = client.get(f"/api/v1/tickets/{n}", headers=login("supervisor1")).json()
        assert body["working_hours_left"] == 1.5 and body["overdue"] is False

        tm.move_to(cst(2026, 3, 13, 10))  # Friday 10:00: one working hour late
        body = client.get(f"/api/v1/tickets/{n}", headers=login("supervisor1")).json()
        assert body["working_hours_left"] == -1.0 and body["overdue"] is True
        assert body["claim_by"] is None and body["reply_by"] is None and body["feedback_by"] is None

        ticket = session.exec(select(Ticket).where(Ticket.number == n)).one()
        officer = login(f.officer_for(session, ticket).username)
        for action, body_ in (("accept", {}), ("dispatch", {})):
            r = client.post(f"/api/v1/tickets/{n}/{action}", headers=officer, json=body_)
            assert r.status_code == 200, r.text
        body = r.json()
        assert datetime.fromisoformat(body["accept_by"]) == cst(2026, 3, 12, 17, 30)  # kept
        assert datetime.fromisoformat(body["claim_by"]) == cst(2026, 3, 16, 17, 30)
        assert body["due_step"] == "claim" and body["overdue"] is False
        assert body["working_hours_left"] == 13.0  # Fri 10:00-17:30 (2 h + 4 h) + Monday (7 h)

        r = client.post(f"/api/v1/tickets/{n}/claim", headers=login("dept_rsj"), json={})
        assert r.status_code == 200, r.text
        assert datetime.fromisoformat(r.json()["reply_by"]) == cst(2026, 4, 3, 17, 30)
        r = client.post(f"/api/v1/tickets/{n}/hold", headers=login("dept_rsj"), json={"reason": "等材料"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["due_step"] is None and body["working_hours_left"] is None and body["overdue"] is False
        assert datetime.fromisoformat(body["on_hold_since"]) == cst(2026, 3, 13, 10)
        tm.move_to(cst(2026, 3, 16, 10))
        r = client.post(f"/api/v1/tickets/{n}/resume", headers=login("dept_rsj"), json={})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["hold_working_hours"] == 7.0 and body["due_step"] == "reply"
        # claimed Friday 03-13 10:00 → 04-03 17:30; on hold Fri 10:00-17:30 (6 h) + Mon 9-10 (1 h)
        # → one working day after 04-03 17:30, the next working day being 04-07 (Qingming)
        assert datetime.fromisoformat(body["reply_by"]) == cst(2026, 4, 7, 17, 30)
        assert datetime.fromisoformat(body["due_at"]) == cst(2026, 4, 7, 17, 30)


# =============================================================================== sweeps

def test_reminder_fires_once_at_remind_at(session):
    t = f.submit(session, at=cst(2026, 3, 11, 10))
    session.commit()
    assert sweeps.send_reminders(session, cst(2026, 3, 11, 17, 29, 59)) == 0
    assert sweeps.send_reminders(session, cst(2026, 3, 11, 17, 30)) == 1
    assert sweeps.send_reminders(session, cst(2026, 3, 11, 17, 30)) == 0
    assert sweeps.send_reminders(session, cst(2026, 3, 12, 17, 0)) == 0
    f.reload(session, t)
    assert t.remind_at is None and t.remind_count == 1 and t.escalation_level == 0
    [ev] = system_events(session, t)
    assert (ev.action, ev.actor_role, ev.actor_id, ev.from_status, ev.to_status) == (
        "remind", "system", None, "submitted", "submitted")
    assert ev.created_at == cst(2026, 3, 11, 17, 30)
    assert ev.payload["step"] == "accept"
    assert datetime.fromisoformat(ev.payload["due_at"]) == cst(2026, 3, 12, 17, 30)
    # the accept step has no department yet: the responsible officer is reminded
    assert t.officer_id is not None
    assert notified(session, t, "reminded") == [t.officer_id]


def test_overdue_once_at_the_deadline_then_level_two_five_working_days_later(session):
    t = f.submit(session, at=cst(2026, 3, 11, 10))
    session.commit()
    assert sweeps.mark_overdue(session, cst(2026, 3, 12, 17, 29, 59)) == (0, 0)
    assert sweeps.mark_overdue(session, cst(2026, 3, 12, 17, 30)) == (1, 0)
    assert sweeps.mark_overdue(session, cst(2026, 3, 12, 17, 30)) == (0, 0)
    assert sweeps.mark_overdue(session, cst(2026, 3, 19, 17, 29, 59)) == (0, 0)
    f.reload(session, t)
    assert (t.escalation_level, t.overdue_count, t.overdue_at) == (1, 1, None)
    [ev] = system_events(session, t)
    assert (ev.action, ev.payload["level"], ev.payload["step"]) == ("overdue", 1, "accept")
    supervisors = sorted(session.exec(select(User.id).where(User.role == "supervisor",
                                                             User.region_id.is_(None), User.is_active)).all())
    assert supervisors
    assert notified(session, t, "overdue") == sorted({t.officer_id, *supervisors})

    assert sweeps.mark_overdue(session, cst(2026, 3, 19, 17, 30)) == (0, 1)
    assert sweeps.mark_overdue(session, cst(2026, 3, 30, 12)) == (0, 0)
    f.reload(session, t)
    assert (t.escalation_level, t.level2_at) == (2, None)
    evs = system_events(session, t)
    assert [e.action for e in evs] == ["overdue", "escalate"]
    assert evs[1].payload["level"] == 2 and evs[1].created_at == cst(2026, 3, 19, 17, 30)
    assert notified(session, t, "escalated") == sorted({t.officer_id, *supervisors})
    assert sweeps.mark_overdue(session, cst(2026, 12, 31, 17, 30)) == (0, 0)


def test_level_two_once_per_deadline_even_when_already_at_level_two(session):
    """Each deadline missed by five working days escalates to level 2 once, also on a ticket
    already at level 2 for an earlier deadline; a level 2 by hand disarms the running deadline's."""
    t = f.submit(session, at=cst(2026, 3, 11, 10))
    session.commit()
    assert sweeps.scan(session, cst(2026, 3, 19, 17, 30)) == sweeps.SweepResult(reminded=1, overdue=1, escalated=1)
    t = f.reload(session, t)
    f.act(session, t, "accept", at=cst(2026, 3, 20, 9))
    f.act(session, t, "dispatch", at=cst(2026, 3, 20, 9, 5))  # claim by Monday 03-23 17:30
    session.commit()
    assert sweeps.scan(session, cst(2026, 3, 23, 17, 30)) == sweeps.SweepResult(reminded=1, overdue=1)
    assert sweeps.scan(session, cst(2026, 3, 30, 17, 30)) == sweeps.SweepResult(escalated=1)
    t = f.reload(session, t)
    assert t.escalation_level == 2 and t.overdue_count == 2
    escalations = [(e.payload["step"], e.payload["level"]) for e in system_events(session, t) if e.action == "escalate"]
    assert escalations == [("accept", 2), ("claim", 2)]

    # a supervisor escalates to level 2 by hand: no automatic level 2 for that deadline
    u = f.submit(session, at=cst(2026, 3, 11, 10))
    session.commit()
    assert sweeps.scan(session, cst(2026, 3, 12, 17, 30)).overdue == 1
    u = f.reload(session, u)
    f.act(session, u, "escalate", {"reason": "县领导督办", "level": 2}, at=cst(2026, 3, 13, 10))
    assert u.level2_at is None
    session.commit()
    assert sweeps.scan(session, cst(2026, 3, 19, 17, 30)) == sweeps.SweepResult()
    assert [e.action for e in f.events(session, u) if e.action == "escalate"] == ["escalate"]


def test_a_deadline_running_again_does_not_fire_twice(session):
    """A hold that spends no working time leaves the reply deadline where it was: its reminder and
    overdue, already sent, are not sent again when it resumes."""
    t = in_progress(session, at=cst(2026, 3, 11, 9, 45), priority="urgent")  # reply by Mon 03-16 17:30
    session.commit()
    assert sweeps.scan(session, cst(2026, 3, 16, 17, 30)) == sweeps.SweepResult(reminded=1, overdue=1)
    t = f.reload(session, t)
    f.act(session, t, "hold", at=cst(2026, 3, 16, 18))
    f.act(session, t, "resume", at=cst(2026, 3, 17, 8, 30))
    assert t.reply_by == cst(2026, 3, 16, 17, 30) and t.hold_seconds == 0
    assert (t.remind_at, t.overdue_at) == (None, None)
    assert t.level2_at == cst(2026, 3, 23, 17, 30)  # not fired yet: still armed
    session.commit()
    assert sweeps.scan(session, cst(2026, 3, 17, 9)) == sweeps.SweepResult()
    assert sweeps.scan(session, cst(2026, 3, 23, 17, 30)) == sweeps.SweepResult(escalated=1)

    # a consultation's first reply runs while accepted, then again after the claim step:
    # one overdue for it in all
    c = f.submit(session, at=cst(2026, 3, 11, 10), category_code="consultation.policy")  # first reply by 03-16
    f.act(session, c, "accept", at=cst(2026, 3, 11, 11))
    session.commit()
    assert sweeps.scan(session, cst(2026, 3, 16, 17, 30)) == sweeps.SweepResult(reminded=1, overdue=1)
    c = f.reload(session, c)
    f.act(session, c, "dispatch", at=cst(2026, 3, 17, 9))
    f.act(session, c, "claim", at=cst(2026, 3, 17, 10))
    assert (c.due_step, c.due_at, c.remind_at, c.overdue_at) == ("first_reply", cst(2026, 3, 16, 17, 30), None, None)
    session.commit()
    assert sweeps.scan(session, cst(2026, 3, 17, 11)) == sweeps.SweepResult()
    assert [(e.action, e.payload["step"]) for e in system_events(session, c)] == [
        ("remind", "first_reply"), ("overdue", "first_reply")]


def test_overdue_reply_notifies_the_lead_department(session):
    t = in_progress(session, at=cst(2026, 3, 16, 9, 45))
    session.commit()
    assert sweeps.scan(session, cst(2026, 4, 7, 17, 30)) == sweeps.SweepResult(reminded=1, overdue=1)
    handler = uid(session, "dept_rsj")
    assert notified(session, t, "reminded") == [handler]
    assert handler in notified(session, t, "overdue")
    assert [(e.action, e.payload["step"]) for e in system_events(session, t)] == [
        ("remind", "reply"), ("overdue", "reply")]


def test_done_in_time_gets_no_events(session):
    t = f.submit(session, at=cst(2026, 3, 11, 10))
    f.act(session, t, "accept", at=cst(2026, 3, 11, 15))  # before its reminder (Wed 17:30)
    f.act(session, t, "dispatch", at=cst(2026, 3, 11, 16))
    f.act(session, t, "claim", at=cst(2026, 3, 12, 9, 30))
    f.act(session, t, "reply", at=cst(2026, 3, 20, 10))
    f.act(session, t, "confirm", at=cst(2026, 3, 23, 10))
    session.commit()
    day = cst(2026, 3, 11, 9)
    while day < cst(2026, 5, 1):
        assert sweeps.scan(session, day) == sweeps.SweepResult()
        day += timedelta(hours=3)
    assert system_events(session, t) == []


def test_auto_close_after_the_feedback_limit(session):
    t = in_progress(session, at=cst(2026, 3, 11, 9, 45))
    f.act(session, t, "reply", at=cst(2026, 3, 12, 10))
    assert t.feedback_by == cst(2026, 3, 19, 17, 30)
    session.commit()
    # SPEC §4: the feedback deadline gets its reminder one working day before (updated in issue
    # 11: there was none), to the enterprise, which must give the feedback
    assert sweeps.scan(session, cst(2026, 3, 18, 17, 29, 59)) == sweeps.SweepResult()
    assert sweeps.scan(session, cst(2026, 3, 18, 17, 30)) == sweeps.SweepResult(reminded=1)
    assert sweeps.scan(session, cst(2026, 3, 19, 17, 29, 59)) == sweeps.SweepResult()
    assert sweeps.scan(session, cst(2026, 3, 19, 18)) == sweeps.SweepResult(closed=1)
    assert sweeps.scan(session, cst(2026, 3, 19, 18)) == sweeps.SweepResult()
    assert sweeps.scan(session, cst(2026, 6, 1)) == sweeps.SweepResult()
    f.reload(session, t)
    assert (t.status, t.rating, t.closed_at) == ("closed", "none", cst(2026, 3, 19, 17, 30))
    assert (t.due_step, t.due_at, t.remind_at, t.overdue_at, t.level2_at) == (None,) * 5
    remind, ev = system_events(session, t)
    assert (remind.action, remind.payload["step"]) == ("remind", "feedback")
    assert (ev.action, ev.from_status, ev.to_status, ev.visibility) == ("auto_close", "replied", "closed", "public")
    assert ev.payload["rating"] == "none"
    ent_users = session.exec(select(User.id).where(User.enterprise_id == t.enterprise_id)).all()
    assert set(ent_users) <= set(notified(session, t, "closed"))
    # a confirmed ticket is never auto-closed
    u = in_progress(session, at=cst(2026, 3, 11, 9, 45))
    f.act(session, u, "reply", at=cst(2026, 3, 12, 10))
    f.act(session, u, "confirm", at=cst(2026, 3, 13, 10))
    session.commit()
    assert sweeps.scan(session, cst(2026, 3, 20)) == sweeps.SweepResult()
    assert f.reload(session, u).rating == "satisfied"


def test_sweeps_read_the_clock_when_no_instant_is_given(session):
    t = f.submit(session, at=cst(2026, 3, 11, 10))
    session.commit()
    with time_machine.travel(cst(2026, 3, 12, 17, 30), tick=False):
        assert sweeps.scan(session) == sweeps.SweepResult(reminded=1, overdue=1)
    assert [e.created_at for e in system_events(session, t)] == [cst(2026, 3, 12, 17, 30)] * 2


# =============================================================================== SPEC §4 rules (issue 11)

def test_level_two_at_the_end_of_the_fifth_working_day_after_a_mid_day_deadline(session):
    """SPEC §4: level 2 "at the end of the 5th working day after the deadline's day (17:30, by the
    "N working days" rule)", not 5 × 7 working hours after a mid-day deadline."""
    t = f.submit(session, at=cst(2026, 3, 11, 10), priority="urgent")  # Wednesday 10:00
    assert t.accept_by == cst(2026, 3, 11, 12)  # two working hours: Wednesday 12:00
    # the 5th working day after Wednesday 03-11: 12, 13, 16, 17, 18 → Wednesday 03-18 17:30
    assert t.level2_at == cst(2026, 3, 18, 17, 30)
    session.commit()
    assert sweeps.mark_overdue(session, cst(2026, 3, 11, 12)) == (1, 0)
    assert sweeps.mark_overdue(session, cst(2026, 3, 18, 12)) == (0, 0)  # 35 working hours: not yet
    assert sweeps.mark_overdue(session, cst(2026, 3, 18, 17, 29, 59)) == (0, 0)
    assert sweeps.mark_overdue(session, cst(2026, 3, 18, 17, 30)) == (0, 1)
    [_, level2] = system_events(session, t)
    assert (level2.action, level2.payload["level"], level2.created_at) == ("escalate", 2, cst(2026, 3, 18, 17, 30))

    # across the National Day holiday and its make-up Saturday: an urgent ticket of 09-30 17:00
    # is due 10-08 10:30; 5 working days after 10-08: 10-09, 10-10 (Sat, make-up), 12, 13, 14
    u = f.submit(session, at=cst(2026, 9, 30, 17), priority="urgent")
    assert u.accept_by == cst(2026, 10, 8, 10, 30)
    assert u.level2_at == cst(2026, 10, 14, 17, 30)
    # a deadline at 17:30 is unchanged by the rule: 5 working days after its own day
    v = in_progress(session, at=cst(2026, 3, 11, 9, 45), priority="urgent")  # reply by Mon 03-16 17:30
    assert v.level2_at == cst(2026, 3, 23, 17, 30)


def test_a_reminder_before_the_feedback_deadline_goes_to_the_enterprise(session):
    """SPEC §4: a reminder one working day (urgent: two working hours) before each deadline, the
    feedback deadline included. The enterprise's users get it (they must give the feedback); the
    department does not. The feedback deadline itself closes the ticket: no overdue, no level 2."""
    t = in_progress(session, at=cst(2026, 3, 11, 9, 45))
    f.act(session, t, "reply", at=cst(2026, 3, 12, 10))  # Thursday
    assert t.feedback_by == cst(2026, 3, 19, 17, 30)  # 5 working days after Thursday
    assert (t.remind_at, t.overdue_at, t.level2_at) == (cst(2026, 3, 18, 17, 30), None, None)
    urgent = in_progress(session, at=cst(2026, 3, 11, 9, 45), priority="urgent")
    f.act(session, urgent, "reply", at=cst(2026, 3, 12, 10))
    assert urgent.feedback_by == cst(2026, 3, 19, 17, 30)
    assert urgent.remind_at == cst(2026, 3, 19, 15, 30)  # two working hours before
    # a consultation answered directly has the same feedback step
    answered = f.submit(session, at=cst(2026, 3, 11, 10), category_code="consultation.tax")
    f.act(session, answered, "answer", at=cst(2026, 3, 11, 14))
    assert (answered.feedback_by, answered.remind_at) == (cst(2026, 3, 18, 17, 30), cst(2026, 3, 17, 17, 30))
    # given in time, before the reminder: nothing is armed any more
    early = in_progress(session, at=cst(2026, 3, 11, 9, 45))
    f.act(session, early, "reply", at=cst(2026, 3, 12, 10))
    f.act(session, early, "confirm", at=cst(2026, 3, 13, 10))
    assert early.remind_at is None
    session.commit()

    assert sweeps.scan(session, cst(2026, 3, 17, 17, 30)) == sweeps.SweepResult(reminded=1)  # answered
    # t reminded, answered closed
    assert sweeps.scan(session, cst(2026, 3, 18, 17, 30)) == sweeps.SweepResult(reminded=1, closed=1)
    assert sweeps.scan(session, cst(2026, 3, 19, 15, 30)) == sweeps.SweepResult(reminded=1)  # urgent
    assert sweeps.scan(session, cst(2026, 3, 19, 17, 30)) == sweeps.SweepResult(closed=2)
    assert sweeps.scan(session, cst(2026, 4, 30, 17, 30)) == sweeps.SweepResult()  # no overdue, no level 2
    enterprise_users = sorted(session.exec(select(User.id).where(
        User.enterprise_id == t.enterprise_id, User.role == "enterprise", User.is_active)).all())
    assert enterprise_users
    for ticket in (t, urgent, answered):
        f.reload(session, ticket)
        assert notified(session, ticket, "reminded") == enterprise_users
        assert [(e.action, e.payload.get("step")) for e in system_events(session, ticket)] == [
            ("remind", "feedback"), ("auto_close", None)]
        assert (ticket.remind_count, ticket.overdue_count, ticket.escalation_level) == (1, 0, 0)
    assert uid(session, "dept_rsj") not in notified(session, t, "reminded")
    title = session.exec(select(Notification.title).where(Notification.ticket_id == t.id,
                                                          Notification.kind == "reminded")).first()
    assert title.startswith("请评价办理结果：" + t.number)
    assert system_events(session, early) == []


def test_feedback_reminder_of_an_enterprise_without_users_goes_to_its_officer(session):
    """A ticket raised on behalf of an enterprise that has no active user: the officer, who can
    confirm by a callback, is reminded of the feedback deadline instead."""
    t = in_progress(session, at=cst(2026, 3, 11, 9, 45))
    f.act(session, t, "reply", at=cst(2026, 3, 12, 10))
    session.execute(sa.update(User).where(User.enterprise_id == t.enterprise_id).values(is_active=False))
    session.commit()
    assert sweeps.send_reminders(session, cst(2026, 3, 18, 17, 30)) == 1
    assert t.officer_id is not None
    assert notified(session, t, "reminded") == [t.officer_id]


def test_a_reminder_by_hand_during_the_feedback_step_tells_whom_the_sweep_tells(session):
    """The feedback reminder's recipients and title are declared once, in the fan-out
    (``fanout.STEP_RECIPIENTS``, by the ticket's running step): an officer's 催办 of a replied
    ticket goes to the enterprise's users as 请评价办理结果, like the sweep's; during another step
    a reminder goes to the lead department as 催办提醒."""
    from service.notifications import fanout

    t = in_progress(session, at=cst(2026, 3, 11, 9, 45))
    f.act(session, t, "remind", at=cst(2026, 3, 11, 11))
    handlers = sorted(session.exec(select(User.id).where(
        User.department_id == t.lead_department_id, User.role == "department", User.is_active)).all())
    assert handlers and notified(session, t, "reminded") == handlers
    f.act(session, t, "reply", at=cst(2026, 3, 12, 10))
    before = set(notified(session, t, "reminded"))
    f.act(session, t, "remind", at=cst(2026, 3, 13, 10))
    enterprise_users = sorted(session.exec(select(User.id).where(
        User.enterprise_id == t.enterprise_id, User.role == "enterprise", User.is_active)).all())
    rows = session.exec(select(Notification).where(Notification.ticket_id == t.id, Notification.kind == "reminded",
                                                   Notification.created_at == cst(2026, 3, 13, 10))).all()
    assert enterprise_users and sorted(n.user_id for n in rows) == enterprise_users
    assert all(n.title.startswith("请评价办理结果：" + t.number) for n in rows)
    assert not set(handlers) & {n.user_id for n in rows} and before
    assert fanout.recipients(session, t, "reminded") == enterprise_users


def test_the_deadline_instant_itself_is_overdue_in_the_read_model_and_the_sweep(session, client, login):
    """SPEC §4: "At the deadline (the instant itself included) the ticket is overdue": the read
    model and the sweep agree at the instant, one second before it neither says so."""
    t = f.submit(session, at=cst(2026, 3, 11, 10))
    session.commit()
    due = cst(2026, 3, 12, 17, 30)
    assert t.accept_by == due
    with time_machine.travel(due - timedelta(seconds=1), tick=False) as tm:
        body = client.get(f"/api/v1/tickets/{t.number}", headers=login("supervisor1")).json()
        assert body["overdue"] is False and body["working_hours_left"] == 0.0
        assert sweeps.mark_overdue(session, due - timedelta(seconds=1)) == (0, 0)
        tm.move_to(due)
        body = client.get(f"/api/v1/tickets/{t.number}", headers=login("supervisor1")).json()
        assert body["overdue"] is True and body["working_hours_left"] == 0.0
        assert sweeps.mark_overdue(session, due) == (1, 0)
    # the feedback deadline is never "overdue": its expiry closes the ticket
    u = in_progress(session, at=cst(2026, 3, 11, 9, 45))
    f.act(session, u, "reply", at=cst(2026, 3, 12, 10))
    view = deadline_view(get_calendar(session), u, u.feedback_by)
    assert (view["due_step"], view["overdue"]) == ("feedback", False)


def test_one_overdue_per_deadline_however_often_held_and_resumed(session):
    """SPEC §4: "one overdue event per deadline, however often it is held, resumed or swept". An
    overdue reply deadline, held and resumed while its shifted instant is still past, is not
    overdue again; nor when a long hold moved it into the future and it passes once more. Its
    level 2 comes once, five working days after the deadline's (shifted) day."""
    t = in_progress(session, at=cst(2026, 3, 11, 9, 45), priority="urgent")  # reply by Mon 03-16 17:30
    session.commit()
    assert sweeps.scan(session, cst(2026, 3, 16, 17, 30)) == sweeps.SweepResult(reminded=1, overdue=1)
    t = f.reload(session, t)
    # held Tuesday 10:00-11:00: one working hour → the deadline moves to Tuesday 09:00 + 1 h,
    # still past when it resumes
    f.act(session, t, "hold", at=cst(2026, 3, 17, 10))
    f.act(session, t, "resume", at=cst(2026, 3, 17, 11))
    assert t.reply_by == cst(2026, 3, 17, 10)
    assert (t.due_at, t.remind_at, t.overdue_at) == (cst(2026, 3, 17, 10), None, None)
    assert t.level2_at == cst(2026, 3, 24, 17, 30)  # 5 working days after Tuesday 03-17
    session.commit()
    assert sweeps.scan(session, cst(2026, 3, 17, 11)) == sweeps.SweepResult()
    # again and again, swept in between
    for day in (18, 19):
        t = f.reload(session, t)
        f.act(session, t, "hold", at=cst(2026, 3, day, 9, 30))
        session.commit()
        assert sweeps.scan(session, cst(2026, 3, day, 10)) == sweeps.SweepResult()
        f.act(session, f.reload(session, t), "resume", at=cst(2026, 3, day, 10))
        session.commit()
        assert sweeps.scan(session, cst(2026, 3, day, 10)) == sweeps.SweepResult()
    t = f.reload(session, t)
    assert t.reply_by == cst(2026, 3, 17, 11) and t.overdue_at is None
    assert t.level2_at == cst(2026, 3, 24, 17, 30)
    assert sweeps.scan(session, cst(2026, 3, 24, 17, 30)) == sweeps.SweepResult(escalated=1)
    assert [(e.action, e.payload["step"]) for e in system_events(session, t)] == [
        ("remind", "reply"), ("overdue", "reply"), ("escalate", "reply")]
    assert f.reload(session, t).overdue_count == 1

    # (a hold pauses the clock, so an overdue deadline stays past after any resume.) Held before
    # the deadline, after its reminder: the deadline moves to a new instant, which gets its own
    # reminder (half-way through the time left, less than two working hours) and its overdue;
    # held again once overdue: nothing more but the level 2
    u = in_progress(session, at=cst(2026, 3, 11, 9, 45), priority="urgent")  # reply by 03-16 17:30
    session.commit()
    assert sweeps.scan(session, cst(2026, 3, 16, 15, 30)) == sweeps.SweepResult(reminded=1)
    u = f.reload(session, u)
    f.act(session, u, "hold", at=cst(2026, 3, 16, 16, 30))
    f.act(session, u, "resume", at=cst(2026, 3, 17, 10, 30))  # 1 h + 1.5 h on hold
    assert u.reply_by == cst(2026, 3, 17, 11, 30)
    assert (u.remind_at, u.overdue_at, u.level2_at) == (
        cst(2026, 3, 17, 11), cst(2026, 3, 17, 11, 30), cst(2026, 3, 24, 17, 30))
    session.commit()
    assert sweeps.scan(session, cst(2026, 3, 17, 11, 30)) == sweeps.SweepResult(reminded=1, overdue=1)
    u = f.reload(session, u)
    f.act(session, u, "hold", at=cst(2026, 3, 17, 14))
    f.act(session, u, "resume", at=cst(2026, 3, 17, 15))
    assert u.reply_by == cst(2026, 3, 17, 14)  # 11:30 + 1 working hour (lunch skipped), still past
    assert (u.remind_at, u.overdue_at, u.level2_at) == (None, None, cst(2026, 3, 24, 17, 30))
    session.commit()
    assert sweeps.scan(session, cst(2026, 3, 17, 15)) == sweeps.SweepResult()
    assert sweeps.scan(session, cst(2026, 3, 24, 17, 30)) == sweeps.SweepResult(escalated=1)
    assert [(e.action, e.payload["step"]) for e in system_events(session, u)] == [
        ("remind", "reply"), ("remind", "reply"), ("overdue", "reply"), ("escalate", "reply")]
    assert f.reload(session, u).overdue_count == 1


def test_an_extension_approved_after_the_deadline_is_a_new_deadline(session):
    """An approved extension is a new date agreed by a supervisor (docs/decisions.md): missing it
    is a new overdue, unlike a hold, which only moves the same deadline."""
    t = in_progress(session, at=cst(2026, 3, 16, 9, 45))  # reply by 04-07 17:30
    f.act(session, t, "request_extension", {"reason": "会商", "days": 2}, at=cst(2026, 4, 7, 10))
    session.commit()
    assert sweeps.scan(session, cst(2026, 4, 7, 17, 30)) == sweeps.SweepResult(reminded=1, overdue=1)
    t = f.reload(session, t)
    f.act(session, t, "approve_extension", {}, at=cst(2026, 4, 8, 9))
    assert t.reply_by == cst(2026, 4, 9, 17, 30)
    assert (t.overdue_at, t.level2_at) == (cst(2026, 4, 9, 17, 30), cst(2026, 4, 16, 17, 30))
    session.commit()
    assert sweeps.scan(session, cst(2026, 4, 9, 17, 30)) == sweeps.SweepResult(reminded=1, overdue=1)
    assert f.reload(session, t).overdue_count == 2


# =============================================================================== concurrency

def test_two_concurrent_sweeps_claim_disjoint_rows(engine):
    """Two workers sweep at the same instant on two PostgreSQL connections: every due ticket is
    claimed by exactly one of them (one event of each kind per ticket)."""
    n = 60
    with Session(engine) as s:
        ids = [f.submit(s, at=cst(2026, 3, 11, 10) + timedelta(minutes=i)).id for i in range(n)]
        s.commit()
    now = cst(2026, 3, 12, 17, 30)  # every reminder and every accept deadline are due
    barrier = threading.Barrier(2)
    results: list[sweeps.SweepResult] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with Session(engine) as s:
                s.execute(sa.text("SELECT 1"))  # connect before the barrier
                barrier.wait(timeout=30)
                results.append(sweeps.scan(s, now))
                s.commit()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=worker) for _ in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=60)
        assert not errors, errors
        assert len(results) == 2
        assert sum(r.reminded for r in results) == n
        assert sum(r.overdue for r in results) == n
        with Session(engine) as s:
            counts = s.execute(sa.select(TicketEvent.action, sa.func.count()).where(
                TicketEvent.ticket_id.in_(ids), TicketEvent.actor_role == "system")
                .group_by(TicketEvent.action)).all()
            assert dict(counts) == {"remind": n, "overdue": n}
            per_ticket = s.execute(sa.select(TicketEvent.ticket_id, sa.func.count()).where(
                TicketEvent.ticket_id.in_(ids), TicketEvent.actor_role == "system")
                .group_by(TicketEvent.ticket_id)).all()
            assert {c for _, c in per_ticket} == {2} and len(per_ticket) == n
            rows = s.exec(select(Ticket).where(Ticket.id.in_(ids))).all()
            assert {(t.remind_count, t.overdue_count, t.escalation_level, t.version) for t in rows} == {(1, 1, 1, 3)}
            kinds = dict(s.execute(sa.select(Notification.kind, sa.func.count(sa.distinct(Notification.ticket_id)))
                                   .where(Notification.ticket_id.in_(ids)).group_by(Notification.kind)).all())
            assert kinds["reminded"] == n and kinds["overdue"] == n
    finally:
        with Session(engine) as s:
            for table in (Notification, TicketEvent):
                s.execute(sa.delete(table).where(table.ticket_id.in_(ids)))
            s.execute(sa.delete(Ticket).where(Ticket.id.in_(ids)))
            s.commit()

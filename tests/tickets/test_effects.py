"""Issue 9: every writer does what :data:`service.tickets.effects.EFFECTS` declares.

Every action (through :func:`apply_action`), ``submit``, every SLA sweep (remind, overdue, level-2
escalate, auto-close) and a cadence that notifies are run, and each one's notifications (kinds and
recipient user ids), events (action, visibility, reason, payload) and ticket columns (stamped,
cleared, set, bumped) are compared with the declaration. The recipients expected are computed
here, group by group, from :data:`service.notifications.fanout.RECIPIENTS`, with plain queries
independent of the fan-out's SQL. So an auto-close cannot tell other people than an enterprise's
confirmation, nor stamp other columns.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import time_machine
from sqlmodel import Session, select

from service.auth.actor import Actor
from service.cadences import return_visits
from service.cadences.models import ReturnVisit
from service.cadences.schemas import ReturnVisitAnswerIn
from service.enterprises.models import Enterprise
from service.notifications import fanout
from service.notifications.models import Notification
from service.sla import sweeps
from service.sla.deadlines import DEADLINE_ORIGINS
from service.tickets import workflow as wf
from service.tickets.effects import EFFECTS, STEP_DEADLINE, SWEEPS, effects_of
from service.tickets.models import Ticket, TicketCoDepartment, TicketEvent
from service.users.models import User
from tests import factories as f

CST = ZoneInfo("Asia/Shanghai")
MONDAY = datetime(2026, 3, 9, 9, 0, tzinfo=CST)


# =========================================================================== the expectation

def expected_recipients(session: Session, ticket: Ticket, kind: str | None) -> set[int]:
    """Who the declaration says is told of ``kind`` about ``ticket`` (its state after the change)."""
    if kind is None:
        return set()

    def active(*conditions) -> set[int]:
        return set(session.exec(select(User.id).where(User.is_active, *conditions)).all())

    def handlers(dept_ids) -> set[int]:
        return active(User.role == "department", User.department_id.in_(list(dept_ids))) if dept_ids else set()

    officer = {ticket.officer_id} if ticket.officer_id else set()
    lead = [ticket.lead_department_id] if ticket.lead_department_id else []
    out: set[int] = set()
    enterprise_users = active(User.role == "enterprise", User.enterprise_id == ticket.enterprise_id)
    for group in fanout.groups_of(kind, ticket.due_step):
        if group == "officer":
            out |= officer
        elif group == "lead_department":
            out |= handlers(lead)
        elif group == "lead_department_else_officer":
            out |= handlers(lead) if lead else officer
        elif group == "co_departments":
            out |= handlers(session.exec(select(TicketCoDepartment.department_id)
                                         .where(TicketCoDepartment.ticket_id == ticket.id)).all())
        elif group == "enterprise":
            out |= enterprise_users
        elif group == "enterprise_else_officer":
            out |= enterprise_users or officer
        elif group == "county_supervisors":
            out |= active(User.role == "supervisor", User.region_id.is_(None))
        else:  # pragma: no cover
            raise AssertionError(group)
    return out


def notifications_after(session: Session, ticket: Ticket, after_id: int) -> list[Notification]:
    return list(session.exec(select(Notification).where(Notification.ticket_id == ticket.id,
                                                        Notification.id > after_id)).all())


def events_after(session: Session, ticket: Ticket, after_id: int) -> list[TicketEvent]:
    return list(session.exec(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id,
                                                       TicketEvent.id > after_id).order_by(TicketEvent.id)).all())


def max_id(session: Session, model) -> int:
    return session.exec(select(sa.func.coalesce(sa.func.max(model.id), 0))).one()


def check_declared(session: Session, ticket: Ticket, action: str, before: dict, at: datetime,
                   n_after: int, e_after: int, *, notify_body: str | None = None) -> TicketEvent:
    """The notifications, the one event and the columns of ``action`` on ``ticket`` are the declared ones."""
    effects = effects_of(action)
    ticket = f.reload(session, ticket)
    got = notifications_after(session, ticket, n_after)
    assert {n.kind for n in got} == ({effects.notify} if effects.notify else set()), action
    ids = [n.user_id for n in got]
    assert len(ids) == len(set(ids)), f"{action}: one notification per recipient"
    assert set(ids) == expected_recipients(session, ticket, effects.notify), action
    for n in got:
        assert n.payload == {"number": ticket.number, "status": ticket.status, "step": ticket.due_step}
        assert n.created_at == at and n.title.startswith(fanout.title_of(n.kind, ticket.due_step) + "：")
        if notify_body is not None:
            assert n.body == notify_body
    [event] = [e for e in events_after(session, ticket, e_after) if e.action == action]
    if action != "comment":  # a comment's visibility is the body's
        assert event.visibility == effects.visibility, action
    if effects.reason is not None:
        assert event.reason == effects.reason
    assert event.to_status == ticket.status and event.created_at == at
    for column in effects.payload:
        value = getattr(ticket, column)
        assert event.payload[column] == (value.isoformat() if isinstance(value, datetime) else value)
    instant = (getattr(ticket, effects.instant) if effects.instant else None) or at
    for column in effects.stamp:
        assert getattr(ticket, column) == instant, (action, column)
    for column in effects.stamp_first:
        assert getattr(ticket, column) is not None and getattr(ticket, column) <= at, (action, column)
    for column in effects.clear:
        assert getattr(ticket, column) is None, (action, column)
    for column, value in effects.set.items():
        assert getattr(ticket, column) == value, (action, column)
    for column in effects.bump:
        assert getattr(ticket, column) == before[column] + 1, (action, column)
    return event


def snapshot(ticket: Ticket) -> dict:
    return {c: getattr(ticket, c) for c in ("return_count", "reopen_count", "remind_count", "overdue_count",
                                            "extension_count", "attachment_count")}


# =========================================================================== the declaration itself

def test_every_action_and_sweep_is_declared():
    assert {a.value for a in wf.Action} | {"submit", "overdue"} == set(EFFECTS)
    for name, sweep in SWEEPS.items():
        assert sweep.action in EFFECTS, name
        assert effects_of(sweep.action).sla.set_based, name
        if sweep.status is not None:  # the status it requires is the from-status of its transition
            assert (wf.TicketStatus(sweep.status), wf.Action(sweep.action)) in wf.TRANSITIONS
    for name, effects in EFFECTS.items():
        if effects.notify is not None:
            assert effects.notify in fanout.RECIPIENTS and effects.notify in fanout.TITLES, name
        for column in (*effects.stamp, *effects.stamp_first, *effects.clear, *effects.set, *effects.bump,
                       *effects.payload):
            assert column in Ticket.__table__.c, (name, column)
    # a kind's groups by running step (the feedback reminder) name steps and kinds that exist
    for kind, by_step in (*fanout.STEP_RECIPIENTS.items(), *fanout.STEP_TITLES.items()):
        assert kind in fanout.RECIPIENTS and set(by_step) <= set(STEP_DEADLINE), kind
    assert fanout.groups_of("reminded", "feedback") == ("enterprise_else_officer",)
    assert fanout.title_of("reminded", "feedback") == "请评价办理结果"
    assert fanout.groups_of("reminded", "reply") == fanout.RECIPIENTS["reminded"]
    # the actions that start a deadline (one overdue per deadline, SPEC §4) are read from the declaration
    assert {
        "accept": {"submit"}, "claim": {"dispatch", "reopen"}, "first_reply": {"submit", "reopen", "approve_extension"},
        "reply": {"claim", "approve_extension"}, "feedback": {"reply", "answer"}} == DEADLINE_ORIGINS
    # an enterprise's confirmation and the sweep's auto-close are the same close
    confirm, auto = EFFECTS["confirm"], EFFECTS["auto_close"]
    assert (confirm.stamp, confirm.notify, confirm.sla, confirm.visibility, confirm.payload) == \
        (auto.stamp, auto.notify, auto.sla, auto.visibility, auto.payload)


# =========================================================================== actions

#: the status each action is tried from (the first legal one of the workflow table)
FROM_STATUS = {a.value: next(s.value for (s, act) in wf.TRANSITIONS if act == a) for a in wf.Action}
FROM_STATUS.update(remind="in_progress", escalate="in_progress", comment="in_progress", add_info="in_progress",
                   link="accepted", reopen="replied")


@pytest.mark.parametrize("action", sorted(a.value for a in wf.Action))
def test_each_action_does_what_is_declared(session, action):
    status = FROM_STATUS[action]
    category = "consultation.policy" if action == "answer" else "problem.labour"
    ticket = f.make_ticket(session, status, lead_department="RSJ", co_departments=["ZJJ"], category_code=category)
    body = f.action_body(session, ticket, action)
    if action == "dispatch":  # a lead and a co-handler, so that both groups are told
        body = {"lead_department_id": f.department(session, "RSJ").id,
                "co_department_ids": [f.department(session, "ZJJ").id]}
    by = Actor.system() if action == "auto_close" else None
    before = snapshot(ticket)
    n_after, e_after = max_id(session, Notification), max_id(session, TicketEvent)
    at = datetime.now(CST).replace(microsecond=0) + timedelta(minutes=1)
    f.act(session, ticket, action, body, by=by, at=at)
    session.commit()
    event = check_declared(session, ticket, action, before, at, n_after, e_after)
    assert event.from_status == status


def test_submit_does_what_is_declared(session):
    n_after, e_after = max_id(session, Notification), max_id(session, TicketEvent)
    at = datetime.now(CST).replace(microsecond=0)
    ticket = f.submit(session, at=at)
    session.commit()
    check_declared(session, ticket, "submit", snapshot(ticket), at, n_after, e_after)


# =========================================================================== sweeps

def test_each_sweep_does_what_is_declared(session, quiet_sweeps):
    """remind, overdue, level-2 escalate and auto-close over a ticket each, as declared."""
    with time_machine.travel(MONDAY, tick=False):
        handled = f.make_ticket(session, "in_progress", lead_department="RSJ", co_departments=["ZJJ"])
        unhandled = f.make_ticket(session, "submitted", title="还没受理的诉求")
        replied = f.make_ticket(session, "replied", lead_department="RSJ")
    # the feedback step's reminder goes to the enterprise (fanout.STEP_RECIPIENTS), before its auto-close
    assert unhandled.remind_at < replied.remind_at < handled.remind_at  # each run claims its own ticket
    runs = [("remind", unhandled, unhandled.remind_at), ("remind", replied, replied.remind_at),
            ("remind", handled, handled.remind_at),
            ("overdue", handled, handled.overdue_at), ("escalate", handled, handled.level2_at),
            ("auto_close", replied, replied.feedback_by + timedelta(minutes=7))]
    for name, ticket, now in runs:
        sweep = SWEEPS[name]
        before = snapshot(f.reload(session, ticket))
        n_after, e_after = max_id(session, Notification), max_id(session, TicketEvent)
        claimed = sweeps.run_sweep(session, name, now)
        assert claimed >= 1, name
        session.commit()
        event = check_declared(session, ticket, sweep.action, before, now, n_after, e_after,
                               notify_body=sweep.reason or effects_of(sweep.action).reason)
        assert event.actor_role == "system" and event.reason == (sweep.reason or effects_of(sweep.action).reason)
        for key, value in sweep.payload.items():
            assert event.payload[key] == value
        assert getattr(f.reload(session, ticket), sweep.trigger) is None, name
        # fired once: the same sweep at the same instant claims nothing of this ticket again
        n_again = max_id(session, Notification)
        sweeps.run_sweep(session, name, now)
        assert notifications_after(session, ticket, n_again) == []


def test_auto_close_is_an_enterprise_confirmation_without_a_rating(session, quiet_sweeps):
    """Issue 9's drift, made impossible: the sweep's close tells the same people (the enterprise
    and the lead department), stamps the same columns and leaves the same SLA state as a
    confirmation; closed_at is the feedback deadline (docs/decisions.md)."""
    with time_machine.travel(MONDAY, tick=False):
        confirmed = f.make_ticket(session, "replied", lead_department="RSJ")
        swept = f.make_ticket(session, "replied", lead_department="RSJ")
    at = swept.feedback_by + timedelta(hours=2)
    n_after = max_id(session, Notification)
    f.act(session, confirmed, "confirm", at=at)
    assert sweeps.auto_close(session, at) >= 1
    session.commit()
    a, b = f.reload(session, confirmed), f.reload(session, swept)
    told = [{n.user_id for n in notifications_after(session, t, n_after)} for t in (a, b)]
    lead_handlers = set(session.exec(select(User.id).where(User.department_id == a.lead_department_id,
                                                           User.role == "department", User.is_active)).all())
    assert told[0] == told[1] and lead_handlers and lead_handlers <= told[1]
    sla = ("status", "due_step", "due_at", "remind_at", "overdue_at", "level2_at")
    assert [getattr(a, c) for c in sla] == [getattr(b, c) for c in sla] == ["closed"] + [None] * 5
    assert b.closed_at == b.feedback_by and b.rating == "none" and a.closed_at == at
    [ea] = [e for e in f.events(session, a) if e.action == "confirm"]
    [eb] = [e for e in f.events(session, b) if e.action == "auto_close"]
    assert (ea.from_status, ea.to_status, ea.visibility) == (eb.from_status, eb.to_status, eb.visibility)
    assert set(EFFECTS["confirm"].payload) <= set(ea.payload) and set(EFFECTS["auto_close"].payload) <= set(eb.payload)


def test_a_replayed_auto_close_stamps_the_feedback_deadline(session):
    """apply_action's auto_close (the importer's replay) follows the same rule as the sweep."""
    ticket = f.make_ticket(session, "replied", lead_department="RSJ")
    late = ticket.feedback_by + timedelta(days=3)
    f.act(session, ticket, "auto_close", by=Actor.system(), at=late)
    assert ticket.closed_at == ticket.feedback_by


# =========================================================================== a cadence

def test_a_cadence_notifies_by_returning_and_its_tickets_by_the_declaration(session):
    """The annual return visit: its ``follow_up`` notifications are exactly the rows its statement
    returned (no ``max(id)``), to the enterprises' users and officers; a problem raised in the
    answer becomes a ticket whose ``submit`` notification goes to the declared recipients."""
    ticket = f.make_ticket(session, "submitted")
    now = datetime.now(CST).replace(microsecond=0) + timedelta(minutes=3)
    year = ticket.submitted_at.astimezone(CST).year
    # this enterprise gets its visit of the year here (inside the test's rolled-back transaction)
    session.execute(sa.delete(ReturnVisit).where(ReturnVisit.enterprise_id == ticket.enterprise_id,
                                                 ReturnVisit.year == year))
    n_after = max_id(session, Notification)
    result = return_visits.create_annual(session, year, now.date(), now)
    session.commit()
    rows = list(session.exec(select(Notification).where(Notification.id > n_after,
                                                        Notification.kind == "follow_up")).all())
    assert len(rows) == result["notified"]
    visits = session.exec(select(ReturnVisit).where(ReturnVisit.year == year, ReturnVisit.asked_at == now)).all()
    assert len(visits) == result["return_visits"]
    expected = set()
    for visit in visits:
        expected |= set(session.exec(select(User.id).where(User.enterprise_id == visit.enterprise_id,
                                                           User.role == "enterprise", User.is_active)).all())
        officer = session.get(Enterprise, visit.enterprise_id).officer_id
        if officer:
            expected.add(officer)
    assert {n.user_id for n in rows} == expected

    [mine] = [v for v in visits if v.enterprise_id == ticket.enterprise_id]
    n_after, e_after = max_id(session, Notification), max_id(session, TicketEvent)
    answer = ReturnVisitAnswerIn(satisfaction=4, problems=[
        {"title": "用电报装慢", "description": "新厂房报装三个月未通电", "category_code": "problem.labour"}])
    visit = return_visits.answer(session, f.actor(session, "ent1"), mine.id, answer, now)
    session.commit()
    [raised] = [session.get(Ticket, i) for i in visit.ticket_ids]
    check_declared(session, raised, "submit", snapshot(raised), now, n_after, e_after)

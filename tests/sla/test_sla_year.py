"""A simulated year of SLA sweeps (SPEC §4) on the real 2026 calendar.

A few hundred tickets are submitted through the services at spread instants of 2026 (day and
night, weekdays and holidays) and driven through their lives by the people who would act on them:
some act early, some after the reminder but before the deadline, some late, some very late (five
or more working days), some never; some tickets are returned, reopened, put on hold (in working
time, or off hours so that no working time passes), extended (approved or denied, sometimes
approved only after the deadline passed), answered directly, rejected, confirmed or left to be
auto-closed. Time advances hour by hour through every working day (09:00, 10:00, .., 17:00, and
17:30, the end of the day, when most deadlines fall) and once at noon of every other day (when
nothing may fire: every trigger lies in working time); at each step the actions due by then are applied
first, then ``scan(session, now)`` runs, the clock being moved there with time-machine.

The expected sweep events are then derived independently from each ticket's own history (its
human events), with the SPEC §4 rules written out in this file:

- The running deadline of a ticket is the deadline of the step its status waits for: accept
  (``submitted``), first reply of a consultation (``accepted`` and ``in_progress``), claim
  (``dispatched``), reply (``in_progress``), feedback (``replied``); none when ``on_hold``,
  ``closed`` or ``rejected``. A *deadline* starts when its step's clock starts (submission,
  dispatch or reopen, claim, reply) or when an extension is approved; holding and resuming move
  its instant but keep the deadline (SPEC §4: "one overdue event per deadline, however often it
  is held, resumed or swept"), and so does another step running in between (a consultation's
  first reply around its claim step).
- Per deadline instant (a hold that moves the deadline gives a new instant): exactly one
  **reminder** at the first sweep at or after one working day (urgent: two working hours) before
  it while it runs -- or half-way between the moment it started running and the deadline, when it
  started less than that before it; none when it started already past -- the feedback deadline
  included (SPEC §4: "A reminder (催办) goes out one working day (urgent: 2
  working hours) before each deadline, the feedback deadline included"). Not for the feedback
  step: exactly one **overdue** (escalation level 1) at the first sweep at or after the deadline
  while it runs, and exactly one **level-2 escalation** at the first sweep at or after the end of
  the 5th working day after the deadline's day (SPEC §4: "at the end of the 5th working day after
  the deadline's day (17:30, by the "N working days" rule above) to level 2") while it still runs.
- A replied ticket is **auto-closed** (rating ``none``) at the first sweep at or after its
  feedback deadline, once.

So a ticket whose every step was done before its deadline gets no overdue or escalation event at
all; it may legitimately have had reminders (SPEC §4 sends one a working day before each deadline,
whether or not the step is then done in time), unless every step was also done before its
reminder time, in which case it has no sweep event at all other than, possibly, its auto-close.
"""

from __future__ import annotations

import bisect
import heapq
import os
import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlmodel import Session, select

from service.calendar.core import WorkingCalendar
from service.calendar.service import get_calendar
from service.enterprises.models import Enterprise
from service.sla import sweeps
from service.ticketing import service as ticket_service
from service.tickets.models import Ticket, TicketEvent
from tests import factories as f

CST = ZoneInfo("Asia/Shanghai")
DAY = 7 * 3600  # working seconds in a working day
N_TICKETS = 320
SEED = int(os.environ.get("QIFU_SLA_YEAR_SEED", "2026"))  # another seed: another year

#: SPEC §4 defaults, written out: (amount, unit) per priority and step
LIMITS = {
    "normal": {"accept": (1, "d"), "claim": (1, "d"), "first_reply": (3, "d"), "reply": (15, "d"), "feedback": (5, "d")},
    "urgent": {"accept": (2, "h"), "claim": (2, "h"), "first_reply": (1, "d"), "reply": (3, "d"), "feedback": (5, "d")},
}
REMIND_LEAD = {"normal": DAY, "urgent": 2 * 3600}
LEVEL2_AFTER = 5 * DAY  # the drivers' lateness profiles only; the expectation is Spec.level2_at

#: how promptly people act, relative to the running deadline
PROFILES = ("early", "reminded", "late", "very_late")
WEIGHTS = (50, 20, 20, 10)

@pytest.fixture(autouse=True)
def _only_this_tests_tickets(request):
    """Sweeps are global: tests on the rolled-back ``session`` see only their own tickets' triggers
    (see ``quiet_sweeps``); tests on their own connections are left alone."""
    if "session" in request.fixturenames:
        request.getfixturevalue("quiet_sweeps")



def sweep_instants(cal: WorkingCalendar) -> list[datetime]:
    out = []
    d = date(2026, 1, 1)
    while d.year == 2026:
        if cal.is_working_day(d):  # every working hour, and the end of the day (17:30)
            out += [datetime.combine(d, time(h), tzinfo=CST) for h in range(9, 18)]
            out.append(datetime.combine(d, time(17, 30), tzinfo=CST))
        else:
            out.append(datetime.combine(d, time(12), tzinfo=CST))
        d += timedelta(days=1)
    return out


# =============================================================================== the simulation

@dataclass
class Life:
    """One ticket's plan and its record."""

    no: int
    rng: random.Random
    category: str
    priority: str
    submit_at: datetime
    ticket: Ticket | None = None
    profiles: list[str] = field(default_factory=list)  # the profile of each timed step taken
    holds: int = 0
    zero_holds: int = 0
    extensions: list[str] = field(default_factory=list)

    @property
    def consultation(self) -> bool:
        return self.category.startswith("consultation")


class Driver:
    """Plans each ticket's next action from its current deadlines (with the calendar's arithmetic;
    the expectations below do not use these plans)."""

    def __init__(self, cal: WorkingCalendar) -> None:
        self.cal = cal

    def w(self, t: datetime) -> float:
        return self.cal.working_clock(t)

    def at_w(self, value: float, after: datetime) -> datetime:
        """The instant of working clock ``value`` rounded to the minute, not before ``after``."""
        value = round(value / 60) * 60
        t = self.cal.from_working_clock(value) if value > self.w(after) else after + timedelta(minutes=1)
        return max(t, after + timedelta(minutes=1))

    def timed(self, life: Life, start: datetime, due: datetime, *, profile: str | None = None) -> datetime:
        """When ``life`` acts on a deadline ``due`` that started running at ``start``."""
        rng = life.rng
        profile = profile or rng.choices(PROFILES, WEIGHTS)[0]
        life.profiles.append(profile)
        ws, wd = self.w(start), self.w(due)
        lead = REMIND_LEAD[life.priority]
        wr = wd - lead if wd - lead > ws else ws + (wd - ws) / 2
        if profile == "early":
            value = rng.uniform(ws, max(ws, wr - 120))
        elif profile == "reminded":
            value = rng.uniform(wr, wd - 60)
        elif profile == "late":
            value = rng.uniform(wd + 60, wd + LEVEL2_AFTER - 120)
        else:
            value = rng.uniform(wd + LEVEL2_AFTER, wd + LEVEL2_AFTER + 3 * DAY)
        return self.at_w(value, start)

    def soon(self, life: Life, after: datetime, hours: float) -> datetime:
        return self.at_w(self.w(after) + life.rng.uniform(0.05, hours) * 3600, after)

    def life(self, life: Life, session: Session) -> Iterator[tuple[datetime, str, dict]]:
        """The ticket's actions, one at a time (each read after the previous one was applied)."""
        rng = life.rng
        t = life.ticket
        now = t.submitted_at
        # ---- accept (or reject, or answer a consultation directly)
        if rng.random() < 0.04:
            return  # nobody ever looks at it
        if rng.random() < 0.05:
            yield self.timed(life, now, t.accept_by), "reject", f.BODIES["reject"]
            return
        if life.consultation and rng.random() < 0.4:
            now = self.timed(life, now, t.accept_by)
            yield now, "answer", f.BODIES["answer"]
            yield from self.feedback(life, now)
            return
        now = self.timed(life, now, t.accept_by)
        yield now, "accept", {}
        reopened = False
        while True:
            # ---- dispatch (no limit of its own; a reopen dispatches again) and claim, maybe
            # after a return
            if not reopened:
                now = self.soon(life, now, 5 if life.consultation else 10)
                yield now, "dispatch", {}
            if rng.random() < 0.03:
                return  # the department never claims it
            if rng.random() < 0.08 and t.return_count == 0:
                now = self.timed(life, now, t.claim_by)
                yield now, "return", f.BODIES["return"]
                now = self.soon(life, now, 8)
                yield now, "dispatch", {}
            now = self.timed(life, now, t.claim_by)
            yield now, "claim", {}
            # ---- handling: maybe an extension, maybe a hold, then the reply
            if rng.random() < 0.04:
                return  # never replied
            start = now
            reply_at = self.timed(life, start, t.reply_by)
            if rng.random() < 0.15 and now < t.reply_by - timedelta(hours=1):
                # ask before the deadline; the decision may come after it
                ask = self.at_w(rng.uniform(self.w(now), self.w(t.reply_by) - 60), now)
                yield ask, "request_extension", {"reason": "需跨部门会商", "days": rng.randint(1, 15)}
                decide = self.soon(life, ask, 10)
                approve = rng.random() < 0.7
                life.extensions.append("approved" if approve else "denied")
                yield decide, "approve_extension" if approve else "deny_extension", {"note": "审批"}
                now = decide
                reply_at = self.timed(life, now, t.reply_by)
            if rng.random() < 0.2:
                life.holds += 1
                hold = self.at_w(rng.uniform(self.w(now), self.w(max(reply_at, now))), now)
                if rng.random() < 0.3:  # off hours: held in the evening, resumed next morning
                    life.zero_holds += 1
                    local = hold.astimezone(CST)
                    hold = datetime.combine(local.date(), time(18, rng.randint(0, 59)), tzinfo=CST)
                    resume = datetime.combine(local.date() + timedelta(days=1), time(8, rng.randint(0, 59)),
                                              tzinfo=CST)
                else:
                    resume = self.soon(life, hold, 25)
                yield hold, "hold", f.BODIES["hold"]
                yield resume, "resume", {}
                now = resume
                reply_at = self.timed(life, now, t.reply_by)
            now = max(reply_at, now + timedelta(minutes=1))
            yield now, "reply", f.BODIES["reply"]
            # ---- feedback: confirm in time, reopen, or nothing (auto-close)
            r = rng.random()
            if r < 0.12 and t.reopen_count < 2:
                now = self.at_w(rng.uniform(self.w(now), self.w(t.feedback_by) - 60), now)
                yield now, "reopen", f.BODIES["reopen"]
                reopened = True
                continue
            yield from self.feedback(life, now, r)
            return

    def feedback(self, life: Life, now: datetime, r: float | None = None) -> Iterator[tuple[datetime, str, dict]]:
        t = life.ticket
        r = life.rng.random() if r is None else r
        if r < 0.6:
            at = self.at_w(life.rng.uniform(self.w(now), self.w(t.feedback_by) - 60), now)
            yield at, "confirm", f.BODIES["confirm"]


def simulate(session: Session) -> tuple[list[Life], list[datetime]]:
    cal = get_calendar(session)
    rng = random.Random(SEED)
    categories = (["problem.labour", "problem.tax", "problem.power", "problem.land"] * 3
                  + ["agency.permits", "matching.financing"] + ["consultation.policy", "consultation.tax"] * 2)
    lives = []
    for no in range(N_TICKETS):
        # spread over 2026-01-02 .. 2026-11-30, at any hour (web submissions come day and night)
        day = date(2026, 1, 2) + timedelta(days=rng.randrange(333))
        if rng.random() < 0.75:  # mostly in office hours
            clock = time(rng.choice([9, 10, 11, 13, 14, 15, 16, 17]), rng.randrange(60))
        else:
            clock = time(rng.randrange(24), rng.randrange(60))
        lives.append(Life(no=no, rng=random.Random(rng.random()), category=rng.choice(categories),
                          priority="urgent" if rng.random() < 0.2 else "normal",
                          submit_at=datetime.combine(day, clock, tzinfo=CST)))
    lives.sort(key=lambda lf: lf.submit_at)
    driver = Driver(cal)
    enterprises = session.exec(select(Enterprise).order_by(Enterprise.id).limit(40)).all()
    categories_by_code = {c: f.category(session, c) for c in set(categories)}
    submitter = f.actor(session, "officer1")

    queue: list[tuple[datetime, int, int, object]] = []
    seq = 0
    for life in lives:
        queue.append((life.submit_at, seq, life.no, None))
        seq += 1
    heapq.heapify(queue)
    by_no = {lf.no: lf for lf in lives}
    gens: dict[int, Iterator] = {}
    instants = sweep_instants(cal)

    with time_machine.travel(instants[0], tick=False) as tm:
        for s in instants:
            while queue and queue[0][0] <= s:
                at, _, no, step = heapq.heappop(queue)
                life = by_no[no]
                tm.move_to(at)
                if step is None:
                    ent = enterprises[no % len(enterprises)]
                    life.ticket = ticket_service.create_ticket(
                        session, enterprise=ent, category=categories_by_code[life.category],
                        title=f"模拟诉求 {no}", description="一年模拟", channel="hotline",
                        priority=life.priority, actor=submitter, at=at)
                    gens[no] = driver.life(life, session)
                else:
                    action, body = step
                    f.act(session, life.ticket, action, body, at=at)
                nxt = next(gens[no], None)
                if nxt is not None:
                    n_at, n_action, n_body = nxt
                    assert n_at >= at, (life.no, n_action, n_at, at)
                    heapq.heappush(queue, (n_at, seq, no, (n_action, n_body)))
                    seq += 1
            tm.move_to(s)
            result = sweeps.scan(session, s)
            if result != sweeps.SweepResult():
                session.expire_all()  # the sweeps update with plain SQL
    # actions planned after the year's last sweep (very late replies to late submissions) never
    # happen: those tickets end the year open
    return lives, instants


# =============================================================================== expectations

class Spec:
    """SPEC §4 as written, on top of the calendar's working clock."""

    def __init__(self, cal: WorkingCalendar) -> None:
        self.cal = cal

    def limit(self, priority: str, step: str, start: datetime) -> datetime:
        amount, unit = LIMITS[priority][step]
        if unit == "d":  # 17:30 of the N-th working day after the start's calendar day
            d = start.astimezone(CST).date()
            while amount:
                d += timedelta(days=1)
                amount -= self.cal.is_working_day(d)
            return datetime.combine(d, time(17, 30), tzinfo=CST)
        w = self.cal.working_clock(start) + amount * 3600
        return self.cal.from_working_clock(w)

    def remind_at(self, priority: str, start: datetime, due: datetime) -> datetime | None:
        ws, wd = self.cal.working_clock(start), self.cal.working_clock(due)
        wr = wd - REMIND_LEAD[priority]
        if wr <= ws:
            wr = ws + (wd - ws) / 2
        return self.cal.from_working_clock(wr) if wr > ws else None

    def level2_at(self, due: datetime) -> datetime:
        """SPEC §4: "at the end of the 5th working day after the deadline's day (17:30, by the "N
        working days" rule above) to level 2" -- not five times seven working hours after a
        mid-day deadline (issue 11)."""
        d, n = due.astimezone(CST).date(), 5
        while n:
            d += timedelta(days=1)
            n -= self.cal.is_working_day(d)
        return datetime.combine(d, time(17, 30), tzinfo=CST)


@dataclass
class Episode:
    step: str
    due: datetime
    start: datetime
    end: datetime | None = None
    deadline: int = 0  # which deadline of the ticket this run belongs to (kept across holds)


def episodes(spec: Spec, ticket: Ticket, history: list[TicketEvent]) -> list[Episode]:
    """The running deadlines of ``ticket`` over time, replayed from its human events."""
    consultation = ticket.service_type == "consultation"
    p = ticket.priority
    d: dict[str, datetime | None] = dict.fromkeys(("accept", "claim", "reply", "feedback"))
    held_at = None
    status = None
    out: list[Episode] = []
    # a number per deadline: a new one each time a step's clock starts; a hold keeps it
    serial = iter(range(1, 10**6))
    ids: dict[str, int] = {}
    for e in history:
        at = e.created_at
        a = e.action
        if e.actor_role == "system":  # the sweeps' own events (an auto-close ends the story)
            continue
        if a == "submit":
            d["accept"], ids["accept"] = spec.limit(p, "accept", at), next(serial)
            if consultation:
                d["reply"], ids["reply"] = spec.limit(p, "first_reply", at), next(serial)
        elif a in ("dispatch", "reopen"):
            d["claim"], ids["claim"] = spec.limit(p, "claim", at), next(serial)
            if a == "reopen":
                d["feedback"] = None
                if consultation:
                    d["reply"], ids["reply"] = spec.limit(p, "first_reply", at), next(serial)
        elif a == "claim" and not consultation:
            d["reply"], ids["reply"] = spec.limit(p, "reply", at), next(serial)
        elif a in ("reply", "answer"):
            d["feedback"], ids["feedback"] = spec.limit(p, "feedback", at), next(serial)
        elif a == "hold":
            held_at = at
        elif a == "resume":
            held = spec.cal.working_clock(at) - spec.cal.working_clock(held_at)
            if held > 0:
                d["reply"] = spec.cal.from_working_clock(spec.cal.working_clock(d["reply"]) + held)
        elif a == "approve_extension":
            moved = d["reply"].astimezone(CST).date()
            days = e.payload["days"]
            while days:
                moved += timedelta(days=1)
                days -= spec.cal.is_working_day(moved)
            d["reply"] = datetime.combine(moved, time(17, 30), tzinfo=CST)
            ids["reply"] = next(serial)  # an approved extension: a new deadline, a new date agreed
        status = e.to_status or status
        reply_step = "first_reply" if consultation else "reply"
        running = {
            "submitted": ("accept", d["accept"], ids.get("accept")),
            "accepted": (reply_step, d["reply"], ids.get("reply")) if consultation else None,
            "dispatched": ("claim", d["claim"], ids.get("claim")),
            "in_progress": (reply_step, d["reply"], ids.get("reply")),
            "replied": ("feedback", d["feedback"], ids.get("feedback")),
        }.get(status)
        current = (out[-1].step, out[-1].due, out[-1].deadline) if out and out[-1].end is None else None
        if running != current:
            if current is not None:
                out[-1].end = at
            if running is not None:
                out.append(Episode(running[0], running[1], at, deadline=running[2]))
    return out


def first_sweep(instants: list[datetime], trigger: datetime | None, ep: Episode) -> datetime | None:
    """The first sweep at or after ``trigger`` while ``ep`` runs (actions at a sweep's instant
    come before it)."""
    if trigger is None:
        return None
    i = bisect.bisect_left(instants, max(trigger, ep.start))
    if i < len(instants) and (ep.end is None or instants[i] < ep.end):
        return instants[i]
    return None


def expected_events(spec: Spec, ticket: Ticket, eps: list[Episode], instants) -> Counter:
    """Each sweep action once per deadline (the reminder: once per deadline and instant): in the
    first of its runs (in time order) in which the action's trigger, computed on that run's
    instant, is swept; recorded with that instant."""
    out: Counter = Counter()
    by_deadline: dict[int, list[Episode]] = defaultdict(list)
    for ep in eps:
        by_deadline[ep.deadline].append(ep)
    for group in by_deadline.values():
        step = group[0].step
        actions = ("remind", "auto_close") if step == "feedback" else ("remind", "overdue", "escalate")
        for action in actions:
            done: set[datetime | None] = set()
            for ep in group:
                key = ep.due if action == "remind" else None
                if key in done:
                    continue
                if action == "remind":  # depends on when this run of the deadline started
                    trigger = spec.remind_at(ticket.priority, ep.start, ep.due)
                elif action == "escalate":
                    trigger = spec.level2_at(ep.due)
                else:  # overdue, auto_close: at the deadline
                    trigger = ep.due
                s = first_sweep(instants, trigger, ep)
                if s is not None:
                    out[(ticket.id, action, step, ep.due, s)] += 1
                    done.add(key)
    return out


def actual_events(history: list[TicketEvent]) -> Counter:
    out: Counter = Counter()
    for e in history:
        if e.actor_role != "system":
            continue
        if e.action == "auto_close":
            due = datetime.fromisoformat(e.payload["closed_at"])
            out[(e.ticket_id, e.action, "feedback", due, e.created_at)] += 1
        else:
            out[(e.ticket_id, e.action, e.payload["step"], datetime.fromisoformat(e.payload["due_at"]),
                 e.created_at)] += 1
    return out


def describe(t: Ticket, history: list[TicketEvent], actual: Counter, expected: Counter) -> str:
    def fmt(k):
        return f"{k[1]} {k[2]} due {k[3].astimezone(CST):%m-%d %H:%M} at {k[4].astimezone(CST):%m-%d %H:%M}"

    lines = [f"{t.number} {t.service_type} {t.priority}",
             *(f"  {e.created_at.astimezone(CST):%a %m-%d %H:%M} {e.actor_role:10} {e.action} {e.payload}"
               for e in history),
             "unexpected:", *map(fmt, sorted(actual - expected, key=str)),
             "missing:", *map(fmt, sorted(expected - actual, key=str))]
    return "\n".join(lines)


def test_a_year_of_sweeps(session):
    lives, instants = simulate(session)
    session.expire_all()
    spec = Spec(get_calendar(session))
    tickets = {lf.no: session.get(Ticket, lf.ticket.id) for lf in lives}
    all_events = session.exec(select(TicketEvent).where(TicketEvent.ticket_id.in_([t.id for t in tickets.values()]))
                              .order_by(TicketEvent.id)).all()
    history: dict[int, list[TicketEvent]] = defaultdict(list)
    for e in all_events:
        history[e.ticket_id].append(e)

    expected_all: Counter = Counter()
    actual_all: Counter = Counter()
    in_time = before_reminders = 0
    for life in lives:
        t = tickets[life.no]
        eps = episodes(spec, t, history[t.id])
        expected = expected_events(spec, t, eps, instants)
        actual = actual_events(history[t.id])
        assert actual == expected, describe(t, history[t.id], actual, expected)
        expected_all += expected
        actual_all += actual
        # every deadline of the ticket met (done before it, or still running at the year's end
        # with its deadline in the future): no overdue, no escalation, whatever else happened
        met = all((ep.end is not None and ep.end <= ep.due) or (ep.end is None and ep.due > instants[-1])
                  for ep in eps if ep.step != "feedback")
        kinds = {k[1] for k in actual}
        if met:
            in_time += 1
            assert not kinds & {"overdue", "escalate"}, (t.number, sorted(actual))
            early = all(ep.end is not None and (r := spec.remind_at(t.priority, ep.start, ep.due)) is not None
                        and ep.end <= r for ep in eps if ep.step != "feedback")
            if early:
                before_reminders += 1
                # only the feedback deadline's own reminder (SPEC §4) and the auto-close remain
                assert {(k[1], k[2]) for k in actual} <= {("remind", "feedback"), ("auto_close", "feedback")}, (
                    t.number, sorted(actual))
        # the ticket's counters agree with its history
        assert t.remind_count == sum(1 for k in actual if k[1] == "remind")
        assert t.overdue_count == sum(1 for k in actual if k[1] == "overdue")
        assert t.escalation_level == (2 if "escalate" in kinds else 1 if "overdue" in kinds else 0)
        if "auto_close" in kinds:
            assert (t.status, t.rating) == ("closed", "none")

    # exactly one of each per deadline
    assert max(actual_all.values()) == 1
    per_deadline = Counter((k[0], k[1], k[2], k[3]) for k in actual_all)
    assert max(per_deadline.values()) == 1

    # the scenario covered what it should
    counts = Counter(k[1] for k in actual_all)
    profiles = Counter(p for lf in lives for p in lf.profiles)
    assert counts["remind"] > 100 and counts["overdue"] > 80 and counts["escalate"] > 20, counts
    assert counts["auto_close"] > 30, counts
    assert in_time > 50 and before_reminders > 20, (in_time, before_reminders)
    assert min(profiles.values()) > 40, profiles
    assert sum(lf.holds for lf in lives) > 15 and sum(lf.zero_holds for lf in lives) > 3
    ext = Counter(x for lf in lives for x in lf.extensions)
    assert ext["approved"] > 8 and ext["denied"] > 2, ext
    statuses = Counter(t.status for t in tickets.values())
    assert statuses["closed"] > 100 and statuses["rejected"] > 3, statuses
    print(f"\n{len(lives)} tickets, {len(instants)} sweeps: events {dict(counts)}; {in_time} met every deadline "
          f"({before_reminders} before every reminder); profiles {dict(profiles)}; "
          f"holds {sum(lf.holds for lf in lives)} ({sum(lf.zero_holds for lf in lives)} off hours); "
          f"extensions {dict(ext)}; statuses {dict(statuses)}")

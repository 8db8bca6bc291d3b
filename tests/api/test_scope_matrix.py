"""Row scope on every endpoint (SPEC §1, issue 11 point 1): a matrix over the whole API.

Every route of the application is classified in :data:`MATRIX`: either a *case* that, with two
actors of the same role and different scopes, shows the out-of-scope one gets 404 (an empty or
filtered list, a report without the rows of tickets outside the scope) and that a refused write
wrote nothing; or a reason why the route touches no scoped row (reference data, own account,
admin only — the admin-only ones are checked to refuse other roles).
:func:`test_every_route_is_classified` fails when a route is added without a line here, so the
class of defect stays fixed.

Seeded scopes (seeds/data/users.yaml, enterprises.yaml):
ent1/ent6 → 经开区, officer1; ent2 → 桐溪镇, officer12; ent11 → 禾丰镇, officer8;
supervisor1 county-wide, supervisor2 禾丰镇; departments RSJ (dept_rsj) and one with no ticket of ent1.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from datetime import date, datetime
from functools import cached_property

import pytest
import sqlalchemy as sa
import time_machine
from openpyxl import load_workbook
from sqlmodel import select

from service import clock
from service.cadences import service as cadences
from service.cadences.models import (
    AgendaItem,
    CadenceSession,
    ClinicBooking,
    FollowUp,
    HardCaseFlag,
    Inquiry,
    ReturnVisit,
)
from service.notifications import service as notifications
from service.notifications.models import Notification
from service.regions.models import Grid
from service.tickets.models import Ticket, TicketEvent
from tests import factories as f
from tests.attachments import samples
from tests.factories import SHANGHAI

#: the same roles, out of the scope of enterprise #1's tickets / in it; ``dept_other`` stands for
#: a department handler that has no ticket of enterprise #1 (:meth:`Ctx.dept_other`: tests that
#: commit may have dispatched one of its tickets to any department)
OUTSIDERS = ("ent2", "officer12", "dept_other", "supervisor2")
INSIDERS = ("ent1", "officer1", "dept_rsj", "supervisor1")


@contextmanager
def at(y, m, d, hh=9, mm=0):
    with time_machine.travel(datetime(y, m, d, hh, mm, tzinfo=SHANGHAI), tick=False):
        yield


class Ctx:
    """The test's session, client and the rows each case builds on demand."""

    def __init__(self, session, client, login):
        self.session, self.client = session, client
        self.login = lambda who: login(self.dept_other if who == "dept_other" else who)

    @cached_property
    def dept_other(self) -> str:
        """A department handler who may see no ticket of enterprise #1 (nor of enterprise #6)."""
        from service.departments.models import Department
        from service.tickets.models import TicketCoDepartment
        from service.users.models import User

        ents = [self.ent("ent1").id, self.ent("ent6").id]
        leads = sa.select(Ticket.lead_department_id).where(Ticket.enterprise_id.in_(ents),
                                                           Ticket.lead_department_id.is_not(None))
        cos = sa.select(TicketCoDepartment.department_id).join(Ticket, Ticket.id == TicketCoDepartment.ticket_id) \
            .where(Ticket.enterprise_id.in_(ents))
        name = self.session.execute(
            sa.select(User.username).join(Department, Department.id == User.department_id)
            .where(User.role == "department", User.is_active, Department.code.not_in(("RSJ", "JYJ")),
                   Department.id.not_in(leads), Department.id.not_in(cos))
            .order_by(User.username.desc()).limit(1)).scalar()
        assert name is not None, "every department has a ticket of enterprise #1"
        return name

    # ---- requests
    def get(self, who: str, url: str, **params):
        resp = self.client.get(url, params=params, headers=self.login(who))
        assert resp.status_code < 500, resp.text
        return resp

    def post(self, who: str, url: str, body=None):
        resp = self.client.post(url, json=body, headers=self.login(who))
        assert resp.status_code < 500, resp.text
        return resp

    def count(self, model, *where) -> int:
        self.session.expire_all()
        return self.session.execute(sa.select(sa.func.count()).select_from(model).where(*where)).scalar_one()

    def events(self, ticket: Ticket) -> int:
        return self.count(TicketEvent, TicketEvent.ticket_id == ticket.id)

    def ent_tickets(self, username: str = "ent1") -> int:
        return self.count(Ticket, Ticket.enterprise_id == self.ent(username).id)

    def ent(self, username: str):
        return f.enterprise_of(self.session, username)

    # ---- rows
    @cached_property
    def title(self) -> str:
        return f"范围测试 {uuid.uuid4().hex[:12]}"

    @cached_property
    def ticket(self) -> Ticket:
        """Enterprise #1's ticket dispatched to RSJ (visible to the insiders only)."""
        return f.make_ticket(self.session, "dispatched", enterprise="ent1", lead_department="RSJ", title=self.title)

    @cached_property
    def clinic(self) -> tuple[CadenceSession, AgendaItem, AgendaItem]:
        """The W15 clinic of enterprise #1's region with an item about its ticket (co-handling:
        RSJ leads, JYJ helps) and an item booked by enterprise #1."""
        with at(2026, 3, 30):
            ticket = f.make_ticket(self.session, "dispatched", enterprise="ent1", lead_department="RSJ",
                                   co_departments=["JYJ"], title=self.title)
            cadences.run_for_date(self.session, "weekly", date(2026, 3, 30))
            self.session.commit()
        region = self.session.get(Grid, self.ent("ent1").grid_id).region_id
        cs = self.session.exec(select(CadenceSession).where(CadenceSession.region_id == region,
                                                            CadenceSession.period_key == "2026-W15")).one()
        with at(2026, 3, 31):
            booking = self.post("ent1", f"/api/v1/clinics/{cs.id}/bookings", {"topic": "融资对接"})
            assert booking.status_code == 201, booking.text
        item = self.session.exec(select(AgendaItem).where(AgendaItem.session_id == cs.id,
                                                          AgendaItem.ticket_id == ticket.id)).one()
        booked = self.session.exec(select(AgendaItem).where(AgendaItem.booking_id == booking.json()["id"])).one()
        self.clinic_ticket = ticket
        return cs, item, booked

    @cached_property
    def joint(self) -> tuple[CadenceSession, AgendaItem]:
        """The Q2 joint consultation with an item about enterprise #1's co-handled ticket."""
        with at(2026, 3, 2):
            ticket = f.make_ticket(self.session, "dispatched", enterprise="ent1", lead_department="RSJ",
                                   co_departments=["JYJ"], title=self.title)
        with at(2026, 4, 1):
            cadences.run_for_date(self.session, "quarterly", date(2026, 4, 1))
            self.session.commit()
        item = self.session.exec(select(AgendaItem).join(CadenceSession, CadenceSession.id == AgendaItem.session_id)
                                 .where(CadenceSession.kind == "joint", AgendaItem.ticket_id == ticket.id)).one()
        self.joint_ticket = ticket
        return self.session.get(CadenceSession, item.session_id), item

    @cached_property
    def follow_up(self) -> FollowUp:
        with at(2026, 3, 10):
            ticket = f.make_ticket(self.session, "closed", enterprise="ent1", title=self.title)
        with at(2026, 4, 1):
            cadences.run_for_date(self.session, "monthly", date(2026, 4, 1))
            self.session.commit()
        self.follow_up_ticket = ticket
        return self.session.exec(select(FollowUp).where(FollowUp.ticket_id == ticket.id)).one()

    @cached_property
    def return_visit(self) -> ReturnVisit:
        with at(2026, 3, 2):
            f.make_ticket(self.session, "closed", enterprise="ent1", title=self.title)
        with at(2027, 1, 4):
            cadences.run_for_date(self.session, "annual", date(2027, 1, 4))
            self.session.commit()
        return self.session.exec(select(ReturnVisit).where(ReturnVisit.enterprise_id == self.ent("ent1").id,
                                                           ReturnVisit.year == 2026)).one()


@pytest.fixture
def ctx(session, client, login) -> Ctx:
    return Ctx(session, client, login)


# =========================================================================== cases: tickets

def _listed(c: Ctx, who: str) -> set[str]:
    body = c.get(who, "/api/v1/tickets", q=c.title, limit=200).json()
    return {t["number"] for t in body["items"]}


def case_submit(c: Ctx) -> None:
    ent1 = c.ent("ent1")
    body = {"title": "代提交", "description": "热线来电", "category_code": "problem.labour", "channel": "hotline",
            "enterprise_id": ent1.id}
    before = c.ent_tickets()
    resp = c.post("officer12", "/api/v1/tickets", body)
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "enterprise_id"
    assert c.post("ent2", "/api/v1/tickets", body).status_code == 403  # role rule: not its enterprise
    assert c.ent_tickets() == before
    assert c.post("officer1", "/api/v1/tickets", body).status_code == 201


def case_list_tickets(c: Ctx) -> None:
    number = c.ticket.number
    for who in OUTSIDERS:
        assert number not in _listed(c, who), who
    for who in INSIDERS:
        assert number in _listed(c, who), who


def _ticket_get(suffix: str) -> Callable[[Ctx], None]:
    def case(c: Ctx) -> None:
        url = f"/api/v1/tickets/{c.ticket.number}{suffix}"
        for who in OUTSIDERS:
            assert c.get(who, url).status_code == 404, who
        for who in INSIDERS:
            assert c.get(who, url).status_code == 200, who
    return case


def _ticket_action(action: str) -> Callable[[Ctx], None]:
    def case(c: Ctx) -> None:
        ticket = c.ticket
        body = dict(f.BODIES[action])
        if action in ("merge", "link"):
            other = f.make_ticket(c.session, "submitted", enterprise="ent1", title=c.title + " 另一件")
            body["into" if action == "merge" else "other"] = other.number
        url = f"/api/v1/tickets/{ticket.number}/{action}"
        before, version = c.events(ticket), f.reload(c.session, ticket).version
        for who in OUTSIDERS:
            resp = c.post(who, url, body)
            assert resp.status_code == 404, (who, resp.text)
        assert c.events(ticket) == before and f.reload(c.session, ticket).version == version
        for who in INSIDERS:  # the same roles in scope are never told "not found"
            assert c.post(who, url, body).status_code != 404, who
    return case


# =========================================================================== cases: reference data

def case_list_enterprises(c: Ctx) -> None:
    c.ticket  # noqa: B018  (RSJ sees enterprise #1 through it)
    uscc = c.ent("ent1").uscc
    for who in OUTSIDERS:
        assert c.get(who, "/api/v1/enterprises", q=uscc).json() == [], who
    for who in INSIDERS:
        assert [e["uscc"] for e in c.get(who, "/api/v1/enterprises", q=uscc).json()] == [uscc], who


def case_read_enterprise(c: Ctx) -> None:
    c.ticket  # noqa: B018
    url = f"/api/v1/enterprises/{c.ent('ent1').id}"
    for who in OUTSIDERS:
        assert c.get(who, url).status_code == 404, who
    for who in INSIDERS:
        assert c.get(who, url).status_code == 200, who


def case_list_users(c: Ctx) -> None:
    ent1_user = f.user(c.session, "ent1").id

    def ids(who):
        return {u["id"] for u in c.get(who, "/api/v1/users", role="enterprise", limit=1000).json()}

    assert ent1_user not in ids("supervisor2")
    assert f.user(c.session, "ent11").id in ids("supervisor2")  # its own region's enterprise users
    assert ent1_user in ids("supervisor1")
    assert {u["id"] for u in c.get("officer12", "/api/v1/users", limit=1000).json()} == \
        {f.user(c.session, "officer12").id}


# =========================================================================== cases: statistics, notifications

def case_stats(c: Ctx) -> None:
    today = clock.now().astimezone(SHANGHAI).date().isoformat()

    def received(who):
        resp = c.get(who, "/api/v1/stats/summary", date_from=today, date_to=today)
        assert resp.status_code == 200, resp.text
        return resp.json()["total"]["received"]

    users = ("officer1", "officer12", "supervisor1", "supervisor2")
    before = {u: received(u) for u in users}
    f.make_ticket(c.session, "submitted", enterprise="ent1", title=c.title)
    after = {u: received(u) for u in users}
    assert {u: after[u] - before[u] for u in users} == {"officer1": 1, "officer12": 0, "supervisor1": 1,
                                                         "supervisor2": 0}


def case_stats_drill(c: Ctx) -> None:
    today = clock.now().astimezone(SHANGHAI).date().isoformat()
    t = f.make_ticket(c.session, "submitted", enterprise="ent1", title=c.title)

    def numbers(who):
        resp = c.get(who, "/api/v1/stats/tickets", date_from=today, date_to=today, measure="received", limit=1000)
        assert resp.status_code == 200, resp.text
        return {row["number"] for row in resp.json()["tickets"]}

    assert t.number in numbers("officer1") and t.number in numbers("supervisor1")
    assert t.number not in numbers("officer12") and t.number not in numbers("supervisor2")


def case_stats_ranking(c: Ctx) -> None:
    month = clock.now().astimezone(SHANGHAI).strftime("%Y-%m")

    def received(who):
        resp = c.get(who, "/api/v1/stats/ranking", period=month)
        assert resp.status_code == 200, resp.text
        return sum(row["received"] for row in resp.json()["rows"])

    users = ("officer1", "officer12", "supervisor1", "supervisor2")
    before = {u: received(u) for u in users}
    f.make_ticket(c.session, "dispatched", enterprise="ent1", lead_department="RSJ", title=c.title)
    after = {u: received(u) for u in users}
    assert {u: after[u] - before[u] for u in users} == {"officer1": 1, "officer12": 0, "supervisor1": 1,
                                                         "supervisor2": 0}


def _own_notification(c: Ctx) -> int:
    (row,) = notifications.notify(c.session, c.ticket, "follow_up", [f.user(c.session, "officer1").id],
                                  body="只给 officer1")
    c.session.commit()
    return row.id


def case_list_notifications(c: Ctx) -> None:
    nid = _own_notification(c)
    assert nid not in {n["id"] for n in c.get("officer12", "/api/v1/notifications", limit=200).json()}
    assert nid in {n["id"] for n in c.get("officer1", "/api/v1/notifications", limit=200).json()}


def case_mark_read(c: Ctx) -> None:
    nid = _own_notification(c)
    assert c.post("officer12", "/api/v1/notifications/read", {"ids": [nid]}).json() == {"updated": 0}
    assert c.count(Notification, Notification.id == nid, Notification.read_at.is_(None)) == 1
    assert c.post("officer1", "/api/v1/notifications/read", {"ids": [nid]}).json() == {"updated": 1}


# =========================================================================== cases: daily inquiry

def case_inquiries_today(c: Ctx) -> None:
    ent1 = c.ent("ent1")
    with at(2026, 3, 2):
        mine = f.make_ticket(c.session, "submitted", enterprise="ent1", title=c.title)
        body = c.get("officer12", "/api/v1/inquiries/today").json()
    assert ent1.id not in {e["enterprise_id"] for e in body["enterprises"]}
    assert mine.number not in {t["number"] for t in body["tickets"]}


def case_log_inquiry(c: Ctx) -> None:
    ent1 = c.ent("ent1")
    body = {"enterprise_id": ent1.id, "method": "visit", "finding": "problems",
            "problems": [{"title": "用工", "description": "缺工", "category_code": "problem.labour"}]}
    with at(2026, 3, 2):
        before = (c.count(Inquiry, Inquiry.enterprise_id == ent1.id), c.ent_tickets())
        resp = c.post("officer12", "/api/v1/inquiries", body)
        assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "enterprise_id"
        assert (c.count(Inquiry, Inquiry.enterprise_id == ent1.id), c.ent_tickets()) == before
        assert c.post("officer1", "/api/v1/inquiries", body).status_code == 201


def case_inquiry_history(c: Ctx) -> None:
    eid = c.ent("ent1").id
    for who in ("officer12", "supervisor2"):
        assert c.get(who, "/api/v1/inquiries", enterprise_id=eid).status_code == 404, who
    for who in ("officer1", "supervisor1"):
        assert c.get(who, "/api/v1/inquiries", enterprise_id=eid).status_code == 200, who


def case_coverage(c: Ctx) -> None:
    grid = c.ent("ent1").grid_id
    with at(2026, 3, 2):
        assert grid not in {r["key"] for r in c.get("supervisor2", "/api/v1/inquiries/coverage").json()["by_grid"]}
        assert grid in {r["key"] for r in c.get("supervisor1", "/api/v1/inquiries/coverage").json()["by_grid"]}


# =========================================================================== cases: weekly clinics

def case_book_clinic(c: Ctx) -> None:
    cs, _item, _booked = c.clinic
    with at(2026, 3, 31):
        before = c.count(ClinicBooking, ClinicBooking.session_id == cs.id)
        assert c.post("ent2", f"/api/v1/clinics/{cs.id}/bookings", {"topic": "别的镇"}).status_code == 404
        assert c.count(ClinicBooking, ClinicBooking.session_id == cs.id) == before
        assert c.post("ent6", f"/api/v1/clinics/{cs.id}/bookings", {"topic": "同一园区"}).status_code == 201


def case_list_clinics(c: Ctx) -> None:
    cs, _item, _booked = c.clinic

    def ids(who):
        return {s["id"] for s in c.get(who, "/api/v1/clinics", date_from="2026-03-30", date_to="2026-04-12").json()}

    for who in ("supervisor2", "ent2"):
        assert cs.id not in ids(who), who
    for who in ("supervisor1", "ent1"):
        assert cs.id in ids(who), who


def case_read_clinic(c: Ctx) -> None:
    cs, item, booked = c.clinic
    url = f"/api/v1/clinics/{cs.id}"
    for who in ("supervisor2", "ent2"):
        assert c.get(who, url).status_code == 404, who
    for who in ("officer12", "dept_other"):  # the session is theirs to attend; the rows are not
        agenda = {i["id"] for i in c.get(who, url).json()["agenda"]}
        assert item.id not in agenda and booked.id not in agenda, who
    assert {item.id, booked.id} <= {i["id"] for i in c.get("officer1", url).json()["agenda"]}
    assert item.id in {i["id"] for i in c.get("dept_rsj", url).json()["agenda"]}


def _outcome_case(kind: str) -> Callable[[Ctx], None]:
    def case(c: Ctx) -> None:
        if kind == "clinic":
            cs, item, booked = c.clinic
            ticket, outsiders, insider = c.clinic_ticket, ("officer12", "dept_other", "supervisor2"), "officer1"
            prefix = "clinics"
        else:
            cs, item = c.joint
            booked = None
            ticket, outsiders, insider = c.joint_ticket, ("supervisor2", "officer12", "dept_other"), "supervisor1"
            prefix = "joint-consultations"
        body = {"outcome": "resolved", "note": "别处的人来答复"}
        before = c.events(ticket)
        for who in outsiders:
            resp = c.post(who, f"/api/v1/{prefix}/{cs.id}/items/{item.id}/outcome", body)
            assert resp.status_code == 404, (who, resp.text)
            if booked is not None:
                assert c.post(who, f"/api/v1/{prefix}/{cs.id}/items/{booked.id}/outcome", body).status_code == 404
        assert c.events(ticket) == before
        assert c.count(AgendaItem, AgendaItem.session_id == cs.id, AgendaItem.outcome.is_not(None)) == 0
        assert c.post(insider, f"/api/v1/{prefix}/{cs.id}/items/{item.id}/outcome", body).status_code == 200
        assert c.events(ticket) == before + 1  # the public comment (or escalation) lands on it
    return case


def _problem_case(kind: str) -> Callable[[Ctx], None]:
    def case(c: Ctx) -> None:
        cs = c.clinic[0] if kind == "clinic" else c.joint[0]
        prefix = "clinics" if kind == "clinic" else "joint-consultations"
        url = f"/api/v1/{prefix}/{cs.id}/problems"
        body = {"enterprise_id": c.ent("ent1").id, "title": "现场提出", "description": "别处的企业",
                "category_code": "problem.labour"}
        before = (c.ent_tickets(), c.count(AgendaItem, AgendaItem.session_id == cs.id))
        resp = c.post("officer12", url, body)
        assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "enterprise_id", resp.text
        # a region's supervisor: another region's clinic is not found; the county's joint
        # consultation is, but not the enterprise
        assert c.post("supervisor2", url, body).status_code == (404 if kind == "clinic" else 422)
        assert (c.ent_tickets(), c.count(AgendaItem, AgendaItem.session_id == cs.id)) == before
        assert c.post("officer1", url, body).status_code == 201
    return case


# =========================================================================== cases: joint consultations

def case_flag(c: Ctx) -> None:
    ticket = c.ticket
    body = {"ticket_number": ticket.number, "reason": "多部门推诿"}
    resp = c.post("supervisor2", "/api/v1/joint-consultations/flags", body)
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "ticket_number"
    assert c.count(HardCaseFlag, HardCaseFlag.ticket_id == ticket.id) == 0
    assert c.post("supervisor1", "/api/v1/joint-consultations/flags", body).status_code == 201


def case_list_joint(c: Ctx) -> None:
    cs, _item = c.joint
    for who in ("supervisor1", "supervisor2"):  # held for the whole county: both see the session
        assert cs.id in {s["id"] for s in c.get(who, "/api/v1/joint-consultations", date_from="2026-04-01").json()}
    assert c.get("ent1", "/api/v1/joint-consultations").status_code == 403


def case_read_joint(c: Ctx) -> None:
    cs, item = c.joint
    url = f"/api/v1/joint-consultations/{cs.id}"
    for who in ("supervisor2", "officer12", "dept_other"):
        assert item.id not in {i["id"] for i in c.get(who, url).json()["agenda"]}, who
    for who in ("supervisor1", "officer1", "dept_rsj"):
        assert item.id in {i["id"] for i in c.get(who, url).json()["agenda"]}, who
    assert c.get("ent1", url).status_code == 404


# =========================================================================== cases: follow-ups, return visits

def case_list_follow_ups(c: Ctx) -> None:
    fid = c.follow_up.id

    def ids(who):
        return {r["id"] for r in c.get(who, "/api/v1/follow-ups", period_key="2026-04", limit=500).json()}

    for who in ("ent2", "officer12", "supervisor2"):
        assert fid not in ids(who), who
    for who in ("ent1", "officer1", "supervisor1"):
        assert fid in ids(who), who


def case_answer_follow_up(c: Ctx) -> None:
    up = c.follow_up
    before = c.events(c.follow_up_ticket)
    for who in ("ent2", "officer12", "supervisor2"):
        resp = c.post(who, f"/api/v1/follow-ups/{up.id}/answer", {"solved": False, "comment": "别人的"})
        assert resp.status_code == 404, (who, resp.text)
    assert c.count(FollowUp, FollowUp.id == up.id, FollowUp.status == "pending") == 1
    assert c.events(c.follow_up_ticket) == before  # not reopened
    assert c.post("officer1", f"/api/v1/follow-ups/{up.id}/answer", {"solved": True}).status_code == 200


def case_list_return_visits(c: Ctx) -> None:
    vid = c.return_visit.id

    def ids(who):
        return {r["id"] for r in c.get(who, "/api/v1/return-visits", year=2026, limit=500).json()}

    for who in ("ent2", "officer12", "supervisor2"):
        assert vid not in ids(who), who
    for who in ("ent1", "officer1", "supervisor1"):
        assert vid in ids(who), who


def case_answer_return_visit(c: Ctx) -> None:
    visit = c.return_visit
    body = {"satisfaction": 1, "problems": [{"title": "x", "description": "y", "category_code": "problem.parking"}]}
    before = c.ent_tickets()
    for who in ("ent2", "officer12"):
        resp = c.post(who, f"/api/v1/return-visits/{visit.id}/answer", body)
        assert resp.status_code == 404, (who, resp.text)
    assert c.count(ReturnVisit, ReturnVisit.id == visit.id, ReturnVisit.status == "pending") == 1
    assert c.ent_tickets() == before
    assert c.post("officer1", f"/api/v1/return-visits/{visit.id}/answer", body).status_code == 200


# =========================================================================== cases: reports

def case_read_report(c: Ctx) -> None:
    with at(2026, 2, 2):
        mine = f.make_ticket(c.session, "submitted", enterprise="ent1", title=c.title)
        theirs = f.make_ticket(c.session, "submitted", enterprise="ent11", title=c.title)
    with at(2026, 4, 1):
        cadences.run_for_date(c.session, "monthly", date(2026, 4, 1))
        c.session.commit()
    url = "/api/v1/cadence-reports/long_open/2026-04"
    local = c.get("supervisor2", url).json()["data"]
    numbers = {t["number"] for t in local["tickets"]}
    assert theirs.number in numbers and mine.number not in numbers and local["count"] == len(local["tickets"])
    county = c.get("supervisor1", url).json()["data"]
    assert {mine.number, theirs.number} <= {t["number"] for t in county["tickets"]}
    xlsx = c.client.get(url, params={"format": "xlsx"}, headers=c.login("supervisor2"))
    cells = {str(v) for ws in load_workbook(io.BytesIO(xlsx.content)) for row in ws.iter_rows(values_only=True)
             for v in row}
    assert not any(mine.number in v for v in cells) and any(theirs.number in v for v in cells)
    # the notice tells the region's supervisor its own count, not the county's
    sup2 = f.user(c.session, "supervisor2").id
    (notice,) = c.session.exec(select(Notification).where(Notification.user_id == sup2,
                                                          Notification.kind == "follow_up")).all()
    assert notice.payload["count"] == len(local["tickets"]) < len(county["tickets"])
    with at(2027, 1, 4):
        cadences.run_for_date(c.session, "annual", date(2027, 1, 4))
        c.session.commit()
    annual = "/api/v1/cadence-reports/annual/2026"
    assert mine.number not in {t["number"] for t in c.get("supervisor2", annual).json()["data"]["top_unresolved"]}
    assert mine.number in {t["number"] for t in c.get("supervisor1", annual).json()["data"]["top_unresolved"]}


# =========================================================================== cases: the mail quarantine

#: roles that see no quarantined mail (it belongs to no enterprise yet: officers and admins see all
#: of it, docs/mail_intake.md)
NOT_QUARANTINE = ("ent1", "dept_rsj", "supervisor1")


def _quarantined(c: Ctx):
    from service.mail_intake import service as mail_intake
    from service.mail_intake.models import InboundMail
    from tests.mail_intake import messages

    raw = messages.plain(f"陌生人 <x-{uuid.uuid4().hex[:8]}@unknown.example>", c.title, "未登记的发件人")
    outcome = mail_intake.intake_message(c.session, raw, directory=mail_intake.SenderDirectory({}))
    c.session.commit()
    assert outcome.state == "quarantined"
    return c.session.get(InboundMail, outcome.mail_id)


def case_list_quarantine(c: Ctx) -> None:
    row = _quarantined(c)
    for who in NOT_QUARANTINE:
        assert c.get(who, "/api/v1/mail/quarantine").status_code == 403, who
    for who in ("officer1", "officer12", "admin"):
        assert row.id in {r["id"] for r in c.get(who, "/api/v1/mail/quarantine", limit=200).json()}, who


def case_read_quarantined(c: Ctx) -> None:
    row = _quarantined(c)
    for who in NOT_QUARANTINE:
        assert c.get(who, f"/api/v1/mail/quarantine/{row.id}").status_code == 403, who
    for who in ("officer1", "officer12", "admin"):
        assert c.get(who, f"/api/v1/mail/quarantine/{row.id}").json()["subject"] == c.title, who


def case_attach_quarantined(c: Ctx) -> None:
    from service.mail_intake.models import InboundMail

    row = _quarantined(c)
    url = f"/api/v1/mail/quarantine/{row.id}/attach"
    body = {"enterprise_id": c.ent("ent1").id}
    before = c.ent_tickets()
    for who in NOT_QUARANTINE:
        assert c.post(who, url, body).status_code == 403, who
    resp = c.post("officer12", url, body)  # an officer outside enterprise #1's scope
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "enterprise_id", resp.text
    assert c.ent_tickets() == before and c.count(InboundMail, InboundMail.id == row.id,
                                                 InboundMail.state == "quarantined") == 1
    assert c.post("officer1", url, body).status_code == 200
    assert c.ent_tickets() == before + 1


def case_discard_quarantined(c: Ctx) -> None:
    from service.mail_intake.models import InboundMail

    row = _quarantined(c)
    url = f"/api/v1/mail/quarantine/{row.id}/discard"
    for who in NOT_QUARANTINE:
        assert c.post(who, url, {"reason": "垃圾邮件"}).status_code == 403, who
    assert c.count(InboundMail, InboundMail.id == row.id, InboundMail.state == "quarantined") == 1
    assert c.post("officer12", url, {"reason": "垃圾邮件"}).status_code == 200


def _attachment(c: Ctx) -> int:
    """An attachment of enterprise #1's ticket, uploaded by the enterprise (issue 12)."""
    resp = c.client.post(f"/api/v1/tickets/{c.ticket.number}/attachments", headers=c.login("ent1"),
                         files=[("files", ("现场.png", _PNG, "image/png"))])
    assert resp.status_code == 201, resp.text
    return resp.json()[0]["id"]


_PNG = samples.png()


def case_list_attachments(c: Ctx) -> None:
    _attachment(c)
    url = f"/api/v1/tickets/{c.ticket.number}/attachments"
    for who in OUTSIDERS:
        assert c.get(who, url).status_code == 404, who
    for who in INSIDERS:
        assert len(c.get(who, url).json()) == 1, who


def case_download_attachment(c: Ctx) -> None:
    url = f"/api/v1/attachments/{_attachment(c)}"
    for who in OUTSIDERS:
        assert c.get(who, url).status_code == 404, who
    for who in INSIDERS:
        resp = c.get(who, url)
        assert resp.status_code == 200 and resp.content == _PNG, who


def case_upload_attachment(c: Ctx) -> None:
    from service.tickets.models import Attachment

    ticket = c.ticket
    url = f"/api/v1/tickets/{ticket.number}/attachments"
    before, version = c.events(ticket), f.reload(c.session, ticket).version
    for who in OUTSIDERS:
        resp = c.client.post(url, headers=c.login(who), files=[("files", ("a.png", _PNG, "image/png"))])
        assert resp.status_code == 404, (who, resp.text)
    assert c.events(ticket) == before and f.reload(c.session, ticket).version == version
    assert c.count(Attachment, Attachment.ticket_id == ticket.id) == 0
    for who in INSIDERS:  # in scope: stored (201) or, for a supervisor, a role refusal (403); never 404
        resp = c.client.post(url, headers=c.login(who), files=[("files", ("a.png", _PNG, "image/png"))])
        assert resp.status_code == (403 if who == "supervisor1" else 201), (who, resp.text)
# =========================================================================== cases: triage search (issue 13)

def _staff_ticket_get(suffix: str, *, department: bool) -> Callable[[Ctx], None]:
    """Staff-only reads of a ticket (duplicates; answer suggestions also for departments):
    enterprise users get 403 by role, out-of-scope staff 404, in-scope staff 200."""
    def case(c: Ctx) -> None:
        url = f"/api/v1/tickets/{c.ticket.number}{suffix}"
        outsiders = ("officer12", "supervisor2") + (("dept_other",) if department else ())
        insiders = ("officer1", "supervisor1") + (("dept_rsj",) if department else ())
        for who in outsiders:
            assert c.get(who, url).status_code == 404, who
        for who in insiders:
            assert c.get(who, url).status_code == 200, who
        for who in ("ent1", "ent2") + (() if department else ("dept_rsj",)):
            assert c.get(who, url).status_code == 403, who
    return case


def case_hot_issues(c: Ctx) -> None:
    """A supervisor's hot issues group only the tickets of their region."""
    numbers = {f.make_ticket(c.session, "submitted", enterprise="ent1", title=c.title + " 园区道路积水",
                             description="园区道路积水严重，车辆无法通行，请尽快排水。" + c.title).number
               for _ in range(3)}

    def grouped(who: str) -> set[str]:
        resp = c.get(who, "/api/v1/triage/hot-issues", limit=20)
        assert resp.status_code == 200, resp.text
        return {t["number"] for g in resp.json()["groups"] for t in g["tickets"]}

    assert numbers <= grouped("supervisor1")
    assert not numbers & grouped("supervisor2")
    for who in ("officer1", "dept_rsj", "ent1"):
        assert c.get(who, "/api/v1/triage/hot-issues").status_code == 403, who
# =========================================================================== cases: Open311

def _open311_keys(c: Ctx):
    """Keys bound to enterprise #1 (inside) and to enterprise #2 (outside), and one for any
    enterprise (outside too: it sees only what it submitted itself)."""
    from tests.open311.conftest import make_key

    return (make_key(c.session, c.ent("ent1").id), make_key(c.session, c.ent("ent2").id),
            make_key(c.session, None))


def _open311_post(fmt: str) -> Callable[[Ctx], None]:
    def case(c: Ctx) -> None:
        inside, outside, _any = _open311_keys(c)
        body = {"service_code": "problem.labour", "description": "范围", "attribute[uscc]": c.ent("ent1").uscc}
        before = c.ent_tickets()
        resp = c.client.post(f"/open311/v2/requests.{fmt}", data={**body, "api_key": outside.raw})
        assert resp.status_code == 403 and "its own enterprise" in resp.text
        assert c.ent_tickets() == before
        assert c.client.post(f"/open311/v2/requests.{fmt}", data={**body, "api_key": inside.raw}).status_code == 201
    return case


def _open311_get(fmt: str, what: str) -> Callable[[Ctx], None]:
    def case(c: Ctx) -> None:
        inside, outside, anyone = _open311_keys(c)
        number = c.ticket.number
        for key, seen in ((outside, False), (anyone, False), (inside, True)):
            params = {"api_key": key.raw}
            if what == "list":
                resp = c.client.get(f"/open311/v2/requests.{fmt}", params=params)
                assert resp.status_code == 200 and (number in resp.text) == seen
            elif what == "one":
                resp = c.client.get(f"/open311/v2/requests/{number}.{fmt}", params=params)
                assert resp.status_code == (200 if seen else 404)
            else:  # a token of the inside key, asked with each key
                if key is inside:
                    continue
                posted = c.client.post("/open311/v2/requests.json", data={
                    "api_key": inside.raw, "service_code": "problem.labour", "description": c.title}).json()
                token = posted[0]["token"]
                assert c.client.get(f"/open311/v2/tokens/{token}.{fmt}", params=params).status_code == 404
                assert c.client.get(f"/open311/v2/tokens/{token}.{fmt}",
                                    params={"api_key": inside.raw}).status_code == 200
    return case




# =========================================================================== the matrix

ADMIN = "admin only: every other role gets 403; an admin sees every row"
REFERENCE = "reference data every logged-in user may read (SPEC §2): no ticket or enterprise row"
NO_ROWS = "no ticket, enterprise or user row"
KNOWLEDGE = ("knowledge-base articles: office-wide policy answers, no ticket, enterprise or user row; staff only "
             "(enterprise users 403; writes officers and admins: tests/triage_search/test_knowledge.py)")

TICKET_ACTIONS = ("accept", "reject", "answer", "dispatch", "claim", "return", "hold", "resume", "reply",
                  "confirm", "reopen", "comment", "add_info", "remind", "escalate", "merge", "link",
                  "request_extension", "approve_extension", "deny_extension")

OPEN311_PUBLIC = "GeoReport v2 reference data, public as in the specification: the categories (SPEC §2), no row"
OPEN311: dict[str, Callable[[Ctx], None] | str] = {}
for _fmt in ("json", "xml"):
    OPEN311.update({
        f"GET /open311/v2/discovery.{_fmt}": NO_ROWS,
        f"GET /open311/v2/services.{_fmt}": OPEN311_PUBLIC,
        f"GET /open311/v2/services/{{service_code}}.{_fmt}": OPEN311_PUBLIC,
        f"POST /open311/v2/requests.{_fmt}": _open311_post(_fmt),
        f"GET /open311/v2/requests.{_fmt}": _open311_get(_fmt, "list"),
        f"GET /open311/v2/requests/{{service_request_id}}.{_fmt}": _open311_get(_fmt, "one"),
        f"GET /open311/v2/tokens/{{token_id}}.{_fmt}": _open311_get(_fmt, "token"),
    })

MATRIX: dict[str, Callable[[Ctx], None] | str] = {
    "GET /openapi.json": NO_ROWS, "GET /docs": NO_ROWS, "GET /docs/oauth2-redirect": NO_ROWS,
    "GET /dashboard": "a static page: it reads the statistics API with the caller's token (scoped there)",
    "GET /static/{path:path}": "the files of the dashboard and of /docs (qifu/web/static): no row",
    "GET /healthz": NO_ROWS, "GET /readyz": NO_ROWS,
    "GET /metrics": "aggregate counters and gauges (no row is named); QIFU_METRICS_TOKEN guards it (docs/operations.md)",
    "POST /api/v1/auth/token": "login: the caller's own account",
    "GET /api/v1/me": "the caller's own account",
    # tickets
    "POST /api/v1/tickets": case_submit,
    "GET /api/v1/tickets": case_list_tickets,
    "GET /api/v1/tickets/{number}": _ticket_get(""),
    "GET /api/v1/tickets/{number}/events": _ticket_get("/events"),
    **{f"POST /api/v1/tickets/{{number}}/{a}": _ticket_action(a) for a in TICKET_ACTIONS},
    # attachments (issue 12): the ticket's row scope
    "POST /api/v1/tickets/{number}/attachments": case_upload_attachment,
    "GET /api/v1/tickets/{number}/attachments": case_list_attachments,
    "GET /api/v1/attachments/{attachment_id}": case_download_attachment,
    # reference data and users
    "GET /api/v1/regions": REFERENCE, "POST /api/v1/regions": ADMIN,
    "GET /api/v1/grids": REFERENCE, "POST /api/v1/grids": ADMIN,
    "GET /api/v1/departments": REFERENCE, "POST /api/v1/departments": ADMIN,
    "PATCH /api/v1/departments/{department_id}": ADMIN,
    "GET /api/v1/categories": REFERENCE, "POST /api/v1/categories": ADMIN,
    "PATCH /api/v1/categories/{category_id}": ADMIN,
    "GET /api/v1/enterprises": case_list_enterprises, "POST /api/v1/enterprises": ADMIN,
    "GET /api/v1/enterprises/{enterprise_id}": case_read_enterprise,
    "PATCH /api/v1/enterprises/{enterprise_id}": ADMIN,
    "GET /api/v1/users": case_list_users, "POST /api/v1/users": ADMIN, "PATCH /api/v1/users/{user_id}": ADMIN,
    "PUT /api/v1/users/{user_id}/role": ADMIN,
    # statistics, calendar, SLA, notifications
    "GET /api/v1/stats/summary": case_stats,
    "GET /api/v1/stats/tickets": case_stats_drill,
    "GET /api/v1/stats/ranking": case_stats_ranking,
    "GET /api/v1/calendar": REFERENCE, "GET /api/v1/calendar/days": REFERENCE,
    "PUT /api/v1/calendar/overrides/{day}": ADMIN, "DELETE /api/v1/calendar/overrides/{day}": ADMIN,
    "PUT /api/v1/calendar/years/{year}": ADMIN,
    "GET /api/v1/sla-policies": REFERENCE, "PUT /api/v1/sla-policies": ADMIN,
    "DELETE /api/v1/sla-policies/{policy_id}": ADMIN,
    "GET /api/v1/notifications": case_list_notifications,
    "POST /api/v1/notifications/read": case_mark_read,
    # the cadences
    "GET /api/v1/inquiries/today": case_inquiries_today,
    "POST /api/v1/inquiries": case_log_inquiry,
    "GET /api/v1/inquiries": case_inquiry_history,
    "GET /api/v1/inquiries/coverage": case_coverage,
    "GET /api/v1/clinics/schedules": "every town's clinic timetable, public like the regions (SPEC §5)",
    "PUT /api/v1/clinics/schedules/{region_id}": ADMIN,
    "POST /api/v1/clinics/{session_id}/bookings": case_book_clinic,
    "GET /api/v1/clinics": case_list_clinics,
    "GET /api/v1/clinics/{session_id}": case_read_clinic,
    "POST /api/v1/clinics/{session_id}/items/{item_id}/outcome": _outcome_case("clinic"),
    "POST /api/v1/clinics/{session_id}/problems": _problem_case("clinic"),
    "POST /api/v1/joint-consultations/flags": case_flag,
    "GET /api/v1/joint-consultations": case_list_joint,
    "GET /api/v1/joint-consultations/{session_id}": case_read_joint,
    "POST /api/v1/joint-consultations/{session_id}/items/{item_id}/outcome": _outcome_case("joint"),
    "POST /api/v1/joint-consultations/{session_id}/problems": _problem_case("joint"),
    "GET /api/v1/follow-ups": case_list_follow_ups,
    "POST /api/v1/follow-ups/{follow_up_id}/answer": case_answer_follow_up,
    "GET /api/v1/return-visits": case_list_return_visits,
    "POST /api/v1/return-visits/{visit_id}/answer": case_answer_return_visit,
    "GET /api/v1/cadences/runs": "run records: kind, period and counts of what a run created; no row is named",
    "POST /api/v1/cadences/{kind}/run": ADMIN,
    "GET /api/v1/cadence-reports": "titles and periods of the stored reports; their rows are filtered when read",
    "GET /api/v1/cadence-reports/{kind}/{period_key}": case_read_report,
    # the e-mail intake's quarantine (issue 12)
    "GET /api/v1/mail/quarantine": case_list_quarantine,
    "GET /api/v1/mail/quarantine/{mail_id}": case_read_quarantined,
    "POST /api/v1/mail/quarantine/{mail_id}/attach": case_attach_quarantined,
    "POST /api/v1/mail/quarantine/{mail_id}/discard": case_discard_quarantined,
    # triage (issue 13)
    "POST /api/v1/triage/suggest": "suggestions for a text the caller sends: category and department rows only, no "
                                   "ticket or enterprise row; officers, supervisors, admins (tests/triage)",
    # triage search (issue 13)
    "GET /api/v1/tickets/{number}/duplicates": _staff_ticket_get("/duplicates", department=False),
    "GET /api/v1/tickets/{number}/answer-suggestions": _staff_ticket_get("/answer-suggestions", department=True),
    "GET /api/v1/triage/hot-issues": case_hot_issues,
    **{route: KNOWLEDGE for route in ("GET /api/v1/knowledge", "POST /api/v1/knowledge",
                                      "GET /api/v1/knowledge/{article_id}", "PATCH /api/v1/knowledge/{article_id}",
                                      "DELETE /api/v1/knowledge/{article_id}")},
    # Open311 GeoReport v2 (docs/open311.md): scoped by API key, not by login
    **OPEN311,
    "POST /api/v1/open311/keys": ADMIN, "GET /api/v1/open311/keys": ADMIN,
    "POST /api/v1/open311/keys/{key_id}/revoke": ADMIN,
}

SCOPED = sorted(k for k, v in MATRIX.items() if callable(v))
ADMIN_ONLY = sorted(k for k, v in MATRIX.items() if v == ADMIN)


def app_routes(app) -> set[str]:
    """``"METHOD path"`` of every route the application serves (HEAD left out), through included
    routers too."""
    found: set[str] = set()

    def walk(routes) -> None:
        for route in routes:
            if hasattr(route, "effective_candidates"):
                walk(route.effective_candidates())
                continue
            for method in getattr(route, "methods", None) or ():
                if method != "HEAD":
                    found.add(f"{method} {route.path}")

    walk(app.routes)
    return found


def test_every_route_is_classified(app):
    routes = app_routes(app)
    assert len(routes) > 60
    assert routes - MATRIX.keys() == set(), "classify the new route in tests/api/test_scope_matrix.py MATRIX"
    assert MATRIX.keys() - routes == set(), "a classified route no longer exists"


@pytest.mark.parametrize("route", SCOPED)
def test_out_of_scope_actor_is_refused(ctx, route):
    MATRIX[route](ctx)


_PATH_VALUES = {"department_id": "1", "category_id": "1", "enterprise_id": "1", "user_id": "1", "day": "2026-05-06",
                "year": "2027", "policy_id": "1", "region_id": "1", "kind": "daily", "key_id": "1"}


@pytest.mark.parametrize("route", ADMIN_ONLY)
def test_admin_only_routes_refuse_other_roles(ctx, route):
    method, path = route.split(" ", 1)
    for key, value in _PATH_VALUES.items():
        path = path.replace("{" + key + "}", value)
    for who in ("officer1", "supervisor1", "dept_rsj", "ent1"):
        resp = ctx.client.request(method, path, json={}, headers=ctx.login(who))
        assert resp.status_code == 403, (who, resp.text)

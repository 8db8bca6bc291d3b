"""The cadences through the API (SPEC §5): the end-to-end loop inquiry → ticket → closed → follow-up
"not solved" → reopened → next clinic's agenda → closed → counted as reopened in the quarterly
ranking; bookings, outcomes, return visits, reports (JSON and xlsx); and bad input on every write
path (4xx problem+json naming the field, never a 500)."""

from __future__ import annotations

import io
from contextlib import contextmanager
from datetime import date, datetime

import pytest
import time_machine
from openpyxl import load_workbook
from sqlmodel import select

from service.cadences import service as cadences
from service.cadences.models import CadenceSession, FollowUp, ReturnVisit
from service.enterprises.models import Enterprise
from service.tickets.models import Ticket
from tests import factories as f
from tests.factories import SHANGHAI

PROBLEM = "application/problem+json"


@contextmanager
def at(y, m, d, hh=9, mm=0):
    with time_machine.travel(datetime(y, m, d, hh, mm, tzinfo=SHANGHAI), tick=False):
        yield


def problem(resp, status: int, field: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    body = resp.json()
    if field is not None:
        fields = [e["field"] for e in body.get("errors", [])]
        assert any(field in x for x in fields), (field, body)
    return body


def post(client, headers, url, body, status=200):
    resp = client.post(url, json=body, headers=headers)
    assert resp.status_code == status, resp.text
    return resp.json()


def run(client, login, kind: str, day: date) -> dict:
    return post(client, login("admin"), f"/api/v1/cadences/{kind}/run?date={day.isoformat()}", None)


def test_closed_loop_end_to_end(session, client, login):
    ent = f.enterprise_of(session, "ent1")
    with at(2026, 3, 2):  # Monday: the daily list, then officer1 visits enterprise #1
        assert run(client, login, "daily", date(2026, 3, 2))["ran"] is True
        today = client.get("/api/v1/inquiries/today", headers=login("officer1")).json()
        assert today["list_date"] == "2026-03-02" and today["provisional"] is False
        assert today["enterprises"] and all(e["due_date"] <= "2026-03-04" for e in today["enterprises"])
        inquiry = post(client, login("officer1"), "/api/v1/inquiries", {
            "enterprise_id": ent.id, "method": "visit", "finding": "problems", "note": "走访",
            "problems": [{"title": "招工难", "description": "普工缺口约50人", "category_code": "problem.labour"}],
        }, 201)
        (number,) = inquiry["ticket_numbers"]
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        assert ticket.channel == "inquiry" and ticket.status == "submitted"
        history = client.get(f"/api/v1/inquiries?enterprise_id={ent.id}", headers=login("officer1")).json()
        assert [h["id"] for h in history] == [inquiry["id"]]
        o, d, e = login("officer1"), login("dept_rsj"), login("ent1")
        post(client, o, f"/api/v1/tickets/{number}/accept", {})
        post(client, o, f"/api/v1/tickets/{number}/dispatch", {})
        post(client, d, f"/api/v1/tickets/{number}/claim", {})
        post(client, d, f"/api/v1/tickets/{number}/reply", {"text": "已组织专场招聘会"})
        post(client, e, f"/api/v1/tickets/{number}/confirm", {"rating": "satisfied"})

    with at(2026, 3, 30):  # the weekly run creates next week's clinics
        weekly = run(client, login, "weekly", date(2026, 3, 30))
        assert weekly["period_key"] == "2026-W15" and weekly["summary"]["sessions"] == 11

    with at(2026, 4, 1):  # first working day of April: the follow-up; "not solved" reopens
        monthly = run(client, login, "monthly", date(2026, 4, 1))
        assert monthly["summary"]["closed"] >= 1
        ups = client.get("/api/v1/follow-ups?status=pending", headers=login("ent1")).json()
        (up,) = [u for u in ups if u["ticket_number"] == number]
        answered = post(client, login("ent1"), f"/api/v1/follow-ups/{up['id']}/answer",
                        {"solved": False, "comment": "又缺人了"})
        assert answered["status"] == "not_solved" and answered["reopened"] is True
        again = client.post(f"/api/v1/follow-ups/{up['id']}/answer", json={"solved": True}, headers=login("ent1"))
        problem(again, 409)
        t = f.reload(session, ticket)
        assert (t.status, t.reopen_count, t.lead_department_id) == ("dispatched", 1, f.department(session, "RSJ").id)

    with at(2026, 4, 2):  # the daily run refreshes the coming sessions' agendas
        run(client, login, "daily", date(2026, 4, 2))
        clinics = client.get("/api/v1/clinics?date_from=2026-04-06&date_to=2026-04-12", headers=login("officer1")).json()
        region_id = session.exec(select(CadenceSession.region_id).where(
            CadenceSession.key == "clinic:330428400:2026-W15")).one()
        (clinic,) = [c for c in clinics if c["region_id"] == region_id]
        assert clinic["session_date"] == "2026-04-08"
        detail = client.get(f"/api/v1/clinics/{clinic['id']}", headers=login("officer1")).json()
        (item,) = [i for i in detail["agenda"] if i["ticket_number"] == number]
        assert "reopened" in item["reasons"]
        # the enterprise books a slot; twice is a conflict; it sees only its own items
        booking = post(client, login("ent1"), f"/api/v1/clinics/{clinic['id']}/bookings", {"topic": "用工补贴政策"}, 201)
        assert booking["topic"] == "用工补贴政策"
        problem(client.post(f"/api/v1/clinics/{clinic['id']}/bookings", json={"topic": "再约"},
                            headers=login("ent1")), 409)
        mine = client.get(f"/api/v1/clinics/{clinic['id']}", headers=login("ent1")).json()
        assert {i["reason"] for i in mine["agenda"]} <= {"booked", "reopened", "stalled", "returned", "co_handling"}
        post(client, login("dept_rsj"), f"/api/v1/tickets/{number}/claim", {})
        notes = client.get("/api/v1/notifications", headers=login("dept_rsj")).json()
        assert any(n["kind"] == "invited" for n in notes)

    with at(2026, 4, 8, 10):  # at the clinic: resolved on the spot → reply; then closed
        out = post(client, login("dept_rsj"), f"/api/v1/clinics/{clinic['id']}/items/{item['id']}/outcome",
                   {"outcome": "resolved", "note": "现场对接3家劳务公司"})
        assert out["outcome"] == "resolved"
        assert f.reload(session, ticket).status == "replied"
        post(client, login("ent1"), f"/api/v1/tickets/{number}/confirm", {"rating": "basically_satisfied"})
        raised = post(client, login("officer1"), f"/api/v1/clinics/{clinic['id']}/problems", {
            "enterprise_id": ent.id, "title": "园区道路积水", "description": "雨天积水严重", "category_code": "problem.transport",
        }, 201)
        assert raised["reason"] == "raised"
        assert session.exec(select(Ticket.channel).where(Ticket.number == raised["ticket_number"])).one() == "clinic"

    with at(2026, 7, 1):  # first working day of Q3: joint consultation + the Q2 ranking counts the reopen
        quarterly = run(client, login, "quarterly", date(2026, 7, 1))
        assert quarterly["period_key"] == "2026-Q3" and quarterly["summary"]["report"] == "2026-Q2"
        sup = login("supervisor1")
        report = client.get("/api/v1/cadence-reports/quarterly_ranking/2026-Q2", headers=sup).json()
        # SPEC §6: a ranking's period is by submission date, and the stored report is the stats
        # ranking (one definition): the reopen counts against the quarter the ticket was submitted
        # in, Q1 (before the shared measures, the Q2 report counted tickets reopened in Q2)
        api_q2 = client.get("/api/v1/stats/ranking?period=2026-Q2", headers=sup).json()["rows"]
        assert [(r["code"], r["score"], r["received"]) for r in report["data"]["departments"]] == [
            (r["code"], r["score"], r["received"]) for r in api_q2]
        q1 = client.get("/api/v1/stats/ranking?period=2026-Q1", headers=sup).json()["rows"]
        (rsj,) = [r for r in q1 if r["code"] == "RSJ"]
        assert rsj["reopened"] >= 1 and rsj["reopen_rate"] > 0 and rsj["closed"] >= 1 and rsj["score"] is not None
        xlsx = client.get("/api/v1/cadence-reports/quarterly_ranking/2026-Q2?format=xlsx", headers=sup)
        assert xlsx.status_code == 200
        wb = load_workbook(io.BytesIO(xlsx.content))
        assert "departments" in wb.sheetnames and wb["departments"].max_row >= 2
        assert client.get("/api/v1/cadence-reports/quarterly_ranking/2026-Q2",
                          headers=login("officer1")).status_code == 403
        joints = client.get("/api/v1/joint-consultations", headers=sup).json()
        assert [j["period_key"] for j in joints] == ["2026-Q3"]


def test_return_visit_and_annual_report(session, client, login):
    ent = f.enterprise_of(session, "ent1")
    with at(2026, 3, 2):
        f.make_ticket(session, "closed")
    with at(2027, 1, 4):
        result = cadences.run_for_date(session, "annual", date(2027, 1, 4))
        assert result.ran and result.period_key == "2027" and result.summary["report"] == "2026"
        visits = client.get("/api/v1/return-visits?year=2026", headers=login("ent1")).json()
        (visit,) = visits
        problem(client.post(f"/api/v1/return-visits/{visit['id']}/answer", json={"satisfaction": 6},
                            headers=login("ent1")), 422, "satisfaction")
        answered = post(client, login("ent1"), f"/api/v1/return-visits/{visit['id']}/answer", {
            "satisfaction": 4, "improve": "审批再快些",
            "problems": [{"title": "停车难", "description": "员工停车位不足", "category_code": "problem.parking"}]})
        assert answered["status"] == "answered" and len(answered["ticket_ids"]) == 1
        assert session.get(ReturnVisit, visit["id"]).enterprise_id == ent.id
        report = client.get("/api/v1/cadence-reports/annual/2026", headers=login("supervisor1")).json()["data"]
        assert report["volumes"]["received"] >= 1 and report["top_categories"]
        assert client.get("/api/v1/cadence-reports/annual/2026?format=xlsx",
                          headers=login("supervisor1")).status_code == 200


def test_follow_up_recorded_by_officer_and_expiry(session, client, login):
    with at(2026, 3, 10):
        ticket = f.make_ticket(session, "closed")
    with at(2026, 4, 1):
        cadences.run_for_date(session, "monthly", date(2026, 4, 1))
        session.commit()
        (up,) = session.exec(select(FollowUp).where(FollowUp.ticket_id == ticket.id)).all()
        assert up.source == "closed"
        problem(client.post(f"/api/v1/follow-ups/{up.id}/answer", json={"solved": True},
                            headers=login("dept_rsj")), 403)
    with at(2026, 4, 20):  # 10 working days later at 17:30 it expired; the daily run marks it
        cadences.run_for_date(session, "daily", date(2026, 4, 20))
        session.commit()
        assert f.reload(session, ticket) and session.get(FollowUp, up.id, populate_existing=True).status == "expired"
        problem(client.post(f"/api/v1/follow-ups/{up.id}/answer", json={"solved": True},
                            headers=login("officer1")), 409)


def test_monthly_cadence_stores_the_month_ranking(session, client, login):
    """The monthly run (每月一复诊) stores the month before's department ranking: the same rows,
    scores and figures as GET /stats/ranking for that month (one definition, SPEC §6)."""
    with at(2026, 3, 10):
        f.make_ticket(session, "closed", lead_department="RSJ")
        f.make_ticket(session, "dispatched", lead_department="JYJ")
    with at(2026, 4, 1):
        result = run(client, login, "monthly", date(2026, 4, 1))
        assert result["summary"]["ranking"] == "2026-03"
        sup = login("supervisor1")
        listed = client.get("/api/v1/cadence-reports?kind=monthly_ranking", headers=sup).json()
        assert "2026-03" in [r["period_key"] for r in listed]
        report = client.get("/api/v1/cadence-reports/monthly_ranking/2026-03", headers=sup).json()
        api = client.get("/api/v1/stats/ranking?period=2026-03", headers=sup).json()["rows"]
        assert [(r["code"], r["rank"], r["score"], r["received"], r["closed"]) for r in report["data"]["departments"]] \
            == [(r["code"], r["rank"], r["score"], r["received"], r["closed"]) for r in api]
        assert {"RSJ", "JYJ"} <= {r["code"] for r in report["data"]["departments"] if r["received"]}
        xlsx = client.get("/api/v1/cadence-reports/monthly_ranking/2026-03?format=xlsx", headers=sup)
        assert xlsx.status_code == 200 and "departments" in load_workbook(io.BytesIO(xlsx.content)).sheetnames
        assert client.get("/api/v1/cadence-reports/monthly_ranking/2026-03",
                          headers=login("officer1")).status_code == 403
        # the run is claimed: a second monthly run for the same period stores nothing twice
        assert run(client, login, "monthly", date(2026, 4, 1))["ran"] is False


def test_officer_records_not_solved_and_repeat_next_month(session, client, login):
    with at(2026, 3, 10):
        ticket = f.make_ticket(session, "closed")
    with at(2026, 4, 1):
        cadences.run_for_date(session, "monthly", date(2026, 4, 1))
        session.commit()
        up = session.exec(select(FollowUp).where(FollowUp.ticket_id == ticket.id)).one()
        body = post(client, login("officer1"), f"/api/v1/follow-ups/{up.id}/answer", {"solved": False, "comment": "电话回访"})
        assert body["answer_channel"] == "officer_call" and body["reopened"] is True
    with at(2026, 5, 6):  # still not closed again: followed up again (source repeat)
        cadences.run_for_date(session, "monthly", date(2026, 5, 6))
        session.commit()
        sources = session.exec(select(FollowUp.source).where(FollowUp.ticket_id == ticket.id)
                               .order_by(FollowUp.id)).all()
        assert sources == ["closed", "repeat"]


def test_coverage_for_supervisors(session, client, login):
    with at(2026, 3, 2):
        ent = f.enterprise_of(session, "ent1")
        post(client, login("officer1"), "/api/v1/inquiries",
             {"enterprise_id": ent.id, "method": "phone", "finding": "none"}, 201)
        cov = client.get("/api/v1/inquiries/coverage", headers=login("supervisor1")).json()
        assert cov["total"]["enterprises"] == 300 and cov["total"]["covered"] == 1
        assert sum(r["enterprises"] for r in cov["by_grid"]) == 300
        local = client.get("/api/v1/inquiries/coverage", headers=login("supervisor2")).json()
        assert 0 < local["total"]["enterprises"] < 300
        problem(client.get("/api/v1/inquiries/coverage", headers=login("officer1")), 403)
        problem(client.get("/api/v1/inquiries/today", headers=login("supervisor1")), 403)


def test_joint_consultation_hard_cases_and_flags(session, client, login):
    with at(2026, 3, 2):
        hard = f.make_ticket(session, "dispatched", co_departments=["GDGS"])
        flagged = f.make_ticket(session, "in_progress", title="需要会诊的问题")
        body = post(client, login("supervisor1"), "/api/v1/joint-consultations/flags",
                    {"ticket_number": flagged.number, "reason": "多部门推诿"}, 201)
        assert body["ticket_id"] == flagged.id
        problem(client.post("/api/v1/joint-consultations/flags", json={"ticket_number": "QF2026-999999", "reason": "x"},
                            headers=login("supervisor1")), 422, "ticket_number")
        problem(client.post("/api/v1/joint-consultations/flags", json={"ticket_number": flagged.number, "reason": "x"},
                            headers=login("officer1")), 403)
    with at(2026, 4, 1):
        run(client, login, "quarterly", date(2026, 4, 1))
        joint = client.get("/api/v1/joint-consultations", headers=login("supervisor1")).json()[0]
        assert joint["session_date"] == "2026-04-07"  # 3 working days after April 1 (Qingming 4-6)
        detail = client.get(f"/api/v1/joint-consultations/{joint['id']}", headers=login("supervisor1")).json()
        reasons = {i["ticket_number"]: i["reasons"] for i in detail["agenda"]}
        assert "co_handling" in reasons[hard.number] and "flagged" in reasons[flagged.number]
        item = next(i for i in detail["agenda"] if i["ticket_number"] == flagged.number)
        out = post(client, login("supervisor1"), f"/api/v1/joint-consultations/{joint['id']}/items/{item['id']}/outcome",
                   {"outcome": "escalated", "note": "县领导督办"})
        assert out["outcome"] == "escalated" and f.reload(session, flagged).escalation_level == 1
        problem(client.post(f"/api/v1/joint-consultations/{joint['id']}/items/{item['id']}/outcome",
                            json={"outcome": "planned", "note": "x", "planned_date": "2026-05-01"},
                            headers=login("supervisor1")), 409)


# --------------------------------------------------------------------------- bad input, every write path

@pytest.fixture
def clinic(session):
    with at(2026, 3, 30):
        cadences.run_for_date(session, "weekly", date(2026, 3, 30))
        session.commit()
    region_id = f.enterprise_of(session, "ent1").grid_id
    from service.regions.models import Grid

    region = session.get(Grid, region_id).region_id
    return session.exec(select(CadenceSession).where(CadenceSession.region_id == region,
                                                     CadenceSession.period_key == "2026-W15")).one()


BAD_INQUIRIES = [
    ({"method": "visit", "finding": "none"}, "enterprise_id"),
    ({"enterprise_id": 1, "method": "fax", "finding": "none"}, "method"),
    ({"enterprise_id": 1, "method": "visit", "finding": "maybe"}, "finding"),
    ({"enterprise_id": 1, "method": "visit", "finding": "problems"}, "problems"),
    ({"enterprise_id": 1, "method": "visit", "finding": "none",
      "problems": [{"title": "t", "description": "d", "category_code": "problem.labour"}]}, "problems"),
    ({"enterprise_id": 1, "method": "visit", "finding": "problems",
      "problems": [{"title": "t", "description": "d"}]}, "problems"),
    ({"enterprise_id": 1, "method": "visit", "finding": "problems",
      "problems": [{"title": "t", "description": "d", "category_code": "nope"}]}, "problems[0].category_code"),
    ({"enterprise_id": 1, "method": "visit", "finding": "none", "contacted_at": "2030-01-01T00:00:00+08:00"},
     "contacted_at"),
    ({"enterprise_id": 1, "method": "visit", "finding": "none", "contacted_at": "2020-01-01T00:00:00+08:00"},
     "contacted_at"),
    ({"enterprise_id": 2**40, "method": "visit", "finding": "none"}, "enterprise_id"),
    ({"enterprise_id": 1, "method": "visit", "finding": "none", "note": "a\x00b"}, "note"),
    ({"enterprise_id": 1, "method": "visit", "finding": "none", "extra": 1}, "extra"),
]


@pytest.mark.parametrize(("body", "field"), BAD_INQUIRIES)
def test_bad_inquiry(session, client, login, body, field):
    with at(2026, 3, 2):
        problem(client.post("/api/v1/inquiries", json=body, headers=login("officer1")), 422, field)


def test_inquiry_outside_scope_and_wrong_role(session, client, login):
    with at(2026, 3, 2):
        other = session.exec(select(Enterprise).where(Enterprise.grid_id != f.enterprise_of(session, "ent1").grid_id,
                                                      Enterprise.officer_id.is_(None))).first()
        body = {"enterprise_id": other.id, "method": "visit", "finding": "none"}
        problem(client.post("/api/v1/inquiries", json=body, headers=login("officer1")), 422, "enterprise_id")
        problem(client.post("/api/v1/inquiries", json=body, headers=login("ent1")), 403)
        problem(client.post("/api/v1/inquiries", data="not json", headers={**login("officer1"),
                                                                            "content-type": "application/json"}), 422)


def test_bad_clinic_writes(session, client, login, clinic):
    with at(2026, 4, 2):
        url = f"/api/v1/clinics/{clinic.id}"
        problem(client.post(f"{url}/bookings", json={"topic": "  "}, headers=login("ent1")), 422, "topic")
        problem(client.post(f"{url}/bookings", json={}, headers=login("ent1")), 422, "topic")
        problem(client.post(f"{url}/bookings", json={"topic": "x" * 501}, headers=login("ent1")), 422, "topic")
        problem(client.post(f"{url}/bookings", json={"topic": "x"}, headers=login("officer1")), 403)
        problem(client.post("/api/v1/clinics/99999999/bookings", json={"topic": "x"}, headers=login("ent1")), 404)
        problem(client.post(f"/api/v1/clinics/{2**40}/bookings", json={"topic": "x"}, headers=login("ent1")), 422)
        booking = post(client, login("ent1"), f"{url}/bookings", {"topic": "融资对接"}, 201)
        item = client.get(url, headers=login("officer1")).json()["agenda"]
        item_id = next(i["id"] for i in item if i["booking_id"] == booking["id"])
        o = login("officer1")
        problem(client.post(f"{url}/items/{item_id}/outcome", json={"outcome": "bogus", "note": "x"}, headers=o), 422, "outcome")
        problem(client.post(f"{url}/items/{item_id}/outcome", json={"outcome": "planned", "note": "x"}, headers=o), 422)
        problem(client.post(f"{url}/items/{item_id}/outcome", json={"outcome": "resolved"}, headers=o), 422, "note")
        problem(client.post(f"{url}/items/{item_id}/outcome", json={"outcome": "planned", "note": "x",
                                                                    "planned_date": "2026-01-01"}, headers=o), 422, "planned_date")
        problem(client.post(f"{url}/items/{item_id}/outcome", json={"outcome": "resolved", "note": "x"},
                            headers=login("ent1")), 403)
        problem(client.post(f"{url}/items/99999999/outcome", json={"outcome": "resolved", "note": "x"}, headers=o), 404)
        ok = post(client, o, f"{url}/items/{item_id}/outcome", {"outcome": "planned", "note": "下周对接银行",
                                                                 "planned_date": "2026-04-30"})
        assert ok["planned_date"] == "2026-04-30"
        problem(client.post(f"{url}/problems", json={"enterprise_id": 1, "title": "t", "description": "d"}, headers=o), 422)
        problem(client.post(f"{url}/problems", json={"enterprise_id": 99999999, "title": "t", "description": "d",
                                                     "category_code": "problem.labour"}, headers=o), 422, "enterprise_id")
        problem(client.post(f"{url}/problems", json={"enterprise_id": 1, "title": "t", "description": "d",
                                                     "category_code": "problem.labour"}, headers=login("ent1")), 403)


def test_clinic_capacity(session, client, login, clinic):
    clinic.capacity = 1
    session.add(clinic)
    session.commit()
    with at(2026, 4, 2):
        post(client, login("ent1"), f"/api/v1/clinics/{clinic.id}/bookings", {"topic": "第一个"}, 201)
        from service.regions.models import Grid

        grid_id = f.enterprise_of(session, "ent2").grid_id
        same_region = grid_id is not None and session.get(Grid, grid_id).region_id == clinic.region_id
        # full (409) for an enterprise of the region; another region's enterprise does not see it (404)
        problem(client.post(f"/api/v1/clinics/{clinic.id}/bookings", json={"topic": "x"}, headers=login("ent2")),
                409 if same_region else 404)


def test_bad_schedule_run_and_report_requests(session, client, login):
    admin = login("admin")
    region = client.get("/api/v1/clinics/schedules", headers=admin).json()[0]["region_id"]
    problem(client.put(f"/api/v1/clinics/schedules/{region}", json={"weekday": 8, "start_time": "09:00", "place": "x"},
                       headers=admin), 422, "weekday")
    problem(client.put(f"/api/v1/clinics/schedules/{region}", json={"weekday": 2, "start_time": "25:00", "place": "x"},
                       headers=admin), 422, "start_time")
    problem(client.put("/api/v1/clinics/schedules/99999999", json={"weekday": 2, "start_time": "09:00", "place": "x"},
                       headers=admin), 404)
    problem(client.put(f"/api/v1/clinics/schedules/{region}", json={"weekday": 2, "start_time": "09:00", "place": "x"},
                       headers=login("supervisor1")), 403)
    ok = client.put(f"/api/v1/clinics/schedules/{region}", json={"weekday": 2, "start_time": "14:30", "place": "园区服务大厅"},
                    headers=admin)
    assert ok.status_code == 200 and ok.json()["weekday"] == 2
    problem(client.post("/api/v1/cadences/bogus/run", headers=admin), 422, "kind")
    problem(client.post("/api/v1/cadences/daily/run?date=2026-13-01", headers=admin), 422, "date")
    problem(client.post("/api/v1/cadences/daily/run?date=2026-03-02", headers=login("officer1")), 403)
    problem(client.get("/api/v1/cadence-reports/annual/2026?format=pdf", headers=login("supervisor1")), 422, "format")
    problem(client.get("/api/v1/cadence-reports/annual/1999", headers=login("supervisor1")), 404)
    problem(client.get("/api/v1/follow-ups?status=bogus", headers=login("ent1")), 422, "status")


def test_bad_follow_up_answers(session, client, login):
    with at(2026, 3, 10):
        ticket = f.make_ticket(session, "closed")
    with at(2026, 4, 1):
        cadences.run_for_date(session, "monthly", date(2026, 4, 1))
        session.commit()
        up = session.exec(select(FollowUp).where(FollowUp.ticket_id == ticket.id)).one()
        url = f"/api/v1/follow-ups/{up.id}/answer"
        problem(client.post(url, json={}, headers=login("ent1")), 422, "solved")
        problem(client.post(url, json={"solved": "maybe"}, headers=login("ent1")), 422, "solved")
        problem(client.post(url, json={"solved": True, "comment": "x" * 2001}, headers=login("ent1")), 422, "comment")
        problem(client.post(url, json={"solved": True}, headers=login("ent2")), 404)
        problem(client.post("/api/v1/follow-ups/99999999/answer", json={"solved": True}, headers=login("ent1")), 404)
        problem(client.post(f"/api/v1/follow-ups/{2**40}/answer", json={"solved": True}, headers=login("ent1")), 422)
        assert post(client, login("ent1"), url, {"solved": True})["status"] == "solved"
        assert f.reload(session, ticket).status == "closed"

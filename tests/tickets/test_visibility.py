"""Row visibility (SPEC §1): who sees which ticket. A refused read is 404, never 403, and a ticket
outside one's scope is absent from every list and cannot be acted on."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from service.enterprises.models import Enterprise
from service.tickets.models import Ticket
from service.users.models import OfficerGrid
from tests import factories as f

PROBLEM = "application/problem+json"


def can_read(client, headers, ticket: Ticket) -> bool:
    resp = client.get(f"/api/v1/tickets/{ticket.number}", headers=headers)
    if resp.status_code == 404:
        assert resp.headers["content-type"].startswith(PROBLEM)
        ev = client.get(f"/api/v1/tickets/{ticket.number}/events", headers=headers)
        assert ev.status_code == 404, "history must be as hidden as the ticket"
        return False
    assert resp.status_code == 200, resp.text
    assert client.get(f"/api/v1/tickets/{ticket.number}/events", headers=headers).status_code == 200
    return True


def listed(client, headers, **params) -> set[str]:
    numbers: set[str] = set()
    cursor = None
    while True:
        q = {"limit": 200, **params, **({"cursor": cursor} if cursor else {})}
        resp = client.get("/api/v1/tickets", params=q, headers=headers)
        assert resp.status_code == 200, resp.text
        numbers |= {t["number"] for t in resp.json()["items"]}
        cursor = resp.json()["next_cursor"]
        if cursor is None:
            return numbers


def assert_sees_exactly(client, headers, tickets: dict[str, Ticket], visible: set[str]) -> None:
    """``headers`` reads exactly the tickets named in ``visible`` and lists exactly those."""
    ours = {t.number: k for k, t in tickets.items()}
    readable = {k for k, t in tickets.items() if can_read(client, headers, t)}
    assert readable == visible
    in_list = {ours[n] for n in listed(client, headers) if n in ours}
    assert in_list == visible


@pytest.fixture
def world(session: Session) -> dict[str, Ticket]:
    """Tickets of several enterprises in several regions and stages.

    ent1  → enterprise #1, grid 330428400-01 (经开区), officer1
    ent6  → grid 330428400-02 (经开区), officer1
    ent2  → grid 330428105-01 (桐溪镇), officer12
    ent11 → grid 330428100-01 (禾丰镇), officer8
    """
    tickets = {
        "a_sub": f.make_ticket(session, "submitted", enterprise="ent1", commit=False),
        "a_disp": f.make_ticket(session, "dispatched", enterprise="ent1", lead_department="RSJ",
                                co_departments=["JYJ"], commit=False),
        "a6_prog": f.make_ticket(session, "in_progress", enterprise="ent6", category_code="problem.power",
                                 commit=False),
        "b_sub": f.make_ticket(session, "submitted", enterprise="ent2", commit=False),
        "b_disp": f.make_ticket(session, "dispatched", enterprise="ent2", lead_department="RSJ", commit=False),
        "c_replied": f.make_ticket(session, "replied", enterprise="ent11", category_code="problem.power",
                                   commit=False),
    }
    session.commit()
    return tickets


ALL = {"a_sub", "a_disp", "a6_prog", "b_sub", "b_disp", "c_replied"}


# --------------------------------------------------------------------------- enterprises

def test_enterprise_sees_only_its_own(client, login, world):
    assert_sees_exactly(client, login("ent1"), world, {"a_sub", "a_disp"})
    assert_sees_exactly(client, login("ent2"), world, {"b_sub", "b_disp"})
    assert_sees_exactly(client, login("ent20"), world, set())


def test_enterprise_filter_on_another_enterprise_is_empty(client, login, world):
    other = world["b_sub"].enterprise_id
    assert listed(client, login("ent1"), enterprise_id=other) == set()


@pytest.mark.parametrize(("action", "body"), [
    ("comment", {"text": "看看别人的"}), ("add_info", {"text": "补充"}),
    ("confirm", {"rating": "satisfied"}), ("reopen", {"reason": "不满意"}),
])
def test_enterprise_cannot_act_on_another_enterprises_ticket(session, client, login, world, action, body):
    target = world["b_disp"]
    before = (f.reload(session, target).version, len(f.events(session, target)))
    resp = client.post(f"/api/v1/tickets/{target.number}/{action}", json=body, headers=login("ent1"))
    assert resp.status_code == 404
    assert resp.headers["content-type"].startswith(PROBLEM)
    assert (f.reload(session, target).version, len(f.events(session, target))) == before


def test_refused_read_looks_like_a_missing_ticket(client, login, world):
    hidden = client.get(f"/api/v1/tickets/{world['b_sub'].number}", headers=login("ent1"))
    missing = client.get("/api/v1/tickets/QF2026-999999", headers=login("ent1"))
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["type"] == missing.json()["type"]
    assert hidden.json()["title"] == missing.json()["title"]


def test_enterprise_cannot_merge_into_or_link_a_hidden_ticket(session, client, login, world):
    # officer1 cannot see b_sub: the number is "unknown" in a merge body too
    resp = client.post(f"/api/v1/tickets/{world['a_sub'].number}/merge", json={"into": world["b_sub"].number},
                       headers=login("officer1"))
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["field"] == "into"
    assert f.reload(session, world["a_sub"]).status == "submitted"


# --------------------------------------------------------------------------- departments

def test_department_sees_only_what_is_dispatched_to_it(client, login, world):
    # RSJ is lead of a_disp and b_disp; JYJ co-handles a_disp; GDGS leads a6_prog and c_replied
    assert_sees_exactly(client, login("dept_rsj"), world, {"a_disp", "b_disp"})
    assert_sees_exactly(client, login("dept_jyj"), world, {"a_disp"})
    assert_sees_exactly(client, login("dept_gdgs"), world, {"a6_prog", "c_replied"})
    assert_sees_exactly(client, login("dept_sfj"), world, set())


def test_department_sees_ticket_once_dispatched_and_not_after_returning_it(session, client, login):
    ticket = f.make_ticket(session, "accepted")
    rsj, jyj = login("dept_rsj"), login("dept_jyj")
    tickets = {"t": ticket}
    assert_sees_exactly(client, rsj, tickets, set())

    officer = login("officer1")
    resp = client.post(f"/api/v1/tickets/{ticket.number}/dispatch",
                       json={"lead_department_id": f.department(session, "RSJ").id,
                             "co_department_ids": [f.department(session, "JYJ").id]}, headers=officer)
    assert resp.status_code == 200, resp.text
    assert_sees_exactly(client, rsj, tickets, {"t"})
    assert_sees_exactly(client, jyj, tickets, {"t"})

    resp = client.post(f"/api/v1/tickets/{ticket.number}/return", json={"reason": "不属于本单位职责"}, headers=rsj)
    assert resp.status_code == 200, resp.text
    assert_sees_exactly(client, rsj, tickets, set())
    assert_sees_exactly(client, jyj, tickets, set())
    # and it cannot act on it any more
    resp = client.post(f"/api/v1/tickets/{ticket.number}/claim", json={}, headers=rsj)
    assert resp.status_code == 404

    # dispatched elsewhere: the new lead sees it, RSJ still does not
    resp = client.post(f"/api/v1/tickets/{ticket.number}/dispatch",
                       json={"lead_department_id": f.department(session, "JXJ").id}, headers=officer)
    assert resp.status_code == 200, resp.text
    assert_sees_exactly(client, login("dept_jxj"), tickets, {"t"})
    assert_sees_exactly(client, rsj, tickets, set())


def test_department_cannot_act_on_a_ticket_not_dispatched_to_it(session, client, login, world):
    target = world["a6_prog"]  # GDGS
    resp = client.post(f"/api/v1/tickets/{target.number}/reply", json={"text": "越权答复"}, headers=login("dept_rsj"))
    assert resp.status_code == 404
    assert f.reload(session, target).status == "in_progress"


def test_department_filter_does_not_widen_visibility(client, login, world, session):
    gdgs = f.department(session, "GDGS").id
    assert listed(client, login("dept_rsj"), department_id=gdgs) & {t.number for t in world.values()} == set()


# --------------------------------------------------------------------------- officers

def test_officer_sees_their_enterprises_and_grids(client, login, world):
    assert_sees_exactly(client, login("officer1"), world, {"a_sub", "a_disp", "a6_prog"})
    assert_sees_exactly(client, login("officer12"), world, {"b_sub", "b_disp"})
    assert_sees_exactly(client, login("officer8"), world, {"c_replied"})
    assert_sees_exactly(client, login("officer9"), world, set())


def test_officer_sees_through_grid_without_assignment(session, client, login, world):
    ent6 = f.enterprise_of(session, "ent6")
    ent6.officer_id = None  # no longer point-to-point: officer1 still covers the grid
    session.add(ent6)
    for t in world.values():
        if t.enterprise_id == ent6.id:
            t.officer_id = None
            session.add(t)
    session.commit()
    assert can_read(client, login("officer1"), world["a6_prog"])


def test_officer_sees_through_enterprise_assignment_outside_grids(session, client, login, world):
    ent2: Enterprise = f.enterprise_of(session, "ent2")
    assert_sees_exactly(client, login("officer1"), world, {"a_sub", "a_disp", "a6_prog"})
    ent2.officer_id = f.user(session, "officer1").id  # 首席服务官 assigned across grids
    session.add(ent2)
    session.commit()
    assert_sees_exactly(client, login("officer1"), world, {"a_sub", "a_disp", "a6_prog", "b_sub", "b_disp"})


def test_officer_sees_tickets_they_are_responsible_for(session, client, login, world):
    t = world["c_replied"]
    t.officer_id = f.user(session, "officer9").id
    session.add(t)
    session.commit()
    assert_sees_exactly(client, login("officer9"), world, {"c_replied"})


def test_officer_cannot_act_outside_scope(session, client, login, world):
    target = world["b_sub"]
    resp = client.post(f"/api/v1/tickets/{target.number}/accept", json={}, headers=login("officer1"))
    assert resp.status_code == 404
    assert f.reload(session, target).status == "submitted"


# --------------------------------------------------------------------------- supervisors and admin

def test_town_supervisor_sees_only_their_region(client, login, world):
    # supervisor2 covers 禾丰镇 (330428100): only ent11's ticket
    assert_sees_exactly(client, login("supervisor2"), world, {"c_replied"})


def test_town_supervisor_cannot_act_outside_region(session, client, login, world):
    target = world["a_disp"]
    resp = client.post(f"/api/v1/tickets/{target.number}/escalate", json={}, headers=login("supervisor2"))
    assert resp.status_code == 404
    assert f.reload(session, target).escalation_level == 0
    inside = world["c_replied"]
    resp = client.post(f"/api/v1/tickets/{inside.number}/escalate", json={}, headers=login("supervisor2"))
    assert resp.status_code == 200, resp.text


def test_county_supervisor_sees_all(client, login, world):
    assert_sees_exactly(client, login("supervisor1"), world, ALL)


def test_admin_sees_all(client, login, world):
    assert_sees_exactly(client, login("admin"), world, ALL)


def test_anonymous_sees_nothing(client, world):
    resp = client.get("/api/v1/tickets")
    assert resp.status_code == 401
    assert client.get(f"/api/v1/tickets/{world['a_sub'].number}").status_code == 401


# --------------------------------------------------------------------------- enterprises list

def test_enterprise_user_sees_only_its_enterprise_record(session, client, login):
    own = f.enterprise_of(session, "ent1")
    other = f.enterprise_of(session, "ent2")
    h = login("ent1")
    rows = client.get("/api/v1/enterprises", headers=h).json()
    assert [r["id"] for r in rows] == [own.id]
    assert client.get(f"/api/v1/enterprises/{other.id}", headers=h).status_code == 404
    assert client.get(f"/api/v1/enterprises/{own.id}", headers=h).status_code == 200


def test_officer_enterprise_list_is_their_scope(session, client, login):
    rows = client.get("/api/v1/enterprises", params={"limit": 1000}, headers=login("officer1")).json()
    officer1 = f.user(session, "officer1").id
    grids = set(session.exec(select(OfficerGrid.grid_id).where(OfficerGrid.officer_id == officer1)).all())
    assert rows, "officer1 has enterprises"
    ids = {r["id"] for r in rows}
    assert f.enterprise_of(session, "ent1").id in ids and f.enterprise_of(session, "ent2").id not in ids
    assert all(r["officer_id"] == officer1 or r["grid_id"] in grids for r in rows)
    expected = session.exec(select(Enterprise.id).where(
        (Enterprise.officer_id == officer1) | Enterprise.grid_id.in_(grids))).all()
    assert ids == set(expected)


def test_number_of_a_ticket_out_of_scope_is_not_shown_through_a_merge_or_link(session, client, login, world):
    """A merge or link made by someone who sees both tickets must not reveal the other ticket's
    number to a reader who may open only one of them (the read model and the history)."""
    # officer12 (桐溪镇, ent2's grid) also covers ent1's grid for this test: sees both sides
    session.add(OfficerGrid(officer_id=f.user(session, "officer12").id, grid_id=world["a_sub"].grid_id))
    session.commit()
    both, admin = login("officer12"), login("admin")
    a_sub, b_sub, a_disp, b_disp = (world[k].number for k in ("a_sub", "b_sub", "a_disp", "b_disp"))
    assert client.post(f"/api/v1/tickets/{a_sub}/merge", json={"into": b_sub}, headers=both).status_code == 200
    assert client.post(f"/api/v1/tickets/{a_disp}/link", json={"other": b_disp}, headers=both).status_code == 200

    assert client.get(f"/api/v1/tickets/{a_sub}", headers=admin).json()["duplicate_of"] == b_sub
    for user in ("ent1", "officer1"):
        headers = login(user)
        read = client.get(f"/api/v1/tickets/{a_sub}", headers=headers).json()
        assert read["duplicate_of"] is None
        listed_row = next(t for t in client.get("/api/v1/tickets", params={"limit": 200}, headers=headers)
                          .json()["items"] if t["number"] == a_sub)
        assert listed_row["duplicate_of"] is None
        for number in (a_sub, a_disp):
            history = client.get(f"/api/v1/tickets/{number}/events", headers=headers).json()
            text = str(history)
            assert b_sub not in text and b_disp not in text
    merge_event = next(e for e in client.get(f"/api/v1/tickets/{a_sub}/events", headers=admin).json()
                       if e["action"] == "merge")
    assert merge_event["payload"]["into"] == b_sub

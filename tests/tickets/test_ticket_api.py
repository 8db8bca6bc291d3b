"""The ticket API (SPEC §3, §7): every action by the right and the wrong role, optimistic
concurrency, idempotent submission, on-behalf submission, guards, filters, cursor pagination,
events, and the login endpoints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from service.auth.security import create_access_token
from service.tickets import workflow as wf
from service.tickets.models import IdempotencyKey, Ticket, TicketEvent
from tests import factories as f

PROBLEM = "application/problem+json"
USER_OF_ROLE = {"enterprise": "ent1", "officer": "officer1", "department": "dept_rsj",
                "supervisor": "supervisor1", "admin": "admin"}


def problem(resp, status: int) -> dict[str, Any]:
    """Assert ``resp`` is an RFC 9457 problem with ``status``; return its body."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM), resp.headers["content-type"]
    body = resp.json()
    for key in ("type", "title", "status", "detail"):
        assert key in body, body
    assert body["status"] == status
    return body


def ticket_count(session: Session) -> int:
    return session.exec(select(func.count()).select_from(Ticket)).one()


def event_count(session: Session, ticket: Ticket) -> int:
    return session.exec(select(func.count()).select_from(TicketEvent)
                        .where(TicketEvent.ticket_id == ticket.id)).one()


def snapshot(session: Session, ticket: Ticket) -> tuple:
    """What must not change when a request is refused."""
    t = f.reload(session, ticket)
    return (t.status, t.version, t.lead_department_id, t.return_count, t.reopen_count, t.rating,
            t.escalation_level, t.remind_count, t.duplicate_of_id, event_count(session, t))


def post_action(client: TestClient, headers: dict, number: str, action: str, body: dict | None = None,
                if_match: str | None = None):
    h = dict(headers)
    if if_match is not None:
        h["If-Match"] = if_match
    return client.post(f"/api/v1/tickets/{number}/{action}", json=body if body is not None else {},
                       headers=h)


# --------------------------------------------------------------------------- every action, right role

# (action, start status, username, make_ticket kwargs, status after)
RIGHT = [
    ("accept", "submitted", "officer1", {}, "accepted"),
    ("reject", "submitted", "officer1", {}, "rejected"),
    ("answer", "submitted", "officer1", {"category_code": "consultation.policy"}, "replied"),
    ("dispatch", "accepted", "officer1", {}, "dispatched"),
    ("dispatch", "accepted", "supervisor1", {}, "dispatched"),
    ("claim", "dispatched", "dept_rsj", {}, "in_progress"),
    ("return", "dispatched", "dept_rsj", {}, "accepted"),
    ("hold", "in_progress", "dept_rsj", {}, "on_hold"),
    ("resume", "on_hold", "dept_rsj", {}, "in_progress"),
    ("reply", "in_progress", "dept_rsj", {}, "replied"),
    ("confirm", "replied", "ent1", {}, "closed"),
    ("confirm", "replied", "officer1", {}, "closed"),  # callback (回访)
    ("reopen", "replied", "ent1", {}, "dispatched"),
    ("reopen", "replied", "officer1", {}, "dispatched"),
    ("reopen", "closed", "officer1", {}, "dispatched"),
    ("reopen", "closed", "supervisor1", {}, "dispatched"),
    ("comment", "in_progress", "ent1", {}, "in_progress"),
    ("comment", "in_progress", "officer1", {}, "in_progress"),
    ("comment", "in_progress", "dept_rsj", {}, "in_progress"),
    ("comment", "in_progress", "supervisor1", {}, "in_progress"),
    ("comment", "closed", "ent1", {}, "closed"),
    ("add_info", "dispatched", "ent1", {}, "dispatched"),
    ("add_info", "submitted", "officer1", {}, "submitted"),
    ("remind", "dispatched", "officer1", {}, "dispatched"),
    ("remind", "in_progress", "supervisor1", {}, "in_progress"),
    ("escalate", "in_progress", "supervisor1", {}, "in_progress"),
    ("merge", "submitted", "officer1", {}, "rejected"),
    ("merge", "accepted", "supervisor1", {}, "rejected"),
    ("link", "in_progress", "officer1", {}, "in_progress"),
    ("request_extension", "in_progress", "dept_rsj", {}, "in_progress"),
    ("request_extension", "on_hold", "dept_rsj", {}, "on_hold"),
    ("approve_extension", "in_progress", "supervisor1", {}, "in_progress"),
    ("deny_extension", "on_hold", "supervisor1", {}, "on_hold"),
]


def test_every_api_action_is_covered():
    # no endpoint of their own: the sweep's auto-close; attach (POST /tickets/{number}/attachments)
    assert {a for a, *_ in RIGHT} == {a.value for a in wf.Action} - {"auto_close", "attach"}


def test_auto_close_has_no_endpoint(session, client, login):
    ticket = f.make_ticket(session, "replied")
    resp = post_action(client, login("officer1"), ticket.number, "auto_close")
    assert resp.status_code in (404, 405)
    assert f.reload(session, ticket).status == "replied"


@pytest.mark.parametrize(("action", "start", "username", "kwargs", "after"), RIGHT,
                         ids=[f"{a}-{s}-{u}" for a, s, u, _k, _n in RIGHT])
def test_action_by_right_role(session, client, login, action, start, username, kwargs, after):
    ticket = f.make_ticket(session, start, **kwargs)
    body = f.action_body(session, ticket, action)
    session.commit()
    headers = login(username)
    got = client.get(f"/api/v1/tickets/{ticket.number}", headers=headers)
    assert got.status_code == 200, got.text
    etag = got.headers["ETag"]
    version = got.json()["version"]
    assert etag == f'"{version}"'
    before_events = event_count(session, ticket)

    resp = post_action(client, headers, ticket.number, action, body, if_match=etag)

    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["status"] == after
    assert data["version"] == version + 1
    assert resp.headers["ETag"] == f'"{version + 1}"'
    t = f.reload(session, ticket)
    assert t.status == after and t.version == version + 1
    evs = f.events(session, t)
    assert len(evs) == before_events + 1
    last = evs[-1]
    assert last.action == action
    assert last.from_status == start and last.to_status == after
    assert last.actor_role == f.user(session, username).role
    assert last.actor_id == f.user(session, username).id
    if action in wf.REASON_REQUIRED:
        assert last.reason == body["reason"]


def _wrong_roles(status: str, action: str) -> list[str]:
    roles = wf.TRANSITIONS[(wf.TicketStatus(status), wf.Action(action))].roles
    return [r for r in USER_OF_ROLE if r not in roles]


# (action, start status) → the roles that may not do it; one ticket per pair, every wrong role tried
WRONG = list(dict.fromkeys((a, s) for a, s, _u, _k, _n in RIGHT))


def test_wrong_role_cases_cover_every_role():
    tried = {(a, s, r) for a, s in WRONG for r in _wrong_roles(s, a)}
    assert len(tried) >= 60
    assert {r for _a, _s, r in tried} == set(USER_OF_ROLE)


@pytest.mark.parametrize(("action", "start"), WRONG, ids=[f"{a}-{s}" for a, s in WRONG])
def test_action_by_wrong_role_changes_nothing(session, client, login, action, start):
    kwargs = next(k for a, s, _u, k, _n in RIGHT if a == action and s == start)
    ticket = f.make_ticket(session, start, **kwargs)
    body = f.action_body(session, ticket, action)
    session.commit()
    before = snapshot(session, ticket)
    for role in _wrong_roles(start, action):
        resp = post_action(client, login(USER_OF_ROLE[role]), ticket.number, action, body)
        if role == "department" and ticket.lead_department_id is None:
            problem(resp, 404)  # not dispatched to it: the department cannot even see it
        else:
            assert problem(resp, 403)["type"] == "/problems/forbidden", role
        assert snapshot(session, ticket) == before, role


# --------------------------------------------------------------------------- illegal moves

@pytest.mark.parametrize(("start", "action", "username"), [
    ("in_progress", "accept", "officer1"),
    ("submitted", "confirm", "ent1"),
    ("closed", "reply", "dept_rsj"),
    ("rejected", "dispatch", "officer1"),
    ("replied", "hold", "dept_rsj"),
    ("dispatched", "dispatch", "supervisor1"),
    ("closed", "add_info", "ent1"),
    ("in_progress", "merge", "officer1"),
])
def test_illegal_move_is_409_naming_status_and_allowed_actions(session, client, login, start, action, username):
    ticket = f.make_ticket(session, start)
    body = f.action_body(session, ticket, action)
    session.commit()
    before = snapshot(session, ticket)
    resp = post_action(client, login(username), ticket.number, action, body)
    p = problem(resp, 409)
    assert p["type"] == "/problems/illegal-transition"
    assert p["current_status"] == start
    assert p["allowed_actions"] == wf.allowed_actions(start)
    assert start in p["detail"]
    assert snapshot(session, ticket) == before


def test_answer_on_a_problem_is_409(session, client, login):
    ticket = f.make_ticket(session, "submitted", category_code="problem.power")
    p = problem(post_action(client, login("officer1"), ticket.number, "answer", {"text": "答复"}), 409)
    assert p["current_status"] == "submitted"
    assert "answer" not in p["allowed_actions"]
    assert f.reload(session, ticket).status == "submitted"


# --------------------------------------------------------------------------- If-Match

def test_if_match_stale_is_412_and_changes_nothing(session, client, login):
    ticket = f.make_ticket(session, "submitted")
    headers = login("officer1")
    etag = client.get(f"/api/v1/tickets/{ticket.number}", headers=headers).headers["ETag"]
    assert post_action(client, headers, ticket.number, "comment", {"text": "先看看"}, if_match=etag).status_code == 200
    before = snapshot(session, ticket)
    p = problem(post_action(client, headers, ticket.number, "accept", {}, if_match=etag), 412)
    assert p["type"] == "/problems/version-conflict"
    assert p["current_version"] == before[1]
    assert snapshot(session, ticket) == before
    fresh = client.get(f"/api/v1/tickets/{ticket.number}", headers=headers).headers["ETag"]
    assert fresh != etag
    resp = post_action(client, headers, ticket.number, "accept", {}, if_match=fresh)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "accepted"


@pytest.mark.parametrize("form", ['W/"{v}"', "{v}", '"{v}"', "*"])
def test_if_match_forms(session, client, login, form):
    ticket = f.make_ticket(session, "submitted")
    resp = post_action(client, login("officer1"), ticket.number, "accept", {},
                       if_match=form.format(v=ticket.version))
    assert resp.status_code == 200, resp.text


def test_without_if_match_last_writer_still_bumps_version(session, client, login):
    ticket = f.make_ticket(session, "submitted")
    v = ticket.version
    resp = post_action(client, login("officer1"), ticket.number, "accept")
    assert resp.json()["version"] == v + 1


# --------------------------------------------------------------------------- idempotent submission

SUBMIT = {"title": "园区道路破损", "description": "园区东路路面破损严重，货车通行困难。",
          "category_code": "problem.transport"}


def test_idempotent_submission_same_key_same_body(session, client, login):
    headers = {**login("ent1"), "Idempotency-Key": "7b1c-retry-1"}
    before = ticket_count(session)
    first = client.post("/api/v1/tickets", json=SUBMIT, headers=headers)
    second = client.post("/api/v1/tickets", json=SUBMIT, headers=headers)
    assert first.status_code == 201, first.text
    assert second.status_code == 201, second.text
    assert first.json()["number"] == second.json()["number"]
    assert first.headers["Location"] == second.headers["Location"] == f"/api/v1/tickets/{first.json()['number']}"
    assert ticket_count(session) == before + 1
    t = session.exec(select(Ticket).where(Ticket.number == first.json()["number"])).one()
    assert event_count(session, t) == 1
    assert session.exec(select(func.count()).select_from(IdempotencyKey)).one() == 1


def test_idempotency_key_with_other_body_is_422(session, client, login):
    headers = {**login("ent1"), "Idempotency-Key": "7b1c-retry-2"}
    assert client.post("/api/v1/tickets", json=SUBMIT, headers=headers).status_code == 201
    before = ticket_count(session)
    p = problem(client.post("/api/v1/tickets", json={**SUBMIT, "title": "另一个问题"}, headers=headers), 422)
    assert "Idempotency-Key" in p["detail"] or p.get("field") == "Idempotency-Key"
    assert ticket_count(session) == before


def test_idempotency_keys_are_per_user(session, client, login):
    a = client.post("/api/v1/tickets", json=SUBMIT, headers={**login("ent1"), "Idempotency-Key": "k"})
    b = client.post("/api/v1/tickets", json=SUBMIT, headers={**login("ent6"), "Idempotency-Key": "k"})
    assert a.status_code == b.status_code == 201
    assert a.json()["number"] != b.json()["number"]


def test_without_idempotency_key_each_post_is_a_ticket(session, client, login):
    headers = login("ent1")
    before = ticket_count(session)
    numbers = {client.post("/api/v1/tickets", json=SUBMIT, headers=headers).json()["number"] for _ in range(2)}
    assert len(numbers) == 2
    assert ticket_count(session) == before + 2


# --------------------------------------------------------------------------- who may submit

def test_enterprise_submits_for_itself(session, client, login):
    resp = client.post("/api/v1/tickets", json=SUBMIT, headers=login("ent1"))
    assert resp.status_code == 201, resp.text
    data = resp.json()
    ent = f.enterprise_of(session, "ent1")
    assert data["status"] == "submitted" and data["channel"] == "web"
    assert data["enterprise_id"] == ent.id and data["grid_id"] == ent.grid_id
    assert data["officer_id"] == ent.officer_id
    assert data["service_type"] == "problem"
    assert data["number"].startswith("QF")
    assert resp.headers["ETag"] == '"1"'


def test_officer_submits_on_behalf(session, client, login):
    ent = f.enterprise_of(session, "ent1")
    body = {**SUBMIT, "enterprise_id": ent.id, "channel": "hotline", "priority": "urgent"}
    resp = client.post("/api/v1/tickets", json=body, headers=login("officer1"))
    assert resp.status_code == 201, resp.text
    data = resp.json()
    assert data["channel"] == "hotline" and data["priority"] == "urgent"
    assert data["enterprise_id"] == ent.id
    assert data["submitted_by_id"] == f.user(session, "officer1").id


@pytest.mark.parametrize("missing", ["enterprise_id", "channel"])
def test_on_behalf_needs_enterprise_and_channel(session, client, login, missing):
    body = {**SUBMIT, "enterprise_id": f.enterprise_of(session, "ent1").id, "channel": "window"}
    del body[missing]
    before = ticket_count(session)
    p = problem(client.post("/api/v1/tickets", json=body, headers=login("officer1")), 422)
    assert p["errors"][0]["field"] == missing
    assert ticket_count(session) == before


def test_officer_cannot_submit_for_enterprise_outside_scope(session, client, login):
    other = f.enterprise_of(session, "ent2")  # officer12's enterprise
    body = {**SUBMIT, "enterprise_id": other.id, "channel": "hotline"}
    p = problem(client.post("/api/v1/tickets", json=body, headers=login("officer1")), 422)
    assert p["errors"][0]["field"] == "enterprise_id"


def test_enterprise_cannot_submit_for_another_enterprise(session, client, login):
    other = f.enterprise_of(session, "ent2")
    before = ticket_count(session)
    problem(client.post("/api/v1/tickets", json={**SUBMIT, "enterprise_id": other.id}, headers=login("ent1")), 403)
    assert ticket_count(session) == before


def test_enterprise_may_name_itself(session, client, login):
    own = f.enterprise_of(session, "ent1")
    resp = client.post("/api/v1/tickets", json={**SUBMIT, "enterprise_id": own.id}, headers=login("ent1"))
    assert resp.status_code == 201


def test_enterprise_cannot_use_staff_channels(session, client, login):
    p = problem(client.post("/api/v1/tickets", json={**SUBMIT, "channel": "hotline"}, headers=login("ent1")), 422)
    assert p["errors"][0]["field"] == "channel"


@pytest.mark.parametrize("username", ["dept_rsj", "supervisor1", "supervisor2"])
def test_department_and_supervisor_cannot_submit(session, client, login, username):
    body = {**SUBMIT, "enterprise_id": f.enterprise_of(session, "ent1").id, "channel": "hotline"}
    before = ticket_count(session)
    problem(client.post("/api/v1/tickets", json=body, headers=login(username)), 403)
    assert ticket_count(session) == before


def test_submit_without_login_is_401(session, client):
    problem(client.post("/api/v1/tickets", json=SUBMIT), 401)


# --------------------------------------------------------------------------- co-handling, returns

def test_co_handling_department_can_comment_but_not_claim(session, client, login):
    ticket = f.make_ticket(session, "dispatched", lead_department="RSJ", co_departments=["JYJ"])
    co = login("dept_jyj")
    got = client.get(f"/api/v1/tickets/{ticket.number}", headers=co)
    assert got.status_code == 200
    assert got.json()["co_department_ids"] == [f.department(session, "JYJ").id]
    resp = post_action(client, co, ticket.number, "comment", {"text": "协办意见：可提供学位信息"})
    assert resp.status_code == 200, resp.text
    before = snapshot(session, ticket)
    problem(post_action(client, co, ticket.number, "claim"), 403)
    problem(post_action(client, co, ticket.number, "return", {"reason": "不是我们"}), 403)
    assert snapshot(session, ticket) == before
    assert post_action(client, login("dept_rsj"), ticket.number, "claim").status_code == 200


def test_co_handling_department_cannot_reply(session, client, login):
    ticket = f.make_ticket(session, "in_progress", lead_department="RSJ", co_departments=["JYJ"])
    problem(post_action(client, login("dept_jyj"), ticket.number, "reply", {"text": "已办"}), 403)
    problem(post_action(client, login("dept_jyj"), ticket.number, "hold", {"reason": "等"}), 403)
    assert f.reload(session, ticket).status == "in_progress"


def test_after_two_returns_only_supervisor_dispatches(session, client, login):
    ticket = f.make_returned(session, returns=2)
    before = snapshot(session, ticket)
    p = problem(post_action(client, login("officer1"), ticket.number, "dispatch", {}), 403)
    assert p["allowed_roles"] == ["supervisor"]
    assert snapshot(session, ticket) == before
    resp = post_action(client, login("supervisor1"), ticket.number, "dispatch",
                       {"lead_department_id": f.department(session, "JXJ").id})
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "dispatched"
    assert resp.json()["return_count"] == 2


def test_after_one_return_officer_may_dispatch(session, client, login):
    ticket = f.make_returned(session, returns=1)
    assert post_action(client, login("officer1"), ticket.number, "dispatch", {}).status_code == 200


def test_return_clears_lead_and_counts(session, client, login):
    ticket = f.make_ticket(session, "dispatched", co_departments=["JYJ"])
    resp = post_action(client, login("dept_rsj"), ticket.number, "return", {"reason": "职责不符"})
    data = resp.json()
    assert data["status"] == "accepted" and data["return_count"] == 1
    assert data["lead_department_id"] is None and data["co_department_ids"] == []


def test_dispatch_sets_lead_and_co_departments(session, client, login):
    ticket = f.make_ticket(session, "accepted")
    lead, co1, co2 = (f.department(session, c).id for c in ("ZJJ", "JTJ", "GDGS"))
    resp = post_action(client, login("officer1"), ticket.number, "dispatch",
                       {"lead_department_id": lead, "co_department_ids": [co2, co1, lead, co1]})
    data = resp.json()
    assert data["lead_department_id"] == lead
    assert data["co_department_ids"] == sorted([co1, co2])
    assert data["dispatched_at"] is not None


def test_dispatch_defaults_to_category_department(session, client, login):
    ticket = f.make_ticket(session, "accepted", category_code="problem.power")
    data = post_action(client, login("officer1"), ticket.number, "dispatch").json()
    assert data["lead_department_id"] == f.department(session, "GDGS").id


def test_dispatch_to_inactive_department_is_422(session, client, login):
    ticket = f.make_ticket(session, "accepted")
    dept = f.department(session, "JXJ")
    dept.is_active = False
    session.add(dept)
    session.commit()
    p = problem(post_action(client, login("officer1"), ticket.number, "dispatch",
                            {"lead_department_id": dept.id}), 422)
    assert p["errors"][0]["field"] == "lead_department_id"
    assert f.reload(session, ticket).status == "accepted"


# --------------------------------------------------------------------------- merge, reopen, others

def test_merge_makes_rejected_with_duplicate_of(session, client, login):
    survivor = f.make_ticket(session, "accepted", title="原件")
    dup = f.make_ticket(session, "submitted", title="重复件")
    resp = post_action(client, login("officer1"), dup.number, "merge", {"into": survivor.number})
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["status"] == "rejected"
    assert data["duplicate_of"] == survivor.number
    assert data["reject_reason"] == "duplicate"
    assert f.reload(session, survivor).status == "accepted"
    ev = f.events(session, dup)[-1]
    assert ev.action == "merge" and ev.reason == "duplicate" and ev.payload == {"into": survivor.number}


@pytest.mark.parametrize("into", ["self", "QF2026-999999", "rejected"])
def test_merge_into_bad_target_is_422(session, client, login, into):
    dup = f.make_ticket(session, "submitted")
    if into == "self":
        into = dup.number
    elif into == "rejected":
        into = f.make_ticket(session, "rejected").number
    before = snapshot(session, dup)
    p = problem(post_action(client, login("officer1"), dup.number, "merge", {"into": into}), 422)
    assert p["errors"][0]["field"] == "into"
    assert snapshot(session, dup) == before


def test_reopen_increments_reopen_count(session, client, login):
    ticket = f.make_ticket(session, "replied")
    lead = ticket.lead_department_id
    data = post_action(client, login("ent1"), ticket.number, "reopen", {"reason": "没解决"}).json()
    assert data["status"] == "dispatched" and data["reopen_count"] == 1
    assert data["rating"] == "dissatisfied" and data["lead_department_id"] == lead
    assert data["claimed_at"] is None
    # handled again, replied, confirmed, then reopened by a follow-up (officer)
    h = login("dept_rsj")
    assert post_action(client, h, ticket.number, "claim").status_code == 200
    assert post_action(client, h, ticket.number, "reply", {"text": "再次处理"}).status_code == 200
    assert post_action(client, login("ent1"), ticket.number, "confirm",
                       {"rating": "basically_satisfied"}).json()["status"] == "closed"
    data = post_action(client, login("officer1"), ticket.number, "reopen", {"reason": "回访未解决"}).json()
    assert data["status"] == "dispatched" and data["reopen_count"] == 2
    assert data["closed_at"] is None


def test_confirm_sets_rating_and_closed_at(session, client, login):
    ticket = f.make_ticket(session, "replied")
    data = post_action(client, login("ent1"), ticket.number, "confirm", {"rating": "basically_satisfied"}).json()
    assert data["rating"] == "basically_satisfied" and data["closed_at"] is not None


def test_answer_stamps_reply(session, client, login):
    ticket = f.make_ticket(session, "submitted", category_code="consultation.tax")
    data = post_action(client, login("officer1"), ticket.number, "answer", {"text": "可享受减免"}).json()
    assert data["reply_text"] == "可享受减免" and data["answered_at"] and data["first_replied_at"]
    assert data["lead_department_id"] is None


def test_escalate_levels(session, client, login):
    ticket = f.make_ticket(session, "in_progress")
    h = login("supervisor1")
    assert post_action(client, h, ticket.number, "escalate", {}).json()["escalation_level"] == 1
    assert post_action(client, h, ticket.number, "escalate", {}).json()["escalation_level"] == 2
    p = problem(post_action(client, h, ticket.number, "escalate", {}), 422)
    assert p["errors"][0]["field"] == "level"
    assert f.reload(session, ticket).escalation_level == 2


def test_remind_counts(session, client, login):
    ticket = f.make_ticket(session, "dispatched")
    h = login("officer1")
    post_action(client, h, ticket.number, "remind", {"note": "请尽快"})
    assert post_action(client, h, ticket.number, "remind").json()["remind_count"] == 2


def test_link_is_idempotent_per_pair(session, client, login):
    a = f.make_ticket(session, "submitted")
    b = f.make_ticket(session, "submitted")
    h = login("officer1")
    assert post_action(client, h, a.number, "link", {"other": b.number}).status_code == 200
    assert post_action(client, h, a.number, "link", {"other": b.number}).status_code == 200


def test_enterprise_cannot_post_internal_comment(session, client, login):
    ticket = f.make_ticket(session, "submitted")
    p = problem(post_action(client, login("ent1"), ticket.number, "comment", {"text": "x", "internal": True}), 422)
    assert p["errors"][0]["field"] == "internal"


def test_reason_is_required(session, client, login):
    ticket = f.make_ticket(session, "submitted")
    p = problem(post_action(client, login("officer1"), ticket.number, "reject", {}), 422)
    assert p["errors"][0]["field"] == "reason"
    p = problem(post_action(client, login("officer1"), ticket.number, "reject", {"reason": "   "}), 422)
    assert p["errors"][0]["field"] == "reason"


# --------------------------------------------------------------------------- list: filters

def _numbers(resp) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [t["number"] for t in resp.json()["items"]]


@pytest.fixture
def listed(session):
    """Four tickets with different attributes (submitted at fixed instants)."""
    cst = timedelta(hours=8)
    t1 = f.make_ticket(session, "submitted", enterprise="ent1", category_code="problem.labour",
                       title="Widget 招工", at=datetime(2026, 3, 1, 2, tzinfo=UTC))
    t2 = f.make_ticket(session, "dispatched", enterprise="ent1", category_code="problem.power",
                       priority="urgent", by="officer1", channel="hotline",
                       title="厂区停电", at=datetime(2026, 4, 1, 10, tzinfo=UTC) - cst)
    t3 = f.make_ticket(session, "submitted", enterprise="ent11", category_code="consultation.policy",
                       title="咨询退税政策", description="出口退税 100% 如何申报", at=datetime(2026, 5, 1, 3, tzinfo=UTC))
    t4 = f.make_ticket(session, "dispatched", enterprise="ent2", category_code="agency.project",
                       channel="email", lead_department="FGJ", co_departments=["RSJ"],
                       title="立项代办", at=datetime(2026, 6, 1, 3, tzinfo=UTC))
    return {"t1": t1, "t2": t2, "t3": t3, "t4": t4}


def _query_cases(session, listed) -> list[tuple[dict, set[str]]]:
    t = listed
    return [
        ({"status": "submitted"}, {"t1", "t3"}),
        ({"status": ["submitted", "dispatched"]}, {"t1", "t2", "t3", "t4"}),
        ({"status": "closed"}, set()),
        ({"department_id": f.department(session, "RSJ").id}, {"t4"}),  # co-handler counts
        ({"department_id": f.department(session, "FGJ").id}, {"t4"}),
        ({"department_id": f.department(session, "GDGS").id}, {"t2"}),
        ({"grid_id": t["t3"].grid_id}, {"t3"}),
        ({"category_id": f.category(session, "problem.power").id}, {"t2"}),
        ({"service_type": "consultation"}, {"t3"}),
        ({"service_type": "agency"}, {"t4"}),
        ({"service_type": "problem"}, {"t1", "t2"}),
        ({"channel": "hotline"}, {"t2"}),
        ({"channel": "email"}, {"t4"}),
        ({"channel": "web"}, {"t1", "t3"}),
        ({"enterprise_id": t["t1"].enterprise_id}, {"t1", "t2"}),
        ({"priority": "urgent"}, {"t2"}),
        ({"priority": "normal"}, {"t1", "t3", "t4"}),
        ({"created_from": "2026-04-01T10:00:00+08:00", "created_to": "2026-06-01T11:00:00+08:00"}, {"t2", "t3"}),
        ({"created_from": "2026-04-01T10:00:01+08:00"}, {"t3", "t4"}),
        ({"created_to": "2026-04-01T10:00:00+08:00"}, {"t1"}),  # half-open [from, to)
        ({"created_from": "2026-04-01T00:00:00", "created_to": "2026-04-02T00:00:00"}, {"t2"}),  # naive = CST
        ({"q": "退税"}, {"t3"}),
        ({"q": "widget"}, {"t1"}),  # case-insensitive
        ({"q": "100%"}, {"t3"}),
        ({"q": "%"}, {"t3"}),  # LIKE wildcards are literal
        ({"q": "_"}, set()),
        ({"q": "招工", "status": "submitted", "enterprise_id": t["t1"].enterprise_id}, {"t1"}),
        ({"service_type": "problem", "priority": "urgent", "channel": "web"}, set()),
    ]


def test_list_filters(session, client, login, listed):
    headers = login("admin")
    by_number = {t.number: k for k, t in listed.items()}
    for params, expected in _query_cases(session, listed):
        got = _numbers(client.get("/api/v1/tickets", params=params, headers=headers))
        assert {by_number[n] for n in got if n in by_number} == expected, params
        assert len(got) == len(set(got))


def test_list_default_sort_is_newest_first(session, client, login, listed):
    got = _numbers(client.get("/api/v1/tickets", headers=login("admin")))
    ours = [n for n in got if n in {t.number for t in listed.values()}]
    assert ours == [listed[k].number for k in ("t4", "t3", "t2", "t1")]


# --------------------------------------------------------------------------- list: cursor pagination

@pytest.fixture
def many(session) -> list[Ticket]:
    base = datetime(2026, 2, 2, 1, tzinfo=UTC)
    stamps = [base, base, base + timedelta(hours=1), base + timedelta(hours=2), base + timedelta(hours=2),
              base + timedelta(hours=2), base + timedelta(days=1), base + timedelta(days=3)]
    tickets = [f.make_ticket(session, "submitted", enterprise=f"ent{1 + i % 3}", at=at, commit=False)
               for i, at in enumerate(stamps)]
    session.commit()
    return tickets


def _walk(client, headers, params) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(50):
        q = dict(params, **({"cursor": cursor} if cursor else {}))
        resp = client.get("/api/v1/tickets", params=q, headers=headers)
        assert resp.status_code == 200, resp.text
        page = resp.json()
        assert len(page["items"]) <= params["limit"]
        seen += [t["number"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError("pagination does not end")


def test_cursor_walks_all_pages(session, client, login, many):
    headers = login("admin")
    numbers = {t.number for t in many}
    for sort in ("-submitted_at", "submitted_at"):
        expected = [t.number for t in sorted(many, key=lambda t: (t.submitted_at, t.id),
                                             reverse=sort.startswith("-"))]
        for limit in (1, 2, 3, 7, 8, 200):
            seen = _walk(client, headers, {"limit": limit, "sort": sort})
            assert len(seen) == len(set(seen)), f"duplicates across pages ({sort}, {limit})"
            assert [n for n in seen if n in numbers] == expected, (sort, limit)


@pytest.mark.parametrize("sort", ["-updated_at", "updated_at"])
def test_cursor_sorted_by_updated_at(session, client, login, many, sort):
    # touch two tickets so updated_at differs from submission order
    f.act(session, many[0], "comment", {"text": "更新"}, by="officer1")
    f.act(session, many[3], "comment", {"text": "更新"}, by="officer1")
    session.commit()
    seen = _walk(client, login("admin"), {"limit": 3, "sort": sort})
    assert len(seen) == len(set(seen))
    key = sorted(many, key=lambda t: (t.updated_at, t.id), reverse=sort.startswith("-"))
    assert [n for n in seen if n in {t.number for t in many}] == [t.number for t in key]


def test_cursor_with_filter(session, client, login, many):
    # other tests commit tickets of ent2 to this database too: every ticket seen is ent2's, and
    # among them exactly ours, in order (a test creates what it reads, never assumes an empty table)
    ent = f.enterprise_of(session, "ent2")
    ours = {t.number for t in many}
    params = {"limit": 1, "enterprise_id": ent.id, "created_from": "2026-02-02T00:00:00+00:00",
              "created_to": "2026-02-06T00:00:00+00:00"}
    seen = _walk(client, login("admin"), params)
    assert len(seen) == len(set(seen))
    assert all(session.exec(select(Ticket).where(Ticket.number == n)).one().enterprise_id == ent.id for n in seen)
    assert sorted(n for n in seen if n in ours) == sorted(t.number for t in many if t.enterprise_id == ent.id)


def test_last_page_has_no_cursor(session, client, login, many):
    headers = login("admin")
    params = {"limit": 200, "created_from": "2026-02-02T00:00:00+00:00", "created_to": "2026-02-06T00:00:00+00:00"}
    cursor, pages = None, []
    for _ in range(100):
        page = client.get("/api/v1/tickets", params={**params, **({"cursor": cursor} if cursor else {})},
                          headers=headers).json()
        pages.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages[-1]["next_cursor"] is None and len(pages[-1]["items"]) <= 200
    assert {t.number for t in many} <= {t["number"] for p in pages for t in p["items"]}


# --------------------------------------------------------------------------- events

def test_enterprise_does_not_see_internal_events(session, client, login):
    ticket = f.make_ticket(session, "in_progress")
    f.act(session, ticket, "comment", {"text": "内部：该企业曾多次反映", "internal": True}, by="officer1")
    f.act(session, ticket, "remind", {"note": "请加快"}, by="officer1")
    f.act(session, ticket, "escalate", {}, by="supervisor1")
    f.act(session, ticket, "comment", {"text": "正在协调"}, by="dept_rsj")
    session.commit()
    staff = client.get(f"/api/v1/tickets/{ticket.number}/events", headers=login("officer1")).json()
    ent = client.get(f"/api/v1/tickets/{ticket.number}/events", headers=login("ent1")).json()
    staff_actions = [e["action"] for e in staff]
    assert staff_actions == ["submit", "accept", "dispatch", "claim", "comment", "remind", "escalate", "comment"]
    assert [e["id"] for e in staff] == sorted(e["id"] for e in staff)
    assert all(e["visibility"] == "public" for e in ent)
    assert {e["visibility"] for e in staff} == {"public", "internal"}
    ent_actions = [e["action"] for e in ent]
    assert "remind" not in ent_actions and "escalate" not in ent_actions
    assert ent_actions.count("comment") == 1
    assert "内部：该企业曾多次反映" not in str(ent)
    assert ent_actions[0] == "submit"
    first = staff[0]
    assert first["to_status"] == "submitted" and first["from_status"] is None


def test_department_sees_full_history(session, client, login):
    ticket = f.make_ticket(session, "in_progress")
    f.act(session, ticket, "comment", {"text": "内部", "internal": True}, by="officer1")
    session.commit()
    evs = client.get(f"/api/v1/tickets/{ticket.number}/events", headers=login("dept_rsj")).json()
    assert [e["action"] for e in evs][-1] == "comment"


# --------------------------------------------------------------------------- login, tokens, /me

def test_login_good_password(client):
    resp = client.post("/api/v1/auth/token", data={"username": "ent1", "password": f.DEMO_PASSWORD})
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["token_type"] == "bearer" and data["role"] == "enterprise" and data["expires_in"] > 0
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {data['access_token']}"})
    assert me.status_code == 200
    assert me.json()["username"] == "ent1" and me.json()["role"] == "enterprise"
    assert "password_hash" not in me.json()


@pytest.mark.parametrize(("username", "password"), [("ent1", "wrong-password"), ("nobody", f.DEMO_PASSWORD),
                                                    ("ent1", ""), ("ENT1", f.DEMO_PASSWORD)])
def test_login_bad_credentials_is_401(client, username, password):
    resp = client.post("/api/v1/auth/token", data={"username": username, "password": password})
    assert resp.status_code in (401, 422)
    p = problem(resp, resp.status_code)
    if resp.status_code == 401:
        assert p["type"] == "/problems/unauthenticated"
        assert "access_token" not in p


def test_login_inactive_user_is_401(session, client):
    u = f.user(session, "ent2")
    u.is_active = False
    session.add(u)
    session.commit()
    problem(client.post("/api/v1/auth/token", data={"username": "ent2", "password": f.DEMO_PASSWORD}), 401)


def test_token_of_deactivated_user_is_401(session, client, login):
    headers = login("ent3")
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    u = f.user(session, "ent3")
    u.is_active = False
    session.add(u)
    session.commit()
    problem(client.get("/api/v1/me", headers=headers), 401)


def test_expired_token_is_401(session, client):
    u = f.user(session, "officer1")
    token, _ = create_access_token(u.id, u.role, minutes=-1)
    p = problem(client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}), 401)
    assert p["type"] == "/problems/unauthenticated"
    problem(client.get("/api/v1/tickets", headers={"Authorization": f"Bearer {token}"}), 401)


def test_bad_tokens_are_401(client):
    for auth in (None, "Bearer", "Bearer not-a-jwt", "Basic YWRtaW46eA==",
                 "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"):
        headers = {"Authorization": auth} if auth else {}
        problem(client.get("/api/v1/me", headers=headers), 401)


def test_token_signed_with_another_key_is_401(session, client):
    import jwt

    u = f.user(session, "admin")
    forged = jwt.encode({"sub": str(u.id), "role": "admin", "exp": datetime.now(UTC) + timedelta(hours=1)},
                        "not-the-secret-0123456789-0123456789", algorithm="HS256")
    problem(client.get("/api/v1/me", headers={"Authorization": f"Bearer {forged}"}), 401)


def test_me(session, client, login):
    for username in USER_OF_ROLE.values():
        resp = client.get("/api/v1/me", headers=login(username))
        assert resp.status_code == 200
        u = f.user(session, username)
        data = resp.json()
        assert (data["id"], data["username"], data["role"]) == (u.id, u.username, u.role)
        assert data["enterprise_id"] == u.enterprise_id and data["department_id"] == u.department_id

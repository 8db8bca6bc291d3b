"""The officer's correction of the category at triage (issue 13): ``accept`` and ``dispatch`` take
an optional ``category_id`` of the same service type (docs/decisions.md "Category correction")."""

from __future__ import annotations

from sqlmodel import Session, select

from service.stats.service import summary
from service.tickets.models import TicketEvent
from service.triage.training import training_rows
from tests import factories as f
from tests.tickets.test_ticket_api import post_action, problem, snapshot


def _events(session: Session, ticket, action: str) -> list[TicketEvent]:
    session.expire_all()
    return list(session.exec(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id,
                                                        TicketEvent.action == action)))


def test_accept_corrects_the_category_and_the_event_records_it(session, client, login):
    ticket = f.make_ticket(session, "submitted", category_code="problem.labour")
    labour, power = f.category(session, "problem.labour").id, f.category(session, "problem.power").id
    resp = post_action(client, login("officer1"), ticket.number, "accept", {"category_id": power})
    assert resp.status_code == 200, resp.text
    assert resp.json()["category_id"] == power and resp.json()["status"] == "accepted"
    (event,) = _events(session, ticket, "accept")
    assert event.payload["from_category_id"] == labour and event.payload["category_id"] == power


def test_accept_without_category_or_with_the_same_changes_nothing_of_it(session, client, login):
    labour = f.category(session, "problem.labour").id
    for body in ({}, {"category_id": labour}):
        ticket = f.make_ticket(session, "submitted", category_code="problem.labour")
        data = post_action(client, login("officer1"), ticket.number, "accept", body).json()
        assert data["category_id"] == labour
        (event,) = _events(session, ticket, "accept")
        assert "from_category_id" not in event.payload


def test_a_later_dispatch_follows_the_new_category_default_department(session, client, login):
    ticket = f.make_ticket(session, "submitted", category_code="problem.labour")
    power = f.category(session, "problem.power").id
    post_action(client, login("officer1"), ticket.number, "accept", {"category_id": power})
    data = post_action(client, login("officer1"), ticket.number, "dispatch").json()
    assert data["lead_department_id"] == f.department(session, "GDGS").id


def test_dispatch_after_a_return_may_correct_the_category_before_the_default_lead(session, client, login):
    ticket = f.make_returned(session, returns=1)  # labour → returned by the labour bureau
    power = f.category(session, "problem.power").id
    data = post_action(client, login("officer1"), ticket.number, "dispatch", {"category_id": power}).json()
    assert data["category_id"] == power and data["lead_department_id"] == f.department(session, "GDGS").id
    event = _events(session, ticket, "dispatch")[-1]
    assert event.payload["category_id"] == power and event.payload["lead_department_id"] == data["lead_department_id"]


def test_unknown_category_is_422_naming_the_field_and_changes_nothing(session, client, login):
    ticket = f.make_ticket(session, "submitted")
    before = snapshot(session, ticket)
    for action in ("accept",):
        p = problem(post_action(client, login("officer1"), ticket.number, action, {"category_id": 999_999}), 422)
        assert p["errors"][0]["field"] == "category_id"
    for bad in (0, -1, "x", 1.5):
        p = problem(post_action(client, login("officer1"), ticket.number, "accept", {"category_id": bad}), 422)
        assert "category_id" in str(p["errors"])
    assert snapshot(session, ticket) == before
    assert f.reload(session, ticket).category_id == f.category(session, "problem.labour").id


def test_category_of_another_service_type_is_422(session, client, login):
    ticket = f.make_ticket(session, "submitted", category_code="problem.labour")
    tax = f.category(session, "consultation.tax").id
    before = snapshot(session, ticket)
    p = problem(post_action(client, login("officer1"), ticket.number, "accept", {"category_id": tax}), 422)
    assert p["errors"][0]["field"] == "category_id"
    accepted = f.make_ticket(session, "accepted", category_code="problem.labour")
    p = problem(post_action(client, login("officer1"), accepted.number, "dispatch", {"category_id": tax}), 422)
    assert p["errors"][0]["field"] == "category_id"
    assert snapshot(session, ticket) == before
    assert f.reload(session, accepted).status == "accepted"


def test_closed_ticket_cannot_be_corrected_409(session, client, login):
    ticket = f.make_ticket(session, "closed")
    power = f.category(session, "problem.power").id
    before = snapshot(session, ticket)
    for action in ("accept", "dispatch"):
        p = problem(post_action(client, login("officer1"), ticket.number, action, {"category_id": power}), 409)
        assert p["current_status"] == "closed"
    assert snapshot(session, ticket) == before


def test_other_roles_cannot_correct_403(session, client, login):
    ticket = f.make_ticket(session, "submitted")
    power = f.category(session, "problem.power").id
    for username in ("ent1", "dept_rsj", "supervisor1"):
        resp = post_action(client, login(username), ticket.number, "accept", {"category_id": power})
        assert resp.status_code in (403, 404), (username, resp.text)
    assert f.reload(session, ticket).category_id == f.category(session, "problem.labour").id


def test_statistics_and_training_read_the_corrected_category(session, client, login):
    ticket = f.make_ticket(session, "submitted", category_code="problem.labour", title="厂区停电误分到劳动保障")
    power = f.category(session, "problem.power").id
    post_action(client, login("officer1"), ticket.number, "accept", {"category_id": power})
    f.act(session, f.reload(session, ticket), "dispatch")
    f.act(session, f.reload(session, ticket), "claim")
    f.act(session, f.reload(session, ticket), "reply")
    f.act(session, f.reload(session, ticket), "confirm")
    ticket = f.reload(session, ticket)
    assert ticket.status == "closed"
    rows = {(r.title, r.category_id) for r in training_rows(session)}
    assert ("厂区停电误分到劳动保障", power) in rows
    day = ticket.submitted_at.date()
    from service.auth.actor import Actor

    rollup_rows, _ = summary(session, Actor.system(), day, day, "category")
    exact_rows, _ = summary(session, Actor.system(), day, day, "category", exact=True)
    assert {r.key: r.counts() for r in rollup_rows} == {r.key: r.counts() for r in exact_rows}

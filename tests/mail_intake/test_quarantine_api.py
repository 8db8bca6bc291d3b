"""The quarantine endpoints (``/api/v1/mail/quarantine``): list, read, attach, discard; their bad
input (a 4xx problem naming the field, nothing written). Row scope: tests/api/test_scope_matrix.py."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from sqlmodel import select

from service.mail_intake import service as intake
from service.mail_intake.models import InboundMail
from service.tickets.models import Attachment, Ticket
from tests import factories as f
from tests.mail_intake import messages as m

PROBLEM = "application/problem+json"
URL = "/api/v1/mail/quarantine"


def quarantined(session, *, attachments: bool = False) -> InboundMail:
    sender = f"陌生人 <s-{uuid.uuid4().hex[:8]}@unknown.example>"
    subject = f"咨询 {uuid.uuid4().hex[:8]}"
    raw = (m.with_attachments(sender, subject, "想咨询人才补贴。", [("申请表.pdf", "application/pdf", m.PDF)])
           if attachments else m.plain(sender, subject, "想咨询人才补贴。"))
    outcome = intake.intake_message(session, raw, directory=intake.SenderDirectory({}))
    session.commit()
    return session.get(InboundMail, outcome.mail_id)


def state_of(session, row: InboundMail) -> str:
    session.expire_all()
    return session.get(InboundMail, row.id).state


def assert_problem(resp, status: int, field: str | None = None) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    if field is not None:
        body = resp.json()
        assert field in {e["field"].split(".")[-1] for e in body.get("errors", [])} or field in body["detail"], body


def test_list_and_read(session, client, login):
    row = quarantined(session, attachments=True)
    listed = client.get(URL, headers=login("officer1")).json()
    mine = next(r for r in listed if r["id"] == row.id)
    assert mine["state"] == "quarantined" and mine["text"] == "想咨询人才补贴。"
    assert mine["attachment_names"] == ["申请表.pdf"] and mine["reason"] == "发件人未登记为企业联系人"
    assert mine["from_name"] == "陌生人" and mine["ticket_number"] is None
    assert [r["id"] for r in listed] == sorted((r["id"] for r in listed), reverse=True)
    older = client.get(URL, params={"before_id": row.id}, headers=login("admin")).json()
    assert all(r["id"] < row.id for r in older)
    assert client.get(f"{URL}/{row.id}", headers=login("admin")).json()["id"] == row.id
    assert_problem(client.get(f"{URL}/2147483647", headers=login("officer1")), 404)


def test_attach_makes_an_email_ticket_with_the_attachments(session, client, login):
    row = quarantined(session, attachments=True)
    resp = client.post(f"{URL}/{row.id}/attach", headers=login("officer1"),
                       json={"enterprise_id": f.enterprise_of(session, "ent1").id,
                             "category_code": "consultation.talent"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["state"] == "attached" and body["decided_at"] is not None
    ticket = session.exec(select(Ticket).where(Ticket.number == body["ticket_number"])).one()
    assert (ticket.channel, ticket.enterprise_id, ticket.submitted_by_id, ticket.service_type) == (
        "email", f.enterprise_of(session, "ent1").id, f.user(session, "officer1").id, "consultation")
    assert ticket.title == row.subject and ticket.description.startswith("想咨询人才补贴。")
    stored = session.exec(select(Attachment).where(Attachment.ticket_id == ticket.id)).all()
    assert [(a.filename, a.content_type, a.uploaded_by_id) for a in stored] == [
        ("申请表.pdf", "application/pdf", f.user(session, "officer1").id)]
    session.expire_all()
    assert session.get(InboundMail, row.id).raw is None
    # decided: no second decision, and it leaves the list
    assert_problem(client.post(f"{URL}/{row.id}/attach", headers=login("officer1"),
                               json={"enterprise_id": f.enterprise_of(session, "ent1").id}), 409)
    assert_problem(client.post(f"{URL}/{row.id}/discard", headers=login("officer1"), json={}), 409)
    assert row.id not in {r["id"] for r in client.get(URL, headers=login("officer1")).json()}


def test_discard_keeps_the_row(session, client, login):
    row = quarantined(session)
    resp = client.post(f"{URL}/{row.id}/discard", headers=login("officer12"), json={"reason": "广告邮件"})
    assert resp.status_code == 200 and resp.json()["state"] == "discarded" and resp.json()["reason"] == "广告邮件"
    assert client.post(f"{URL}/{row.id}/discard", headers=login("admin")).status_code == 409
    other = quarantined(session)
    assert client.post(f"{URL}/{other.id}/discard", headers=login("admin")).status_code == 200  # body optional


@pytest.mark.parametrize(("body", "field"), [
    ({}, "enterprise_id"),
    ({"enterprise_id": 0}, "enterprise_id"),
    ({"enterprise_id": 2**31}, "enterprise_id"),
    ({"enterprise_id": "x"}, "enterprise_id"),
    ({"enterprise_id": 2147483647}, "enterprise_id"),  # no such enterprise
    ({"enterprise_id": None}, "enterprise_id"),
    ({"enterprise_id": "ENT", "category_code": "problem.land"}, "enterprise_id"),
    ({"enterprise_id": "ENT", "category_code": "no.such"}, "category_code"),
    ({"enterprise_id": "ENT", "category_id": 2147483647}, "category_id"),
    ({"enterprise_id": "ENT", "category_id": 1, "category_code": "problem.land"}, None),
    ({"enterprise_id": "ENT", "title": "a\x00b"}, "title"),
    ({"enterprise_id": "ENT", "title": ""}, "title"),
    ({"enterprise_id": "ENT", "title": "题" * 201}, "title"),
    ({"enterprise_id": "ENT", "extra": 1}, "extra"),
])
def test_attach_bad_input(session, client, login, body, field):
    row = quarantined(session)
    ent = f.enterprise_of(session, "ent1").id
    body = {k: (ent if v == "ENT" else v) for k, v in body.items()}
    if field == "enterprise_id" and body.get("category_code") == "problem.land":
        body["enterprise_id"] = f.enterprise_of(session, "ent2").id  # outside officer1's scope
    tickets = session.execute(sa.select(sa.func.count()).select_from(Ticket)).scalar()
    resp = client.post(f"{URL}/{row.id}/attach", headers=login("officer1"), json=body)
    assert_problem(resp, 422, field)
    assert state_of(session, row) == "quarantined"
    assert session.execute(sa.select(sa.func.count()).select_from(Ticket)).scalar() == tickets


@pytest.mark.parametrize(("path", "body", "status", "field"), [
    ("0/discard", {}, 422, "mail_id"),
    ("x/discard", {}, 422, "mail_id"),
    (f"{2**31}/attach", {"enterprise_id": 1}, 422, "mail_id"),
    ("2147483647/discard", {}, 404, None),
    ("ID/discard", {"reason": "a\x00b"}, 422, "reason"),
    ("ID/discard", {"reason": "长" * 2001}, 422, "reason"),
    ("ID/discard", {"why": "x"}, 422, "why"),
    ("ID/discard", [], 422, None),
])
def test_discard_bad_input(session, client, login, path, body, status, field):
    row = quarantined(session)
    resp = client.post(f"{URL}/{path.replace('ID', str(row.id))}", headers=login("officer1"), json=body)
    assert_problem(resp, status, field)
    assert state_of(session, row) == "quarantined"


def test_list_bad_query(client, login):
    for params, field in [({"limit": 0}, "limit"), ({"limit": 201}, "limit"), ({"before_id": 0}, "before_id"),
                          ({"before_id": "x"}, "before_id")]:
        assert_problem(client.get(URL, params=params, headers=login("officer1")), 422, field)
    assert_problem(client.get(URL), 401)


def test_two_officers_deciding_at_once_one_wins(session):
    row = quarantined(session)
    intake.discard_quarantined(session, f.actor(session, "officer1"), row.id)
    with pytest.raises(intake.Conflict):
        intake.attach_quarantined(session, f.actor(session, "officer12"), row.id,
                                  enterprise_id=f.enterprise_of(session, "ent2").id)

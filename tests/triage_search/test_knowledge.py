"""Knowledge base and answer suggestions (issue 13; service/triage/knowledge.py, fulltext.py):
CRUD with bad input, Chinese search on PostgreSQL and SQLite (same order), articles valid today,
past replies harvested from closed tickets and imported from 附件4."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from service import clock
from service.triage import fulltext, knowledge
from service.triage.search_models import KnowledgeArticle, PastReply
from tests import factories as f
from tests.api.test_bad_input import NUL, assert_bad, counts
from tests.triage_search.conftest import TEDDY, need_data

API = "/api/v1/knowledge"
ARTICLES = [
    ("高新技术企业认定申报材料", "申报高新技术企业认定需提交：企业营业执照、知识产权证明、研发费用专项审计报告、"
     "高新技术产品收入说明。研发费用占销售收入比例须符合规定。"),
    ("稳岗返还政策", "参加失业保险且不裁员或少裁员的企业，可申请稳岗返还，返还比例按上年度失业保险费计算。"),
    ("用电增容办理流程", "企业用电增容向供电公司营业厅提出申请，提交用电容量需求，现场勘查后出具供电方案。"),
]


def _today() -> date:
    return clock.now().astimezone(clock.office_zone()).date()


def _create_all(session, actor):
    return [knowledge.create_article(session, actor, knowledge.ArticleCreate(title=t, body=b)) for t, b in ARTICLES]


def test_crud_and_search_api(session, client, login):
    h = login("officer1")
    resp = client.post(API, json={"title": ARTICLES[0][0], "body": ARTICLES[0][1], "source": "科技局",
                                  "valid_from": str(_today() - timedelta(days=1))}, headers=h)
    assert resp.status_code == 201, resp.text
    art = resp.json()
    assert resp.headers["Location"] == f"{API}/{art['id']}"
    for t, b in ARTICLES[1:]:
        assert client.post(API, json={"title": t, "body": b}, headers=h).status_code == 201

    hits = client.get(API, params={"q": "高新企业认定要准备什么材料"}, headers=login("dept_rsj")).json()
    assert hits[0]["id"] == art["id"] and hits[0]["score"] > 0
    assert client.get(API, params={"q": "稳岗"}, headers=h).json()[0]["title"] == "稳岗返还政策"
    assert client.get(API, params={"q": "无关的词语组合"}, headers=h).json() == []

    resp = client.patch(f"{API}/{art['id']}", json={"title": "高企认定材料清单", "valid_to": None}, headers=h)
    assert resp.status_code == 200 and resp.json()["title"] == "高企认定材料清单"
    assert client.get(API, params={"q": "清单"}, headers=h).json()[0]["id"] == art["id"]  # re-indexed
    assert client.get(f"{API}/{art['id']}", headers=login("supervisor1")).json()["source"] == "科技局"

    # roles: enterprises may not read; departments and supervisors may not write
    assert client.get(API, headers=login("ent1")).status_code == 403
    assert client.post(API, json={"title": "x", "body": "y"}, headers=login("dept_rsj")).status_code == 403
    assert client.delete(f"{API}/{art['id']}", headers=login("supervisor1")).status_code == 403

    assert client.delete(f"{API}/{art['id']}", headers=login("admin")).status_code == 204
    assert client.get(f"{API}/{art['id']}", headers=h).status_code == 404
    assert client.patch(f"{API}/{art['id']}", json={"title": "x"}, headers=h).status_code == 404


BAD_CREATE = [
    ({"title": NUL, "body": "正文"}, "title"),
    ({"title": "标题", "body": "正" + NUL}, "body"),
    ({"title": "标" * 201, "body": "正文"}, "title"),
    ({"title": "标题", "body": "正" * 20_001}, "body"),
    ({"title": "", "body": "正文"}, "title"),
    ({"title": "标题", "body": "正文", "source": "源" * 201}, "source"),
    ({"title": "标题", "body": "正文", "valid_from": "2026-05-02", "valid_to": "2026-05-01"}, "valid_to"),
    ({"title": "标题", "body": "正文", "valid_from": "1800-01-01"}, "valid_from"),
    ({"title": "标题", "body": "正文", "valid_to": "2026-02-30"}, "valid_to"),
    ({"title": "标题", "body": "正文", "category_id": 2**31}, "category_id"),
    ({"title": "标题", "body": "正文", "category_id": 999_999}, "category_id"),
    ({"title": "标题", "body": "正文", "extra": 1}, "extra"),
    ({"body": "正文"}, "title"),
]


def test_bad_input(session, client, login):
    h = login("officer1")
    before = counts(session, KnowledgeArticle)
    for body, field in BAD_CREATE:
        assert_bad(client.post(API, json=body, headers=h), field)
    assert counts(session, KnowledgeArticle) == before
    art = client.post(API, json={"title": "标题", "body": "正文", "valid_from": "2026-05-01"}, headers=h).json()
    url = f"{API}/{art['id']}"
    for body, field in [({"valid_to": "2026-04-30"}, "valid_to"), ({"title": None}, "title"),
                        ({"body": None}, "body"), ({"title": "x" + NUL}, "title"), ({"source": "s" * 201}, "source"),
                        ({"category_id": 999_999}, "category_id")]:
        assert_bad(client.patch(url, json=body, headers=h), field)
    assert client.get(url, headers=h).json()["title"] == "标题"
    assert_bad(client.get(API, params={"q": NUL}, headers=h), "q")
    assert_bad(client.get(API, params={"q": "q" * 201}, headers=h), "q")
    assert client.get(f"{API}/{2**31}", headers=h).status_code == 422


def test_answer_suggestions(session, client, login):
    officer = f.actor(session, "officer1")
    today = _today()
    valid, _wenggang, _power = _create_all(session, officer)
    expired = knowledge.create_article(session, officer, knowledge.ArticleCreate(
        title="高新技术企业认定旧办法", body="高新技术企业认定 旧的申报材料要求", valid_to=today - timedelta(days=1)))
    # a closed ticket's reply becomes a past reply
    old = f.make_ticket(session, "closed", category_code="consultation.policy", answer=True,
                        title="高新技术企业认定材料咨询", description="想申报高新技术企业认定，需要哪些材料？")
    assert knowledge.harvest_ticket_replies(session) >= 1
    assert knowledge.harvest_ticket_replies(session) == 0  # idempotent
    session.commit()
    ticket = f.make_ticket(session, "accepted", category_code="consultation.policy",
                           title="咨询高新技术企业认定", description="我司准备申报高新技术企业，请问认定要哪些材料")
    resp = client.get(f"/api/v1/tickets/{ticket.number}/answer-suggestions", headers=login("officer1"))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    ids = [a["id"] for a in body["articles"]]
    assert ids[0] == valid.id and expired.id not in ids
    assert body["past_replies"][0]["ticket_number"] == old.number
    assert body["past_replies"][0]["reply"]
    assert client.get(f"/api/v1/tickets/{ticket.number}/answer-suggestions",
                      headers=login("ent1")).status_code == 403
    assert client.get(f"/api/v1/tickets/{ticket.number}/answer-suggestions",
                      headers=login("officer12")).status_code == 404


def _ranking(session, actor, query: str) -> list[str]:
    _create_all(session, actor)
    return [h.title for h in knowledge.search_articles(session, query)]


@pytest.mark.parametrize("query", ["高新技术企业认定材料", "企业申请返还失业保险", "用电 增容 申请"])
def test_same_order_on_postgresql_and_sqlite(session, sqlite_session, query):
    pg = _ranking(session, f.actor(session, "officer1"), query)
    lite = _ranking(sqlite_session, f.actor(sqlite_session, "officer1"), query)
    assert pg and pg == lite


def test_fulltext_terms():
    assert fulltext.query_terms("  ") == []
    text = fulltext.index_text("A3区丽发新城小区", "噪音（扰民）")
    assert "丽发" in text or "丽发新城" in text
    assert all(t and " " not in t for t in text.split(" "))


@pytest.mark.realdata
@pytest.mark.slow
def test_import_replies_of_teddy_cup(session):
    """附件4: 2,816 official replies imported as past replies; a question finds its own reply."""
    from service.imports import teddy

    path = TEDDY / "附件4.xlsx"
    need_data(path)
    records = list(teddy.read_replies(path))
    assert len(records) == 2816
    added, skipped = knowledge.import_replies(session, records)
    assert (added, skipped) == (2816, 0)
    assert knowledge.import_replies(session, records[:10]) == (0, 10)
    probe = records[100]
    hits = knowledge.search_past_replies(session, f"{probe.title}\n{probe.question}", limit=3)
    assert hits[0].external_ref == probe.external_ref
    assert counts(session, PastReply)[0] >= 2816

"""Endpoints of the triage search features (issue 13): near-duplicates and answer suggestions of a
ticket, the knowledge base (CRUD and search) and hot issues. Thin: the rules are in
:mod:`service.triage.duplicates`, :mod:`service.triage.knowledge` and :mod:`service.triage.hotspots`.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status
from pydantic import BaseModel

from service.auth.actor import Actor
from service.auth.dependencies import SessionDep, require_roles
from service.common.openapi import problem_responses
from service.common.params import QueryId
from service.common.schemas import ApiDate, Id
from service.tickets.visibility import get_visible_ticket
from service.triage import duplicates, hotspots, knowledge

router = APIRouter(tags=["triage"])

StaffReader = Annotated[Actor, Depends(require_roles("officer", "admin", "supervisor"))]
Answerer = Annotated[Actor, Depends(require_roles("officer", "admin", "supervisor", "department"))]
KnowledgeReader = Answerer
KnowledgeWriter = Annotated[Actor, Depends(require_roles("officer", "admin"))]
HotReader = Annotated[Actor, Depends(require_roles("supervisor", "admin"))]
Search = Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00]*$", description="检索词（中文分词后全文检索）")]


# ------------------------------------------------------------------ duplicates


class DuplicatesRead(BaseModel):
    number: str
    candidates: list[duplicates.DuplicateCandidate]


@router.get("/tickets/{number}/duplicates", response_model=DuplicatesRead, responses=problem_responses(403, 404),
            summary="疑似重复诉求（同一网格内未办结的相似工单）")
def ticket_duplicates(number: str, session: SessionDep, actor: StaffReader,
                      limit: Annotated[int, Query(ge=1, le=50)] = 10) -> DuplicatesRead:
    ticket = get_visible_ticket(session, actor, number)
    return DuplicatesRead(number=ticket.number,
                          candidates=duplicates.find_duplicates(session, actor, ticket, limit=limit))


# ------------------------------------------------------------------ answer suggestions


@router.get("/tickets/{number}/answer-suggestions", response_model=knowledge.AnswerSuggestions,
            responses=problem_responses(403, 404), summary="答复参考：相似的知识库条目与历史答复")
def answer_suggestions(number: str, session: SessionDep, actor: Answerer,
                       limit: Annotated[int, Query(ge=1, le=20)] = 5) -> knowledge.AnswerSuggestions:
    ticket = get_visible_ticket(session, actor, number)
    return knowledge.answer_suggestions(session, ticket, limit=limit)


# ------------------------------------------------------------------ knowledge base


@router.get("/knowledge", response_model=list[knowledge.ArticleHit], responses=problem_responses(403),
            summary="知识库检索")
def list_articles(session: SessionDep, actor: KnowledgeReader, q: Search = None, category_id: QueryId = None,
                  valid_on: Annotated[ApiDate | None, Query(description="只列此日有效的条目")] = None,
                  limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[knowledge.ArticleHit]:
    return knowledge.search_articles(session, q, valid_on=valid_on, category_id=category_id, limit=limit)


@router.post("/knowledge", response_model=knowledge.ArticleRead, status_code=status.HTTP_201_CREATED,
             responses=problem_responses(403), summary="新建知识库条目")
def create_article(body: knowledge.ArticleCreate, session: SessionDep, actor: KnowledgeWriter,
                   response: Response) -> knowledge.ArticleRead:
    article = knowledge.create_article(session, actor, body)
    response.headers["Location"] = f"/api/v1/knowledge/{article.id}"
    return knowledge.ArticleRead.model_validate(article)


@router.get("/knowledge/{article_id}", response_model=knowledge.ArticleRead, responses=problem_responses(403, 404),
            summary="知识库条目")
def read_article(article_id: Id, session: SessionDep, actor: KnowledgeReader) -> knowledge.ArticleRead:
    return knowledge.ArticleRead.model_validate(knowledge.get_article(session, article_id))


@router.patch("/knowledge/{article_id}", response_model=knowledge.ArticleRead,
              responses=problem_responses(403, 404), summary="修改知识库条目")
def update_article(article_id: Id, body: knowledge.ArticleUpdate, session: SessionDep,
                   actor: KnowledgeWriter) -> knowledge.ArticleRead:
    return knowledge.ArticleRead.model_validate(knowledge.update_article(session, article_id, body))


@router.delete("/knowledge/{article_id}", status_code=status.HTTP_204_NO_CONTENT,
               responses=problem_responses(403, 404), summary="删除知识库条目")
def delete_article(article_id: Id, session: SessionDep, actor: KnowledgeWriter) -> Response:
    knowledge.delete_article(session, article_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# ------------------------------------------------------------------ hot issues


class HotTicket(BaseModel):
    number: str
    title: str
    enterprise_id: int
    submitted_at: datetime


class HotIssue(BaseModel):
    rank: int
    issue_id: int
    heat: float  # heat index, docs/triage.md "## Hot issues"
    date_from: date
    date_to: date
    place: str  # 地点/人群 ("" when none was recognised)
    description: str
    messages: int
    users: int  # distinct enterprises
    tickets: list[HotTicket]


class HotIssuesRead(BaseModel):
    date_from: date
    date_to: date
    computed_at: datetime
    source: str  # "stored" (the beat task's latest run) or "live"
    tickets: int  # tickets grouped
    groups: list[HotIssue]


def _hot_issue(g: dict) -> HotIssue:
    return HotIssue(**{k: g[k] for k in ("rank", "issue_id", "heat", "date_from", "date_to", "place", "description",
                                          "messages", "users")},
                    tickets=[HotTicket(number=m["id"], title=m["title"], enterprise_id=int(m["user"]),
                                       submitted_at=m["at"]) for m in g["members"]])


@router.get("/triage/hot-issues", response_model=HotIssuesRead, responses=problem_responses(403),
            summary="热点问题（某一时段内集中反映的同一地点、同一事项）")
def hot_issues(session: SessionDep, actor: HotReader, date_from: ApiDate | None = None,
               date_to: ApiDate | None = None,
               limit: Annotated[int, Query(ge=1, le=20)] = 5) -> HotIssuesRead:
    from service import clock
    from service.tickets.visibility import scope_of

    start, end = hotspots.period(date_from, date_to)
    if scope_of(session, actor).unlimited:
        run = hotspots.latest_run(session, start, end)
        if run is not None:
            return HotIssuesRead(date_from=start, date_to=end, computed_at=run.computed_at, source="stored",
                                 tickets=run.tickets, groups=[_hot_issue(g) for g in run.groups[:limit]])
    messages = hotspots.ticket_messages(session, actor, start, end)
    groups = hotspots.find_hot_issues(messages, limit=limit)
    return HotIssuesRead(date_from=start, date_to=end, computed_at=clock.now(), source="live", tickets=len(messages),
                         groups=[_hot_issue(g.as_json()) for g in groups])

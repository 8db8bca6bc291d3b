"""The knowledge base of policy answers and past replies, and answer suggestions (issue 13 "Answer
suggestions for consultations"; docs/triage.md "## Answer suggestions").

- Knowledge-base articles (:class:`KnowledgeArticle`): officers and admins create, edit, delete and
  search them; an article applies from ``valid_from`` to ``valid_to`` (office dates, inclusive).
- Past replies (:class:`PastReply`): the official replies of 附件4 (``qifu triage import-replies``)
  and the replies of closed tickets (:func:`harvest_ticket_replies`, a Celery beat task).
- :func:`answer_suggestions`: for a ticket being answered, the articles valid today and the past
  replies most similar to its title and description (:mod:`service.triage.fulltext`: jieba
  tokens, PostgreSQL full-text / SQLite FTS5, one BM25 order).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlmodel import Session, select

from service import clock
from service.auth.actor import Actor
from service.categories.models import Category
from service.common.enums import TicketStatus
from service.common.schemas import ApiDate, Id, InputModel, LongText, ShortText
from service.errors import FieldError, NotFound
from service.tickets.models import Ticket
from service.triage import fulltext
from service.triage.search_models import KnowledgeArticle, PastReply

SourceText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]


# ------------------------------------------------------------------ schemas


class ArticleCreate(InputModel):
    """A new knowledge-base article. ``valid_to`` must not be before ``valid_from``."""

    title: ShortText
    body: LongText
    category_id: Id | None = None
    source: SourceText | None = None
    valid_from: ApiDate | None = None
    valid_to: ApiDate | None = None


class ArticleUpdate(InputModel):
    """Changes to an article (PATCH: omitted fields are kept; ``null`` clears the optional ones)."""

    title: ShortText = None  # type: ignore[assignment]
    body: LongText = None  # type: ignore[assignment]
    category_id: Id | None = None
    source: SourceText | None = None
    valid_from: ApiDate | None = None
    valid_to: ApiDate | None = None


class ArticleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    body: str
    category_id: int | None
    source: str | None
    valid_from: date | None
    valid_to: date | None
    created_by_id: int | None
    created_at: datetime
    updated_at: datetime


class ArticleHit(ArticleRead):
    score: float  # the engine's rank (PostgreSQL ts_rank normalised by length, SQLite −bm25; higher is more similar; 0 without a query)


class PastReplyHit(BaseModel):
    id: int
    source: str
    ticket_number: str | None
    external_ref: str | None
    title: str
    question: str
    reply: str
    replied_at: datetime | None
    score: float


class AnswerSuggestions(BaseModel):
    """What the officer may start an answer from: articles valid today and past replies."""

    articles: list[ArticleHit]
    past_replies: list[PastReplyHit]


# ------------------------------------------------------------------ articles


def _today() -> date:
    return clock.now().astimezone(clock.office_zone()).date()


def _check_category(session: Session, category_id: int | None) -> None:
    if category_id is not None and session.get(Category, category_id) is None:
        raise FieldError("category_id", f"分类 {category_id} 不存在")


def _check_validity(valid_from: date | None, valid_to: date | None) -> None:
    if valid_from is not None and valid_to is not None and valid_to < valid_from:
        raise FieldError("valid_to", "失效日期不能早于生效日期")


def create_article(session: Session, actor: Actor, data: ArticleCreate) -> KnowledgeArticle:
    """Insert an article (indexed for search at once).

    Raises:
        FieldError (422): unknown ``category_id``; ``valid_to`` before ``valid_from``.
    """
    _check_category(session, data.category_id)
    _check_validity(data.valid_from, data.valid_to)
    now = clock.now()
    article = KnowledgeArticle(**data.model_dump(), created_by_id=actor.user_id, created_at=now, updated_at=now,
                               search_text=fulltext.index_text(data.title, data.body))
    session.add(article)
    session.flush()
    return article


def get_article(session: Session, article_id: int) -> KnowledgeArticle:
    """The article ``article_id``.

    Raises:
        NotFound (404): no such article.
    """
    article = session.get(KnowledgeArticle, article_id)
    if article is None:
        raise NotFound(f"知识库文章 {article_id} 不存在")
    return article


def update_article(session: Session, article_id: int, data: ArticleUpdate) -> KnowledgeArticle:
    """Apply the fields sent in ``data`` (re-indexed when title or body changed).

    Raises:
        NotFound (404): no such article. FieldError (422): as :func:`create_article`, the dates
        checked as they will be after the change.
    """
    article = get_article(session, article_id)
    changes = data.model_dump(exclude_unset=True)
    for name in ("title", "body"):
        if name in changes and changes[name] is None:
            raise FieldError(name, "不能为空")
    if "category_id" in changes:
        _check_category(session, changes["category_id"])
    _check_validity(changes.get("valid_from", article.valid_from), changes.get("valid_to", article.valid_to))
    for name, value in changes.items():
        setattr(article, name, value)
    if "title" in changes or "body" in changes:
        article.search_text = fulltext.index_text(article.title, article.body)
    article.updated_at = clock.now()
    session.add(article)
    session.flush()
    return article


def delete_article(session: Session, article_id: int) -> None:
    """Delete the article. Raises NotFound (404) when there is none."""
    session.delete(get_article(session, article_id))
    session.flush()


def _valid_on(day: date) -> sa.ColumnElement[bool]:
    return sa.and_(sa.or_(KnowledgeArticle.valid_from.is_(None), KnowledgeArticle.valid_from <= day),
                   sa.or_(KnowledgeArticle.valid_to.is_(None), KnowledgeArticle.valid_to >= day))


def search_articles(session: Session, q: str | None, *, valid_on: date | None = None,
                    category_id: int | None = None, limit: int = 20) -> list[ArticleHit]:
    """Articles matching ``q`` best first (:func:`service.triage.fulltext.search`: the engine's rank
    among the first 100 matches, then the filters), or without ``q`` the most
    recently updated; only those valid on ``valid_on`` when given; of ``category_id`` when given."""
    where = []
    if valid_on is not None:
        where.append(_valid_on(valid_on))
    if category_id is not None:
        where.append(KnowledgeArticle.category_id == category_id)
    if not q or not fulltext.query_terms(q):
        rows = session.exec(select(KnowledgeArticle).where(*where)
                            .order_by(KnowledgeArticle.updated_at.desc(), KnowledgeArticle.id.desc())
                            .limit(limit)).all()
        return [ArticleHit(**ArticleRead.model_validate(a).model_dump(), score=0.0) for a in rows]
    ranked = fulltext.search(session, "knowledge_article", q)
    if not ranked:
        return []
    rows = {a.id: a for a in session.exec(select(KnowledgeArticle)
                                          .where(KnowledgeArticle.id.in_([i for i, _s in ranked]), *where))}
    return [ArticleHit(**ArticleRead.model_validate(rows[i]).model_dump(), score=s)
            for i, s in ranked if i in rows][:limit]


# ------------------------------------------------------------------ past replies


def search_past_replies(session: Session, q: str, *, limit: int = 5,
                        exclude_ticket_id: int | None = None) -> list[PastReplyHit]:
    """Past replies whose question (title and body) is most similar to ``q``, best first."""
    ranked = fulltext.search(session, "past_reply", q, limit=limit + 1)  # one more: the ticket's own
    if not ranked:
        return []
    rows = {r.id: (r, number) for r, number in session.execute(
        sa.select(PastReply, Ticket.number).outerjoin(Ticket, Ticket.id == PastReply.ticket_id)
        .where(PastReply.id.in_([i for i, _s in ranked])))}
    out = []
    for i, s in ranked:
        r, number = rows[i]
        if exclude_ticket_id is not None and r.ticket_id == exclude_ticket_id:
            continue
        out.append(PastReplyHit(id=r.id, source=r.source, ticket_number=number, external_ref=r.external_ref,
                                title=r.title, question=r.question, reply=r.reply, replied_at=r.replied_at,
                                score=s))
    return out[:limit]


def answer_suggestions(session: Session, ticket: Ticket, *, limit: int = 5) -> AnswerSuggestions:
    """The knowledge-base articles valid today and the past replies (other tickets' and imported)
    most similar to ``ticket``'s title and description, at most ``limit`` of each."""
    text = f"{ticket.title}\n{ticket.description}"
    return AnswerSuggestions(
        articles=search_articles(session, text, valid_on=_today(), limit=limit),
        past_replies=search_past_replies(session, text, limit=limit, exclude_ticket_id=ticket.id),
    )


def harvest_ticket_replies(session: Session, *, batch: int = 500) -> int:
    """Copy the reply of every closed ticket that has one and is not yet a past reply into
    :class:`PastReply` (segmented for search); returns how many were added. Idempotent."""
    added = 0
    while True:
        done = sa.select(PastReply.ticket_id).where(PastReply.ticket_id == Ticket.id).exists()
        rows = session.execute(
            sa.select(Ticket.id, Ticket.number, Ticket.title, Ticket.description, Ticket.reply_text,
                      Ticket.submitted_at, Ticket.replied_at)
            .where(Ticket.status == TicketStatus.closed.value, Ticket.reply_text.is_not(None),
                   Ticket.reply_text != "", ~done)
            .order_by(Ticket.id).limit(batch)).all()
        if not rows:
            return added
        session.execute(sa.insert(PastReply), [
            dict(source="ticket", ticket_id=r.id, external_ref=None, title=r.title[:200], question=r.description,
                 reply=r.reply_text, asked_at=r.submitted_at, replied_at=r.replied_at,
                 search_text=fulltext.index_text(r.title, r.description))
            for r in rows])
        added += len(rows)


# ------------------------------------------------------------------ import of 附件4


@dataclass(frozen=True)
class ReplyRecord:
    """One row of a replies file (附件4 layout)."""

    external_ref: str
    title: str
    question: str
    reply: str
    asked_at: datetime | None
    replied_at: datetime | None


def import_replies(session: Session, records: Iterable[ReplyRecord], *, batch: int = 500) -> tuple[int, int]:
    """Insert the records not yet imported (by ``external_ref``); returns ``(added, skipped)``."""
    added = skipped = 0
    chunk: list[ReplyRecord] = []

    def flush() -> None:
        nonlocal added, skipped
        refs = [r.external_ref for r in chunk]
        known = set(session.execute(sa.select(PastReply.external_ref).where(PastReply.external_ref.in_(refs)))
                    .scalars())
        fresh = {r.external_ref: r for r in chunk if r.external_ref not in known}
        skipped += len(chunk) - len(fresh)
        if fresh:
            session.execute(sa.insert(PastReply), [
                dict(source="import", ticket_id=None, external_ref=r.external_ref, title=r.title or "（无主题）",
                     question=r.question, reply=r.reply, asked_at=r.asked_at, replied_at=r.replied_at,
                     search_text=fulltext.index_text(r.title, r.question))
                for r in fresh.values()])
            added += len(fresh)
        chunk.clear()

    for record in records:
        chunk.append(record)
        if len(chunk) >= batch:
            flush()
    if chunk:
        flush()
    return added, skipped

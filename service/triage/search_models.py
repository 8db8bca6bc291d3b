"""Tables of the triage search features (issue 13): the near-duplicate index of open tickets, the
knowledge base of policy answers, past replies (imported and harvested from closed tickets) and
the latest hot-issue result.

Full-text search structures that the models cannot declare live in the migration
(``srch00000001``) and are kept out of ``alembic check`` by :data:`FTS_OBJECTS`:

- PostgreSQL: a stored generated column ``search_tsv = to_tsvector('simple', search_text)`` with a
  GIN index per searchable table;
- SQLite: an FTS5 external-content table ``<table>_fts`` over ``search_text``, kept in step by
  triggers (its shadow tables ``<table>_fts_data``, ``_idx``, ``_docsize``, ``_config``).

``search_text`` is the jieba segmentation of the row's text (:func:`service.triage.text.tokens`)
joined by spaces, so both engines' word splitters see whole Chinese words.
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from service import clock
from service.db import UTCDateTime, check_in

#: the searchable tables (each has ``id`` and ``search_text``)
SEARCHABLE = ("knowledge_article", "past_reply")
#: names of the full-text objects made by the migration only (see the module docstring)
FTS_OBJECTS = frozenset(
    ["search_tsv"] + [f"ix_{t}_search_tsv" for t in SEARCHABLE]
    + [f"{t}_fts{suffix}" for t in SEARCHABLE for suffix in ("", "_data", "_idx", "_docsize", "_config",
                                                            "_content")])


class TicketLsh(SQLModel, table=True):
    """One MinHash LSH band of an open ticket's text (:mod:`service.triage.duplicates`).

    ``band``: a signed 64-bit hash of (band number, the band's minimum hashes); 16 rows per
    ticket. Tickets that share a ``band`` are near-duplicate candidates. Rows of tickets no longer
    open are ignored by the check and deleted by the nightly sweep. No foreign key: the rows are
    written in batches after the one-statement intake (``duplicates.index_pending``) and on the
    ORM path; the sweep removes rows whose ticket is gone. ``ix_ticket_lsh_ticket_id``: the
    highest indexed ticket and the "has rows" probe of the batch job.
    """

    __tablename__ = "ticket_lsh"
    __table_args__ = (sa.Index("ix_ticket_lsh_ticket_id", "ticket_id"),)

    band: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True, autoincrement=False))
    ticket_id: int = Field(sa_column=sa.Column(sa.Integer, primary_key=True, autoincrement=False))


class KnowledgeArticle(SQLModel, table=True):
    """A policy answer of the knowledge base (知识库): what officers start a reply from.

    ``valid_from``/``valid_to`` (office dates, inclusive; ``None`` = open-ended) bound when the
    answer applies; suggestions show only articles valid today.
    """

    __tablename__ = "knowledge_article"

    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=200)
    body: str = Field(sa_type=sa.Text)
    category_id: int | None = Field(default=None, foreign_key="category.id", index=True)
    source: str | None = Field(default=None, max_length=200)
    valid_from: date | None = None
    valid_to: date | None = None
    created_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    created_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)
    search_text: str = Field(default="", sa_type=sa.Text)


class PastReply(SQLModel, table=True):
    """A question with its official answer: imported (附件4, ``source='import'``) or harvested from a
    closed ticket's reply (``source='ticket'``, ``ticket_id`` set)."""

    __tablename__ = "past_reply"
    __table_args__ = (check_in("source", ("import", "ticket")),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=16)
    external_ref: str | None = Field(default=None, max_length=64, unique=True)
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", unique=True)
    title: str = Field(max_length=200)
    question: str = Field(sa_type=sa.Text)
    reply: str = Field(sa_type=sa.Text)
    asked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    replied_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    search_text: str = Field(default="", sa_type=sa.Text)


class HotIssueRun(SQLModel, table=True):
    """A computed hot-issue ranking (热点问题) over a period: the Celery beat task stores the
    latest one; ``groups`` is the list of :class:`service.triage.hotspots.HotGroup` as JSON."""

    __tablename__ = "hot_issue_run"

    id: int | None = Field(default=None, primary_key=True)
    computed_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime, index=True)
    date_from: date
    date_to: date
    tickets: int = 0
    groups: list = Field(default_factory=list, sa_type=sa.JSON)

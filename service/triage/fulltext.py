"""Chinese full-text search on PostgreSQL and SQLite over a jieba-segmented column (issue 13
"Answer suggestions"; docs/triage.md "## Answer suggestions").

Neither engine segments Chinese (zhparser is not available), so every searchable row keeps its
text segmented by :func:`service.triage.text.tokens` and joined by spaces in ``search_text``; the
engines then only split on spaces:

- PostgreSQL: ``search_tsv @@ to_tsquery('simple', 't1 | t2 | …')`` where ``search_tsv`` is a
  stored generated column ``to_tsvector('simple', search_text)`` with a GIN index (``simple``: no
  stemming, no stop words; lower case);
- SQLite: an FTS5 external-content table ``<table>_fts`` (``unicode61`` tokenizer: splits on
  spaces and punctuation, keeps CJK words whole), ``MATCH '"t1" OR "t2" OR …'``.

Ranking is the engine's, in SQL, with ``LIMIT``: PostgreSQL ``ts_rank(search_tsv, q, 1)``
(term frequency, divided by 1 + log of the document length) over the stored ``search_tsv``,
SQLite FTS5 ``bm25()``; ``ts_rank_cd`` (cover density) was measured and not taken: a 附件4
question found its own reply first 83 times in 100 with it (95 with length normalisation 1, 98
with 2) against 99 with ``ts_rank``/1, which was also the fastest (docs/triage.md). The score shown
is ``ts_rank`` or ``−bm25``, so the two engines' scores are not comparable and their orders may differ below the
best hits. What keeps it fast is the choice of query words (:func:`query_terms`): a long request
(a 附件3 message) used to match ~60 % of the 2,816 past replies on some common word (企业, 问题,
领导), and ranking those rows cost more than everything else. The query now keeps the
:data:`MAX_TERMS` *rarest* words of the text, and drops words in more than
:data:`COMMON_SHARE` of the rows (a word in half the rows says almost nothing about
which row is meant: its BM25 idf is ~0.7 against ~6 for a word in 5 of 2,816 rows). The document
frequencies come from :func:`document_frequencies`, cached per process and table and re-read when
the table's row count or largest id changes.
"""

from __future__ import annotations

import re
import threading
from collections import Counter

import sqlalchemy as sa
from sqlmodel import Session

from service.triage.search_models import SEARCHABLE
from service.triage.text import tokens

#: rows fetched from the engine's index per search (callers filter, then keep their limit)
CANDIDATES = 100
#: query terms used at most (the rarest distinct words of the text, :func:`query_terms`)
MAX_TERMS = 24
#: words in more than this share of a table's rows are left out of its queries
COMMON_SHARE = 0.05
#: ... and in more than this many rows (a small table keeps every word: it is fast anyway)
COMMON_MIN_ROWS = 50
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)
#: (database URL, table) → (row count, largest id, rows, {word: rows containing it})
_DF_CACHE: dict[tuple[str, str], tuple[int, int | None, dict[str, int]]] = {}
_DF_LOCK = threading.Lock()


def index_tokens(text: str) -> list[str]:
    """The words of ``text`` as stored in ``search_text``: jieba tokens with any non-word
    character removed (so that neither engine splits or parses them), empty ones dropped."""
    out = []
    for t in tokens(text):
        w = _NON_WORD.sub("", t)
        if w:
            out.append(w)
    return out


def index_text(*parts: str) -> str:
    """The ``search_text`` of a row made of ``parts`` (e.g. title and body)."""
    return " ".join(index_tokens("\n".join(p or "" for p in parts)))


def document_frequencies(session: Session, table: str) -> tuple[int, dict[str, int]]:
    """``(rows, {word: rows whose search_text contains it})`` of ``table`` (one of :data:`SEARCHABLE`).

    Cached per process, database and table; one ``SELECT count(*), max(id)`` per call checks that
    the table did not change (an edit that changes neither is seen at the next insert or delete).
    PostgreSQL: ``ts_stat`` over ``search_tsv`` (~0.1 s for 2,816 replies); SQLite: counted in
    Python from ``search_text``.
    """
    if table not in SEARCHABLE:
        raise ValueError(f"not searchable: {table}")
    bind = session.get_bind()
    rows, top = session.execute(sa.text(f"SELECT count(*), max(id) FROM {table}")).one()
    key = (bind.engine.url.render_as_string(hide_password=True), table)
    cached = _DF_CACHE.get(key)
    if cached is not None and cached[0] == rows and cached[1] == top:
        return rows, cached[2]
    if bind.dialect.name == "postgresql":
        df = dict(session.execute(sa.text(f"SELECT word, ndoc FROM ts_stat('SELECT search_tsv FROM {table}')")).all())
    else:
        counts: Counter[str] = Counter()
        for (text,) in session.execute(sa.text(f"SELECT search_text FROM {table}")):
            counts.update(set((text or "").split()))
        df = dict(counts)
    with _DF_LOCK:
        _DF_CACHE[key] = (rows, top, df)
    return rows, df


def query_terms(text: str, df: dict[str, int] | None = None, rows: int = 0) -> list[str]:
    """The search terms of ``text``: its distinct words; with the table's document frequencies
    ``df`` (of ``rows`` rows), without those in more than :data:`COMMON_SHARE` of the rows and more
    than :data:`COMMON_MIN_ROWS` rows (unless every word is), rarest first (a word unknown to
    ``df`` counts as rarest: it may be newer than the cache, and matches nothing otherwise); at
    most :data:`MAX_TERMS`."""
    words = list(dict.fromkeys(index_tokens(text)))
    if df is None:
        return words[:MAX_TERMS]
    cut = max(COMMON_SHARE * rows, COMMON_MIN_ROWS)
    rare = [w for w in words if df.get(w, 0) <= cut] or words
    return sorted(rare, key=lambda w: df.get(w, 0))[:MAX_TERMS]


def search(session: Session, table: str, text: str, limit: int = CANDIDATES) -> list[tuple[int, float]]:
    """``(id, score)`` of the rows of ``table`` (one of :data:`SEARCHABLE`) best matching ``text``,
    best first (ties by id), at most ``limit``; ranked by the engine (module docstring), scores
    rounded to 4 decimals, higher is better."""
    rows, df = document_frequencies(session, table)
    terms = query_terms(text, df, rows)
    if not terms:
        return []
    if session.get_bind().dialect.name == "postgresql":
        sql = (f"SELECT id, ts_rank(search_tsv, q, 1) AS score FROM {table}, to_tsquery('simple', :q) AS q "
               f"WHERE search_tsv @@ q ORDER BY score DESC, id LIMIT :n")
        q = " | ".join(terms)
    else:
        sql = (f"SELECT rowid, -bm25({table}_fts) AS score FROM {table}_fts WHERE {table}_fts MATCH :q "
               f"ORDER BY score DESC, rowid LIMIT :n")
        q = " OR ".join(f'"{t}"' for t in terms)
    return [(i, round(float(score), 4)) for i, score in session.execute(sa.text(sql), {"q": q, "n": limit})]

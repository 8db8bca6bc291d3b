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

Both fetch at most :data:`CANDIDATES` rows by their own rank (``ts_rank`` / ``bm25``); the final
order is one Okapi BM25 computed in Python over those candidates (:func:`bm25_rank`: k1 = 1.2,
b = 0.75, document frequencies counted among the candidates, which for an ``OR`` query are exactly
the rows containing each term as long as fewer than :data:`CANDIDATES` rows match), so the two
engines rank alike.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import sqlalchemy as sa
from sqlmodel import Session

from service.triage.search_models import SEARCHABLE
from service.triage.text import tokens

#: rows fetched from the engine's index per search before the BM25 re-rank
CANDIDATES = 100
#: query terms used at most (the first distinct ones of the text)
MAX_TERMS = 24
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


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


def query_terms(text: str) -> list[str]:
    """The distinct search terms of ``text`` (at most :data:`MAX_TERMS`, in order)."""
    return list(dict.fromkeys(index_tokens(text)))[:MAX_TERMS]


def candidates(session: Session, table: str, terms: Sequence[str], limit: int = CANDIDATES) -> list[int]:
    """Ids of the rows of ``table`` (one of :data:`SEARCHABLE`) containing any of ``terms``, by the
    engine's own rank, at most ``limit``."""
    if table not in SEARCHABLE:
        raise ValueError(f"not searchable: {table}")
    if not terms:
        return []
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        sql = (f"SELECT id FROM {table}, to_tsquery('simple', :q) AS q WHERE search_tsv @@ q "
               f"ORDER BY ts_rank(search_tsv, q) DESC, id LIMIT :n")
        q = " | ".join(terms)
    else:
        sql = (f"SELECT rowid FROM {table}_fts WHERE {table}_fts MATCH :q "
               f"ORDER BY bm25({table}_fts), rowid LIMIT :n")
        q = " OR ".join(f'"{t}"' for t in terms)
    return [r[0] for r in session.execute(sa.text(sql), {"q": q, "n": limit})]


def bm25_rank(terms: Sequence[str], docs: dict[int, str], total: int, *, k1: float = 1.2,
              b: float = 0.75) -> list[tuple[int, float]]:
    """Okapi BM25 of each document (id → its ``search_text``) for ``terms``, best first (ties by id).

    ``total``: the number of rows in the table (N of the IDF). Scores are rounded to 4 decimals.
    """
    if not docs:
        return []
    wanted = set(terms)
    bags, lengths = {}, {}
    for i, text in docs.items():
        words = text.split()
        lengths[i] = len(words)
        bags[i] = Counter(w for w in words if w in wanted)
    avgdl = (sum(lengths.values()) / len(lengths)) or 1.0
    n = max(total, len(docs))
    df = {t: sum(1 for bag in bags.values() if t in bag) for t in terms}
    idf = {t: math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) for t in terms}
    scored = []
    for i, bag in bags.items():
        s = 0.0
        for t in terms:
            f = bag.get(t, 0)
            if f:
                s += idf[t] * f * (k1 + 1) / (f + k1 * (1 - b + b * lengths[i] / avgdl))
        scored.append((i, round(s, 4)))
    scored.sort(key=lambda x: (-x[1], x[0]))
    return scored

"""Near-duplicate requests at intake (issue 13 "Duplicates at intake"; docs/triage.md "## Duplicates").

Method: MinHash LSH (datasketch's :class:`~datasketch.MinHash`) over character 3-shingles of the
request's title and description, with the bands stored in the database (table ``ticket_lsh``), so
every API process and worker shares one index and it survives restarts:

- text → NFKC, lower case, punctuation and spaces dropped, the first :data:`MAX_CHARS` characters →
  the set of its character 3-shingles (no word segmentation: Chinese near-duplicates differ by
  a few characters — a name, a number, a date — and shingles cost microseconds where jieba costs
  a millisecond per request on the intake path);
- :data:`NUM_PERM` = 64 minimum hashes (``zlib.crc32`` as the base hash: deterministic across
  processes, in C) cut into :data:`BANDS` = 16 bands of :data:`ROWS` = 4; each band is hashed
  (blake2b, 8 bytes, signed) with its band number into one ``BIGINT``. Two texts of Jaccard
  similarity *s* share at least one band with probability 1 − (1 − s⁴)¹⁶: 0.64 at s = 0.5, 0.99
  at s = 0.7, 0.002 at s = 0.1 (the threshold ≈ (1/16)^(1/4) = 0.5);
- the check reads the tickets that share a band with the query (primary key ``(band, ticket_id)``:
  16 index probes), keeps those still open (:data:`service.common.enums.OPEN_STATUSES`, not merged)
  in the same grid and visible to the caller, and ranks them by the exact Jaccard similarity of
  their shingle sets (computed from their text; at most :data:`MAX_CANDIDATES` are read).

Who writes the index rows of a new ticket: on the ORM path (SQLite, submissions on an enterprise's
behalf, imports without history) :func:`index_ticket`, in the submission's transaction; for the
one-statement intake on PostgreSQL (the bulk of the traffic) the periodic job :func:`index_pending`
(Celery beat ``triage.index_duplicates`` every ``QIFU_DUPLICATE_INDEX_SECONDS``, default 5 s; the
embedded scheduler of ``qifu standalone`` every ``QIFU_EMBEDDED_SWEEP_SECONDS``), in batches, off
the request path (docs/performance.md "Intake, session 3": 16 rows and the MinHash cost 0.1-0.2 ms
of a submission). Until that job has run, a new ticket is not yet a *candidate* for the checks of
other tickets; its own check works at once (its bands are computed from its text at query time).
Rows of tickets that closed, were rejected or merged are ignored by the check and deleted by
:func:`sweep` (a Celery beat task).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING

import sqlalchemy as sa
from pydantic import BaseModel
from sqlmodel import Session

from service.auth.actor import Actor
from service.common.enums import OPEN_STATUSES, STATUS_LABELS
from service.tickets.models import Ticket
from service.tickets.visibility import ticket_visibility
from service.triage.search_models import TicketLsh

if TYPE_CHECKING:  # numpy comes with datasketch on first use; importing it costs every process ~0.1 s
    import numpy as np

NUM_PERM = 64
BANDS = 16
ROWS = NUM_PERM // BANDS
SHINGLE = 3
#: only the first characters of title + description are hashed (a request's substance is at the
#: start; bounds the intake cost of a 10,000-character description)
MAX_CHARS = 600
#: candidates below this Jaccard similarity are not shown
MIN_SIMILARITY = 0.4
#: at most this many band-sharing tickets are read and compared per check
MAX_CANDIDATES = 50

_DROP = re.compile(r"[\W_]+", re.UNICODE)


def shingles(text: str) -> set[str]:
    """The character 3-shingles of ``text`` after normalisation (see the module docstring); a
    text shorter than 3 characters is its own single shingle (empty text: empty set)."""
    norm = _DROP.sub("", unicodedata.normalize("NFKC", text or "").lower())[:MAX_CHARS]
    if len(norm) <= SHINGLE:
        return {norm} if norm else set()
    return {norm[i:i + SHINGLE] for i in range(len(norm) - SHINGLE + 1)}


def ticket_text(title: str, description: str) -> str:
    """The text of a request that the index compares: title, then description."""
    return f"{title or ''}\n{description or ''}"


@lru_cache(maxsize=1)
def _seed():
    # imported on first use: ``import datasketch`` loads its LSH, Redis/Cassandra and asyncio storage
    # modules and scipy.integrate (seconds on a loaded machine), which no caller of this module's
    # other functions needs (the API, the importer and ``qifu triage hot-issues`` import it)
    from datasketch import MinHash

    return MinHash(num_perm=NUM_PERM, seed=1, hashfunc=zlib.crc32)


def signature(shingle_set: Iterable[str]) -> np.ndarray:
    """The :data:`NUM_PERM` minimum hashes of a shingle set (uint64 array)."""
    seed = _seed()
    m = type(seed)(num_perm=NUM_PERM, hashfunc=zlib.crc32, permutations=seed.permutations, scheme=seed.scheme)
    m.update_batch([s.encode() for s in shingle_set])
    return m.hashvalues


def bands(title: str, description: str) -> list[int]:
    """The :data:`BANDS` band hashes (signed 64-bit ints, distinct) of a request's text; ``[]``
    for a text without characters (nothing to compare)."""
    return bands_of(shingles(ticket_text(title, description)))


def bands_of(shingle_set: set[str]) -> list[int]:
    """The band hashes of a shingle set (:func:`bands` without the text step)."""
    if not shingle_set:
        return []
    values = signature(shingle_set)
    out = []
    for i in range(BANDS):
        digest = hashlib.blake2b(values[i * ROWS:(i + 1) * ROWS].tobytes(), digest_size=8,
                                 person=b"qifu-lsh" + bytes([i])).digest()
        out.append(int.from_bytes(digest, "big", signed=True))
    return list(dict.fromkeys(out))


def jaccard(a: set[str], b: set[str]) -> float:
    """|a ∩ b| / |a ∪ b| (0 for two empty sets)."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def index_ticket(session: Session, ticket_id: int, title: str, description: str) -> None:
    """Insert the index rows of a new ticket (the ORM path; for the PostgreSQL intake statement
    :func:`index_pending` inserts the same rows later)."""
    rows = [{"band": b, "ticket_id": ticket_id} for b in bands(title, description)]
    if rows:
        session.execute(sa.insert(TicketLsh), rows)


class DuplicateCandidate(BaseModel):
    """An open ticket that is nearly the same request (疑似重复诉求)."""

    number: str
    title: str
    status: str
    status_label: str
    enterprise_id: int
    submitted_at: datetime
    similarity: float  # Jaccard similarity of the character 3-shingles, 0..1 (2 decimals)
    shared_bands: int  # LSH bands in common (of 16)


def find_duplicates(session: Session, actor: Actor, ticket: Ticket, *, limit: int = 10,
                    min_similarity: float = MIN_SIMILARITY) -> list[DuplicateCandidate]:
    """The open tickets of ``ticket``'s grid that are near-duplicates of it and that ``actor`` may
    see (SPEC §1), most similar first, at most ``limit``.

    One indexed query (band probes joined to the ticket rows, filtered by status, grid and the
    caller's visibility), then exact Jaccard on at most :data:`MAX_CANDIDATES` texts.
    """
    mine = shingles(ticket_text(ticket.title, ticket.description))
    probe = bands_of(mine)
    if not probe:
        return []
    shared = sa.func.count().label("shared")
    hits = (
        sa.select(TicketLsh.ticket_id, shared)
        .where(TicketLsh.band.in_(probe), TicketLsh.ticket_id != ticket.id)
        .group_by(TicketLsh.ticket_id)
        .subquery()
    )
    stmt = (
        sa.select(Ticket.number, Ticket.title, Ticket.description, Ticket.status, Ticket.enterprise_id,
                  Ticket.submitted_at, hits.c.shared)
        .join(hits, hits.c.ticket_id == Ticket.id)
        .where(Ticket.status.in_([s.value for s in OPEN_STATUSES]), Ticket.duplicate_of_id.is_(None),
               Ticket.grid_id.is_not_distinct_from(ticket.grid_id), ticket_visibility(session, actor))
        .order_by(hits.c.shared.desc(), Ticket.id.desc())
        .limit(MAX_CANDIDATES)
    )
    out = []
    for row in session.execute(stmt):
        sim = jaccard(mine, shingles(ticket_text(row.title, row.description)))
        if sim >= min_similarity:
            out.append(DuplicateCandidate(
                number=row.number, title=row.title, status=row.status, status_label=STATUS_LABELS[row.status],
                enterprise_id=row.enterprise_id, submitted_at=row.submitted_at, similarity=round(sim, 2),
                shared_bands=row.shared))
    out.sort(key=lambda c: (-c.similarity, c.submitted_at))
    return out[:limit]


def sweep(session: Session) -> int:
    """Delete the index rows of tickets that are no longer open (closed, rejected, merged) or no
    longer exist, set-based; returns the number of rows deleted. Run nightly by beat."""
    open_ids = sa.select(Ticket.id).where(Ticket.status.in_([s.value for s in OPEN_STATUSES]),
                                          Ticket.duplicate_of_id.is_(None))
    result = session.execute(sa.delete(TicketLsh).where(TicketLsh.ticket_id.not_in(open_ids)))
    return result.rowcount or 0


#: :func:`index_pending` looks again at this many ticket ids below the highest one indexed: a ticket
#: whose statement committed after a later-numbered one was indexed (ids are drawn before commit)
LOOKBACK_IDS = 2_000


def index_pending(session: Session, *, batch: int = 2000, lookback: int = LOOKBACK_IDS) -> int:
    """Index the open tickets that the one-statement intake left without index rows: those with an
    id of at least (the highest id in ``ticket_lsh``) − ``lookback`` and no rows yet, ``batch`` tickets
    per ``INSERT``; returns the number of tickets indexed. Idempotent, and safe to run twice at
    once (a ticket with rows is skipped; rows another run inserted meanwhile are left as they are,
    ``ON CONFLICT DO NOTHING``).

    Cost: one index-only read of the highest id (index ``ix_ticket_lsh_ticket_id``), a range scan
    of ``ticket`` by primary key from there, and one probe of that index per ticket. Tickets below
    the window (a database restored without its index rows, an import) are left to
    :func:`reindex_open` (``qifu search reindex``)."""
    top = session.execute(sa.select(sa.func.max(TicketLsh.ticket_id))).scalar_one()
    return _index_open_from(session, 0 if top is None else max(top - lookback - 1, 0), batch)


def _index_open_from(session: Session, last: int, batch: int) -> int:
    done = 0
    has_rows = sa.select(TicketLsh.ticket_id).where(TicketLsh.ticket_id == Ticket.id).exists()
    while True:
        rows = session.execute(
            sa.select(Ticket.id, Ticket.title, Ticket.description)
            .where(Ticket.id > last, Ticket.status.in_([s.value for s in OPEN_STATUSES]),
                   Ticket.duplicate_of_id.is_(None), ~has_rows)
            .order_by(Ticket.id).limit(batch)).all()
        if not rows:
            return done
        pairs = [(b, r.id) for r in rows for b in bands(r.title, r.description)]
        if pairs:
            _insert_new_rows(session, pairs)
        done += len(rows)
        last = rows[-1].id


def _insert_new_rows(session: Session, pairs: list[tuple[int, int]]) -> None:
    """``INSERT INTO ticket_lsh … ON CONFLICT DO NOTHING`` of ``(band, ticket_id)`` pairs: on
    PostgreSQL one statement over two arrays (``unnest``), elsewhere an executemany."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("INSERT INTO ticket_lsh (band, ticket_id) SELECT * FROM "
                                "unnest(CAST(:bands AS bigint[]), CAST(:ids AS integer[])) ON CONFLICT DO NOTHING"),
                        {"bands": [b for b, _ in pairs], "ids": [t for _, t in pairs]})
        return
    from sqlalchemy.dialects.sqlite import insert

    session.execute(insert(TicketLsh).on_conflict_do_nothing(), [{"band": b, "ticket_id": t} for b, t in pairs])


def reindex_open(session: Session, *, batch: int = 2000) -> int:
    """(Re)build the index rows of every open ticket that has none (after an import or a restore);
    returns the number of tickets indexed."""
    return _index_open_from(session, 0, batch)


def band_rows(ticket_ids: Sequence[int], texts: Sequence[tuple[str, str]]) -> list[dict[str, int]]:
    """Index rows for many tickets at once (imports, benchmarks): ``{"band", "ticket_id"}`` dicts."""
    return [{"band": b, "ticket_id": tid} for tid, (title, desc) in zip(ticket_ids, texts, strict=True)
            for b in bands(title, desc)]

"""Training the suggestion models from the office's own history (issue 13).

The training rows are read in one set-based statement (:func:`training_rows`):

* every **closed** ticket that is not a merged duplicate: its category as finally set and its lead
  department (the one that replied). An officer who corrected the category or the lead department
  has therefore written the next training example: training reads the ticket as it is now;
* every imported labelled example (:class:`service.triage.models.TriageExample`).

Two labels are left out because no person chose them: the category of an imported ticket that
is the importer's default category (``QIFU_IMPORT_DEFAULT_CATEGORY``: the row had none), and the
lead department of an imported ticket that is its category's default department (the importer
found no department in the reply text; a reply that named that very department is lost too, the
price of not reading the events).

:func:`train` fits both classifiers, stores the joblib dump as a new
:class:`service.triage.models.TriageModel` row (the version is its id) and keeps the last
:data:`KEEP_VERSIONS` versions.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import joblib
import sqlalchemy as sa
from sqlmodel import Session

from service.categories.models import Category
from service.common.enums import Channel, TicketStatus
from service.config import get_settings
from service.tickets.models import Ticket
from service.triage.model import TriageBundle, fit_classifier
from service.triage.models import TriageExample, TriageModel
from service.triage.text import tokens

#: Stored model versions kept (older rows are deleted by :func:`train`).
KEEP_VERSIONS = 5
#: Characters of the description used (the start of a long text carries its topic; bounded work).
#: 1,000 since session 3 (was 2,000): the longest texts' segmentation was the suggestion's p99;
#: ``bench/triage.py --part eval`` gave the same figures within one or two test rows at 600, 1,000
#: and 2,000 characters (docs/triage.md "Latency").
TEXT_CHARS = 1_000


@dataclass(frozen=True)
class TrainingRow:
    """One example: the text and its labels (either may be ``None``)."""

    title: str
    description: str
    category_id: int | None
    department_id: int | None
    submitted_at: datetime | None


def document(title: str, description: str) -> list[str]:
    """The tokens a model sees for a request: the title's, then the description's first
    :data:`TEXT_CHARS` characters' (one rule for training, evaluation and suggestion)."""
    return tokens(f"{title or ''}\n{(description or '')[:TEXT_CHARS]}")


def training_rows(session: Session) -> list[TrainingRow]:
    """Every training example (module docstring), oldest first, in one statement."""
    default_code = get_settings().import_default_category
    default_cat = sa.select(Category.id).where(Category.code == default_code).scalar_subquery()
    cat_default_dept = (sa.select(Category.default_department_id)
                        .where(Category.id == Ticket.category_id).scalar_subquery())
    imported = Ticket.channel == Channel.import_.value
    tickets = sa.select(
        Ticket.title, Ticket.description,
        sa.case((sa.and_(imported, Ticket.category_id == default_cat), sa.null()),
                else_=Ticket.category_id).label("category_id"),
        sa.case((sa.and_(imported, Ticket.lead_department_id == cat_default_dept), sa.null()),
                else_=Ticket.lead_department_id).label("department_id"),
        Ticket.submitted_at,
    ).where(Ticket.status == TicketStatus.closed.value, Ticket.duplicate_of_id.is_(None))
    examples = sa.select(TriageExample.title, TriageExample.description, TriageExample.category_id,
                         TriageExample.department_id, TriageExample.submitted_at)
    union = sa.union_all(tickets, examples).subquery()
    stmt = sa.select(union).order_by(union.c.submitted_at.nulls_first())
    return [TrainingRow(*row) for row in session.execute(stmt).all()]


def fit_bundle(rows: list[TrainingRow]) -> TriageBundle:
    """Fit the category and department classifiers on ``rows`` (no database)."""
    docs = [document(r.title, r.description) for r in rows]
    cat = [(d, r.category_id) for d, r in zip(docs, rows, strict=True) if r.category_id is not None]
    dept = [(d, r.department_id) for d, r in zip(docs, rows, strict=True) if r.department_id is not None]
    return TriageBundle(
        category=fit_classifier([d for d, _ in cat], [y for _, y in cat]) if cat else None,
        department=fit_classifier([d for d, _ in dept], [y for _, y in dept]) if dept else None,
        counts={"rows": len(rows), "category_examples": len(cat), "department_examples": len(dept),
                "categories": len({y for _, y in cat}), "departments": len({y for _, y in dept})},
    )


def dump(bundle: TriageBundle) -> bytes:
    """``bundle`` as joblib bytes (zlib level 3)."""
    buf = io.BytesIO()
    joblib.dump(bundle, buf, compress=3)
    return buf.getvalue()


def load(blob: bytes) -> TriageBundle:
    """The bundle of a stored :class:`TriageModel` blob (only blobs written by :func:`train`)."""
    return joblib.load(io.BytesIO(blob))


def train(session: Session) -> dict[str, Any]:
    """Read the training rows, fit, store a new model version (flushes; the caller commits).

    Returns the summary stored with the version: ``version``, the counts of
    :func:`fit_bundle`, ``seconds`` (reading + fitting + dumping, wall clock), ``cpu_seconds``
    (this process's CPU time: the wall time on an idle machine) and ``bytes``.
    With no labelled row at all nothing is stored and ``version`` is ``None`` (the suggestions
    stay on the keyword fallback).
    """
    started, cpu = time.perf_counter(), time.process_time()
    rows = training_rows(session)
    bundle = fit_bundle(rows)
    if bundle.category is None and bundle.department is None:
        return {"version": None, **bundle.counts, "seconds": round(time.perf_counter() - started, 3)}
    blob = dump(bundle)
    summary: dict[str, Any] = {**bundle.counts, "seconds": round(time.perf_counter() - started, 3),
                               "cpu_seconds": round(time.process_time() - cpu, 3), "bytes": len(blob)}
    row = TriageModel(examples=len(rows), summary=summary, blob=blob)
    session.add(row)
    session.flush()
    oldest_kept = session.scalar(sa.select(TriageModel.id).order_by(TriageModel.id.desc())
                                 .offset(KEEP_VERSIONS - 1).limit(1))
    if oldest_kept is not None:
        session.execute(sa.delete(TriageModel).where(TriageModel.id < oldest_kept))
    return {"version": row.id, **summary}


def latest_version(session: Session) -> int | None:
    """The newest stored model version, ``None`` when none was trained."""
    return session.scalar(sa.select(sa.func.max(TriageModel.id)))

"""Tables of the category and department suggestions (issue 13): imported training examples and
the stored, versioned models."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from service import clock
from service.db import UTCDateTime


class TriageExample(SQLModel, table=True):
    """A labelled request imported for training (``qifu triage import-labelled``), not a ticket:
    the history of another system that must not enter the officers' queues, the SLA sweeps or the
    statistics. Training reads these rows together with the closed tickets
    (:func:`service.triage.training.training_rows`).

    ``external_ref`` (``<source>:<id>``) makes the import idempotent; ``category_id`` and
    ``department_id`` are the labels (either may be ``NULL``); ``submitted_at`` (aware UTC) orders
    the examples for a time split.
    """

    __tablename__ = "triage_example"

    id: int | None = Field(default=None, primary_key=True)
    external_ref: str = Field(max_length=64, unique=True)
    title: str = Field(max_length=200)
    description: str = Field(sa_type=sa.Text)
    category_id: int | None = Field(default=None, foreign_key="category.id", index=True)
    department_id: int | None = Field(default=None, foreign_key="department.id", index=True)
    submitted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)


class TriageModel(SQLModel, table=True):
    """One trained model (category and department classifiers together), version = ``id``.

    ``blob`` is the joblib dump of :class:`service.triage.model.TriageBundle` (written only by
    :func:`service.triage.training.train`: never load a blob from elsewhere, joblib is pickle).
    ``summary`` holds the counts and the training time (seconds) for ``qifu triage models``.
    """

    __tablename__ = "triage_model"

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)
    examples: int = 0
    summary: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    blob: bytes = Field(sa_type=sa.LargeBinary)

"""Category and department suggestions for a request (issue 13): the stored model when there is
one, else the keyword fallback; loaded without blocking a request.

One :data:`suggester` per process keeps, per database, the reference data (categories with their
paths, active departments, the keyword rankers) and the newest stored model. A request never
waits for a model: at most every ``QIFU_TRIAGE_POLL_SECONDS`` a request starts a background
thread that reads the newest version number and, when it changed, the blob (joblib) and the
reference data, then swaps them in. Until a model is loaded the keyword fallback answers. Only
the very first request of a process reads the reference data inline (two small SELECTs).

Suggestions are computed on read (officers', supervisors' and admins' ticket reads and
``POST /api/v1/triage/suggest``), never at intake: the one-statement intake keeps its throughput,
and a suggestion always reflects the newest model (docs/triage.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlmodel import Session

from service.categories.models import Category
from service.config import get_settings
from service.db import database_key
from service.departments.models import Department
from service.triage import schemas
from service.triage.model import KeywordRanker, Ranked, TriageBundle
from service.triage.models import TriageModel
from service.triage.text import tokens
from service.triage.training import document, load

log = logging.getLogger(__name__)

#: Suggestions returned per label kind.
TOP = 3
#: Roles that see suggestions (internal routing advice: not enterprises, not departments).
SUGGESTION_ROLES = ("officer", "supervisor", "admin")


@dataclass(frozen=True)
class Reference:
    """Categories (id → (code, name, path, parent id)), active departments (id → (code, name)) and
    the keyword rankers built from their names (:func:`keyword_bags`)."""

    categories: dict[int, tuple[str, str, str, int | None]]
    departments: dict[int, tuple[str, str]]
    category_keywords: KeywordRanker
    department_keywords: KeywordRanker


def keyword_bags(categories: list[tuple[int, str, int | None, int | None]],
                 departments: list[tuple[int, str]]) -> tuple[dict[int, set[str]], dict[int, set[str]]]:
    """The keyword bags of the fallback, from ``(id, name, parent_id, default_department_id)``
    categories and ``(id, name)`` departments.

    A category's bag: the tokens of its own name and of every descendant's name (a first-level
    category of the taxonomy knows its 390 leaves' words); roots (service types) are not suggested.
    A department's bag: the tokens of its name and of the names of the categories whose default
    department it is. One rule for the cold start and the keyword baseline of bench/triage.py.
    """
    parent = {cid: pid for cid, _, pid, _ in categories}
    words = {cid: set(tokens(name)) for cid, name, _, _ in categories}
    cat_bags: dict[int, set[str]] = {cid: set(w) for cid, w in words.items() if parent[cid] is not None}
    for cid, w in words.items():
        up = parent.get(cid)
        seen = set()
        while up is not None and up not in seen:
            seen.add(up)
            if up in cat_bags:
                cat_bags[up] |= w
            up = parent.get(up)
    dept_bags = {did: set(tokens(name)) for did, name in departments}
    for cid, _, _, did in categories:
        if did in dept_bags:
            dept_bags[did] |= words[cid]
    return cat_bags, dept_bags


def read_reference(session: Session) -> Reference:
    """The reference data of the database ``session`` talks to (two SELECTs)."""
    cats = session.execute(sa.select(Category.id, Category.code, Category.name, Category.parent_id,
                                     Category.default_department_id)).all()
    depts = session.execute(sa.select(Department.id, Department.code, Department.name)
                            .where(Department.is_active)).all()
    by_id = {c.id: c for c in cats}

    def path(cid: int) -> str:
        names, seen = [], set()
        while cid is not None and cid in by_id and cid not in seen:
            seen.add(cid)
            names.append(by_id[cid].name)
            cid = by_id[cid].parent_id
        return "/".join(reversed(names))

    cat_bags, dept_bags = keyword_bags([(c.id, c.name, c.parent_id, c.default_department_id) for c in cats],
                                       [(d.id, d.name) for d in depts])
    return Reference(
        categories={c.id: (c.code, c.name, path(c.id), c.parent_id) for c in cats},
        departments={d.id: (d.code, d.name) for d in depts},
        category_keywords=KeywordRanker(cat_bags), department_keywords=KeywordRanker(dept_bags))


@dataclass
class _State:
    reference: Reference
    bundle: TriageBundle | None = None
    version: int | None = None
    checked_at: float = float("-inf")
    loading: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class Suggester:
    """The process's suggestions (see the module docstring)."""

    def __init__(self) -> None:
        self._states: dict[str, _State] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Forget every database's state (tests)."""
        with self._lock:
            self._states.clear()

    def refresh(self, session: Session) -> int | None:
        """Load the reference data and the newest model now, on ``session`` (CLI, tests); returns
        the model version (``None``: no model)."""
        reference = read_reference(session)
        row = session.execute(sa.select(TriageModel.id, TriageModel.blob)
                              .order_by(TriageModel.id.desc()).limit(1)).first()
        state = _State(reference, load(row.blob) if row else None, row.id if row else None,
                       checked_at=time.monotonic())
        with self._lock:
            self._states[database_key(session)] = state
        return state.version

    def _state(self, session: Session) -> _State:
        key = database_key(session)
        state = self._states.get(key)
        if state is None:
            with self._lock:
                state = self._states.get(key)
                if state is None:
                    state = self._states[key] = _State(read_reference(session))
        now = time.monotonic()
        if now - state.checked_at >= get_settings().triage_poll_seconds and not state.loading:
            with state.lock:
                if not state.loading:
                    state.loading, state.checked_at = True, now
                    threading.Thread(target=self._reload, args=(key, session.get_bind().engine, state),
                                     name="qifu-triage-model", daemon=True).start()
        return state

    def _reload(self, key: str, engine: sa.Engine, state: _State) -> None:
        """Background: the newest version and, when it changed, its blob and fresh reference data."""
        try:
            with Session(engine) as s:
                latest = s.scalar(sa.select(sa.func.max(TriageModel.id)))
                reference = read_reference(s)
                bundle, version = state.bundle, state.version
                if latest != state.version:
                    blob = s.scalar(sa.select(TriageModel.blob).where(TriageModel.id == latest)) if latest else None
                    bundle, version = (load(blob), latest) if blob else (None, None)
            fresh = _State(reference, bundle, version, checked_at=time.monotonic())
            with self._lock:
                if self._states.get(key) is state:  # not replaced meanwhile (refresh, clear)
                    self._states[key] = fresh
            if version != state.version:
                log.info("triage model version %s loaded", version)
        except Exception:  # noqa: BLE001 - keep serving what we have; the next poll tries again
            log.exception("loading the triage model failed")
        finally:
            state.loading = False

    def suggest(self, session: Session, title: str, description: str, k: int = TOP) -> schemas.Suggestions:
        """The top ``k`` categories and departments for a request.

        Cost: one jieba segmentation (cached for repeated texts) and two sparse dot products;
        no database statement except on a process's first call.
        """
        state = self._state(session)
        ref, bundle = state.reference, state.bundle
        doc = document(title, description)
        cat_model = bundle.category if bundle else None
        dept_model = bundle.department if bundle else None
        cats = _known(cat_model.rank(doc, k + 2) if cat_model else ref.category_keywords.rank(doc, k),
                      ref.categories, k)
        depts = _known(dept_model.rank(doc, k + 2) if dept_model else ref.department_keywords.rank(doc, k),
                       ref.departments, k)
        return schemas.Suggestions(
            category_source="model" if cat_model else "keywords",
            department_source="model" if dept_model else "keywords",
            model_version=state.version if (cat_model or dept_model) else None,
            categories=[schemas.CategorySuggestion(
                id=r.label, code=ref.categories[r.label][0], name=ref.categories[r.label][1],
                path=ref.categories[r.label][2], confidence=round(r.confidence, 4), words=list(r.words))
                for r in cats],
            departments=[schemas.DepartmentSuggestion(
                id=r.label, code=ref.departments[r.label][0], name=ref.departments[r.label][1],
                confidence=round(r.confidence, 4), words=list(r.words)) for r in depts],
        )


def _known(ranked: list[Ranked], known: dict[Hashable, object], k: int) -> list[Ranked]:
    """The first ``k`` of ``ranked`` whose label still exists (a category deleted, a department
    deactivated since the model was trained)."""
    return [r for r in ranked if r.label in known][:k]


#: The process's suggester.
suggester = Suggester()


def suggestions_for(session: Session, role: str, title: str, description: str) -> schemas.Suggestions | None:
    """The suggestions a reader of role ``role`` sees on a ticket: ``None`` unless
    :data:`SUGGESTION_ROLES`."""
    if role not in SUGGESTION_ROLES:
        return None
    return suggester.suggest(session, title, description)

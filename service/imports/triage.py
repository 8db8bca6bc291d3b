"""Importing what the suggestions learn from (issue 13, docs/triage.md): a category taxonomy as
part of the category tree, and labelled history as training examples.

These readers live in the imports package, beside the CSV/XLSX reader, the cell cleaning and the
department-from-reply rule they reuse (``service.triage`` is read by the ticket routes, so it
may not import this package, which replays through the ticket service).

* :func:`import_taxonomy`: one column per level (the Teddy Cup 附件1: 一级分类, 二级分类,
  三级分类); every distinct path becomes a category under ``root`` (default ``problem``: the
  taxonomy classifies problems, and its nodes inherit that service type), coded
  ``<root>.tx.<sha1 of the path>[:10]`` so that importing again, or a file in another order,
  finds the same rows. Taxonomy categories have no default department (dispatch names the lead;
  the department suggestion proposes one).
* :func:`import_labelled`: rows with an id, title, description, time and a category (name or
  code; a name found at several levels means the shallowest) and, when the file has replies, the
  department the reply names (:class:`service.imports.departments.DepartmentMatcher`, the
  importer's rule) become :class:`service.triage.models.TriageExample` rows, not tickets.
  Idempotent by ``<source>:<id>``.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from service import clock
from service.categories.models import Category
from service.departments.models import Department
from service.imports.cleaning import TimeParseError, clean_id, clean_text, one_line, parse_time
from service.imports.departments import DepartmentMatcher
from service.imports.options import ImportConfigError, column_index, default_source
from service.imports.reader import open_table
from service.triage.models import TriageExample

EXTERNAL_REF_MAX = 64


def taxonomy_code(root_code: str, path: tuple[str, ...]) -> str:
    """The code of the taxonomy node ``path`` (names from level 1) under ``root_code``."""
    digest = hashlib.sha1("/".join(path).encode()).hexdigest()[:10]
    return f"{root_code}.tx.{digest}"


def import_taxonomy(session: Session, path: Path, root_code: str = "problem",
                    sheet: str | None = None) -> dict[str, int]:
    """Add (or rename in place) the categories of the taxonomy file ``path`` under ``root_code``.

    Flushes; the caller commits. Returns ``{"levels", "nodes", "created", "updated"}`` (nodes:
    distinct paths in the file; updated: existing rows whose name or parent changed).

    Raises:
        ImportConfigError: no category ``root_code``, a file without a header, or a row with a
            gap (a level filled below an empty one).
    """
    root = session.exec(select(Category).where(Category.code == root_code)).first()
    if root is None:
        raise ImportConfigError(f"分类 {root_code!r} 不存在（--root）")
    table = open_table(path, sheet)
    try:
        levels = len(table.header)
        if not levels:
            raise ImportConfigError("分类表没有表头")
        paths: dict[tuple[str, ...], None] = {}
        for number, cells in table.rows:
            names = [one_line(clean_text(c))[:100] for c in (list(cells) + [None] * levels)[:levels]]
            while names and not names[-1]:
                names.pop()
            if "" in names:
                raise ImportConfigError(f"第 {number} 行：上一级分类为空")
            for depth in range(1, len(names) + 1):
                paths.setdefault(tuple(names[:depth]), None)
    finally:
        if table.close:
            table.close()

    codes = {p: taxonomy_code(root_code, p) for p in paths}
    existing = {c.code: c for c in session.exec(select(Category).where(Category.code.in_(list(codes.values()))))}
    created = updated = 0
    ids: dict[tuple[str, ...], int] = {}
    for p in sorted(paths, key=len):  # parents first
        parent_id = root.id if len(p) == 1 else ids[p[:-1]]
        row = existing.get(codes[p])
        if row is None:
            row = Category(code=codes[p], name=p[-1], service_type=root.service_type, parent_id=parent_id)
            session.add(row)
            created += 1
        elif (row.name, row.parent_id, row.service_type) != (p[-1], parent_id, root.service_type):
            row.name, row.parent_id, row.service_type = p[-1], parent_id, root.service_type
            updated += 1
        session.flush()
        ids[p] = row.id
    return {"levels": levels, "nodes": len(paths), "created": created, "updated": updated}


def _category_lookup(session: Session) -> dict[str, int]:
    """Category code or name → id; a name at several depths means the shallowest (then the lowest id)."""
    rows = session.execute(sa.select(Category.id, Category.code, Category.name, Category.parent_id)
                           .order_by(Category.id)).all()
    parent = {r.id: r.parent_id for r in rows}

    def depth(cid: int) -> int:
        d = 0
        while parent.get(cid) is not None and d < 50:
            cid, d = parent[cid], d + 1
        return d

    by_name: dict[str, tuple[int, int]] = {}
    for r in rows:
        key = (depth(r.id), r.id)
        if r.name not in by_name or key < by_name[r.name]:
            by_name[r.name] = key
    lookup = {name: cid for name, (_, cid) in by_name.items()}
    lookup.update({r.code: r.id for r in rows})
    return lookup


def import_labelled(session: Session, path: Path, *, source: str | None = None,
                    columns: dict[str, str] | None = None, sheet: str | None = None) -> dict[str, Any]:
    """Import the labelled rows of ``path`` as training examples (see the module docstring).

    Columns: those of ``qifu import`` (:data:`service.imports.options.DEFAULT_COLUMNS`, ``columns``
    overrides): ``external_id``, ``title``/``description``, ``submitted_at``, ``category`` and
    optionally ``reply``. Flushes; the caller commits.

    Returns ``{"source", "read", "imported", "skipped": {reason: count}, "categories": {name:
    count}, "with_department": n}``. Skip reasons: ``missing_id``, ``already_imported``,
    ``duplicate_id``, ``empty_content``, ``bad_time``, ``unknown_category`` (import the taxonomy
    first), ``no_label`` (neither a category nor a department found).

    Raises:
        ImportConfigError / ImportFileError: unusable columns or file.
    """
    source = source or default_source(path)
    table = open_table(path, sheet)
    try:
        index = column_index(table.header, columns or {})
        categories = _category_lookup(session)
        names = dict(session.execute(sa.select(Category.id, Category.name)).all())
        departments = list(session.exec(select(Department).where(Department.is_active)).all())
        matcher = DepartmentMatcher(departments)
        prefix = f"{source}:"
        existing = set(session.scalars(sa.select(TriageExample.external_ref).where(
            TriageExample.external_ref.startswith(prefix, autoescape=True))))
        seen: set[str] = set()
        skipped: Counter[str] = Counter()
        by_category: Counter[str] = Counter()
        rows: list[dict[str, Any]] = []
        read = 0
        now = clock.now()
        for _number, cells in table.rows:
            read += 1
            cell = {f: (cells[i] if i < len(cells) else None) for f, i in index.items()}
            ext = clean_id(cell.get("external_id"))
            ref = f"{prefix}{ext}"
            if not ext or len(ref) > EXTERNAL_REF_MAX:
                skipped["missing_id"] += 1
                continue
            if ref in existing:
                skipped["already_imported"] += 1
                continue
            if ref in seen:
                skipped["duplicate_id"] += 1
                continue
            title = one_line(clean_text(cell.get("title")))[:200]
            description = clean_text(cell.get("description"))[:20_000]
            if not title and not description:
                skipped["empty_content"] += 1
                continue
            try:
                submitted_at = parse_time(cell.get("submitted_at"))
            except TimeParseError:
                skipped["bad_time"] += 1
                continue
            label = one_line(clean_text(cell.get("category")))
            category_id = categories.get(label) if label else None
            if label and category_id is None:
                skipped["unknown_category"] += 1
                continue
            department_id = matcher.match(clean_text(cell.get("reply")))
            if category_id is None and department_id is None:
                skipped["no_label"] += 1
                continue
            seen.add(ref)
            by_category[names.get(category_id, "") if category_id else "(none)"] += 1
            rows.append({"external_ref": ref, "title": title or one_line(description)[:30],
                         "description": description or title, "category_id": category_id,
                         "department_id": department_id, "submitted_at": submitted_at, "created_at": now})
    finally:
        if table.close:
            table.close()
    if rows:
        session.execute(sa.insert(TriageExample), rows)
        session.flush()
    return {"source": source, "read": read, "imported": len(rows), "skipped": dict(skipped),
            "categories": dict(by_category.most_common()),
            "with_department": sum(1 for r in rows if r["department_id"] is not None)}

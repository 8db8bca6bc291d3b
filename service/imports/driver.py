"""The transaction driver of an import: opens the file, reads rows in batches, prepares and writes
each row through :class:`service.imports.importer.Importer`, and commits every batch (its own
session) or leaves the commit to the caller (a given session); a dry run rolls back a savepoint."""

from __future__ import annotations

import re
import time as _time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from service.imports.importer import Importer, Row, Skip
from service.imports.options import SOURCE_MAX, ImportConfigError, ImportOptions, column_index, default_source
from service.imports.reader import ImportFileError, open_table
from service.imports.report import ImportResult

SessionTarget = Session | Engine | Callable[[], Session]


def import_file(target: SessionTarget, path: Path | str, options: ImportOptions | None = None) -> ImportResult:
    """Import the requests in ``path`` (CSV or XLSX).

    Args:
        target: a ``Session`` (everything is flushed in it; the **caller** commits or rolls
            back), or an ``Engine`` / session factory (the importer opens its own session and
            commits every ``options.batch_size`` rows, so an interrupted import keeps whole
            batches and a re-run continues where it stopped).
        path: the file.
        options: see :class:`ImportOptions`.

    Returns:
        The :class:`ImportResult` (counts, skipped rows with reasons, timing).

    Raises:
        ImportConfigError: bad options or mapping (unknown category, column, time zone ...).
        ImportFileError: unreadable file (type, sheet, encoding, no header).
    """
    options = options or ImportOptions()
    path = Path(path)
    if not path.is_file():
        raise ImportFileError(f"文件不存在：{path}")
    source = options.source or default_source(path)
    if not (0 < len(source) <= SOURCE_MAX) or re.search(r"[\s:]", source):
        raise ImportConfigError(f"来源 --source 须为 1-{SOURCE_MAX} 个字符，不含空白和冒号：{source!r}")
    if options.batch_size < 1:
        raise ImportConfigError("batch_size 须 ≥ 1")
    result = ImportResult(path=str(path), source=source, dry_run=options.dry_run)
    started = _time.perf_counter()

    table = open_table(path, options.sheet, options.encoding)
    try:
        index = column_index(table.header, options.columns)
        if isinstance(target, Session):
            owns, session = False, target
        else:
            owns = True
            session = Session(target, expire_on_commit=False) if isinstance(target, Engine) else target()
        try:
            outer = session.begin_nested() if options.dry_run else None
            importer = Importer(session, path, options, result)
            total = table.total if options.limit is None else min(options.limit, table.total or options.limit)
            done = 0

            def run_batch(batch: list[tuple[int, dict[str, Any]]]) -> None:
                nonlocal done
                rows: list[Row] = []
                for number, values in batch:
                    try:
                        rows.append(importer.prepare(number, values))
                    except Skip as skip:
                        result.skip(skip.reason, number, skip.message)
                importer.ensure_requesters(rows)
                importer.reserve_numbers(rows)
                for row in rows:
                    try:
                        importer.write(row)
                    except Skip as skip:
                        result.skip(skip.reason, row.number, skip.message)
                    done += 1
                    if options.progress is not None and done % 50 == 0:
                        options.progress(result.imported + result.skipped_count, total)
                if owns and not options.dry_run:
                    session.commit()

            batch: list[tuple[int, dict[str, Any]]] = []
            for number, cells in table.rows:
                if options.limit is not None and result.read >= options.limit:
                    break
                result.read += 1
                batch.append((number, {f: (cells[i] if i < len(cells) else None) for f, i in index.items()}))
                if len(batch) >= options.batch_size:
                    run_batch(batch)
                    batch = []
            run_batch(batch)
            if outer is not None:
                outer.rollback()
        except BaseException:
            if owns:
                session.rollback()
            raise
        finally:
            if owns:
                session.close()
    finally:
        if table.close is not None:
            table.close()
    for rows in result.skipped.values():
        rows.sort()
    if options.progress is not None:
        options.progress(result.read, result.read)
    result.seconds = _time.perf_counter() - started
    return result

"""Importing several files: one after the other, or on PostgreSQL in parallel worker processes
(one file per process, forked; each commits its own batches)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import Engine

from service.imports.driver import import_file
from service.imports.options import ImportConfigError, ImportOptions
from service.imports.report import ImportResult


def _import_in_child(url: str, path: Path, options: ImportOptions) -> ImportResult:
    # a forked child opens its own engine and never touches the pooled connections it inherited
    from service.db import make_engine

    engine = make_engine(url)
    try:
        return import_file(engine, path, options)
    finally:
        engine.dispose()


def import_files(engine: Engine, paths: list[Path], options: ImportOptions, jobs: int = 1,
                 on_result: Callable[[ImportResult], None] | None = None) -> list[ImportResult]:
    """Import several files, each with its own source; returns the results in ``paths`` order.

    With ``jobs > 1`` on PostgreSQL the files are imported in parallel worker processes (one file
    per process; each commits its own batches). SQLite has a single writer, so there the files
    are always imported one after the other. ``options.progress`` is used only when serial.

    Raises:
        ImportConfigError / ImportFileError: as :func:`import_file` (in parallel mode, the first
            failing file's error after the others finished).
    """
    if options.source and len(paths) > 1:
        raise ImportConfigError("来源 source 只能用于单个文件（多个文件各用文件名作来源）")
    jobs = max(1, min(jobs, len(paths)))
    if jobs == 1 or engine.dialect.name != "postgresql":
        results = []
        for path in paths:
            results.append(import_file(engine, path, options))
            if on_result is not None:
                on_result(results[-1])
        return results

    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from dataclasses import replace

    child_options = replace(options, progress=None)
    url = engine.url.render_as_string(hide_password=False)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        # largest file first (longest-processing-time-first keeps both processes busy to the end)
        order = sorted(range(len(paths)), key=lambda i: -Path(paths[i]).stat().st_size)
        futures = {i: pool.submit(_import_in_child, url, Path(paths[i]), child_options) for i in order}
        results = []
        for future in (futures[i] for i in range(len(paths))):
            results.append(future.result())
            if on_result is not None:
                on_result(results[-1])
    return results

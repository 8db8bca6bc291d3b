"""``qifu triage`` commands of the search features (issue 13): hot issues, past replies, the
near-duplicate index. Wired into the ``qifu`` command as ``app.add_typer(triage_search_app,
name="triage")``::

    qifu triage hot-issues --file ../shared/data/.../附件3.xlsx --xlsx 热点问题.xlsx
    qifu triage hot-issues --date-from 2026-11-01 --date-to 2026-11-30      # over the tickets
    qifu triage import-replies ../shared/data/.../附件4.xlsx
    qifu triage index-duplicates
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from qifu.triage_cli import triage_app

# one `qifu triage` group: these commands join the suggestion commands of qifu/triage_cli.py
triage_search_app = triage_app


@triage_search_app.command("hot-issues")
def hot_issues(
    file: Annotated[Path | None, typer.Option("--file", exists=True, dir_okay=False,
                                              help="a 附件3-like file (xlsx/csv); default: the database's tickets")] = None,
    xlsx: Annotated[Path | None, typer.Option("--xlsx", dir_okay=False,
                                              help="write 热点问题表 and 热点问题留言明细表 to this .xlsx")] = None,
    date_from: Annotated[datetime | None, typer.Option("--date-from", formats=["%Y-%m-%d"])] = None,
    date_to: Annotated[datetime | None, typer.Option("--date-to", formats=["%Y-%m-%d"])] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 5,
    store: Annotated[bool, typer.Option("--store", help="store the result as the latest run (tickets only)")] = False,
) -> None:
    """Group the messages of one matter at one place and rank them by the heat index (热度指数);
    print the table (JSON lines) and timings; with --xlsx write the two tables of the problem
    statement."""
    from service.triage import hotspots

    started = time.perf_counter()
    if file is not None:
        from service.imports import teddy
        from service.imports.reader import ImportFileError

        try:
            messages = teddy.read_messages(file)
        except ImportFileError as exc:
            typer.echo(f"错误：{exc}", err=True)
            raise typer.Exit(2) from exc
        if date_from or date_to:
            lo = date_from.date() if date_from else None
            hi = date_to.date() if date_to else None
            messages = [m for m in messages if (lo is None or hotspots.office_day(m.at) >= lo)
                        and (hi is None or hotspots.office_day(m.at) <= hi)]
    else:
        from qifu.cli import require_migrated
        from service.db import session_scope
        from service.errors import FieldError

        require_migrated()
        with session_scope() as session:
            try:
                lo, hi = hotspots.period(date_from.date() if date_from else None, date_to.date() if date_to else None)
            except FieldError as exc:
                typer.echo(f"错误：{exc}", err=True)
                raise typer.Exit(2) from exc
            if store:
                hotspots.refresh_latest(session, days=(hi - lo).days + 1)
            messages = hotspots.ticket_messages(session, None, lo, hi)
    read = time.perf_counter()
    groups = hotspots.find_hot_issues(messages, limit=limit)
    done = time.perf_counter()
    for g in groups:
        typer.echo(json.dumps(g.as_json(with_members=False), ensure_ascii=False))
    if xlsx is not None:
        hotspots.write_xlsx(groups, xlsx)
    typer.echo(f"{len(messages)} 条留言，{len(groups)} 个热点问题；读取 {read - started:.2f} s，归类与排序 "
               f"{done - read:.2f} s", err=True)


@triage_search_app.command("import-replies")
def import_replies(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="a 附件4-like file (xlsx/csv)")],
) -> None:
    """Import the official replies of PATH (留言编号, 留言主题, 留言时间, 留言详情, 答复意见, 答复时间)
    as past replies for answer suggestions; rows already imported are skipped."""
    from qifu.cli import require_migrated
    from service.db import session_scope
    from service.imports import teddy
    from service.imports.reader import ImportFileError
    from service.triage import knowledge

    require_migrated()
    started = time.perf_counter()
    try:
        with session_scope() as session:
            added, skipped = knowledge.import_replies(session, teddy.read_replies(path))
    except ImportFileError as exc:
        typer.echo(f"错误：{exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(json.dumps({"added": added, "skipped": skipped, "seconds": round(time.perf_counter() - started, 2)},
                          ensure_ascii=False))


@triage_search_app.command("index-duplicates")
def index_duplicates() -> None:
    """Index every open ticket that has no near-duplicate index rows (after an import or a
    restore), and delete the rows of tickets no longer open."""
    from qifu.cli import require_migrated
    from service.db import session_scope
    from service.triage import duplicates

    require_migrated()
    with session_scope() as session:
        removed = duplicates.sweep(session)
        indexed = duplicates.reindex_open(session)
    typer.echo(json.dumps({"indexed": indexed, "removed_rows": removed}))

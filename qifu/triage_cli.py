"""``qifu triage``: import a taxonomy and labelled history, train the suggestion models, show them
(issue 13, docs/triage.md). Wired into ``qifu`` as ``app.add_typer(triage_app, name="triage")``::

    qifu triage import-taxonomy ../shared/data/tipdm2020c/from_15625103741_Text-Mining/附件1.xlsx
    qifu triage import-labelled ../shared/data/tipdm2020c/from_694035434_.../附件2-labelled-train.xlsx
    qifu triage train
    qifu triage suggest "社保转移" "我在外地交的社保怎么转回来"
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

triage_app = typer.Typer(help="分诊：分类体系与标注数据、建议模型训练、热点问题、历史答复、重复诉求索引",
                         no_args_is_help=True)


def _print(data) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, default=str))


def _fail(exc: Exception) -> None:
    typer.echo(f"错误：{exc}", err=True)
    raise typer.Exit(2)


@triage_app.command("import-taxonomy")
def import_taxonomy(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="XLSX/CSV, one column per level")],
    root: Annotated[str, typer.Option(help="code of the category the taxonomy goes under")] = "problem",
    sheet: Annotated[str | None, typer.Option(help="XLSX worksheet (default: the first)")] = None,
) -> None:
    """Add the taxonomy of PATH to the category tree under --root (idempotent)."""
    from qifu.cli import require_migrated
    from service.db import session_scope
    from service.imports.options import ImportConfigError
    from service.imports.reader import ImportFileError
    from service.imports.triage import import_taxonomy as run

    require_migrated()
    try:
        with session_scope() as session:
            _print(run(session, path, root, sheet))
    except (ImportConfigError, ImportFileError) as exc:
        _fail(exc)


@triage_app.command("import-labelled")
def import_labelled(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="XLSX/CSV with a category column")],
    source: Annotated[str | None, typer.Option(help="prefix of the example refs (default: file name)")] = None,
    map_: Annotated[list[str] | None, typer.Option("--map", help="field=column, as qifu import")] = None,
    sheet: Annotated[str | None, typer.Option(help="XLSX worksheet (default: the first)")] = None,
) -> None:
    """Import labelled history as training examples (idempotent by <source>:<id>)."""
    from qifu.cli import require_migrated
    from service.db import session_scope
    from service.imports.options import ImportConfigError, parse_column_map
    from service.imports.reader import ImportFileError
    from service.imports.triage import import_labelled as run

    require_migrated()
    try:
        columns = parse_column_map(map_ or [])
        with session_scope() as session:
            _print(run(session, path, source=source, columns=columns, sheet=sheet))
    except (ImportConfigError, ImportFileError) as exc:
        _fail(exc)


@triage_app.command("train")
def train() -> None:
    """Train the category and department models on closed tickets and imported examples; store
    them as a new version (what the nightly task triage.train does)."""
    from qifu.cli import require_migrated
    from service.db import session_scope
    from service.triage.training import train as run

    require_migrated()
    with session_scope() as session:
        _print(run(session))


@triage_app.command("models")
def models() -> None:
    """The stored model versions, newest first (id, time, examples, training summary)."""
    import sqlalchemy as sa

    from qifu.cli import require_migrated
    from service.db import session_scope
    from service.triage.models import TriageModel

    require_migrated()
    with session_scope() as session:
        rows = session.execute(sa.select(TriageModel.id, TriageModel.created_at, TriageModel.examples,
                                         TriageModel.summary).order_by(TriageModel.id.desc())).all()
    for r in rows:
        _print({"version": r.id, "created_at": r.created_at, "examples": r.examples, **r.summary})


@triage_app.command("suggest")
def suggest(title: str, description: Annotated[str, typer.Argument()] = "") -> None:
    """Print the suggestions for TITLE and DESCRIPTION with the newest model."""
    from qifu.cli import require_migrated
    from service.db import session_scope
    from service.triage.suggest import suggester

    require_migrated()
    with session_scope() as session:
        suggester.refresh(session)
        _print(suggester.suggest(session, title, description or title).model_dump())

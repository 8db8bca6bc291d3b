"""``qifu cadence``: run a cadence by hand for a date, or catch up missed periods (SPEC §5, §7).

Wired into the ``qifu`` command as ``app.add_typer(cadence_app, name="cadence")``::

    qifu cadence run daily --date 2026-03-02     # what the daily task does on that day
    qifu cadence run monthly                     # today's (or the last) monthly period
    qifu cadence catch-up                        # every period missed by a downtime, once
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Annotated

import typer

cadence_app = typer.Typer(help="五诊：每日问诊、每周坐诊、每月复诊、每季会诊、每年回诊", no_args_is_help=True)

KIND_HELP = "daily | weekly | monthly | quarterly | annual"


def _print(result) -> None:
    typer.echo(json.dumps(result.model_dump(mode="json"), ensure_ascii=False))


@cadence_app.command("run")
def run(
    kind: Annotated[str, typer.Argument(help=KIND_HELP)],
    on: Annotated[datetime | None, typer.Option("--date", formats=["%Y-%m-%d"],
                                                help="the day to run for (default today, Asia/Shanghai)")] = None,
    force: Annotated[bool, typer.Option("--force", help="allow a date more than a year back or a month ahead")]
    = False,
) -> None:
    """Run what the KIND cadence does on --date (its period whose run date is the last on or before
    that day). Running a period that already ran does nothing. A date far from today (more than a
    year back or a month ahead) is refused unless --force."""
    from service.cadences import service as cadences
    from service.cadences.periods import KINDS
    from service.db import session_scope

    if kind not in KINDS:
        raise typer.BadParameter(f"kind must be one of {', '.join(KINDS)}", param_hint="KIND")
    from qifu.cli import require_migrated
    from service.errors import FieldError

    try:
        day: date = cadences.check_run_date(on.date(), force=force) if on else cadences.today()
    except FieldError as exc:
        raise typer.BadParameter(exc.detail, param_hint="--date") from exc
    require_migrated()
    with session_scope() as session:
        result = cadences.run_for_date(session, kind, day)
    _print(result)


@cadence_app.command("catch-up")
def catch_up(
    kind: Annotated[list[str] | None, typer.Option("--kind", help=f"only these kinds ({KIND_HELP})")] = None,
) -> None:
    """Run every period due by now and not run yet (after a downtime), oldest first, each in its own
    transaction."""
    from service.cadences.periods import KINDS
    from workers.cadence_tasks import run_due_each

    kinds = tuple(kind or KINDS)
    for k in kinds:
        if k not in KINDS:
            raise typer.BadParameter(f"kind must be one of {', '.join(KINDS)}", param_hint="--kind")
    from qifu.cli import require_migrated

    require_migrated()
    results = run_due_each(kinds)
    for r in results:
        typer.echo(json.dumps(r, ensure_ascii=False))
    typer.echo(f"{len(results)} period(s) run")

"""The ``qifu`` command (typer): run the API, migrate, load seeds, import requests, statistics.

Every command reads the database URL from ``QIFU_DATABASE_URL`` (default: the embedded SQLite file
``./qifu.db``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Qifu 企服 — enterprise service platform backend", no_args_is_help=True,
                  add_completion=False)
ROOT = Path(__file__).resolve().parent.parent


@app.callback()
def _start() -> None:
    """Every command: outbox messages written by this process go to the broker (or the embedded
    worker threads when no Redis is configured), as the API's do."""
    from workers.dispatch import register

    register()


def _alembic_config():
    from alembic.config import Config

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["configure_logging"] = False
    return cfg


def run_migrations() -> None:
    """Apply every Alembic migration (``alembic upgrade head``) to the configured database."""
    from alembic import command

    command.upgrade(_alembic_config(), "head")
    install_rollup()


def install_rollup(url: str | None = None) -> bool:
    """Install or refresh the statistics rollup's triggers and calendar rows on the database at
    ``url`` (default: the configured one) after the migrations: generated from the metric
    definitions, so not stored in a migration (service.stats.rollup.install). True when rebuilt."""
    from sqlmodel import Session

    from service.db import make_engine
    from service.stats.rollup import install

    engine = make_engine(url)
    try:
        with Session(engine) as session:
            changed = install(session)
            session.commit()
    finally:
        engine.dispose()
    return changed


#: Exit status of a command run on a database whose schema is missing or not the latest (1: an
#: error while running, 2: unusable options or files).
EXIT_NOT_MIGRATED = 3


def schema_problem(engine) -> str | None:
    """``None`` when the database behind ``engine`` is at the migrations' head revision(s); else a
    message (Chinese) saying to run ``qifu migrate``: never migrated (no ``alembic_version``
    table, or an empty one), or at another revision (older code's schema, or newer)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    heads = set(ScriptDirectory.from_config(_alembic_config()).get_heads())
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    where = engine.url.render_as_string(hide_password=True)
    if not current:
        return f"数据库 {where} 尚未迁移（没有表结构）：请先运行 qifu migrate"
    if current != heads:
        return (f"数据库 {where} 的结构版本 {', '.join(sorted(current))} 不是本程序的版本 "
                f"{', '.join(sorted(heads))}：请先运行 qifu migrate")
    return None


def require_migrated() -> None:
    """Stop the command with a clear message and :data:`EXIT_NOT_MIGRATED` (not a traceback from
    the first query) when the configured database is not migrated to the latest revision."""
    from service.db import get_engine

    problem = schema_problem(get_engine())
    if problem is not None:
        typer.echo(f"错误：{problem}", err=True)
        raise typer.Exit(EXIT_NOT_MIGRATED)


def run_seeds(enterprises: int = 300) -> dict[str, int]:
    """Load the seed county (idempotent); returns counts created per table."""
    from seeds.loader import load_seeds
    from service.db import session_scope

    with session_scope() as session:
        return load_seeds(session, enterprises=enterprises)


@app.command()
def migrate() -> None:
    """Apply database migrations (alembic upgrade head)."""
    run_migrations()
    typer.echo("数据库已迁移到最新版本")


@app.command()
def seed(enterprises: Annotated[int, typer.Option(help="number of demo enterprises")] = 300) -> None:
    """Load the seed county: regions, grids, departments, categories, users, enterprises."""
    require_migrated()
    counts = run_seeds(enterprises)
    typer.echo("种子数据已加载：" + ", ".join(f"{k}={v}" for k, v in counts.items()))


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[int, typer.Option(help="API processes")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
    access_log: Annotated[bool, typer.Option(help="log every request")] = True,
) -> None:
    """Serve the API with uvicorn (no migrations; see `standalone`). Several workers each get
    their own listening socket on Linux (SO_REUSEPORT), so connections are spread evenly."""
    from qifu.serve import ServingFailed
    from qifu.serve import serve as run
    from service.auth.secret_file import SettingsRefused, check_settings
    from service.logs import configure_logging, logging_config
    from service.observability.multiproc import ensure_multiprocess_dir

    try:
        check_settings()  # refuse at start, not with a 500 on every request (issue 11)
    except SettingsRefused as exc:
        typer.echo(f"qifu: {exc}", err=True)
        raise typer.Exit(2) from None
    if workers > 1:
        ensure_multiprocess_dir()  # /metrics sums the request metrics of every API process
    configure_logging()  # JSON lines (QIFU_LOG_FORMAT); each API process applies it too (log_config)
    try:
        run(host=host, port=port, workers=workers, log_level=log_level, access_log=access_log,
            log_config=logging_config())
    except ServingFailed as exc:
        typer.echo(f"qifu: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except OSError as exc:
        typer.echo(f"qifu: 无法监听 {host}:{port}：{exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None


@app.command()
def standalone(host: str = "127.0.0.1", port: int = 8000) -> None:
    """The embedded default: migrate the database (SQLite unless QIFU_DATABASE_URL says
    otherwise), load the seeds, and serve the API with OpenAPI docs at /docs."""
    from service.auth.secret_file import SettingsRefused, ensure_standalone_secret

    logging.basicConfig(level=logging.INFO)
    try:
        secret_file = ensure_standalone_secret()
    except SettingsRefused as exc:
        typer.echo(f"qifu: {exc}", err=True)
        raise typer.Exit(2) from None
    if secret_file is not None:
        typer.echo(f"JWT 密钥：{secret_file}（首次启动时随机生成，请勿泄露）")
    run_migrations()
    counts = run_seeds()
    typer.echo("种子数据：" + ", ".join(f"{k}={v}" for k, v in counts.items()))
    typer.echo(f"Qifu 已启动：http://{host}:{port}/docs （演示账号见 seeds/README.md）")
    from service.config import get_settings

    scheduler = None
    if not get_settings().redis_url:  # no broker: SLA sweeps and jobs run in this process
        from workers.embedded import EmbeddedScheduler

        scheduler = EmbeddedScheduler().start()
    try:
        serve(host=host, port=port, workers=1)
    finally:
        if scheduler is not None:
            scheduler.stop()


@app.command()
def worker(concurrency: Annotated[int, typer.Option(help="worker processes")] = 2) -> None:
    """Run a Celery worker (needs QIFU_REDIS_URL)."""
    from service.config import get_settings
    from service.observability.multiproc import ensure_multiprocess_dir

    ensure_multiprocess_dir()  # before prometheus-client is imported: the pool's processes share it
    from service.observability.metrics import serve_worker_metrics
    from workers.celery_app import celery_app

    if get_settings().worker_metrics_port:
        serve_worker_metrics(get_settings().worker_metrics_port)
    celery_app.worker_main(["worker", "--loglevel=INFO", f"--concurrency={concurrency}",
                            "-Q", "celery,sla,notifications,cadence"])


@app.command()
def beat(schedule: Annotated[str, typer.Option(help="file where beat keeps the last run times")]
         = "celerybeat-schedule") -> None:
    """Run the Celery beat scheduler (needs QIFU_REDIS_URL)."""
    from workers.celery_app import celery_app

    celery_app.start(["beat", "--loglevel=INFO", "--schedule", schedule])


@app.command("import")
def import_(
    paths: Annotated[list[Path], typer.Argument(help="CSV or XLSX files of historical requests",
                                                exists=True, dir_okay=False, readable=True)],
    map_: Annotated[list[str] | None, typer.Option("--map", help="field=column, repeatable "
                    "(fields: external_id requester title description submitted_at reply replied_at category)")] = None,
    mapping: Annotated[Path | None, typer.Option("--mapping", help="YAML mapping file (docs/import.md)",
                                                 exists=True, dir_okay=False)] = None,
    sheet: Annotated[str | None, typer.Option(help="XLSX worksheet (default: the first)")] = None,
    default_category: Annotated[str | None, typer.Option(help="category code for rows without one")] = None,
    source: Annotated[str | None, typer.Option(help="external-ref prefix (default: the file name)")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="read at most N rows per file")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="check everything, write nothing")] = False,
    timezone: Annotated[str | None, typer.Option(help="zone of times without one (default Asia/Shanghai)")] = None,
    time_format: Annotated[str | None, typer.Option(help="strptime format tried first")] = None,
    encoding: Annotated[str | None, typer.Option(help="CSV encoding (default utf-8-sig)")] = None,
    feedback_days: Annotated[int | None, typer.Option(min=0, help="working days after the reply before "
                                                      "auto-close (default: the SLA feedback limit, 5)")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="rows per commit")] = 500,
    jobs: Annotated[int | None, typer.Option(min=1, help="files imported in parallel (PostgreSQL only; "
                                             "default: one per file up to the CPU count)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the results as JSON")] = False,
) -> None:
    """Import historical requests (CSV/XLSX) by replaying them through the ticket workflow."""
    import json
    import os
    import sys
    import time

    from service.db import get_engine
    from service.imports import (
        ImportConfigError,
        ImportOptions,
        import_files,
        load_mapping_file,
        parse_column_map,
    )
    from service.imports.reader import ImportFileError

    try:
        kwargs = load_mapping_file(mapping) if mapping else {}
        kwargs["columns"] = {**kwargs.get("columns", {}), **parse_column_map(map_ or [])}
    except ImportConfigError as exc:
        typer.echo(f"错误：{exc}", err=True)
        raise typer.Exit(2) from exc
    given = {"sheet": sheet, "default_category": default_category, "source": source, "timezone": timezone,
             "time_format": time_format, "encoding": encoding, "feedback_days": feedback_days}
    kwargs.update({k: v for k, v in given.items() if v is not None})
    kwargs.update(limit=limit, dry_run=dry_run, batch_size=batch_size)
    options = ImportOptions(**kwargs)
    require_migrated()

    engine = get_engine()
    if jobs is None:  # PostgreSQL: one process per file, up to the CPU count; SQLite: one writer
        jobs = min(len(paths), os.cpu_count() or 1) if engine.dialect.name == "postgresql" else 1

    def show(result) -> None:
        if not as_json:
            typer.echo("\n".join(result.summary_lines()))

    started = time.perf_counter()
    try:
        if sys.stdout.isatty() and not as_json and (jobs == 1 or len(paths) == 1):
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            results = []
            for path in paths:
                with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                              TimeRemainingColumn(), transient=True) as bar:
                    task = bar.add_task(f"导入 {path.name}", total=None)
                    options.progress = lambda done, total, t=task, b=bar: b.update(t, completed=done, total=total)
                    results += import_files(engine, [path], options)
                show(results[-1])
        else:
            results = import_files(engine, list(paths), options, jobs=jobs, on_result=show)
    except (ImportConfigError, ImportFileError) as exc:
        typer.echo(f"错误：{exc}", err=True)
        raise typer.Exit(2) from exc
    elapsed = time.perf_counter() - started
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in results], ensure_ascii=False, indent=2))
    elif len(results) > 1:
        read, imported = sum(r.read for r in results), sum(r.imported for r in results)
        typer.echo(f"合计：{len(results)} 个文件（{jobs} 个进程），读取 {read}，导入 {imported}，跳过 "
                   f"{read - imported}；{elapsed:.1f} 秒，{read / elapsed if elapsed else 0:.0f} 行/秒")


stats_app = typer.Typer(help="Statistics (SPEC §6): the summary (`qifu stats --from … --to …`), and the rollup's "
                             "`rebuild` and `fold`", no_args_is_help=False)
app.add_typer(stats_app, name="stats")


@stats_app.callback(invoke_without_command=True)
def stats(
    ctx: typer.Context,
    date_from: Annotated[str | None, typer.Option("--from", help="first submission date, YYYY-MM-DD")] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="last submission date (inclusive), YYYY-MM-DD")] = None,
    group_by: Annotated[str, typer.Option(help="department | region | grid | category | service_type | channel | "
                                               "officer | day | week | month | quarter")] = "department",
    fmt: Annotated[str, typer.Option("--format", help="table | json | csv | xlsx")] = "table",
    output: Annotated[str | None, typer.Option("--output", "-o", help="file to write (xlsx: required)")] = None,
    department_id: Annotated[int | None, typer.Option(help="filter: lead department id")] = None,
    region_id: Annotated[int | None, typer.Option(help="filter: region id (with its subtree)")] = None,
    grid_id: Annotated[int | None, typer.Option(help="filter: grid id")] = None,
    category_id: Annotated[int | None, typer.Option(help="filter: category id (with its subtree)")] = None,
    service_type: Annotated[str | None, typer.Option(help="filter: service type")] = None,
    channel: Annotated[str | None, typer.Option(help="filter: channel")] = None,
    officer_id: Annotated[int | None, typer.Option(help="filter: officer id")] = None,
    exact: Annotated[bool, typer.Option("--exact", help="recount the ticket rows (exact percentiles) "
                                                        "instead of reading the rollup")] = False,
) -> None:
    """Print or export the summary statistics (SPEC §6) of tickets submitted in a period."""
    if ctx.invoked_subcommand is not None:
        return
    from service.stats import export
    from service.stats.service import GROUPINGS, Filters, summary

    if date_from is None or date_to is None:
        raise typer.BadParameter("须给出 --from 与 --to（YYYY-MM-DD）", param_hint="--from/--to")
    if group_by not in GROUPINGS:
        raise typer.BadParameter(f"可选：{', '.join(GROUPINGS)}", param_hint="--group-by")
    require_migrated()
    start, end = _dates(date_from, date_to)
    filters = Filters(department_id, region_id, grid_id, category_id, service_type, channel, officer_id)
    rows, total = _stats_call(lambda session, actor: summary(session, actor, start, end, group_by, filters,
                                                             exact=exact))
    if fmt == "json":
        _emit_json({"date_from": date_from, "date_to": date_to, "group_by": group_by,
                    "rows": [r.as_dict() for r in rows], "total": total.as_dict()}, output)
        return
    table = export.summary_table(group_by, rows, total, f"统计汇总 {start}至{end}")
    if fmt in ("csv", "xlsx"):
        _emit_file(fmt, table, output)
        return
    if fmt != "table":
        raise typer.BadParameter("可选：table, json, csv, xlsx", param_hint="--format")
    _print_table(f"统计 {date_from} — {date_to}（按 {group_by}）", table)


@stats_app.command("rebuild")
def stats_rebuild(
    check: Annotated[bool, typer.Option("--check", help="only compare; change nothing (exit 1 on differences)")]
    = False,
) -> None:
    """Recompute the statistics rollup from the tickets, print every difference from the live
    rollup and (without --check) replace it. Installs the rollup's triggers when missing or outdated."""
    from service.db import session_scope
    from service.stats.rollup import rebuild

    require_migrated()
    with session_scope() as session:
        report = rebuild(session, check_only=check)
    for d in report.differences[:1000]:
        typer.echo(d.describe())
    if len(report.differences) > 1000:
        typer.echo(f"……另有 {len(report.differences) - 1000} 处差异")
    if report.outdated:
        typer.echo("统计汇总表未安装或定义已变更：请运行 qifu stats rebuild（不带 --check）", err=True)
        raise typer.Exit(1)
    if report.installed:
        typer.echo("统计汇总表已按当前定义重新安装并重建")
    elif report.repaired:
        typer.echo(f"发现 {len(report.differences)} 处差异，已按重算结果修复")
    elif report.differences:
        typer.echo(f"发现 {len(report.differences)} 处差异（--check：未修改）", err=True)
        raise typer.Exit(1)
    else:
        typer.echo("统计汇总表与重算一致")


@stats_app.command("fold")
def stats_fold() -> None:
    """Fold the rollup's appended changes into its rows now (beat does it every QIFU_STATS_FOLD_SECONDS)."""
    from service.db import session_scope
    from service.stats.rollup import fold

    require_migrated()
    with session_scope() as session:
        moved = fold(session)
    typer.echo(f"已合并 {moved} 行变更")


@app.command()
def ranking(
    period: Annotated[str, typer.Option(help="month YYYY-MM or quarter YYYY-Qn")],
    fmt: Annotated[str, typer.Option("--format", help="table | json | csv | xlsx")] = "table",
    output: Annotated[str | None, typer.Option("--output", "-o", help="file to write (xlsx: required)")] = None,
) -> None:
    """Print or export the department ranking (晾晒, SPEC §6) of a month or a quarter."""
    from service.errors import AppError
    from service.stats import export
    from service.stats.service import department_ranking, parse_period, ranking_weights

    require_migrated()
    try:
        kind, first, last = parse_period(period)
    except AppError as exc:
        raise typer.BadParameter(str(exc.detail), param_hint="--period") from exc
    rows = _stats_call(lambda session, actor: department_ranking(session, actor, first, last))
    if fmt == "json":
        _emit_json({"period": period, "kind": kind, "weights": ranking_weights(),
                    "rows": [r.as_dict() for r in rows]}, output)
        return
    table = export.ranking_table(rows, f"{'月度' if kind == 'month' else '季度'}排名 {period}")
    if fmt in ("csv", "xlsx"):
        _emit_file(fmt, table, output)
        return
    if fmt != "table":
        raise typer.BadParameter("可选：table, json, csv, xlsx", param_hint="--format")
    _print_table(table.title, table, total_last=False)


def _dates(date_from: str, date_to: str):
    from datetime import date

    try:
        return date.fromisoformat(date_from), date.fromisoformat(date_to)
    except ValueError as exc:
        raise typer.BadParameter(f"日期须为 YYYY-MM-DD：{exc}") from exc


def _stats_call(fn):
    from service.auth.actor import Actor
    from service.db import session_scope
    from service.errors import AppError

    try:
        with session_scope() as session:
            return fn(session, Actor.system())
    except AppError as exc:
        typer.echo(f"错误：{exc.detail}", err=True)
        raise typer.Exit(2) from exc


def _emit_json(data, output: str | None) -> None:
    import json

    text = json.dumps(data, ensure_ascii=False, indent=2, default=str)
    if output:
        Path(output).write_text(text + "\n", encoding="utf-8")
    else:
        typer.echo(text)


def _emit_file(fmt: str, table, output: str | None) -> None:
    import sys

    from service.stats import export

    body = export.to_csv(table) if fmt == "csv" else export.to_xlsx(table)
    if output:
        Path(output).write_bytes(body)
        typer.echo(f"已写入 {output}", err=True)
    elif fmt == "xlsx":
        raise typer.BadParameter("xlsx 须用 --output 指定文件", param_hint="--output")
    else:
        sys.stdout.write(body.decode("utf-8-sig"))


def _print_table(title: str, table, total_last: bool = True) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table

    from service.stats.metrics import RATES

    def cell(name: str, value) -> str:
        if value is None:
            return "—"
        if name in RATES:
            return f"{value:.1%}"
        if isinstance(value, float):
            return f"{value:.2f}"
        return str(value)

    out = Table(title=title)
    for name in table.columns:
        out.add_column(table.headers[name], justify="left" if name in ("label", "department", "code") else "right")
    for i, row in enumerate(table.rows):
        if total_last and i == len(table.rows) - 1:
            out.add_section()
        out.add_row(*(cell(name, row.get(name)) for name in table.columns),
                    style="bold" if total_last and i == len(table.rows) - 1 else None)
    Console(width=None if sys.stdout.isatty() else 400).print(out)


from qifu.cadence_cli import cadence_app  # noqa: E402

app.add_typer(cadence_app, name="cadence")

from qifu.user_cli import user_app  # noqa: E402

app.add_typer(user_app, name="user")

sla_app = typer.Typer(help="SLA: deadlines, reminders, escalation, auto-close")
app.add_typer(sla_app, name="sla")


@sla_app.command("scan")
def sla_scan() -> None:
    """Run the three SLA sweeps now (reminders, overdue/escalation, auto-close) and print counts."""
    from service.db import session_scope
    from service.sla import sweeps

    require_migrated()
    with session_scope() as session:
        result = sweeps.scan(session)
    typer.echo(f"催办 {result.reminded}，超期督办 {result.overdue}，升级督办 {result.escalated}，"
               f"自动办结 {result.closed}")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover - python -m qifu.cli
    main()

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
    counts = run_seeds(enterprises)
    typer.echo("种子数据已加载：" + ", ".join(f"{k}={v}" for k, v in counts.items()))


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[int, typer.Option(help="API processes")] = 1,
) -> None:
    """Serve the API with uvicorn (no migrations; see `standalone`)."""
    import uvicorn

    uvicorn.run("service.app:app", host=host, port=port, workers=workers, log_level="info")


@app.command()
def standalone(host: str = "127.0.0.1", port: int = 8000) -> None:
    """The embedded default: migrate the database (SQLite unless QIFU_DATABASE_URL says
    otherwise), load the seeds, and serve the API with OpenAPI docs at /docs."""
    logging.basicConfig(level=logging.INFO)
    run_migrations()
    counts = run_seeds()
    typer.echo("种子数据：" + ", ".join(f"{k}={v}" for k, v in counts.items()))
    typer.echo(f"Qifu 已启动：http://{host}:{port}/docs （演示账号见 seeds/README.md）")
    serve(host=host, port=port, workers=1)


@app.command()
def worker(concurrency: Annotated[int, typer.Option(help="worker processes")] = 2) -> None:
    """Run a Celery worker (needs QIFU_REDIS_URL)."""
    from workers.celery_app import celery_app

    celery_app.worker_main(["worker", "--loglevel=INFO", f"--concurrency={concurrency}"])


@app.command()
def beat() -> None:
    """Run the Celery beat scheduler (needs QIFU_REDIS_URL)."""
    from workers.celery_app import celery_app

    celery_app.start(["beat", "--loglevel=INFO"])


def main() -> None:  # pragma: no cover
    app()

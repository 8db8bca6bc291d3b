"""Commands on a database that was never migrated, or is not at the latest revision (issue 11):
a clear message naming ``qifu migrate`` and exit status 3, not a traceback from the first query,
and nothing written. SQLite (the embedded default) and a fresh PostgreSQL database."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from qifu.cli import EXIT_NOT_MIGRATED, _alembic_config, app
from service.config import get_settings
from service.db import get_engine
from tests.conftest import PG_SERVER
from tests.scratch_db import create_database, drop_database, migrate

COMMANDS = [
    ["import", "{csv}"],
    ["stats", "--from", "2019-01-01", "--to", "2019-12-31"],
    ["sla", "scan"],
    ["seed", "--enterprises", "0"],
    ["cadence", "run", "daily", "--date", "2026-03-02"],
    ["attachments-orphans"],
]


@pytest.fixture
def database_url(monkeypatch: pytest.MonkeyPatch):
    """Point ``qifu`` at a URL set by the test (``QIFU_DATABASE_URL``), caches cleared around it."""
    def use(url: str) -> None:
        monkeypatch.setenv("QIFU_DATABASE_URL", url)
        get_settings.cache_clear()
        get_engine.cache_clear()

    yield use
    get_engine().dispose()
    get_settings.cache_clear()
    get_engine.cache_clear()


def _csv(tmp_path: Path) -> Path:
    path = tmp_path / "留言.csv"
    path.write_text("留言编号,留言用户,留言主题,留言时间,留言详情\n1,U1,噪音扰民,2019/3/1 10:00:00,夜间施工噪音\n",
                    encoding="utf-8")
    return path


def _run(args: list[str], csv: Path):
    return CliRunner().invoke(app, [a.format(csv=csv) for a in args])


def _tables(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        return sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_never_migrated_sqlite_says_run_qifu_migrate(tmp_path: Path, database_url, args) -> None:
    url = f"sqlite:///{tmp_path / 'never.db'}"
    database_url(url)
    out = _run(args, _csv(tmp_path))
    assert out.exit_code == EXIT_NOT_MIGRATED == 3, out.output
    assert "尚未迁移" in out.output and "qifu migrate" in out.output
    assert out.exception is None or isinstance(out.exception, SystemExit)  # no traceback
    assert _tables(url) == []  # nothing was created or written


def test_never_migrated_postgresql_says_run_qifu_migrate(tmp_path: Path, database_url) -> None:
    name = f"qifu_never_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    url = create_database(PG_SERVER, name)
    try:
        database_url(url)
        out = _run(COMMANDS[0], _csv(tmp_path))
        assert out.exit_code == EXIT_NOT_MIGRATED, out.output
        assert "尚未迁移" in out.output and "qifu migrate" in out.output
        assert _tables(url) == []
    finally:
        get_engine().dispose()
        drop_database(PG_SERVER, name)


def test_an_older_revision_says_run_qifu_migrate_then_works(tmp_path: Path, database_url) -> None:
    from alembic import command
    from alembic.script import ScriptDirectory

    url = f"sqlite:///{tmp_path / 'old.db'}"
    cfg = _alembic_config()
    cfg.attributes["url"] = url
    revisions = list(ScriptDirectory.from_config(cfg).walk_revisions())  # newest first
    command.upgrade(cfg, revisions[-1].revision)  # the first migration only
    database_url(url)
    csv = _csv(tmp_path)
    out = _run(COMMANDS[0], csv)
    assert out.exit_code == EXIT_NOT_MIGRATED, out.output
    assert "不是本程序的版本" in out.output and "qifu migrate" in out.output

    migrate(url)  # what the message says to do
    get_engine().dispose()
    assert _run(["seed", "--enterprises", "0"], csv).exit_code == 0
    out = _run(COMMANDS[0], csv)
    assert out.exit_code == 0, out.output
    assert "导入 1" in out.output

"""``qifu open311 key create|list|revoke`` on a migrated SQLite file (docs/open311.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from service.config import get_settings
from service.db import get_engine, make_engine
from service.open311.models import Open311Key
from service.open311.service import hash_key
from tests.conftest import migrate


def test_create_list_revoke(tmp_path: Path):
    from qifu.open311_cli import open311_app

    url = f"sqlite:///{tmp_path / 'keys.db'}"
    migrate(url)
    mp = pytest.MonkeyPatch()
    mp.setenv("QIFU_DATABASE_URL", url)
    get_settings.cache_clear()
    get_engine.cache_clear()
    try:
        runner = CliRunner()
        made = runner.invoke(open311_app, ["key", "create", "城市门户"])
        assert made.exit_code == 0, made.output
        key = made.stdout.strip().splitlines()[-1]
        assert key.startswith("q311_") and len(key) == 48
        listed = runner.invoke(open311_app, ["key", "list"])
        assert listed.exit_code == 0 and "城市门户" in listed.stdout and key not in listed.stdout
        assert "任意企业" in listed.stdout and "有效" in listed.stdout
        assert runner.invoke(open311_app, ["key", "revoke", "1"]).exit_code == 0
        assert "吊销于" in runner.invoke(open311_app, ["key", "list"]).stdout
        assert runner.invoke(open311_app, ["key", "revoke", "99"]).exit_code == 2
        bad = runner.invoke(open311_app, ["key", "create", "x", "--channel", "import"])
        assert bad.exit_code == 2
        bad = runner.invoke(open311_app, ["key", "create", "x", "--enterprise-id", "999"])
        assert bad.exit_code == 2
        engine = make_engine(url)
        with Session(engine) as session:
            row = session.exec(select(Open311Key)).one()
            assert row.key_hash == hash_key(key) and row.revoked_at is not None
        engine.dispose()
    finally:
        get_engine().dispose()
        mp.undo()
        get_settings.cache_clear()
        get_engine.cache_clear()

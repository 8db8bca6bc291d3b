"""Fixtures of the triage search tests: a migrated and seeded SQLite file (FTS5, the embedded
default) beside the PostgreSQL session of tests/conftest.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session

#: the Teddy Cup files (../shared/data/README.md); QIFU_SHARED_DATA overrides (a worktree elsewhere)
DATA = Path(os.environ.get("QIFU_SHARED_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data")
TEDDY = DATA / "tipdm2020c" / "from_15625103741_Text-Mining"


@pytest.fixture(scope="session")
def sqlite_engine(tmp_path_factory: pytest.TempPathFactory):
    from service.db import make_engine
    from tests.scratch_db import build_database

    url = f"sqlite:///{tmp_path_factory.mktemp('triage_search') / 'qifu.db'}"
    build_database(url, enterprises=30)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_session(sqlite_engine) -> Iterator[Session]:
    """A session on the SQLite file, rolled back after the test."""
    with sqlite_engine.connect() as conn:
        trans = conn.begin()
        with Session(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False) as s:
            yield s
        trans.rollback()


def need_data(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} not present")

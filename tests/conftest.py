"""Test fixtures: a real PostgreSQL database per xdist worker, built by the Alembic migrations and
seeded once; each test runs in a transaction rolled back at the end (SQLAlchemy 2.0
``join_transaction_mode="create_savepoint"``). Redis is real too (``redis_url``).

Environment: ``QIFU_TEST_PG_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432``) names
the server; ``QIFU_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/15``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session, select

os.environ.setdefault("QIFU_ENVIRONMENT", "test")
# attachments stored by any test (the fuzz run uploads too) stay in this process's memory, never in
# the checkout; tests/attachments points the store at a temporary directory of its own
os.environ.setdefault("QIFU_ATTACHMENT_STORAGE_URL", "memory://qifu-test-attachments")

from service.auth.security import create_access_token  # noqa: E402
from service.config import get_settings  # noqa: E402
from service.db import get_session, make_engine  # noqa: E402
from service.users.models import User  # noqa: E402
from workers.dispatch import register as register_dispatcher  # noqa: E402

register_dispatcher()  # tests call services directly: their outbox messages go where the API's would
from tests.scratch_db import migrate, scratch_database  # noqa: E402,F401  (migrate: for tests)

PG_SERVER = os.environ.get("QIFU_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")
#: ../shared/data beside the checkout; QIFU_SHARED_DATA overrides (a worktree elsewhere)
SHARED_DATA = Path(os.environ.get("QIFU_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")


def pytest_collection_modifyitems(config, items):
    """Deselect tests that read ../shared/data when it is absent (a user's machine), never fail them."""
    if SHARED_DATA.is_dir():
        return
    kept, dropped = [], []
    for item in items:
        (dropped if item.get_closest_marker("realdata") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def pg_url(worker_id: str) -> Iterator[str]:
    """A fresh, migrated and seeded PostgreSQL database for this test process (xdist worker);
    named after the process id so concurrent runs never share one; dropped at the end."""
    with scratch_database(PG_SERVER, f"qifu_test_{worker_id}_{os.getpid()}") as url:
        yield url


@pytest.fixture(scope="session")
def engine(pg_url: str):
    eng = make_engine(pg_url)
    yield eng
    eng.dispose()


@pytest.fixture(autouse=True)
def _fresh_reference_caches():
    """Calendar overrides and SLA policies are cached per process for a few seconds; a test's
    rolled-back changes must not leak into the next test."""
    from service.auth.login import login_throttle
    from service.auth.throttle import _user_limits
    from service.calendar.service import clear_cache as clear_calendar
    from service.sla.policy import clear_cache as clear_policies

    clear_calendar()
    clear_policies()
    login_throttle.cache_clear()  # login and request counts (in memory in tests) start at zero
    _user_limits.clear()
    yield
    clear_calendar()
    clear_policies()
    login_throttle.cache_clear()
    _user_limits.clear()


@pytest.fixture
def session(engine) -> Iterator[Session]:
    """A session whose work is rolled back after the test (commits become savepoints)."""
    with engine.connect() as conn:
        trans = conn.begin()
        with Session(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False) as s:
            yield s
        trans.rollback()


@pytest.fixture
def app(session: Session):
    from qifu.main import create_app

    application = create_app()

    def _session() -> Iterator[Session]:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise

    application.dependency_overrides[get_session] = _session
    return application


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def token_for(session: Session, username: str) -> str:
    user = session.exec(select(User).where(User.username == username)).one()
    return create_access_token(user.id, user.role)[0]


@pytest.fixture
def login(client: TestClient, session: Session):
    """``login("ent1")`` returns auth headers for a seeded user (token made directly, no Argon2)."""

    def _login(username: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token_for(session, username)}"}

    return _login


@pytest.fixture
def settings():
    return get_settings()


@pytest.fixture
def quiet_sweeps(session: Session) -> Session:
    """The SLA sweeps scan every ticket: disarm the triggers of tickets that other tests
    committed to this database, inside the test's rolled-back transaction, so that a sweep here
    sees only the tickets this test makes."""
    session.execute(sa.text(
        "UPDATE ticket SET remind_at = NULL, overdue_at = NULL, level2_at = NULL, "
        "due_step = CASE WHEN due_step = 'feedback' THEN NULL ELSE due_step END"))
    return session

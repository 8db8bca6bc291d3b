"""Throw-away PostgreSQL databases for tests and benchmarks: create, migrate, seed, drop.

Not used by the application itself; one place so tests and ``bench/`` build databases the same way
production does (``alembic upgrade head``, then the seeds).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlmodel import Session


def _admin(server: str) -> sa.Engine:
    return sa.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")


def create_database(server: str, name: str) -> str:
    """Drop (with FORCE) and create database ``name`` on ``server`` (a URL without database);
    returns the new database's URL."""
    admin = _admin(server)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"{server}/{name}"


def drop_database(server: str, name: str) -> None:
    """Drop database ``name`` on ``server`` if it exists, disconnecting its sessions."""
    admin = _admin(server)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def migrate(url: str) -> None:
    """Build the schema at ``url`` (PostgreSQL or SQLite) with the Alembic migrations."""
    from alembic import command

    from qifu.cli import _alembic_config

    cfg = _alembic_config()
    cfg.attributes["url"] = url
    command.upgrade(cfg, "head")
    from qifu.cli import install_rollup

    install_rollup(url)  # the statistics rollup's generated triggers, as `qifu migrate` does


def build_database(url: str, enterprises: int = 300) -> None:
    """Migrate and seed ``url``, as ``qifu migrate`` + ``qifu seed`` would."""
    from seeds.loader import load_seeds
    from service.db import make_engine

    migrate(url)
    engine = make_engine(url)
    with Session(engine) as session:
        load_seeds(session, enterprises=enterprises)
        session.commit()
    engine.dispose()


@contextmanager
def scratch_database(server: str, name: str, enterprises: int = 300) -> Iterator[str]:
    """A fresh migrated and seeded database for the duration of the block; dropped afterwards."""
    url = create_database(server, name)
    try:
        build_database(url, enterprises)
        yield url
    finally:
        drop_database(server, name)

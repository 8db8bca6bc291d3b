"""Alembic environment: the URL comes from Qifu settings (``QIFU_DATABASE_URL``), the target
metadata from the model registry ``service.models``."""

from logging.config import fileConfig

from alembic import context
from sqlmodel import SQLModel

import service.models  # noqa: F401  (registers every table)
from service.db import make_engine

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = SQLModel.metadata


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Leave the objects the models cannot declare out of the autogenerate comparison: full-text
    objects (FTS5 tables, GIN expression indexes: :data:`service.triage.search_models.FTS_OBJECTS`)
    and PostgreSQL-only indexes (:data:`service.stats.models.PG_ONLY_OBJECTS`)."""
    from service.stats.models import PG_ONLY_OBJECTS
    from service.triage.search_models import FTS_OBJECTS

    return name not in FTS_OBJECTS and name not in PG_ONLY_OBJECTS


def _url() -> str:
    from service.config import get_settings

    return config.attributes.get("url") or get_settings().database_url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True,
                      dialect_opts={"paramstyle": "named"}, compare_type=True, include_object=include_object,
                      render_as_batch=_url().startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True,
                      include_object=include_object,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

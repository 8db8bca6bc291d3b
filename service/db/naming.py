"""Naming rules of the schema: every index and constraint gets a predictable name (Alembic
autogenerate and hand-written migrations agree on it). Applied to ``SQLModel.metadata`` on import,
before any table model is defined (``service.db`` imports this module first)."""

from __future__ import annotations

from sqlmodel import SQLModel

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata.naming_convention = NAMING_CONVENTION

"""Fixtures of the Open311 tests: API keys made through the domain (one bound to ent1's enterprise,
one for any enterprise), and per-process caches cleared around each test."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlmodel import Session

from service.open311 import schemas
from service.open311 import service as open311
from tests import factories as f

BASE = "/open311/v2"


@dataclass
class Key:
    id: int
    raw: str
    user_id: int
    enterprise_id: int | None


@pytest.fixture(autouse=True)
def _fresh_open311_caches():
    open311.clear_key_cache()
    open311.clear_catalogue()
    open311.key_counter.cache_clear()
    yield
    open311.clear_key_cache()
    open311.clear_catalogue()
    open311.key_counter.cache_clear()


def make_key(session: Session, enterprise_id: int | None, name: str = "测试系统") -> Key:
    row, raw = open311.create_key(session, f.actor(session, "admin"),
                                  schemas.KeyCreate(system_name=name, enterprise_id=enterprise_id))
    session.commit()
    return Key(row.id, raw, row.user_id, enterprise_id)


@pytest.fixture
def own_key(session) -> Key:
    """A key bound to ent1's enterprise."""
    return make_key(session, f.enterprise_of(session, "ent1").id, "ent1 自有系统")


@pytest.fixture
def any_key(session) -> Key:
    """A key for any enterprise named by USCC (a city portal)."""
    return make_key(session, None, "12345 市民热线门户")

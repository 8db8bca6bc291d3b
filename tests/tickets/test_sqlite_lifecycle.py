"""The embedded default (SPEC §8): a SQLite file built by the Alembic migrations and loaded with the
seeds, then the whole ticket lifecycle through the HTTP API of a real application bound to that
file (``QIFU_DATABASE_URL``; no dependency overrides, no rolled-back session).

Also the ``alembic check`` equivalent on SQLite: after ``upgrade head`` the schema matches the
models exactly (``alembic.autogenerate.compare_metadata`` finds no difference).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlmodel import Session, SQLModel, func, select

import service.models  # noqa: F401  (registers every table)
from service import clock
from service.config import get_settings
from service.db import get_engine, make_engine
from service.tickets.models import IdempotencyKey, Ticket, TicketEvent
from tests.conftest import migrate

PASSWORD = "qifu-demo-2026"
API = "/api/v1"


@dataclass
class Embedded:
    url: str
    client: TestClient
    engine: sa.Engine  # the application's own engine (service.db.get_engine())
    headers: dict[str, dict[str, str]]

    def auth(self, username: str) -> dict[str, str]:
        return self.headers[username]


def _clear_caches() -> None:
    get_settings.cache_clear()
    get_engine.cache_clear()


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A temp SQLite file: migrated with Alembic, then seeded (committed)."""
    path: Path = tmp_path_factory.mktemp("embedded") / "qifu.db"
    url = f"sqlite:///{path}"
    migrate(url)
    from seeds.loader import load_seeds

    engine = make_engine(url)
    with Session(engine) as session:
        counts = load_seeds(session)
        session.commit()
    engine.dispose()
    assert counts["users"] > 0 and counts["enterprises"] >= 20
    return url


@pytest.fixture(scope="module")
def embedded(sqlite_url: str) -> Iterator[Embedded]:
    """The real application on the SQLite file; settings and engine caches cleared before and
    restored after, so no other test sees this database."""
    mp = pytest.MonkeyPatch()
    mp.setenv("QIFU_DATABASE_URL", sqlite_url)
    _clear_caches()
    try:
        assert get_settings().is_sqlite and get_settings().database_url == sqlite_url
        from qifu.main import create_app

        with TestClient(create_app(), raise_server_exceptions=False) as client:
            headers = {}
            for username in ("ent1", "officer1", "dept_rsj", "dept_fgj", "supervisor1"):
                r = client.post(f"{API}/auth/token", data={"username": username, "password": PASSWORD})
                assert r.status_code == 200, r.text
                headers[username] = {"Authorization": f"Bearer {r.json()['access_token']}"}
            yield Embedded(url=sqlite_url, client=client, engine=get_engine(), headers=headers)
    finally:
        get_engine().dispose()
        mp.undo()
        _clear_caches()


def _ok(response, status: int = 200) -> dict:
    assert response.status_code == status, f"{response.status_code} {response.text}"
    return response.json()


def _act(e: Embedded, number: str, action: str, username: str, body: dict | None = None,
         status: int = 200) -> dict:
    return _ok(e.client.post(f"{API}/tickets/{number}/{action}", headers=e.auth(username), json=body or {}),
               status)


def _submit(e: Embedded, title: str, key: str | None = None) -> dict:
    headers = dict(e.auth("ent1"))
    if key:
        headers["Idempotency-Key"] = key
    body = {"title": title, "description": "急需焊工50名，希望对接招聘渠道", "category_code": "problem.labour"}
    return _ok(e.client.post(f"{API}/tickets", headers=headers, json=body), 201)


def _summary_total(e: Embedded) -> dict:
    today = clock.now().astimezone(clock.office_zone()).date()
    params = {"date_from": str(today - timedelta(days=1)), "date_to": str(today + timedelta(days=1))}
    return _ok(e.client.get(f"{API}/stats/summary", params=params, headers=e.auth("supervisor1")))["total"]


def test_app_is_bound_to_the_sqlite_file(embedded: Embedded):
    assert embedded.engine.dialect.name == "sqlite"
    assert str(embedded.engine.url) == embedded.url
    assert _ok(embedded.client.get("/readyz"))["status"] == "ready"


def test_full_lifecycle(embedded: Embedded):
    """ent1 submits → officer1 accepts, dispatches → dept_rsj claims, replies → ent1 confirms:
    closed, with the complete history, and counted by the statistics."""
    e = embedded
    before = _summary_total(e)

    t = _submit(e, "招工难")
    number = t["number"]
    assert re.fullmatch(r"QF\d{4}-\d{6}", number)
    assert t["status"] == "submitted" and t["version"] == 1

    assert _act(e, number, "accept", "officer1")["status"] == "accepted"
    t = _act(e, number, "dispatch", "officer1")
    assert t["status"] == "dispatched" and t["lead_department_id"] is not None  # category default: RSJ
    assert _act(e, number, "claim", "dept_rsj")["status"] == "in_progress"
    t = _act(e, number, "reply", "dept_rsj", {"text": "已安排专场招聘会，并推送至县人力资源市场"})
    assert t["status"] == "replied" and t["reply_text"].startswith("已安排")
    t = _act(e, number, "confirm", "ent1", {"rating": "satisfied"})
    assert t["status"] == "closed" and t["rating"] == "satisfied" and t["version"] == 6
    for milestone in ("submitted_at", "accepted_at", "dispatched_at", "claimed_at", "first_replied_at",
                      "replied_at", "closed_at"):
        assert t[milestone] is not None, milestone

    # the full history (流转记录): every step, in order, chaining from-status to to-status
    events = _ok(e.client.get(f"{API}/tickets/{number}/events", headers=e.auth("officer1")))
    assert [ev["action"] for ev in events] == ["submit", "accept", "dispatch", "claim", "reply", "confirm"]
    chain = [(ev["from_status"], ev["to_status"]) for ev in events]
    assert chain == [(None, "submitted"), ("submitted", "accepted"), ("accepted", "dispatched"),
                     ("dispatched", "in_progress"), ("in_progress", "replied"), ("replied", "closed")]
    assert events[-1]["payload"]["rating"] == "satisfied"
    # the enterprise reads the same ticket and its public history
    mine = _ok(e.client.get(f"{API}/tickets/{number}", headers=e.auth("ent1")))
    assert mine["status"] == "closed" and mine["status_label"]
    ent_events = _ok(e.client.get(f"{API}/tickets/{number}/events", headers=e.auth("ent1")))
    assert {"submit", "dispatch", "reply", "confirm"} <= {ev["action"] for ev in ent_events}
    # a department that was never involved does not see it (404, not 403)
    assert e.client.get(f"{API}/tickets/{number}", headers=e.auth("dept_fgj")).status_code == 404
    with Session(e.engine) as s:  # and the rows really are in the SQLite file
        assert s.exec(select(func.count()).select_from(TicketEvent)
                      .join(Ticket, Ticket.id == TicketEvent.ticket_id)
                      .where(Ticket.number == number)).one() == 6

    after = _summary_total(e)
    assert after["received"] == before["received"] + 1
    assert after["accepted"] == before["accepted"] + 1
    assert after["closed"] == before["closed"] + 1
    assert after["rated"] == before["rated"] + 1
    assert after["satisfied"] == before["satisfied"] + 1
    assert after["closure_rate"] is not None and after["satisfaction_rate"] is not None


def test_illegal_move_and_stale_etag(embedded: Embedded):
    e = embedded
    number = _submit(e, "非法操作")["number"]
    problem = _act(e, number, "claim", "officer1", status=409)
    assert problem["type"] == "/problems/illegal-transition" and problem["current_status"] == "submitted"
    r = e.client.post(f"{API}/tickets/{number}/accept", json={},
                      headers={**e.auth("officer1"), "If-Match": '"7"'})
    assert r.status_code == 412, r.text
    assert _ok(e.client.get(f"{API}/tickets/{number}", headers=e.auth("ent1")))["status"] == "submitted"


def test_idempotent_retry(embedded: Embedded):
    """A retried submission (same Idempotency-Key and body) returns the first ticket; no second row."""
    e = embedded
    first = _submit(e, "幂等重试", key="sqlite-retry-1")
    second = _submit(e, "幂等重试", key="sqlite-retry-1")
    assert second["number"] == first["number"]
    with Session(e.engine) as s:
        assert s.exec(select(func.count()).select_from(Ticket).where(Ticket.title == "幂等重试")).one() == 1
        assert s.exec(select(func.count()).select_from(IdempotencyKey)
                      .where(IdempotencyKey.key == "sqlite-retry-1")).one() == 1
    third = _submit(e, "幂等重试", key="sqlite-retry-2")  # another key: a new ticket
    assert third["number"] != first["number"]


def test_reopen_paths(embedded: Embedded):
    """replied → reopen by the enterprise (dissatisfied) → dispatched to the same lead department;
    then closed → reopen after a follow-up (officer)."""
    e = embedded
    number = _submit(e, "用工补贴未到账")["number"]
    _act(e, number, "accept", "officer1")
    lead = _act(e, number, "dispatch", "officer1")["lead_department_id"]
    _act(e, number, "claim", "dept_rsj")
    _act(e, number, "reply", "dept_rsj", {"text": "已提交审核"})

    t = _act(e, number, "reopen", "ent1", {"reason": "补贴仍未到账"})
    assert t["status"] == "dispatched" and t["reopen_count"] == 1 and t["rating"] == "dissatisfied"
    assert t["lead_department_id"] == lead and t["claimed_at"] is None

    _act(e, number, "claim", "dept_rsj")
    _act(e, number, "reply", "dept_rsj", {"text": "补贴已发放"})
    t = _act(e, number, "confirm", "ent1", {"rating": "basically_satisfied"})
    assert t["status"] == "closed" and t["rating"] == "basically_satisfied"

    t = _act(e, number, "reopen", "officer1", {"reason": "回访：问题复发"})
    assert t["status"] == "dispatched" and t["reopen_count"] == 2 and t["closed_at"] is None

    events = _ok(e.client.get(f"{API}/tickets/{number}/events", headers=e.auth("officer1")))
    assert [ev["action"] for ev in events] == [
        "submit", "accept", "dispatch", "claim", "reply", "reopen", "claim", "reply", "confirm", "reopen"]
    assert [ev["reason"] for ev in events if ev["action"] == "reopen"] == ["补贴仍未到账", "回访：问题复发"]


def test_schema_matches_models(sqlite_url: str):
    """``alembic check`` on SQLite: the migrated schema and the models agree (no diffs)."""
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            from service.triage.search_models import FTS_OBJECTS  # FTS5 tables: made by the migration only

            ctx = MigrationContext.configure(conn, opts={
                "compare_type": True, "render_as_batch": True,
                "include_object": lambda obj, name, type_, reflected, compare_to: name not in FTS_OBJECTS})
            assert compare_metadata(ctx, SQLModel.metadata) == []

            # the comparison is not vacuous: a model the migrations do not know is reported
            extra = sa.MetaData(naming_convention=SQLModel.metadata.naming_convention)
            for table in SQLModel.metadata.tables.values():
                table.to_metadata(extra)
            sa.Table("not_migrated", extra, sa.Column("id", sa.Integer, primary_key=True))
            diffs = compare_metadata(ctx, extra)
            assert [d[0] for d in diffs] == ["add_table"] and diffs[0][1].name == "not_migrated"
    finally:
        engine.dispose()

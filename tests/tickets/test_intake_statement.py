"""The one-statement intake (``service/ticketing/intake_pg.py``) gives exactly the answers and the rows
of the ORM path (:func:`service.ticketing.service.submit_ticket`), on real PostgreSQL.

An enterprise user's own submission runs as one data-modifying statement; when the statement
writes nothing the router falls back to the ORM path. Every case here is submitted once with
``intake_statement`` on and once off, at one frozen instant (time-machine), and the two POST
responses and the rows written (ticket, ``submit`` event, notification, deliveries, outbox message,
idempotency key) are compared column by column; only ids and the ticket number differ.

The :func:`paths` spy wraps ``intake_pg.submit_in_session``/``submit_async`` and only records what
they returned ("statement" = the statement wrote the ticket, "fallback" = it wrote nothing), so a
case meant for the statement can never pass through the fallback unnoticed, and a fallback case
proves it really fell back.

Most tests run in the rolled-back ``client`` fixture (the statement runs inside the test's
transaction, ``submit_in_session``); the last ones commit through a real engine and the async
psycopg connection (``submit_async``), pooled (application lifespan) and per call (no lifespan), in
a database of this module's own.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa
import time_machine
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session

from service import db, jobs
from service.calendar import service as calendar_service
from service.categories.models import Category
from service.config import get_settings
from service.db import async_pool, make_engine
from service.db import engine as db_engine
from service.enterprises.models import Enterprise
from service.notifications.models import Notification, NotificationDelivery
from service.outbox_models import OutboxMessage
from service.sla import policy
from service.ticketing import intake_pg
from service.ticketing import service as ticket_service
from service.tickets import schemas
from service.tickets.models import IdempotencyKey, Ticket, TicketEvent
from service.users.models import User
from tests import factories as f
from tests.factories import SHANGHAI
from tests.notifications.test_notifications import settings_env
from tests.tickets.test_concurrency import _headers, _real_app

#: a Monday, a working day (2026-03-02 10:00 in Shanghai): every instant of both paths is this one
MONDAY = datetime(2026, 3, 2, 10, 0, tzinfo=SHANGHAI)
YEAR = MONDAY.year
#: a far year without a ticket-number sequence (and without official holiday data: the calendar
#: falls back to Monday-Friday); 2097-03-04 is a Monday
FAR = datetime(2097, 3, 4, 10, 0, tzinfo=SHANGHAI)
WEBHOOK = "http://127.0.0.1:9/hooks/qifu"  # never called: the relay is off in this file
PLACEHOLDER = "<number>"


# =========================================================================== fixtures

@pytest.fixture(autouse=True)
def relayed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, Any]]:
    """No relay thread and no broker: the outbox ids handed to the relay after commit are recorded
    here (``(outbox id, bind)``) instead of being sent."""
    handed: list[tuple[int, Any]] = []
    monkeypatch.setattr(jobs, "relay_committed", lambda ids, bind: handed.extend((i, bind) for i in ids))
    jobs.set_relay_enabled(False)
    yield handed
    jobs.set_relay_enabled(True)


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the statement did for each submission that reached it: ``"statement"`` (it wrote the
    ticket and answered) or ``"fallback"`` (it wrote nothing; the ORM path answered). A recording
    wrapper only: the real functions run on the real database."""
    seen: list[str] = []
    in_session, in_async = intake_pg.submit_in_session, intake_pg.submit_async

    def record(read):
        seen.append("fallback" if read is None else "statement")
        return read

    def spy_in_session(session, prepared):
        return record(in_session(session, prepared))

    async def spy_async(session, prepared):
        return record(await in_async(session, prepared))

    monkeypatch.setattr(intake_pg, "submit_in_session", spy_in_session)
    monkeypatch.setattr(intake_pg, "submit_async", spy_async)
    return seen


@pytest.fixture
def frozen() -> Iterator[None]:
    """Time stands still at :data:`MONDAY` (tokens are made inside, by ``login``)."""
    with time_machine.travel(MONDAY, tick=False):
        yield


@pytest.fixture(scope="module")
def year_sequence(engine) -> str:
    """The frozen year's ticket-number sequence exists (committed, as the year's first ticket
    leaves it): without it the statement leaves the year's first ticket to the ORM path."""
    seq = f"ticket_number_{YEAR}"
    with engine.connect() as conn:
        conn.execute(sa.text(f"CREATE SEQUENCE IF NOT EXISTS {seq}"))
        conn.commit()
    return seq


@pytest.fixture
def submit(client: TestClient, login, monkeypatch: pytest.MonkeyPatch, year_sequence: str):
    """``submit(body, statement=True|False, key=None, user="ent1")``: POST /api/v1/tickets with the
    one-statement path on or off."""

    def _submit(body: dict, *, statement: bool, key: str | None = None, user: str = "ent1"):
        monkeypatch.setattr(get_settings(), "intake_statement", statement)
        headers = login(user)
        if key is not None:
            headers["Idempotency-Key"] = key
        return client.post("/api/v1/tickets", json=body, headers=headers)

    return _submit


@pytest.fixture
def env_setter() -> Iterator[Callable[..., None]]:
    with settings_env() as set_env:
        yield set_env


# =========================================================================== helpers

def _without(row, *names: str) -> dict[str, Any]:
    return {k: v for k, v in dict(row).items() if k not in names}


def _placeholder(value: Any, number: str) -> Any:
    """``value`` with the ticket number replaced by :data:`PLACEHOLDER` (in strings and JSON)."""
    if isinstance(value, str):
        return value.replace(number, PLACEHOLDER)
    if isinstance(value, dict):
        return {k: _placeholder(v, number) for k, v in value.items()}
    if isinstance(value, list):
        return [_placeholder(v, number) for v in value]
    return value


def written(s: Session, number: str) -> dict[str, Any]:
    """Every row the submission of ticket ``number`` wrote, read back from the database (Core, not
    the identity map), with ids and the number left out so that two submissions compare equal."""
    t = Ticket.__table__
    ticket = s.execute(sa.select(t).where(t.c.number == number)).mappings().one()
    ev = TicketEvent.__table__
    events = s.execute(sa.select(ev).where(ev.c.ticket_id == ticket["id"]).order_by(ev.c.id)).mappings().all()
    n = Notification.__table__
    notes = s.execute(sa.select(n).where(n.c.ticket_id == ticket["id"]).order_by(n.c.id)).mappings().all()
    d = NotificationDelivery.__table__
    deliveries = s.execute(sa.select(d).where(d.c.notification_id.in_([x["id"] for x in notes]))
                           .order_by(d.c.id)).mappings().all()
    delivery_ids = [x["id"] for x in deliveries]
    o = OutboxMessage.__table__
    outbox = [m for m in s.execute(sa.select(o).where(o.c.task == "notifications.deliver")
                                   .order_by(o.c.id)).mappings().all()
              if set(m["kwargs"].get("delivery_ids", ())) & set(delivery_ids)]
    k = IdempotencyKey.__table__
    keys = s.execute(sa.select(k).where(k.c.ticket_id == ticket["id"])).mappings().all()
    return {
        "ticket": _without(ticket, "id", "number"),
        "events": [_without(e, "id", "ticket_id") for e in events],
        "notifications": [_placeholder(_without(x, "id", "ticket_id"), number) for x in notes],
        "deliveries": [_without(x, "id", "notification_id") for x in deliveries],
        # the outbox message names the deliveries by id: compare their positions instead
        "outbox": [{**_without(m, "id", "kwargs"),
                    "delivery_ids": [delivery_ids.index(i) for i in m["kwargs"]["delivery_ids"]],
                    "other_kwargs": _without(m["kwargs"], "delivery_ids")} for m in outbox],
        "outbox_ids": [m["id"] for m in outbox],
        "keys": [_without(x, "key", "ticket_id") for x in keys],
    }


def same_except_ids(fast: dict[str, Any], orm: dict[str, Any]) -> None:
    assert {**fast, "outbox_ids": None} == {**orm, "outbox_ids": None}


def assert_same_response(fast, orm) -> tuple[str, str]:
    """The two POST answers are equal but for the number (frozen time: every instant and
    ``working_hours_left`` too), byte for byte; returns the two numbers."""
    assert fast.status_code == orm.status_code == 201, (fast.text, orm.text)
    a, b = fast.json(), orm.json()
    n_fast, n_orm = a.pop("number"), b.pop("number")
    assert n_fast != n_orm
    assert a == b
    assert fast.content.replace(n_fast.encode(), b"N") == orm.content.replace(n_orm.encode(), b"N")
    for r, number in ((fast, n_fast), (orm, n_orm)):
        assert r.headers["Location"] == f"/api/v1/tickets/{number}"
        assert r.headers["ETag"] == '"1"'
        assert r.headers["content-type"] == "application/json"
    return n_fast, n_orm


def _body(session: Session, code: str, by: str, **extra: Any) -> dict[str, Any]:
    category = f.category(session, code)
    body: dict[str, Any] = {"title": "用工招聘困难", "description": "园区企业普工缺口约30人，请协调对接。"}
    body.update({"category_id": category.id} if by == "id" else {"category_code": code})
    body.update(extra)
    return body


def _seq_state(engine: Engine, seq: str) -> tuple[int, bool]:
    with engine.connect() as conn:
        return tuple(conn.execute(sa.text(f"SELECT last_value, is_called FROM {seq}")).one())


# =========================================================================== 1. equivalence

LONG_TITLE = ("🚧" * 10 + "厂区道路" * 47 + "尾")[:200]  # astral characters: the notification title's cut

CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "normal-by-code": ("problem.labour", "code", {}),
    "urgent-by-id": ("problem.labour", "id", {"priority": "urgent"}),
    "consultation-by-id": ("consultation.policy", "id", {}),
    "urgent-consultation-by-code-app": ("consultation.tax", "code", {"priority": "urgent", "channel": "app"}),
    "own-enterprise-id-email-channel": ("problem.other", "code", {"channel": "email", "enterprise_id": "own"}),
    "special-characters": ("problem.other", "id", {
        "title": 'A "quoted" \\ back\\slash 50% %(p_at)s {x} 🚧',
        "description": "第一行\n第二行\t制表 'single' \"double\" \\n literal ✓ \U0001f600"}),
    "200-character-title": ("problem.labour", "code", {"title": LONG_TITLE}),
    "with-idempotency-key": ("problem.labour", "code", {"key": True}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_statement_and_orm_path_give_the_same_ticket(session, submit, paths, frozen, case):
    """The same body submitted by ent1 through the statement and through the ORM path: the same
    response (all fields but the number, byte for byte) and the same rows: ticket columns, the
    ``submit`` event, the officer's ``submitted`` notification (title cut at 200 characters the
    same way), and with a key the idempotency-key row. Priorities normal/urgent, a consultation
    (``reply_by`` from submission), category by id and by code, every self-service channel."""
    code, by, extra = CASES[case]
    extra = dict(extra)
    with_key = extra.pop("key", False)
    if extra.get("enterprise_id") == "own":
        extra["enterprise_id"] = f.enterprise_of(session, "ent1").id
    body = _body(session, code, by, **extra)

    fast = submit(body, statement=True, key=f"fast-{uuid.uuid4()}" if with_key else None)
    assert paths == ["statement"], fast.text
    orm = submit(body, statement=False, key=f"orm-{uuid.uuid4()}" if with_key else None)
    assert paths == ["statement"]  # the ORM run never reached the statement
    n_fast, n_orm = assert_same_response(fast, orm)

    rows_fast, rows_orm = written(session, n_fast), written(session, n_orm)
    same_except_ids(rows_fast, rows_orm)
    ticket = rows_fast["ticket"]
    assert ticket["submitted_at"] == ticket["updated_at"] == MONDAY
    assert ticket["status"] == "submitted" and ticket["accept_by"] is not None
    assert ticket["title"] == body["title"].strip() and ticket["description"] == body["description"].strip()
    consultation = code.startswith("consultation.")
    assert ticket["service_type"] == ("consultation" if consultation else "problem")
    assert (ticket["reply_by"] is not None) is consultation
    assert [e["action"] for e in rows_fast["events"]] == ["submit"]
    assert rows_fast["events"][0]["payload"] == {"channel": extra.get("channel", "web")}
    officer = f.enterprise_of(session, "ent1").officer_id
    assert [n["user_id"] for n in rows_fast["notifications"]] == [officer]
    title = rows_fast["notifications"][0]["title"].replace(PLACEHOLDER, n_fast)
    assert title == f"新诉求待受理：{n_fast} {ticket['title']}"[:200]
    assert len(rows_fast["keys"]) == (1 if with_key else 0)
    assert rows_fast["deliveries"] == [] and rows_fast["outbox"] == []  # no channel configured


def test_enterprise_without_officer_same_on_both_paths(session, submit, paths, frozen, env_setter, relayed):
    """An enterprise without a responsible officer (changed in this transaction): both paths write
    a ticket with no officer and no notification, so no delivery and no outbox message although
    both channels are configured; the grid is the enterprise's current one."""
    env_setter(QIFU_WEBHOOK_URL=WEBHOOK, QIFU_WEBHOOK_SECRET="s", QIFU_SMTP_HOST="127.0.0.1")
    enterprise = f.enterprise_of(session, "ent1")
    session.execute(sa.update(Enterprise.__table__).where(Enterprise.__table__.c.id == enterprise.id)
                    .values(officer_id=None))
    session.commit()  # only a savepoint: kept until the test's rollback
    session.expire_all()
    body = _body(session, "problem.labour", "code")
    fast = submit(body, statement=True)
    orm = submit(body, statement=False)
    assert paths == ["statement"]
    n_fast, n_orm = assert_same_response(fast, orm)
    rows_fast, rows_orm = written(session, n_fast), written(session, n_orm)
    same_except_ids(rows_fast, rows_orm)
    assert rows_fast["ticket"]["officer_id"] is None and fast.json()["officer_id"] is None
    assert rows_fast["ticket"]["grid_id"] == enterprise.grid_id
    assert rows_fast["notifications"] == [] and rows_fast["deliveries"] == [] and rows_fast["outbox"] == []
    assert relayed == []


# =========================================================================== 2. POST == GET

@pytest.mark.parametrize("statement", [True, False], ids=["one-statement", "orm-path"])
def test_post_response_equals_get(session, submit, login, client, paths, frozen, statement):
    """The statement builds its response itself: it is what ``GET /tickets/{number}`` then reads
    from the database (same body, same ETag), and ``Location`` names the ticket. The ORM path
    likewise. The events endpoint shows the one ``submit`` event."""
    resp = submit(_body(session, "consultation.policy", "code", priority="urgent"), statement=statement)
    assert resp.status_code == 201, resp.text
    assert paths == (["statement"] if statement else [])
    number = resp.json()["number"]
    assert resp.headers["Location"] == f"/api/v1/tickets/{number}"
    got = client.get(resp.headers["Location"], headers=login("ent1"))
    assert got.status_code == 200, got.text
    assert got.json() == resp.json()
    assert got.headers["ETag"] == resp.headers["ETag"] == '"1"'
    events = client.get(f"/api/v1/tickets/{number}/events", headers=login("ent1"))
    assert [e["action"] for e in events.json()] == ["submit"]


# =========================================================================== 3. deliveries

CHANNEL_SETUPS = {
    # (webhook on, smtp on, officer's email) -> expected deliveries (channel, target)
    "webhook-and-email": (True, True, "officer@qifu.test", [("webhook", WEBHOOK), ("email", "officer@qifu.test")]),
    "webhook-officer-without-email": (True, True, None, [("webhook", WEBHOOK)]),
    "email-only": (False, True, "officer@qifu.test", [("email", "officer@qifu.test")]),
    "email-only-officer-without-email": (False, True, None, []),
    # an empty address is no address (notifications.service._queue_deliveries); the statement
    # wrote an e-mail delivery to "" here until its e-mail branch also excluded ''
    "email-only-officer-empty-email": (False, True, "", []),
}


@pytest.mark.parametrize("setup", list(CHANNEL_SETUPS))
def test_deliveries_and_outbox_same_on_both_paths(session, submit, paths, frozen, env_setter, relayed, setup):
    """With delivery channels configured, the statement writes a ``notification_delivery`` per
    channel (e-mail only when the officer has a non-empty address) and one ``notifications.deliver``
    outbox message naming exactly those deliveries, handed to the relay after the commit; no
    delivery, no message. All as the ORM path does."""
    webhook, smtp, email, expected = CHANNEL_SETUPS[setup]
    env_setter(QIFU_WEBHOOK_URL=WEBHOOK if webhook else None, QIFU_WEBHOOK_SECRET="s" if webhook else None,
               QIFU_SMTP_HOST="127.0.0.1" if smtp else None)
    officer = session.get(User, f.enterprise_of(session, "ent1").officer_id)
    officer.email = email
    session.commit()
    body = _body(session, "problem.labour", "code")
    fast = submit(body, statement=True)
    orm = submit(body, statement=False)
    assert paths == ["statement"]
    n_fast, n_orm = assert_same_response(fast, orm)
    rows_fast, rows_orm = written(session, n_fast), written(session, n_orm)
    same_except_ids(rows_fast, rows_orm)
    assert [(d["channel"], d["target"]) for d in rows_fast["deliveries"]] == expected
    assert all(d["state"] == "pending" and d["attempts"] == 0 for d in rows_fast["deliveries"])
    if expected:
        assert rows_fast["outbox"] == [{"task": "notifications.deliver", "created_at": MONDAY, "sent_at": None,
                                        "attempts": 0, "last_error": None,
                                        "delivery_ids": list(range(len(expected))), "other_kwargs": {}}]
    else:
        assert rows_fast["outbox"] == []
    # each commit handed its own outbox message to the relay, nothing else
    assert [i for i, _ in relayed] == rows_fast["outbox_ids"] + rows_orm["outbox_ids"]


# =========================================================================== 4. fallbacks

def _other_enterprise(session: Session) -> dict[str, Any]:
    return {"enterprise_id": f.enterprise_of(session, "ent2").id}


FALLBACKS: dict[str, tuple[Callable[[Session], dict], str | None, int, str, str]] = {
    # name: (body extras, Idempotency-Key, status, problem type, field at fault)
    "unknown-category-id": (lambda s: {"category_id": 999_999}, None, 422, "/problems/validation-error",
                            "category_id"),
    "unknown-category-code": (lambda s: {"category_code": "problem.nonexistent"}, None, 422,
                              "/problems/validation-error", "category_code"),
    "hotline-channel": (lambda s: {"category_code": "problem.labour", "channel": "hotline"}, None, 422,
                        "/problems/validation-error", "channel"),
    "another-enterprise": (lambda s: {"category_code": "problem.labour", **_other_enterprise(s)}, None, 403,
                           "/problems/forbidden", "enterprise_id"),
    "key-too-long": (lambda s: {"category_code": "problem.labour"}, "k" * 256, 422,
                     "/problems/validation-error", "Idempotency-Key"),
    "unknown-category-with-key": (lambda s: {"category_id": 999_999}, "a-key", 422,
                                  "/problems/validation-error", "category_id"),
}


@pytest.mark.parametrize("case", list(FALLBACKS))
def test_refusals_are_the_orm_paths(session, submit, paths, frozen, case):
    """Submissions the statement must not write are answered exactly as the ORM path answers them
    (status and problem document), with the field at fault named, and write nothing."""
    extras, key, status, type_, field = FALLBACKS[case]
    body = {"title": "无效提交", "description": "应被拒绝", **extras(session)}
    count = session.execute(sa.select(sa.func.count()).select_from(Ticket)).scalar_one()
    fast = submit(body, statement=True, key=key)
    orm = submit(body, statement=False, key=key)
    assert fast.status_code == orm.status_code == status, (fast.text, orm.text)
    assert fast.headers["content-type"].startswith("application/problem+json")
    assert fast.json() == orm.json()
    problem = fast.json()
    assert problem["type"] == type_
    assert (problem["errors"][0]["field"] if "errors" in problem else problem["field"]) == field
    assert paths == []  # refused before the statement (unknown category: not in the cache)
    assert session.execute(sa.select(sa.func.count()).select_from(Ticket)).scalar_one() == count


def test_enterprise_user_without_enterprise_is_403_on_both_paths(session, submit, paths, frozen):
    """An enterprise account linked to no enterprise (an inconsistent account: the users API
    requires the link) may not submit: 403 naming ``enterprise_id``, the same problem on both
    paths, nothing written (SPEC §1: an enterprise user acts only for its own enterprise)."""
    orphan = User(username=f"orphan-{uuid.uuid4().hex[:8]}", full_name="无企业账号", password_hash="-",
                  role="enterprise", enterprise_id=None)
    session.add(orphan)
    session.commit()  # a savepoint released: the first refusal's rollback keeps the account
    body = {"title": "无企业", "description": "不应写入", "category_code": "problem.labour"}
    count = session.execute(sa.select(sa.func.count()).select_from(Ticket)).scalar_one()
    fast = submit(body, statement=True, user=orphan.username)
    orm = submit(body, statement=False, user=orphan.username)
    assert fast.status_code == orm.status_code == 403, (fast.text, orm.text)
    assert fast.json() == orm.json()
    assert fast.json()["type"] == "/problems/forbidden" and fast.json()["field"] == "enterprise_id"
    assert paths == []
    assert session.execute(sa.select(sa.func.count()).select_from(Ticket)).scalar_one() == count


@pytest.fixture
def stale_reference_cache(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's category cache is filled now and kept (TTL lifted), so a change made later
    in the database is not in it: the statement's own check must catch it."""
    monkeypatch.setattr(policy, "POLICY_TTL_SECONDS", 3600.0)
    monkeypatch.setattr(calendar_service, "OVERRIDES_TTL_SECONDS", 3600.0)
    calendar_service.get_calendar(session)
    policy.cached_category(session, None, None)


def test_category_changed_since_cached_falls_back_to_a_correct_ticket(session, submit, paths, frozen,
                                                                      stale_reference_cache):
    """A category whose service type was changed in the database after this process cached it:
    the statement writes nothing, and the ORM path writes the ticket with the database's service
    type (a consultation now: ``reply_by`` set), exactly as with the statement switched off."""
    labour = f.category(session, "problem.labour")
    session.execute(sa.update(Category.__table__).where(Category.__table__.c.id == labour.id)
                    .values(service_type="consultation"))
    session.commit()
    session.expire_all()
    assert policy.cached_category(session, labour.id) == (labour.id, "problem.labour", "problem")  # stale
    body = _body(session, "problem.labour", "id")
    fast = submit(body, statement=True)
    assert paths == ["fallback"]
    orm = submit(body, statement=False)
    n_fast, n_orm = assert_same_response(fast, orm)
    rows_fast = written(session, n_fast)
    same_except_ids(rows_fast, written(session, n_orm))
    assert rows_fast["ticket"]["service_type"] == "consultation"
    assert rows_fast["ticket"]["reply_by"] is not None


def test_category_code_changed_since_cached_names_category_code(session, submit, paths, frozen,
                                                                stale_reference_cache):
    """A category renamed in the database after it was cached: its old code passes the cache but
    not the statement's check, and the ORM path answers 422 naming ``category_code``."""
    table = Category.__table__
    session.execute(sa.update(table).where(table.c.code == "problem.labour").values(code="problem.labour.v2"))
    session.commit()  # kept when the refused request rolls its session back (to this savepoint)
    body = {"title": "改名后的分类", "description": "旧代码", "category_code": "problem.labour"}
    fast = submit(body, statement=True)
    assert paths == ["fallback"]
    orm = submit(body, statement=False)
    assert fast.status_code == orm.status_code == 422, fast.text
    assert fast.json() == orm.json()
    assert fast.json()["errors"][0]["field"] == "category_code"


def test_category_id_with_another_categorys_code(session, submit, paths, frozen):
    """``category_id`` and a ``category_code`` of another category: the ORM path goes by the id;
    the statement does not write (its check of the code fails) and the fallback gives that
    same ticket."""
    body = _body(session, "problem.labour", "id", category_code="consultation.policy")
    fast = submit(body, statement=True)
    assert paths == ["fallback"]
    orm = submit(body, statement=False)
    n_fast, n_orm = assert_same_response(fast, orm)
    same_except_ids(written(session, n_fast), written(session, n_orm))
    assert fast.json()["service_type"] == "problem"


# =========================================================================== 5. idempotency

def test_idempotent_retry_on_the_statement(session, submit, paths, frozen):
    """Same key and body twice: the statement writes the first; the retry's statement inserts
    nothing (the key exists) and the ORM path replays it: the same number, both 201 with the same
    body, one ticket, one key row. The same key with another body: 422 idempotency-key-reused.
    Neither takes a ticket number: the next submission gets the first's number plus one."""
    body = _body(session, "problem.labour", "code", title=f"幂等 {uuid.uuid4().hex[:8]}")
    key = f"retry-{uuid.uuid4()}"
    first = submit(body, statement=True, key=key)
    second = submit(body, statement=True, key=key)
    other = submit({**body, "description": "另一件事"}, statement=True, key=key)
    assert paths == ["statement", "fallback", "fallback"]
    assert first.status_code == second.status_code == 201, (first.text, second.text)
    assert second.json() == first.json()
    assert second.headers["Location"] == first.headers["Location"]
    assert second.headers["ETag"] == first.headers["ETag"]
    assert other.status_code == 422, other.text
    assert other.json()["type"] == "/problems/idempotency-key-reused"
    t = Ticket.__table__
    assert session.execute(sa.select(sa.func.count()).select_from(t).where(t.c.title == body["title"])).scalar_one() == 1
    user_id = f.user(session, "ent1").id
    k = IdempotencyKey.__table__
    keys = session.execute(sa.select(k).where(k.c.user_id == user_id, k.c.key == key)).mappings().all()
    assert len(keys) == 1
    ticket_id = session.execute(sa.select(t.c.id).where(t.c.number == first.json()["number"])).scalar_one()
    assert keys[0]["ticket_id"] == ticket_id and keys[0]["created_at"] == MONDAY
    assert keys[0]["request_hash"] == ticket_service.request_hash(schemas.TicketCreate(**body))
    # neither the replay nor the refusal used up a number: the next ticket follows the first
    following = submit(body, statement=True)
    assert paths[-1] == "statement"
    prefix, n = first.json()["number"].rsplit("-", 1)
    assert following.json()["number"] == f"{prefix}-{int(n) + 1:06d}"


# =========================================================================== 6. numbers

def test_numbers_past_999999_as_the_orm_path_formats_them(session, engine, submit, paths, frozen, year_sequence):
    """At the year's 999,999th ticket the statement's number goes on to 7 digits exactly as
    ``next_ticket_number`` formats it (``f"{value:06d}"``): -999999 then -1000000, on both paths,
    with otherwise equal answers. (Sequences are not transactional: the sequence is put back
    afterwards.)"""
    before = _seq_state(engine, year_sequence)
    body = _body(session, "problem.labour", "code")
    responses: dict[bool, list] = {}
    t = Ticket.__table__
    expected = [f"QF{YEAR}-{v:06d}" for v in (999_999, 1_000_000)]
    assert expected == [f"QF{YEAR}-999999", f"QF{YEAR}-1000000"]
    try:
        for statement in (True, False):
            session.execute(sa.text("SELECT setval(CAST(:seq AS regclass), 999998)"), {"seq": year_sequence})
            responses[statement] = [submit(body, statement=statement) for _ in range(2)]
            assert [r.status_code for r in responses[statement]] == [201, 201], \
                [r.text for r in responses[statement]]
            # free the two numbers for the other path (same test transaction)
            session.execute(sa.update(t).where(t.c.number.in_(expected))
                            .values(number=sa.func.concat("fast-" if statement else "orm-", t.c.number)))
            session.commit()
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT setval(CAST(:seq AS regclass), :v, :called)"),
                         {"seq": year_sequence, "v": before[0], "called": before[1]})
            conn.commit()
    assert paths == ["statement", "statement"]
    for statement in (True, False):
        assert [r.json()["number"] for r in responses[statement]] == expected
    for fast, orm in zip(responses[True], responses[False], strict=True):
        assert {**fast.json(), "number": None} == {**orm.json(), "number": None}
        assert fast.headers["Location"] == orm.headers["Location"] == f"/api/v1/tickets/{fast.json()['number']}"
    assert _seq_state(engine, year_sequence) == before


# =========================================================================== 7. a new year

@pytest.fixture
def far_year_sequence(engine) -> Iterator[str]:
    """No ticket-number sequence for :data:`FAR` before the test; the one the ORM path creates (on
    a connection of its own, committed) is dropped afterwards. Requested before ``client`` so that
    this teardown runs after the test transaction's rollback released the sequence."""
    seq = f"ticket_number_{FAR.year}"

    def drop() -> None:
        with engine.connect() as conn:
            conn.execute(sa.text(f"DROP SEQUENCE IF EXISTS {seq}"))
            conn.commit()

    drop()
    yield seq
    drop()


def test_first_ticket_of_a_year_without_sequence(far_year_sequence, engine, session, submit, paths):
    """The first ticket of a year whose number sequence does not exist: the statement writes
    nothing (the key it would insert too: the key is given here), the ORM path creates the sequence
    and the ticket (-000001); the next submission takes the statement (-000002). Same ticket as the
    ORM path gives (-000003), also in a year without official holiday data."""
    with time_machine.travel(FAR, tick=False):
        body = _body(session, "problem.labour", "code")
        first = submit(body, statement=True, key=f"new-year-{uuid.uuid4()}")
        assert first.status_code == 201, first.text
        assert paths == ["fallback"]
        assert first.json()["number"] == f"QF{FAR.year}-000001"
        with engine.connect() as conn:  # created on a connection of its own: committed
            assert conn.execute(sa.text("SELECT to_regclass(:s)"), {"s": far_year_sequence}).scalar() is not None
        second = submit(body, statement=True)
        assert paths == ["fallback", "statement"]
        third = submit(body, statement=False)
        n_second, n_third = assert_same_response(second, third)
        assert (n_second, n_third) == (f"QF{FAR.year}-000002", f"QF{FAR.year}-000003")
        rows = written(session, n_second)
        same_except_ids(rows, written(session, n_third))
        assert rows["ticket"]["submitted_at"] == FAR
        k = IdempotencyKey.__table__
        first_id = session.execute(sa.select(Ticket.__table__.c.id)
                                   .where(Ticket.__table__.c.number == first.json()["number"])).scalar_one()
        assert session.execute(sa.select(sa.func.count()).select_from(k)
                               .where(k.c.ticket_id == first_id)).scalar_one() == 1


# =========================================================================== 8. committed, async

@pytest.fixture(scope="module")
def real_engine(worker_id: str) -> Iterator[Engine]:
    """A migrated and seeded database of this module's own, for tests that commit (the worker's
    shared database must not see their tickets), with the number sequences of the frozen and the
    current year (the statement leaves a year's first ticket to the ORM path)."""
    from tests.conftest import PG_SERVER
    from tests.scratch_db import scratch_database

    with scratch_database(PG_SERVER, f"qifu_intake_{worker_id}_{os.getpid()}", enterprises=20) as url:
        eng = make_engine(url)
        with eng.connect() as conn:
            for year in {YEAR, datetime.now(SHANGHAI).year}:
                conn.execute(sa.text(f"CREATE SEQUENCE IF NOT EXISTS ticket_number_{year}"))
            conn.commit()
        yield eng
        eng.dispose()


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """How ``submit_async`` got each connection: ``"pooled"`` (this event loop has the lifespan's
    pools) or ``"per call"``. A recording wrapper around the real ``async_connection``."""
    kinds: list[str] = []
    original = intake_pg.async_connection

    @asynccontextmanager
    async def spy(engine):
        pools = async_pool._ASYNC_POOLS.get(asyncio.get_running_loop())
        kinds.append("per call" if pools is None else "pooled")
        async with original(engine) as conn:
            yield conn

    monkeypatch.setattr(intake_pg, "async_connection", spy)
    return kinds


def _committed(engine: Engine, number: str) -> dict[str, Any]:
    with Session(engine) as s:
        return written(s, number)


def _count_titled(engine: Engine, title: str) -> int:
    t = Ticket.__table__
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c.title == title)).scalar_one()


def test_committed_on_the_pooled_async_connection(real_engine, paths, connections, relayed, env_setter,
                                                  monkeypatch):
    """With the application's lifespan (``with TestClient``) the statement runs on this loop's async
    pool and commits on its own: three submissions are 201, each row committed once with its
    ``submit`` event, notification, webhook delivery and outbox message, which is handed to the
    relay with the engine. POST equals GET, and a fourth submission through the ORM path (also
    committed) wrote the same rows."""
    env_setter(QIFU_WEBHOOK_URL=WEBHOOK, QIFU_WEBHOOK_SECRET="s")
    title = f"异步连接池 {uuid.uuid4().hex[:8]}"
    body = {"title": title, "description": "一条语句提交", "category_code": "problem.labour"}
    with time_machine.travel(MONDAY, tick=False):
        headers = _headers(real_engine, "ent1")
        with TestClient(_real_app(real_engine), raise_server_exceptions=False) as client:
            responses = [client.post("/api/v1/tickets", json=body, headers=headers) for _ in range(3)]
            assert any(real_engine in pools for pools in list(async_pool._ASYNC_POOLS.values()))
            gets = [client.get(r.headers["Location"], headers=headers) for r in responses]
            monkeypatch.setattr(get_settings(), "intake_statement", False)
            orm = client.post("/api/v1/tickets", json=body, headers=headers)
    assert [r.status_code for r in responses] == [201] * 3, [r.text for r in responses]
    assert paths == ["statement"] * 3 and connections == ["pooled"] * 3
    assert [g.json() for g in gets] == [r.json() for r in responses]
    numbers = [r.json()["number"] for r in responses]
    assert len(set(numbers)) == 3
    assert _count_titled(real_engine, title) == 4
    orm_rows = _committed(real_engine, orm.json()["number"])
    assert_same_response(responses[0], orm)
    for number in numbers:
        rows = _committed(real_engine, number)
        same_except_ids(rows, orm_rows)
        assert [e["action"] for e in rows["events"]] == ["submit"]
        assert [(d["channel"], d["target"]) for d in rows["deliveries"]] == [("webhook", WEBHOOK)]
        assert len(rows["outbox_ids"]) == 1
    fast_outbox = [_committed(real_engine, n)["outbox_ids"][0] for n in numbers]
    assert [i for i, _ in relayed] == fast_outbox + orm_rows["outbox_ids"]
    assert all(bind is real_engine for _, bind in relayed[:3])


def test_committed_on_a_connection_per_call(real_engine, paths, connections):
    """Without the lifespan (a TestClient used without ``with``) the statement opens a connection
    for the call: 201, committed, with its event."""
    title = f"单次连接 {uuid.uuid4().hex[:8]}"
    body = {"title": title, "description": "无生命周期", "category_code": "consultation.policy",
            "priority": "urgent"}
    client = TestClient(_real_app(real_engine), raise_server_exceptions=False)
    resp = client.post("/api/v1/tickets", json=body, headers=_headers(real_engine, "ent1"))
    client.close()
    assert resp.status_code == 201, resp.text
    assert paths == ["statement"] and connections == ["per call"]
    assert _count_titled(real_engine, title) == 1
    rows = _committed(real_engine, resp.json()["number"])
    assert [e["action"] for e in rows["events"]] == ["submit"]
    assert rows["ticket"]["service_type"] == "consultation" and rows["ticket"]["reply_by"] is not None


# =========================================================================== 9. broken connections

def _terminate_others(engine: Engine) -> int:
    """Terminate every other backend connected to ``engine``'s database (as a server restart or a
    proxy's idle timeout would); returns how many."""
    with engine.connect() as conn:
        n = conn.execute(sa.text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar_one()
        conn.commit()
    return n


def test_pooled_connections_killed_while_idle_are_replaced(real_engine, paths, connections, monkeypatch):
    """The server ends the pooled connections while they sit idle: the next submission still
    answers 201 and commits, because a connection idle for longer than
    ``PING_AFTER_IDLE_SECONDS`` (0 here) is pinged before use and replaced when dead, in the
    async pool as in the engine's."""
    monkeypatch.setattr(db_engine, "PING_AFTER_IDLE_SECONDS", 0.0)
    title = f"断线重连 {uuid.uuid4().hex[:8]}"
    body = {"title": title, "description": "连接池中的连接被服务器终止", "category_code": "problem.labour"}
    headers = _headers(real_engine, "ent1")
    with TestClient(_real_app(real_engine), raise_server_exceptions=False) as client:
        before = client.post("/api/v1/tickets", json=body, headers=headers)
        assert _terminate_others(real_engine) >= 1
        after = client.post("/api/v1/tickets", json=body, headers=headers)
    assert (before.status_code, after.status_code) == (201, 201), after.text
    assert paths == ["statement", "statement"] and connections == ["pooled", "pooled"]
    assert _count_titled(real_engine, title) == 2


def test_connection_broken_mid_statement_is_503_and_writes_nothing(real_engine, paths, connections):
    """The connection breaks while the statement runs (here: it waits on a key another
    transaction holds, and its backend is terminated): 503 problem naming the cause, never a
    500; nothing written; the retry with the same key, once the other transaction is gone,
    makes the ticket."""
    import threading

    title = f"语句中断线 {uuid.uuid4().hex[:8]}"
    body = {"title": title, "description": "执行中连接中断", "category_code": "problem.labour"}
    key = f"broken-{uuid.uuid4()}"
    headers = {**_headers(real_engine, "ent1"), "Idempotency-Key": key}
    with Session(real_engine) as s:
        user_id = f.user(s, "ent1").id
    holder = real_engine.connect()
    # ended by the server if the test goes wrong, so that the POST below cannot wait forever
    holder.execute(sa.text("SET LOCAL idle_in_transaction_session_timeout = '20s'"))
    holder.execute(sa.text(  # an open transaction holding the key: the statement's insert waits on it
        "INSERT INTO idempotency_key (user_id, key, request_hash, ticket_id, status_code, created_at) "
        "VALUES (:u, :k, 'x', NULL, 201, now())"), {"u": user_id, "k": key})
    terminated: list[int] = []

    def terminate_the_waiter() -> None:
        for _ in range(200):
            with real_engine.connect() as conn:
                pids = conn.execute(sa.text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND query LIKE 'WITH e AS%'")).scalars().all()
                if pids:
                    conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pids[0]})
                    terminated.append(pids[0])
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=terminate_the_waiter)
    try:
        with TestClient(_real_app(real_engine), raise_server_exceptions=False) as client:
            killer.start()
            broken = client.post("/api/v1/tickets", json=body, headers=headers)
            killer.join()
            holder.rollback()
            retry = client.post("/api/v1/tickets", json=body, headers=headers)
    finally:
        holder.close()
    assert terminated, "the statement never waited on the held key"
    assert broken.status_code == 503, broken.text
    assert broken.headers["content-type"].startswith("application/problem+json")
    assert broken.json()["type"] == "/problems/unavailable" and "Idempotency-Key" in broken.json()["detail"]
    assert retry.status_code == 201, retry.text
    assert _count_titled(real_engine, title) == 1


async def _select_one(engine: Engine) -> int:
    """``SELECT 1`` on a connection from :func:`service.db.async_connection`."""
    async with db.async_connection(engine) as conn:
        return (await (await conn.execute("SELECT 1")).fetchone())[0]


def test_a_cancelled_first_request_does_not_break_the_pool(real_engine):
    """The first request of a loop opens the pool and is cancelled meanwhile (a client gone):
    the opening goes on, and the next request gets a connection from it, instead of the
    cancellation cached for the life of the process."""

    async def scenario() -> int:
        await db.open_async_pools()
        try:
            first = asyncio.ensure_future(_select_one(real_engine))
            await asyncio.sleep(0)  # the opening has started
            opening = async_pool._ASYNC_POOLS[asyncio.get_running_loop()][real_engine]
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            value = await asyncio.wait_for(_select_one(real_engine), 30)
            # the same opening served the second request: it was not cancelled with the first
            assert async_pool._ASYNC_POOLS[asyncio.get_running_loop()][real_engine] is opening
            assert opening.done() and not opening.cancelled()
            return value
        finally:
            await db.close_async_pools()

    assert asyncio.run(scenario()) == 1


def test_a_restarted_server_costs_the_async_pool_one_ping(real_engine, monkeypatch):
    """Several idle pooled connections all killed (a database restart): the first ping that fails
    drains the pool, so the next request gets a new connection at once instead of checking the
    dead ones one by one with the pool's growing pauses (1 s, 2 s, ...) between them."""
    monkeypatch.setattr(db_engine, "PING_AFTER_IDLE_SECONDS", 0.0)

    async def scenario() -> tuple[int, float]:
        await db.open_async_pools()
        try:
            async def hold(release: asyncio.Event) -> None:
                async with db.async_connection(real_engine) as conn:
                    await conn.execute("SELECT 1")
                    await release.wait()

            release = asyncio.Event()
            holders = [asyncio.ensure_future(hold(release)) for _ in range(4)]  # the pool grows to 4
            await asyncio.sleep(0.5)
            release.set()
            await asyncio.gather(*holders)
            assert await asyncio.to_thread(_terminate_others, real_engine) >= 4
            began = time.monotonic()
            value = await _select_one(real_engine)
            return value, time.monotonic() - began
        finally:
            await db.close_async_pools()

    value, took = asyncio.run(scenario())
    assert value == 1
    assert took < 1.0, f"{took:.2f} s: the dead connections were checked one by one"

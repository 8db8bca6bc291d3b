"""Concurrency on real PostgreSQL (SPEC §3 optimistic concurrency, §7 idempotent submission).

Unlike the rest of the suite these tests COMMIT: every party has its own connection and its own
transaction, exactly as two API processes would. They run in a database of this module's own
(``committed_url``), create their own tickets and never assume global counts.

The races are forced, not hoped for: the two threads meet at a ``threading.Barrier`` at the
point where the race matters (after both have read the ticket, or just before both insert the
idempotency key), so the interleaving under test happens on every run.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from service.auth.actor import Actor
from service.auth.dependencies import actor_of
from service.auth.security import create_access_token
from service.config import get_settings
from service.db import get_session, make_engine
from service.errors import IllegalTransition, VersionConflict
from service.ticketing import intake_pg
from service.ticketing import service as ticket_service
from service.tickets import schemas
from service.tickets.models import IdempotencyKey, Ticket, TicketEvent
from service.users.models import User

TIMEOUT = 30  # seconds; a barrier that is never reached fails the test instead of hanging it


# --------------------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def committed_url(worker_id: str) -> Iterator[str]:
    """A migrated and seeded database of this module's own: these tests commit tickets, and the
    worker's shared database (``pg_url``) must not see them (its SLA sweep tests count every
    overdue ticket). Dropped at the end."""
    from tests.conftest import PG_SERVER
    from tests.scratch_db import scratch_database

    with scratch_database(PG_SERVER, f"qifu_concurrency_{worker_id}_{os.getpid()}", enterprises=40) as url:
        yield url


@pytest.fixture(scope="module")
def real_engine(committed_url: str) -> Iterator[Engine]:
    """An engine of its own (listeners added here never leak into the shared ``engine``)."""
    eng = make_engine(committed_url)
    yield eng
    eng.dispose()


def _actor(engine: Engine, username: str) -> Actor:
    with Session(engine) as s:
        return actor_of(s.exec(select(User).where(User.username == username)).one())


def _headers(engine: Engine, username: str) -> dict[str, str]:
    actor = _actor(engine, username)
    return {"Authorization": f"Bearer {create_access_token(actor.user_id, actor.role)[0]}"}


def _new_accepted_ticket(engine: Engine, title: str = "并发测试") -> str:
    """Commit a fresh ticket of ent1, accepted by officer1; return its number."""
    ent, off = _actor(engine, "ent1"), _actor(engine, "officer1")
    with Session(engine, expire_on_commit=False) as s:
        data = schemas.TicketCreate(title=title, description="两人同时交办", category_code="problem.labour")
        ticket, created = ticket_service.submit_ticket(s, ent, data)
        assert created
        ticket_service.apply_action(s, off, ticket, "accept")
        s.commit()
        return ticket.number


def _ticket_and_events(engine: Engine, number: str) -> tuple[Ticket, list[TicketEvent]]:
    with Session(engine, expire_on_commit=False) as s:
        ticket = s.exec(select(Ticket).where(Ticket.number == number)).one()
        events = list(s.exec(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)
                             .order_by(TicketEvent.id)).all())
        return ticket, events


def _run_pair(fn: Callable[[int], Any]) -> list[Any]:
    """Run ``fn(0)`` and ``fn(1)`` in two threads; return their results (or raised exceptions)."""

    def guarded(i: int) -> Any:
        try:
            return fn(i)
        except Exception as exc:  # noqa: BLE001 - the caller inspects what each side got
            return exc

    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(guarded, (0, 1)))


def _real_app(engine: Engine):
    """A fresh application whose request session is a real, committing session on ``engine``
    (not the rolled-back fixture session)."""
    from qifu.main import create_app

    app = create_app()

    def _session() -> Iterator[Session]:
        with Session(engine, expire_on_commit=False) as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    app.dependency_overrides[get_session] = _session
    return app


class _MeetBefore:
    """Make every thread that is about to execute a statement starting with ``prefix`` wait at a
    two-party barrier (once per thread), so both transactions have done all their reads before
    either writes. Installed as a ``before_cursor_execute`` listener on ``engine``."""

    def __init__(self, engine: Engine, prefix: str) -> None:
        self.engine, self.prefix = engine, prefix.upper()
        self.barrier = threading.Barrier(2, timeout=TIMEOUT)
        self.met: set[int] = set()
        self.lock = threading.Lock()

    def __call__(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if not statement.lstrip().upper().startswith(self.prefix):
            return
        me = threading.get_ident()
        with self.lock:
            if me in self.met:
                return
            self.met.add(me)
        self.barrier.wait()

    def __enter__(self) -> _MeetBefore:
        sa.event.listen(self.engine, "before_cursor_execute", self)
        return self

    def __exit__(self, *exc) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self)


# --------------------------------------------------------------------------- dispatch race

def test_two_sessions_dispatch_once(real_engine: Engine):
    """Two officers dispatch one accepted ticket at once through two real connections: exactly
    one commits; the other gets a 409 (VersionConflict or IllegalTransition); one dispatch event."""
    number = _new_accepted_ticket(real_engine)
    officer, supervisor = _actor(real_engine, "officer1"), _actor(real_engine, "supervisor1")
    barrier = threading.Barrier(2, timeout=TIMEOUT)

    def dispatch(i: int) -> str:
        actor = (officer, supervisor)[i]
        with Session(real_engine, expire_on_commit=False) as s:
            ticket = ticket_service.get_visible_ticket(s, actor, number)
            assert ticket.status == "accepted"
            barrier.wait()  # both have read version N before either writes
            try:
                ticket_service.apply_action(s, actor, ticket, "dispatch", {})
                s.commit()
            except BaseException:
                s.rollback()
                raise
            return ticket.status

    results = _run_pair(dispatch)
    wins = [r for r in results if r == "dispatched"]
    losses = [r for r in results if isinstance(r, VersionConflict | IllegalTransition)]
    assert len(wins) == 1 and len(losses) == 1, results
    assert losses[0].status == 409
    # both read the same version, so the loser's "UPDATE ... WHERE version = N" matched no row
    assert isinstance(losses[0], VersionConflict)

    ticket, events = _ticket_and_events(real_engine, number)
    assert ticket.status == "dispatched"
    assert ticket.version == 3  # submitted 1 -> accepted 2 -> dispatched 3: no lost update, no double bump
    assert [e.action for e in events] == ["submit", "accept", "dispatch"]


def test_two_http_requests_dispatch_once(real_engine: Engine):
    """The same race through the HTTP API: two threads, each with its own app and TestClient on
    the real engine; both requests read the ticket before either updates it. One 200, one 409."""
    number = _new_accepted_ticket(real_engine)
    headers = [_headers(real_engine, "officer1"), _headers(real_engine, "supervisor1")]
    clients = [TestClient(_real_app(real_engine), raise_server_exceptions=False) for _ in range(2)]

    def dispatch(i: int):
        return clients[i].post(f"/api/v1/tickets/{number}/dispatch", headers=headers[i], json={})

    with _MeetBefore(real_engine, "UPDATE ticket"):
        responses = _run_pair(dispatch)
    for c in clients:
        c.close()
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 409], [(r.status_code, r.text) for r in responses]
    loser = next(r for r in responses if r.status_code == 409)
    assert loser.headers["content-type"].startswith("application/problem+json")
    assert loser.json()["type"] == "/problems/version-conflict"
    winner = next(r for r in responses if r.status_code == 200)
    assert winner.json()["status"] == "dispatched" and winner.headers["ETag"] == '"3"'

    ticket, events = _ticket_and_events(real_engine, number)
    assert ticket.status == "dispatched" and ticket.version == 3
    assert [e.action for e in events].count("dispatch") == 1


def test_http_dispatch_race_unforced(real_engine: Engine):
    """Without forcing the interleaving (a plain barrier before sending): whichever way the
    scheduler orders them, one 200 and one 409, and one dispatch event."""
    number = _new_accepted_ticket(real_engine)
    headers = [_headers(real_engine, "officer1"), _headers(real_engine, "supervisor1")]
    clients = [TestClient(_real_app(real_engine), raise_server_exceptions=False) for _ in range(2)]
    barrier = threading.Barrier(2, timeout=TIMEOUT)

    def dispatch(i: int):
        barrier.wait()
        return clients[i].post(f"/api/v1/tickets/{number}/dispatch", headers=headers[i], json={})

    responses = _run_pair(dispatch)
    for c in clients:
        c.close()
    assert sorted(r.status_code for r in responses) == [200, 409], [r.text for r in responses]
    _, events = _ticket_and_events(real_engine, number)
    assert [e.action for e in events].count("dispatch") == 1


# --------------------------------------------------------------------------- idempotency

def _count_tickets(engine: Engine, title: str) -> int:
    with Session(engine) as s:
        return s.exec(select(func.count()).select_from(Ticket).where(Ticket.title == title)).one()


def _key_rows(engine: Engine, user_id: int, key: str) -> list[IdempotencyKey]:
    with Session(engine) as s:
        return list(s.exec(select(IdempotencyKey).where(IdempotencyKey.user_id == user_id,
                                                        IdempotencyKey.key == key)).all())


@pytest.fixture
def new_key(real_engine: Engine) -> Iterator[Callable[[str], str]]:
    """``new_key("race")`` gives a fresh Idempotency-Key; the committed key rows are deleted after
    the test (other tests of this worker's database count idempotency keys)."""
    keys: list[str] = []

    def make(prefix: str) -> str:
        keys.append(f"{prefix}-{uuid.uuid4()}")
        return keys[-1]

    yield make
    if keys:
        with Session(real_engine) as s:
            s.execute(sa.delete(IdempotencyKey).where(IdempotencyKey.key.in_(keys)))
            s.commit()


def test_idempotent_retry_makes_no_second_ticket(real_engine: Engine, new_key):
    """A retried submission (same key, same body, after the first committed) returns the same
    ticket and creates nothing; the same key with another body is refused (422)."""
    title = f"幂等重试 {uuid.uuid4().hex[:8]}"
    body = {"title": title, "description": "网络超时后客户端重试", "category_code": "problem.labour"}
    key = new_key("retry")
    headers = {**_headers(real_engine, "ent1"), "Idempotency-Key": key}
    with TestClient(_real_app(real_engine), raise_server_exceptions=False) as client:
        first = client.post("/api/v1/tickets", headers=headers, json=body)
        second = client.post("/api/v1/tickets", headers=headers, json=body)
        other = client.post("/api/v1/tickets", headers=headers, json={**body, "description": "另一件事"})
    assert first.status_code == 201, first.text
    assert second.status_code == 201, second.text
    assert second.json()["number"] == first.json()["number"]
    assert second.headers["Location"] == first.headers["Location"]
    assert other.status_code == 422, other.text
    assert other.json()["type"] == "/problems/idempotency-key-reused"
    assert _count_tickets(real_engine, title) == 1
    assert len(_key_rows(real_engine, _actor(real_engine, "ent1").user_id, key)) == 1


@pytest.mark.parametrize("intake_statement", [False, True], ids=["orm-path", "one-statement"])
def test_idempotent_retries_racing(real_engine: Engine, new_key, monkeypatch, intake_statement: bool):
    """Two retries of one submission race on two connections (same user, key and body): one
    ticket row, one key row, and both responses name the same ticket.

    ORM path: both are held past the "is the key known?" read until both are about to insert the
    key. One statement (``intake_pg``): both are held until both are about to run the statement;
    the second waits on the first's key, inserts nothing, and replays the first's ticket."""
    monkeypatch.setattr(get_settings(), "intake_statement", intake_statement)
    title = f"并发幂等 {uuid.uuid4().hex[:8]}"
    body = {"title": title, "description": "客户端超时后立即重发", "category_code": "problem.labour"}
    key = new_key("race")
    headers = {**_headers(real_engine, "ent1"), "Idempotency-Key": key}
    clients = [TestClient(_real_app(real_engine), raise_server_exceptions=False) for _ in range(2)]

    def submit(i: int):
        return clients[i].post("/api/v1/tickets", headers=headers, json=body)

    if intake_statement:
        barrier = threading.Barrier(2, timeout=TIMEOUT)
        original = intake_pg.submit_async

        async def meet_then_submit(session, prepared):
            await anyio.to_thread.run_sync(barrier.wait)
            return await original(session, prepared)

        monkeypatch.setattr(intake_pg, "submit_async", meet_then_submit)
        responses = _run_pair(submit)
    else:
        with _MeetBefore(real_engine, "INSERT INTO idempotency_key"):
            responses = _run_pair(submit)
    for c in clients:
        c.close()
    assert [r.status_code for r in responses] == [201, 201], [r.text for r in responses]
    numbers = {r.json()["number"] for r in responses}
    assert len(numbers) == 1
    assert _count_tickets(real_engine, title) == 1
    rows = _key_rows(real_engine, _actor(real_engine, "ent1").user_id, key)
    assert len(rows) == 1
    ticket, events = _ticket_and_events(real_engine, numbers.pop())
    assert rows[0].ticket_id == ticket.id
    assert [e.action for e in events] == ["submit"]


def test_idempotent_retries_racing_service_level(real_engine: Engine, new_key):
    """The same race with the service function in two sessions (both commit)."""
    ent = _actor(real_engine, "ent1")
    title = f"并发幂等服务层 {uuid.uuid4().hex[:8]}"
    data = schemas.TicketCreate(title=title, description="两个连接同时提交", category_code="problem.labour")
    key = new_key("svc-race")
    barrier = threading.Barrier(2, timeout=TIMEOUT)

    def submit(_i: int) -> tuple[str, bool]:
        with Session(real_engine, expire_on_commit=False) as s:
            s.connection()  # each side holds its own connection and transaction
            barrier.wait()
            ticket, created = ticket_service.submit_ticket(s, ent, data, idempotency_key=key)
            s.commit()
            return ticket.number, created

    results = _run_pair(submit)
    assert all(isinstance(r, tuple) for r in results), results
    assert len({number for number, _ in results}) == 1
    assert sorted(created for _, created in results) == [False, True]
    assert _count_tickets(real_engine, title) == 1
    assert len(_key_rows(real_engine, ent.user_id, key)) == 1


# --------------------------------------------------------------------------- If-Match

def test_stale_if_match_is_412_and_changes_nothing(real_engine: Engine):
    """A dispatch carrying a stale ETag answers 412 and leaves the ticket exactly as it was; the
    current ETag then succeeds."""
    number = _new_accepted_ticket(real_engine)
    before, events_before = _ticket_and_events(real_engine, number)
    assert before.version == 2
    headers = _headers(real_engine, "officer1")
    with TestClient(_real_app(real_engine), raise_server_exceptions=False) as client:
        stale = client.post(f"/api/v1/tickets/{number}/dispatch", json={},
                            headers={**headers, "If-Match": '"1"'})
        after, events_after = _ticket_and_events(real_engine, number)
        fresh = client.post(f"/api/v1/tickets/{number}/dispatch", json={},
                            headers={**headers, "If-Match": '"2"'})
    assert stale.status_code == 412, stale.text
    problem = stale.json()
    assert problem["type"] == "/problems/version-conflict" and problem["current_version"] == 2
    assert stale.headers["content-type"].startswith("application/problem+json")
    assert after.model_dump() == before.model_dump()
    assert [e.id for e in events_after] == [e.id for e in events_before]
    assert fresh.status_code == 200 and fresh.headers["ETag"] == '"3"'


# --------------------------------------------------------------------------- ticket numbers

def test_first_numbers_of_a_new_year_race(real_engine: Engine):
    """The first two tickets of a year whose number sequence does not exist yet, allocated at once
    on two connections: both get a number (the sequence is created once), and they differ."""
    year = 2099
    with real_engine.connect() as conn:
        conn.execute(sa.text(f"DROP SEQUENCE IF EXISTS ticket_number_{year}"))
        conn.commit()
    barrier = threading.Barrier(2, timeout=TIMEOUT)

    def allocate(_i: int) -> str:
        with Session(real_engine) as s:
            s.connection()
            barrier.wait()
            number = ticket_service.next_ticket_number(s, year)
            s.execute(sa.text("SELECT 1"))  # the transaction is still usable
            s.commit()
            return number

    try:
        results = _run_pair(allocate)
        assert all(isinstance(r, str) for r in results), results
        assert sorted(results) == [f"QF{year}-000001", f"QF{year}-000002"]
        with Session(real_engine) as s:  # a later transaction continues the same sequence
            assert ticket_service.next_ticket_number(s, year) == f"QF{year}-000003"
    finally:
        with real_engine.connect() as conn:
            conn.execute(sa.text(f"DROP SEQUENCE IF EXISTS ticket_number_{year}"))
            conn.commit()


# --------------------------------------------------------------------------- pool vs threads

def test_more_requests_than_connections_and_threads(committed_url: str, monkeypatch: pytest.MonkeyPatch):
    """More concurrent requests than pooled connections and worker threads: all succeed.

    A request holds its pooled connection across several worker-thread hops (auth dependency,
    route, commit). If every worker thread could block waiting for a connection while the
    connection holders wait for a thread, the process would stall until the pool timeout and
    answer 500 (``service.db.request._request_slots`` prevents it). Real ``get_session``, real engine:
    4 connections, 3 worker threads, 12 requests at once."""
    import anyio

    from qifu.main import create_app
    from service.config import get_settings
    from service.db import get_engine

    monkeypatch.setenv("QIFU_DATABASE_URL", committed_url)
    monkeypatch.setenv("QIFU_DB_POOL_SIZE", "4")
    monkeypatch.setenv("QIFU_DB_MAX_OVERFLOW", "0")
    get_settings.cache_clear()
    get_engine.cache_clear()
    try:
        app = create_app()

        async def few_threads(scope, receive, send):
            anyio.to_thread.current_default_thread_limiter().total_tokens = 3
            await app(scope, receive, send)

        headers = _headers(get_engine(), "officer1")
        n = 12
        barrier = threading.Barrier(n, timeout=TIMEOUT)
        with TestClient(few_threads, raise_server_exceptions=False) as client:

            def me(_i: int):
                barrier.wait()
                return client.get("/api/v1/me", headers=headers, timeout=20)

            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=n) as pool:
                responses = list(pool.map(me, range(n)))
            elapsed = time.monotonic() - started
        assert [r.status_code for r in responses] == [200] * n, [r.text for r in responses if r.status_code != 200]
        assert elapsed < 15, f"{elapsed:.1f} s: requests waited for the pool timeout"
    finally:
        get_engine().dispose()
        monkeypatch.undo()
        get_settings.cache_clear()
        get_engine.cache_clear()


# --------------------------------------------------------------------------- cached actors

def test_user_deactivated_by_another_process(real_engine: Engine, monkeypatch: pytest.MonkeyPatch):
    """API processes reuse a token user's actor for ``ACTOR_TTL_SECONDS`` (docs/performance.md).
    A deactivation committed elsewhere (another process: here a separate connection, no ORM
    events in this one) takes effect here within that time; a flush in this process at once
    (tests/tickets/test_ticket_api.py)."""
    from service.auth import dependencies as auth_deps

    monkeypatch.setattr(auth_deps, "ACTOR_TTL_SECONDS", 1.0)
    headers = _headers(real_engine, "ent19")
    other = make_engine(str(real_engine.url.render_as_string(hide_password=False)))
    try:
        with TestClient(_real_app(real_engine), raise_server_exceptions=False) as client:
            assert client.get("/api/v1/me", headers=headers).status_code == 200
            with other.connect() as conn:
                conn.execute(sa.text("UPDATE user_account SET is_active = false WHERE username = 'ent19'"))
                conn.commit()
            deadline = time.monotonic() + 1.0 + 2.0  # the TTL, and a margin for a slow machine
            while (status := client.get("/api/v1/me", headers=headers).status_code) == 200:
                assert time.monotonic() < deadline, "the deactivated user was still accepted after the TTL"
                time.sleep(0.1)
            assert status == 401
    finally:
        with other.connect() as conn:
            conn.execute(sa.text("UPDATE user_account SET is_active = true WHERE username = 'ent19'"))
            conn.commit()
        other.dispose()


# --------------------------------------------------------------------------- pooled connections

def test_pooled_connection_killed_while_idle_is_replaced(committed_url: str, monkeypatch: pytest.MonkeyPatch):
    """A pooled connection whose server process died while it sat idle (a PostgreSQL restart, an
    idle timeout) is pinged at checkout and replaced: the request does not fail."""
    import service.db.engine

    monkeypatch.setattr(service.db.engine, "PING_AFTER_IDLE_SECONDS", 0.05)
    eng = make_engine(committed_url)
    try:
        with eng.connect() as conn:
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        admin = make_engine(committed_url)
        with admin.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
        admin.dispose()
        time.sleep(0.2)
        with eng.connect() as conn:  # the dead connection is pinged, discarded, and a new one used
            assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one() != pid
    finally:
        eng.dispose()

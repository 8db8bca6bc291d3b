"""A self-service submission on PostgreSQL in one statement (SPEC §3 ``submit``, §7; the intake
target of docs/performance.md).

What :func:`service.ticketing.service.create_ticket` does in seven round trips through the ORM, one
data-modifying ``WITH`` statement does in one, in its own implicit transaction:

1. checks the enterprise and the category (id, service type and, when given, code) and, when
   both hold (and the key, if any, is new), takes the next number of the year's sequence: a
   submission the general path must decide uses up no number here;
2. inserts the ticket with the values of :func:`service.ticketing.intake.new_ticket_columns` (the
   same rules as every other writer), the grid and officer read from the enterprise row;
3. inserts its ``submit`` event and the notification of ``submit`` to its recipients (both as
   declared in :data:`service.tickets.effects.EFFECTS`; the notification by the one fan-out,
   :func:`service.notifications.fanout.insert_statement`, compiled into the statement), with a delivery per configured channel and
   their ``notifications.deliver`` outbox message;
4. with an ``Idempotency-Key``, inserts the key first (``ON CONFLICT DO NOTHING``) and the ticket
   only when the key was new; a concurrent retry waits on the key until the first commits.

The near-duplicate index rows of the new ticket (:mod:`service.triage.duplicates`) are not written
here: the periodic job :func:`service.triage.duplicates.index_pending` adds them within seconds
(docs/triage.md "Duplicates"; docs/performance.md "Intake, session 3").

The statement writes nothing, and :func:`submit` returns ``None``, whenever the general path must
decide: an unknown or changed enterprise or category (to name the field at fault), a key already
used (to replay or refuse it), the first ticket of a year (to create the year's sequence). The
caller then runs :func:`service.ticketing.service.submit_ticket`, so answers never differ between
the two paths; only the cost does.

Who takes this path: enterprise users submitting for themselves (the bulk of the traffic) on
PostgreSQL. Submissions on behalf of an enterprise need the officer's scope and take the ORM path.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

import anyio
import psycopg
import pydantic_core
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect
from sqlmodel import Session

from service import clock, jobs
from service.auth.actor import Actor
from service.calendar.core import WorkingCalendar
from service.calendar.service import calendar_is_fresh, get_calendar
from service.common.enums import STATUS_LABELS, Role
from service.config import get_settings
from service.db import async_connection, database_key
from service.errors import FieldError, Unavailable, database_unavailable
from service.notifications import fanout
from service.sla.deadlines import deadline_view
from service.sla.policy import cached_category, snapshot_is_fresh
from service.ticketing import intake
from service.tickets import schemas
from service.tickets.effects import EFFECTS
from service.tickets.models import Ticket


def applies(session: Session, actor: Actor) -> bool:
    """True when this path may serve ``actor``'s submission through ``session``'s database:
    PostgreSQL, an enterprise user (who may submit only for their own enterprise), and the path
    not switched off (``QIFU_INTAKE_STATEMENT=false``)."""
    return (actor.role == Role.enterprise and session.get_bind().dialect.name == "postgresql"
            and get_settings().intake_statement)


@dataclass(frozen=True)
class Prepared:
    """A submission ready to run: the statement's parameters and what the response needs."""

    params: dict[str, Any]
    columns: dict[str, Any]  # the ticket's columns as planned (grid/officer come back from the row)
    with_key: bool
    at: datetime
    calendar: WorkingCalendar  # the one the deadlines were planned with, for the response's view


def prepare(session: Session, actor: Actor, data: schemas.TicketCreate,
            idempotency_key: str | None, event_payload: dict | None = None) -> Prepared | None:
    """Check the request and plan the ticket (no I/O while the reference caches are fresh).
    ``event_payload``: more members of the ``submit`` event's payload (as
    :func:`service.ticketing.submission.create_ticket`).

    Returns None when the category is unknown to this process (the general path names the field).

    Raises:
        NotAllowed (403), FieldError (422): as :func:`service.ticketing.intake.resolve_submitter`;
            a key longer than 255 characters.
    """
    from service.ticketing.submission import request_hash  # submission imports the notifications

    enterprise_id, channel = intake.resolve_submitter(actor, data)
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 255:
        raise FieldError("Idempotency-Key", "长度须为1-255个字符")
    category = cached_category(session, data.category_id, data.category_code)
    if category is None:
        return None
    category_id, _code, service_type = category
    at = clock.now()
    calendar = get_calendar(session)  # fresh (submit refreshed it): no I/O
    columns = intake.new_ticket_columns(
        session, enterprise_id=enterprise_id, grid_id=None, officer_id=intake.fallback_officer(actor),
        category_id=category_id, service_type=service_type, title=data.title, description=data.description,
        channel=channel, priority=data.priority.value, submitted_by_id=actor.user_id, at=at,
    )
    settings = get_settings()
    year = at.astimezone(clock.office_zone()).year
    params = dict(
        p_row=pydantic_core.to_json(columns).decode(),  # datetimes as ISO 8601 (UTC, "Z")
        p_enterprise_id=enterprise_id, p_category_id=category_id, p_service_type=service_type,
        p_number_prefix=f"{settings.ticket_number_prefix}{year}-", p_sequence=f"ticket_number_{int(year)}",
        p_category_code=data.category_code, p_actor_id=actor.user_id, p_actor_role=actor.role,
        p_at=at, p_event_payload=_json({**(event_payload or {}), "channel": channel}),
        p_webhook_url=settings.webhook_url,
        **_fanout()[1],
    )
    if idempotency_key is not None:
        params.update(p_key=idempotency_key, p_request_hash=request_hash(data))
    return Prepared(params=params, columns=columns, with_key=idempotency_key is not None, at=at,
                    calendar=calendar)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)  # as the engine's json_serializer writes it


def statement(*, with_key: bool, webhook: bool, email: bool) -> str:
    """The SQL of the submission (psycopg ``%(name)s`` parameters), built once per variant from the
    table metadata: ``with_key`` adds the idempotency key; ``webhook``/``email`` the deliveries."""
    return _statement(with_key, webhook, email)


@lru_cache(maxsize=8)
def _statement(with_key: bool, webhook: bool, email: bool) -> str:
    # The planned columns arrive as one JSON object expanded by json_populate_record: one
    # parameter instead of 45, and a statement short enough for psycopg's query cache.
    computed = {
        "number": ("%(p_number_prefix)s || CASE WHEN s.n < 1000000 THEN lpad(s.n::text, 6, '0') "
                   "ELSE s.n::text END"),
        "enterprise_id": "e.id",
        "grid_id": "e.grid_id",
        "officer_id": "COALESCE(e.officer_id, r.officer_id)",
        "category_id": "c.id",
    }
    names, values = [], []
    if with_key:
        names.append("id")
        values.append("k.ticket_id")
    for column in Ticket.__table__.columns:
        if column.key == "id":
            continue
        names.append(column.name)
        values.append(computed.get(column.key) or f"r.{column.name}")
    sources = "json_populate_record(NULL::ticket, %(p_row)s::json) AS r, e, c, s" + (", k" if with_key else "")
    parts = [
        "e AS (SELECT id, grid_id, officer_id FROM enterprise WHERE id = %(p_enterprise_id)s::integer)",
        "c AS (SELECT id FROM category WHERE id = %(p_category_id)s::integer "
        "AND service_type = %(p_service_type)s::text "
        "AND (%(p_category_code)s::text IS NULL OR code = %(p_category_code)s::text))",
    ]
    if with_key:
        # the key first: a retry racing the first submission waits here until that one commits,
        # then inserts nothing, so no second ticket is written (the caller then replays). The
        # number is drawn only for a key inserted (s reads k), so a replay uses up no number.
        parts.append(
            "k AS (INSERT INTO idempotency_key (user_id, key, request_hash, ticket_id, status_code, created_at) "
            "SELECT %(p_actor_id)s::integer, %(p_key)s::text, %(p_request_hash)s::text, "
            "nextval(pg_get_serial_sequence('ticket', 'id')), 201, %(p_at)s::timestamptz "
            "FROM e, c WHERE to_regclass(%(p_sequence)s::text) IS NOT NULL "
            "ON CONFLICT (user_id, key) DO NOTHING RETURNING ticket_id)")
        parts.append("s AS (SELECT nextval(to_regclass(%(p_sequence)s::text)) AS n FROM k)")
    else:
        parts.append("s AS (SELECT nextval(to_regclass(%(p_sequence)s::text)) AS n FROM e, c)")
    parts.append(
        f"t AS (INSERT INTO ticket ({', '.join(names)}) SELECT {', '.join(values)} FROM {sources} "
        f"WHERE s.n IS NOT NULL RETURNING {', '.join(dict.fromkeys(('grid_id', *fanout.TICKET_COLUMNS)))})")
    parts.append(
        "ev AS (INSERT INTO ticket_event (ticket_id, actor_id, actor_role, action, from_status, to_status, "
        "reason, payload, visibility, created_at) SELECT t.id, %(p_actor_id)s::integer, %(p_actor_role)s::text, "
        f"'submit', NULL, t.status, NULL, %(p_event_payload)s::json, '{EFFECTS['submit'].visibility}', "
        "%(p_at)s::timestamptz FROM t)")
    # the notification of submit, from the one fan-out (notifications.fanout), over the new ticket
    parts.append(f"nt AS ({_fanout()[0]})")
    outbox = "NULL::integer"
    if webhook or email:
        deliveries = []
        if webhook:
            deliveries.append("SELECT nt.id, 'webhook', %(p_webhook_url)s::text FROM nt")
        if email:
            # an empty address gets no delivery either, as in notifications.service._queue_deliveries
            deliveries.append("SELECT nt.id, 'email', u.email FROM nt JOIN user_account u ON u.id = nt.user_id "
                              "WHERE u.email IS NOT NULL AND u.email <> ''")
        parts.append(
            "d AS (INSERT INTO notification_delivery (notification_id, channel, target, state, attempts) "
            f"SELECT q.*, 'pending', 0 FROM ({' UNION ALL '.join(deliveries)}) AS q RETURNING id)")
        parts.append(
            "o AS (INSERT INTO outbox_message (task, kwargs, created_at, attempts) "
            "SELECT 'notifications.deliver', json_build_object('delivery_ids', json_agg(d.id ORDER BY d.id)), "
            "%(p_at)s::timestamptz, 0 FROM d HAVING count(*) > 0 RETURNING id)")
        outbox = "(SELECT id FROM o)"
    return "WITH " + ",\n".join(parts) + f"\nSELECT t.id, t.number, t.officer_id, t.grid_id, {outbox} FROM t"


@lru_cache(maxsize=1)
def _fanout() -> tuple[str, dict[str, Any]]:
    """The ``INSERT INTO notification ... RETURNING id, user_id`` of ``submit``'s notification kind
    (:data:`service.tickets.effects.EFFECTS`), built by :func:`service.notifications.fanout.insert_statement`
    over the CTE ``t`` and compiled for psycopg once: its SQL and its constant parameters."""
    t = sa.table("t", *(sa.column(c, Ticket.__table__.c[c].type) for c in fanout.TICKET_COLUMNS))
    kind = EFFECTS["submit"].notify
    stmt = fanout.insert_statement(kind, t, None, at=sa.literal_column("CAST(__P_AT__ AS TIMESTAMP WITH TIME ZONE)"),
                                   body="", dialect="postgresql")
    compiled = stmt.compile(dialect=psycopg_dialect.dialect())
    params = {k: v for k, v in compiled.params.items()}
    return str(compiled).replace("__P_AT__", "%(p_at)s"), params


def _sql(prepared: Prepared) -> str:
    settings = get_settings()
    return statement(with_key=prepared.with_key, webhook=bool(settings.webhook_url),
                     email=bool(settings.smtp_host))


def _response(prepared: Prepared, row: tuple) -> schemas.TicketRead:
    """The response model, as :func:`service.ticketing.service.ticket_read` gives it for the row.
    No I/O: it runs on the event loop after the statement (the calendar is the prepared one)."""
    _id, number, officer_id, grid_id, _outbox = row
    ticket = SimpleNamespace(**prepared.columns)
    ticket.officer_id, ticket.grid_id = officer_id, grid_id
    data = dict(prepared.columns, number=number, officer_id=officer_id, grid_id=grid_id,
                status_label=STATUS_LABELS[ticket.status], co_department_ids=[], duplicate_of=None)
    data.update(deadline_view(prepared.calendar, ticket, clock.now()))  # type: ignore[arg-type]
    return schemas.TicketRead.model_validate(data)


def submit_in_session(session: Session, prepared: Prepared) -> schemas.TicketRead | None:
    """Run the statement on ``session``'s connection, inside its transaction (a savepoint, so that
    a statement that fails leaves the transaction usable for the general path). For sessions
    bound to an outer transaction (tests); the outbox message is relayed after that commits."""
    try:
        with session.begin_nested():
            row = session.connection().exec_driver_sql(_sql(prepared), prepared.params).first()
    except sa.exc.IntegrityError:
        return None  # the idempotency key without its ticket (e.g. no sequence yet): general path
    if row is None:
        return None
    if row[4] is not None:
        jobs.relay_after_commit(session, [row[4]])
    return _response(prepared, tuple(row))


async def submit_async(session: Session, prepared: Prepared) -> schemas.TicketRead | None:
    """Run the statement on a pooled async connection in autocommit mode (its own transaction,
    one round trip) without a worker thread; relay the outbox message after it committed.

    Returns None (the general path then answers) when the statement wrote nothing: see the
    module docstring; also when the server refused it and rolled it back (deadlock, statement
    timeout, lock not available).

    Raises:
        Unavailable (503): no connection could be had, or it broke while the statement ran (the
            submission may or may not have committed; a retry with the same Idempotency-Key is
            safe, one without may make a second ticket).
    """
    engine = session.get_bind()
    try:
        async with async_connection(engine) as conn:
            cur = await conn.execute(_sql(prepared), prepared.params)
            row = await cur.fetchone()
    except psycopg.errors.IntegrityError:
        return None
    except psycopg.OperationalError as exc:
        if not _connection_lost(exc):
            return None  # refused by the server and rolled back (deadlock, timeout, ...): general path
        raise Unavailable(f"数据库连接中断，提交结果未知；请携带相同的 Idempotency-Key 重试（{type(exc).__name__}）") from exc
    if row is None:
        return None
    if row[4] is not None:
        jobs.relay_committed([row[4]], engine)
    return _response(prepared, row)


def _connection_lost(exc: psycopg.OperationalError) -> bool:
    """True when ``exc`` means the connection is gone or was never had, so the statement's outcome
    is unknown: no SQLSTATE (the socket closed, ``PoolTimeout``), class 08 (connection exception)
    or 57P (operator intervention: the server shutting down or the backend terminated). Others of
    class 40/53/55/57 (deadlock, out of resources, lock not available, query cancelled) are
    answered by the server after it rolled the statement back."""
    return database_unavailable(exc)


async def submit(session: Session, actor: Actor, data: schemas.TicketCreate,
                 idempotency_key: str | None, event_payload: dict | None = None) -> schemas.TicketRead | None:
    """Submit on this path, or return None for the general path (see the module docstring).

    ``session`` is the request's session: when it is bound to the engine the statement runs on
    an async connection in autocommit (committed on return; from this loop's pool inside the
    application's lifespan, else a connection opened for the call, :func:`service.db.async_connection`);
    when it is bound to a connection, inside that connection's transaction. The reference caches
    are refreshed in a worker thread when stale.

    Raises:
        NotAllowed (403), FieldError (422): see :func:`prepare`.
        Unavailable (503): the database connection failed (see :func:`submit_async`).
    """
    if not (calendar_is_fresh(session) and snapshot_is_fresh(session)):
        await _refresh_caches(session)
    prepared = prepare(session, actor, data, idempotency_key, event_payload)
    if prepared is None:
        return None
    if isinstance(session.get_bind(), sa.Engine):
        return await submit_async(session, prepared)
    return await anyio.to_thread.run_sync(submit_in_session, session, prepared)


_refreshing: dict[tuple[asyncio.AbstractEventLoop, str], asyncio.Future] = {}


async def _refresh_caches(session: Session) -> None:
    """Re-read the calendar overrides and the policy snapshot in a worker thread; one read at a
    time per database and event loop, which the other requests that find them stale wait for."""
    key = (asyncio.get_running_loop(), database_key(session))
    running = _refreshing.get(key)
    if running is not None:
        await asyncio.shield(running)
        if calendar_is_fresh(session) and snapshot_is_fresh(session):
            return
    running = _refreshing[key] = asyncio.get_running_loop().create_future()
    try:
        await anyio.to_thread.run_sync(_read_caches, session)
    finally:
        if _refreshing.get(key) is running:
            del _refreshing[key]
        running.set_result(None)


def _read_caches(session: Session) -> None:
    get_calendar(session)
    cached_category(session, None, None)


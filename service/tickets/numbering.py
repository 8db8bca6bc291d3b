"""Ticket numbers (SPEC §3): ``QF2026-000123``, one sequence per year."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Session

from service.config import get_settings
from service.tickets.models import TicketNumberCounter


def next_ticket_number(session: Session, year: int) -> str:
    """Allocate the next ticket number of ``year``: ``QF2026-000123`` (prefix from settings).

    PostgreSQL: one sequence per year (``ticket_number_<year>``), non-blocking under concurrency;
    a rolled-back submission leaves a gap (numbers are unique and increasing, not gap-free).
    SQLite: a counter row per year (writers are serialised anyway).
    """
    prefix = get_settings().ticket_number_prefix
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        seq = f"ticket_number_{int(year)}"
        # One round trip and no SAVEPOINT: to_regclass() gives NULL (not an error that would
        # abort the transaction) when the sequence does not exist yet, and nextval(NULL) is NULL.
        value = session.execute(sa.text("SELECT nextval(to_regclass(:seq))"), {"seq": seq}).scalar_one()
        if value is None:
            # First ticket of the year: create the sequence in its own committed transaction
            # (``bind`` is a Connection when the session is bound to one, as in tests), then call
            # nextval by OID. By name would still fail: this transaction's failed lookup left a
            # negative catalog-cache entry that a lock-free name lookup does not refresh.
            oid = _create_sequence(bind, seq)
            value = session.execute(sa.text("SELECT nextval(CAST(:oid AS regclass))"),
                                    {"oid": oid}).scalar_one()
    else:
        c = TicketNumberCounter.__table__.c
        # on the session's connection (Core): through session.execute this UPDATE of a mapped
        # table takes the ORM's bulk path, which walks the session's objects to synchronise them
        # (a third of an import's time on SQLite, docs/import.md)
        value = session.connection().execute(
            sa.update(TicketNumberCounter.__table__).where(c.year == year)
            .values(last_value=c.last_value + 1).returning(c.last_value)).scalar()
        if value is None:
            session.execute(sa.insert(TicketNumberCounter.__table__).values(year=year, last_value=1))
            value = 1
    return f"{prefix}{year}-{value:06d}"


def reserve_ticket_numbers(session: Session, year: int, count: int) -> list[str]:
    """``count`` ticket numbers of ``year`` for :func:`service.ticketing.submission.create_ticket`
    (``number=``), in order.

    SQLite: one UPDATE of the year's counter for all of them (the importer reserves a batch's
    numbers at once: a number per row cost a statement per row). A reserved number that is not
    used leaves a gap, as a rolled-back submission does on PostgreSQL. PostgreSQL: one
    :func:`next_ticket_number` each (``nextval`` is cheap there).

    Raises:
        ValueError: ``count < 0``.
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    if count == 0:
        return []
    if session.get_bind().dialect.name == "postgresql":
        return [next_ticket_number(session, year) for _ in range(count)]
    prefix = get_settings().ticket_number_prefix
    c = TicketNumberCounter.__table__.c
    last = session.connection().execute(
        sa.update(TicketNumberCounter.__table__).where(c.year == year)
        .values(last_value=c.last_value + count).returning(c.last_value)).scalar()
    if last is None:
        session.connection().execute(sa.insert(TicketNumberCounter.__table__).values(year=year, last_value=count))
        last = count
    return [f"{prefix}{year}-{value:06d}" for value in range(last - count + 1, last + 1)]


def _create_sequence(bind: sa.Engine | sa.Connection, seq: str) -> int:
    """``CREATE SEQUENCE IF NOT EXISTS seq`` on a connection of its own (committed at once, so it
    outlives a rolled-back submission); returns its OID. Two processes creating it at the same
    moment can collide on the catalog's unique index: the loser reads the winner's sequence."""
    engine = bind.engine if isinstance(bind, sa.Connection) else bind
    for attempt in range(3):
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f"CREATE SEQUENCE IF NOT EXISTS {seq}"))
                oid = conn.execute(sa.text("SELECT CAST(to_regclass(:seq) AS oid)"), {"seq": seq}).scalar_one()
                conn.commit()
                return int(oid)
        except sa.exc.IntegrityError:  # pragma: no cover - concurrent first tickets of a year
            if attempt == 2:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


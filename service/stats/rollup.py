"""The statistics rollup (issue 10): counts and working-hour histograms per (local submission day,
lead department, grid, category, channel, officer, service type), kept by database triggers on
``ticket`` that are *generated from* :mod:`service.stats.metrics`, so that every writer (actions,
set-based SLA sweeps, the one-statement intake, imports, merges, cadences, PATCHes, a hand-written
``UPDATE``) keeps it by construction. ``docs/statistics.md`` ("Rollup") and ``docs/decisions.md``
("Statistics rollup") give the design and its reasons.

- :func:`install` (``qifu migrate``, the test database builder, ``qifu stats rebuild``): fills
  ``working_day``, (re)creates the triggers and rebuilds the rollup when the stored definitions
  hash differs from the code's. Idempotent.
- The triggers append the *delta* of each statement (− the contribution of the old rows, + that
  of the new rows, grouped by key and buckets) to the append-only ``stats_delta``.
- :func:`fold` moves ``stats_delta`` into ``stats_day`` / ``stats_day_hist`` (Celery beat every
  ``QIFU_STATS_FOLD_SECONDS``; ``qifu stats fold``). Queries read both, so they are exact before a
  fold. It also applies a calendar change (holidays entered by an admin) to the histograms.
- :func:`read` answers the summary's counts and histograms from the rollup;
  :func:`hist_percentile` turns a histogram into a percentile.
- :func:`rebuild` recomputes the rollup from the tickets, reports the differences, and repairs.

A row's *contribution*: its key (sentinel ``0``/``''`` for a missing id/text), for each count of
:data:`ROLLUP_COUNTS` ``CASE WHEN <the metric's predicate> THEN 1 ELSE 0 END``, and for each
duration the histogram bucket of its working seconds ``round(W(end) − W(start))`` where the
duration applies (:func:`service.stats.metrics.duration_condition`), else ``NULL``. ``W`` is
:class:`service.stats.metrics.WorkingClockSQL` over the stored ``working_day`` table.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.util import ClauseAdapter
from sqlmodel import Session

from service.calendar.core import EPOCH, WorkingCalendar, WorkingHours
from service.calendar.service import get_calendar
from service.db.types import UTCDateTime
from service.stats.metrics import (
    COUNTS,
    DURATIONS,
    FRACTIONS,
    PERCENTILES,
    LocalTime,
    T,
    WorkingClockSQL,
    duration_condition,
)
from service.stats.models import (
    DIM_KEY,
    DIM_LEVELS,
    DIMS,
    DUE_PAST,
    DUE_PK,
    KEY_COLUMNS,
    ROLLUP_COUNTS,
    ROLLUP_DURATIONS,
    metadata,
    stats_day,
    stats_day_hist,
    stats_day_pct,
    stats_delta,
    stats_dim_day,
    stats_dim_hist,
    stats_meta,
    working_day,
)
from service.tickets.models import Ticket

log = logging.getLogger("qifu.stats")

KEY = tuple(name for name, _, _ in KEY_COLUMNS)
#: Bump when the generated SQL changes in a way the hash would not see.
VERSION = "4"  # 3: the per-dimension month tables, width_bucket; 4: week and year tables
#: The days ``working_day`` covers: the API's dates (service.common.schemas, 1990-2100).
FIRST_DAY, LAST_DAY = date(1990, 1, 1), date(2100, 12, 31)
FOLD_LOCK = 0x51F0_57A7  # pg_advisory_xact_lock key of fold/rebuild/install

# --------------------------------------------------------------------------- histogram buckets

def _edges() -> tuple[int, ...]:
    """Bucket edges in working seconds: 0-1 h in 0.25 h steps, then ×1.25 per bucket up to the
    last edge below 2,000 h (≈1,972 h); above it the overflow bucket."""
    edges = [900, 1800, 2700]
    k = 0
    while 3600 * 1.25 ** k < 2000 * 3600:
        edges.append(round(3600 * 1.25 ** k))
        k += 1
    return tuple(edges)


#: ``bucket(s)`` = number of edges ``<= s`` (0 … ``len(EDGES)``; the last is the overflow).
EDGES: tuple[int, ...] = _edges()
OVERFLOW = len(EDGES)


def bucket_of(seconds: float) -> int:
    """The bucket of ``round(seconds)`` working seconds (negative: bucket 0)."""
    return bisect.bisect_right(EDGES, round(seconds))


def bucket_bounds(bucket: int) -> tuple[float, float | None]:
    """``(lower, upper)`` working hours of a bucket (``upper`` None for the overflow bucket)."""
    lower = EDGES[bucket - 1] / 3600 if bucket > 0 else 0.0
    upper = EDGES[bucket] / 3600 if bucket < OVERFLOW else None
    return lower, upper


def _values_at_ranks(hist: dict[int, int], ranks: list[int]) -> dict[int, float]:
    """``{rank: estimated value (working hours)}`` for ascending ``ranks``, in one pass over the
    buckets in order: the ``j``-th of a bucket's ``c`` values at ``lower + (j + ½)/c · width``
    (the overflow bucket's values at its lower edge)."""
    out: dict[int, float] = {}
    seen = 0
    i = 0
    for b in sorted(hist):
        c = hist[b]
        if c <= 0:
            continue
        while i < len(ranks) and ranks[i] < seen + c:
            lower, upper = bucket_bounds(b)
            out[ranks[i]] = lower if upper is None else lower + (ranks[i] - seen + 0.5) / c * (upper - lower)
            i += 1
        if i == len(ranks):
            return out
        seen += c
    raise ValueError(ranks[i])


def hist_percentiles(hist: dict[int, int], fractions: tuple[float, ...]) -> list[float | None]:
    """The ``fractions`` percentiles (working hours) of a histogram ``{bucket: count}``, with
    ``percentile_cont``'s interpolation between ranks, each rank's value estimated by spreading a
    bucket's ``c`` values evenly over it (the ``j``-th at ``lower + (j + ½)/c · width``). One pass
    over the buckets for all fractions.

    Error bound: every rank's estimate lies in the bucket of the true value, so the result is
    within the wider of the two buckets holding the ranks it interpolates between: < 0.25 h below
    1 h, < 25 % of the value above (and ≥ 1,972 h the estimate is the overflow's lower edge).
    ``None`` each for an empty histogram."""
    n = sum(c for c in hist.values() if c > 0)
    if n == 0:
        return [None] * len(fractions)
    spans = []
    for fraction in fractions:
        x = fraction * (n - 1)
        lo = int(x)
        spans.append((x, lo, min(lo + 1, n - 1)))
    at = _values_at_ranks(hist, sorted({r for _, lo, hi in spans for r in (lo, hi)}))
    return [at[lo] + (x - lo) * (at[hi] - at[lo]) for x, lo, hi in spans]


def hist_percentile(hist: dict[int, int], fraction: float) -> float | None:
    """The ``fraction`` percentile of a histogram: :func:`hist_percentiles` of one fraction."""
    return hist_percentiles(hist, (fraction,))[0]


def percentile_error_bound(values: list[float], fraction: float) -> float:
    """The bound of :func:`hist_percentile` for these exact values (hours): the width of the wider
    bucket holding the two ranks interpolated between (infinite in the overflow bucket)."""
    v = sorted(values)
    x = fraction * (len(v) - 1)
    lo = int(x)
    hi = min(lo + 1, len(v) - 1)
    widths = []
    for value in (v[lo], v[hi]):
        lower, upper = bucket_bounds(bucket_of(value * 3600))
        widths.append(float("inf") if upper is None else upper - lower)
    return max(widths)


# --------------------------------------------------------------------------- generated SQL

_R = Ticket.__table__.alias("r")
_SRC_MARK = "ticket AS r"


def _dialect(name: str):
    if name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.dialect()
    from sqlalchemy.dialects import sqlite

    return sqlite.dialect()


def _compile(stmt, dialect_name: str) -> str:
    return str(stmt.compile(dialect=_dialect(dialect_name), compile_kwargs={"literal_binds": True}))


def key_expressions(local: LocalTime) -> list[sa.ColumnElement[Any]]:
    """The rollup key of a ``ticket`` row (:data:`KEY`), labelled: the local submission day
    number and the dimensions, a missing id as ``0`` and a missing text as ``''``."""
    return [local.day_number(T.submitted_at).label("dn"),
            sa.func.coalesce(T.lead_department_id, 0).label("department_id"),
            sa.func.coalesce(T.grid_id, 0).label("grid_id"),
            sa.func.coalesce(T.category_id, 0).label("category_id"),
            sa.func.coalesce(T.channel, "").label("channel"),
            sa.func.coalesce(T.officer_id, 0).label("officer_id"),
            sa.func.coalesce(T.service_type, "").label("service_type")]


@lru_cache(maxsize=16)
def contribution_sql(dialect_name: str, hours: WorkingHours, tz: str, correlated: bool = False,
                     durations: bool = True) -> str:
    """``SELECT <key>, b_<duration>…, <count>… FROM ({src} AS r …) AS q``: one contribution row
    per ticket row of ``{src}`` (a table, a transition table or a one-row sub-select of ``NEW``).

    Generated from :data:`metrics.COUNTS` and :func:`metrics.duration_condition` (compiled with
    literal values), the working clock over ``working_day``, the working periods ``hours`` and
    the office zone ``tz`` (baked in). ``correlated``: look the days up with a scalar sub-select
    where a duration applies (triggers: a new ticket has none) instead of joining ``working_day``
    once per timestamp column (scans: rebuild). ``durations=False``: every bucket ``NULL`` (rows
    without milestones, e.g. new tickets; a smaller statement)."""
    calendar = WorkingCalendar({}, hours, tz)
    local = LocalTime(dialect_name, calendar.tz)
    wc = WorkingClockSQL.on_table(calendar, local, working_day, correlated=correlated)
    from_: Any = Ticket.__table__
    for column in wc.columns():
        from_ = wc.join(from_, column)
    now = datetime(2000, 1, 1, tzinfo=UTC)  # no rollup count depends on the instant (overdue is live)
    seconds = {d: sa.case((duration_condition(DURATIONS[d]),
                           sa.func.round(wc.clock(DURATIONS[d].end) - wc.clock(DURATIONS[d].start))), else_=None)
               for d in ROLLUP_DURATIONS}
    inner = sa.select(
        *key_expressions(local),
        *((seconds[d] if durations else sa.null()).label(f"s_{d}") for d in ROLLUP_DURATIONS),
        *(sa.case((COUNTS[n].predicate(now), 1), else_=0).label(n) for n in ROLLUP_COUNTS if n != "received"),
    ).select_from(from_)
    inner = ClauseAdapter(_R).traverse(inner)
    text = _compile(inner, dialect_name)
    if text.count(_SRC_MARK) != 1:
        raise RuntimeError("contribution SQL: cannot find the source table")
    text = text.replace(_SRC_MARK, "{src} AS r")
    # bucket = the number of edges <= s (bisect_right). PostgreSQL: width_bucket over the edges (a
    # binary search: 20x faster than a sub-select per row and duration, which dominated the rebuild
    # and the triggers); SQLite: counted over a VALUES list (it names the column column1), a small
    # expression unlike a CASE tree over 38 edges
    if dialect_name == "postgresql":
        array = "ARRAY[" + ", ".join(str(e) for e in EDGES) + "]::float8[]"

        def bucket(d: str) -> str:
            return f"CAST(width_bucket(CAST(q.s_{d} AS float8), {array}) AS smallint)"
    else:
        edges = ", ".join(f"({e})" for e in EDGES)

        def bucket(d: str) -> str:
            return (f"CASE WHEN s_{d} IS NULL THEN NULL ELSE (SELECT count(*) FROM (VALUES {edges}) AS e "
                    f"WHERE e.column1 <= q.s_{d}) END")
    buckets = ", ".join(f"{bucket(d)} AS b_{d}" if durations else f"CAST(NULL AS smallint) AS b_{d}"
                        for d in ROLLUP_DURATIONS)
    counts = ", ".join(n for n in ROLLUP_COUNTS if n != "received")
    # a fence: without it the planner substitutes each duration's working-seconds expression into
    # every comparison of its bucket tree (a huge expression: 100+ ms to plan, evaluated 6 times)
    fence = " OFFSET 0" if dialect_name == "postgresql" else " LIMIT -1 OFFSET 0"
    return (f"SELECT {', '.join(KEY)}, {buckets}, {counts} FROM ({text}{fence}) AS q")


def _contrib(dialect_name: str, calendar: WorkingCalendar, src: str, correlated: bool = False,
             durations: bool = True) -> str:
    return contribution_sql(dialect_name, calendar.hours, str(calendar.tz), correlated, durations
                            ).replace("{src}", src)


def _delta_select(parts: list[tuple[int, str]], dialect_name: str, calendar: WorkingCalendar,
                  correlated: bool = True, durations: bool = True) -> str:
    """``SELECT key, buckets, Σ sign·count … GROUP BY key, buckets HAVING <not all zero>`` over the
    contributions of ``(sign, src)`` parts."""
    union = " UNION ALL ".join(
        f"SELECT {sign} AS sg, c.* FROM ({_contrib(dialect_name, calendar, src, correlated, durations)}) AS c"
        for sign, src in parts)
    keys = [*KEY, *(f"b_{d}" for d in ROLLUP_DURATIONS)]
    sums = ["sum(sg) AS received", *(f"sum(sg * {n}) AS {n}" for n in ROLLUP_COUNTS if n != "received")]
    having = " OR ".join(["sum(sg) <> 0", *(f"sum(sg * {n}) <> 0" for n in ROLLUP_COUNTS if n != "received")])
    return (f"SELECT {', '.join(keys)}, {', '.join(sums)} FROM ({union}) AS d "
            f"GROUP BY {', '.join(keys)} HAVING {having}")


def input_columns(dialect_name: str, calendar: WorkingCalendar) -> tuple[str, ...]:
    """The ``ticket`` columns a row's contribution reads (taken from the generated SQL itself, so
    it follows the metric definitions): an update changing none of them changes no figure."""
    text = contribution_sql(dialect_name, calendar.hours, str(calendar.tz), True)
    if re.search(r'\br\."', text):  # pragma: no cover - a quoted column name would escape the scan
        raise RuntimeError("contribution SQL: a quoted column of ticket")
    names = {c.name for c in Ticket.__table__.c}
    found = tuple(sorted(set(re.findall(r"\br\.(\w+)", text)) & names))
    if "submitted_at" not in found:  # pragma: no cover - the key's day comes from it
        raise RuntimeError("contribution SQL: cannot find its input columns")
    return found


def _changed(rows: str, other: str, inputs: tuple[str, ...]) -> str:
    """The rows of transition table ``rows`` whose rollup inputs differ from the same ticket's row
    in ``other`` (or that have no such row)."""
    mine = ", ".join(f"a.{c}" for c in inputs)
    theirs = ", ".join(f"b.{c}" for c in inputs)
    return (f"(SELECT a.* FROM {rows} AS a LEFT JOIN {other} AS b ON b.id = a.id "
            f"WHERE b.id IS NULL OR ROW({mine}) IS DISTINCT FROM ROW({theirs}))")


DELTA_COLUMNS = ", ".join([*KEY, *(f"b_{d}" for d in ROLLUP_DURATIONS), *ROLLUP_COUNTS])
TRIGGERS = ("stats_ticket_ins", "stats_ticket_upd", "stats_ticket_del", "stats_ticket_trunc")


def trigger_ddl(dialect_name: str, calendar: WorkingCalendar) -> list[str]:
    """The statements that (re)create the triggers on ``ticket`` (drop statements included).

    PostgreSQL: statement-level ``AFTER INSERT/UPDATE/DELETE`` triggers with transition tables
    (one ``INSERT … SELECT`` per statement, whatever its number of rows; an insert of one row
    without milestones, the intake's, appends its contribution without grouping) and a
    ``TRUNCATE`` trigger that empties the rollup. SQLite: row-level triggers doing the same per row."""
    insert = f"INSERT INTO stats_delta ({DELTA_COLUMNS}) "
    out: list[str] = []
    if dialect_name == "postgresql":
        inputs = input_columns(dialect_name, calendar)
        # a new ticket normally has no milestone yet: its statement skips the working-hour part
        milestones = " OR ".join(f"{c} IS NOT NULL" for c in dict.fromkeys(
            c for d in ROLLUP_DURATIONS for c in (DURATIONS[d].start, DURATIONS[d].end) if c != "submitted_at"))

        def delta(parts: list[tuple[int, str]]) -> str:
            return insert + _delta_select(parts, dialect_name, calendar) + ";"

        # the one-row intake statement (the hot path, docs/performance.md "Intake, session 3"): its
        # contribution as it is, without the GROUP BY/HAVING that only folds many rows of one key
        # (sign +1, received 1: never an all-zero row), 0.1-0.15 ms less PostgreSQL CPU per submission
        buckets = ", ".join(f"b_{d}" for d in ROLLUP_DURATIONS)
        counts = ", ".join(n for n in ROLLUP_COUNTS if n != "received")
        one_row = (f"{insert}SELECT {', '.join(KEY)}, {buckets}, 1, {counts} FROM "
                   f"({_contrib(dialect_name, calendar, 'new_rows', durations=False)}) AS c")
        insert_body = (f"SELECT count(*), count(*) FILTER (WHERE {milestones}) INTO n_rows, n_milestones FROM new_rows;\n"
                       f"IF n_milestones > 0 THEN\n{delta([(1, 'new_rows')])}\n"
                       f"ELSIF n_rows = 1 THEN\n{one_row};\n"
                       f"ELSE\n{insert}{_delta_select([(1, 'new_rows')], dialect_name, calendar, durations=False)};\n"
                       "END IF;")
        bodies = {
            "stats_ticket_ins": ("INSERT", "REFERENCING NEW TABLE AS new_rows", insert_body),
            # only the rows whose rollup inputs changed (a reminder, a hold, a text edit: none)
            "stats_ticket_upd": ("UPDATE", "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
                                 delta([(-1, _changed("old_rows", "new_rows", inputs)),
                                        (1, _changed("new_rows", "old_rows", inputs))])),
            "stats_ticket_del": ("DELETE", "REFERENCING OLD TABLE AS old_rows", delta([(-1, "old_rows")])),
            "stats_ticket_trunc": ("TRUNCATE", "",
                                   " ".join(f"DELETE FROM {t};" for t in ROLLUP_TABLES)),
        }
        for name, (event, referencing, body) in bodies.items():
            out.append(f"DROP TRIGGER IF EXISTS {name} ON ticket")
            declare = "DECLARE n_rows bigint; n_milestones bigint;\n" if name == "stats_ticket_ins" else ""
            out.append(f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $qifu$\n"
                       f"{declare}BEGIN\n{body}\nRETURN NULL;\nEND\n$qifu$")
            out.append(f"CREATE TRIGGER {name} AFTER {event} ON ticket {referencing} FOR EACH STATEMENT "
                       f"EXECUTE FUNCTION {name}()")
        return out
    row = ", ".join(f"{{row}}.{c.name} AS {c.name}" for c in Ticket.__table__.c)
    new, old = f"(SELECT {row.format(row='NEW')})", f"(SELECT {row.format(row='OLD')})"
    bodies = {"stats_ticket_ins": ("INSERT", [(1, new)]), "stats_ticket_upd": ("UPDATE", [(-1, old), (1, new)]),
              "stats_ticket_del": ("DELETE", [(-1, old)])}
    for name, (event, parts) in bodies.items():
        out.append(f"DROP TRIGGER IF EXISTS {name}")
        out.append(f"CREATE TRIGGER {name} AFTER {event} ON ticket BEGIN "
                   f"{insert}{_delta_select(parts, dialect_name, calendar)}; END")
    return out


def _hash(*parts: Any) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


def definitions_hash(dialect_name: str, calendar: WorkingCalendar) -> str:
    """Hash of everything the stored rollup depends on except the calendar's days: the trigger
    SQL (metric predicates, working periods, zone), the buckets, the key, the range."""
    return _ddl_hash(dialect_name, calendar.hours, str(calendar.tz))


@lru_cache(maxsize=8)
def _ddl_hash(dialect_name: str, hours: WorkingHours, tz: str) -> str:
    return _hash(VERSION, EDGES, KEY, DIMS, ROLLUP_COUNTS, ROLLUP_DURATIONS, FIRST_DAY, LAST_DAY,
                 trigger_ddl(dialect_name, WorkingCalendar({}, hours, tz)))


def calendar_hash(calendar: WorkingCalendar) -> str:
    """Hash of the calendar's days as ``working_day`` stores them (overrides, periods, zone)."""
    return _hash(sorted(calendar.overrides.items()), tuple(calendar.hours.spans), str(calendar.tz))


# --------------------------------------------------------------------------- working_day

def working_day_rows(calendar: WorkingCalendar) -> list[dict[str, int]]:
    """Every day of ``[FIRST_DAY, LAST_DAY]``: day number, ``W`` at local midnight (whole working
    seconds: ``W`` of the first midnight, then + a working day's seconds after each working day),
    working-day flag, and the Monday/month (and the month's and the year's first day)/quarter of the day. Years without official data fall
    back to Monday-Friday (the calendar's rule; its warning is not repeated here)."""
    calendar_log = logging.getLogger("qifu.calendar")
    level = calendar_log.level
    calendar_log.setLevel(logging.ERROR)
    try:
        rows = []
        d = FIRST_DAY
        one = timedelta(days=1)
        cum = int(calendar.working_clock(datetime.combine(d, time.min, tzinfo=calendar.tz)))
        day_seconds = calendar.hours.day_seconds
        while d <= LAST_DAY:
            dn = (d - EPOCH).days
            wd = 1 if calendar.is_working_day(d) else 0
            rows.append({"dn": dn, "cum": cum, "wd": wd, "week": dn - d.weekday(),
                         "month": d.year * 100 + d.month, "month_dn": dn - d.day + 1,
                         "year_dn": dn - d.timetuple().tm_yday + 1,
                         "quarter": d.year * 10 + (d.month + 2) // 3})
            cum += wd * day_seconds
            d += one
        return rows
    finally:
        calendar_log.setLevel(level)


def _fill_working_day(conn: sa.Connection, rows: list[dict[str, int]]) -> None:
    conn.execute(sa.delete(working_day))
    for i in range(0, len(rows), 5000):
        conn.execute(sa.insert(working_day), rows[i:i + 5000])


def _meta(conn: sa.Connection) -> dict[str, str]:
    return dict(conn.execute(sa.select(stats_meta.c.name, stats_meta.c.value)).all())


def _set_meta(conn: sa.Connection, **values: str) -> None:
    for name, value in values.items():
        conn.execute(sa.delete(stats_meta).where(stats_meta.c.name == name))
        conn.execute(sa.insert(stats_meta).values(name=name, value=value))


def _lock(conn: sa.Connection, tickets: bool = False) -> None:
    """Serialise fold/rebuild/install (PostgreSQL advisory lock; SQLite has one writer); with
    ``tickets`` also hold writers of ``ticket`` off until commit (SHARE lock)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({FOLD_LOCK})")
        if tickets:
            conn.exec_driver_sql("LOCK TABLE ticket IN SHARE MODE")


# --------------------------------------------------------------------------- install

def _conn(session_or_conn) -> sa.Connection:
    return session_or_conn.connection() if isinstance(session_or_conn, Session) else session_or_conn


def triggers_present(conn: sa.Connection) -> bool:
    """Whether every rollup trigger exists and is enabled on ``ticket`` (a migration that rebuilds
    the table, as SQLite's batch mode does, drops them; a bulk load may disable them: then the
    rollup is not current until reinstalled, e.g. by ``qifu stats rebuild``)."""
    names = ", ".join(f"'{name}'" for name in TRIGGERS)
    if conn.dialect.name == "postgresql":
        found = conn.exec_driver_sql("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'ticket'::regclass "
                                     f"AND tgname IN ({names}) AND tgenabled <> 'D'").scalar_one()
        return found == len(TRIGGERS)
    found = conn.exec_driver_sql("SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'ticket' "
                                 f"AND name IN ({names})").scalar_one()
    return found == len(TRIGGERS) - 1  # no TRUNCATE trigger in SQLite


def is_current(session: Session) -> bool:
    """True when the stored rollup matches the code's definitions and the calendar in force, and
    its triggers are in place (the summary reads the rollup only then; otherwise it recounts)."""
    conn = _conn(session)
    calendar = get_calendar(session)
    try:
        meta = _meta(conn)
    except sa.exc.DBAPIError:  # pragma: no cover - a database older than the rollup migration
        return False
    return (meta.get("definitions") == definitions_hash(conn.dialect.name, calendar)
            and meta.get("calendar") == calendar_hash(calendar) and triggers_present(conn))


def install(session_or_conn, calendar: WorkingCalendar | None = None, force: bool = False) -> bool:
    """Install or refresh the rollup on this database: fill ``working_day``, (re)create the
    triggers on ``ticket``, rebuild ``stats_day``/``stats_day_hist`` from the tickets and store the
    hashes — when the stored definitions hash differs from the code's (or ``force``). A changed
    calendar alone is applied incrementally (:func:`apply_calendar`). The deadline rollup
    (PostgreSQL) likewise, on its own hash (:func:`install_due`). Idempotent; runs in the
    caller's transaction. Returns True when something was (re)built.

    Called after ``alembic upgrade head`` by ``qifu migrate`` / ``qifu standalone`` and the test
    database builder, and by ``qifu stats rebuild``."""
    conn = _conn(session_or_conn)
    if calendar is None:
        calendar = get_calendar(session_or_conn) if isinstance(session_or_conn, Session) else _calendar_of(conn)
    dialect_name = conn.dialect.name
    wanted = definitions_hash(dialect_name, calendar)
    meta = _meta(conn)
    due = install_due(conn, str(calendar.tz), force=force)  # the deadline rollup: its own hash
    if meta.get("definitions") == wanted and not force and triggers_present(conn):
        due = install_pct(conn) or due  # the day percentiles: their own hash
        if meta.get("calendar") != calendar_hash(calendar):
            apply_calendar(conn, calendar)
            return True
        return due
    _lock(conn, tickets=True)  # writers wait; readers go on while the rollup is recomputed
    _fill_working_day(conn, working_day_rows(calendar))
    _replace(conn, calendar)
    # last: (re)creating a trigger locks ``ticket`` against readers too, until the commit
    for statement in trigger_ddl(dialect_name, calendar):
        conn.exec_driver_sql(statement)
    _set_meta(conn, definitions=wanted, calendar=calendar_hash(calendar))
    log.info("stats rollup installed (%s)", wanted)
    return True


def _calendar_of(conn: sa.Connection) -> WorkingCalendar:
    with Session(bind=conn) as session:
        return get_calendar(session)


def apply_calendar(conn: sa.Connection, calendar: WorkingCalendar) -> int:
    """Apply a changed working calendar (holidays or make-up days entered by an admin, SPEC §4):
    refresh ``working_day`` and move the histograms of the tickets whose durations end on or after
    the first changed day (− their buckets under the old days, + under the new, appended to
    ``stats_delta``), in the caller's transaction with ``ticket`` writers held off. Returns the
    number of days changed."""
    dialect_name = conn.dialect.name
    _lock(conn, tickets=True)
    rows = working_day_rows(calendar)
    stored = {r.dn: (r.cum, r.wd) for r in conn.execute(sa.select(working_day.c.dn, working_day.c.cum,
                                                                     working_day.c.wd))}
    changed = [r["dn"] for r in rows if stored.get(r["dn"]) != (r["cum"], r["wd"])]
    if changed:
        first = EPOCH + timedelta(days=min(changed))
        since = datetime.combine(first, time.min, tzinfo=calendar.tz)
        src = ("(SELECT * FROM ticket WHERE claimed_at >= :since OR first_replied_at >= :since "
               "OR closed_at >= :since)")
        param = sa.bindparam("since", since, type_=UTCDateTime)
        insert = f"INSERT INTO stats_delta ({DELTA_COLUMNS}) "
        conn.execute(sa.text(insert + _delta_select([(-1, src)], dialect_name, calendar, False)).bindparams(param))
        _fill_working_day(conn, rows)
        conn.execute(sa.text(insert + _delta_select([(1, src)], dialect_name, calendar, False)).bindparams(param))
    _set_meta(conn, calendar=calendar_hash(calendar))
    return len(changed)


# --------------------------------------------------------------------------- fold

def _upsert_day(source: str, dialect_name: str) -> str:
    counts = ", ".join(f"sum({n})" for n in ROLLUP_COUNTS)
    update = ", ".join(f"{n} = stats_day.{n} + excluded.{n}" for n in ROLLUP_COUNTS)
    return (f"INSERT INTO stats_day ({', '.join(KEY)}, {', '.join(ROLLUP_COUNTS)}) "
            f"SELECT {', '.join(KEY)}, {counts} FROM {source} WHERE true GROUP BY {', '.join(KEY)} "
            f"ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET {update}")


def _hist_source(source: str) -> str:
    return " UNION ALL ".join(f"SELECT {', '.join(KEY)}, {i} AS duration, b_{d} AS bucket, received AS n "
                              f"FROM {source} WHERE b_{d} IS NOT NULL" for i, d in enumerate(ROLLUP_DURATIONS))


def _upsert_hist(source: str) -> str:
    cols = ", ".join([*KEY, "duration", "bucket"])
    return (f"INSERT INTO stats_day_hist ({cols}, n) SELECT {cols}, sum(n) FROM ({_hist_source(source)}) AS h "
            f"WHERE true GROUP BY {cols} ON CONFLICT ({cols}) DO UPDATE SET n = stats_day_hist.n + excluded.n")


def _dim_column_key(column: str | None) -> str:
    if column is None:
        return "''"
    return column if column in ("channel", "service_type") else f"CAST({column} AS VARCHAR(16))"


def _dims(source: str, cols: str, dims: tuple[tuple[str, str | None], ...] = DIMS) -> str:
    """The rows of ``source`` (a table or sub-select with the rollup key) once per dimension of
    :data:`DIMS`: ``SELECT dim, key, dn, <cols>`` (``key``: the dimension's value as text)."""
    return " UNION ALL ".join(f"SELECT '{dim}' AS dim, {_dim_column_key(column)} AS key, dn, {cols} FROM {source}"
                              for dim, column in dims)


def _dim_day_select(source: str, having: bool = False, dims: tuple[tuple[str, str | None], ...] = DIMS) -> str:
    """``source``'s counts summed per ``(dim, key, dn)``."""
    sums = ", ".join(f"sum({n}) AS {n}" for n in ROLLUP_COUNTS)
    cond = (" HAVING " + " OR ".join(f"sum({n}) <> 0" for n in ROLLUP_COUNTS)) if having else ""
    return (f"SELECT {', '.join(DIM_KEY)}, {sums} FROM ({_dims(source, ', '.join(ROLLUP_COUNTS), dims)}) AS m "
            f"WHERE true GROUP BY {', '.join(DIM_KEY)}{cond}")


def _dim_hist_select(hist_source: str, having: bool = False,
                     dims: tuple[tuple[str, str | None], ...] = DIMS) -> str:
    """A histogram source's ``n`` summed per ``(dim, key, dn, duration, bucket)``."""
    cols = ", ".join([*DIM_KEY, "duration", "bucket"])
    cond = " HAVING sum(n) <> 0" if having else ""
    return (f"SELECT {cols}, sum(n) AS n FROM ({_dims(hist_source, 'duration, bucket, n', dims)}) AS m "
            f"WHERE true GROUP BY {cols}{cond}")


def _level_select(level: str, dim_select: str, hist: bool = False, having: bool = False) -> str:
    """A per-dimension day select (:func:`_dim_day_select`/:func:`_dim_hist_select`) summed per
    week, month or year (:data:`DIM_LEVELS`): ``dn`` becomes the period's first day (the
    ``working_day`` column of the level: ``week``, ``month_dn``, ``year_dn``)."""
    column = DIM_LEVELS[level][2]
    extra = ["duration", "bucket"] if hist else []
    names = ["n"] if hist else list(ROLLUP_COUNTS)
    sums = ", ".join(f"sum(x.{n}) AS {n}" for n in names)
    group = ", ".join(["x.dim", "x.key", f"w.{column}", *(f"x.{c}" for c in extra)])
    cond = (" HAVING " + " OR ".join(f"sum(x.{n}) <> 0" for n in names)) if having else ""
    return (f"SELECT x.dim AS dim, x.key AS key, w.{column} AS dn, {''.join(f'x.{c} AS {c}, ' for c in extra)}"
            f"{sums} FROM ({dim_select}) AS x JOIN working_day AS w ON w.dn = x.dn WHERE true GROUP BY {group}{cond}")


def _upsert_dim(table: str, select: str, hist: bool) -> str:
    cols = [*DIM_KEY, *(["duration", "bucket"] if hist else [])]
    names = ["n"] if hist else list(ROLLUP_COUNTS)
    update = ", ".join(f"{n} = {table}.{n} + excluded.{n}" for n in names)
    return (f"INSERT INTO {table} ({', '.join([*cols, *names])}) {select} "
            f"ON CONFLICT ({', '.join(cols)}) DO UPDATE SET {update}")


def _dim_statements(source: str) -> list[tuple[str, str]]:
    """``(name, upsert)`` of the per-dimension tables (day, week, month and year; counts and
    histograms) from a delta-shaped ``source`` (``stats_delta``'s columns)."""
    hist_source = f"({_hist_source(source)}) AS hs"
    out = [("dd", _upsert_dim("stats_dim_day", _dim_day_select(source), False)),
           ("dh", _upsert_dim("stats_dim_hist", _dim_hist_select(hist_source), True))]
    for level, (counts, hists, _) in DIM_LEVELS.items():
        out.append((f"{level}_c", _upsert_dim(counts, _level_select(level, _dim_day_select(source)), False)))
        out.append((f"{level}_h", _upsert_dim(hists, _level_select(level, _dim_hist_select(hist_source), True), True)))
    return out


ROLLUP_TABLES = ("stats_delta", "stats_day", "stats_day_hist", "stats_dim_day", "stats_dim_hist",
                 *(t for counts, hists, _ in DIM_LEVELS.values() for t in (counts, hists)))


def fold(session_or_conn) -> int:
    """Move every ``stats_delta`` row into ``stats_day``/``stats_day_hist`` and, aggregated per
    dimension, into ``stats_dim_day``/``stats_dim_hist`` and per week, month and year into
    the tables of :data:`DIM_LEVELS` atomically, and apply a changed calendar
    (:func:`apply_calendar`) first; the deadline rollup's delta likewise (:func:`fold_due`,
    PostgreSQL). Returns the number of ``stats_delta`` rows moved. Runs in the caller's
    transaction (commit it). Safe beside writers and other folds (PostgreSQL: one
    ``DELETE … RETURNING`` feeding every upsert; an advisory lock)."""
    conn = _conn(session_or_conn)
    calendar = get_calendar(session_or_conn) if isinstance(session_or_conn, Session) else _calendar_of(conn)
    meta = _meta(conn)
    if meta.get("definitions") != definitions_hash(conn.dialect.name, calendar) or not triggers_present(conn):
        install(conn, calendar)
        return 0
    if meta.get("calendar") != calendar_hash(calendar):
        apply_calendar(conn, calendar)
    _lock(conn)
    fold_due(conn, calendar.tz)
    if conn.dialect.name == "postgresql":
        dims = _dim_statements("moved")
        ctes = "".join(f"{name} AS ({sql} RETURNING 1), " for name, sql in dims)
        counts = ", ".join(f"(SELECT count(*) FROM {name})" for name, _ in dims)
        moved = conn.exec_driver_sql(
            "WITH moved AS (DELETE FROM stats_delta RETURNING *), "
            f"d AS ({_upsert_day('moved', 'postgresql')} RETURNING 1), "
            f"h AS ({_upsert_hist('moved')} RETURNING 1), {ctes[:-2]} "
            f"SELECT (SELECT count(*) FROM moved), (SELECT array_agg(DISTINCT dn) FROM moved), "
            f"(SELECT count(*) FROM d), (SELECT count(*) FROM h), {counts}").one()
        if moved[1] and not install_pct(conn):
            refresh_day_percentiles(conn, list(moved[1]))
        return int(moved[0])
    n = conn.exec_driver_sql("SELECT count(*) FROM stats_delta").scalar_one()
    if n:
        touched = list(conn.exec_driver_sql("SELECT DISTINCT dn FROM stats_delta").scalars())
        conn.exec_driver_sql(_upsert_day("stats_delta", "sqlite"))
        conn.exec_driver_sql(_upsert_hist("stats_delta"))
        for _, sql in _dim_statements("stats_delta"):
            conn.exec_driver_sql(sql)
        conn.exec_driver_sql("DELETE FROM stats_delta")
        if not install_pct(conn):
            refresh_day_percentiles(conn, touched)
    return int(n)


# --------------------------------------------------------------------------- day percentiles
# The day grouping over years has one group per day, each with three histograms: reading every
# bucket row of every day (100,000 rows over five years at 10 M) and estimating 11,000
# percentiles per query cost more than the rest of the summary. The fold keeps the percentiles of
# each day's total histogram (dim ``all`` of ``stats_dim_hist``, as folded) in ``stats_day_pct``,
# computed by the one estimator (:func:`hist_percentiles`) for the days whose deltas it moved; the
# day grouping reads them for the days without unfolded deltas, and the histograms of the others.

PCT_VERSION = "1"
if {f"p{p}" for p, _ in PERCENTILES} != {c.name for c in stats_day_pct.c} - {"dn", "duration"}:  # pragma: no cover
    raise RuntimeError("stats_day_pct: its columns must be metrics.PERCENTILES")


def pct_definitions_hash() -> str:
    """Hash of what the stored day percentiles depend on: the buckets, the fractions, the estimator's version."""
    return _hash(PCT_VERSION, EDGES, FRACTIONS)


def _day_percentile_rows(conn: sa.Connection, dns: list[int] | None) -> list[dict[str, Any]]:
    """``stats_day_pct`` rows computed from the folded ``stats_dim_hist`` rows of dim ``all`` (of
    the days ``dns``, or of every day)."""
    hists: dict[tuple[int, int], dict[int, int]] = {}
    stmt = (sa.select(stats_dim_hist.c.dn, stats_dim_hist.c.duration, stats_dim_hist.c.bucket, stats_dim_hist.c.n)
            .where(stats_dim_hist.c.dim == "all"))
    chunks = [None] if dns is None else [dns[i:i + 5000] for i in range(0, len(dns), 5000)]
    for chunk in chunks:
        part = stmt if chunk is None else stmt.where(stats_dim_hist.c.dn.in_(chunk))
        for dn, duration, bucket, n in conn.execute(part).all():
            if n:
                hists.setdefault((dn, duration), {})[bucket] = n
    out = []
    for (dn, duration), hist in sorted(hists.items()):
        values = hist_percentiles(hist, FRACTIONS)
        if values[0] is not None:
            out.append({"dn": dn, "duration": duration, **{f"p{p}": v for (p, _), v in zip(PERCENTILES, values, strict=True)}})
    return out


def refresh_day_percentiles(conn: sa.Connection, dns: list[int] | None = None) -> int:
    """Recompute ``stats_day_pct`` for the days ``dns`` (``None``: every day) from the folded
    histograms, in the caller's transaction (after the fold's upserts). Returns the rows written."""
    if dns is None:
        conn.execute(sa.delete(stats_day_pct))
    else:
        for i in range(0, len(dns), 5000):
            conn.execute(sa.delete(stats_day_pct).where(stats_day_pct.c.dn.in_(dns[i:i + 5000])))
    rows = _day_percentile_rows(conn, dns)
    for i in range(0, len(rows), 5000):
        conn.execute(sa.insert(stats_day_pct), rows[i:i + 5000])
    return len(rows)


def install_pct(conn: sa.Connection, force: bool = False) -> bool:
    """Fill ``stats_day_pct`` from the folded histograms when its stored hash differs from the
    code's (or ``force``). Returns True when filled."""
    if not force and _meta(conn).get("pct") == pct_definitions_hash():
        return False
    refresh_day_percentiles(conn)
    _set_meta(conn, pct=pct_definitions_hash())
    return True


def pct_differences(conn: sa.Connection) -> list[Difference]:
    """Every ``stats_day_pct`` value that differs from the estimate of the folded day histogram
    (kind ``day_pct``, measure ``<duration>_p50``/``_p90``)."""
    if _meta(conn).get("pct") != pct_definitions_hash():
        return []
    names = [f"p{p}" for p, _ in PERCENTILES]
    stored = {(r["dn"], r["duration"]): tuple(r[n] for n in names)
              for r in conn.execute(sa.select(stats_day_pct)).mappings()}
    fresh = {(r["dn"], r["duration"]): tuple(r[n] for n in names) for r in _day_percentile_rows(conn, None)}
    out = []
    empty = (None,) * len(names)
    for key in sorted(set(stored) | set(fresh)):
        a, b = stored.get(key, empty), fresh.get(key, empty)
        for (p, _), x, y in zip(PERCENTILES, a, b, strict=True):
            if x != y:
                out.append(Difference("day_pct", {"dn": key[0]}, f"{ROLLUP_DURATIONS[key[1]]}_p{p}", x, y))
    return out


# --------------------------------------------------------------------------- rebuild: one pass

#: The temporary table of :func:`_fresh_pass`: one row per ticket, ``stats_delta``'s columns.
FRESH = "stats_fresh"


def _fresh_pass(conn: sa.Connection, calendar: WorkingCalendar) -> None:
    """The one pass over ``ticket``: every row's contribution (its key, buckets and 0/1 counts,
    ``received`` = 1: the columns of ``stats_delta``) into the temporary table :data:`FRESH`, from
    which :func:`_fill_from_fresh` derives every rollup table and :func:`differences` compares."""
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {FRESH}")
    if conn.dialect.name == "postgresql":
        # the aggregations below group millions of rows: in memory rather than in sorted runs on disk
        conn.exec_driver_sql("SET LOCAL work_mem = '256MB'")
    contrib = _contrib(conn.dialect.name, calendar, "ticket")
    conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {FRESH} AS SELECT c.*, 1 AS received FROM ({contrib}) AS c")
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"ANALYZE {FRESH}")


def _drop_fresh(conn: sa.Connection) -> None:
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {FRESH}")


def _fresh_day() -> str:
    sums = ", ".join(f"sum({n}) AS {n}" for n in ROLLUP_COUNTS)
    return f"SELECT {', '.join(KEY)}, {sums} FROM {FRESH} GROUP BY {', '.join(KEY)}"


def _fresh_hist() -> str:
    cols = ", ".join([*KEY, "duration", "bucket"])
    return f"SELECT {cols}, sum(n) AS n FROM ({_hist_source(FRESH)}) AS h GROUP BY {cols}"


def _fresh_dims(hist: bool, dims: tuple[tuple[str, str | None], ...] = DIMS, having: bool = False) -> str:
    if hist:
        return _dim_hist_select(f"({_hist_source(FRESH)}) AS hs", having, dims)
    return _dim_day_select(FRESH, having, dims)


def _fill_from_fresh(conn: sa.Connection) -> None:
    """Replace every rollup table by the aggregates of :data:`FRESH` (the caller holds
    :func:`_lock` with tickets): ``stats_day``/``stats_day_hist`` by key, the per-dimension tables
    one dimension at a time (a bounded hash table each), in day order, and the weeks, months and
    years from them."""
    for table in ROLLUP_TABLES:
        conn.exec_driver_sql(f"DELETE FROM {table}")
    # in primary-key order: a period's rows lie together on disk (a month of the fine level read
    # 6x faster at 10 M than in the aggregation's hash order) and the index is built in order
    conn.exec_driver_sql(f"INSERT INTO stats_day ({', '.join([*KEY, *ROLLUP_COUNTS])}) "
                         f"SELECT * FROM ({_fresh_day()}) AS f ORDER BY {', '.join(KEY)}")
    conn.exec_driver_sql(f"INSERT INTO stats_day_hist ({', '.join([*KEY, 'duration', 'bucket', 'n'])}) "
                         f"SELECT * FROM ({_fresh_hist()}) AS f ORDER BY {', '.join([*KEY, 'duration', 'bucket'])}")
    day_cols = ", ".join([*DIM_KEY, *ROLLUP_COUNTS])
    hist_cols = ", ".join([*DIM_KEY, "duration", "bucket", "n"])
    for dim in DIMS:
        # from stats_day/stats_day_hist (already grouped by key): fewer rows than the tickets
        conn.exec_driver_sql(f"INSERT INTO stats_dim_day ({day_cols}) SELECT * FROM "
                             f"({_dim_day_select('stats_day', dims=(dim,))}) AS s ORDER BY dn")
        conn.exec_driver_sql(f"INSERT INTO stats_dim_hist ({hist_cols}) SELECT * FROM "
                             f"({_dim_hist_select('stats_day_hist', dims=(dim,))}) AS s ORDER BY dn")
    for level, (counts, hists, _) in DIM_LEVELS.items():  # in key order: a period's rows lie together
        conn.exec_driver_sql(f"INSERT INTO {counts} ({day_cols}) SELECT * FROM "
                             f"({_level_select(level, f'SELECT {day_cols} FROM stats_dim_day')}) AS s ORDER BY dim, dn")
        conn.exec_driver_sql(f"INSERT INTO {hists} ({hist_cols}) SELECT * FROM "
                             f"({_level_select(level, f'SELECT {hist_cols} FROM stats_dim_hist', True)}) AS s "
                             "ORDER BY dim, dn")
    install_pct(conn, force=True)
    if conn.dialect.name == "postgresql":  # the planner's row counts of the refilled tables
        for table in (*ROLLUP_TABLES, "working_day"):
            conn.exec_driver_sql(f"ANALYZE {table}")


def _replace(conn: sa.Connection, calendar: WorkingCalendar) -> None:
    """Replace the rollup by a recount of the tickets in one pass (caller holds :func:`_lock`)."""
    _fresh_pass(conn, calendar)
    _fill_from_fresh(conn)
    _drop_fresh(conn)


def _live_day() -> str:
    cols = ", ".join([*KEY, *ROLLUP_COUNTS])
    sums = ", ".join(f"sum({n}) AS {n}" for n in ROLLUP_COUNTS)
    having = " OR ".join(f"sum({n}) <> 0" for n in ROLLUP_COUNTS)
    return (f"SELECT {', '.join(KEY)}, {sums} FROM (SELECT {cols} FROM stats_day UNION ALL "
            f"SELECT {cols} FROM stats_delta) AS l GROUP BY {', '.join(KEY)} HAVING {having}")


def _live_hist() -> str:
    cols = ", ".join([*KEY, "duration", "bucket"])
    return (f"SELECT {cols}, sum(n) AS n FROM (SELECT {cols}, n FROM stats_day_hist UNION ALL "
            f"{_hist_source('stats_delta')}) AS l GROUP BY {cols} HAVING sum(n) <> 0")


def _live_dims(table: str, delta_select: str, hist: bool) -> str:
    """A per-dimension table plus the not yet folded ``stats_delta`` regrouped alike, summed."""
    cols = [*DIM_KEY, *(["duration", "bucket"] if hist else [])]
    names = ["n"] if hist else list(ROLLUP_COUNTS)
    sums = ", ".join(f"sum({n}) AS {n}" for n in names)
    having = " OR ".join(f"sum({n}) <> 0" for n in names)
    return (f"SELECT {', '.join(cols)}, {sums} FROM (SELECT {', '.join([*cols, *names])} FROM {table} UNION ALL "
            f"SELECT {', '.join([*cols, *names])} FROM ({delta_select}) AS dl) AS l "
            f"GROUP BY {', '.join(cols)} HAVING {having}")


@dataclass
class Difference:
    """One rollup cell that differs from the recount: ``kind`` "count" (``measure`` a count name)
    or "hist" (``measure`` = ``<duration>[<bucket>]``), ``key`` the rollup key as a dict; or
    "dim_count"/"dim_hist" (a per-dimension day row, ``key`` = ``{dim, key, dn}``) or
    "week_count"/"week_hist", "month_count"/"month_hist", "year_count"/"year_hist" (a
    per-dimension row of :data:`DIM_LEVELS`, ``dn`` its first day). ``live``: the
    table (plus the unfolded ``stats_delta``), ``recount``: the one pass over the tickets."""

    kind: str
    key: dict[str, Any]
    measure: str
    live: int
    recount: int

    def describe(self) -> str:
        day = EPOCH + timedelta(days=self.key["dn"])
        key = " ".join(f"{k}={v!r}" for k, v in self.key.items() if k != "dn")
        return f"{day} {key} {self.measure}: 汇总={self.live} 重算={self.recount}"


@dataclass
class RebuildReport:
    """What :func:`rebuild` found (``differences``: empty when the rollup equals the recount;
    at most :data:`MAX_DIFFERENCES` per kind) and did (``repaired``: the live rows were replaced;
    ``installed``: the definitions were outdated and the rollup was installed afresh;
    ``outdated``: outdated and left as is, check only)."""

    differences: list[Difference] = field(default_factory=list)
    repaired: bool = False
    installed: bool = False
    outdated: bool = False


#: The differing rows read per kind (a rollup far from the recount is reported, not listed whole).
MAX_DIFFERENCES = 100_000


def _diff(conn: sa.Connection, live: str, fresh: str, names: list[str], kind: str) -> list[Difference]:
    base = list(DIM_KEY) if kind.startswith(("dim_", *(f"{level}_" for level in DIM_LEVELS))) else list(KEY)
    key_cols = base + (["duration", "bucket"] if kind.endswith("hist") else [])
    rows: dict[tuple, dict[str, dict[str, int]]] = {}
    # one statement: each side computed once, compared both ways
    stmt = (f"WITH l AS ({live}), f AS ({fresh}) "
            "SELECT 'live' AS side, x.* FROM (SELECT * FROM l EXCEPT SELECT * FROM f) AS x UNION ALL "
            "SELECT 'recount' AS side, y.* FROM (SELECT * FROM f EXCEPT SELECT * FROM l) AS y "
            f"LIMIT {MAX_DIFFERENCES}")
    for r in conn.exec_driver_sql(stmt).mappings():
        key = tuple(r[k] for k in key_cols)
        rows.setdefault(key, {})[r["side"]] = {n: int(r[n]) for n in names}
    out = []
    for key, sides in sorted(rows.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        live_v = sides.get("live", {n: 0 for n in names})
        fresh_v = sides.get("recount", {n: 0 for n in names})
        as_key = dict(zip(base, key[:len(base)], strict=True))
        for n in names:
            if live_v[n] != fresh_v[n]:
                measure = n if kind.endswith("count") else f"{ROLLUP_DURATIONS[key[-2]]}[{key[-1]}]"
                out.append(Difference(kind, as_key, measure, live_v[n], fresh_v[n]))
    return out


def _fresh_differences(conn: sa.Connection) -> list[Difference]:
    """Every cell of every rollup table (plus the unfolded ``stats_delta``) that differs from the
    aggregates of :data:`FRESH` (filled by :func:`_fresh_pass` in this transaction)."""
    counts = list(ROLLUP_COUNTS)
    nonzero = " OR ".join(f"{n} <> 0" for n in ROLLUP_COUNTS)
    hist_delta = f"({_hist_source('stats_delta')}) AS hs"
    fresh_day = f"SELECT * FROM ({_fresh_day()}) AS fd WHERE {nonzero}"
    fresh_hist = f"SELECT * FROM ({_fresh_hist()}) AS fh WHERE n <> 0"
    fresh_dim_day = _fresh_dims(False, having=True)
    fresh_dim_hist = _fresh_dims(True, having=True)
    return (_diff(conn, _live_day(), fresh_day, counts, "count")
            + _diff(conn, _live_hist(), fresh_hist, ["n"], "hist")
            + _diff(conn, _live_dims("stats_dim_day", _dim_day_select("stats_delta"), False), fresh_dim_day,
                    counts, "dim_count")
            + _diff(conn, _live_dims("stats_dim_hist", _dim_hist_select(hist_delta), True), fresh_dim_hist,
                    ["n"], "dim_hist")
            + [d for level, (counts_t, hists_t, _) in DIM_LEVELS.items() for d in (
                _diff(conn, _live_dims(counts_t, _level_select(level, _dim_day_select("stats_delta")), False),
                      _level_select(level, _fresh_dims(False), having=True), counts, f"{level}_count")
                + _diff(conn, _live_dims(hists_t, _level_select(level, _dim_hist_select(hist_delta), True), True),
                        _level_select(level, _fresh_dims(True), True, having=True), ["n"], f"{level}_hist"))])


def differences(session_or_conn, calendar: WorkingCalendar | None = None) -> list[Difference]:
    """Every cell where a live rollup table (``stats_day``, ``stats_day_hist``, the per-dimension
    day and month tables; each plus the unfolded ``stats_delta`` regrouped alike) differs from a
    recount of the tickets: one pass over ``ticket`` (:func:`_fresh_pass`), every table compared
    with its aggregate (``EXCEPT`` both ways). Holds ``ticket`` writers and folds off meanwhile, so
    both sides see the same tickets."""
    conn = _conn(session_or_conn)
    calendar = calendar or (get_calendar(session_or_conn) if isinstance(session_or_conn, Session)
                            else _calendar_of(conn))
    _lock(conn, tickets=True)
    _fresh_pass(conn, calendar)
    try:
        return _fresh_differences(conn) + due_differences(conn, str(calendar.tz)) + pct_differences(conn)
    finally:
        _drop_fresh(conn)


def rebuild(session_or_conn, check_only: bool = False) -> RebuildReport:
    """Recompute the rollup from the tickets in one pass (:func:`_fresh_pass`), compare every table
    with it and report every difference (:func:`differences`); unless ``check_only``, replace the
    live rows from the same pass (in the caller's transaction; ``ticket`` writers wait until it
    commits, with ``check_only`` too: both sides must see the same tickets). An outdated
    installation (code changed since ``install``) is installed afresh (its rows come from the one
    pass; no comparison with rows kept under other definitions), or reported when ``check_only``.
    The deadline rollup (PostgreSQL) is compared and repaired alike (kinds "due_day"/"due_month")."""
    conn = _conn(session_or_conn)
    calendar = get_calendar(session_or_conn) if isinstance(session_or_conn, Session) else _calendar_of(conn)
    meta = _meta(conn)
    if meta.get("definitions") != definitions_hash(conn.dialect.name, calendar) or \
            meta.get("calendar") != calendar_hash(calendar) or not triggers_present(conn):
        if check_only:
            return RebuildReport(outdated=True)
        install(conn, calendar, force=True)
        return RebuildReport(installed=True, repaired=True)
    tz = str(calendar.tz)
    due_current = conn.dialect.name != "postgresql" or due_is_current(conn, tz, meta)
    if not due_current and check_only:
        return RebuildReport(outdated=True)
    # the deadline rollup alone outdated: installed afresh (recounted), the rest compared
    report_installed = not due_current and install_due(conn, tz)
    _lock(conn, tickets=True)
    _fresh_pass(conn, calendar)
    try:
        found = _fresh_differences(conn)
        due_found = due_differences(conn, tz)
        pct_found = pct_differences(conn)
        report = RebuildReport(differences=found + due_found + pct_found, installed=report_installed)
        if found and not check_only:
            _fill_from_fresh(conn)  # the day percentiles too
            report.repaired = True
        elif pct_found and not check_only:
            refresh_day_percentiles(conn)
            report.repaired = True
        if due_found and not check_only:
            _due_fill(conn, tz, _stored_horizon(_meta(conn)))
            report.repaired = True
    finally:
        _drop_fresh(conn)
    return report

# --------------------------------------------------------------------------- reading

def table_columns(table: sa.Table) -> SimpleNamespace:
    """The population columns of a rollup table as attributes named like ``ticket``'s columns
    (for :func:`service.stats.service.filter_condition`)."""
    return SimpleNamespace(lead_department_id=table.c.department_id, grid_id=table.c.grid_id,
                           category_id=table.c.category_id, channel=table.c.channel,
                           officer_id=table.c.officer_id, service_type=table.c.service_type)


def _group(group_by: str, s) -> tuple[sa.ColumnElement, Any]:
    """The grouping expression over the union sub-select ``s`` and the FROM clause."""
    from service.regions.models import Grid

    if group_by == "region":
        grid = Grid.__table__
        return grid.c.region_id, s.outerjoin(grid, grid.c.id == s.c.grid_id)
    if group_by in ("week", "month", "quarter"):
        return working_day.c[group_by], s.outerjoin(working_day, working_day.c.dn == s.c.dn)
    column = {"department": "department_id", "grid": "grid_id", "category": "category_id", "officer": "officer_id",
              "day": "dn"}.get(group_by, group_by)
    return s.c[column], s


def group_key(group_by: str, value: Any) -> Any:
    """A rollup group value as the summary's key (sentinels → ``None``; days → ISO strings)."""
    if group_by in ("day", "week") and value is not None:
        return day_iso(int(value))
    if value is None or value == 0 or value == "":
        return None
    if group_by == "month":
        return f"{int(value) // 100:04d}-{int(value) % 100:02d}"
    if group_by == "quarter":
        return f"{int(value) // 10:04d}-Q{int(value) % 10}"
    return value


@lru_cache(maxsize=65536)
def day_iso(dn: int) -> str:
    """The ISO date (``YYYY-MM-DD``) of a local day number (days since :data:`EPOCH`); remembered:
    a five-year day grouping names the same 1,826 days in each of its reads."""
    return (EPOCH + timedelta(days=dn)).isoformat()


def read(session: Session, group_by: str, dn_from: int, dn_to: int, where) -> tuple[
        dict[Any, dict[str, int]], dict[Any, dict[str, dict[int, int]]]]:
    """Counts and histograms per group of ``group_by`` over the rollup rows with day numbers in
    ``[dn_from, dn_to]`` matching ``where(columns)`` (a function of :func:`table_columns`).

    Returns ``(counts, hists)``: ``{key: {count: n}}`` (groups with tickets only) and
    ``{key: {duration: {bucket: n}}}``. Reads ``stats_day`` + ``stats_delta`` (exact before a
    fold): rows grow with days × key combinations, not with tickets."""
    def cond(table):
        return sa.and_(table.c.dn >= dn_from, table.c.dn <= dn_to, where(table_columns(table)))

    cols = [*KEY, *ROLLUP_COUNTS]
    s = sa.union_all(sa.select(*(stats_day.c[c] for c in cols)).where(cond(stats_day)),
                     sa.select(*(stats_delta.c[c] for c in cols)).where(cond(stats_delta))).subquery("s")
    grp, from_ = _group(group_by, s)
    stmt = (sa.select(grp.label("grp"), *(sa.func.sum(s.c[n]).label(n) for n in ROLLUP_COUNTS))
            .select_from(from_).group_by(grp).having(sa.func.sum(s.c.received) > 0))
    counts = {}
    for r in session.execute(stmt).mappings():
        counts[group_key(group_by, r["grp"])] = {n: int(r[n]) for n in ROLLUP_COUNTS}
    branches = [sa.select(*(stats_day_hist.c[c] for c in (*KEY, "duration", "bucket", "n")))
                .where(cond(stats_day_hist))]
    for i, d in enumerate(ROLLUP_DURATIONS):
        branches.append(sa.select(*(stats_delta.c[c] for c in KEY), sa.literal(i).label("duration"),
                                  stats_delta.c[f"b_{d}"].label("bucket"), stats_delta.c.received.label("n"))
                        .where(cond(stats_delta), stats_delta.c[f"b_{d}"].is_not(None)))
    h = sa.union_all(*branches).subquery("s")
    grp, from_ = _group(group_by, h)
    stmt = (sa.select(grp.label("grp"), h.c.duration, h.c.bucket, sa.func.sum(h.c.n).label("n"))
            .select_from(from_).group_by(grp, h.c.duration, h.c.bucket))
    hists: dict[Any, dict[str, dict[int, int]]] = {}
    for r in session.execute(stmt).all():
        if r.n:
            per = hists.setdefault(group_key(group_by, r.grp), {d: {} for d in ROLLUP_DURATIONS})
            per[ROLLUP_DURATIONS[r.duration]][int(r.bucket)] = int(r.n)
    return counts, hists


#: The dimension of :data:`DIMS` each grouping reads (region: the grid's, regrouped by its region).
GROUPING_DIM = {"department": "department", "region": "grid", "grid": "grid", "category": "category",
                "channel": "channel", "officer": "officer", "service_type": "service_type",
                "day": "all", "week": "all", "month": "all", "quarter": "all", "total": "all"}


def _dim_value(dim: str, key: str) -> Any:
    return key if dim in ("channel", "service_type", "all") else int(key)


def whole_months(dn_from: int, dn_to: int) -> tuple[int, int, int] | None:
    """The whole calendar months inside the days ``[dn_from, dn_to]``: ``(first day of the first,
    first day of the last, last day of the last)`` as day numbers, or ``None`` when there is none."""
    first, last = EPOCH + timedelta(days=dn_from), EPOCH + timedelta(days=dn_to)
    if first.day == 1:
        start = first
    elif first.month == 12:
        if first.year == date.max.year:
            return None
        start = date(first.year + 1, 1, 1)
    else:
        start = date(first.year, first.month + 1, 1)
    month_end = date(last.year, 12, 31) if last.month == 12 else \
        date(last.year, last.month + 1, 1) - timedelta(days=1)
    end = last if last == month_end else last.replace(day=1) - timedelta(days=1)  # the last whole month's end
    if end < start:
        return None
    return (start - EPOCH).days, (end.replace(day=1) - EPOCH).days, (end - EPOCH).days


def _hist_rows(session: Session, h, grp, from_, as_key, collapse: bool = True) -> dict[Any, dict[str, dict[int, int]]]:
    """``{as_key(grp): {duration: {bucket: n}}}`` summed over the histogram rows ``(…, duration,
    bucket, n)`` of the sub-select ``h`` grouped by ``grp`` (over ``from_``). Summed per bucket in
    SQL, except on PostgreSQL without ``collapse`` (groups of few rows each, as days and weeks):
    one row per (group, duration) with the rows' buckets and counts as two arrays, summed here (a
    five-year day grouping: 5,500 rows through the driver instead of 100,000, and no hash
    aggregation of the 100,000 in the database)."""
    out: dict[Any, dict[str, dict[int, int]]] = {}
    keys: dict[Any, Any] = {}

    def per_key(value: Any) -> dict[str, dict[int, int]]:
        key = keys[value] if value in keys else keys.setdefault(value, as_key(value))
        per = out.get(key)
        if per is None:
            per = out[key] = {d: {} for d in ROLLUP_DURATIONS}
        return per

    if not collapse and session.get_bind().dialect.name == "postgresql":
        stmt = (sa.select(grp.label("grp"), h.c.duration, sa.func.array_agg(h.c.bucket), sa.func.array_agg(h.c.n))
                .select_from(from_).group_by(grp, h.c.duration))
        for value, duration, buckets, counts in session.execute(stmt).all():
            hist = per_key(value)[ROLLUP_DURATIONS[duration]]
            for b, n in zip(buckets, counts, strict=True):
                hist[b] = hist.get(b, 0) + n
        for per in out.values():
            for d, hist in per.items():
                if 0 in hist.values():
                    per[d] = {b: n for b, n in hist.items() if n}
        return out
    stmt = (sa.select(grp.label("grp"), h.c.duration, h.c.bucket, sa.func.sum(h.c.n).label("n"))
            .select_from(from_).group_by(grp, h.c.duration, h.c.bucket))
    for value, duration, bucket, n in session.execute(stmt).all():
        if n:
            per_key(value)[ROLLUP_DURATIONS[duration]][int(bucket)] = int(n)
    return out


def _regroup(session: Session, group_by: str, keys: list[Any]) -> dict[Any, Any]:
    """``{dimension value: group key}`` of a dimension grouping read from the per-dimension level:
    the id dimensions' "none" (0) and the text ones' ('') → ``None``; region: the grids' regions."""
    from service.regions.models import Grid

    if group_by == "region":
        ids = [k for k in keys if k]
        region_of = dict(session.execute(sa.select(Grid.id, Grid.region_id).where(Grid.id.in_(ids))).all()) if ids else {}
        return {k: region_of.get(k) for k in keys}
    return {k: group_key(group_by, k) for k in keys}


#: The levels of :data:`DIM_LEVELS` a grouping reads its whole periods from, coarsest first.
GROUPING_LEVELS = {"day": (), "week": ("week",), "month": ("month",), "quarter": ("month",)}


@dataclass
class DimRead:
    """What :func:`read_dims` read: ``counts`` ``{key: {count: n}}`` (groups with tickets only),
    ``hists`` ``{key: {duration: {bucket: n}}}``; for the day grouping, ``percentiles`` ``{key:
    [values]}`` of the days read from ``stats_day_pct`` (no histogram in ``hists`` for them): the
    :data:`PERCENTILES` of each duration of :data:`ROLLUP_DURATIONS` in turn (working hours,
    unrounded; ``None`` where the day has no value) and ``total_hist`` ``{duration: {bucket: n}}`` of the whole period (``None``: sum
    ``hists``)."""

    counts: dict[Any, dict[str, int]]
    hists: dict[Any, dict[str, dict[int, int]]]
    percentiles: dict[Any, list[float | None]] = field(default_factory=dict)
    total_hist: dict[str, dict[int, int]] | None = None


def _whole_units(level: str, dn_from: int, dn_to: int) -> tuple[int, int, int] | None:
    """The whole ISO weeks, calendar months or calendar years inside the days ``[dn_from, dn_to]``:
    ``(first day of the first, first day of the last, last day of the last)`` as day numbers, or
    ``None`` when there is none."""
    if level == "month":
        return whole_months(dn_from, dn_to)
    first, last = EPOCH + timedelta(days=dn_from), EPOCH + timedelta(days=dn_to)
    if level == "week":
        start = first + timedelta(days=(7 - first.weekday()) % 7)  # the first Monday on or after
        end = last - timedelta(days=(last.weekday() + 1) % 7)       # the last Sunday on or before
        last_start = end - timedelta(days=6)
    else:
        if first.year >= date.max.year or last.year <= date.min.year:
            return None
        start = first if (first.month, first.day) == (1, 1) else date(first.year + 1, 1, 1)
        end = last if (last.month, last.day) == (12, 31) else date(last.year - 1, 12, 31)
        last_start = date(end.year, 1, 1)
    if end < start:
        return None
    return (start - EPOCH).days, (last_start - EPOCH).days, (end - EPOCH).days


def level_spans(levels: tuple[str, ...], dn_from: int, dn_to: int) -> list[tuple[str, int, int]]:
    """The days ``[dn_from, dn_to]`` cut into ``(level, first, last)`` pieces, coarsest level first:
    the whole units of ``levels[0]`` (rows of its table with ``dn`` in ``[first, last]``, the
    units' first days), the rest of each side cut by the next level, days (``"day"``) last. E.g.
    2021-06-01..2026-05-31 with ("year", "month"): June-December 2021 as months, 2022-2025 as
    years, January-May 2026 as months."""
    if dn_from > dn_to:
        return []
    if not levels:
        return [("day", dn_from, dn_to)]
    units = _whole_units(levels[0], dn_from, dn_to)
    if units is None:
        return level_spans(levels[1:], dn_from, dn_to)
    start, last_start, end = units
    return (level_spans(levels[1:], dn_from, start - 1) + [(levels[0], start, last_start)]
            + level_spans(levels[1:], end + 1, dn_to))


def read_dims(session: Session, group_by: str, dn_from: int, dn_to: int,
              only: tuple[str, list[str]] | None = None) -> DimRead:
    """As :func:`read` for the *whole* population (no filter, unlimited visibility), from the
    per-dimension level: the grouping's dimension (:data:`GROUPING_DIM`; time groupings: ``all``,
    grouped by ``working_day``'s week/month/quarter) of ``stats_dim_day``/``stats_dim_hist`` and of
    the week, month and year tables (:data:`DIM_LEVELS`) for the whole units of the period
    (:func:`level_spans`: dimensions read whole years, then whole months, then days; a week grouping
    whole weeks; a month or quarter grouping whole months; a day grouping days), plus the not yet
    folded ``stats_delta`` regrouped the same way (exact before a fold). Rows read: units × the
    dimension's values, whatever the other dimensions: five years of a dimension read about 5 year
    rows and 12 month rows per value, not 1,826 days. The day grouping reads the days'
    percentiles from ``stats_day_pct`` (kept by the fold) and the histograms only of the days with
    unfolded deltas, and the period's total histogram from the year and month levels.

    ``only`` ``(dim, keys)`` (a time grouping): the population is these values of one dimension
    (one filter, or a region's supervisor): the rows of that dimension with those keys, grouped by
    time, instead of ``all`` (the day grouping then reads histograms: the stored day percentiles
    are those of everything)."""
    if only is not None:
        if group_by not in ("day", "week", "month", "quarter"):
            raise ValueError(group_by)
        return _read_dims(session, group_by, dn_from, dn_to, only=only)
    if group_by == "day":
        cached = _read_days(session, dn_from, dn_to)
        if cached is not None:
            return cached
    return _read_dims(session, group_by, dn_from, dn_to)


def _read_days(session: Session, dn_from: int, dn_to: int) -> DimRead | None:
    """The day grouping with the days' percentiles from ``stats_day_pct`` (``None`` when it is
    not filled for the code's definitions)."""
    conn = _conn(session)
    if _meta(conn).get("pct") != pct_definitions_hash():
        return None
    pending = set(conn.execute(sa.select(stats_delta.c.dn).distinct()
                               .where(stats_delta.c.dn >= dn_from, stats_delta.c.dn <= dn_to)).scalars())
    read = _read_dims(session, "day", dn_from, dn_to, hist_days=pending, day_percentiles=True)
    read.total_hist = _read_dims(session, "total", dn_from, dn_to, counts=False).hists.get(
        "", {d: {} for d in ROLLUP_DURATIONS})
    return read


def _day_percentiles(dn_from: int, dn_to: int) -> sa.Subquery:
    """``stats_day_pct`` of the days ``[dn_from, dn_to]`` as one row per day: ``dn`` and every
    duration's percentiles side by side (:attr:`DimRead.percentiles`' order)."""
    pivot = [sa.func.max(stats_day_pct.c[f"p{p}"]).filter(stats_day_pct.c.duration == i)
             for i in range(len(ROLLUP_DURATIONS)) for p, _ in PERCENTILES]
    return (sa.select(stats_day_pct.c.dn, *pivot)
            .where(stats_day_pct.c.dn >= dn_from, stats_day_pct.c.dn <= dn_to).group_by(stats_day_pct.c.dn)
            .subquery("p"))


def _read_dims(session: Session, group_by: str, dn_from: int, dn_to: int,
               hist_days: set[int] | None = None, counts: bool = True, day_percentiles: bool = False,
               only: tuple[str, list[str]] | None = None) -> DimRead:
    """:func:`read_dims` from the tables (``group_by`` "total": one group ``''``, dim ``all``);
    ``hist_days``: read the histograms of these days only; ``counts`` False: the histograms only;
    ``day_percentiles`` (the day grouping): with each day's counts, in the same statement, its
    stored percentiles (``stats_day_pct``) into :attr:`DimRead.percentiles`, except for the days
    of ``hist_days`` (their deltas are not folded yet: the histograms are read instead); ``only``
    ``(dim, keys)``: a time grouping of those values of that dimension (:func:`read_dims`)."""
    dim = GROUPING_DIM[group_by] if only is None else only[0]
    column = dict(DIMS)[dim]
    timed = group_by in ("week", "month", "quarter")
    spans = level_spans(GROUPING_LEVELS.get(group_by, ("year", "month")), dn_from, dn_to)
    tables = {"day": (stats_dim_day, stats_dim_hist),
              **{level: (metadata.tables[counts], metadata.tables[hists])
                 for level, (counts, hists, _) in DIM_LEVELS.items()}}

    def delta_key():
        if column is None:
            return sa.literal("").label("key")
        return sa.cast(stats_delta.c[column], sa.String(16)).label("key")

    def in_days(table):
        return sa.and_(table.c.dn >= dn_from, table.c.dn <= dn_to)

    def narrowed(key) -> sa.ColumnElement[bool]:  # ``only``'s keys (a column of the level tables', or delta_key())
        return sa.true() if only is None else key.in_(only[1])

    def grouped(s):
        if timed:  # the period's calendar rows only: a hash of 1,826 days for five years, not of 40,000
            return working_day.c[group_by], s.join(working_day, sa.and_(
                working_day.c.dn == s.c.dn, working_day.c.dn >= dn_from, working_day.c.dn <= dn_to))
        return (s.c.dn if group_by == "day" else s.c.key), s

    def as_key(value: Any) -> Any:
        if group_by in ("day", "week", "month", "quarter"):
            return group_key(group_by, value)
        return _dim_value(dim, value)

    count_parts = [sa.select(delta_key(), stats_delta.c.dn, *(stats_delta.c[n] for n in ROLLUP_COUNTS))
                   .where(in_days(stats_delta), narrowed(delta_key().element))]
    branches = []
    for level, first, last in spans:
        ct, ht = tables[level]
        count_parts.append(sa.select(ct.c.key, ct.c.dn, *(ct.c[n] for n in ROLLUP_COUNTS))
                           .where(ct.c.dim == dim, ct.c.dn >= first, ct.c.dn <= last, narrowed(ct.c.key)))
        if hist_days is None:
            branches.append(sa.select(ht.c.key, ht.c.dn, ht.c.duration, ht.c.bucket, ht.c.n)
                            .where(ht.c.dim == dim, ht.c.dn >= first, ht.c.dn <= last, narrowed(ht.c.key)))
    for day in sorted(hist_days or ()):
        branches.append(sa.select(stats_dim_hist.c.key, stats_dim_hist.c.dn, stats_dim_hist.c.duration,
                                  stats_dim_hist.c.bucket, stats_dim_hist.c.n)
                        .where(stats_dim_hist.c.dim == dim, stats_dim_hist.c.dn == day,
                               narrowed(stats_dim_hist.c.key)))
    raw_counts: dict[Any, dict[str, int]] = {}
    percentiles: dict[Any, list[float | None]] = {}
    if counts:
        s = sa.union_all(*count_parts).subquery("s")
        grp, from_ = grouped(s)
        stmt = (sa.select(grp.label("grp"), *(sa.func.sum(s.c[n]).label(n) for n in ROLLUP_COUNTS))
                .select_from(from_).group_by(grp))
        if day_percentiles:
            c, p = stmt.subquery("c"), _day_percentiles(dn_from, dn_to)
            stmt = sa.select(c, *list(p.c)[1:]).select_from(c.outerjoin(p, p.c.dn == c.c.grp))
        n_counts = 1 + len(ROLLUP_COUNTS)
        for row in session.execute(stmt).all():
            key = as_key(row[0])
            raw_counts[key] = dict(zip(ROLLUP_COUNTS, row[1:n_counts], strict=True))  # sum(): ints on both dialects
            if day_percentiles and row[0] not in (hist_days or ()):
                percentiles[key] = row[n_counts:]
    for i, d in enumerate(ROLLUP_DURATIONS):
        branches.append(sa.select(delta_key(), stats_delta.c.dn, sa.literal(i).label("duration"),
                                  stats_delta.c[f"b_{d}"].label("bucket"), stats_delta.c.received.label("n"))
                        .where(in_days(stats_delta), stats_delta.c[f"b_{d}"].is_not(None),
                               narrowed(delta_key().element)))
    if hist_days is not None and not hist_days:
        raw_hists = {}  # no day with unfolded deltas: nothing to read (the stored percentiles serve)
    else:
        h = sa.union_all(*branches).subquery("h")
        grp, from_ = grouped(h)
        raw_hists = _hist_rows(session, h, grp, from_, as_key, collapse=group_by not in ("day", "week"))
    if group_by in ("day", "week", "month", "quarter", "total"):
        return DimRead({k: v for k, v in raw_counts.items() if v["received"] > 0}, raw_hists, percentiles)
    mapping = _regroup(session, group_by, list(set(raw_counts) | set(raw_hists)))
    counts: dict[Any, dict[str, int]] = {}
    for k, figures in raw_counts.items():
        into = counts.setdefault(mapping[k], {n: 0 for n in ROLLUP_COUNTS})
        for n, v in figures.items():
            into[n] += v
    counts = {k: v for k, v in counts.items() if v["received"] > 0}
    hists: dict[Any, dict[str, dict[int, int]]] = {}
    for k, per in raw_hists.items():
        into_h = hists.setdefault(mapping[k], {d: {} for d in ROLLUP_DURATIONS})
        for d, hist in per.items():
            for b, n in hist.items():
                into_h[d][b] = into_h[d].get(b, 0) + n
    return DimRead(counts, hists)


# --------------------------------------------------------------------------- deadline rollup
# "Overdue now" (SPEC §6 当前超期: the running deadlines passed by ``now``,
# ``sla.deadlines.overdue_clause``) depends on the instant asked, so the rollup above cannot keep
# it. The deadline rollup keeps what it depends on instead: the running deadlines
# (``running_deadline_clause``) counted per (dimension value, local submission day, local day of
# the deadline), by triggers of their own (own definitions hash: installing it never rebuilds the
# rollup above). "Overdue now" over a period = the rows whose deadline day is before today + the
# tickets due today by ``now`` (counted live: an index range over today's deadlines). The fold
# compacts the deadline days before a horizon (the clock's yesterday) into one ``DUE_PAST`` row per
# (dimension value, day): the sum over "before today" is unchanged for any today >= the horizon,
# and a query whose today lies before the stored horizon (an "as of" in the past) counts live.
# PostgreSQL only: on SQLite (the embedded default, small offices) "overdue now" is counted live.

#: The ``ticket`` columns a row's deadline contribution reads (an update changing none: no delta).
DUE_INPUTS = ("submitted_at", "due_at", "due_step", "lead_department_id", "grid_id", "category_id", "channel",
              "officer_id", "service_type")
DUE_TRIGGERS = ("stats_due_ins", "stats_due_upd", "stats_due_del", "stats_due_trunc")
DUE_TABLES = ("stats_due_delta", "stats_due_day", "stats_due_month")
DUE_VERSION = "1"
_DUE_COLUMNS = (*KEY, "due_dn")


@lru_cache(maxsize=8)
def due_contribution_sql(tz: str) -> str:
    """``SELECT <key>, due_dn FROM ({src} AS r) WHERE <running deadline>`` (PostgreSQL): one row
    per ticket row of ``{src}`` with a running deadline (:func:`sla.deadlines.running_deadline_clause`):
    the rollup key (local submission day ``dn`` and the dimensions, sentinels as above) and
    ``due_dn``, the local day number of ``due_at`` in the office zone ``tz``."""
    from zoneinfo import ZoneInfo

    from service.sla.deadlines import running_deadline_clause

    local = LocalTime("postgresql", ZoneInfo(tz))
    inner = sa.select(
        *key_expressions(local),
        local.day_number(T.due_at).label("due_dn"),
    ).select_from(Ticket.__table__).where(running_deadline_clause())
    text = _compile(ClauseAdapter(_R).traverse(inner), "postgresql")
    if text.count(_SRC_MARK) != 1:  # pragma: no cover - a change of the statement's shape
        raise RuntimeError("deadline contribution SQL: cannot find the source table")
    return text.replace(_SRC_MARK, "{src} AS r")


def _due_delta_select(parts: list[tuple[int, str]], tz: str) -> str:
    union = " UNION ALL ".join(f"SELECT {sign} AS sg, c.* FROM ({due_contribution_sql(tz).replace('{src}', src)}) AS c"
                               for sign, src in parts)
    cols = ", ".join(_DUE_COLUMNS)
    return f"SELECT {cols}, sum(sg) AS n FROM ({union}) AS d GROUP BY {cols} HAVING sum(sg) <> 0"


def due_trigger_ddl(tz: str) -> list[str]:
    """The statements that (re)create the deadline rollup's statement-level triggers on ``ticket``
    (PostgreSQL; transition tables): each statement appends its signed change of the running
    deadlines to ``stats_due_delta``; ``TRUNCATE`` empties the deadline rollup."""
    insert = f"INSERT INTO stats_due_delta ({', '.join(_DUE_COLUMNS)}, n) "
    bodies = {
        "stats_due_ins": ("INSERT", "REFERENCING NEW TABLE AS new_rows",
                          insert + _due_delta_select([(1, "new_rows")], tz) + ";"),
        "stats_due_upd": ("UPDATE", "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
                          insert + _due_delta_select([(-1, _changed("old_rows", "new_rows", DUE_INPUTS)),
                                                      (1, _changed("new_rows", "old_rows", DUE_INPUTS))], tz) + ";"),
        "stats_due_del": ("DELETE", "REFERENCING OLD TABLE AS old_rows",
                          insert + _due_delta_select([(-1, "old_rows")], tz) + ";"),
        "stats_due_trunc": ("TRUNCATE", "", " ".join(f"DELETE FROM {t};" for t in DUE_TABLES)),
    }
    out: list[str] = []
    for name, (event, referencing, body) in bodies.items():
        out.append(f"DROP TRIGGER IF EXISTS {name} ON ticket")
        out.append(f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $qifu$\n"
                   f"BEGIN\n{body}\nRETURN NULL;\nEND\n$qifu$")
        out.append(f"CREATE TRIGGER {name} AFTER {event} ON ticket {referencing} FOR EACH STATEMENT "
                   f"EXECUTE FUNCTION {name}()")
    return out


@lru_cache(maxsize=8)
def due_definitions_hash(tz: str) -> str:
    """Hash of everything the stored deadline rollup depends on: its trigger SQL (the running
    deadline rule, the zone), the dimensions, the compaction sentinel."""
    return _hash(DUE_VERSION, DIMS, DUE_PAST, due_trigger_ddl(tz))


def due_triggers_present(conn: sa.Connection) -> bool:
    """Whether every deadline rollup trigger exists and is enabled on ``ticket`` (PostgreSQL)."""
    names = ", ".join(f"'{name}'" for name in DUE_TRIGGERS)
    found = conn.exec_driver_sql("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'ticket'::regclass "
                                 f"AND tgname IN ({names}) AND tgenabled <> 'D'").scalar_one()
    return found == len(DUE_TRIGGERS)


def due_is_current(conn: sa.Connection, tz: str, meta: dict[str, str] | None = None) -> bool:
    """True on PostgreSQL when the stored deadline rollup matches the code and its triggers are in place."""
    if conn.dialect.name != "postgresql":
        return False
    meta = _meta(conn) if meta is None else meta
    return meta.get("due_definitions") == due_definitions_hash(tz) and due_triggers_present(conn)


def local_day_number(instant: datetime, tz) -> int:
    """The local day number (days since :data:`EPOCH` in the office zone ``tz``) of an aware instant."""
    return (instant.astimezone(tz).date() - EPOCH).days


def _clock_horizon(tz) -> int:
    from service import clock

    return local_day_number(clock.now(), tz) - 1  # yesterday: an "as of" a little earlier still reads it


def _stored_horizon(meta: dict[str, str]) -> int:
    return int(meta.get("due_horizon", DUE_PAST))


def due_horizon(conn: sa.Connection) -> int:
    """The stored horizon of the deadline rollup (a local day number; ``DUE_PAST`` before any):
    its deadline days before it are compacted, so a summary "as of" an earlier day counts live."""
    return _stored_horizon(_meta(conn))


def _due_dims(source: str, horizon: int) -> str:
    """The deadline rows of ``source`` (``stats_due_delta``'s columns) summed per ``(dim, key, dn,
    due_dn)`` for every dimension of :data:`DIMS`, the deadline days before ``horizon`` as ``DUE_PAST``."""
    union = " UNION ALL ".join(
        f"SELECT '{dim}' AS dim, {_dim_column_key(column)} AS key, dn, "
        f"CASE WHEN due_dn < {horizon} THEN {DUE_PAST} ELSE due_dn END AS due_dn, n FROM {source}"
        for dim, column in DIMS)
    return f"SELECT dim, key, dn, due_dn, sum(n) AS n FROM ({union}) AS u GROUP BY dim, key, dn, due_dn"


def _due_months(day_select: str) -> str:
    """A ``(dim, key, dn, due_dn, n)`` select summed per month (``dn`` = the month's first day)."""
    return (f"SELECT x.dim AS dim, x.key AS key, w.month_dn AS dn, x.due_dn AS due_dn, sum(x.n) AS n "
            f"FROM ({day_select}) AS x JOIN working_day AS w ON w.dn = x.dn "
            f"GROUP BY x.dim, x.key, w.month_dn, x.due_dn")


def _due_upsert(table: str, select: str) -> str:
    return (f"INSERT INTO {table} (dim, key, dn, due_dn, n) {select} "
            f"ON CONFLICT ({', '.join(DUE_PK)}) DO UPDATE SET n = {table}.n + excluded.n")


def _due_fresh(horizon: int, tz: str) -> str:
    """The deadline rollup's day rows recounted from ``ticket`` (one contribution per running deadline)."""
    contrib = due_contribution_sql(tz).replace("{src}", "ticket")
    return _due_dims(f"(SELECT c.*, 1 AS n FROM ({contrib}) AS c) AS t", horizon)


def _due_fill(conn: sa.Connection, tz: str, horizon: int) -> None:
    """Replace the deadline rollup by a recount of the running deadlines (the caller holds
    :func:`_lock` with tickets); store ``horizon``."""
    for table in DUE_TABLES:
        conn.exec_driver_sql(f"DELETE FROM {table}")
    conn.exec_driver_sql(f"INSERT INTO stats_due_day (dim, key, dn, due_dn, n) "
                         f"SELECT * FROM ({_due_fresh(horizon, tz)}) AS f WHERE n <> 0 ORDER BY dim, dn")
    conn.exec_driver_sql("INSERT INTO stats_due_month (dim, key, dn, due_dn, n) "
                         f"{_due_months('SELECT dim, key, dn, due_dn, n FROM stats_due_day')}")
    for table in DUE_TABLES:
        conn.exec_driver_sql(f"ANALYZE {table}")
    _set_meta(conn, due_horizon=str(horizon))


def install_due(conn: sa.Connection, tz: str, force: bool = False, horizon: int | None = None) -> bool:
    """Install or refresh the deadline rollup (PostgreSQL; nothing on SQLite): when its stored
    definitions hash differs from the code's, a trigger is missing, or ``force``: recount it from
    the tickets with ``horizon`` (default: the clock's yesterday, local), (re)create its triggers,
    store the hash. Runs in the caller's transaction. Returns True when (re)built."""
    if conn.dialect.name != "postgresql":
        return False
    if not force and due_is_current(conn, tz):
        return False
    from zoneinfo import ZoneInfo

    _lock(conn, tickets=True)
    _due_fill(conn, tz, _clock_horizon(ZoneInfo(tz)) if horizon is None else horizon)
    for statement in due_trigger_ddl(tz):
        conn.exec_driver_sql(statement)
    _set_meta(conn, due_definitions=due_definitions_hash(tz))
    log.info("stats deadline rollup installed")
    return True


def fold_due(conn: sa.Connection, tz) -> int:
    """Move ``stats_due_delta`` into ``stats_due_day``/``stats_due_month`` and, when the clock's
    horizon (local yesterday) passed the stored one, compact the deadline days before it into
    ``DUE_PAST`` (PostgreSQL; the caller holds :func:`_lock`). Returns the delta rows moved."""
    if conn.dialect.name != "postgresql":
        return 0
    meta = _meta(conn)
    if not due_is_current(conn, str(tz), meta):
        install_due(conn, str(tz))
        return 0
    stored = _stored_horizon(meta)
    horizon = max(stored, _clock_horizon(tz))
    day = _due_dims("moved", horizon)
    moved = conn.exec_driver_sql(
        "WITH moved AS (DELETE FROM stats_due_delta RETURNING *), "
        f"d AS ({_due_upsert('stats_due_day', day)} RETURNING 1), "
        f"m AS ({_due_upsert('stats_due_month', _due_months(day))} RETURNING 1) "
        "SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM d), (SELECT count(*) FROM m)").one()
    if horizon > stored:
        for table in ("stats_due_day", "stats_due_month"):
            conn.exec_driver_sql(_due_upsert(table, f"SELECT dim, key, dn, {DUE_PAST}, sum(n) FROM {table} "
                                                    f"WHERE due_dn > {DUE_PAST} AND due_dn < {horizon} "
                                                    "GROUP BY dim, key, dn"))
            conn.exec_driver_sql(f"DELETE FROM {table} WHERE (due_dn > {DUE_PAST} AND due_dn < {horizon}) OR n = 0")
        _set_meta(conn, due_horizon=str(horizon))
    return int(moved[0])


def due_differences(conn: sa.Connection, tz: str) -> list[Difference]:
    """Every deadline rollup cell (day and month rows plus the unfolded delta, at the stored
    horizon) that differs from a recount of the running deadlines (PostgreSQL; the caller holds
    :func:`_lock` with tickets). Kinds "due_day"/"due_month", ``key`` = ``{dim, key, dn, due_dn}``."""
    if conn.dialect.name != "postgresql" or not due_is_current(conn, tz):
        return []
    horizon = _stored_horizon(_meta(conn))
    delta = _due_dims("stats_due_delta", horizon)

    def live(table: str, delta_select: str) -> str:
        return (f"SELECT dim, key, dn, due_dn, sum(n) AS n FROM (SELECT dim, key, dn, due_dn, n FROM {table} "
                f"UNION ALL SELECT * FROM ({delta_select}) AS dl) AS l GROUP BY dim, key, dn, due_dn HAVING sum(n) <> 0")

    fresh = _due_fresh(horizon, tz)
    out: list[Difference] = []
    for kind, live_sql, fresh_sql in (
            ("due_day", live("stats_due_day", delta), f"SELECT * FROM ({fresh}) AS f WHERE n <> 0"),
            ("due_month", live("stats_due_month", _due_months(delta)),
             f"SELECT * FROM ({_due_months(fresh)}) AS f WHERE n <> 0")):
        stmt = (f"WITH l AS ({live_sql}), f AS ({fresh_sql}) "
                "SELECT 'live' AS side, x.* FROM (SELECT * FROM l EXCEPT SELECT * FROM f) AS x UNION ALL "
                "SELECT 'recount' AS side, y.* FROM (SELECT * FROM f EXCEPT SELECT * FROM l) AS y "
                f"LIMIT {MAX_DIFFERENCES}")
        rows: dict[tuple, dict[str, int]] = {}
        for r in conn.exec_driver_sql(stmt).mappings():
            rows.setdefault((r["dim"], r["key"], r["dn"], r["due_dn"]), {})[r["side"]] = int(r["n"])
        for (dim, key, dn, due_dn), sides in sorted(rows.items(), key=lambda kv: tuple(map(str, kv[0]))):
            out.append(Difference(kind, {"dim": dim, "key": key, "dn": dn, "due_dn": due_dn}, "running_deadlines",
                                  sides.get("live", 0), sides.get("recount", 0)))
    return out


def read_due(session: Session, group_by: str, dn_from: int, dn_to: int, now: datetime,
             only: tuple[str, list[str]] | None = None) -> dict[Any, int] | None:
    """``{group key: running deadlines of the whole population submitted in the days [dn_from,
    dn_to] whose deadline falls on a local day before now's}`` from the deadline rollup (the
    grouping's dimension as :func:`read_dims`: days outside whole months, whole months from
    ``stats_due_month``, plus the unfolded delta) — "overdue now" except the tickets due today,
    which the caller counts live. ``None`` when the deadline rollup cannot answer: SQLite, not
    installed or outdated, or ``now``'s day lies before the stored horizon (compacted rows could
    hold deadlines after it). ``only`` ``(dim, keys)`` (a time grouping): the population is these
    values of one dimension, as :func:`read_dims`."""
    conn = _conn(session)
    tz = get_calendar(session).tz
    if conn.dialect.name != "postgresql":
        return None
    meta = _meta(conn)
    today = local_day_number(now, tz)
    if today < _stored_horizon(meta) or not due_is_current(conn, str(tz), meta):
        return None
    dim = GROUPING_DIM[group_by] if only is None else only[0]
    column = dict(DIMS)[dim]
    key = "''" if column is None else _dim_column_key(column)
    narrowed = ""
    if only is not None:  # ids and enum names (validated by the filters): quoted as SQL literals all the same
        narrowed = " AND {} IN (" + ", ".join("'" + k.replace("'", "''") + "'" for k in only[1]) + ")" \
            if only[1] else " AND false"
    parts = [f"SELECT {key} AS key, dn, n FROM stats_due_delta WHERE dn >= {dn_from} AND dn <= {dn_to} "
             f"AND due_dn < {today}{narrowed.format(key)}"]
    # whole months from stats_due_month, the rest from stats_due_day (the cut of read_dims)
    levels = () if group_by in ("day", "week") else ("month",)
    for level, first, last in level_spans(levels, dn_from, dn_to):
        parts.append(f"SELECT key, dn, n FROM stats_due_{level} WHERE dim = '{dim}' AND dn >= {first} "
                     f"AND dn <= {last} AND due_dn < {today}{narrowed.format('key')}")
    union = " UNION ALL ".join(parts)
    if group_by in ("week", "month", "quarter"):
        stmt = (f"SELECT w.{group_by} AS grp, sum(s.n) AS n FROM ({union}) AS s JOIN working_day AS w ON w.dn = s.dn "
                f"AND w.dn >= {dn_from} AND w.dn <= {dn_to} GROUP BY w.{group_by}")
    else:
        stmt = f"SELECT {'dn' if group_by == 'day' else 'key'} AS grp, sum(n) AS n FROM ({union}) AS s GROUP BY 1"
    raw = {grp: int(n) for grp, n in conn.exec_driver_sql(stmt).all() if n}
    if today < _stored_horizon(_meta(conn)):  # a fold compacted past ``now``'s day meanwhile
        return None
    if group_by in ("day", "week", "month", "quarter"):
        return {group_key(group_by, k): n for k, n in raw.items()}
    values = {_dim_value(dim, k): n for k, n in raw.items()}
    out: dict[Any, int] = {}
    mapping = _regroup(session, group_by, list(values))
    for k, n in values.items():
        out[mapping[k]] = out.get(mapping[k], 0) + n
    return out

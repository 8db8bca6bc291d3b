"""Tables of the statistics rollup (issue 10; ``docs/statistics.md`` "Rollup").

The rollup holds, per *key* (local submission day number since the calendar's epoch 2004-01-01,
lead department, grid, category, channel, officer, service type — the finest grain of every SPEC §6
grouping and filter), the counts of :data:`service.stats.metrics.COUNTS` except ``overdue`` and a
histogram of each working-hour duration. A missing id is stored as ``0`` and a missing text as
``''`` (sentinels instead of ``NULL``, so the key can be a primary key and ``ON CONFLICT`` works on
both PostgreSQL and SQLite).

- ``stats_day`` / ``stats_day_hist``: the folded rollup (counts; histogram rows
  ``(key, duration, bucket) → n``).
- ``stats_dim_day`` / ``stats_dim_hist``: the same counts and histograms per *one* dimension
  ``(dim, key, dn)`` (:data:`DIMS`; ``key`` the dimension's value as text, ``'0'``/``''`` for
  none; dim ``all`` with key ``''`` totals the day), kept by the same fold: the unfiltered
  summaries read them (``stats_day`` barely aggregates: 0.7-0.8 rows per ticket at 10 M).
- ``stats_dim_month`` / ``stats_dim_month_hist``: the per-dimension level summed per calendar
  month (``dn`` = the day number of the month's first day), kept by the same fold: a period of
  whole months reads months × values, not days × values (1 year: 12 rows per value, not 365).
- ``stats_dim_week`` / ``stats_dim_week_hist`` and ``stats_dim_year`` / ``stats_dim_year_hist``:
  the same per ISO week (``dn`` = its Monday) and per calendar year (``dn`` = its 1 January)
  (:data:`DIM_LEVELS`): a week grouping reads weeks, a long period of a dimension reads whole
  years, then whole months, then days at its edges.
- ``stats_day_pct``: the percentiles of each day's total (dim ``all``) histogram, kept by the fold
  (the day grouping's rows read them, not the buckets).
- ``stats_delta``: append-only changes written by the database triggers on ``ticket``
  (:mod:`service.stats.rollup`), one row per (key, buckets) of a statement's changed rows, with the
  signed counts; moved into the two tables above by :func:`service.stats.rollup.fold`.
- ``stats_due_delta`` / ``stats_due_day`` / ``stats_due_month`` (PostgreSQL; the *deadline rollup*
  of "overdue now", :mod:`service.stats.rollup` "deadline rollup"): the running deadlines
  (``sla.deadlines.running_deadline_clause``) counted per ``(dim, key, dn, due_dn)`` — the
  dimension value, the local submission day (or month), the local day of the deadline — with the
  deadlines before the stored horizon compacted into ``due_dn = DUE_PAST``. "Overdue now" of an
  unfiltered summary = the rows with ``due_dn`` before today + the tickets due today by ``now``.
- ``working_day``: the working calendar per local day (day number, working seconds before local
  midnight, working-day flag) and the week/month/quarter the day belongs to.
- ``stats_meta``: hashes of the installed definitions and calendar.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import SQLModel

#: The rollup key: (column, type, sentinel for "none").
KEY_COLUMNS: tuple[tuple[str, type, object], ...] = (
    ("dn", sa.Integer, None),
    ("department_id", sa.Integer, 0),
    ("grid_id", sa.Integer, 0),
    ("category_id", sa.Integer, 0),
    ("channel", sa.String(16), ""),
    ("officer_id", sa.Integer, 0),
    ("service_type", sa.String(16), ""),
)
#: The per-dimension level: (dim, key column of ``stats_day`` or ``None`` for the day's total ``all``).
DIMS: tuple[tuple[str, str | None], ...] = (
    ("department", "department_id"), ("grid", "grid_id"), ("category", "category_id"), ("channel", "channel"),
    ("officer", "officer_id"), ("service_type", "service_type"), ("all", None),
)
#: The counts kept (``metrics.COUNTS`` except ``overdue``, which depends on the instant asked).
ROLLUP_COUNTS: tuple[str, ...] = ("received", "accepted", "answered", "dispatched", "replied", "closed",
                                  "closed_on_time", "response_due", "responded", "rated", "satisfied",
                                  "closed_rated", "reopened", "returned")
#: The durations histogrammed (``metrics.DURATIONS``), in the order of their index ``duration``.
ROLLUP_DURATIONS: tuple[str, ...] = ("hours_to_claim", "hours_to_reply", "hours_to_close")

metadata = SQLModel.metadata


def _key(nullable: bool = False) -> list[sa.Column]:
    return [sa.Column(name, type_, nullable=nullable) for name, type_, _ in KEY_COLUMNS]


def _counts() -> list[sa.Column]:
    return [sa.Column(name, sa.Integer, nullable=False) for name in ROLLUP_COUNTS]


def _hist() -> list[sa.Column]:
    """A histogram row's columns: ``duration`` (index in ``ROLLUP_DURATIONS``), ``bucket``, count ``n``."""
    return [sa.Column("duration", sa.SmallInteger, nullable=False),
            sa.Column("bucket", sa.SmallInteger, nullable=False),
            sa.Column("n", sa.Integer, nullable=False)]


stats_day = sa.Table("stats_day", metadata, *_key(), *_counts(),
                     sa.PrimaryKeyConstraint(*(c for c, _, _ in KEY_COLUMNS), name="pk_stats_day"))

stats_day_hist = sa.Table("stats_day_hist", metadata, *_key(), *_hist(),
                          sa.PrimaryKeyConstraint(*(c for c, _, _ in KEY_COLUMNS), "duration", "bucket",
                                                  name="pk_stats_day_hist"))

DIM_KEY = ("dim", "key", "dn")
#: The primary key's order: a dimension's rows of a run of days (or months) lie together.
DIM_PK = ("dim", "dn", "key")


def _dim_key() -> list[sa.Column]:
    return [sa.Column("dim", sa.String(16), nullable=False), sa.Column("key", sa.String(16), nullable=False),
            sa.Column("dn", sa.Integer, nullable=False)]


def _dim_tables(counts: str, hists: str) -> tuple[sa.Table, sa.Table]:
    """A per-dimension level's counts table and histogram table, keyed :data:`DIM_PK` (the
    histogram also by duration and bucket)."""
    return (sa.Table(counts, metadata, *_dim_key(), *_counts(), sa.PrimaryKeyConstraint(*DIM_PK, name=f"pk_{counts}")),
            sa.Table(hists, metadata, *_dim_key(), *_hist(),
                     sa.PrimaryKeyConstraint(*DIM_PK, "duration", "bucket", name=f"pk_{hists}")))


stats_dim_day, stats_dim_hist = _dim_tables("stats_dim_day", "stats_dim_hist")
# per month: dn = the first day of the month (working_day.month_dn)
stats_dim_month, stats_dim_month_hist = _dim_tables("stats_dim_month", "stats_dim_month_hist")
# per ISO week: dn = the week's Monday (working_day.week)
stats_dim_week, stats_dim_week_hist = _dim_tables("stats_dim_week", "stats_dim_week_hist")
# per calendar year: dn = the year's 1 January (working_day.year_dn)
stats_dim_year, stats_dim_year_hist = _dim_tables("stats_dim_year", "stats_dim_year_hist")

# the percentiles (working hours, unrounded) of each day's total histogram (dim 'all' of
# stats_dim_hist as folded), kept by the fold for the days it touches: the day grouping reads
# them instead of every bucket row of every day (service.stats.rollup "day percentiles")
stats_day_pct = sa.Table("stats_day_pct", metadata,
                         sa.Column("dn", sa.Integer, nullable=False),
                         sa.Column("duration", sa.SmallInteger, nullable=False),
                         sa.Column("p50", sa.Float, nullable=True),
                         sa.Column("p90", sa.Float, nullable=True),
                         sa.PrimaryKeyConstraint("dn", "duration", name="pk_stats_day_pct"))

#: The per-dimension levels above the day: level → (counts table, histogram table, the
#: ``working_day`` column naming the first day of the day's week/month/year).
DIM_LEVELS: dict[str, tuple[str, str, str]] = {
    "week": ("stats_dim_week", "stats_dim_week_hist", "week"),
    "month": ("stats_dim_month", "stats_dim_month_hist", "month_dn"),
    "year": ("stats_dim_year", "stats_dim_year_hist", "year_dn"),
}

# append-only, no key: writers never contend on a row (folded every few seconds)
stats_delta = sa.Table("stats_delta", metadata, *_key(),
                       *(sa.Column(f"b_{d}", sa.SmallInteger, nullable=True) for d in ROLLUP_DURATIONS),
                       *_counts())

#: ``due_dn`` of the deadline rollup's compacted rows: "a local day before the horizon" (stored in
#: ``stats_meta`` as ``due_horizon``), whichever.
DUE_PAST = -1_000_000
#: The deadline rollup's keys: ``(dim, key, dn, due_dn)``, a dimension's rows of a run of days together.
DUE_PK = ("dim", "dn", "key", "due_dn")
#: PostgreSQL-only objects of the deadline rollup, made by the migration ``due000000001`` and left
#: out of the autogenerate comparison (migrations/env.py): the running deadlines by deadline, for
#: the tickets due today (an index-only range scan; SQLite counts "overdue now" live).
PG_ONLY_OBJECTS = frozenset({"ix_ticket_running_due_at"})


def _due() -> list[sa.Column]:
    return [sa.Column("due_dn", sa.Integer, nullable=False), sa.Column("n", sa.Integer, nullable=False)]


# append-only, no key: the triggers' signed changes (folded with stats_delta)
stats_due_delta = sa.Table("stats_due_delta", metadata, *_key(), *_due())
stats_due_day = sa.Table("stats_due_day", metadata, *_dim_key(), *_due(),
                         sa.PrimaryKeyConstraint(*DUE_PK, name="pk_stats_due_day"))
# dn = the first day of the month (working_day.month_dn)
stats_due_month = sa.Table("stats_due_month", metadata, *_dim_key(), *_due(),
                           sa.PrimaryKeyConstraint(*DUE_PK, name="pk_stats_due_month"))

working_day = sa.Table(
    "working_day", metadata,
    sa.Column("dn", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("cum", sa.BigInteger, nullable=False),   # working seconds from the epoch to local midnight
    sa.Column("wd", sa.SmallInteger, nullable=False),  # 1 = working day
    sa.Column("week", sa.Integer, nullable=False),     # day number of the ISO week's Monday
    sa.Column("month", sa.Integer, nullable=False),    # YYYYMM
    sa.Column("month_dn", sa.Integer, nullable=True),  # day number of the month's first day (filled by install)
    sa.Column("year_dn", sa.Integer, nullable=True),   # day number of the year's 1 January (filled by install)
    sa.Column("quarter", sa.Integer, nullable=False),  # YYYYQ
)

stats_meta = sa.Table("stats_meta", metadata,
                      sa.Column("name", sa.String(32), primary_key=True),
                      sa.Column("value", sa.String(128), nullable=False))

"""The statistics rollup (issue 10, docs/statistics.md "Rollup"): kept by the generated triggers
through every kind of ticket write, it always equals a recount.

- A property test (hypothesis) drives random lifecycles on PostgreSQL and on SQLite — every
  workflow action from every status, merges, returns, holds, extensions, reopens, the SLA sweeps at
  a moved clock, an import, a hand-written ``UPDATE`` of category and grid, folds at random
  moments — then every count of several groupings equals the plain recount (and ``exact=True``),
  percentiles lie within the stated histogram bound, and ``rebuild --check`` finds nothing.
- Two sessions racing on one ticket (PostgreSQL, committed): one wins, the rollup equals the recount.
- ``rebuild`` finds and repairs deliberately corrupted rows; a calendar change is applied by the fold.
- Percentiles from histograms against the exact ``percentile_cont`` on random data.
- Bad input for ``exact``; the ``qifu stats rebuild`` / ``fold`` commands.
"""

from __future__ import annotations

import itertools
import os
import random
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import time_machine
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, select

from service import clock
from service.auth.actor import Actor
from service.calendar import service as calendar_service
from service.errors import AppError
from service.imports import ImportOptions, import_file
from service.regions.models import Grid
from service.sla import sweeps
from service.stats import rollup
from service.stats.service import Filters, summary, summary_path
from service.tickets.models import Ticket
from service.tickets.workflow import TRANSITIONS
from tests import factories as f
from tests.factories import SHANGHAI
from tests.stats.test_stats import _p, _raw, check_against_recount

EXAMPLES = int(os.environ.get("QIFU_ROLLUP_EXAMPLES", "5"))
GROUPINGS = ("department", "region", "category", "officer", "channel", "week", "month")
CATEGORIES = ("problem.labour", "problem.transport", "problem.power", "consultation.tax")
ENTERPRISES = ("ent1", "ent2", "ent3")
_periods = itertools.count()
NO_SHRINK = (Phase.explicit, Phase.generate)  # each example drives real services: no shrinking


# --------------------------------------------------------------------------- percentiles

@pytest.mark.parametrize("seed", range(20))
def test_histogram_percentiles_lie_within_the_stated_bound(seed: int):
    """On random working-hour samples (from minutes to thousands of hours, with ties at 0) the
    histogram estimate of p50/p90 is within the bound of :func:`rollup.hist_percentile` of the
    exact ``percentile_cont`` value."""
    rng = random.Random(seed)
    n = rng.choice([1, 2, 3, 10, 100, 1000])
    values = [0.0 if rng.random() < 0.1 else rng.lognormvariate(rng.uniform(-2, 5), rng.uniform(0.2, 2))
              for _ in range(n)]
    hist: dict[int, int] = {}
    for v in values:
        b = rollup.bucket_of(v * 3600)
        hist[b] = hist.get(b, 0) + 1
    for frac in (0.5, 0.9):
        exact = _p(values, frac)
        bound = rollup.percentile_error_bound(values, frac)
        estimate = rollup.hist_percentile(hist, frac)
        assert abs(estimate - exact) <= bound + 1e-9, (n, frac, estimate, exact, bound)
        assert bound <= max(0.25, 0.25 * max(values)) or bound == float("inf")
    assert rollup.hist_percentile({}, 0.5) is None


def test_bucket_edges_are_those_documented():
    assert rollup.EDGES[:5] == (900, 1800, 2700, 3600, 4500)
    assert all(b / a == pytest.approx(1.25, abs=1e-3) for a, b in itertools.pairwise(rollup.EDGES[3:]))
    assert 1900 * 3600 < rollup.EDGES[-1] < 2000 * 3600
    assert rollup.bucket_of(-5) == 0 and rollup.bucket_of(899.6) == 1 and rollup.bucket_of(10**9) == rollup.OVERFLOW


# --------------------------------------------------------------------------- random lifecycles

def _period() -> tuple[date, date]:
    """A fresh month-long period per example (examples share the database)."""
    start = date(2011, 1, 3) + timedelta(days=35 * next(_periods))
    return start, start + timedelta(days=27)


def _at(day: date, hours: float) -> datetime:
    return datetime.combine(day, time(8, 30), tzinfo=SHANGHAI) + timedelta(hours=hours)


def _import(session: Session, tmp: Path, day: date, n: int) -> None:
    from tests.imports.test_import import write_csv

    rows = []
    for i in range(2):
        when = _at(day, 3 + i)
        replied = _at(day + timedelta(days=3), 2) if i == 0 else None
        rows.append([f"R{n}-{i}", f"U{n}", f"导入诉求{i}", when.strftime("%Y/%m/%d %H:%M:%S"), "正文",
                     "已协调解决。" if replied else "", replied.strftime("%Y/%m/%d %H:%M:%S") if replied else ""])
    import_file(session, write_csv(tmp / f"import-{n}.csv", rows), ImportOptions())


def _act(session: Session, ticket: Ticket, action: str, category_id: int | None = None) -> None:
    """One action through the services in a savepoint; a refusal (409/422) changes nothing.
    ``category_id``: the officer's correction carried by accept/dispatch (issue 13; a category of
    another service type is refused with 422)."""
    try:
        body = f.action_body(session, ticket, action)  # merge/link: another ticket (committed)
        if category_id is not None and action in ("accept", "dispatch"):
            body["category_id"] = category_id
        with session.begin_nested():
            f.act(session, ticket, action, body)
    except AppError:
        pass
    session.expire_all()


def drive(session: Session, data, tmp: Path, period: tuple[date, date] | None = None) -> tuple[date, date, datetime]:
    """Random lifecycles in a period of their own (``period``, default the next of :func:`_period`);
    returns ``(first day, last day, now)``."""
    first, last = period or _period()
    tickets: list[Ticket] = []
    hours = 0.0
    for _ in range(data.draw(st.integers(2, 5), label="tickets")):
        hours += data.draw(st.floats(0.1, 30), label="gap")
        with time_machine.travel(_at(first, hours), tick=False):
            enterprise = data.draw(st.sampled_from(ENTERPRISES), label="enterprise")
            # on behalf: officer1 serves ent1 (a hotline call)
            by = data.draw(st.sampled_from([None, "officer1"]), label="by") if enterprise == "ent1" else None
            tickets.append(f.submit(session, enterprise=enterprise,
                                    category_code=data.draw(st.sampled_from(CATEGORIES), label="category"),
                                    by=by, priority=data.draw(st.sampled_from(["normal", "urgent"]))))
    imported = False
    grids = list(session.execute(sa.select(Grid.id)).scalars())
    categories = [f.category(session, c).id for c in CATEGORIES]
    for _ in range(data.draw(st.integers(4, 18), label="steps")):
        hours += data.draw(st.floats(0.05, 90), label="advance")
        now = _at(first, hours)
        kind = data.draw(st.sampled_from(["action"] * 6 + ["sweep", "patch", "import", "fold"]), label="kind")
        with time_machine.travel(now, tick=False):
            if kind == "action":
                ticket = f.reload(session, data.draw(st.sampled_from(tickets), label="ticket"))
                legal = sorted(a.value for (s, a) in TRANSITIONS if s.value == ticket.status)
                action = data.draw(st.sampled_from(legal), label="action")
                corrected = (data.draw(st.sampled_from([None, *categories]), label="corrected category")
                             if action in ("accept", "dispatch") else None)
                _act(session, ticket, action, corrected)
            elif kind == "sweep":
                sweeps.send_reminders(session, now)
                sweeps.mark_overdue(session, now)
                sweeps.auto_close(session, now)
            elif kind == "patch":  # a hand-written UPDATE (no service): the triggers still see it
                ticket = data.draw(st.sampled_from(tickets), label="patched")
                session.execute(sa.update(Ticket).where(Ticket.id == ticket.id).values(
                    category_id=data.draw(st.sampled_from(categories)), grid_id=data.draw(st.sampled_from(grids))))
            elif kind == "import" and not imported:
                _import(session, tmp, first + timedelta(days=2), next(_periods))
                imported = True
            elif kind == "fold":
                rollup.fold(session)
    session.flush()
    return first, last, _at(first, hours)


DIM_GROUPINGS = ("department", "region", "grid", "category", "service_type", "channel", "officer",
                 "day", "week", "month", "quarter")


def check_dim_path(session: Session, first: date, last: date, now: datetime,
                   groupings: tuple[str, ...] = DIM_GROUPINGS) -> None:
    """Unfiltered summaries of an unlimited reader come from the per-dimension level and equal the
    exact recount (counts exactly; percentiles within the bound, as the fine path's). A filtered one
    keeps the fine path and agrees with the dim path's group."""
    system = Actor.system()
    for group_by in groupings:
        assert summary_path(session, system, first, last, group_by) == "dim", group_by
        assert summary_path(session, system, first, last, group_by, exact=True) == "exact"
        rows, total = summary(session, system, first, last, group_by, now=now)
        exact_rows, exact_total = summary(session, system, first, last, group_by, now=now, exact=True)
        assert total.counts() == exact_total.counts(), group_by
        assert {r.key: r.counts() for r in rows} == {r.key: r.counts() for r in exact_rows}, group_by
    if "day" in groupings:
        check_day_percentiles(session, first, last, now)
    channel = Filters(channel="web")
    assert summary_path(session, system, first, last, "department", channel) == "fine"
    fine = summary(session, system, first, last, "channel", channel, now=now)[1]
    dim = {r.key: r for r in summary(session, system, first, last, "channel", now=now)[0]}
    assert fine.counts() == (dim["web"].counts() if "web" in dim else fine.counts())


def one_dimension_filters(session: Session, first: date, last: date) -> list[Filters]:
    """One filter of each field, with a value some ticket of the period has (a region: its grid's;
    a category: the root of its tree, so that the subtree counts)."""
    from service.categories.models import Category

    raw = _raw(session, first, last)
    parents = dict(session.execute(sa.select(Category.id, Category.parent_id)).all())
    out = []
    for field, column in (("department_id", "lead_department_id"), ("region_id", "region_id"),
                          ("grid_id", "grid_id"), ("category_id", "category_id"), ("service_type", "service_type"),
                          ("channel", "channel"), ("officer_id", "officer_id")):
        value = next((r[column] for r in raw if r[column] is not None), None)
        if field == "category_id" and value is not None:
            while parents.get(value) is not None:
                value = parents[value]
        if value is not None:
            out.append(Filters(**{field: value}))
    return out


def check_one_dimension_path(session: Session, first: date, last: date, now: datetime) -> None:
    """A time grouping of one filter's population (one dimension's values) reads the per-dimension
    level ("dim") and equals the recount of the ticket rows (counts, "overdue now" included); its
    percentiles equal the fine level's estimate over the same population (the same buckets)."""
    from service.stats.service import _rollup_population

    system = Actor.system()
    dn = (first - date(2004, 1, 1)).days, (last - date(2004, 1, 1)).days
    for filters in one_dimension_filters(session, first, last):
        assert summary_path(session, system, first, last, "department", filters) == "fine", filters
        for group_by in ("day", "week", "month", "quarter"):
            assert summary_path(session, system, first, last, group_by, filters) == "dim", (filters, group_by)
            rows, total = summary(session, system, first, last, group_by, filters, now=now)
            exact_rows, exact_total = summary(session, system, first, last, group_by, filters, now=now, exact=True)
            assert total.counts() == exact_total.counts(), (filters, group_by)
            assert {r.key: r.counts() for r in rows} == {r.key: r.counts() for r in exact_rows}, (filters, group_by)
            _, hists = rollup.read(session, group_by, *dn, _rollup_population(session, system, filters))
            for row in rows:
                for d in rollup.ROLLUP_DURATIONS:
                    expected = [None if v is None else round(v, 2)
                                for v in rollup.hist_percentiles(hists.get(row.key, {}).get(d, {}), (0.5, 0.9))]
                    assert [getattr(row, f"{d}_p50"), getattr(row, f"{d}_p90")] == expected, (filters, row.key, d)


def check_day_percentiles(session: Session, first: date, last: date, now: datetime) -> None:
    """The day grouping's percentiles (kept per day by the fold in ``stats_day_pct``, the
    histograms of days with unfolded deltas, the total from the year and month levels) equal those
    estimated from the fine level's histograms of the same days (``rollup.read``)."""
    dn = (first - date(2004, 1, 1)).days, (last - date(2004, 1, 1)).days
    _, hists = rollup.read(session, "day", *dn, lambda columns: sa.true())
    rows, total = summary(session, Actor.system(), first, last, "day", now=now)
    everything: dict[str, dict[int, int]] = {}
    for per in hists.values():
        for d, hist in per.items():
            for b, n in hist.items():
                everything.setdefault(d, {})[b] = everything.get(d, {}).get(b, 0) + n
    for key, row in [*((r.key, r) for r in rows), (None, total)]:
        per = everything if key is None else hists.get(key, {})
        for d in rollup.ROLLUP_DURATIONS:
            expected = [None if v is None else round(v, 2) for v in rollup.hist_percentiles(per.get(d, {}), (0.5, 0.9))]
            assert [getattr(row, f"{d}_p50"), getattr(row, f"{d}_p90")] == expected, (key, d)


def _whole_months(first: date, last: date) -> tuple[date, date]:
    """The calendar months around ``[first, last]``: read from the per-month tables."""
    return first.replace(day=1), (last.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)


def _check(session: Session, first: date, last: date, now: datetime) -> None:
    check_against_recount(session, now, first, last, groupings=GROUPINGS)
    check_dim_path(session, first, last, now)  # before a fold: stats_dim_day + stats_delta
    check_one_dimension_path(session, first, last, now)
    m_first, m_last = _whole_months(first, last)
    assert rollup.whole_months((m_first - date(2004, 1, 1)).days, (m_last - date(2004, 1, 1)).days)
    # whole months (stats_dim_month* + stats_delta), and whole months with edge days around them
    check_dim_path(session, m_first, m_last, now, ("department", "grid", "month", "quarter", "day"))
    check_dim_path(session, m_first + timedelta(days=2), m_last + timedelta(days=3), now, ("category", "month"))
    # whole years (stats_dim_year*) with months and days at the edges, whole weeks (stats_dim_week*)
    check_dim_path(session, first - timedelta(days=400), last + timedelta(days=430), now,
                   ("department", "region", "channel", "week", "quarter"))
    assert rollup.differences(session) == []
    rollup.fold(session)
    assert session.execute(sa.text("SELECT count(*) FROM stats_delta")).scalar_one() == 0
    assert rollup.rebuild(session, check_only=True).differences == []
    check_against_recount(session, now, first, last, groupings=("department", "day"))
    check_dim_path(session, date(first.year - 1, 1, 1), date(first.year, 12, 31), now, ("grid", "week", "month"))
    check_dim_path(session, first, last, now, ("department", "region", "category", "month", "week"))
    check_dim_path(session, *_whole_months(first, last), now, ("officer", "channel", "month", "quarter"))
    check_one_dimension_path(session, first - timedelta(days=400), last + timedelta(days=430), now)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, phases=NO_SHRINK,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_random_lifecycles_keep_the_rollup_equal_to_a_recount_postgresql(session: Session, tmp_path: Path, data):
    first, last, now = drive(session, data, tmp_path)
    _check(session, first, last, now)


@pytest.fixture(scope="module")
def sqlite_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sa.Engine]:
    from service.db import make_engine
    from tests.scratch_db import build_database

    url = f"sqlite:///{tmp_path_factory.mktemp('rollup') / 'qifu.db'}"
    build_database(url, enterprises=20)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@settings(max_examples=max(2, EXAMPLES - 2), deadline=None, derandomize=True, phases=NO_SHRINK,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_random_lifecycles_keep_the_rollup_equal_to_a_recount_sqlite(sqlite_engine: sa.Engine, tmp_path: Path,
                                                                     data):
    with Session(sqlite_engine) as lite:
        first, last, now = drive(lite, data, tmp_path)
        lite.commit()
        _check(lite, first, last, now)
        lite.commit()


# --------------------------------------------------------------------------- repair, calendar

def test_rebuild_finds_and_repairs_corrupted_rows(session: Session):
    first = date(2009, 5, 4)
    with time_machine.travel(_at(first, 1), tick=False):
        a = f.make_ticket(session, "closed", commit=False)
        f.make_ticket(session, "dispatched", commit=False, channel="hotline", by="officer1")
    rollup.fold(session)
    assert rollup.rebuild(session, check_only=True).differences == []
    dn = (first - date(2004, 1, 1)).days
    session.execute(sa.text("UPDATE stats_day SET closed = closed + 3 WHERE dn = :dn AND closed > 0"), {"dn": dn})
    session.execute(sa.text("DELETE FROM stats_day_hist WHERE dn = :dn AND duration = 2"), {"dn": dn})
    session.execute(sa.text("INSERT INTO stats_delta (dn, department_id, grid_id, category_id, channel, officer_id, "
                            "service_type, received, accepted, answered, dispatched, replied, closed, closed_on_time, "
                            "response_due, responded, rated, satisfied, closed_rated, reopened, returned) "
                            "VALUES (:dn, 0, 0, 0, 'web', 0, 'problem', 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)"),
                    {"dn": dn})
    session.execute(sa.text("UPDATE stats_dim_day SET replied = replied + 5 WHERE dn = :dn AND dim = 'channel' "
                            "AND key = 'hotline'"), {"dn": dn})
    session.execute(sa.text("DELETE FROM stats_dim_hist WHERE dn = :dn AND dim = 'all' AND duration = 0"),
                    {"dn": dn})
    session.execute(sa.text("UPDATE stats_dim_month SET accepted = accepted + 7 WHERE dn = :dn AND dim = 'all'"),
                    {"dn": (first.replace(day=1) - date(2004, 1, 1)).days})
    report = rollup.rebuild(session, check_only=True)
    found = {(d.kind, d.measure, d.live, d.recount) for d in report.differences}
    # the month row: + 7 here, + 2 from the bogus stats_delta row above
    assert any(d.kind == "month_count" and d.key["dim"] == "all" and d.measure == "accepted"
               and d.live - d.recount == 9 for d in report.differences)
    assert ("dim_count", "replied", 5, 0) in found
    dim_rows = [d for d in report.differences if d.kind.startswith("dim_")]
    assert any(d.kind == "dim_count" and d.key == {"dim": "channel", "key": "hotline", "dn": dn} for d in dim_rows)
    assert any(d.kind == "dim_hist" and d.key["dim"] == "all" and d.measure.startswith("hours_to_claim[")
               and d.live == 0 and d.recount >= 1 for d in dim_rows)
    assert ("count", "closed", 4, 1) in found
    assert ("count", "received", 2, 0) in found
    assert any(kind == "hist" and m.startswith("hours_to_close[") and (live, re) == (0, 1)
               for kind, m, live, re in found)
    assert not report.repaired and report.differences[0].describe().startswith(str(first))
    repaired = rollup.rebuild(session)
    assert repaired.repaired and {(d.kind, d.measure) for d in repaired.differences} == \
        {(d.kind, d.measure) for d in report.differences}
    assert rollup.rebuild(session, check_only=True).differences == []
    assert summary(session, Actor.system(), first, first, "grid")[1].closed == 1
    assert a.status == "closed"


def test_a_calendar_change_is_applied_by_the_fold(session: Session):
    """An admin enters a holiday inside tickets' durations: until the fold applies it the summary
    recounts the tickets (never a stale figure); after it the rollup equals the recount again."""
    first = date(2013, 4, 8)  # a Monday
    with time_machine.travel(_at(first, 1), tick=False):
        t = f.make_ticket(session, "in_progress", commit=False)
    with time_machine.travel(_at(first + timedelta(days=3), 2), tick=False):
        f.act(session, t, "reply")
        f.act(session, t, "confirm")
    now = _at(first + timedelta(days=5), 0)
    check_against_recount(session, now, first, first + timedelta(days=6), groupings=("department",))
    before = summary(session, Actor.system(), first, first, "department", now=now, exact=True)[1]
    calendar_service.set_overrides(session, [(first + timedelta(days=1), False, "测试假日")])
    try:
        assert not rollup.is_current(session)
        after = summary(session, Actor.system(), first, first, "department", now=now)[1]
        assert after.hours_to_close_p50 == summary(session, Actor.system(), first, first, "department", now=now,
                                                   exact=True)[1].hours_to_close_p50
        assert after.hours_to_close_p50 == pytest.approx(before.hours_to_close_p50 - 7, abs=0.01)  # one day fewer
        rollup.fold(session)
        assert rollup.is_current(session)
        check_against_recount(session, now, first, first + timedelta(days=6), groupings=("department", "day"))
        assert rollup.rebuild(session, check_only=True).differences == []
    finally:
        calendar_service.delete_override(session, first + timedelta(days=1))
        rollup.fold(session)
    assert rollup.is_current(session)


def test_supervisor_of_a_region_reads_the_rollup_within_its_grids(session: Session):
    """A region's supervisor reads the rollup (visibility = the region's grids) and gets the same
    figures as the recount of the tickets it may see; departments and officers recount."""
    from service.stats.service import Filters, _rollup_population
    from service.tickets.visibility import region_subtree_ids

    first = date(2014, 6, 2)
    with time_machine.travel(_at(first, 1), tick=False):
        for ent in ENTERPRISES:
            f.make_ticket(session, "dispatched", enterprise=ent, commit=False)
    grids = dict(session.execute(sa.select(Grid.id, Grid.region_id)).all())
    raw = _raw(session, first, first)
    region = next(grids[r["grid_id"]] for r in raw if r["grid_id"] is not None)
    sup = Actor(user_id=0, role="supervisor", region_id=region)
    assert _rollup_population(session, sup, Filters()) is not None
    assert _rollup_population(session, f.actor(session, "dept_rsj"), Filters()) is None
    subtree = set(region_subtree_ids(session, region))
    expected = sum(1 for r in raw if grids.get(r["grid_id"]) in subtree)
    for exact in (False, True):
        rows, total = summary(session, sup, first, first, "grid", exact=exact)
        assert total.received == expected and sum(r.received for r in rows) == expected
    # a time grouping: the per-dimension level's rows of its grids
    assert summary_path(session, sup, first, first, "month") == "dim"
    assert summary_path(session, sup, first, first, "grid") == "fine"
    for group_by in ("day", "month"):
        fast, exact_total = (summary(session, sup, first, first, group_by, exact=exact)[1] for exact in (False, True))
        assert fast.counts() == exact_total.counts() and fast.received == expected


# --------------------------------------------------------------------------- a race (committed)

@pytest.fixture(scope="module")
def committed_url(worker_id: str) -> Iterator[str]:
    """A database of this module's own: the race commits."""
    from tests.conftest import PG_SERVER
    from tests.scratch_db import scratch_database

    with scratch_database(PG_SERVER, f"qifu_rollup_race_{worker_id}_{os.getpid()}", enterprises=20) as url:
        yield url


def test_two_sessions_racing_on_one_ticket_leave_the_rollup_equal_to_a_recount(committed_url: str):
    """Two departments' handlers act on one dispatched ticket at once (claim against return),
    while a fold runs: one action wins, the other gets a 409; the rollup (live and after another
    fold) equals the recount."""
    from service.db import make_engine
    from service.ticketing import service as ticket_service

    engine = make_engine(committed_url)
    try:
        with Session(engine, expire_on_commit=False) as s:
            ticket = f.make_ticket(s, "dispatched")
            number, handler = ticket.number, f.default_actor(s, ticket, "claim")
            s.commit()
        barrier = threading.Barrier(3, timeout=30)

        def side(i: int):
            with Session(engine, expire_on_commit=False) as s:
                if i == 2:
                    barrier.wait()
                    moved = rollup.fold(s)
                    s.commit()
                    return moved
                t = ticket_service.get_visible_ticket(s, handler, number)
                barrier.wait()  # both have read the same version
                try:
                    ticket_service.apply_action(s, handler, t, ("claim", "return")[i], f.BODIES[("claim", "return")[i]])
                    s.commit()
                    return t.status
                except AppError as exc:
                    s.rollback()
                    return exc

        with ThreadPoolExecutor(max_workers=3) as pool:
            results = list(pool.map(side, range(3)))
        wins = [r for r in results[:2] if isinstance(r, str)]
        assert len(wins) == 1 and isinstance([r for r in results[:2] if not isinstance(r, str)][0], AppError), results
        with Session(engine) as s:
            assert rollup.rebuild(s, check_only=True).differences == []
            day = clock.now().astimezone(SHANGHAI).date()
            for exact in (False, True):
                total = summary(s, Actor.system(), day, day, "department", exact=exact)[1]
                assert total.received >= 1 and total.dispatched == total.received
            rollup.fold(s)
            s.commit()
            assert rollup.rebuild(s, check_only=True).differences == []
            assert s.exec(select(Ticket).where(Ticket.number == number)).one().status == wins[0]
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- API and CLI

@pytest.mark.parametrize("value", ["maybe", "2", ""])
def test_exact_must_be_a_boolean(client, login, value):
    sup = login("supervisor1")
    resp = client.get("/api/v1/stats/summary", params={"date_from": "2026-01-01", "date_to": "2026-01-31",
                                                        "exact": value}, headers=sup)
    assert resp.status_code == 422, resp.text
    assert any("exact" in e.get("field", "") for e in resp.json().get("errors", [])), resp.json()
    resp = client.get("/api/v1/stats/ranking", params={"period": "2026-01", "exact": value}, headers=sup)
    assert resp.status_code == 422


def test_exact_true_and_false_answer_the_same_counts(session: Session, client, login):
    first = date(2015, 3, 2)
    with time_machine.travel(_at(first, 1), tick=False):
        f.make_ticket(session, "closed", commit=False)
        f.make_ticket(session, "rejected", commit=False)
    session.flush()
    sup = login("supervisor1")
    answers = [client.get("/api/v1/stats/summary", headers=sup, params={
        "date_from": str(first), "date_to": str(first), "group_by": "category", "exact": exact}).json()
        for exact in ("false", "true")]
    counts = [{k: v for k, v in a["total"].items() if not k.startswith("hours_")} for a in answers]
    assert counts[0] == counts[1] and counts[0]["received"] == 2


def test_rebuild_and_fold_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from typer.testing import CliRunner

    from qifu.cli import app
    from service.config import get_settings
    from service.db import get_engine, make_engine
    from tests.scratch_db import build_database

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    build_database(url, enterprises=5)
    monkeypatch.setenv("QIFU_DATABASE_URL", url)
    get_settings.cache_clear()
    get_engine.cache_clear()
    try:
        engine = make_engine(url)
        with Session(engine) as s:
            f.make_ticket(s, "closed")
            s.commit()
        runner = CliRunner()
        ok = runner.invoke(app, ["stats", "rebuild", "--check"])
        assert ok.exit_code == 0 and "一致" in ok.output, ok.output
        assert runner.invoke(app, ["stats", "fold"]).exit_code == 0
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE stats_day SET closed = closed + 1")
        bad = runner.invoke(app, ["stats", "rebuild", "--check"])
        assert bad.exit_code == 1 and "closed" in bad.output, bad.output
        fixed = runner.invoke(app, ["stats", "rebuild"])
        assert fixed.exit_code == 0 and "已按重算结果修复" in fixed.output, fixed.output
        assert runner.invoke(app, ["stats", "rebuild", "--check"]).exit_code == 0
        missing = runner.invoke(app, ["stats"])
        assert missing.exit_code == 2
        today = clock.now().astimezone(SHANGHAI).date()
        shown = runner.invoke(app, ["stats", "--from", str(today), "--to", str(today), "--format", "json", "--exact"])
        assert shown.exit_code == 0 and '"received": 1' in shown.output, shown.output
        engine.dispose()
    finally:
        get_engine().dispose()
        get_settings.cache_clear()
        get_engine.cache_clear()


def test_an_update_of_no_rollup_input_appends_no_delta(session: Session):
    """PostgreSQL's UPDATE trigger only recounts rows whose rollup inputs changed (the inputs are
    read from the generated SQL); a changed input still appends its delta."""
    first = date(2009, 9, 7)
    with time_machine.travel(_at(first, 1), tick=False):
        t = f.make_ticket(session, "dispatched", commit=False)
    rollup.fold(session)
    ddl = " ".join(rollup.trigger_ddl("postgresql", calendar_service.get_calendar(session)))
    assert "IS DISTINCT FROM" in ddl
    inputs = rollup.input_columns("postgresql", calendar_service.get_calendar(session))
    assert {"status", "category_id", "submitted_at", "closed_at"} <= set(inputs) and "title" not in inputs
    session.execute(sa.update(Ticket).where(Ticket.id == t.id).values(title="改过的标题", remind_count=3))
    assert session.execute(sa.text("SELECT count(*) FROM stats_delta")).scalar_one() == 0
    other = f.category(session, "problem.power").id
    session.execute(sa.update(Ticket).where(Ticket.id == t.id).values(category_id=other))
    assert session.execute(sa.text("SELECT count(*) FROM stats_delta")).scalar_one() == 2
    assert rollup.differences(session) == []


def test_each_branch_of_the_insert_trigger_equals_a_recount(session: Session):
    """PostgreSQL's INSERT trigger has three branches: one new row without milestones (the
    one-statement intake: its contribution appended as it is), several rows without milestones
    (grouped by key), rows with milestones (their working-hour buckets). Each keeps the rollup
    equal to a recount; the grouped branch still folds rows of one key into one delta row."""
    first = date(2009, 10, 5)
    with time_machine.travel(_at(first, 1), tick=False):
        t = f.make_ticket(session, "submitted", commit=False)
    rollup.fold(session)
    names = [c.name for c in Ticket.__table__.c if c.name not in ("id", "number", "external_ref")]

    def copy(n: int, tag: str, **override: str) -> int:
        values = ", ".join(override.get(c, c) for c in names)
        session.execute(sa.text(
            f"INSERT INTO ticket ({', '.join(names)}, number) SELECT {values}, 'TRG-{tag}-' || g "
            "FROM ticket, generate_series(1, :n) AS g WHERE id = :id"), {"n": n, "id": t.id})
        return session.execute(sa.text("SELECT count(*) FROM stats_delta")).scalar_one()

    assert copy(1, "one") == 1  # the intake's shape
    assert rollup.differences(session) == []
    assert copy(3, "three") == 2  # three rows of one key: one grouped delta row
    assert rollup.differences(session) == []
    later = "submitted_at + interval '26 hours'"
    copy(2, "milestones", status="'closed'", dispatched_at=later, claimed_at=later, first_replied_at=later,
         replied_at=later, closed_at=later)
    assert rollup.differences(session) == []


# --------------------------------------------------------------------------- the deadline rollup

_future_periods = itertools.count()


def _future_period() -> tuple[date, date]:
    """A month-long period after the real clock (from 2031 on): the deadline rollup's horizon
    (the folding clock's yesterday, only ever moved forward) lies before the "now" asked."""
    start = date(2031, 1, 6) + timedelta(days=35 * next(_future_periods))
    return start, start + timedelta(days=27)


def check_overdue(session: Session, first: date, last: date, now: datetime) -> None:
    """"Overdue now" of every per-dimension grouping equals the exact recount at ``now``, at each
    running deadline's instant (and a second before it) and at local midnights around ``now``."""
    system = Actor.system()
    dues = sorted(session.execute(sa.select(Ticket.due_at).where(Ticket.due_at.is_not(None))
                                  .where(Ticket.submitted_at >= _at(first, -9))
                                  .where(Ticket.submitted_at < _at(last, 16))).scalars())
    midnight = datetime.combine(now.astimezone(SHANGHAI).date(), time.min, tzinfo=SHANGHAI)
    instants = [now, midnight, midnight - timedelta(microseconds=1), midnight + timedelta(days=1),
                now + timedelta(days=40)]
    instants += [d for d in dues[:4] if d >= now] + [d - timedelta(seconds=1) for d in dues[:2] if d > now]
    for at in instants:
        for group_by in DIM_GROUPINGS:
            rows, total = summary(session, system, first, last, group_by, now=at)
            exact_rows, exact_total = summary(session, system, first, last, group_by, now=at, exact=True)
            assert total.overdue == exact_total.overdue, (group_by, at)
            assert {r.key: r.overdue for r in rows} == {r.key: r.overdue for r in exact_rows}, (group_by, at)
    # time groupings of one filter's population: the deadline rollup's rows of those values
    for at in (*instants[:3], instants[-1]):
        for filters in one_dimension_filters(session, first, last):
            for group_by in ("day", "month"):
                rows, total = summary(session, system, first, last, group_by, filters, now=at)
                exact_rows, exact_total = summary(session, system, first, last, group_by, filters, now=at, exact=True)
                assert total.overdue == exact_total.overdue, (filters, group_by, at)
                assert {r.key: r.overdue for r in rows} == {r.key: r.overdue for r in exact_rows}, (filters, group_by)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, phases=NO_SHRINK,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_random_lifecycles_keep_the_deadline_rollup_equal_to_a_live_count(session: Session, tmp_path: Path, data):
    """The deadline rollup (PostgreSQL) through random lifecycles after the clock: "overdue now"
    read from it (plus today's deadlines counted live) equals the exact recount at many instants,
    before and after folds that compact the past deadline days; ``rebuild --check`` finds nothing."""
    first, last, now = drive(session, data, tmp_path, _future_period())
    assert rollup.read_due(session, "department", (first - date(2004, 1, 1)).days,
                           (last - date(2004, 1, 1)).days, now) is not None  # the path is taken
    assert rollup.read_due(session, "month", (first - date(2004, 1, 1)).days, (last - date(2004, 1, 1)).days,
                           now, only=("channel", ["web"])) is not None
    check_overdue(session, first, last, now)
    for later in (now, now + timedelta(days=3)):
        with time_machine.travel(later, tick=False):
            rollup.fold(session)  # compacts the deadline days before the folding clock's yesterday
        assert session.execute(sa.text("SELECT count(*) FROM stats_due_delta")).scalar_one() == 0
        check_overdue(session, first, last, later)
    assert rollup.rebuild(session, check_only=True).differences == []
    # an "as of" before the stored horizon is counted live, and still exact
    check_overdue(session, first, last, _at(first, 30))


def test_the_deadline_rollup_is_repaired_by_rebuild(session: Session):
    """A corrupted deadline row is reported (kind ``due_day``) and repaired; the month rows too."""
    first = date(2032, 3, 1)
    with time_machine.travel(_at(first, 1), tick=False):
        ticket = f.make_ticket(session, "dispatched", commit=False)
        rollup.fold(session)
    assert ticket.due_at is not None
    dn = (first - date(2004, 1, 1)).days
    session.execute(sa.text("UPDATE stats_due_day SET n = n + 4 WHERE dn = :dn AND dim = 'department'"), {"dn": dn})
    session.execute(sa.text("DELETE FROM stats_due_month WHERE dn = :dn AND dim = 'all'"), {"dn": dn})
    report = rollup.rebuild(session, check_only=True)
    kinds = {(d.kind, d.key["dim"], d.live - d.recount) for d in report.differences}
    assert ("due_day", "department", 4) in kinds and ("due_month", "all", -1) in kinds
    assert "due_dn=" in report.differences[0].describe()
    assert rollup.rebuild(session).repaired
    assert rollup.rebuild(session, check_only=True).differences == []


def test_the_deadline_rollup_is_postgresql_only(sqlite_engine: sa.Engine):
    """On SQLite (the embedded default) "overdue now" is counted live: the deadline rollup is not
    installed and :func:`rollup.read_due` declines."""
    with Session(sqlite_engine) as lite:
        assert not rollup.due_is_current(lite.connection(), "Asia/Shanghai")
        assert rollup.read_due(lite, "department", 0, 10_000, clock.now()) is None


def test_level_spans_cut_a_period_into_years_months_weeks_and_days():
    """:func:`rollup.level_spans`: every day of the period exactly once, each piece a whole unit
    of its level, coarsest first (random periods, every grouping's levels)."""
    def dn(d: date) -> int:
        return (d - date(2004, 1, 1)).days

    assert rollup.level_spans(("year", "month"), dn(date(2021, 6, 1)), dn(date(2026, 5, 31))) == [
        ("month", dn(date(2021, 6, 1)), dn(date(2021, 12, 1))), ("year", dn(date(2022, 1, 1)), dn(date(2025, 1, 1))),
        ("month", dn(date(2026, 1, 1)), dn(date(2026, 5, 1)))]
    assert rollup.level_spans(("week",), dn(date(2021, 6, 1)), dn(date(2021, 6, 30))) == [
        ("day", dn(date(2021, 6, 1)), dn(date(2021, 6, 6))), ("week", dn(date(2021, 6, 7)), dn(date(2021, 6, 21))),
        ("day", dn(date(2021, 6, 28)), dn(date(2021, 6, 30)))]
    rng = random.Random(7)
    span = {"week": 7}
    for _ in range(300):
        lo = rng.randrange(dn(date(1990, 1, 1)), dn(date(2100, 1, 1)))
        hi = lo + rng.choice([0, 1, 6, 30, 31, 100, 365, 800, 2000])
        levels = rng.choice([(), ("week",), ("month",), ("year", "month")])
        covered: list[int] = []
        for level, first, last in rollup.level_spans(levels, lo, hi):
            start = date(2004, 1, 1) + timedelta(days=first)
            if level == "day":
                covered += range(first, last + 1)
                continue
            assert level in levels
            while dn(start) <= last:  # each unit whole: its first day, then all its days
                if level == "week":
                    assert start.weekday() == 0
                    nxt = start + timedelta(days=span["week"])
                elif level == "month":
                    assert start.day == 1
                    nxt = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
                else:
                    assert (start.month, start.day) == (1, 1)
                    nxt = date(start.year + 1, 1, 1)
                covered += range(dn(start), dn(nxt))
                start = nxt
        assert covered == list(range(lo, hi + 1)), (levels, lo, hi)


def test_the_day_percentiles_are_checked_and_repaired_by_rebuild(session: Session):
    """A corrupted ``stats_day_pct`` value is reported (kind ``day_pct``) and recomputed."""
    first = date(2014, 9, 1)
    with time_machine.travel(_at(first, 1), tick=False):
        f.make_ticket(session, "closed", commit=False)
    rollup.fold(session)
    dn = (first - date(2004, 1, 1)).days
    assert session.execute(sa.text("SELECT count(*) FROM stats_day_pct WHERE dn = :dn"), {"dn": dn}).scalar_one()
    session.execute(sa.text("UPDATE stats_day_pct SET p90 = p90 + 1 WHERE dn = :dn AND duration = 2"), {"dn": dn})
    report = rollup.rebuild(session, check_only=True)
    assert [(d.kind, d.measure) for d in report.differences] == [("day_pct", "hours_to_close_p90")]
    assert rollup.rebuild(session).repaired
    assert rollup.rebuild(session, check_only=True).differences == []


def test_the_day_grouping_reads_stored_percentiles_of_folded_days_and_histograms_of_pending_ones(session: Session):
    """Five years by day read lean (docs/statistics.md "The day grouping's read, lean"): the days
    without unfolded deltas take their percentiles from ``stats_day_pct`` (in the counts'
    statement), a day with deltas since the fold takes its histograms (its stored row is stale),
    and both equal the fine level's estimates; with no pending day the histograms are not read."""
    first = date(2015, 3, 2)
    days = [first + timedelta(days=i) for i in range(3)]
    for day in days:
        with time_machine.travel(_at(day, 1), tick=False):
            f.make_ticket(session, "closed", commit=False)
    rollup.fold(session)
    now = _at(first + timedelta(days=10), 1)
    check_day_percentiles(session, days[0], days[-1], now)  # every day stored, no histogram read
    with time_machine.travel(_at(days[1], 2), tick=False):  # a delta on the middle day after the fold
        f.make_ticket(session, "closed", commit=False)
    check_day_percentiles(session, days[0], days[-1], now)
    dn = [(day - date(2004, 1, 1)).days for day in days]
    stored = sa.text("UPDATE stats_day_pct SET p90 = :value WHERE dn = :dn AND duration = 2")
    session.execute(stored, {"value": 123.456, "dn": dn[0]})  # a folded day: its stored value is what shows
    session.execute(stored, {"value": 999.0, "dn": dn[1]})    # the pending day: its stored row is not read
    rows = {r.key: r for r in summary(session, Actor.system(), days[0], days[-1], "day", now=now)[0]}
    assert rows[days[0].isoformat()].hours_to_close_p90 == 123.46
    assert rows[days[1].isoformat()].hours_to_close_p90 != 999.0
    assert rows[days[1].isoformat()].received == 2

"""The cadences on the embedded default (SQLite, SPEC §8): the same set-based SQL runs there — every
cadence for a date, an inquiry with a problem, coverage, a follow-up answered "not solved", and the
second run creating nothing."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest
import time_machine
from sqlmodel import Session, select

from service.auth.actor import Actor
from service.cadences import follow_ups, inquiries, schemas
from service.cadences import service as cadences
from service.cadences.models import FollowUp, InquiryListItem
from service.db import make_engine
from tests import factories as f
from tests.factories import SHANGHAI
from tests.scratch_db import build_database


@pytest.fixture(scope="module")
def sqlite_engine(tmp_path_factory: pytest.TempPathFactory):
    path: Path = tmp_path_factory.mktemp("cadence") / "qifu.db"
    url = f"sqlite:///{path}"
    build_database(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def test_cadences_on_sqlite(sqlite_engine):
    with Session(sqlite_engine, expire_on_commit=False) as s:
        with time_machine.travel(datetime(2026, 3, 2, 9, tzinfo=SHANGHAI), tick=False):
            results = cadences.run_due(s)
            assert {r.kind for r in results} == {"daily", "weekly", "monthly"}  # Q1/annual ran Jan 4
            assert cadences.run_due(s) == []
            for kind in ("quarterly", "annual"):  # by hand, for the day they were due
                assert cadences.run_for_date(s, kind, date(2026, 1, 4)).ran
            items = s.exec(select(InquiryListItem).where(InquiryListItem.list_date == date(2026, 3, 2))).all()
            assert items and all(i.due_date <= date(2026, 3, 4) for i in items)
            assert any(i.fallback for i in items)
            officer = f.actor(s, "officer1")
            ent = f.enterprise_of(s, "ent1")
            inquiry, tickets = inquiries.log_inquiry(s, officer, schemas.InquiryCreate(
                enterprise_id=ent.id, method="visit", finding="problems",
                problems=[schemas.ProblemIn(title="用电", description="增容", category_code="problem.power")]))
            assert tickets[0].channel == "inquiry"
            cov = inquiries.coverage(s, Actor(user_id=None, role="admin"))
            assert cov.total.covered == 1 and cov.total.enterprises == 300
            today = inquiries.today_list(s, officer)
            assert not today.provisional
            ticket = f.make_ticket(s, "closed")
            s.commit()
        with time_machine.travel(datetime(2026, 4, 1, 9, tzinfo=SHANGHAI), tick=False):
            results = cadences.run_due(s)
            assert ("monthly", "2026-04") in {(r.kind, r.period_key) for r in results}
            up = s.exec(select(FollowUp).where(FollowUp.ticket_id == ticket.id)).one()
            follow_ups.answer(s, f.actor(s, "ent1"), up.id, schemas.FollowUpAnswerIn(solved=False))
            assert f.reload(s, ticket).status == "dispatched"
            s.commit()


def test_cli_and_task_bodies(sqlite_engine, monkeypatch):
    """``qifu cadence run/catch-up`` and the Celery task bodies, on their own sessions."""
    from typer.testing import CliRunner

    from qifu.cadence_cli import cadence_app
    from service.config import get_settings
    from service.db import get_engine
    from workers import cadence_tasks

    monkeypatch.setenv("QIFU_DATABASE_URL", str(sqlite_engine.url))
    get_settings.cache_clear()
    get_engine.cache_clear()
    try:
        runner = CliRunner()
        with time_machine.travel(datetime(2026, 5, 6, 9, tzinfo=SHANGHAI), tick=False):
            first = runner.invoke(cadence_app, ["run", "daily", "--date", "2026-05-06"])
            assert first.exit_code == 0 and '"ran": true' in first.output, first.output
            again = runner.invoke(cadence_app, ["run", "daily", "--date", "2026-05-06"])
            assert '"ran": false' in again.output
            bad = runner.invoke(cadence_app, ["run", "hourly"])
            assert bad.exit_code != 0
            caught = runner.invoke(cadence_app, ["catch-up"])
            assert caught.exit_code == 0 and "period(s) run" in caught.output
            assert cadence_tasks.run_daily() == [] and cadence_tasks.catch_up() == []
    finally:
        get_engine().dispose()
        get_settings.cache_clear()
        get_engine.cache_clear()

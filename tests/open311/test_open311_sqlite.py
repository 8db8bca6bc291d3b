"""Open311 on the embedded default (SPEC §8): a SQLite file migrated and seeded, the real
application bound to it; a POST takes the ORM path of the intake (no one-statement form there)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from service.auth.actor import Actor
from service.config import get_settings
from service.db import get_engine, make_engine
from service.open311 import schemas
from service.open311 import service as open311
from service.tickets.models import Ticket, TicketEvent
from service.users.models import User
from tests.conftest import migrate
from tests.open311.spec import check_xml


def _clear() -> None:
    get_settings.cache_clear()
    get_engine.cache_clear()


def test_post_and_read_on_sqlite(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'qifu.db'}"
    migrate(url)
    from seeds.loader import load_seeds

    engine = make_engine(url)
    with Session(engine) as session:
        load_seeds(session)
        session.commit()
        ent1 = session.exec(select(User).where(User.username == "ent1")).one().enterprise_id
        _row, key = open311.create_key(session, Actor.system(), schemas.KeyCreate(system_name="嵌入式",
                                                                                  enterprise_id=ent1))
        session.commit()
    mp = pytest.MonkeyPatch()
    mp.setenv("QIFU_DATABASE_URL", url)
    _clear()
    try:
        from qifu.main import create_app

        with TestClient(create_app(), raise_server_exceptions=False) as client:
            body = {"api_key": key, "service_code": "problem.labour", "description": "嵌入式报事",
                    "media_url": "https://img.example.cn/s.jpg"}
            first = client.post("/open311/v2/requests.json", data=body)
            again = client.post("/open311/v2/requests.xml", data=body)
            assert first.status_code == again.status_code == 201, first.text
            number = first.json()[0]["service_request_id"]
            assert number in again.text
            check_xml(again.content, "service_requests")
            (row,) = client.get(f"/open311/v2/requests/{number}.json", params={"api_key": key}).json()
            assert row["media_url"] == "https://img.example.cn/s.jpg" and row["status"] == "open"
            assert row["expected_datetime"]
            bad = client.post("/open311/v2/requests.json", data={**body, "service_code": ""})
            assert bad.status_code == 400 and bad.json()[0]["code"] == 400
        with Session(make_engine(url)) as session:
            tickets = session.exec(select(Ticket).where(Ticket.channel == "open311")).all()
            assert [t.number for t in tickets] == [number]
            event = session.exec(select(TicketEvent).where(TicketEvent.ticket_id == tickets[0].id)).one()
            assert event.payload["open311"]["media_url"] == "https://img.example.cn/s.jpg"
    finally:
        get_engine().dispose()
        mp.undo()
        _clear()
        open311.clear_key_cache()
        open311.clear_catalogue()

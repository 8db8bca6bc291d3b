"""Attachments on the embedded default (issue 12): a real application on a migrated and seeded
SQLite file, the store in its default place beside that file (``<db>.attachments/``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from service.attachments.storage import get_store, store_url
from service.auth.security import create_access_token
from service.config import get_settings
from service.db import get_engine
from service.users.models import User
from tests.attachments import samples as s
from tests.attachments.conftest import blobs
from tests.scratch_db import build_database

API = "/api/v1"


def _clear() -> None:
    get_settings.cache_clear()
    get_engine.cache_clear()
    get_store.cache_clear()


@pytest.fixture
def embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "qifu.db"
    url = f"sqlite:///{path}"
    build_database(url, enterprises=30)
    monkeypatch.setenv("QIFU_DATABASE_URL", url)
    monkeypatch.delenv("QIFU_ATTACHMENT_STORAGE_URL", raising=False)  # the default: beside the file
    _clear()
    try:
        from qifu.main import create_app

        with TestClient(create_app(), raise_server_exceptions=False) as client:
            with Session(get_engine()) as session:
                users = {u.username: u for u in session.exec(select(User)).all()}
            yield client, {name: {"Authorization": f"Bearer {create_access_token(u.id, u.role)[0]}"}
                           for name, u in users.items()}, path
    finally:
        get_engine().dispose()
        monkeypatch.undo()
        _clear()


def test_attachments_on_sqlite(embedded):
    client, auth, path = embedded
    assert store_url(get_settings()) == str(Path(str(path) + ".attachments").resolve())
    body = {"title": "厂房屋顶漏水", "description": "雨天漏水严重，附现场照片", "category_code": "problem.labour"}
    ticket = client.post(f"{API}/tickets", json=body, headers=auth["ent1"]).json()
    number = ticket["number"]
    resp = client.post(f"{API}/tickets/{number}/attachments", headers=auth["ent1"],
                       files=[("files", ("屋顶.jpg", s.jpeg(), "image/jpeg")), ("files", ("清单.xlsx", s.xlsx(), ""))],
                       data={"note": "现场照片与损失清单"})
    assert resp.status_code == 201, resp.text
    jpg, sheet = resp.json()
    assert sheet["content_type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert client.get(f"{API}/tickets/{number}", headers=auth["ent1"]).json()["attachment_count"] == 2
    listed = client.get(f"{API}/tickets/{number}/attachments", headers=auth["officer1"]).json()
    assert [a["id"] for a in listed] == [jpg["id"], sheet["id"]]
    got = client.get(jpg["url"], headers=auth["officer1"])
    assert got.status_code == 200 and got.content == s.jpeg() and got.headers["content-type"] == "image/jpeg"
    assert got.headers["content-disposition"].startswith("attachment;")
    assert client.get(jpg["url"], headers=auth["ent2"]).status_code == 404
    refused = client.post(f"{API}/tickets/{number}/attachments", headers=auth["ent1"],
                          files=[("files", ("照片.jpg", s.EXE, "image/jpeg"))])
    assert refused.status_code == 415 and refused.json()["errors"][0]["field"] == "files[0]"
    assert len(blobs(Path(str(path) + ".attachments"))) == 2

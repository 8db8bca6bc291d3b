"""The content-addressed store (issue 12) on a local directory and on a non-local fsspec file
system (``memory://``, standing in for object storage), and the orphan listing."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from service.attachments import service as attachments
from service.attachments.storage import BlobStore, key_of
from tests import factories as f
from tests.attachments import samples as s


@pytest.fixture(params=["local", "memory"])
def store(request, tmp_path) -> BlobStore:
    url = str(tmp_path / "blobs") if request.param == "local" else f"memory://qifu-attach-{uuid.uuid4().hex}"
    return BlobStore(url)


def test_put_is_content_addressed_and_idempotent(store):
    data = s.pdf()
    key = store.put(data)
    assert key == key_of(hashlib.sha256(data).hexdigest()) and key.startswith("sha256/")
    assert store.put(data) == key and list(store.stored_keys()) == [key]
    assert store.get(key) == data and store.exists(key)
    store.delete(key)
    assert not store.exists(key) and list(store.stored_keys()) == []
    with pytest.raises(FileNotFoundError):
        store.get(key)


def test_local_writes_leave_no_partial_file(tmp_path):
    store = BlobStore(str(tmp_path / "blobs"))
    assert store.local
    key = store.put(s.png())
    assert [p.name for p in (tmp_path / "blobs").rglob("*") if p.is_file()] == [key.rsplit("/", 1)[-1]]
    # a crash mid-write leaves a .part- file: never listed as a blob
    (tmp_path / "blobs" / "sha256" / "ab").mkdir(parents=True)
    (tmp_path / "blobs" / "sha256" / "ab" / ("ab" * 32 + ".part-x")).write_bytes(b"half")
    assert list(store.stored_keys()) == [key]


def test_orphans_are_the_unreferenced_old_blobs(session, store_dir):
    from service.attachments.storage import get_store

    ticket = f.make_ticket(session, "submitted")
    kept = attachments.store(session, ticket=ticket, event_id=None, filename="a.png", content_type_hint=None,
                             data=s.png(), actor=f.actor(session, "ent1"))
    orphan = get_store().put(s.gif())  # bytes whose transaction never committed
    assert attachments.orphan_keys(session, grace_seconds=3600) == []  # too young to tell
    assert attachments.orphan_keys(session, grace_seconds=0) == [orphan]
    assert kept.storage_key not in attachments.orphan_keys(session, grace_seconds=0)


def test_orphans_command(tmp_path, store_dir, monkeypatch):
    from typer.testing import CliRunner

    from qifu.cli import app
    from service.attachments.storage import get_store
    from service.config import get_settings
    from service.db import get_engine
    from tests.scratch_db import migrate

    url = f"sqlite:///{tmp_path / 'orphans.db'}"
    migrate(url)
    monkeypatch.setenv("QIFU_DATABASE_URL", url)
    get_settings.cache_clear()
    get_engine.cache_clear()
    try:
        key = get_store().put(s.gif())
        listed = CliRunner().invoke(app, ["attachments-orphans", "--grace-hours", "0"])
        assert listed.exit_code == 0 and key in listed.output and get_store().exists(key)
        deleted = CliRunner().invoke(app, ["attachments-orphans", "--grace-hours", "0", "--delete"])
        assert deleted.exit_code == 0 and f"deleted {key}" in deleted.output and not get_store().exists(key)
    finally:
        get_engine().dispose()
        get_engine.cache_clear()
        get_settings.cache_clear()

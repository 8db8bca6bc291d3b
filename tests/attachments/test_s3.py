"""The production option (issue 12): attachments in S3-compatible object storage through s3fs,
against a real S3 HTTP endpoint (moto's server, started here on a port of this test's own) and
configured as in production: an ``s3://bucket/prefix`` URL and ``endpoint_url``/keys options."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.harness import free_port

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

from service.attachments import service as attachments  # noqa: E402
from service.attachments.storage import BlobStore, get_store  # noqa: E402
from service.config import get_settings  # noqa: E402
from tests import factories as f  # noqa: E402
from tests.attachments import samples as s  # noqa: E402


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_options(s3_endpoint: str) -> dict:
    import boto3

    options = {"endpoint_url": s3_endpoint, "key": "qifu-test", "secret": "qifu-test-secret",
               "client_kwargs": {"region_name": "us-east-1"}}
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id=options["key"],
                      aws_secret_access_key=options["secret"], region_name="us-east-1")
    if "qifu-attachments" not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket="qifu-attachments")
    return options


def test_blob_store_on_s3(s3_options):
    store = BlobStore("s3://qifu-attachments/test-store", s3_options)
    assert not store.local
    data = s.pdf()
    key = store.put(data)
    assert store.put(data) == key and store.get(key) == data and store.exists(key)
    assert list(store.stored_keys()) == [key]
    assert store.age_seconds(key) is not None and store.age_seconds(key) < 600
    store.delete(key)
    store.fs.invalidate_cache()
    assert not store.exists(key)


def test_upload_and_download_through_s3(session, client, login, s3_options, monkeypatch):
    import json

    monkeypatch.setenv("QIFU_ATTACHMENT_STORAGE_URL", "s3://qifu-attachments/prod")
    monkeypatch.setenv("QIFU_ATTACHMENT_STORAGE_OPTIONS", json.dumps(s3_options))
    get_settings.cache_clear()
    get_store.cache_clear()
    try:
        ticket = f.make_ticket(session, "submitted")
        resp = client.post(f"/api/v1/tickets/{ticket.number}/attachments", headers=login("ent1"),
                           files=[("files", ("照片.png", s.png(seed=9), "image/png"))])
        assert resp.status_code == 201, resp.text
        [item] = resp.json()
        got = client.get(item["url"], headers=login("officer1"))
        assert got.status_code == 200 and got.content == s.png(seed=9)
        assert get_store().url == "s3://qifu-attachments/prod"
        assert get_store().exists(f"sha256/{item['sha256'][:2]}/{item['sha256'][2:4]}/{item['sha256']}")
        assert attachments.orphan_keys(session, grace_seconds=0) == []
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
        get_store.cache_clear()

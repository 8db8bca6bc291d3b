"""Fixtures of the attachment tests: a store of their own (a temporary local directory)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.attachments.storage import get_store
from service.config import get_settings


@pytest.fixture
def store_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Attachments go to ``tmp_path/store`` (a local fsspec store) for this test; the settings
    and store caches are cleared before and after, so no other test sees it."""
    root = tmp_path / "store"
    monkeypatch.setenv("QIFU_ATTACHMENT_STORAGE_URL", str(root))
    get_settings.cache_clear()
    get_store.cache_clear()
    yield root
    monkeypatch.undo()
    get_settings.cache_clear()
    get_store.cache_clear()


def blobs(root: Path) -> list[Path]:
    """The finished blobs under a local store's root."""
    return sorted(p for p in root.rglob("*") if p.is_file() and ".part-" not in p.name)

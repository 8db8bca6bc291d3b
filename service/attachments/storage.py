"""Where attachment bytes live: a content-addressed store over ``fsspec`` (issue 12;
docs/attachments.md).

The store is named by a URL (setting ``attachment_storage_url``): a local directory by default
(beside the SQLite file, ``qifu.db.attachments/``, or ``./attachments``), ``s3://bucket/prefix``
for S3-compatible object storage (the ``s3`` extra installs ``s3fs``; endpoint and keys in
``attachment_storage_options``), or any other fsspec protocol (``memory://`` in tests).

Keys are content addresses, ``sha256/<first 2>/<next 2>/<sha256>``: the same bytes are stored
once, however many tickets carry them, and a key never changes meaning, so a write can be retried
and a blob never needs updating. Bytes are written before the database row that names them
(:func:`service.attachments.service.store`); a transaction that then fails leaves an unreferenced
blob, which :func:`service.attachments.service.orphan_keys` finds (docs/attachments.md "Orphans").
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import fsspec

from service.config import Settings, get_settings

PREFIX = "sha256"


def key_of(sha256: str) -> str:
    """The storage key of the bytes whose SHA-256 (hex, lower case) is ``sha256``."""
    return f"{PREFIX}/{sha256[:2]}/{sha256[2:4]}/{sha256}"


def store_url(settings: Settings) -> str:
    """The store's URL: ``attachment_storage_url``, else a directory beside the SQLite file
    (``qifu.db`` -> ``qifu.db.attachments``), else ``./attachments`` (absolute paths)."""
    if settings.attachment_storage_url:
        return settings.attachment_storage_url
    if settings.is_sqlite:
        from sqlalchemy.engine import make_url

        database = make_url(settings.database_url).database
        if database and database != ":memory:" and not database.startswith("file:"):
            return str(Path(database + ".attachments").resolve())
    return str(Path("attachments").resolve())


class BlobStore:
    """Content-addressed bytes in an fsspec file system rooted at ``url``.

    Args:
        url: an fsspec URL or a local path.
        options: keyword options of the file system (s3fs: ``endpoint_url``, ``key``, ``secret``,
            ``client_kwargs`` ...).
    """

    def __init__(self, url: str, options: dict[str, Any] | None = None) -> None:
        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url, **(options or {}))
        self.root = root.rstrip("/")
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        self.local = "file" in protocols or "local" in protocols

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def put(self, data: bytes, sha256: str | None = None) -> str:
        """Store ``data`` under its content address and return the key.

        Written even when the key exists (the same bytes, so nothing changes but the blob's
        time): a blob that the orphan cleanup is about to remove as old and unreferenced is
        young again, so a new row never names bytes being deleted. On a local disk the bytes go to
        a temporary name in the same directory and are renamed into place, so a crash never
        leaves a partial file under a content address; object stores write a whole object or nothing.

        Raises:
            OSError: the store cannot be written.
        """
        sha256 = sha256 or hashlib.sha256(data).hexdigest()
        key = key_of(sha256)
        path = self._path(key)
        if self.local:
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            temp = f"{path}.part-{uuid.uuid4().hex}"
            self.fs.pipe_file(temp, data)
            self.fs.mv(temp, path)
        else:
            self.fs.pipe_file(path, data)
        return key

    def get(self, key: str) -> bytes:
        """The bytes stored under ``key``.

        Raises:
            FileNotFoundError: nothing is stored under it.
        """
        return self.fs.cat_file(self._path(key))

    def exists(self, key: str) -> bool:
        return self.fs.exists(self._path(key))

    def delete(self, key: str) -> None:
        """Remove the blob ``key`` (orphan cleanup only: rows never lose their bytes)."""
        self.fs.rm_file(self._path(key))

    def age_seconds(self, key: str, now: datetime | None = None) -> float | None:
        """Seconds since the blob ``key`` was written (``None`` when the store cannot tell)."""
        try:
            written = self.fs.modified(self._path(key))
        except (NotImplementedError, FileNotFoundError, AttributeError):
            return None
        if written.tzinfo is None:  # local files: naive local time
            written = written.astimezone()
        return ((now or datetime.now(UTC)) - written).total_seconds()

    def stored_keys(self) -> Iterator[str]:
        """Every key in the store (finished blobs only, not temporary ``.part-`` files)."""
        base = f"{self.root}/{PREFIX}"
        if not self.fs.exists(base):
            return
        for path in self.fs.find(base):
            name = path.rsplit("/", 1)[-1]
            if len(name) == 64 and ".part-" not in name:
                yield key_of(name)


@lru_cache
def get_store() -> BlobStore:
    """The process's store, from the settings (tests call ``get_store.cache_clear()`` with them)."""
    settings = get_settings()
    return BlobStore(store_url(settings), settings.attachment_storage_options)

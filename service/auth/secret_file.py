"""The JWT secret of the embedded default, and the start-up check of the settings (issue 11).

``qifu standalone`` without ``QIFU_JWT_SECRET`` must not sign tokens with the development secret
printed in the source (anyone could forge an admin token): it generates a random secret on first
start, keeps it in a file beside the database (mode 0600) and reuses it on later starts.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import ValidationError

from service.config import DEV_SECRET, MIN_SECRET_BYTES, Settings, get_settings


class SettingsRefused(RuntimeError):
    """The settings cannot be used to serve (the message says which and why, for a person)."""


def check_settings() -> Settings:
    """The process settings, validated before anything starts (``qifu serve``, the ASGI app).

    Raises:
        SettingsRefused: a setting is invalid, e.g. the development JWT secret outside
            development and test, or a secret shorter than ``MIN_SECRET_BYTES`` bytes.
    """
    try:
        return get_settings()
    except ValidationError as exc:
        problems = "；".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise SettingsRefused(f"配置无效，拒绝启动：{problems}") from None


def secret_path(settings: Settings) -> Path:
    """Where the embedded default keeps its generated secret: ``settings.jwt_secret_file``, else
    beside the SQLite file (``qifu.db`` -> ``qifu.db.secret``), else ``./qifu.secret``."""
    if settings.jwt_secret_file:
        return Path(settings.jwt_secret_file)
    if settings.is_sqlite:
        from sqlalchemy.engine import make_url

        database = make_url(settings.database_url).database
        if database and database != ":memory:" and not database.startswith("file:"):
            return Path(database + ".secret")
    return Path("qifu.secret")


def ensure_standalone_secret() -> Path | None:
    """Give this process a JWT secret of its own when none is configured.

    Returns ``None`` when ``QIFU_JWT_SECRET`` (or ``.env``) sets one. Otherwise reads the secret
    file (:func:`secret_path`), or creates it with a random 48-byte URL-safe secret (mode 0600,
    never overwritten), exports it as ``QIFU_JWT_SECRET`` for this process and the ones it
    starts, and returns the file's path.

    Raises:
        SettingsRefused: the configured secret is too short, or the file holds one too short, or
            the file cannot be read or created.
    """
    try:
        configured = Settings(environment="development")  # everything as configured but the check
    except ValidationError as exc:
        raise SettingsRefused(f"配置无效，拒绝启动：{exc.errors()[0]['msg']}") from None
    if configured.jwt_secret != DEV_SECRET:
        return None
    path = secret_path(configured)
    try:
        if path.exists():
            secret = path.read_text(encoding="utf-8").strip()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            secret = secrets.token_urlsafe(48)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(secret + "\n")
    except OSError as exc:
        raise SettingsRefused(f"无法读写 JWT 密钥文件 {path}：{exc.strerror or exc}") from None
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise SettingsRefused(f"JWT 密钥文件 {path} 中的密钥短于 {MIN_SECRET_BYTES} 字节，拒绝启动")
    os.environ["QIFU_JWT_SECRET"] = secret
    get_settings.cache_clear()
    return path

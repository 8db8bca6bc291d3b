"""Start-up refuses weak JWT secrets; the embedded default generates its own (issue 11)."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from service.auth.secret_file import SettingsRefused, check_settings, ensure_standalone_secret, secret_path
from service.config import DEV_SECRET, Settings, get_settings

ROOT = Path(__file__).resolve().parents[2]
GOOD = "a-long-enough-secret-for-hs256-0123456789"


@pytest.fixture
def env(monkeypatch):
    """Set ``QIFU_*`` variables for the settings (cache cleared before and after)."""

    def set_env(**values: str | None) -> None:
        for key, value in values.items():
            if value is None:
                monkeypatch.delenv(key, raising=False)
            else:
                monkeypatch.setenv(key, value)
        get_settings.cache_clear()

    # recorded so that what ensure_standalone_secret exports is taken back afterwards
    monkeypatch.setenv("QIFU_JWT_SECRET", DEV_SECRET)
    yield set_env
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.mark.parametrize("environment", ["production", "staging"])
def test_development_secret_refused_outside_development(env, environment):
    env(QIFU_ENVIRONMENT=environment, QIFU_JWT_SECRET=None)
    with pytest.raises(SettingsRefused, match="QIFU_JWT_SECRET"):
        check_settings()
    env(QIFU_JWT_SECRET=GOOD)
    assert check_settings().jwt_secret == GOOD


@pytest.mark.parametrize("environment", ["development", "test", "production"])
def test_short_secrets_refused_everywhere(environment):
    with pytest.raises(ValueError, match="at least 32 bytes"):
        Settings(environment=environment, jwt_secret="x" * 31)
    assert Settings(environment=environment, jwt_secret="x" * 32).jwt_secret == "x" * 32
    with pytest.raises(ValueError, match="at least 32 bytes"):  # bytes, not characters
        Settings(environment=environment, jwt_secret="密" * 10)


def test_the_app_is_not_built_with_a_refused_secret(env):
    from qifu.main import create_app

    env(QIFU_ENVIRONMENT="production", QIFU_JWT_SECRET=None)
    with pytest.raises(SettingsRefused):
        create_app()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(("extra", "words"), [
    ({"QIFU_ENVIRONMENT": "production"}, "QIFU_JWT_SECRET must be set"),
    ({"QIFU_ENVIRONMENT": "production", "QIFU_JWT_SECRET": "short-secret"}, "at least 32 bytes"),
    ({"QIFU_ENVIRONMENT": "development", "QIFU_JWT_SECRET": "short-secret"}, "at least 32 bytes"),
])
def test_qifu_serve_refuses_to_start(extra, words, tmp_path):
    """``qifu serve``: a clear message and exit code 2 before anything listens."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("QIFU_")}
    environ.update(extra, QIFU_DATABASE_URL=f"sqlite:///{tmp_path / 'qifu.db'}")
    port = _free_port()
    done = subprocess.run([sys.executable, "-m", "qifu.cli", "serve", "--port", str(port)], cwd=tmp_path,
                          env={**environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "拒绝启动" in done.stderr and words in done.stderr


def test_standalone_generates_a_secret_beside_the_database_and_reuses_it(env, tmp_path):
    env(QIFU_DATABASE_URL=f"sqlite:///{tmp_path / 'data' / 'qifu.db'}", QIFU_JWT_SECRET=None)
    path = ensure_standalone_secret()
    assert path == tmp_path / "data" / "qifu.db.secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secret = path.read_text().strip()
    assert len(secret) >= 32 and os.environ["QIFU_JWT_SECRET"] == secret == get_settings().jwt_secret
    # a later start reuses it
    env(QIFU_JWT_SECRET=None)
    assert ensure_standalone_secret() == path and get_settings().jwt_secret == secret
    # tokens signed with it are not accepted with the development secret
    from service.auth.security import create_access_token, decode_access_token

    token, _ = create_access_token(1, "admin")
    env(QIFU_JWT_SECRET=DEV_SECRET)
    with pytest.raises(Exception, match="无效"):
        decode_access_token(token)


def test_standalone_keeps_a_configured_secret(env, tmp_path):
    env(QIFU_DATABASE_URL=f"sqlite:///{tmp_path / 'qifu.db'}", QIFU_JWT_SECRET=GOOD)
    assert ensure_standalone_secret() is None
    assert not (tmp_path / "qifu.db.secret").exists() and get_settings().jwt_secret == GOOD


def test_standalone_refuses_a_short_secret_file(env, tmp_path):
    (tmp_path / "qifu.db.secret").write_text("too-short\n")
    env(QIFU_DATABASE_URL=f"sqlite:///{tmp_path / 'qifu.db'}", QIFU_JWT_SECRET=None)
    with pytest.raises(SettingsRefused, match="短于 32 字节"):
        ensure_standalone_secret()


def test_secret_path_without_a_sqlite_file(tmp_path):
    assert secret_path(Settings(database_url="postgresql+psycopg://postgres@127.0.0.1/qifu")) == Path("qifu.secret")
    assert secret_path(Settings(database_url="sqlite://")) == Path("qifu.secret")
    chosen = tmp_path / "k"
    assert secret_path(Settings(jwt_secret_file=str(chosen))) == chosen

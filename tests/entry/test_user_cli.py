"""``qifu user create``: the first administrator of a fresh stack (issue 11)."""

from __future__ import annotations

import uuid

import pytest
from sqlmodel import Session, delete, select
from typer.testing import CliRunner

from qifu import user_cli
from qifu.cli import app
from service.auth.security import verify_password
from service.config import get_settings
from service.db import get_engine
from service.users.models import User

runner = CliRunner()


@pytest.fixture
def cli_db(pg_url, monkeypatch):
    """The CLI works on this process's test database; returns a session factory to check it."""
    monkeypatch.setenv("QIFU_DATABASE_URL", pg_url)
    monkeypatch.delenv(user_cli.PASSWORD_ENV, raising=False)
    get_settings.cache_clear()
    get_engine.cache_clear()
    yield lambda: Session(get_engine())
    with Session(get_engine()) as s:  # committed: leave no extra admins for other tests
        s.exec(delete(User).where(User.username.like(f"{PREFIX}%")))
        s.commit()
    get_engine().dispose()
    monkeypatch.undo()
    get_settings.cache_clear()
    get_engine.cache_clear()


PREFIX = "clitest_"


def _name() -> str:
    return f"{PREFIX}{uuid.uuid4().hex[:10]}"


def _user(cli_db, username: str) -> User | None:
    with cli_db() as s:
        return s.exec(select(User).where(User.username == username)).first()


def test_create_an_admin_with_the_password_on_stdin(cli_db):
    name = _name()
    done = runner.invoke(app, ["user", "create", name, "--full-name", "首位管理员", "--password-stdin"],
                         input="a-strong-password-2026\n")
    assert done.exit_code == 0, done.output
    assert name in done.output
    user = _user(cli_db, name)
    assert user.role == "admin" and user.is_active and user.full_name == "首位管理员"
    assert user.password_hash.startswith("$argon2id$")
    assert verify_password("a-strong-password-2026", user.password_hash)


def test_create_with_the_password_from_the_environment(cli_db, monkeypatch, session):
    name = _name()
    monkeypatch.setenv(user_cli.PASSWORD_ENV, "from-the-env-2026")
    region = session.exec(select(User.region_id).where(User.region_id.is_not(None))).first()
    done = runner.invoke(app, ["user", "create", name, "--full-name", "督办", "--role", "supervisor",
                               "--region-id", str(region)])
    assert done.exit_code == 0, done.output
    user = _user(cli_db, name)
    assert user.role == "supervisor" and user.region_id == region
    assert verify_password("from-the-env-2026", user.password_hash)


def test_create_with_a_hidden_prompt(cli_db, monkeypatch):
    monkeypatch.setattr(user_cli, "_interactive", lambda: True)
    name = _name()
    done = runner.invoke(app, ["user", "create", name, "--full-name", "管理员"],
                         input="typed-password-1\ntyped-password-1\n")
    assert done.exit_code == 0, done.output
    assert "typed-password-1" not in done.output  # hidden
    assert verify_password("typed-password-1", _user(cli_db, name).password_hash)


def test_no_terminal_and_no_password_refused(cli_db):
    name = _name()
    done = runner.invoke(app, ["user", "create", name, "--full-name", "管理员"])
    assert done.exit_code == 2 and "--password-stdin" in done.output
    assert _user(cli_db, name) is None


def test_the_password_is_not_an_argument(cli_db):
    done = runner.invoke(app, ["user", "create", _name(), "--full-name", "x", "--password", "in-argv-2026"])
    assert done.exit_code == 2 and "No such option" in done.output


@pytest.mark.parametrize(("args", "stdin", "words"), [
    (["--full-name", "x"], "short\n", "password"),
    (["--full-name", "x"], "\n", "password"),
    (["--full-name", "x"], "nul\x00in-password\n", "password"),
    (["--full-name", ""], "long-enough-2026\n", "full_name"),
    (["--full-name", "x", "--role", "king"], "long-enough-2026\n", "role"),
    (["--full-name", "x", "--role", "enterprise"], "long-enough-2026\n", "企业用户必须指定所属企业"),
    (["--full-name", "x", "--role", "department", "--department-id", str(2**31 - 1)], "long-enough-2026\n",
     "department_id"),
    (["--full-name", "x", "--role", "department", "--department-id", str(2**31)], "long-enough-2026\n",
     "department_id"),
])
def test_bad_input_creates_nothing(cli_db, args, stdin, words):
    name = _name()
    done = runner.invoke(app, ["user", "create", name, *args, "--password-stdin"], input=stdin)
    assert done.exit_code == 2, done.output
    assert words in done.output
    assert _user(cli_db, name) is None


@pytest.mark.parametrize("username", ["has space", "x", "名字", "a" * 65])
def test_bad_usernames_refused(cli_db, username):
    done = runner.invoke(app, ["user", "create", username, "--full-name", "x", "--password-stdin"],
                         input="long-enough-2026\n")
    assert done.exit_code == 2 and "username" in done.output
    assert _user(cli_db, username) is None


def test_a_taken_username_is_refused(cli_db):
    name = _name()
    first = runner.invoke(app, ["user", "create", name, "--full-name", "x", "--password-stdin"],
                          input="long-enough-2026\n")
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["user", "create", name, "--full-name", "y", "--password-stdin"],
                          input="other-password-2026\n")
    assert again.exit_code == 2 and name in again.output
    assert _user(cli_db, name).full_name == "x"

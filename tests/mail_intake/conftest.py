"""Fixtures of the e-mail intake tests: a real Dovecot per test process (:mod:`tests.mail_intake.dovecot`),
a folder of its own per test, the intake's settings, and a unit of work on the test's session
(each message's transaction is a savepoint of the rolled-back test transaction)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlmodel import Session

from tests import factories as f
from tests.mail_intake.dovecot import Dovecot, available


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """Dovecot for this test process (stopped, its directory removed, at the end)."""
    if not available():
        if os.environ.get("CI"):  # CI installs it (.ci/run): a missing server there is a failure
            raise RuntimeError("dovecot is not installed: .ci/run installs dovecot-imapd")
        pytest.skip("dovecot is not installed (apt-get install -y dovecot-imapd; .ci/run does it)")
    with Dovecot() as server:
        yield server


@pytest.fixture
def folder(dovecot: Dovecot) -> Iterator[str]:
    """A new IMAP folder for this test (deleted afterwards)."""
    name = dovecot.new_folder("t" + uuid.uuid4().hex[:16])
    yield name
    with dovecot.client() as client:
        client.delete_folder(name)


@pytest.fixture
def mail_settings(dovecot: Dovecot, folder: str):
    return dovecot.settings(folder)


@pytest.fixture
def unit_of_work(session: Session):
    """``poll(..., unit_of_work=...)`` on the test's session: commit = release a savepoint."""

    @contextmanager
    def scope() -> Iterator[Session]:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise

    return scope


@pytest.fixture
def contact(session: Session) -> str:
    """A unique e-mail address registered on ``ent1`` (enterprise #1's user)."""
    address = f"ent1-{uuid.uuid4().hex[:10]}@example.com"
    f.user(session, "ent1").email = address
    session.flush()
    return address

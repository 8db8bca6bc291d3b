"""Exactly once under crashes (issue 12 figure, CI size): ``qifu mail poll`` run as a subprocess
against Dovecot and a PostgreSQL database of its own is SIGKILLed at random points while it takes
100 messages (5 kills), restarted until nothing is pending; every message is then in the ledger
once, and the tickets are exactly the contacts' messages. Two polls at once take each message
once too. The full-size run (1,000 messages) is ``bench/mail_intake.py``."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from sqlmodel import Session, select

from service.db import make_engine
from service.users.models import User
from tests.conftest import PG_SERVER
from tests.mail_intake.harness import ROOT, check_exactly_once, deliver_mix, poll_command, run_with_kills
from tests.scratch_db import scratch_database

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def kill_db() -> Iterator[tuple[str, str]]:
    """A database of its own (the pollers commit), with a registered contact on ``ent1``:
    ``(url, address)``."""
    with scratch_database(PG_SERVER, f"qifu_test_email_kill_{os.getpid()}", enterprises=20) as url:
        engine = make_engine(url)
        address = f"kill-{uuid.uuid4().hex[:8]}@example.com"
        with Session(engine) as session:
            session.exec(select(User).where(User.username == "ent1")).one().email = address
            session.commit()
        engine.dispose()
        yield url, address


def test_killed_worker_leaves_exactly_one_ticket_per_message(kill_db, dovecot):
    url, address = kill_db
    folder = dovecot.new_folder("kill" + uuid.uuid4().hex[:10])
    expected = deliver_mix(dovecot, folder, address, 100)
    outcome = run_with_kills(url, dovecot, folder, kills=5, seed=int(os.environ.get("QIFU_KILL_SEED", "12")))
    assert outcome["kills"] == 5, outcome
    check_exactly_once(url, dovecot, folder, address, expected)


def test_two_polls_at_once_take_each_message_once(kill_db, dovecot):
    url, address = kill_db
    folder = dovecot.new_folder("pair" + uuid.uuid4().hex[:10])
    expected = deliver_mix(dovecot, folder, address, 40)
    command, env = poll_command(url, dovecot, folder)
    procs = [subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    created = sum(sum(r["states"].values()) for r in results)
    assert created == 40, results
    check_exactly_once(url, dovecot, folder, address, expected)

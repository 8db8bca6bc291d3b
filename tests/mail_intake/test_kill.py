"""Exactly once under crashes (issue 12 figure, CI size): ``qifu mail poll`` run as a subprocess
against Dovecot and a PostgreSQL database of its own is SIGKILLed at random points while it takes
100 messages (5 kills), restarted until nothing is pending; every message is then in the ledger
once, and the tickets are exactly the contacts' messages. Two polls at once take each message
once too. The full-size run (1,000 messages) is ``bench/mail_intake.py``."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from service.db import make_engine
from service.mail_intake.models import InboundMail
from service.tickets.models import Ticket
from service.users.models import User
from tests.conftest import PG_SERVER
from tests.mail_intake import messages as m
from tests.mail_intake.dovecot import Dovecot
from tests.scratch_db import scratch_database

ROOT = Path(__file__).resolve().parents[2]


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


def deliver_mix(dovecot: Dovecot, folder: str, address: str, n: int) -> tuple[int, int, int]:
    """``n`` messages: 8 in 10 from the contact, 1 in 10 from strangers, 1 in 10 auto-replies;
    returns the counts ``(tickets, quarantined, ignored)`` expected."""
    raws, expected = [], [0, 0, 0]
    for i in range(n):
        kind = 0 if i % 10 < 8 else (1 if i % 10 == 8 else 2)
        expected[kind] += 1
        if kind == 0:
            raws.append(m.plain(f"联系人 <{address}>", f"诉求 {i}", f"第 {i} 件诉求的正文。"))
        elif kind == 1:
            raws.append(m.plain(f"s{i}@unknown.example", f"陌生来信 {i}", "正文"))
        else:
            raws.append(m.auto_reply(address, f"自动回复 {i}", ("Auto-Submitted", "auto-replied")))
    with dovecot.client() as client:
        for raw in raws:
            client.append(folder, raw)
    return tuple(expected)


def poll_command(url: str, dovecot: Dovecot, folder: str) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "QIFU_DATABASE_URL": url, "QIFU_REDIS_URL": "", "QIFU_MAIL_BATCH_SIZE": "10",
           "QIFU_LOG_LEVEL": "WARNING", **dovecot.settings_env(folder)}
    return [sys.executable, "-m", "qifu.cli", "mail", "poll"], env


def rows(engine, folder: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(InboundMail)
                            .where(InboundMail.folder == folder)).scalar_one()


def run_with_kills(url: str, dovecot: Dovecot, folder: str, kills: int, seed: int,
                   timeout: float = 600) -> dict:
    """Run ``qifu mail poll`` until nothing is pending, SIGKILLing the first ``kills`` runs after a
    random 1-15 further messages are committed; returns ``{"kills", "runs", "last"}``."""
    command, env = poll_command(url, dovecot, folder)
    engine = make_engine(url)
    rng = random.Random(seed)
    done_kills = runs = 0
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            runs += 1
            proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if done_kills < kills:
                target = rows(engine, folder) + rng.randint(1, 15)
                while proc.poll() is None and rows(engine, folder) < target and time.monotonic() < deadline:
                    time.sleep(0.02)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    proc.communicate()
                    done_kills += 1
                    continue
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
            last = json.loads(out.decode().strip().splitlines()[-1])
            if last["pending_after"] == 0:
                return {"kills": done_kills, "runs": runs, "last": last}
        raise AssertionError("the polls did not finish in time")
    finally:
        engine.dispose()


def check_exactly_once(url: str, dovecot: Dovecot, folder: str, address: str, expected: tuple[int, int, int]):
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            states = dict(session.execute(sa.select(InboundMail.state, sa.func.count()).where(
                InboundMail.folder == folder).group_by(InboundMail.state)).all())
            ticket_ids = session.execute(sa.select(InboundMail.ticket_id).where(
                InboundMail.folder == folder, InboundMail.state == "ticket")).scalars().all()
            contact_id = session.exec(select(User.id).where(User.email == address)).one()
            tickets = session.execute(sa.select(sa.func.count()).select_from(Ticket).where(
                Ticket.id.in_(ticket_ids), Ticket.channel == "email", Ticket.submitted_by_id == contact_id)).scalar()
    finally:
        engine.dispose()
    assert states == {"ticket": expected[0], "quarantined": expected[1], "ignored": expected[2]}
    assert len(set(ticket_ids)) == len(ticket_ids) == tickets == expected[0]
    with dovecot.client(folder) as client:
        assert client.search(["NOT", "KEYWORD", "$QifuIntake"]) == []


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

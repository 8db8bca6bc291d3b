"""Crash harness of the e-mail intake, shared by tests/mail_intake/test_kill.py (CI size) and
bench/mail_intake.py (1,000 messages): deliver a mix of messages to a Dovecot folder, run
``qifu mail poll`` as a subprocess and SIGKILL it at random points until nothing is pending,
then check that every message was taken exactly once."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session, select

from service.db import make_engine
from service.mail_intake.models import InboundMail
from service.tickets.models import Ticket
from service.users.models import User
from tests.mail_intake import messages as m
from tests.mail_intake.dovecot import Dovecot

ROOT = Path(__file__).resolve().parents[2]


def deliver_mix(dovecot: Dovecot, folder: str, address: str, n: int, *, contacts_only: bool = False
                ) -> tuple[int, int, int]:
    """``n`` messages: 8 in 10 from the contact, 1 in 10 from strangers, 1 in 10 auto-replies
    (all from the contact with ``contacts_only``); every fifth contact message is GB18030 and every
    tenth carries a PNG. Returns the counts ``(tickets, quarantined, ignored)`` expected."""
    raws, expected = [], [0, 0, 0]
    for i in range(n):
        kind = 0 if contacts_only or i % 10 < 8 else (1 if i % 10 == 8 else 2)
        expected[kind] += 1
        if kind == 0 and i % 10 == 3:
            raws.append(m.with_attachments(f"联系人 <{address}>", f"诉求 {i}", f"第 {i} 件诉求，附现场照片。",
                                           [(f"现场{i}.png", "image/png", m.png(2 + i % 7, 2))]))
        elif kind == 0 and i % 5 == 1:
            raws.append(m.gb18030(f"联系人 <{address}>", f"诉求 {i}（用电）", f"第 {i} 件诉求的正文，GB18030 编码。"))
        elif kind == 0:
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


def run_with_kills(url: str, dovecot: Dovecot, folder: str, kills: int, seed: int, *, max_step: int = 15,
                   timeout: float = 600, extra_env: dict[str, str] | None = None) -> dict:
    """Run ``qifu mail poll`` until nothing is pending, SIGKILLing the first ``kills`` runs once a
    random 1-``max_step`` further messages are committed (so each kill lands mid-batch, between
    commits and flags); returns ``{"kills", "runs", "last", "seconds"}``."""
    command, env = poll_command(url, dovecot, folder)
    env.update(extra_env or {})
    engine = make_engine(url)
    rng = random.Random(seed)
    done_kills = runs = 0
    started = time.monotonic()
    deadline = started + timeout
    try:
        while time.monotonic() < deadline:
            runs += 1
            proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if done_kills < kills:
                target = rows(engine, folder) + rng.randint(1, max_step)
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
                return {"kills": done_kills, "runs": runs, "last": last, "seconds": time.monotonic() - started}
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
    wanted = {"ticket": expected[0], "quarantined": expected[1], "ignored": expected[2]}
    assert states == {state: count for state, count in wanted.items() if count}, states
    assert len(set(ticket_ids)) == len(ticket_ids) == tickets == expected[0]
    with dovecot.client(folder) as client:
        assert client.search(["NOT", "KEYWORD", "$QifuIntake"]) == []

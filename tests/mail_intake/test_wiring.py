"""The intake's wiring: the beat entry (only when enabled), the Celery task, the embedded
scheduler's round, and the headers of Qifu's notification e-mails that replies are matched by."""

from __future__ import annotations

import email
import email.policy
import re

import pytest
import sqlalchemy as sa

from service.config import Settings, get_settings
from service.db import get_engine
from service.mail_intake.models import InboundMail
from service.notifications import service as notifications
from service.notifications.models import Notification
from tests.mail_intake import messages as m
from workers import mail_tasks
from workers.celery_app import beat_schedule


def test_beat_polls_only_when_enabled():
    assert "mail-poll" not in beat_schedule(Settings())
    entry = beat_schedule(Settings(mail_enabled=True, mail_poll_seconds=45))["mail-poll"]
    assert entry == {"task": "mail.poll", "schedule": 45.0, "options": {"expires": 45.0}}


@pytest.fixture
def env(monkeypatch):
    def set_env(**values):
        for key, value in values.items():
            monkeypatch.setenv(key, str(value))
        get_settings.cache_clear()
        get_engine.cache_clear()

    yield set_env
    monkeypatch.undo()
    get_settings.cache_clear()
    get_engine.cache_clear()


def test_the_task_polls_when_enabled(env, pg_url, dovecot, folder, session):
    env(QIFU_DATABASE_URL=pg_url, **dovecot.settings_env(folder))
    assert mail_tasks.poll_mailbox() == {"enabled": False}
    # an auto-reply: the task commits to the shared test database, a ledger row and nothing else
    dovecot.append(folder, m.auto_reply("someone@example.com", "诉求", ("Auto-Submitted", "auto-replied")))
    env(QIFU_MAIL_ENABLED="true")
    result = mail_tasks.poll_mailbox()
    assert (result["fetched"], result["states"]) == (1, {"ignored": 1})
    assert session.execute(sa.select(sa.func.count()).select_from(InboundMail)
                           .where(InboundMail.folder == folder)).scalar() == 1


def test_notification_mail_headers():
    about_ticket = Notification(id=7, user_id=1, ticket_id=3, kind="replied", title="诉求已答复：办理结果", body="详见")
    message = email.message_from_bytes(
        notifications.email_message("a@example.com", about_ticket, "QF2026-000123").as_bytes(),
        policy=email.policy.default)
    assert re.fullmatch(r"<ticket-QF2026-000123\.[0-9a-f]{32}@qifu>", message["Message-ID"])
    assert message["Subject"] == "[QF2026-000123] 诉求已答复：办理结果"  # the number, when the title lacks it
    assert message["Auto-Submitted"] == "auto-generated" and message["X-Auto-Response-Suppress"] == "All"
    general = Notification(id=8, user_id=1, kind="follow_up", title="本月复诊名单", body="")
    message = notifications.email_message("a@example.com", general)
    assert message["Message-ID"].endswith("@qifu>") and "ticket-" not in message["Message-ID"]
    assert message["Subject"] == "本月复诊名单"


def test_servers_without_keywords_fall_back_to_seen():
    from service.mail_intake import imap

    assert imap.keywords_allowed({b"PERMANENTFLAGS": (b"\\Seen", b"\\Deleted", b"\\*")})
    assert not imap.keywords_allowed({b"PERMANENTFLAGS": (b"\\Seen", b"\\Deleted")})
    assert not imap.keywords_allowed({})

    class Client:
        qifu_keywords = False

    assert imap.marks(Client()) == ([imap.SEEN], ["UNSEEN"])
    Client.qifu_keywords = True
    assert imap.marks(Client()) == ([imap.SEEN, imap.KEYWORD], ["NOT", "KEYWORD", "$QifuIntake"])

"""The e-mail intake's Celery task (issue 12, docs/mail_intake.md). Thin: it calls
:func:`service.mail_intake.imap.poll`, which takes each message in a transaction of its own and
flags it on the IMAP server afterwards (exactly once, even when the worker dies mid-poll)."""

from __future__ import annotations

from celery import shared_task

from service.config import get_settings
from service.mail_intake import imap
from service.observability.metrics import timed_sweep


@shared_task(name="mail.poll")
def poll_mailbox() -> dict:
    """Poll the intake mailbox once (beat entry ``mail-poll`` every ``QIFU_MAIL_POLL_SECONDS``);
    returns the poll's counts. Does nothing when ``QIFU_MAIL_ENABLED`` is false."""
    settings = get_settings()
    if not settings.mail_enabled:
        return {"enabled": False}
    with timed_sweep("mail.poll") as box:
        result = imap.poll(settings)
        box["result"] = result.fetched
    return result.as_dict()

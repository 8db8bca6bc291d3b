"""``qifu mail``: the e-mail intake by hand (issue 12, docs/mail_intake.md)::

    qifu mail poll              # take the pending messages of the intake mailbox once
    qifu mail poll --limit 10   # at most 10 of them

The mailbox comes from the ``QIFU_MAIL_IMAP_*`` settings; a one-off poll runs even when
``QIFU_MAIL_ENABLED`` (the beat schedule) is off.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

mail_app = typer.Typer(help="邮件接入：轮询 IMAP 邮箱，来信生成工单", no_args_is_help=True)


@mail_app.command("poll")
def poll(limit: Annotated[int | None, typer.Option(min=1, help="most messages to take (default "
                                                   "QIFU_MAIL_MAX_MESSAGES_PER_POLL)")] = None) -> None:
    """Poll the intake mailbox once and print the counts as JSON: fetched, new rows by state
    (ticket, add_info, comment, quarantined, ignored, failed), skipped (processed before),
    deferred (left for the next poll), seconds."""
    from qifu.cli import require_migrated
    from service.mail_intake import imap

    require_migrated()
    result = imap.poll(limit=limit)
    typer.echo(json.dumps({**result.as_dict(), "pending_after": result.pending_after}, ensure_ascii=False))

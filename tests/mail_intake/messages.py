"""Real MIME messages for the intake's tests and benchmark, built with the standard library's
``email`` package the way mail clients build them: UTF-8 (``email.policy.SMTP``) and GB18030
(``email.mime`` with ``email.header.Header``: RFC 2047 encoded words) bodies and subjects,
HTML-only mail, PDF/PNG attachments, replies, auto-replies and RFC 3464 delivery reports."""

from __future__ import annotations

import base64
import struct
import uuid
import zlib
from datetime import UTC, datetime
from email.header import Header
from email.message import EmailMessage, Message
from email.policy import SMTP, compat32
from email.utils import format_datetime, formataddr, make_msgid, parseaddr

PDF = (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] "
       b"/Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")


def png(width: int = 2, height: int = 2) -> bytes:
    """A valid RGB PNG of ``width`` x ``height`` red pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _base(sender: str, subject: str, *, to: str = "qiye@qifu.example", message_id: bool | str = True,
          headers: dict[str, str] | None = None) -> EmailMessage:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime(2026, 12, 4, 9, 30, tzinfo=UTC))
    if message_id is True:
        msg["Message-ID"] = make_msgid(idstring=uuid.uuid4().hex[:12], domain="client.example")
    elif message_id:
        msg["Message-ID"] = message_id
    for name, value in (headers or {}).items():
        msg[name] = value
    return msg


def plain(sender: str, subject: str, body: str, **kwargs) -> bytes:
    """A UTF-8 ``text/plain`` message (non-ASCII subject as RFC 2047 UTF-8 encoded words)."""
    msg = _base(sender, subject, **kwargs)
    msg.set_content(body)
    return msg.as_bytes()


def gb18030(sender: str, subject: str, body: str, *, label: str = "gb18030") -> bytes:
    """A message the way many Chinese clients write it: body in GB18030 (declared ``label``, e.g.
    ``gb2312`` for the common mislabel), subject as GB18030 base64 encoded words."""
    msg = Message()
    name, address = parseaddr(sender)
    msg["From"] = formataddr((name, address), charset="gb18030")
    msg["To"] = "qiye@qifu.example"
    msg["Subject"] = Header(subject, "gb18030")
    msg["Date"] = format_datetime(datetime(2026, 12, 4, 9, 30, tzinfo=UTC))
    msg["Message-ID"] = make_msgid(domain="foxmail.example")
    msg["MIME-Version"] = "1.0"
    msg["Content-Type"] = f'text/plain; charset="{label}"'
    msg["Content-Transfer-Encoding"] = "base64"
    msg.set_payload(base64.encodebytes(body.encode("gb18030")).decode("ascii"))
    return msg.as_bytes(policy=compat32.clone(linesep="\r\n"))


def html_only(sender: str, subject: str, html: str) -> bytes:
    """A message with only a ``text/html`` body."""
    msg = _base(sender, subject)
    msg.set_content(html, subtype="html")
    return msg.as_bytes()


def with_attachments(sender: str, subject: str, body: str, files: list[tuple[str, str, bytes]]) -> bytes:
    """A ``multipart/mixed`` message: the text, then ``files`` as ``(name, mime type, bytes)``
    (non-ASCII names encoded per RFC 2231 by the ``email`` package)."""
    msg = _base(sender, subject)
    msg.set_content(body)
    for name, mime, data in files:
        maintype, subtype = mime.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes()


def reply(sender: str, original: EmailMessage | None, body: str, *, subject: str | None = None,
          quote: str = "") -> bytes:
    """A reply to ``original`` (``In-Reply-To``/``References`` name its ``Message-ID``); ``quote``
    is appended as a client quotes the original."""
    msg = _base(sender, subject or f"Re: {original['Subject']}")
    if original is not None:
        msg["In-Reply-To"] = original["Message-ID"]
        msg["References"] = original["Message-ID"]
    text = body + (f"\n\n在 2026年12月4日 09:00，Qifu 写道：\n> {quote}\n" if quote else "")
    msg.set_content(text)
    return msg.as_bytes()


def auto_reply(sender: str, subject: str, header: tuple[str, str]) -> bytes:
    """An automatic answer carrying ``header`` (e.g. ``("Auto-Submitted", "auto-replied")``)."""
    msg = _base(sender, f"自动回复: {subject}", headers={header[0]: header[1]})
    msg.set_content("我正在休假，12月10日返回。")
    return msg.as_bytes()


def bounce(original_recipient: str) -> bytes:
    """An RFC 3464 delivery status notification from ``MAILER-DAEMON`` (``multipart/report``), as
    Postfix writes it."""
    boundary = uuid.uuid4().hex
    text = f"""From: Mail Delivery System <MAILER-DAEMON@mx.example>
To: qiye@qifu.example
Subject: Undelivered Mail Returned to Sender
Date: Fri, 04 Dec 2026 09:31:00 +0800
Message-ID: <{uuid.uuid4().hex}@mx.example>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"

--{boundary}
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.
I'm sorry to have to inform you that your message could not be delivered to {original_recipient}.

--{boundary}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example

Final-Recipient: rfc822; {original_recipient}
Action: failed
Status: 5.1.1

--{boundary}--
"""
    return text.replace("\n", "\r\n").encode()


def bare_bounce(original_recipient: str) -> bytes:
    """A bounce with nothing but its sender to tell it by: ``MAILER-DAEMON``, no report, no
    ``Auto-Submitted`` (old MTAs)."""
    msg = _base("MAILER-DAEMON@old-mx.example", "failure notice")
    msg.set_content(f"Sorry, I wasn't able to deliver your message to {original_recipient}.")
    return msg.as_bytes()

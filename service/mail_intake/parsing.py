"""Reading an e-mail (pure: no I/O): who sent it, what it says, what it answers, whether a
machine wrote it. docs/mail_intake.md.

Standards: RFC 5322 (message format, ``Message-ID``, ``In-Reply-To``, ``References``), RFC 2045-2047
(MIME, encoded words in headers), RFC 2231 (encoded attachment names), RFC 3834 (``Auto-Submitted``:
automatic responses must not be answered), RFC 3464 / RFC 6522 (delivery status notifications:
``multipart/report``), RFC 2076 / common practice (``Precedence: bulk|junk|list``,
``X-Autoreply``, ``X-Auto-Response-Suppress``).
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

from bs4 import BeautifulSoup

#: Charsets read as their superset: mail labelled GB2312 or GBK routinely carries GB18030 characters.
CHARSET_SUPERSETS = {"gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "euc-cn": "gb18030",
                     "ascii": "utf-8", "us-ascii": "utf-8"}
#: ``Precedence`` values of mass or automatic mail (RFC 2076; ``auto_reply`` is sent by some responders).
BULK_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply"})
#: Headers whose mere presence marks an automatic message (vendor auto-responders).
AUTOMATIC_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress")
#: Local parts of senders of bounces (RFC 5321 §4.5.5 null sender aside).
BOUNCE_SENDERS = frozenset({"mailer-daemon", "postmaster"})
#: HTML elements that start a line of their own in the text of an HTML body.
BLOCK_TAGS = ["p", "div", "li", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre",
              "section", "article", "header", "footer", "ul", "ol", "hr"]
_MSGID = re.compile(r"<([^<>\s]+)>")
_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


@dataclass(frozen=True)
class MailAttachment:
    """A file carried by a message: its declared name and type (the bytes decide what it really is:
    the attachment store checks them) and its decoded bytes."""

    filename: str
    content_type: str
    data: bytes


@dataclass
class ParsedMail:
    """What the intake needs of one message.

    ``message_key`` (≤ 255 chars) identifies the message for exactly-once processing;
    ``references`` are the normalised ids of ``In-Reply-To`` then ``References`` (newest first);
    ``automatic`` names why the message was written by a machine (``None`` for a person's mail).
    """

    message_key: str
    message_id: str | None
    from_address: str
    from_name: str | None
    subject: str
    text: str
    sent_at: datetime | None
    references: list[str] = field(default_factory=list)
    attachments: list[MailAttachment] = field(default_factory=list)
    automatic: str | None = None


def normalise_message_id(value: str | None) -> str | None:
    """The id inside the first ``<...>`` of a ``Message-ID``-like header (or the bare value),
    lower-cased; ``None`` when empty. ``" <ABC@Example.org> "`` → ``"abc@example.org"``."""
    if not value:
        return None
    value = str(value)
    found = _MSGID.search(value)
    ident = (found.group(1) if found else value).strip().strip("<>").strip()
    return ident.lower() or None


def message_ids(value: str | None) -> list[str]:
    """Every ``<id>`` in a ``References``/``In-Reply-To`` header, normalised, in order."""
    if not value:
        return []
    return [m.lower() for m in _MSGID.findall(str(value))]


def message_key(message: Message, body: bytes) -> str:
    """The key a message is stored under: ``mid:<normalised Message-ID>`` (a SHA-256 of it when
    longer than 250 characters), or for a message without a ``Message-ID`` ``sha256:<hex>`` over
    its ``From``, ``To``, ``Cc``, ``Date`` and ``Subject`` headers and its body bytes: stable for
    the same stored message, whatever the IMAP server adds around it."""
    ident = normalise_message_id(_header(message, "Message-ID"))
    if ident is not None:
        key = f"mid:{ident}"
        return key if len(key) <= 250 else "mid-sha256:" + hashlib.sha256(ident.encode()).hexdigest()
    digest = hashlib.sha256()
    for name in ("From", "To", "Cc", "Date", "Subject"):
        digest.update(name.encode() + b":" + _header(message, name).encode("utf-8", "replace") + b"\n")
    digest.update(body)
    return "sha256:" + digest.hexdigest()


def decode_text(payload: bytes, charset: str | None) -> str:
    """Bytes of a text part as ``str``: its charset (GB2312/GBK read as GB18030), UTF-8 when none
    or unknown; undecodable bytes become U+FFFD. NUL characters are removed."""
    name = (charset or "utf-8").strip().strip('"').lower()
    name = CHARSET_SUPERSETS.get(name, name)
    try:
        text = payload.decode(name, errors="replace")
    except LookupError:
        text = payload.decode("utf-8", errors="replace")
    return text.replace("\x00", "")


def html_to_text(html: str) -> str:
    """The readable text of an HTML body (BeautifulSoup with the standard library's parser):
    scripts and styles dropped, block elements (:data:`BLOCK_TAGS`) on lines of their own and
    ``<br>`` a line break, inline markup joined, spaces and runs of blank lines folded."""
    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "head", "title"]):
        tag.decompose()
    for br in soup.find_all("br"):
        br.replace_with("\n")
    for block in soup.find_all(BLOCK_TAGS):
        block.insert_before("\n")
        block.insert_after("\n")
    lines = [" ".join(line.split()) for line in soup.get_text().splitlines()]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _header(message: Message, name: str) -> str:
    """A header as text with RFC 2047 encoded words decoded ('' when absent or unreadable)."""
    raw = message.get(name)
    if raw is None:
        return ""
    return " ".join(_header_text(str(raw)).replace("\x00", "").split())


def _codec(charset: str | None) -> str | None:
    if charset is None:
        return None
    charset = charset.lower()
    return CHARSET_SUPERSETS.get(charset, charset)


def _sender(message: Message) -> tuple[str, str | None]:
    addresses = getaddresses([_header(message, "From")])
    for name, address in addresses:
        if "@" in address:
            return address.strip().lower()[:254], (name.strip()[:200] or None)
    return "", None


def automatic_reason(message: Message, from_address: str) -> str | None:
    """Why ``message`` was written by a machine, or ``None`` (RFC 3834 ``Auto-Submitted`` other
    than ``no``; ``Precedence: bulk|junk|list``; ``X-Autoreply``/``X-Autorespond``/
    ``X-Auto-Response-Suppress``; a ``multipart/report`` (delivery status or disposition
    notification, RFC 6522); a ``MAILER-DAEMON``/``postmaster`` sender, a null ``Return-Path``)."""
    auto = _header(message, "Auto-Submitted").split(";")[0].strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    precedence = _header(message, "Precedence").strip().lower()
    if precedence in BULK_PRECEDENCE:
        return f"Precedence: {precedence}"
    for name in AUTOMATIC_HEADERS:
        if message.get(name) is not None:
            return f"{name} 头"
    if message.get_content_type() == "multipart/report":
        report = message.get_param("report-type") or "report"
        return f"投递报告 multipart/report ({report})"
    local = from_address.split("@", 1)[0]
    if local in BOUNCE_SENDERS:
        return f"退信发件人 {from_address}"
    if _header(message, "Return-Path").strip() == "<>":
        return "空 Return-Path（退信）"
    return None


def _is_attachment(part: Message) -> bool:
    disposition = (part.get_content_disposition() or "").lower()
    if disposition == "attachment":
        return True
    return part.get_filename() is not None and part.get_content_maintype() not in ("multipart",)


def _payload(part: Message) -> bytes:
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _body_and_attachments(message: Message) -> tuple[str, list[MailAttachment]]:
    plain: str | None = None
    html: str | None = None
    attachments: list[MailAttachment] = []
    for index, part in enumerate(message.walk()):
        if part.is_multipart():
            continue
        if _is_attachment(part):
            name = part.get_filename() or f"attachment-{index}"
            name = " ".join(_header_text(name).split())[:200] or f"attachment-{index}"
            attachments.append(MailAttachment(name, part.get_content_type(), _payload(part)))
            continue
        kind = part.get_content_type()
        if kind == "text/plain" and plain is None:
            plain = decode_text(_payload(part), part.get_content_charset())
        elif kind == "text/html" and html is None:
            html = decode_text(_payload(part), part.get_content_charset())
    if plain is not None and plain.strip():
        text = plain
    elif html is not None:
        text = html_to_text(html)
    else:
        text = plain or ""
    return text.replace("\r\n", "\n").strip(), attachments


def _header_text(value: str) -> str:
    """``value`` with its RFC 2047 encoded words decoded (GB2312/GBK as GB18030)."""
    try:
        parts = decode_header(value)
        return str(make_header([(chunk, _codec(charset)) for chunk, charset in parts]))
    except (LookupError, UnicodeError, ValueError, TypeError):
        return value


def _date(message: Message) -> datetime | None:
    value = _header(message, "Date")
    if not value:
        return None
    try:
        at = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    try:
        return at.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def parse_message(raw: bytes) -> ParsedMail:
    """Read one RFC 5322 message (bytes as fetched over IMAP) into a :class:`ParsedMail`.

    The body is the first ``text/plain`` part, or the text of the first ``text/html`` part when
    there is no (non-empty) plain one; parts with ``Content-Disposition: attachment`` or a file
    name are attachments. Subjects and names in RFC 2047 encoded words are decoded; GB2312/GBK
    text is read as GB18030. Never raises on malformed input (it reads what it can).
    """
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    header_end = raw.find(b"\r\n\r\n")
    if header_end < 0:
        header_end = raw.find(b"\n\n")
    body_bytes = raw[header_end:] if header_end >= 0 else b""
    from_address, from_name = _sender(message)
    text, attachments = _body_and_attachments(message)
    references = message_ids(_header(message, "In-Reply-To")) + message_ids(_header(message, "References"))[::-1]
    return ParsedMail(
        message_key=message_key(message, body_bytes),
        message_id=(normalise_message_id(_header(message, "Message-ID")) or None),
        from_address=from_address, from_name=from_name,
        subject=_header(message, "Subject")[:500], text=text, sent_at=_date(message),
        references=list(dict.fromkeys(references)), attachments=attachments,
        automatic=automatic_reason(message, from_address),
    )

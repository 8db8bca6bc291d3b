"""E-mail intake (issue 12, docs/mail_intake.md): the office's mailbox as a ticket channel.

One message at a time, each in its own transaction (:func:`intake_message`):

1. **Claim** it: insert its :class:`~service.mail_intake.models.InboundMail` row under its unique
   ``message_key`` (``INSERT ... ON CONFLICT DO NOTHING``). A key already stored means the
   message was processed (by an earlier run that died before flagging it on the server, or by a
   concurrent poll): nothing is done twice.
2. **Decide** (the matching rules, in this order):
   - a machine wrote it (auto-reply, bounce, delivery report, list mail: :func:`parsing.automatic_reason`),
     or Qifu itself did → ``ignored``: no ticket, no answer (no mail loop);
   - it answers one of Qifu's notifications (``In-Reply-To``/``References`` name
     ``<ticket-<number>.<uuid>@qifu>``, else the ticket number appears in the subject) and the
     sender is a registered contact of that ticket's enterprise → ``add_info`` on the ticket
     (``comment`` when the ticket is closed or rejected: SPEC §3 allows add_info on open tickets only);
   - the sender is a registered contact (the e-mail of an active enterprise user, or an
     enterprise's ``contact_email``) of exactly one enterprise → a new ticket, channel ``email``, through :func:`service.ticketing.submission.submit_ticket`
     (the JSON API's intake), category ``QIFU_MAIL_DEFAULT_CATEGORY`` for an officer to triage;
   - otherwise → ``quarantined`` until an officer attaches it to an enterprise or discards it.
3. The attachments go to the ticket (:func:`store_attachments`: types and sizes checked on the
   bytes; a refused file is named in the row's ``reason``, the message goes on).
4. The row, the ticket, its events and attachments commit together; the caller flags the message
   on the server afterwards (:mod:`service.mail_intake.imap`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from service import clock
from service.attachments import service as attachments
from service.auth.actor import Actor
from service.categories.models import Category
from service.common.enums import OPEN_STATUSES, Channel, Role
from service.config import Settings, get_settings
from service.enterprises.models import Enterprise
from service.errors import AppError, Conflict, FieldError, NotAllowed, NotFound
from service.mail_intake.models import InboundMail
from service.mail_intake.parsing import MailAttachment, ParsedMail, parse_message
from service.ticketing.actions import apply_action
from service.ticketing.submission import submit_ticket
from service.tickets import schemas as ticket_schemas
from service.tickets.models import Ticket, TicketEvent
from service.users.models import User

#: Roles that see and decide the quarantine (no enterprise yet, so no row scope: every officer
#: and admin sees every quarantined message; docs/mail_intake.md).
QUARANTINE_ROLES = frozenset({Role.officer.value, Role.admin.value})
#: Subject prefixes of replies and forwards, removed from a new ticket's title.
_REPLY_PREFIX = re.compile(r"^\s*((re|fw|fwd|aw|sv|回复|答复|转发)\s*[:：]\s*)+", re.IGNORECASE)
#: Lines that start the quoted original in a reply (Outlook, Foxmail, Gmail, Apple Mail, QQ Mail).
_QUOTE_START = re.compile(
    r"^\s*(-{2,}\s*(original message|原始邮件|回复的原邮件)\s*-{2,}|_{10,}|"
    r"on .{1,200} wrote:|在.{1,200}写道[:：]|(发件人|from)\s*[:：].+)\s*$", re.IGNORECASE)


class MailConfigError(AppError):
    """The intake's settings cannot work (e.g. the default category does not exist): the poll
    stops before it takes any message."""

    status, title, slug = 500, "邮件接入配置有误", "mail-config"


# ------------------------------------------------------------------ attachments

def store_attachments(session: Session, ticket: Ticket, files: Sequence[MailAttachment], actor: Actor,
                      event_id: int | None = None) -> tuple[list[str], list[str]]:
    """Store a message's attachments on ``ticket`` (of its event ``event_id`` when given: the
    reply's ``add_info``) through :func:`service.attachments.service.store`, in the message's
    transaction: size and type are checked on the bytes there, each stored file appends an
    ``attach`` event. A refused file (too large, a type not accepted, the ticket's limit) is
    skipped and named, the message goes on.

    Returns:
        ``(names kept, refusals)``: the stored files' names as shown, and ``"<name>：<why>"`` of
        each refused one.

    Raises:
        OSError: the attachment store cannot be written (the message is retried on the next poll).
    """
    kept: list[str] = []
    refused: list[str] = []
    for index, file in enumerate(files):
        try:
            row = attachments.store(session, ticket=ticket, event_id=event_id, filename=file.filename,
                                    content_type_hint=file.content_type, data=file.data, actor=actor,
                                    note="邮件附件", field=f"attachments[{index}]")
        except FieldError as exc:
            message = exc.errors[0]["message"] if getattr(exc, "errors", None) else exc.detail
            refused.append(f"{file.filename}：{message}")
        else:
            kept.append(row.filename)
    return kept, refused


def _latest_event_id(session: Session, ticket: Ticket, action: str) -> int | None:
    return session.execute(sa.select(sa.func.max(TicketEvent.id)).where(
        TicketEvent.ticket_id == ticket.id, TicketEvent.action == action)).scalar()


# ------------------------------------------------------------------ matching

@dataclass(frozen=True)
class Contact:
    """A registered enterprise contact: an active enterprise user with an e-mail address, or the
    enterprise's own ``contact_email`` (``user_id`` None: the enterprise acts without a user, as
    :meth:`actor` shows)."""

    user_id: int | None
    username: str
    enterprise_id: int

    @property
    def actor(self) -> Actor:
        return Actor(user_id=self.user_id, role=Role.enterprise.value, enterprise_id=self.enterprise_id,
                     username=self.username)


class SenderDirectory:
    """Registered senders by address (lower case), read once per poll (two queries): the e-mail
    of every active enterprise user (``user_account.email``; SPEC §1: an enterprise acts through
    its users), and every enterprise's ``contact_email`` (issue 12: a message from it is from that
    enterprise). An address that is both a user's and their enterprise's contact e-mail is the user
    (the ticket names its submitter)."""

    def __init__(self, contacts: dict[str, list[Contact]]) -> None:
        self.contacts = contacts

    @classmethod
    def load(cls, session: Session) -> SenderDirectory:
        rows = session.execute(
            sa.select(User.id, User.username, User.enterprise_id, User.email)
            .where(User.role == Role.enterprise.value, User.is_active, User.email.is_not(None),
                   User.enterprise_id.is_not(None)).order_by(User.id)).all()
        contacts: dict[str, list[Contact]] = {}
        for user_id, username, enterprise_id, address in rows:
            key = address.strip().lower()
            if key:
                contacts.setdefault(key, []).append(Contact(user_id, username, enterprise_id))
        enterprises = session.execute(
            sa.select(Enterprise.id, Enterprise.contact_email)
            .where(Enterprise.contact_email.is_not(None)).order_by(Enterprise.id)).all()
        for enterprise_id, address in enterprises:
            key = address.strip().lower()
            known = contacts.setdefault(key, []) if key else None
            if known is not None and all(c.enterprise_id != enterprise_id for c in known):
                known.append(Contact(None, f"enterprise:{enterprise_id}", enterprise_id))
        return cls(contacts)

    def lookup(self, address: str) -> list[Contact]:
        return self.contacts.get(address.strip().lower(), [])


def _number_pattern(settings: Settings) -> str:
    return re.escape(settings.ticket_number_prefix) + r"\d{4}-\d{6,}"


def referenced_ticket(mail: ParsedMail, settings: Settings | None = None) -> str | None:
    """The ticket number a message answers: from the first ``In-Reply-To``/``References`` id of
    the form ``ticket-<number>.<...>@<domain>`` (the ``Message-ID`` of Qifu's notification
    e-mails, :func:`service.notifications.service.email_message`), else the first ticket number
    in the subject."""
    settings = settings or get_settings()
    number = _number_pattern(settings)
    ours = re.compile(rf"^ticket-({number})\.[^@]*@{re.escape(settings.mail_message_id_domain.lower())}$",
                      re.IGNORECASE)
    for ident in mail.references:
        found = ours.match(ident)
        if found:
            return found.group(1).upper()
    found = re.search(rf"(?<![0-9A-Za-z]){number}(?![0-9])", mail.subject, re.IGNORECASE)
    return found.group(0).upper() if found else None


def _is_own(mail: ParsedMail, settings: Settings) -> bool:
    """Mail Qifu sent itself (its From address, or one of its notification Message-IDs)."""
    if mail.from_address and mail.from_address == settings.smtp_from.strip().lower():
        return True
    suffix = "@" + settings.mail_message_id_domain.lower()
    return bool(mail.message_id and mail.message_id.startswith("ticket-") and mail.message_id.endswith(suffix))


def strip_quoted(text: str) -> str:
    """A reply's own text: the quoted original (``>`` lines, and everything from a separator
    such as ``-----Original Message-----``, ``在…写道：``, ``On … wrote:``) removed; the whole
    text when nothing would remain."""
    kept = []
    for line in text.splitlines():
        if _QUOTE_START.match(line):
            break
        if not line.lstrip().startswith(">"):
            kept.append(line)
    own = "\n".join(kept).strip()
    return own or text.strip()


def _fit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def ticket_title(subject: str, settings: Settings) -> str:
    """A new ticket's title: the subject without ``Re:``/``转发:`` prefixes, within the title
    limit; ``（无主题）邮件诉求`` when empty."""
    title = _REPLY_PREFIX.sub("", subject).strip() or "（无主题）邮件诉求"
    return _fit(title, min(settings.max_title_length, 200))


def ticket_description(mail: ParsedMail, settings: Settings) -> str:
    """A new ticket's description: the message's text (within the text limit), with a line naming
    the attachments; a placeholder when both are empty."""
    text = mail.text.strip()
    if mail.attachments:
        text += ("\n\n" if text else "") + "附件：" + "、".join(a.filename for a in mail.attachments)
    return _fit(text or "（邮件正文为空）", min(settings.max_text_length, 20_000))


# ------------------------------------------------------------------ one message

@dataclass(frozen=True)
class Outcome:
    """What :func:`intake_message` did: the row's state, its id, the ticket number (if any)."""

    state: str
    mail_id: int
    ticket_number: str | None = None


def _claim(session: Session, values: dict[str, Any]) -> int | None:
    """Insert the ledger row unless its ``message_key`` is stored; its id, or ``None`` (a
    concurrent claimer waits on the unique index until the first one commits)."""
    table = InboundMail.__table__
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = (insert(table).values(**values).on_conflict_do_nothing(index_elements=[table.c.message_key])
            .returning(table.c.id))
    return session.execute(stmt).scalar()


def intake_message(
    session: Session,
    raw: bytes,
    *,
    directory: SenderDirectory,
    folder: str = "INBOX",
    uid: int | None = None,
    size: int | None = None,
    settings: Settings | None = None,
    at: datetime | None = None,
) -> Outcome | None:
    """Process one message (bytes as fetched over IMAP) in the caller's transaction; flushes,
    never commits. Returns ``None`` when the message was processed before (its key is stored).
    ``size`` (bytes, default ``len(raw)``): a message larger than ``QIFU_MAIL_MAX_MESSAGE_BYTES``
    is recorded as ``ignored`` from its headers alone (``raw`` may then be the header block).

    Raises whatever the ticket's use cases raise for a transient reason (e.g. ``VersionConflict``
    when an officer changed the ticket at the same moment): the caller rolls back and leaves the
    message unflagged for the next poll.
    """
    settings = settings or get_settings()
    at = at or clock.now()
    if (len(raw) if size is None else size) > settings.mail_max_message_bytes:
        return _record_too_large(session, raw, folder=folder, uid=uid, settings=settings, at=at)
    mail = parse_message(raw)
    mail_id = _claim(session, _row_values(mail, folder=folder, uid=uid, at=at))
    if mail_id is None:
        return None
    state, reason, ticket, contact = _decide(session, mail, directory, settings)
    changes: dict[str, Any] = {"state": state, "reason": reason}
    names, refused = [a.filename for a in mail.attachments], []
    if state == "ticket":
        data = ticket_schemas.TicketCreate(
            title=ticket_title(mail.subject, settings), description=ticket_description(mail, settings),
            category_code=settings.mail_default_category, channel=Channel.email)
        ticket, _ = submit_ticket(session, contact.actor, data)
        names, refused = store_attachments(session, ticket, mail.attachments, contact.actor)
    elif state in ("add_info", "comment"):
        text = strip_quoted(mail.text)
        if mail.attachments:
            text += ("\n\n" if text else "") + "附件：" + "、".join(names)
        text = _fit(text or "（邮件正文为空）", min(settings.max_text_length, 20_000))
        body = {"text": text} if state == "add_info" else {"text": text, "internal": False}
        apply_action(session, contact.actor, ticket, state, body, at=at)
        if mail.attachments:
            names, refused = store_attachments(session, ticket, mail.attachments, contact.actor,
                                               _latest_event_id(session, ticket, state))
    elif state == "quarantined":
        changes.update(raw=raw, body_text=_fit(mail.text, 20_000))
    if refused:
        changes["reason"] = _fit("附件未保存：" + "；".join(refused), 500)
    changes.update(ticket_id=ticket.id if ticket is not None else None,
                   sender_user_id=contact.user_id if contact is not None else None, attachment_names=names)
    session.execute(sa.update(InboundMail).where(InboundMail.id == mail_id).values(**changes))
    return Outcome(state, mail_id, ticket.number if ticket is not None else None)


def _row_values(mail: ParsedMail, *, folder: str, uid: int | None, at: datetime) -> dict[str, Any]:
    return {"message_key": mail.message_key, "message_id": (mail.message_id or None) and mail.message_id[:500],
            "folder": folder[:200], "imap_uid": uid, "from_address": mail.from_address,
            "from_name": mail.from_name, "subject": mail.subject, "sent_at": mail.sent_at, "received_at": at,
            "state": "failed", "attachment_names": []}


def _decide(session: Session, mail: ParsedMail, directory: SenderDirectory,
            settings: Settings) -> tuple[str, str | None, Ticket | None, Contact | None]:
    """``(state, reason, ticket, contact)`` of a claimed message (the rules of the module docstring)."""
    if mail.automatic:
        return "ignored", f"自动邮件：{mail.automatic}"[:500], None, None
    if _is_own(mail, settings):
        return "ignored", "本系统发出的邮件", None, None
    if not mail.from_address:
        return "quarantined", "无法识别发件人地址", None, None
    contacts = directory.lookup(mail.from_address)
    number = referenced_ticket(mail, settings)
    if number is not None:
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).first()
        if ticket is not None:
            contact = next((c for c in contacts if c.enterprise_id == ticket.enterprise_id), None)
            if contact is None:
                return "quarantined", f"回复工单 {number}，但发件人不是该企业登记的联系人", None, None
            state = "add_info" if ticket.status in {s.value for s in OPEN_STATUSES} else "comment"
            return state, None, ticket, contact
    enterprises = {c.enterprise_id for c in contacts}
    if len(enterprises) == 1:
        return "ticket", None, None, contacts[0]
    if len(enterprises) > 1:
        return "quarantined", "该发件地址登记在多个企业下", None, None
    return "quarantined", "发件人未登记为企业联系人", None, None


def _record_too_large(session: Session, raw: bytes, *, folder: str, uid: int | None, settings: Settings,
                      at: datetime) -> Outcome | None:
    header_end = raw.find(b"\r\n\r\n")
    mail = parse_message(raw[: header_end + 4] if header_end >= 0 else raw[:65536])
    values = _row_values(mail, folder=folder, uid=uid, at=at)
    values.update(state="ignored", reason=f"邮件超过 {settings.mail_max_message_bytes} 字节上限")
    mail_id = _claim(session, values)
    return None if mail_id is None else Outcome("ignored", mail_id)


def record_failure(session: Session, raw: bytes, error: BaseException, *, folder: str, uid: int | None,
                   at: datetime | None = None) -> Outcome | None:
    """Record a message whose processing raised ``error`` (not a transient one) as ``failed``,
    so that it is flagged and not retried on every poll; an officer reads the reason."""
    mail = parse_message(raw)
    values = _row_values(mail, folder=folder, uid=uid, at=at or clock.now())
    values.update(state="failed", reason=f"{type(error).__name__}: {error}"[:500])
    mail_id = _claim(session, values)
    return None if mail_id is None else Outcome("failed", mail_id)


def check_settings(session: Session, settings: Settings) -> None:
    """Raise :class:`MailConfigError` when the intake's default category does not exist."""
    if session.execute(sa.select(Category.id).where(Category.code == settings.mail_default_category)).first() is None:
        raise MailConfigError(f"QIFU_MAIL_DEFAULT_CATEGORY: 分类 {settings.mail_default_category} 不存在")


# ------------------------------------------------------------------ the quarantine (officers)

def _require_quarantine_role(actor: Actor) -> None:
    if actor.role not in QUARANTINE_ROLES:
        raise NotAllowed("只有服务专员和管理员可以处理待认领邮件")


def list_quarantined(session: Session, actor: Actor, *, limit: int = 50,
                     before_id: int | None = None) -> list[InboundMail]:
    """Quarantined messages, newest first (keyset by id). Officers and admins see all of them.

    Raises:
        NotAllowed (403): another role.
    """
    _require_quarantine_role(actor)
    stmt = select(InboundMail).where(InboundMail.state == "quarantined")
    if before_id is not None:
        stmt = stmt.where(InboundMail.id < before_id)
    return list(session.exec(stmt.order_by(InboundMail.id.desc()).limit(limit)).all())


def get_quarantined(session: Session, actor: Actor, mail_id: int) -> InboundMail:
    """One message of the quarantine (any state: a decided one shows what became of it).

    Raises:
        NotAllowed (403): another role. NotFound (404): no such message.
    """
    _require_quarantine_role(actor)
    row = session.get(InboundMail, mail_id)
    if row is None or (row.state not in ("quarantined", "attached", "discarded")):
        raise NotFound(f"待认领邮件 {mail_id} 不存在")
    return row


def _take(session: Session, actor: Actor, mail_id: int, state: str) -> InboundMail:
    """Move a quarantined message to ``state`` (one conditional UPDATE: two officers deciding at
    once, one wins) and return it."""
    row = get_quarantined(session, actor, mail_id)
    taken = session.execute(
        sa.update(InboundMail).where(InboundMail.id == mail_id, InboundMail.state == "quarantined")
        .values(state=state, decided_by_id=actor.user_id, decided_at=clock.now())
        .returning(InboundMail.id)).first()
    if taken is None:
        raise Conflict(f"该邮件已被处理（{row.state}）", current_state=row.state)
    session.refresh(row)
    return row


def attach_quarantined(session: Session, actor: Actor, mail_id: int, *, enterprise_id: int,
                       category_id: int | None = None, category_code: str | None = None,
                       title: str | None = None, settings: Settings | None = None) -> InboundMail:
    """Make a ticket of a quarantined message for ``enterprise_id`` (on the enterprise's behalf,
    channel ``email``, submitted by the officer: the JSON API's intake, so the officer's scope
    applies), with its attachments; the message becomes ``attached``.

    Raises:
        NotAllowed (403): not an officer or admin. NotFound (404): no such message.
        Conflict (409): already attached or discarded.
        FieldError (422): the enterprise is unknown or outside the officer's scope; unknown category.
    """
    settings = settings or get_settings()
    row = _take(session, actor, mail_id, "attached")
    mail = parse_message(row.raw or b"")
    data = ticket_schemas.TicketCreate(
        title=title or ticket_title(row.subject, settings), description=ticket_description(mail, settings),
        category_id=category_id,
        category_code=None if category_id is not None else (category_code or settings.mail_default_category),
        channel=Channel.email, enterprise_id=enterprise_id)
    ticket, _ = submit_ticket(session, actor, data)
    names, refused = store_attachments(session, ticket, mail.attachments, actor)
    row.ticket_id, row.raw, row.attachment_names = ticket.id, None, names
    if refused:
        row.reason = _fit("附件未保存：" + "；".join(refused), 500)
    session.add(row)
    session.flush()
    return row


def discard_quarantined(session: Session, actor: Actor, mail_id: int, reason: str | None = None) -> InboundMail:
    """Discard a quarantined message (spam, misdirected); its ledger row stays, so the message is
    never taken again.

    Raises:
        NotAllowed (403), NotFound (404), Conflict (409): as :func:`attach_quarantined`.
    """
    row = _take(session, actor, mail_id, "discarded")
    row.raw = None
    row.reason = reason or row.reason
    session.add(row)
    session.flush()
    return row


def ticket_number_of(session: Session, row: InboundMail) -> str | None:
    """The number of the ticket a message made or joined, if any."""
    if row.ticket_id is None:
        return None
    return session.execute(sa.select(Ticket.number).where(Ticket.id == row.ticket_id)).scalar()


__all__ = ["QUARANTINE_ROLES", "Contact", "MailConfigError", "Outcome", "SenderDirectory",
           "attach_quarantined", "check_settings", "discard_quarantined", "get_quarantined", "intake_message",
           "list_quarantined", "record_failure", "referenced_ticket",
           "store_attachments", "strip_quoted", "ticket_number_of"]

"""Attachment use cases (issue 12, docs/attachments.md): store a file on a ticket (or one of its
events), list a ticket's files, load one for download. Plain functions taking a session; they
flush but never commit.

The order of :func:`store` is the rule of the store: check the role (the ``attach`` move of
:data:`service.tickets.workflow.TRANSITIONS`), size and type on the bytes, then write the bytes
(content-addressed, so a retry rewrites nothing), then the row and the ``attach`` event in the
caller's transaction (:data:`service.tickets.effects.EFFECTS` bumps ``ticket.attachment_count``).
A transaction that fails after the write leaves an orphan blob, never a row without bytes.
"""

from __future__ import annotations

import hashlib
import unicodedata

import sqlalchemy as sa
from sqlmodel import Session, select

from service.attachments import schemas
from service.attachments.detect import Detected, detect
from service.attachments.storage import BlobStore, get_store
from service.auth.actor import Actor
from service.common.enums import Role
from service.config import get_settings
from service.errors import FieldError, FileTooLarge, NotFound
from service.ticketing.actions import apply_action
from service.tickets import workflow as wf
from service.tickets.models import Attachment, Ticket, TicketEvent
from service.tickets.schemas import AttachIn
from service.tickets.visibility import ticket_visibility

#: Longest file name accepted (characters), as most file systems allow.
MAX_FILENAME = 255
#: Unicode categories dropped from a displayed name: controls, format characters (bidirectional
#: overrides such as U+202E that disguise ``exe.jpg``, zero-width characters), surrogates,
#: private use and unassigned code points.
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
_DEFAULT_STEM = "附件"


def clean_filename(raw: str | None, detected: Detected, *, field: str = "filename") -> str:
    """The name shown and offered on download (display only: storage is by content).

    The last path component, NFC-normalised, without control or format characters, blanks
    collapsed, no leading or trailing dots or blanks; when its extension is not one of the
    detected type's, the type's extension is appended (``photo.pdf`` holding a PNG becomes
    ``photo.pdf.png``); an empty name becomes ``附件.<ext>``. At most :data:`MAX_FILENAME` characters.

    Raises:
        FieldError (422, ``field``): the name contains NUL or is longer than 255 characters.
    """
    raw = raw or ""
    if "\x00" in raw:
        raise FieldError(field, "文件名不能包含 NUL（\\x00）字符")
    if len(raw) > MAX_FILENAME:
        raise FieldError(field, f"文件名不能超过 {MAX_FILENAME} 个字符")
    name = unicodedata.normalize("NFC", raw).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(" " if ch.isspace() else ch for ch in name
                   if ch.isspace() or unicodedata.category(ch) not in _DROPPED_CATEGORIES)
    name = " ".join(name.split()).strip(" .")
    extensions = detected.extensions
    if not name:
        return _DEFAULT_STEM + extensions[0]
    if not name.lower().endswith(extensions):
        name = name[: MAX_FILENAME - len(extensions[0])] + extensions[0]
    return name


def check_may_attach(ticket: Ticket, actor: Actor) -> None:
    """Whether ``actor``'s role may attach files to ``ticket`` (the ``attach`` move of
    :data:`service.tickets.workflow.TRANSITIONS`; the row scope is the caller's load).

    Raises:
        NotAllowed (403): e.g. a supervisor or an admin (they read attachments, never add them).
    """
    wf.check(ticket.status, wf.Action.attach, actor.role)


def check_file(data: bytes, filename: str | None, *, field: str = "file") -> tuple[Detected, str]:
    """Check one file before anything is stored: its size, its type on the bytes, its name.
    Returns the detected type and the cleaned name (:func:`clean_filename`). :func:`store` calls
    it; a caller with several files calls it on each first, so that a refused file stores none.

    Raises:
        FieldError (422): empty; a bad name (``<field>.filename``).
        FileTooLarge (413): more than ``attachment_max_bytes`` bytes.
        UnsupportedFileType (415): not an accepted type.
    """
    settings = get_settings()
    if not data:
        raise FieldError(field, "文件为空")
    if len(data) > settings.attachment_max_bytes:
        raise FileTooLarge(field, f"文件大小 {len(data)} 字节，超过 {_size(settings.attachment_max_bytes)} 的上限")
    detected = detect(data, field=field, allowed=set(settings.attachment_types))
    return detected, clean_filename(filename, detected, field=f"{field}.filename")


def _check_event(session: Session, actor: Actor, ticket: Ticket, event_id: int, field: str) -> None:
    event = session.get(TicketEvent, event_id)
    visible = event is not None and event.ticket_id == ticket.id and not (
        actor.role == Role.enterprise and event.visibility != "public")
    if not visible:
        raise FieldError(field, f"流转记录 {event_id} 不存在或不属于该工单")


def store(
    session: Session,
    *,
    ticket: Ticket,
    event_id: int | None,
    filename: str | None,
    content_type_hint: str | None,
    data: bytes,
    actor: Actor,
    note: str | None = None,
    field: str = "file",
) -> Attachment:
    """Store ``data`` as an attachment of ``ticket`` (of its event ``event_id`` when given) by
    ``actor`` and append the ticket's ``attach`` event; flushes, never commits.

    The caller has loaded ``ticket`` under the actor's row scope (:mod:`service.tickets.visibility`;
    workers act as :meth:`Actor.system`). ``content_type_hint`` (the client's or the MIME part's
    declared type) is never trusted: the type is detected from the bytes
    (:func:`service.attachments.detect.detect`) and the hint only recorded in the event.
    The same bytes already on this ticket return that row (no new row, no event, no count).

    Args:
        filename: the client's name (display only; see :func:`clean_filename`).
        note: the event's reason (up to 2,000 characters).
        field: the field named in refusals (``files[0]`` for the API's first file).

    Returns:
        The :class:`Attachment` row (new, or the one with the same bytes).

    Raises:
        NotAllowed (403): the actor's role may not attach (``attach`` in the workflow table).
        FieldError (422): empty file, bad file name (``<field>.filename``), unknown event
            (``event_id``), the ticket's attachment limit reached.
        FileTooLarge (413, a FieldError): more than ``attachment_max_bytes`` bytes.
        UnsupportedFileType (415, a FieldError): the bytes are not of an accepted type.
        OSError: the store cannot be written (nothing is written to the database).
    """
    settings = get_settings()
    check_may_attach(ticket, actor)
    detected, name = check_file(data, filename, field=field)
    if event_id is not None:
        _check_event(session, actor, ticket, event_id, "event_id")
    sha256 = hashlib.sha256(data).hexdigest()
    existing = session.exec(select(Attachment).where(Attachment.ticket_id == ticket.id,
                                                     Attachment.sha256 == sha256)).first()
    if existing is not None:
        return existing
    if ticket.attachment_count >= settings.attachment_max_per_ticket:
        raise FieldError(field, f"每件工单最多 {settings.attachment_max_per_ticket} 个附件，已达上限")
    key = get_store().put(data, sha256)  # bytes first: a failed transaction leaves an orphan blob only
    attachment = Attachment(ticket_id=ticket.id, event_id=event_id, filename=name,
                            content_type=detected.content_type, size=len(data), sha256=sha256,
                            storage_key=key, uploaded_by_id=actor.user_id)
    session.add(attachment)
    session.flush()
    hint = (content_type_hint or "").replace("\x00", "")[:128] or None
    apply_action(session, actor, ticket, wf.Action.attach,
                 AttachIn(attachment_id=attachment.id, note=note or None, declared_type=hint))
    return attachment


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n % (1024 * 1024) == 0 else f"{n} 字节"


def _visible_to(actor: Actor) -> sa.ColumnElement[bool]:
    """Attachments an actor may see on a ticket they may see: an enterprise user not those of
    internal events (staff-only history, as :func:`service.ticketing.queries.list_events`)."""
    if actor.role != Role.enterprise:
        return sa.true()
    internal = select(TicketEvent.id).where(TicketEvent.visibility != "public",
                                            TicketEvent.ticket_id == Attachment.ticket_id)
    return sa.or_(Attachment.event_id.is_(None), Attachment.event_id.not_in(internal))


def list_attachments(session: Session, actor: Actor, ticket: Ticket) -> list[Attachment]:
    """The attachments of ``ticket`` (already loaded under the actor's scope), oldest first."""
    return list(session.exec(select(Attachment).where(Attachment.ticket_id == ticket.id, _visible_to(actor))
                             .order_by(Attachment.id)).all())


def get_visible_attachment(session: Session, actor: Actor, attachment_id: int) -> tuple[Attachment, Ticket]:
    """The attachment ``attachment_id`` and its ticket, if ``actor`` may see them (SPEC §1).

    Raises:
        NotFound (404): no such attachment, or its ticket (or event) is outside the actor's scope.
    """
    row = session.exec(
        select(Attachment, Ticket).join(Ticket, Ticket.id == Attachment.ticket_id)
        .where(Attachment.id == attachment_id, ticket_visibility(session, actor), _visible_to(actor))
    ).first()
    if row is None:
        raise NotFound(f"附件 {attachment_id} 不存在")
    return row[0], row[1]


def read_bytes(attachment: Attachment) -> bytes:
    """The stored bytes of ``attachment``.

    Raises:
        NotFound (404): the store has no blob under its key (lost or removed by hand).
    """
    try:
        return get_store().get(attachment.storage_key)
    except FileNotFoundError as exc:
        raise NotFound(f"附件 {attachment.id} 的内容已不存在") from exc


def attachment_read(attachment: Attachment, ticket: Ticket) -> schemas.AttachmentRead:
    """The response model of ``attachment`` on ``ticket``."""
    return schemas.AttachmentRead(
        id=attachment.id, ticket_number=ticket.number, event_id=attachment.event_id, filename=attachment.filename,
        content_type=attachment.content_type, size=attachment.size, sha256=attachment.sha256,
        uploaded_by_id=attachment.uploaded_by_id, created_at=attachment.created_at,
        url=f"/api/v1/attachments/{attachment.id}")


def orphan_keys(session: Session, store: BlobStore | None = None, *, grace_seconds: float = 3600) -> list[str]:
    """Blobs that no attachment row names, written more than ``grace_seconds`` ago (docs/attachments.md
    "Orphans"): what a transaction that failed after :func:`store` wrote the bytes left behind.
    The grace period keeps the bytes of uploads still in flight (written, not yet committed); a
    blob whose age the store cannot tell is never listed. One query for the referenced keys.
    """
    store = store or get_store()
    referenced = set(session.exec(select(Attachment.storage_key).distinct()).all())
    out = []
    for key in store.stored_keys():
        if key in referenced:
            continue
        age = store.age_seconds(key)
        if age is not None and age >= grace_seconds:
            out.append(key)
    return out

"""The domain function :func:`service.attachments.service.store` on PostgreSQL (issue 12): the row,
the ``attach`` event and the ticket's count, the bytes in the store, dedup, names, refusals (nothing
written), event association and the per-ticket limit."""

from __future__ import annotations

import hashlib

import pytest
from sqlmodel import Session, func, select

from service.attachments import service as attachments
from service.attachments.storage import key_of
from service.auth.actor import Actor
from service.config import get_settings
from service.errors import FieldError, FileTooLarge, NotAllowed, NotFound, UnsupportedFileType
from service.tickets.models import Attachment, TicketEvent
from tests import factories as f
from tests.attachments import samples as s
from tests.attachments.conftest import blobs


def _count(session: Session, ticket) -> int:
    return session.exec(select(func.count()).select_from(Attachment).where(Attachment.ticket_id == ticket.id)).one()


def _store(session, ticket, data, by="ent1", filename="现场照片.png", **kw):
    actor = by if isinstance(by, Actor) else f.actor(session, by)
    return attachments.store(session, ticket=ticket, event_id=kw.pop("event_id", None), filename=filename,
                             content_type_hint=kw.pop("hint", "image/png"), data=data, actor=actor, **kw)


def test_store_writes_bytes_row_event_and_count(session, store_dir):
    ticket = f.make_ticket(session, "dispatched")
    version = ticket.version
    data = s.png()
    att = _store(session, ticket, data, note="车间外墙照片")
    session.commit()
    sha = hashlib.sha256(data).hexdigest()
    assert (att.content_type, att.size, att.sha256, att.storage_key) == ("image/png", len(data), sha, key_of(sha))
    assert att.filename == "现场照片.png" and att.uploaded_by_id == f.user(session, "ent1").id
    assert (store_dir / key_of(sha)).read_bytes() == data
    ticket = f.reload(session, ticket)
    assert ticket.attachment_count == 1 and ticket.version == version + 1
    [event] = [e for e in f.events(session, ticket) if e.action == "attach"]
    assert event.reason == "车间外墙照片" and event.visibility == "public" and event.actor_role == "enterprise"
    assert event.from_status == event.to_status == "dispatched"
    assert event.payload == {"attachment_id": att.id, "filename": "现场照片.png", "content_type": "image/png",
                             "size": len(data), "event_id": None, "declared_type": "image/png",
                             "attachment_count": 1}
    assert attachments.read_bytes(att) == data


def test_same_bytes_are_stored_once(session, store_dir):
    one = f.make_ticket(session, "submitted")
    two = f.make_ticket(session, "submitted", title="另一件诉求")
    data = s.pdf()
    a = _store(session, one, data, filename="a.pdf")
    again = _store(session, one, data, filename="renamed.pdf")
    b = _store(session, two, data, by="officer1", filename="b.pdf")
    session.commit()
    assert again.id == a.id and f.reload(session, one).attachment_count == 1  # no second row, event or count
    assert b.id != a.id and b.storage_key == a.storage_key
    assert len(blobs(store_dir)) == 1
    assert [e.action for e in f.events(session, one)].count("attach") == 1


def test_type_comes_from_the_bytes_and_the_name_follows(session, store_dir):
    ticket = f.make_ticket(session, "submitted")
    att = _store(session, ticket, s.png(seed=7), filename="合同.pdf", hint="application/pdf")
    assert att.content_type == "image/png" and att.filename == "合同.pdf.png"
    text = _store(session, ticket, "说明\n".encode("gb18030"), filename="说明", hint=None)
    assert text.content_type == "text/plain; charset=gb18030" and text.filename == "说明.txt"


@pytest.mark.parametrize(("raw", "shown"), [
    ("../../etc/passwd.png", "passwd.png"),
    ("C:\\Users\\张三\\照片.PNG", "照片.PNG"),
    ("photo\u202egnp.exe", "photognp.exe.png"),  # a right-to-left override cannot disguise the name
    ("  ..hidden  name .png ", "hidden name .png"),
    ("", "附件.png"),
    (None, "附件.png"),
    ("tab\tand\nnewline.png", "tab and newline.png"),
])
def test_names_are_cleaned_for_display(session, store_dir, raw, shown):
    ticket = f.make_ticket(session, "submitted")
    assert _store(session, ticket, s.png(seed=len(raw or "")), filename=raw).filename == shown


@pytest.mark.parametrize(("data", "filename", "error", "field"), [
    (b"", "empty.png", FieldError, "file"),
    (s.EXE, "setup.jpg", UnsupportedFileType, "file"),
    (s.ELF, "photo.jpg", UnsupportedFileType, "file"),
    (s.HTML, "page.jpg", UnsupportedFileType, "file"),
    (s.zip_archive(), "report.docx", UnsupportedFileType, "file"),
    (s.png(), "bad\x00name.png", FieldError, "file.filename"),
    (s.png(), "x" * 256 + ".png", FieldError, "file.filename"),
])
def test_refusals_write_nothing(session, store_dir, data, filename, error, field):
    ticket = f.make_ticket(session, "submitted")
    before = (f.reload(session, ticket).version, len(f.events(session, ticket)))
    with pytest.raises(error) as info:
        _store(session, ticket, data, filename=filename)
    assert info.value.to_problem()["errors"][0]["field"] == field
    session.rollback()
    assert (f.reload(session, ticket).version, len(f.events(session, ticket))) == before
    assert _count(session, ticket) == 0 and blobs(store_dir) == []


def test_oversize_is_413(session, store_dir, monkeypatch):
    monkeypatch.setattr(get_settings(), "attachment_max_bytes", 2048)
    ticket = f.make_ticket(session, "submitted")
    with pytest.raises(FileTooLarge) as info:
        _store(session, ticket, s.pdf() + b"%" * 4096, field="files[0]")
    assert info.value.status == 413 and info.value.field == "files[0]"
    assert blobs(store_dir) == []


def test_roles_follow_the_workflow_table(session, store_dir):
    ticket = f.make_ticket(session, "in_progress", lead_department="RSJ")
    for seed, who in enumerate(("ent1", "officer1", "dept_rsj")):
        _store(session, ticket, s.png(seed=seed), by=who)
    _store(session, ticket, s.gif(), by=Actor.system())
    for who in ("supervisor1", "admin"):
        with pytest.raises(NotAllowed):
            _store(session, ticket, s.jpeg(), by=who)
    assert f.reload(session, ticket).attachment_count == 4


def test_event_association(session, store_dir):
    ticket = f.make_ticket(session, "dispatched")
    other = f.make_ticket(session, "submitted", title="别的诉求")
    f.act(session, ticket, "add_info", {"text": "补充营业执照"})
    f.act(session, ticket, "comment", {"text": "内部意见", "internal": True}, by="officer1")
    add_info, internal = (e for e in f.events(session, ticket) if e.action in ("add_info", "comment"))
    att = _store(session, ticket, s.pdf(), event_id=add_info.id)
    assert att.event_id == add_info.id
    [other_event] = f.events(session, other)
    for event_id in (internal.id, other_event.id, 2**31 - 1):  # internal to an enterprise; another ticket's
        with pytest.raises(FieldError) as info:
            _store(session, ticket, s.png(seed=event_id % 200), event_id=event_id)
        assert info.value.field == "event_id"
    staff = _store(session, ticket, s.gif(), by="officer1", event_id=internal.id)
    # the enterprise does not see the file of an internal event; the officer does
    ent, officer = f.actor(session, "ent1"), f.actor(session, "officer1")
    assert [a.id for a in attachments.list_attachments(session, ent, ticket)] == [att.id]
    assert [a.id for a in attachments.list_attachments(session, officer, ticket)] == [att.id, staff.id]
    with pytest.raises(NotFound):
        attachments.get_visible_attachment(session, ent, staff.id)
    assert attachments.get_visible_attachment(session, officer, staff.id)[0].id == staff.id


def test_per_ticket_limit(session, store_dir, monkeypatch):
    monkeypatch.setattr(get_settings(), "attachment_max_per_ticket", 2)
    ticket = f.make_ticket(session, "submitted")
    _store(session, ticket, s.png(seed=1))
    _store(session, ticket, s.png(seed=2))
    assert _store(session, ticket, s.png(seed=1)).id  # the same bytes again: the row already there
    with pytest.raises(FieldError, match="最多 2 个附件"):
        _store(session, ticket, s.png(seed=3))


def test_visibility_of_a_download(session, store_dir):
    ticket = f.make_ticket(session, "in_progress", lead_department="RSJ")
    att = _store(session, ticket, s.png())
    for who in ("ent1", "officer1", "dept_rsj", "supervisor1", "admin"):
        assert attachments.get_visible_attachment(session, f.actor(session, who), att.id)[0].id == att.id
    for who in ("ent2", "officer12", "supervisor2"):
        with pytest.raises(NotFound):
            attachments.get_visible_attachment(session, f.actor(session, who), att.id)
    session.commit()
    assert session.exec(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id,
                                                  TicketEvent.action == "attach")).one()

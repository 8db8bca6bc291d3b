"""The e-mail intake against a real IMAP server (Dovecot) and PostgreSQL (issue 12,
docs/mail_intake.md): messages delivered by IMAP APPEND, real MIME, one poll, then the tickets,
events, ledger rows and server flags are checked."""

from __future__ import annotations

import email
import email.policy
import uuid

import pytest
import sqlalchemy as sa
from sqlmodel import select

from service.attachments import service as attachments
from service.mail_intake import imap
from service.mail_intake import service as intake
from service.mail_intake.models import InboundMail
from service.notifications import service as notifications
from service.notifications.models import Notification
from service.tickets.models import Attachment, Ticket, TicketEvent
from tests import factories as f
from tests.mail_intake import messages as m


def poll(settings, unit_of_work, **kwargs) -> imap.PollResult:
    return imap.poll(settings, unit_of_work=unit_of_work, workers=1, **kwargs)  # one session: one thread


def ledger(session, folder: str) -> list[InboundMail]:
    session.expire_all()
    return list(session.exec(select(InboundMail).where(InboundMail.folder == folder).order_by(InboundMail.id)).all())


def ticket_of(session, row: InboundMail) -> Ticket:
    return session.get(Ticket, row.ticket_id)


def flagged(dovecot, folder: str) -> tuple[set[int], set[int]]:
    """(all UIDs, UIDs carrying the intake keyword and \\Seen)."""
    with dovecot.client(folder) as client:
        flags = client.get_flags(client.search("ALL"))
    return set(flags), {uid for uid, fl in flags.items() if imap.KEYWORD in fl and imap.SEEN in fl}


def test_registered_contact_makes_an_email_ticket(session, dovecot, folder, mail_settings, unit_of_work, contact):
    dovecot.append(folder, m.plain(f"王经理 <{contact.upper()}>", "Re: 关于扩产用地的问题", "我司计划扩产，需新增用地30亩。\n请协调。"))
    result = poll(mail_settings, unit_of_work)
    assert result.fetched == 1 and result.states == {"ticket": 1}
    [row] = ledger(session, folder)
    ticket = ticket_of(session, row)
    ent1 = f.enterprise_of(session, "ent1")
    assert (ticket.channel, ticket.enterprise_id, ticket.status) == ("email", ent1.id, "submitted")
    assert ticket.title == "关于扩产用地的问题"  # the decoded subject, without "Re:"
    assert ticket.description == "我司计划扩产，需新增用地30亩。\n请协调。"
    assert ticket.category_id == f.category(session, "problem.other").id
    assert ticket.submitted_by_id == f.user(session, "ent1").id
    assert ticket.accept_by is not None  # the JSON API's intake: SLA deadlines from submission
    [event] = f.events(session, ticket)
    assert (event.action, event.payload["channel"]) == ("submit", "email")
    # the officer is told, as for any submission
    assert session.exec(select(Notification).where(Notification.ticket_id == ticket.id,
                                                   Notification.kind == "submitted")).first() is not None
    assert (row.state, row.from_address, row.from_name, row.sender_user_id) == (
        "ticket", contact, "王经理", f.user(session, "ent1").id)
    assert row.message_key.startswith("mid:") and row.raw is None
    uids, done = flagged(dovecot, folder)
    assert uids == done and len(uids) == 1


@pytest.mark.parametrize("label", ["gb18030", "gb2312"])
def test_gb18030_body_and_encoded_subject(session, dovecot, folder, mail_settings, unit_of_work, contact, label):
    # 𠮷 (U+20BB7) takes four bytes in GB18030; 镕 is GBK but not GB2312 (the common mislabel)
    dovecot.append(folder, m.gb18030(f"李四 <{contact}>", "用电增容𠮷镕申请", "工厂二期需要增容到2000千伏安，镕𠮷。",
                                     label=label))
    assert poll(mail_settings, unit_of_work).states == {"ticket": 1}
    [row] = ledger(session, folder)
    ticket = ticket_of(session, row)
    assert ticket.title == "用电增容𠮷镕申请"
    assert ticket.description == "工厂二期需要增容到2000千伏安，镕𠮷。"
    assert row.from_name == "李四"


def test_html_only_mail_becomes_text(session, dovecot, folder, mail_settings, unit_of_work, contact):
    html = ("<html><head><style>p {color: red}</style><title>t</title></head><body>"
            "<p>您好：</p><p>我司<b>出口退税</b>迟迟未到账，<br>请帮助催办。</p>"
            "<script>alert(1)</script><table><tr><td>金额</td><td>120万元</td></tr></table></body></html>")
    dovecot.append(folder, m.html_only(contact, "=?utf-8?b?" + "5Ye65Y+j6YCA56iO".strip() + "?=", html))
    assert poll(mail_settings, unit_of_work).states == {"ticket": 1}
    ticket = ticket_of(session, ledger(session, folder)[0])
    assert ticket.title == "出口退税"  # an already encoded RFC 2047 subject
    assert "<" not in ticket.description and "alert" not in ticket.description and "color" not in ticket.description
    assert "我司出口退税迟迟未到账，\n请帮助催办。" in ticket.description
    assert "金额" in ticket.description and "120万元" in ticket.description


def attachments_of(session, ticket: Ticket) -> list[Attachment]:
    session.expire_all()
    return list(session.exec(select(Attachment).where(Attachment.ticket_id == ticket.id).order_by(Attachment.id)).all())


def test_attachments_are_stored_on_the_ticket(session, dovecot, folder, mail_settings, unit_of_work, contact):
    dovecot.append(folder, m.with_attachments(contact, "营业执照变更", "附件为新执照和现场照片。", [
        ("营业执照.pdf", "application/pdf", m.PDF), ("现场 照片.png", "application/octet-stream", m.png(3, 3)),
        ("说明.html", "text/html", b"<html><script>alert(1)</script></html>")]))
    assert poll(mail_settings, unit_of_work).states == {"ticket": 1}
    [row] = ledger(session, folder)
    ticket = f.reload(session, ticket_of(session, row))
    stored = attachments_of(session, ticket)
    # the type comes from the bytes, not the declared one; HTML is refused, the message goes on
    assert [(a.filename, a.content_type, a.uploaded_by_id) for a in stored] == [
        ("营业执照.pdf", "application/pdf", f.user(session, "ent1").id),
        ("现场 照片.png", "image/png", f.user(session, "ent1").id)]
    assert attachments.read_bytes(stored[0]) == m.PDF
    assert ticket.attachment_count == 2
    assert [e.action for e in f.events(session, ticket)] == ["submit", "attach", "attach"]
    assert row.attachment_names == ["营业执照.pdf", "现场 照片.png"]
    assert row.reason.startswith("附件未保存：说明.html")
    assert ticket.description.endswith("附件：营业执照.pdf、现场 照片.png、说明.html")


def test_a_reply_s_attachments_belong_to_its_add_info(session, dovecot, folder, mail_settings, unit_of_work,
                                                       contact):
    ticket = f.make_ticket(session, "accepted")
    sent = _notification_mail(session, ticket)
    original = email.message_from_bytes(m.reply(contact, sent, "补充现场照片。"), policy=email.policy.default)
    original.add_attachment(m.png(4, 4), maintype="image", subtype="png", filename="现场.png")
    dovecot.append(folder, original.as_bytes())
    assert poll(mail_settings, unit_of_work).states == {"add_info": 1}
    [stored] = attachments_of(session, ticket)
    add_info = next(e for e in f.events(session, ticket) if e.action == "add_info")
    assert stored.event_id == add_info.id and stored.filename == "现场.png"


def _notification_mail(session, ticket: Ticket) -> email.message.EmailMessage:
    """The e-mail Qifu sends about ``ticket`` (the real builder of notification e-mails)."""
    note = Notification(user_id=f.user(session, "ent1").id, ticket_id=ticket.id, kind="replied",
                        title=f"诉求已答复：{ticket.number} {ticket.title}", body="已答复")
    raw = notifications.email_message("ent1@example.com", note, ticket.number).as_bytes()
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_reply_to_a_notification_adds_info(session, dovecot, folder, mail_settings, unit_of_work, contact):
    ticket = f.make_ticket(session, "dispatched", title=f"扩产用地 {uuid.uuid4().hex[:6]}")
    sent = _notification_mail(session, ticket)
    assert sent["Message-ID"].startswith(f"<ticket-{ticket.number}.") and sent["Auto-Submitted"] == "auto-generated"
    dovecot.append(folder, m.reply(contact, sent, "补充：用地位置在经开区东区。", quote="诉求已答复"))
    assert poll(mail_settings, unit_of_work).states == {"add_info": 1}
    [row] = ledger(session, folder)
    assert row.ticket_id == ticket.id and row.state == "add_info"
    event = f.events(session, ticket)[-1]
    assert (event.action, event.actor_role, event.reason) == ("add_info", "enterprise", "补充：用地位置在经开区东区。")
    assert f.reload(session, ticket).status == "dispatched"
    assert session.execute(sa.select(sa.func.count()).select_from(Ticket)
                           .where(Ticket.title == "补充：用地位置在经开区东区。")).scalar() == 0


def test_reply_matched_by_subject_and_to_a_closed_ticket(session, dovecot, folder, mail_settings, unit_of_work,
                                                        contact):
    open_ticket = f.make_ticket(session, "accepted")
    closed = f.make_ticket(session, "closed")
    dovecot.append(folder,
                   m.plain(contact, f"回复：[{open_ticket.number}] 诉求已受理", "谢谢，补充一份说明。"),
                   m.reply(contact, _notification_mail(session, closed), "问题已解决，感谢。"))
    assert poll(mail_settings, unit_of_work).states == {"add_info": 1, "comment": 1}
    assert f.events(session, open_ticket)[-1].action == "add_info"
    last = f.events(session, closed)[-1]
    assert (last.action, last.reason, last.visibility) == ("comment", "问题已解决，感谢。", "public")
    assert f.reload(session, closed).status == "closed"


def test_reply_from_another_sender_is_quarantined(session, dovecot, folder, mail_settings, unit_of_work, contact):
    ticket = f.make_ticket(session, "accepted")
    before = len(f.events(session, ticket))
    f.user(session, "ent2").email = other = f"ent2-{uuid.uuid4().hex[:8]}@example.com"
    session.flush()
    dovecot.append(folder, m.reply(other, _notification_mail(session, ticket), "我不是这家企业的"))
    assert poll(mail_settings, unit_of_work).states == {"quarantined": 1}
    [row] = ledger(session, folder)
    assert row.ticket_id is None and ticket.number in row.reason
    assert len(f.events(session, ticket)) == before


@pytest.mark.parametrize("build", [
    lambda to: m.auto_reply(to, "诉求已受理", ("Auto-Submitted", "auto-replied")),
    lambda to: m.auto_reply(to, "诉求已受理", ("Precedence", "bulk")),
    lambda to: m.auto_reply(to, "诉求已受理", ("Precedence", "junk")),
    lambda to: m.auto_reply(to, "诉求已受理", ("Precedence", "list")),
    lambda to: m.auto_reply(to, "诉求已受理", ("X-Autoreply", "yes")),
    lambda to: m.auto_reply(to, "诉求已受理", ("X-Auto-Response-Suppress", "All")),
    lambda to: m.bounce(to),
    lambda to: m.bare_bounce(to),
], ids=["auto-submitted", "bulk", "junk", "list", "x-autoreply", "x-auto-response-suppress", "dsn", "mailer-daemon"])
def test_auto_replies_and_bounces_are_ignored(session, dovecot, folder, mail_settings, unit_of_work, contact, build):
    raw = build(contact)
    if b"MAILER-DAEMON" not in raw:  # the auto-replies come from the registered contact itself
        assert contact.encode() in raw
    tickets = session.execute(sa.select(sa.func.count()).select_from(Ticket)).scalar()
    notes = session.execute(sa.select(sa.func.count()).select_from(Notification)).scalar()
    dovecot.append(folder, raw)
    assert poll(mail_settings, unit_of_work).states == {"ignored": 1}
    [row] = ledger(session, folder)
    assert row.state == "ignored" and row.reason.startswith("自动邮件") and row.ticket_id is None
    # no ticket, and nothing that could answer it (no notification, hence no e-mail)
    assert session.execute(sa.select(sa.func.count()).select_from(Ticket)).scalar() == tickets
    assert session.execute(sa.select(sa.func.count()).select_from(Notification)).scalar() == notes
    uids, done = flagged(dovecot, folder)
    assert uids == done


def test_qifu_own_mail_is_ignored(session, dovecot, folder, mail_settings, unit_of_work, contact):
    ticket = f.make_ticket(session, "accepted")
    own = _notification_mail(session, ticket)
    del own["Auto-Submitted"]  # even without its automatic headers: the Message-ID is ours
    del own["X-Auto-Response-Suppress"]
    dovecot.append(folder, own.as_bytes())
    assert poll(mail_settings, unit_of_work).states == {"ignored": 1}
    assert ledger(session, folder)[0].reason == "本系统发出的邮件"


def test_unknown_sender_waits_in_quarantine(session, dovecot, folder, mail_settings, unit_of_work, contact):
    stranger = f"boss-{uuid.uuid4().hex[:8]}@unknown.example"
    dovecot.append(folder, m.with_attachments(f"赵总 <{stranger}>", "咨询人才政策", "我们是新落户企业，想了解人才补贴。",
                                              [("申请表.pdf", "application/pdf", m.PDF)]))
    assert poll(mail_settings, unit_of_work).states == {"quarantined": 1}
    [row] = ledger(session, folder)
    assert (row.state, row.from_address, row.reason) == ("quarantined", stranger, "发件人未登记为企业联系人")
    assert row.raw is not None and row.body_text == "我们是新落户企业，想了解人才补贴。"
    assert row.attachment_names == ["申请表.pdf"]
    listed = intake.list_quarantined(session, f.actor(session, "officer12"))
    assert row.id in {r.id for r in listed}


def test_exactly_once_when_the_worker_died_before_flagging(session, dovecot, folder, mail_settings, unit_of_work,
                                                          contact):
    dovecot.append(folder, *[m.plain(contact, f"诉求 {i}", f"正文 {i}") for i in range(7)])
    first = poll(mail_settings, unit_of_work, limit=4)
    assert first.states == {"ticket": 4} and first.pending_after == 3
    # the worker "died" after its commits and before the flags: take them off on the server
    with dovecot.client(folder) as client:
        client.remove_flags(client.search("ALL"), [imap.KEYWORD, imap.SEEN], silent=True)
    second = poll(mail_settings, unit_of_work)
    assert (second.fetched, second.skipped, second.states) == (7, 4, {"ticket": 3})
    rows = ledger(session, folder)
    assert len(rows) == 7 and len({r.ticket_id for r in rows}) == 7
    uids, done = flagged(dovecot, folder)
    assert uids == done
    assert poll(mail_settings, unit_of_work).fetched == 0  # nothing pending any more


def test_duplicate_copies_make_one_ticket_with_or_without_message_id(session, dovecot, folder, mail_settings,
                                                                    unit_of_work, contact):
    with_id = m.plain(contact, "有 Message-ID", "正文一")
    without = m.plain(contact, "没有 Message-ID", "正文二", message_id=False)
    assert b"\r\nMessage-ID:" not in without
    dovecot.append(folder, with_id, without, with_id, without)
    result = poll(mail_settings, unit_of_work)
    assert (result.states, result.skipped) == ({"ticket": 2}, 2)
    keys = sorted(r.message_key.split(":")[0] for r in ledger(session, folder))
    assert keys == ["mid", "sha256"]


def test_a_message_a_person_has_read_is_still_taken(session, dovecot, folder, mail_settings, unit_of_work, contact):
    dovecot.append(folder, m.plain(contact, "已读的邮件", "有人在邮箱里先打开了它"))
    with dovecot.client(folder) as client:
        client.add_flags(client.search("ALL"), [imap.SEEN])
    assert poll(mail_settings, unit_of_work).states == {"ticket": 1}


def test_a_message_that_cannot_be_processed_is_recorded_failed(session, dovecot, folder, mail_settings,
                                                              unit_of_work, contact, monkeypatch):
    dovecot.append(folder, m.plain(contact, "会出错的邮件", "正文"))

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(intake, "submit_ticket", broken)
    assert poll(mail_settings, unit_of_work).states == {"failed": 1}
    [row] = ledger(session, folder)
    assert (row.state, row.reason) == ("failed", "RuntimeError: boom")
    assert poll(mail_settings, unit_of_work).fetched == 0  # flagged: not retried on every poll


def test_too_large_messages_are_ignored_from_their_headers(session, dovecot, folder, unit_of_work, contact):
    dovecot.append(folder, m.with_attachments(contact, "大附件", "见附件", [("big.pdf", "application/pdf", m.PDF * 20)]))
    settings = dovecot.settings(folder, mail_max_message_bytes=1024)
    assert poll(settings, unit_of_work).states == {"ignored": 1}
    [row] = ledger(session, folder)
    assert row.reason == "邮件超过 1024 字节上限" and row.subject == "大附件"


def test_a_missing_default_category_stops_the_poll_before_taking_anything(session, dovecot, folder, unit_of_work,
                                                                         contact):
    dovecot.append(folder, m.plain(contact, "诉求", "正文"))
    settings = dovecot.settings(folder, mail_default_category="no.such.category")
    with pytest.raises(intake.MailConfigError):
        poll(settings, unit_of_work)
    assert ledger(session, folder) == []
    uids, done = flagged(dovecot, folder)
    assert done == set()


def test_the_event_of_a_closed_ticket_reply_does_not_notify_anybody(session, dovecot, folder, mail_settings,
                                                                    unit_of_work, contact):
    closed = f.make_ticket(session, "closed")
    notes = session.execute(sa.select(sa.func.count()).select_from(Notification)
                            .where(Notification.ticket_id == closed.id)).scalar()
    dovecot.append(folder, m.reply(contact, _notification_mail(session, closed), "好的"))
    poll(mail_settings, unit_of_work)
    assert session.execute(sa.select(sa.func.count()).select_from(Notification)
                           .where(Notification.ticket_id == closed.id)).scalar() == notes
    assert session.execute(sa.select(sa.func.count()).select_from(TicketEvent)
                           .where(TicketEvent.ticket_id == closed.id, TicketEvent.action == "comment")).scalar() == 1

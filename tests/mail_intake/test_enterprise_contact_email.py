"""An enterprise's ``contact_email`` (issue 12): the e-mail intake takes a message from it as from
that enterprise, beside its users' addresses: a new ticket, and ``add_info`` on a reply (real
Dovecot, real MIME). Set through the enterprises API, as an administrator does."""

from __future__ import annotations

import uuid

from service.mail_intake import imap
from service.mail_intake.service import SenderDirectory
from service.tickets.models import Ticket
from tests import factories as f
from tests.mail_intake import messages as m
from tests.mail_intake.test_intake import _notification_mail, ledger, poll


def set_contact_email(client, login, enterprise_id: int, address: str | None) -> None:
    resp = client.patch(f"/api/v1/enterprises/{enterprise_id}", json={"contact_email": address},
                        headers=login("admin"))
    assert resp.status_code == 200 and resp.json()["contact_email"] == address, resp.text


def test_directory_holds_the_enterprise_address(session, client, login):
    ent2 = f.enterprise_of(session, "ent2")
    address = f"Office-{uuid.uuid4().hex[:8]}@Example.com"
    set_contact_email(client, login, ent2.id, address)
    [contact] = SenderDirectory.load(session).lookup(address.lower())
    assert (contact.user_id, contact.enterprise_id) == (None, ent2.id)
    assert contact.actor.role == "enterprise" and contact.actor.enterprise_id == ent2.id
    # an address that is also a user's of that enterprise is the user (the ticket names them)
    f.user(session, "ent2").email = address
    session.flush()
    [contact] = SenderDirectory.load(session).lookup(address)
    assert contact.user_id == f.user(session, "ent2").id
    set_contact_email(client, login, ent2.id, None)


def test_mail_from_contact_email_makes_a_ticket_of_the_enterprise(session, client, login, dovecot, folder,
                                                                  mail_settings, unit_of_work):
    ent3 = f.enterprise_of(session, "ent3")
    address = f"ent3-office-{uuid.uuid4().hex[:8]}@example.com"
    set_contact_email(client, login, ent3.id, address)
    dovecot.append(folder, m.plain(f"企业办公室 <{address}>", "申请人才公寓", "我司新引进博士2名，申请人才公寓。"))
    assert poll(mail_settings, unit_of_work).states == {"ticket": 1}
    [row] = ledger(session, folder)
    ticket = session.get(Ticket, row.ticket_id)
    assert (ticket.channel, ticket.enterprise_id, ticket.status) == ("email", ent3.id, "submitted")
    assert ticket.submitted_by_id is None and row.sender_user_id is None
    [event] = f.events(session, ticket)
    assert (event.action, event.actor_role, event.actor_id) == ("submit", "enterprise", None)
    uids = imap_flagged(dovecot, folder)
    assert len(uids) == 1


def imap_flagged(dovecot, folder: str) -> set[int]:
    with dovecot.client(folder) as client:
        flags = client.get_flags(client.search("ALL"))
    return {uid for uid, fl in flags.items() if imap.KEYWORD in fl}


def test_reply_from_contact_email_adds_info(session, client, login, dovecot, folder, mail_settings, unit_of_work):
    ticket = f.make_ticket(session, "dispatched", title=f"用地 {uuid.uuid4().hex[:6]}")
    address = f"ent-office-{uuid.uuid4().hex[:8]}@example.com"
    set_contact_email(client, login, ticket.enterprise_id, address)
    sent = _notification_mail(session, ticket)
    dovecot.append(folder, m.reply(address, sent, "补充：地块编号 A-12。", quote="诉求已交办"))
    assert poll(mail_settings, unit_of_work).states == {"add_info": 1}
    event = f.events(session, ticket)[-1]
    assert (event.action, event.actor_role, event.actor_id, event.reason) == (
        "add_info", "enterprise", None, "补充：地块编号 A-12。")


def test_another_enterprise_s_contact_email_is_quarantined_on_a_reply(session, client, login, dovecot, folder,
                                                                      mail_settings, unit_of_work):
    ticket = f.make_ticket(session, "dispatched", title=f"用地 {uuid.uuid4().hex[:6]}")
    other = f.enterprise_of(session, "ent4")
    assert other.id != ticket.enterprise_id
    address = f"ent4-office-{uuid.uuid4().hex[:8]}@example.com"
    set_contact_email(client, login, other.id, address)
    dovecot.append(folder, m.reply(address, _notification_mail(session, ticket), "不是本企业的工单"))
    assert poll(mail_settings, unit_of_work).states == {"quarantined": 1}


def test_an_address_of_two_enterprises_is_ambiguous(session, client, login, dovecot, folder, mail_settings,
                                                     unit_of_work):
    address = f"shared-{uuid.uuid4().hex[:8]}@example.com"
    for name in ("ent7", "ent8"):
        set_contact_email(client, login, f.enterprise_of(session, name).id, address)
    assert {c.enterprise_id for c in SenderDirectory.load(session).lookup(address)} == {
        f.enterprise_of(session, "ent7").id, f.enterprise_of(session, "ent8").id}
    dovecot.append(folder, m.plain(address, "两家企业共用的地址", "请问如何申请补贴？"))
    assert poll(mail_settings, unit_of_work).states == {"quarantined": 1}

"""The intake's core on the embedded SQLite database (``qifu standalone``): a new ticket, a reply's
add_info, the quarantine, an ignored auto-reply, and exactly-once after a crash before flagging."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from service.db import make_engine, session_scope
from service.mail_intake import imap
from service.mail_intake.models import InboundMail
from service.tickets.models import Ticket, TicketEvent
from service.users.models import User
from tests.mail_intake import messages as m
from tests.scratch_db import build_database


@pytest.fixture(scope="module")
def sqlite_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, sa.Engine]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('mail') / 'qifu.db'}"
    build_database(url, enterprises=20)
    engine = make_engine(url)
    yield url, engine
    engine.dispose()


def test_intake_on_sqlite(sqlite_engine, dovecot, folder):
    url, engine = sqlite_engine
    address = f"lite-{uuid.uuid4().hex[:8]}@example.com"
    with Session(engine) as session:
        user = session.exec(select(User).where(User.username == "ent1")).one()
        user.email = address
        session.commit()
        ent_id = user.enterprise_id
    settings = dovecot.settings(folder, database_url=url)
    assert settings.is_sqlite

    def unit_of_work():
        return session_scope(engine)

    dovecot.append(folder, m.gb18030(f"联系人 <{address}>", "用工𠮷问题", "需要招聘50名普工。"),
                   m.plain("who@unknown.example", "陌生来信", "正文"),
                   m.auto_reply(address, "诉求已受理", ("Auto-Submitted", "auto-replied")))
    first = imap.poll(settings, unit_of_work=unit_of_work)
    assert first.states == {"ticket": 1, "quarantined": 1, "ignored": 1}
    with Session(engine) as session:
        row = session.exec(select(InboundMail).where(InboundMail.folder == folder,
                                                     InboundMail.state == "ticket")).one()
        ticket = session.get(Ticket, row.ticket_id)
        assert (ticket.channel, ticket.enterprise_id, ticket.title) == ("email", ent_id, "用工𠮷问题")
        number = ticket.number
    dovecot.append(folder, m.plain(address, f"Re: [{number}] 诉求已受理", "补充：岗位为普工和叉车工。"))
    assert imap.poll(settings, unit_of_work=unit_of_work).states == {"add_info": 1}
    with dovecot.client(folder) as client:  # died before flagging: the flags are gone
        client.remove_flags(client.search("ALL"), [imap.KEYWORD], silent=True)
    again = imap.poll(settings, unit_of_work=unit_of_work)
    assert (again.fetched, again.skipped, again.states) == (4, 4, {})
    with Session(engine) as session:
        assert session.execute(sa.select(sa.func.count()).select_from(InboundMail)
                               .where(InboundMail.folder == folder)).scalar() == 4
        assert session.execute(sa.select(sa.func.count()).select_from(TicketEvent).where(
            TicketEvent.ticket_id == row.ticket_id, TicketEvent.action == "add_info")).scalar() == 1

"""Near-duplicates at intake (issue 13; service/triage/duplicates.py): the MinHash LSH index is
written by the batch job after the one-statement intake (PostgreSQL) and by the ORM path (SQLite,
on-behalf), and the check finds the open near-duplicates of the same grid that the caller may see."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Session, select

from service.triage import duplicates
from service.triage.search_models import TicketLsh
from tests import factories as f

API = "/api/v1"
A_TITLE = "园区道路施工导致货车无法进出"
A_TEXT = ("我公司位于经开区创业路18号，近期园区道路施工，围挡把厂区大门封住，货车无法进出，"
          "原材料和成品运输中断，影响正常生产经营，请协调施工单位预留临时通道。")
# the same matter written by a neighbour: other number, other words at the edges
B_TITLE = "园区道路施工导致货车无法进出厂区"
B_TEXT = ("我公司位于经开区创业路20号，近期园区道路施工，围挡把厂区大门封住，货车无法进出，"
          "原材料和成品运输中断，影响正常生产经营，恳请协调施工单位预留临时通道。")
OTHER_TITLE = "申请高新技术企业认定需要哪些材料"
OTHER_TEXT = "我司计划今年申报高新技术企业，请问需要准备哪些材料，研发费用占比有什么要求？"


def rows_of(session: Session, ticket_id: int) -> int:
    return session.execute(sa.select(sa.func.count()).select_from(TicketLsh)
                           .where(TicketLsh.ticket_id == ticket_id)).scalar_one()


def test_bands_near_and_far():
    a, b, o = (set(duplicates.bands(t, d)) for t, d in ((A_TITLE, A_TEXT), (B_TITLE, B_TEXT),
                                                         (OTHER_TITLE, OTHER_TEXT)))
    assert len(a) == duplicates.BANDS and a == set(duplicates.bands(A_TITLE, A_TEXT))  # deterministic
    assert a & b and not a & o
    sim = duplicates.jaccard(duplicates.shingles(duplicates.ticket_text(A_TITLE, A_TEXT)),
                             duplicates.shingles(duplicates.ticket_text(B_TITLE, B_TEXT)))
    assert 0.6 < sim < 1
    assert duplicates.bands("", "  ，。") == []
    assert len(duplicates.shingles("ab")) == 1


def _submit(client, login, who: str, title: str, text: str, **extra) -> str:
    resp = client.post(f"{API}/tickets", json={"title": title, "description": text,
                                               "category_code": "problem.labour", **extra}, headers=login(who))
    assert resp.status_code == 201, resp.text
    return resp.json()["number"]


def test_intake_statement_then_job_indexes_and_check_finds(session, client, login):
    """ent1 submits (the one-statement intake: no index rows until the batch job ran); officer1
    submits a near-copy on behalf of a neighbour in the same grid (the ORM path): it is flagged."""
    from service.enterprises.models import Enterprise

    ent1 = f.enterprise_of(session, "ent1")
    neighbour = session.exec(select(Enterprise).where(Enterprise.grid_id == ent1.grid_id,
                                                      Enterprise.id != ent1.id)).first()
    other = _submit(client, login, "ent1", OTHER_TITLE, OTHER_TEXT)  # may create the year's sequence
    first = _submit(client, login, "ent1", A_TITLE, A_TEXT)  # the one-statement intake
    t1 = session.exec(select(f.Ticket).where(f.Ticket.number == first)).one()
    assert rows_of(session, t1.id) == 0  # the intake statement leaves the rows to the job
    assert duplicates.index_pending(session) >= 1  # the job (beat triage.index_duplicates)
    assert rows_of(session, t1.id) == duplicates.BANDS
    assert duplicates.index_pending(session) == 0  # idempotent
    second = _submit(client, login, "officer1", B_TITLE, B_TEXT, enterprise_id=neighbour.id, channel="hotline")
    t2 = session.exec(select(f.Ticket).where(f.Ticket.number == second)).one()
    assert rows_of(session, t2.id) == duplicates.BANDS  # the ORM path writes them itself
    assert t1.grid_id == t2.grid_id

    resp = client.get(f"{API}/tickets/{second}/duplicates", headers=login("officer1"))
    assert resp.status_code == 200, resp.text
    cands = resp.json()["candidates"]
    assert [c["number"] for c in cands] == [first]
    assert 0.6 < cands[0]["similarity"] < 1 and cands[0]["shared_bands"] >= 1
    assert other not in [c["number"] for c in cands]

    # roles and scope: enterprises and departments may not; an officer of another grid gets 404
    assert client.get(f"{API}/tickets/{first}/duplicates", headers=login("ent1")).status_code == 403
    assert client.get(f"{API}/tickets/{second}/duplicates", headers=login("officer12")).status_code == 404
    assert client.get(f"{API}/tickets/{second}/duplicates", headers=login("supervisor1")).status_code == 200

    # a merged (rejected) ticket is no longer a candidate; the sweep removes its rows
    f.act(session, t1, "merge", {"into": second}, by="officer1")
    session.commit()
    assert client.get(f"{API}/tickets/{second}/duplicates", headers=login("officer1")).json()["candidates"] == []
    assert duplicates.sweep(session) >= duplicates.BANDS
    assert rows_of(session, t1.id) == 0
    assert duplicates.reindex_open(session) == 0  # every open ticket has its rows


def test_other_grid_is_not_a_candidate(session):
    first = f.submit(session, enterprise="ent1", title=A_TITLE, description=A_TEXT)
    elsewhere = f.submit(session, enterprise="ent2", title=B_TITLE, description=B_TEXT)
    assert first.grid_id != elsewhere.grid_id
    assert duplicates.find_duplicates(session, f.actor(session, "admin"), elsewhere) == []
    assert [c.number for c in duplicates.find_duplicates(session, f.actor(session, "admin"), first)] == []


def test_orm_path_on_sqlite(sqlite_session):
    """On SQLite (the embedded default) the ORM path writes the same rows and the check agrees."""
    s = sqlite_session
    from service.enterprises.models import Enterprise

    ents = s.exec(select(Enterprise).where(Enterprise.grid_id.is_not(None)).order_by(Enterprise.id)).all()
    by_grid: dict[int, list[Enterprise]] = {}
    for e in ents:
        by_grid.setdefault(e.grid_id, []).append(e)
    a, b = next(v for v in by_grid.values() if len(v) >= 2)[:2]
    admin = f.actor(s, "admin")
    cat = f.category(s, "problem.labour")
    from service.ticketing.service import create_ticket

    t1 = create_ticket(s, enterprise=a, category=cat, title=A_TITLE, description=A_TEXT, channel="web", actor=admin)
    t2 = create_ticket(s, enterprise=b, category=cat, title=B_TITLE, description=B_TEXT, channel="web", actor=admin)
    create_ticket(s, enterprise=b, category=cat, title=OTHER_TITLE, description=OTHER_TEXT, channel="web",
                  actor=admin)
    assert rows_of(s, t1.id) == duplicates.BANDS
    found = duplicates.find_duplicates(s, admin, t2)
    assert [c.number for c in found] == [t1.number]
    assert found[0].similarity == round(duplicates.jaccard(
        duplicates.shingles(duplicates.ticket_text(A_TITLE, A_TEXT)),
        duplicates.shingles(duplicates.ticket_text(B_TITLE, B_TEXT))), 2)


def test_index_pending_looks_back_for_late_commits(session):
    """A ticket numbered below the highest indexed one (its statement committed later) is indexed
    while within the look-back window; below the window reindex_open catches it."""
    late = f.submit(session, enterprise="ent1", title=A_TITLE, description=A_TEXT)
    newer = f.submit(session, enterprise="ent1", title=OTHER_TITLE, description=OTHER_TEXT)
    assert late.id < newer.id and rows_of(session, newer.id) == duplicates.BANDS
    session.execute(sa.delete(TicketLsh).where(TicketLsh.ticket_id == late.id))
    assert duplicates.index_pending(session, lookback=0) == 0  # outside the window
    assert rows_of(session, late.id) == 0
    assert duplicates.index_pending(session, lookback=newer.id - late.id) >= 1
    assert rows_of(session, late.id) == duplicates.BANDS
    session.execute(sa.delete(TicketLsh).where(TicketLsh.ticket_id == late.id))
    assert duplicates.reindex_open(session) >= 1 and rows_of(session, late.id) == duplicates.BANDS

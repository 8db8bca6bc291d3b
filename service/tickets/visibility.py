"""Row visibility of tickets (SPEC §1): who may see which ticket.

- enterprise: its own enterprise's tickets;
- officer: tickets of enterprises assigned to them, of their grids, or where they are the
  responsible officer;
- department: tickets whose lead or co-handling department is theirs;
- supervisor: tickets in their region subtree (no region = the whole county);
- admin and system: everything.

A ticket outside one's scope answers 404 (not 403), so numbers cannot be probed.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Session, select

from service.auth.actor import Actor
from service.enterprises.models import Enterprise
from service.regions.models import Grid, Region
from service.tickets.models import Ticket, TicketCoDepartment
from service.users.models import OfficerGrid


def region_subtree_ids(session: Session, region_id: int) -> list[int]:
    """Ids of ``region_id`` and all its descendants (the region table is small: read it once)."""
    rows = session.exec(select(Region.id, Region.parent_id)).all()
    children: dict[int | None, list[int]] = {}
    for rid, parent in rows:
        children.setdefault(parent, []).append(rid)
    result, stack = [], [region_id]
    while stack:
        rid = stack.pop()
        result.append(rid)
        stack.extend(children.get(rid, []))
    return result


def ticket_visibility(session: Session, actor: Actor) -> sa.ColumnElement[bool]:
    """A SQL condition on :class:`Ticket` that is true exactly for the tickets ``actor`` may see."""
    role = actor.role
    if role in ("admin", "system"):
        return sa.true()
    if role == "enterprise":
        if actor.enterprise_id is None:
            return sa.false()
        return Ticket.enterprise_id == actor.enterprise_id
    if role == "department":
        if actor.department_id is None:
            return sa.false()
        co = sa.exists().where(TicketCoDepartment.ticket_id == Ticket.id,
                               TicketCoDepartment.department_id == actor.department_id)
        return sa.or_(Ticket.lead_department_id == actor.department_id, co)
    if role == "officer":
        my_grids = select(OfficerGrid.grid_id).where(OfficerGrid.officer_id == actor.user_id)
        my_enterprises = select(Enterprise.id).where(Enterprise.officer_id == actor.user_id)
        return sa.or_(Ticket.officer_id == actor.user_id, Ticket.grid_id.in_(my_grids),
                      Ticket.enterprise_id.in_(my_enterprises))
    if role == "supervisor":
        if actor.region_id is None:
            return sa.true()
        grids = select(Grid.id).where(Grid.region_id.in_(region_subtree_ids(session, actor.region_id)))
        return Ticket.grid_id.in_(grids)
    return sa.false()


def enterprise_visibility(session: Session, actor: Actor) -> sa.ColumnElement[bool]:
    """A SQL condition on :class:`Enterprise`: the enterprises ``actor`` may see (and act for)."""
    role = actor.role
    if role in ("admin", "system"):
        return sa.true()
    if role == "enterprise":
        return Enterprise.id == actor.enterprise_id if actor.enterprise_id else sa.false()
    if role == "officer":
        my_grids = select(OfficerGrid.grid_id).where(OfficerGrid.officer_id == actor.user_id)
        return sa.or_(Enterprise.officer_id == actor.user_id, Enterprise.grid_id.in_(my_grids))
    if role == "supervisor":
        if actor.region_id is None:
            return sa.true()
        grids = select(Grid.id).where(Grid.region_id.in_(region_subtree_ids(session, actor.region_id)))
        return Enterprise.grid_id.in_(grids)
    if role == "department":
        # a handler sees the enterprises of the tickets dispatched to their department
        return Enterprise.id.in_(select(Ticket.enterprise_id).where(ticket_visibility(session, actor)))
    return sa.false()

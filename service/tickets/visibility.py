"""Row visibility (SPEC §1): the one place that says which rows an actor may see.

Every endpoint that reads or writes tickets, enterprises, cadence rows (inquiries, clinic agendas,
follow-ups, return visits), reports, notifications, statistics or users filters through
:class:`Scope` (or the two functions kept for existing callers, :func:`ticket_visibility` and
:func:`enterprise_visibility`, which are the same rules).

Tickets:

- enterprise: its own enterprise's tickets;
- officer: tickets of enterprises assigned to them, of their grids, or where they are the
  responsible officer;
- department: tickets whose lead or co-handling department is theirs;
- supervisor: tickets in their region subtree (no region = the whole county);
- admin and system: everything.

Enterprises: an enterprise user its own; an officer those assigned to them or in their grids; a
supervisor those in their region subtree; a department those of the tickets it may see.

Regions (clinic sessions are held per town/street/park): a supervisor's region subtree, an
enterprise user's own region; officers, departments, admins and county supervisors are not bound
to a region (``None`` = every region).

The rule for refusals (docs/decisions.md "Row scope everywhere"): an object named in the URL that
is unknown *or* outside the caller's scope answers **404** — for reads and for writes alike, so a
number or id cannot be probed, and nothing is written. An object named in a request *body* (the
enterprise of a new ticket or of a clinic problem, the ticket to flag or merge into) answers
**422** naming the field, with the same message whether it does not exist or is out of scope.
A *role* that may never use an endpoint still answers 403 (that reveals nothing about rows).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from service.auth.actor import Actor
from service.common.trees import subtree_ids
from service.enterprises.models import Enterprise
from service.errors import FieldError, NotFound, TicketNotFound
from service.regions.models import Grid, Region
from service.tickets.models import Ticket, TicketCoDepartment
from service.users.models import OfficerGrid, User


def region_subtree_ids(session: Session, region_id: int) -> list[int]:
    """Ids of ``region_id`` and all its descendants (:func:`service.common.trees.subtree_ids`)."""
    return subtree_ids(session, Region, region_id) or [region_id]


@dataclass(frozen=True)
class Scope:
    """What one actor may see (SPEC §1): SQL predicates per resource, and checks that raise.

    Build it with :func:`scope_of`. Predicates are SQL conditions (``sa.ColumnElement[bool]``) to
    put in a ``WHERE``; they are correlated to the entity named (:class:`Ticket`,
    :class:`Enterprise`, :class:`User`) or to the column given.
    """

    session: Session
    actor: Actor

    # ------------------------------------------------------------------ shape of the scope

    @property
    def unlimited(self) -> bool:
        """True for admins, the system and county-wide supervisors: every row is visible."""
        role = self.actor.role
        return role in ("admin", "system") or (role == "supervisor" and self.actor.region_id is None)

    def region_ids(self) -> list[int] | None:
        """The regions the actor's scope is bound to (``None`` = not bound: every region).

        A supervisor: their region subtree; an enterprise user: the region of its enterprise's grid
        (``[]`` when it has none); other roles: ``None``.
        """
        if self.actor.role == "supervisor" and self.actor.region_id is not None:
            return region_subtree_ids(self.session, self.actor.region_id)
        if self.actor.role == "enterprise":
            if self.actor.enterprise_id is None:
                return []
            region = self.session.execute(
                sa.select(Grid.region_id).join(Enterprise, Enterprise.grid_id == Grid.id)
                .where(Enterprise.id == self.actor.enterprise_id)).scalar()
            return [region] if region is not None else []
        return None

    def grid_ids(self) -> list[int] | None:
        """The grids of :meth:`region_ids` (``None`` = every grid)."""
        regions = self.region_ids()
        if regions is None:
            return None
        if not regions:
            return []
        return list(self.session.execute(sa.select(Grid.id).where(Grid.region_id.in_(regions))).scalars())

    def _grids_select(self):
        """The grids of :meth:`region_ids` as a sub-select (no extra round trip)."""
        return select(Grid.id).where(Grid.region_id.in_(self.region_ids() or [-1]))

    def regions(self, region_column) -> sa.ColumnElement[bool]:
        """``region_column`` (a region id) lies in :meth:`region_ids`; always true when not bound."""
        regions = self.region_ids()
        return sa.true() if regions is None else region_column.in_(regions or [-1])

    # ------------------------------------------------------------------ predicates

    def tickets(self) -> sa.ColumnElement[bool]:
        """True exactly for the :class:`Ticket` rows the actor may see."""
        actor, role = self.actor, self.actor.role
        if self.unlimited:
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
            return Ticket.grid_id.in_(self._grids_select())
        return sa.false()

    def enterprises(self) -> sa.ColumnElement[bool]:
        """True exactly for the :class:`Enterprise` rows the actor may see (and act for)."""
        actor, role = self.actor, self.actor.role
        if self.unlimited:
            return sa.true()
        if role == "enterprise":
            return Enterprise.id == actor.enterprise_id if actor.enterprise_id else sa.false()
        if role == "officer":
            my_grids = select(OfficerGrid.grid_id).where(OfficerGrid.officer_id == actor.user_id)
            return sa.or_(Enterprise.officer_id == actor.user_id, Enterprise.grid_id.in_(my_grids))
        if role == "supervisor":
            return Enterprise.grid_id.in_(self._grids_select())
        if role == "department":
            # a handler sees the enterprises of the tickets dispatched to their department
            return Enterprise.id.in_(select(Ticket.enterprise_id).where(self.tickets()))
        return sa.false()

    def enterprise_ids(self, column) -> sa.ColumnElement[bool]:
        """``column`` (an enterprise id) names an enterprise the actor may see."""
        if self.unlimited:
            return sa.true()
        return column.in_(select(Enterprise.id).where(self.enterprises()))

    def ticket_ids(self, column) -> sa.ColumnElement[bool]:
        """``column`` (a ticket id) names a ticket the actor may see."""
        if self.unlimited:
            return sa.true()
        return column.in_(select(Ticket.id).where(self.tickets()))

    def users(self) -> sa.ColumnElement[bool]:
        """The :class:`User` rows the actor may list: admins and county supervisors all; a
        supervisor of a region the staff accounts and the enterprise users of its enterprises;
        everyone else only themselves."""
        if self.unlimited:
            return sa.true()
        if self.actor.role == "supervisor":
            return sa.or_(User.role != "enterprise", self.enterprise_ids(User.enterprise_id))
        return User.id == self.actor.user_id

    # ------------------------------------------------------------------ checks

    def require_enterprise(self, enterprise_id: int, *, field: str | None = None) -> Enterprise:
        """The enterprise if the actor may see it.

        Raises:
            NotFound (404): unknown or out of scope, when the id comes from the URL (``field`` None).
            FieldError (422, ``field``): the same, when the id comes from the request body.
        """
        row = self.session.exec(select(Enterprise).where(Enterprise.id == enterprise_id,
                                                         self.enterprises())).first()
        if row is None:
            if field is not None:
                raise FieldError(field, f"企业 {enterprise_id} 不存在或不在您的服务范围内")
            raise NotFound(f"企业 {enterprise_id} 不存在")
        return row

    def can_see_ticket(self, ticket_id: int | None) -> bool:
        """Whether the ticket ``ticket_id`` exists and is visible (False for ``None``)."""
        if ticket_id is None:
            return False
        return self.session.execute(sa.select(Ticket.id).where(Ticket.id == ticket_id, self.tickets())).first() \
            is not None

    def visible_numbers(self, numbers: Iterable[str]) -> set[str]:
        """The subset of ticket ``numbers`` the actor may see (one query)."""
        wanted = sorted({n for n in numbers if isinstance(n, str) and "\x00" not in n})
        if not wanted:
            return set()
        if self.unlimited:
            return set(wanted)
        return set(self.session.execute(sa.select(Ticket.number).where(
            Ticket.number.in_(wanted), self.tickets())).scalars())

    def redact(self, data: Any) -> Any:
        """A copy of a stored document (a report's ``data``) without the rows that name a ticket
        the actor may not see: every dict inside a list that has a ``number`` or
        ``ticket_number`` key is kept only if that ticket is visible. A ``count`` beside a list
        that lost rows is set to the rows left. Aggregates (counts, rates, rankings) are left as
        they are. Unlimited actors get ``data`` itself."""
        if self.unlimited:
            return data
        visible = self.visible_numbers(_ticket_numbers(data))
        return _redact(data, visible)


def scope_of(session: Session, actor: Actor) -> Scope:
    """The :class:`Scope` of ``actor``."""
    return Scope(session, actor)


def ticket_visibility(session: Session, actor: Actor) -> sa.ColumnElement[bool]:
    """A SQL condition on :class:`Ticket` that is true exactly for the tickets ``actor`` may see
    (:meth:`Scope.tickets`)."""
    return Scope(session, actor).tickets()


def get_visible_ticket(session: Session, actor: Actor, number: str, *, for_update: bool = False) -> Ticket:
    """Load the ticket ``number`` if ``actor`` may see it.

    Raises:
        TicketNotFound (404): no such ticket, or not visible to ``actor`` (SPEC §1).
    """
    if "\x00" in number:  # cannot exist (and PostgreSQL refuses NUL in text)
        raise TicketNotFound(f"工单 {number!r} 不存在")
    stmt = select(Ticket).where(Ticket.number == number, ticket_visibility(session, actor))
    if for_update:
        stmt = stmt.with_for_update()
    ticket = session.exec(stmt).first()
    if ticket is None:
        raise TicketNotFound(f"工单 {number} 不存在")
    return ticket


def enterprise_visibility(session: Session, actor: Actor) -> sa.ColumnElement[bool]:
    """A SQL condition on :class:`Enterprise`: the enterprises ``actor`` may see and act for
    (:meth:`Scope.enterprises`)."""
    return Scope(session, actor).enterprises()


_NUMBER_KEYS = ("number", "ticket_number")


def _row_number(row: dict) -> str | None:
    for key in _NUMBER_KEYS:
        if isinstance(row.get(key), str):
            return row[key]
    return None


def _ticket_numbers(data: Any) -> Iterable[str]:
    if isinstance(data, dict):
        for value in data.values():
            yield from _ticket_numbers(value)
    elif isinstance(data, list):
        for item in data:
            if isinstance(item, dict) and _row_number(item) is not None:
                yield _row_number(item)
            yield from _ticket_numbers(item)


def _redact(data: Any, visible: set[str]) -> Any:
    if isinstance(data, list):
        return [_redact(item, visible) for item in data
                if not (isinstance(item, dict) and _row_number(item) is not None and _row_number(item) not in visible)]
    if isinstance(data, dict):
        out = {k: _redact(v, visible) for k, v in data.items()}
        shrunk = [k for k, v in data.items() if isinstance(v, list) and len(out[k]) != len(v)]
        if "count" in out and len(shrunk) == 1 and data["count"] == len(data[shrunk[0]]):
            out["count"] = len(out[shrunk[0]])
        return out
    return data

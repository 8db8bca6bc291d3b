"""``service.db.new_row(Model, values)`` builds the same object as ``Model(**values)`` (SQLModel's
table constructor), only cheaper (the importer's and every submission's ticket; docs/import.md
"Performance"): same attributes, same ``model_fields_set``, same ORM state, before and after
``insert_now`` writes it; and it falls back to the constructor where that does more."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlmodel import Session, SQLModel, select

from service.categories.models import Category
from service.common.enums import Channel
from service.db import insert_now, new_row
from service.enterprises.models import Enterprise
from service.ticketing.intake import new_ticket_columns
from service.tickets.models import Ticket

_PYDANTIC_SLOTS = ("__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")


def _snapshot(obj: SQLModel) -> dict:
    state = sa.inspect(obj)
    return {
        "dict": {k: v for k, v in obj.__dict__.items() if k != "_sa_instance_state"},
        "slots": {name: getattr(obj, name) for name in _PYDANTIC_SLOTS},
        "dump": obj.model_dump(), "set_dump": obj.model_dump(exclude_unset=True),
        "state": (state.transient, state.pending, state.persistent, state.detached, state.modified, state.key,
                  dict(state.committed_state), sorted(state.unloaded)),
        "history": {a.key: tuple(map(tuple, a.history)) for a in state.attrs},
    }


def _columns(session: Session, number: str) -> dict:
    enterprise = session.exec(select(Enterprise).where(Enterprise.grid_id.is_not(None))).first()
    category = session.exec(select(Category)).first()
    at = datetime(2019, 3, 1, 2, 0, tzinfo=UTC)
    columns = new_ticket_columns(
        session, enterprise_id=enterprise.id, grid_id=enterprise.grid_id, officer_id=enterprise.officer_id,
        category_id=category.id, service_type=category.service_type, title="噪音扰民", description="夜间施工",
        channel=Channel.import_.value, priority="normal", submitted_by_id=None, at=at, external_ref=None)
    return {"number": number, **columns}


def test_new_row_is_the_constructor(session: Session):
    values = _columns(session, "T-NEWROW-1")
    built, constructed = new_row(Ticket, dict(values)), Ticket(**dict(values))
    assert type(built) is Ticket
    assert _snapshot(built) == _snapshot(constructed)
    assert built.model_fields_set == set(values)


def test_same_after_insert_now(session: Session):
    built = new_row(Ticket, _columns(session, "T-NEWROW-2"))
    constructed = Ticket(**_columns(session, "T-NEWROW-3"))
    insert_now(session, [built])
    insert_now(session, [constructed])
    a, b = _snapshot(built), _snapshot(constructed)
    for snap in (a, b):  # the only differences: the database's id and the number given
        snap["dict"].pop("id"), snap["dict"].pop("number"), snap["dump"].pop("id"), snap["dump"].pop("number")
        snap["set_dump"].pop("id"), snap["set_dump"].pop("number")
        snap["history"].pop("id"), snap["history"].pop("number")
        snap["state"] = snap["state"][:5] + snap["state"][6:]  # the identity key holds the id
    assert a == b
    assert sa.inspect(built).persistent and built in session
    built.title = "改"  # still tracked as a loaded ticket is
    session.flush()
    assert session.execute(sa.select(Ticket.title).where(Ticket.id == built.id)).scalar_one() == "改"


def test_defaults_and_unknown_names(session: Session):
    values = _columns(session, "T-NEWROW-4")
    for name in ("version", "return_count", "hold_seconds"):  # fields with defaults, not given
        values.pop(name, None)
    assert _snapshot(new_row(Ticket, dict(values))) == _snapshot(Ticket(**dict(values)))
    values["not_a_field"] = 1  # SQLModel ignores it: new_row leaves it to the constructor
    assert _snapshot(new_row(Ticket, dict(values))) == _snapshot(Ticket(**dict(values)))

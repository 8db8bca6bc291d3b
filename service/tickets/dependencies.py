"""Load-or-404 dependencies for ticket routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header

from service.auth.dependencies import CurrentActor, SessionDep
from service.errors import FieldError
from service.tickets import service as ticket_service
from service.tickets.models import Ticket


def visible_ticket(number: str, session: SessionDep, actor: CurrentActor) -> Ticket:
    """The ticket ``number`` if the caller may see it, else 404 (SPEC §1)."""
    return ticket_service.get_visible_ticket(session, actor, number)


CurrentTicket = Annotated[Ticket, Depends(visible_ticket)]


def if_match_version(if_match: Annotated[str | None, Header()] = None) -> int | None:
    """Parse ``If-Match: "7"`` (or ``W/"7"`` or ``7``) into a version number.

    Raises:
        FieldError (422, field ``If-Match``): not a version ETag.
    """
    if if_match is None or if_match.strip() == "*":
        return None
    value = if_match.strip()
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"')
    if not value.isdigit():
        raise FieldError("If-Match", "应为工单的 ETag，例如 \"3\"")
    return int(value)

"""Load-or-404 dependencies for ticket routes."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Header

from service.auth.dependencies import CurrentActor, SessionDep
from service.common.schemas import INT32_MAX
from service.errors import FieldError
from service.ticketing import service as ticket_service
from service.tickets.models import Ticket


def visible_ticket(number: str, session: SessionDep, actor: CurrentActor) -> Ticket:
    """The ticket ``number`` if the caller may see it, else 404 (SPEC §1)."""
    return ticket_service.get_visible_ticket(session, actor, number)


CurrentTicket = Annotated[Ticket, Depends(visible_ticket)]


#: A version ETag: ASCII digits only (``str.isdigit`` also takes "²" or "٣"), at most 10 of them.
_ETAG = re.compile(r'(?:W/)?"?([0-9]{1,10})"?')


def if_match_version(if_match: Annotated[str | None, Header()] = None) -> int | None:
    """Parse ``If-Match: "7"`` (or ``W/"7"`` or ``7``) into a version number; ``*`` or no
    header is ``None`` (no check). The one parser of ``If-Match`` (docs/decisions.md).

    Raises:
        FieldError (422, field ``If-Match``): not one version ETag of ASCII digits within
        ``0 .. INT32_MAX`` (a version is an ``INTEGER`` column).
    """
    if if_match is None or if_match.strip() == "*":
        return None
    match = _ETAG.fullmatch(if_match.strip())
    version = int(match.group(1)) if match else -1
    if not 0 <= version <= INT32_MAX:
        raise FieldError("If-Match", "应为工单的 ETag，例如 \"3\"")
    return version

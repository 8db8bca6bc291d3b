"""Open311 API keys (issue 12): who may submit requests through GeoReport v2 (docs/open311.md)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from service import clock
from service.common.enums import Channel
from service.db import UTCDateTime, check_in


class Open311Key(SQLModel, table=True):
    """An API key of an integrating system (a city portal, a 311 app, an enterprise's own system).

    Only the SHA-256 of the key is stored (``key_hash``, hex); the key itself is shown once when
    it is made. ``key_prefix`` (the key's first 12 characters) names it in lists and logs.

    ``enterprise_id`` set: the key submits for that enterprise only ("its own"); ``None``: for
    any enterprise, named by its USCC in ``attribute[uscc]``. ``user_id`` is the key's service
    account (a ``user_account`` row that cannot log in): the actor of its submissions, so that
    ``submitted_by_id``, the idempotency keys and the history name the key like any submitter.
    ``revoked_at`` set: the key is refused from then on (rows are never deleted: tickets refer
    to the service account).
    """

    __tablename__ = "open311_api_key"
    __table_args__ = (check_in("channel", [c.value for c in Channel if c != Channel.import_]),)

    id: int | None = Field(default=None, primary_key=True)
    system_name: str = Field(max_length=100)
    channel: str = Field(default=Channel.open311.value, max_length=16)
    key_prefix: str = Field(max_length=16)
    key_hash: str = Field(max_length=64, unique=True)
    enterprise_id: int | None = Field(default=None, foreign_key="enterprise.id", index=True)
    user_id: int = Field(foreign_key="user_account.id", unique=True)
    created_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    created_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


__all__ = ["Open311Key"]

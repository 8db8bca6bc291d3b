"""Request and response models of the Open311 key administration (``/api/v1/open311/keys``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from service.common.enums import Channel
from service.common.schemas import InputModel, ShortText


class KeyCreate(InputModel):
    """Body of ``POST /api/v1/open311/keys``: the integrating system's name, its channel (default
    ``open311``) and the enterprise it may submit for (``enterprise_id``), or none: any
    enterprise named by USCC in ``attribute[uscc]`` (docs/open311.md)."""

    model_config = ConfigDict(extra="forbid")

    system_name: ShortText = Field(max_length=100)
    channel: Channel = Channel.open311
    enterprise_id: int | None = Field(default=None, ge=1, le=2**31 - 1)


class KeyRead(BaseModel):
    """An API key as listed: never the key itself (only its first characters, ``key_prefix``)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    system_name: str
    channel: str
    key_prefix: str
    enterprise_id: int | None
    user_id: int
    created_by_id: int | None
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(KeyRead):
    """A new API key: ``api_key`` is shown this once (only its SHA-256 is stored)."""

    api_key: str

"""Response models of the attachment API (issue 12)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class AttachmentRead(BaseModel):
    """An attachment as listed: ``content_type`` detected from the bytes, ``size`` in bytes,
    ``url`` the download (``GET /api/v1/attachments/{id}``)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    ticket_number: str
    event_id: int | None
    filename: str
    content_type: str
    size: int = Field(description="字节数")
    sha256: str
    uploaded_by_id: int | None
    created_at: datetime
    url: str

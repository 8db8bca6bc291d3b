"""Response models of the attachment API (issue 12)."""

from __future__ import annotations

from datetime import datetime

from fastapi import UploadFile
from pydantic import BaseModel, ConfigDict, Field

from service.common.schemas import Id, InputModel, NoteText


class UploadIn(InputModel):
    """The multipart form of ``POST /tickets/{number}/attachments``: one or more ``files``, an
    optional ``event_id`` (the ticket's event the files belong to) and ``note`` (the events' reason)."""

    files: list[UploadFile] = Field(description="文件（可多个）")
    event_id: Id | None = Field(default=None, description="关联的流转记录 id")
    note: NoteText | None = Field(default=None, description="说明")


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

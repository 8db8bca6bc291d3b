"""Attachment endpoints (issue 12, docs/attachments.md): upload to a ticket, list, download.

Thin: the ticket is loaded under the caller's row scope (404 otherwise), each file goes through
:func:`service.attachments.service.store`, and a download carries headers that keep the bytes
from ever being run or rendered as active content.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Path, Response, UploadFile, status

from service.attachments import schemas
from service.attachments import service as attachments
from service.attachments.detect import EXTENSIONS
from service.auth.dependencies import CurrentActor, SessionDep
from service.common.openapi import problem_responses
from service.common.schemas import INT32_MAX
from service.config import get_settings
from service.errors import FieldError, FileTooLarge
from service.ticketing.dependencies import CurrentTicket

router = APIRouter(tags=["attachments"])

#: The headers of every download: a file is saved, never shown inline; the browser must not guess
#: another type (nosniff); if it is opened anyway, a sandbox without scripts, plugins or origin.
DOWNLOAD_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox; default-src 'none'",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "private, no-cache",
}
_BINARY = {"schema": {"type": "string", "format": "binary"}}


@router.post(
    "/tickets/{number}/attachments", response_model=list[schemas.AttachmentRead],
    status_code=status.HTTP_201_CREATED, responses=problem_responses(403, 413, 415), summary="上传附件",
    description="multipart/form-data：一个或多个 `files`，可选 `event_id`（附在该条流转记录上）与 `note`。"
                "类型按文件内容检测（图片、PDF、Office 文档、纯文本），不看文件名；单个文件上限见 "
                "`QIFU_ATTACHMENT_MAX_BYTES`（默认 10 MiB，超出 413），类型不允许 415；同一工单上相同内容只存一份。",
)
def upload(
    ticket: CurrentTicket, session: SessionDep, actor: CurrentActor,
    files: Annotated[list[UploadFile], File(description="文件（可多个）")],
    event_id: Annotated[int | None, Form(ge=1, le=INT32_MAX, description="关联的流转记录 id")] = None,
    note: Annotated[str | None, Form(max_length=2000, pattern=r"^[^\x00]*$", description="说明")] = None,
) -> list[schemas.AttachmentRead]:
    settings = get_settings()
    if len(files) > settings.attachment_max_files:
        raise FieldError("files", f"一次最多上传 {settings.attachment_max_files} 个文件")
    attachments.check_may_attach(ticket, actor)
    contents = []
    for i, upload_file in enumerate(files):  # every file checked before any is stored
        field = f"files[{i}]"
        data = upload_file.file.read(settings.attachment_max_bytes + 1)
        if len(data) > settings.attachment_max_bytes:
            raise FileTooLarge(field, f"文件超过 {settings.attachment_max_bytes} 字节的上限")
        attachments.check_file(data, upload_file.filename, field=field)
        contents.append((field, upload_file, data))
    stored = [attachments.store(session, ticket=ticket, event_id=event_id, filename=upload_file.filename,
                                content_type_hint=upload_file.content_type, data=data, actor=actor, note=note,
                                field=field)
              for field, upload_file, data in contents]
    return [attachments.attachment_read(a, ticket) for a in stored]


@router.get("/tickets/{number}/attachments", response_model=list[schemas.AttachmentRead], summary="附件列表")
def list_attachments(ticket: CurrentTicket, session: SessionDep, actor: CurrentActor) -> list[schemas.AttachmentRead]:
    return [attachments.attachment_read(a, ticket) for a in attachments.list_attachments(session, actor, ticket)]


@router.get(
    "/attachments/{attachment_id}", response_class=Response, summary="下载附件",
    responses={200: {"description": "文件内容（Content-Type 为按内容检测的类型，总是作为附件下载）",
                     "content": {t: _BINARY for t in EXTENSIONS}}},
)
def download(
    attachment_id: Annotated[int, Path(ge=1, le=INT32_MAX)], session: SessionDep, actor: CurrentActor,
) -> Response:
    attachment, _ticket = attachments.get_visible_attachment(session, actor, attachment_id)
    data = attachments.read_bytes(attachment)
    headers = {**DOWNLOAD_HEADERS, "Content-Disposition": content_disposition(attachment.filename),
               "ETag": f'"{attachment.sha256}"'}
    return Response(data, media_type=attachment.content_type, headers=headers)


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII ``filename`` fallback and the UTF-8 ``filename*`` (RFC 6266 §4.3,
    RFC 8187 / 5987 encoding), e.g. ``attachment; filename="_.pdf"; filename*=UTF-8''%E5%90%88.pdf``."""
    fallback = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\%' else "_" for ch in filename) or "file"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"

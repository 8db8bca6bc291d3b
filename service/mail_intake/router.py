"""``/api/v1/mail/quarantine``: e-mail from unknown senders, waiting for an officer to attach it
to an enterprise (making its ticket) or discard it (docs/mail_intake.md). Officers and admins see
every quarantined message (it belongs to no enterprise yet); other roles get 403."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from sqlmodel import Session

from service.auth.actor import Actor
from service.auth.dependencies import SessionDep, require_roles
from service.common.openapi import problem_responses
from service.common.schemas import Id
from service.mail_intake import service as mail
from service.mail_intake.models import InboundMail
from service.mail_intake.schemas import AttachIn, DiscardIn, QuarantinedMailRead

router = APIRouter(prefix="/mail/quarantine", tags=["mail"])

QuarantineActor = Annotated[Actor, Depends(require_roles(*sorted(mail.QUARANTINE_ROLES)))]
MailId = Annotated[Id, Path(description="待认领邮件 id")]


def _read(session: Session, row: InboundMail) -> QuarantinedMailRead:
    return QuarantinedMailRead(
        id=row.id, state=row.state, from_address=row.from_address, from_name=row.from_name, subject=row.subject,
        sent_at=row.sent_at, received_at=row.received_at, reason=row.reason, text=row.body_text or "",
        attachment_names=row.attachment_names or [], ticket_number=mail.ticket_number_of(session, row),
        decided_at=row.decided_at)


@router.get("", response_model=list[QuarantinedMailRead], summary="待认领邮件（未登记发件人，新的在前）")
def list_quarantine(session: SessionDep, actor: QuarantineActor,
                    limit: Annotated[int, Query(ge=1, le=200)] = 50,
                    before_id: Annotated[Id | None, Query()] = None) -> list[QuarantinedMailRead]:
    return [_read(session, row) for row in mail.list_quarantined(session, actor, limit=limit, before_id=before_id)]


@router.get("/{mail_id}", response_model=QuarantinedMailRead, summary="待认领邮件详情")
def read_quarantined(mail_id: MailId, session: SessionDep, actor: QuarantineActor) -> QuarantinedMailRead:
    return _read(session, mail.get_quarantined(session, actor, mail_id))


@router.post("/{mail_id}/attach", response_model=QuarantinedMailRead, responses=problem_responses(409),
             summary="认领：归入企业并生成工单（渠道 email）")
def attach(mail_id: MailId, body: AttachIn, session: SessionDep, actor: QuarantineActor) -> QuarantinedMailRead:
    row = mail.attach_quarantined(session, actor, mail_id, enterprise_id=body.enterprise_id,
                                  category_id=body.category_id, category_code=body.category_code, title=body.title)
    return _read(session, row)


@router.post("/{mail_id}/discard", response_model=QuarantinedMailRead, responses=problem_responses(409),
             summary="丢弃待认领邮件")
def discard(mail_id: MailId, session: SessionDep, actor: QuarantineActor,
            body: DiscardIn | None = None) -> QuarantinedMailRead:
    return _read(session, mail.discard_quarantined(session, actor, mail_id, body.reason if body else None))

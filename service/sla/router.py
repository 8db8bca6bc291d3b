"""``/api/v1/sla-policies`` (SPEC §4): list for staff, admin writes."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import select

from service.auth.actor import Actor
from service.auth.dependencies import AdminActor, SessionDep, require_roles
from service.common.schemas import Id, InputModel
from service.errors import NotFound
from service.sla import service as sla_service
from service.sla.models import SlaPolicy
from service.sla.policy import clear_cache

router = APIRouter(prefix="/sla-policies", tags=["sla"])
StaffActor = Annotated[Actor, Depends(require_roles("officer", "department", "supervisor", "admin"))]


class SlaPolicyIn(InputModel):
    """A limit for one step: ``amount`` working hours or working days (SPEC §4)."""

    category_id: Id
    priority: Literal["normal", "urgent"]
    step: Literal["accept", "claim", "first_reply", "reply", "feedback"]
    amount: int = Field(ge=1, le=1000)
    unit: Literal["working_hours", "working_days"]


class SlaPolicyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    category_id: int
    priority: Literal["normal", "urgent"]
    step: Literal["accept", "claim", "first_reply", "reply", "feedback"]
    amount: int
    unit: Literal["working_hours", "working_days"]


@router.get("", response_model=list[SlaPolicyRead], summary="SLA 时限策略")
def list_policies(session: SessionDep, _actor: StaffActor):
    return session.exec(select(SlaPolicy).order_by(SlaPolicy.category_id, SlaPolicy.priority, SlaPolicy.step)).all()


@router.put("", response_model=SlaPolicyRead, summary="设置某分类某优先级某环节的时限（管理员）")
def put_policy(body: SlaPolicyIn, session: SessionDep, _admin: AdminActor):
    return sla_service.upsert_policy(session, **body.model_dump())


@router.delete("/{policy_id}", status_code=status.HTTP_204_NO_CONTENT, summary="删除策略（管理员）")
def delete_policy(policy_id: Id, session: SessionDep, _admin: AdminActor) -> Response:
    row = session.get(SlaPolicy, policy_id)
    if row is None:
        raise NotFound(f"策略 {policy_id} 不存在")
    session.delete(row)
    session.flush()
    clear_cache()
    return Response(status_code=status.HTTP_204_NO_CONTENT)

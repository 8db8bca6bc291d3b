"""``/api/v1/notifications``: the logged-in user's notifications, read/unread."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from service.auth.dependencies import CurrentActor, SessionDep
from service.common.schemas import Id, InputModel
from service.notifications import service as notifications

router = APIRouter(prefix="/notifications", tags=["notifications"])


class NotificationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    kind: str
    title: str
    body: str
    ticket_id: int | None
    payload: dict[str, Any]
    created_at: datetime
    read_at: datetime | None


class MarkReadIn(InputModel):
    ids: list[Id] | None = Field(default=None, max_length=1000, description="省略则全部标为已读")


@router.get("", response_model=list[NotificationRead], summary="我的通知（新的在前）")
def list_notifications(session: SessionDep, actor: CurrentActor, unread: bool = False,
                       limit: Annotated[int, Query(ge=1, le=200)] = 50,
                       before_id: Annotated[Id | None, Query()] = None):
    return notifications.list_for_user(session, actor.user_id, unread_only=unread, limit=limit,
                                       before_id=before_id)


@router.post("/read", summary="标记已读")
def mark_read(body: MarkReadIn, session: SessionDep, actor: CurrentActor) -> dict[str, int]:
    return {"updated": notifications.mark_read(session, actor.user_id, body.ids)}

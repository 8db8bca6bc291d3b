"""Statistics endpoints (SPEC §6): ``GET /api/v1/stats/summary``."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from service.auth.actor import Actor
from service.auth.dependencies import SessionDep, require_roles
from service.common.schemas import ApiDate
from service.stats import service as stats_service

router = APIRouter(prefix="/stats", tags=["stats"])
StatsActor = Annotated[Actor, Depends(require_roles("supervisor", "admin", "officer"))]


class SummaryRead(BaseModel):
    date_from: date
    date_to: date
    group_by: str
    rows: list[stats_service.SummaryRow]
    total: stats_service.SummaryRow


@router.get("/summary", response_model=SummaryRead, summary="统计汇总：受理、办结、办结率、满意率、答复时长")
def summary(
    session: SessionDep, actor: StatsActor, date_from: ApiDate, date_to: ApiDate,
    group_by: Annotated[str, Query(pattern="^(department|category|service_type|channel|grid|month)$")]
    = "department",
) -> SummaryRead:
    rows, total = stats_service.summary(session, actor, date_from, date_to, group_by)
    return SummaryRead(date_from=date_from, date_to=date_to, group_by=group_by, rows=rows, total=total)

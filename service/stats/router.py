"""Statistics endpoints (SPEC §6): the summary, the drill-down ticket list and the department
rankings, as JSON, CSV or Excel (``format=`` or the ``Accept`` header). Thin: the rules are in
service/stats/service.py and service/stats/metrics.py."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import Response
from pydantic import BaseModel, TypeAdapter

from service.auth.actor import Actor
from service.auth.dependencies import SessionDep, require_roles
from service.common.params import QueryId
from service.common.schemas import ApiDate
from service.stats import export
from service.stats import service as stats_service

router = APIRouter(prefix="/stats", tags=["stats"])
StatsActor = Annotated[Actor, Depends(require_roles("supervisor", "admin", "officer", "department"))]
Short = Annotated[str | None, Query(max_length=32)]
Format = Annotated[str | None, Query(alias="format", max_length=8, description="json | csv | xlsx")]
Exact = Annotated[bool, Query(description="true: recount the ticket rows (exact percentiles) instead of "
                                          "reading the rollup (percentiles from histograms)")]
FILE_TYPES = {"csv": f"{export.CSV}; charset=utf-8", "xlsx": export.XLSX}
EXPORTS = {200: {"content": {"application/json": {}, export.CSV: {}, export.XLSX: {}}}}


class SummaryRead(BaseModel):
    date_from: date
    date_to: date
    group_by: str
    rows: list[stats_service.SummaryRow]
    total: stats_service.SummaryRow


_SUMMARY_JSON = TypeAdapter(SummaryRead)


class DrillTicket(BaseModel):
    number: str
    title: str
    status: str
    submitted_at: datetime
    lead_department_id: int | None
    category_id: int
    channel: str


class DrillRead(BaseModel):
    measure: str
    count: int
    tickets: list[DrillTicket]


class RankingRead(BaseModel):
    period: str
    kind: str
    date_from: date
    date_to: date
    weights: dict[str, float]
    rows: list[dict[str, Any]]


def filters_dep(department_id: QueryId = None, region_id: QueryId = None, grid_id: QueryId = None,
                category_id: QueryId = None, service_type: Short = None, channel: Short = None,
                officer_id: QueryId = None) -> stats_service.Filters:
    """The population filters of every statistics endpoint (see :class:`stats_service.Filters`)."""
    return stats_service.Filters(department_id, region_id, grid_id, category_id, service_type, channel, officer_id)


FiltersDep = Annotated[stats_service.Filters, Depends(filters_dep)]


def _file(fmt: str, table: export.Table, name: str) -> Response:
    body = export.to_csv(table) if fmt == "csv" else export.to_xlsx(table)
    return Response(body, media_type=FILE_TYPES[fmt],
                    headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'})


@router.get("/summary", response_model=SummaryRead, responses=EXPORTS,
            summary="统计汇总：SPEC §6 全部指标，按任意分组与筛选，可导出 CSV/Excel")
def summary(session: SessionDep, actor: StatsActor, filters: FiltersDep, date_from: ApiDate, date_to: ApiDate,
            group_by: Annotated[str, Query(max_length=32, description=", ".join(stats_service.GROUPINGS))]
            = "department", format_: Format = None, accept: Annotated[str | None, Header()] = None,
            exact: Exact = False):
    fmt = export.choose_format(format_, accept)
    rows, total = stats_service.summary(session, actor, date_from, date_to, group_by, filters, exact=exact)
    if fmt == "json":
        # serialised once by the model itself: FastAPI would dump it to dicts, validate those
        # against ``response_model`` again and encode them (≈ 30 ms for five years by day)
        body = SummaryRead(date_from=date_from, date_to=date_to, group_by=group_by, rows=rows, total=total)
        return Response(_SUMMARY_JSON.dump_json(body), media_type="application/json")
    title = f"统计汇总 {date_from}至{date_to}"
    return _file(fmt, export.summary_table(group_by, rows, total, title), f"stats-{group_by}-{date_from}-{date_to}")


@router.get("/tickets", response_model=DrillRead, summary="下钻：构成某一统计数字的工单清单")
def drill(session: SessionDep, actor: StatsActor, filters: FiltersDep, date_from: ApiDate, date_to: ApiDate,
          measure: Annotated[str, Query(max_length=32)],
          group_by: Annotated[str | None, Query(max_length=32)] = None,
          group: Annotated[str | None, Query(max_length=64, description="group key; none = no value")] = None,
          limit: Annotated[int, Query(ge=1, le=1000)] = 100, offset: Annotated[int, Query(ge=0, le=10**9)] = 0):
    key = stats_service.parse_group_key(group_by or "", group)
    count, tickets = stats_service.drill(session, actor, date_from, date_to, measure, group_by, key, filters,
                                         limit=limit, offset=offset)
    return DrillRead(measure=measure, count=count, tickets=[DrillTicket.model_validate(t, from_attributes=True)
                                                            for t in tickets])


@router.get("/ranking", response_model=RankingRead, responses=EXPORTS,
            summary="承办单位排名（晾晒）：月度 YYYY-MM 或季度 YYYY-Qn，加权得分")
def ranking(session: SessionDep, actor: StatsActor, filters: FiltersDep,
            period: Annotated[str, Query(max_length=16, description="2026-05 or 2026-Q2")],
            format_: Format = None, accept: Annotated[str | None, Header()] = None, exact: Exact = False):
    fmt = export.choose_format(format_, accept)
    kind, first, last = stats_service.parse_period(period)
    weights = stats_service.ranking_weights()
    rows = stats_service.department_ranking(session, actor, first, last, weights, filters, exact=exact)
    if fmt == "json":
        return RankingRead(period=period, kind=kind, date_from=first, date_to=last, weights=weights,
                           rows=[r.as_dict() for r in rows])
    title = f"{'月度' if kind == 'month' else '季度'}排名 {period}"
    return _file(fmt, export.ranking_table(rows, title), f"ranking-{period}")

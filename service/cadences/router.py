"""The cadence API (SPEC §5, §7), thin over the domain modules: ``/inquiries``, ``/clinics``,
``/joint-consultations``, ``/follow-ups``, ``/return-visits``, ``/cadences`` and ``/cadence-reports``.
``router`` bundles them (one ``include_router`` in ``qifu.main``)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response, status
from fastapi.responses import JSONResponse
from sqlmodel import select

from service.auth.dependencies import AdminActor, CurrentActor, SessionDep
from service.cadences import follow_ups, inquiries, reports, return_visits, schemas, sessions
from service.cadences import service as cadence_service
from service.cadences.models import FOLLOW_UP_STATUSES, RETURN_VISIT_STATUSES, CadenceRun, ReportKind
from service.common.openapi import problem_responses
from service.common.params import QueryId
from service.common.schemas import INT32_MAX, ApiDate
from service.errors import NotAllowed

Id = Annotated[int, Path(ge=1, le=INT32_MAX)]
PeriodKey = Annotated[str | None, Query(max_length=16, pattern=r"^[0-9A-Za-z-]+$")]
#: every cadence endpoint is for some roles only, checked in the domain (403)
ROLE = problem_responses(403)
#: the state of a session, item, follow-up or visit forbids it (409)
CONFLICT = problem_responses(409)
Kind = Literal["daily", "weekly", "monthly", "quarterly", "annual"]

inquiries_router = APIRouter(prefix="/inquiries", tags=["cadences: daily inquiry"], responses=ROLE)
clinics_router = APIRouter(prefix="/clinics", tags=["cadences: weekly clinic"], responses=ROLE)
joint_router = APIRouter(prefix="/joint-consultations", tags=["cadences: quarterly joint consultation"], responses=ROLE)
follow_ups_router = APIRouter(prefix="/follow-ups", tags=["cadences: monthly follow-up"], responses=ROLE)
visits_router = APIRouter(prefix="/return-visits", tags=["cadences: annual return visit"], responses=ROLE)
runs_router = APIRouter(prefix="/cadences", tags=["cadences"], responses=ROLE)
reports_router = APIRouter(prefix="/cadence-reports", tags=["cadences"], responses=ROLE)


# ------------------------------------------------------------------ daily inquiry

@inquiries_router.get("/today", response_model=schemas.TodayRead, summary="今日问诊清单（服务专员）")
def inquiries_today(session: SessionDep, actor: CurrentActor, on: Annotated[ApiDate | None, Query(alias="date")] = None):
    return inquiries.today_list(session, actor, on)


@inquiries_router.post("", response_model=schemas.InquiryRead, status_code=status.HTTP_201_CREATED,
                       summary="登记问诊（发现问题即生成工单，渠道 inquiry）")
def log_inquiry(body: schemas.InquiryCreate, session: SessionDep, actor: CurrentActor):
    inquiry, _tickets = inquiries.log_inquiry(session, actor, body)
    return inquiries.inquiry_read(session, inquiry, actor)


@inquiries_router.get("", response_model=list[schemas.InquiryRead], summary="企业的问诊记录",
                      responses=problem_responses(404))
def inquiry_history(session: SessionDep, actor: CurrentActor,
                    enterprise_id: Annotated[int, Query(ge=1, le=INT32_MAX)],
                    limit: Annotated[int, Query(ge=1, le=500)] = 100):
    return [inquiries.inquiry_read(session, i, actor) for i in inquiries.history(session, actor, enterprise_id, limit)]


@inquiries_router.get("/coverage", response_model=schemas.CoverageRead, summary="问诊覆盖率（按专员、网格）")
def inquiry_coverage(session: SessionDep, actor: CurrentActor, on: Annotated[ApiDate | None, Query(alias="date")] = None):
    return inquiries.coverage(session, actor, on)


# ------------------------------------------------------------------ clinics and joint consultations

def _session_routes(r: APIRouter, kind: str, label: str) -> None:
    @r.get("", response_model=list[schemas.SessionRead], summary=f"{label}列表")
    def list_(session: SessionDep, actor: CurrentActor, region_id: QueryId = None,
              date_from: ApiDate | None = None, date_to: ApiDate | None = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 100):
        rows = sessions.list_sessions(session, actor, kind, region_id=region_id, date_from=date_from,
                                      date_to=date_to, limit=limit)
        return [sessions.session_read(session, actor, cs, with_agenda=False) for cs in rows]

    @r.get("/{session_id}", response_model=schemas.SessionRead, summary=f"{label}详情与议题")
    def read(session_id: Id, session: SessionDep, actor: CurrentActor):
        return sessions.session_read(session, actor, sessions.get_session(session, actor, session_id, kind))

    @r.post("/{session_id}/items/{item_id}/outcome", response_model=schemas.AgendaItemRead, responses=CONFLICT,
            summary="记录议题结果（现场解决 / 议定计划 / 提请督办）")
    def outcome(session_id: Id, item_id: Id, body: schemas.OutcomeIn, session: SessionDep, actor: CurrentActor):
        item = sessions.record_outcome(session, actor, kind, session_id, item_id, body)
        return schemas.AgendaItemRead.model_validate(item.model_dump())

    @r.post("/{session_id}/problems", response_model=schemas.AgendaItemRead, status_code=status.HTTP_201_CREATED,
            responses=CONFLICT,
            summary=f"登记{label}中新提出的问题（生成工单，渠道 clinic）")
    def problem(session_id: Id, body: schemas.RaiseProblemIn, session: SessionDep, actor: CurrentActor):
        ticket, item = sessions.raise_problem(session, actor, kind, session_id, body)
        return schemas.AgendaItemRead.model_validate({**item.model_dump(), "ticket_number": ticket.number})


@clinics_router.get("/schedules", response_model=list[schemas.ClinicScheduleRead], summary="各镇/园区坐诊安排")
def clinic_schedules(session: SessionDep, actor: CurrentActor):
    return [s for _r, s in sessions.schedules(session)]


@clinics_router.put("/schedules/{region_id}", response_model=schemas.ClinicScheduleRead, summary="设置坐诊安排（管理员）")
def put_clinic_schedule(region_id: Id, body: schemas.ClinicScheduleIn, session: SessionDep, _admin: AdminActor):
    return sessions.set_schedule(session, region_id, body)


@clinics_router.post("/{session_id}/bookings", response_model=schemas.BookingRead, responses=CONFLICT,
                     status_code=status.HTTP_201_CREATED, summary="预约坐诊（企业用户）")
def book_clinic(session_id: Id, body: schemas.BookingIn, session: SessionDep, actor: CurrentActor):
    return sessions.book(session, actor, session_id, body)


@joint_router.post("/flags", status_code=status.HTTP_201_CREATED, responses=CONFLICT, summary="提请季度会诊（督办人员）")
def flag_hard_case(body: schemas.FlagIn, session: SessionDep, actor: CurrentActor):
    row = sessions.flag_hard_case(session, actor, body)
    return {"ticket_id": row.ticket_id, "reason": row.reason, "created_at": row.created_at}


_session_routes(clinics_router, "clinic", "坐诊")
_session_routes(joint_router, "joint", "会诊")


# ------------------------------------------------------------------ follow-ups and return visits

@follow_ups_router.get("", response_model=list[schemas.FollowUpRead], summary="复诊列表")
def list_follow_ups(session: SessionDep, actor: CurrentActor,
                    status_: Annotated[Literal[FOLLOW_UP_STATUSES] | None, Query(alias="status")] = None,  # type: ignore[valid-type]
                    period_key: PeriodKey = None, limit: Annotated[int, Query(ge=1, le=500)] = 100):
    return follow_ups.list_follow_ups(session, actor, status=status_, period_key=period_key, limit=limit)


@follow_ups_router.post("/{follow_up_id}/answer", response_model=schemas.FollowUpRead, responses=CONFLICT, summary="答复复诊（未解决即重办）")
def answer_follow_up(follow_up_id: Id, body: schemas.FollowUpAnswerIn, session: SessionDep, actor: CurrentActor):
    row = follow_ups.answer(session, actor, follow_up_id, body)
    return schemas.FollowUpRead.model_validate(row.model_dump())


@visits_router.get("", response_model=list[schemas.ReturnVisitRead], summary="年度回访列表")
def list_return_visits(session: SessionDep, actor: CurrentActor,
                       year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
                       status_: Annotated[Literal[RETURN_VISIT_STATUSES] | None, Query(alias="status")] = None,  # type: ignore[valid-type]
                       limit: Annotated[int, Query(ge=1, le=500)] = 100):
    return return_visits.list_return_visits(session, actor, year=year, status=status_, limit=limit)


@visits_router.post("/{visit_id}/answer", response_model=schemas.ReturnVisitRead, responses=CONFLICT, summary="答复年度回访")
def answer_return_visit(visit_id: Id, body: schemas.ReturnVisitAnswerIn, session: SessionDep, actor: CurrentActor):
    return return_visits.answer(session, actor, visit_id, body)


# ------------------------------------------------------------------ runs and reports

@runs_router.get("/runs", response_model=list[schemas.RunRead], summary="周期运行记录")
def list_runs(session: SessionDep, actor: CurrentActor, kind: Kind | None = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 100):
    if actor.role not in ("supervisor", "admin"):
        raise NotAllowed("只有督办人员和管理员可以查看运行记录")
    stmt = select(CadenceRun)
    if kind is not None:
        stmt = stmt.where(CadenceRun.kind == kind)
    return session.exec(stmt.order_by(CadenceRun.run_date.desc(), CadenceRun.kind).limit(limit)).all()


@runs_router.post("/{kind}/run", response_model=schemas.RunResult, summary="手动运行某一周期（管理员）")
def run_cadence(kind: Kind, session: SessionDep, _admin: AdminActor,
                on: Annotated[ApiDate | None, Query(alias="date", description="默认今天（Asia/Shanghai）")] = None,
                force: Annotated[bool, Query(description="允许距今一年以上之前或一个月以上之后的日期（补跑）")] = False):
    day = cadence_service.check_run_date(on, force=force) if on else cadence_service.today()
    return cadence_service.run_for_date(session, kind, day)


@reports_router.get("", response_model=list[schemas.ReportMeta], summary="报告列表（月度排名、季度晾晒、年报、超期清单）")
def list_reports(session: SessionDep, actor: CurrentActor,
                 kind: ReportKind | None = None):
    return reports.list_reports(session, actor, kind)


@reports_router.get("/{kind}/{period_key}", summary="下载报告（JSON 或 Excel）",
                    responses={200: {"content": {"application/json": {}, reports.XLSX: {}}}})
def download_report(kind: ReportKind,
                    period_key: Annotated[str, Path(max_length=16, pattern=r"^[0-9A-Za-z-]+$")],
                    session: SessionDep, actor: CurrentActor,
                    format_: Annotated[Literal["json", "xlsx"], Query(alias="format")] = "json"):
    row = reports.get_report(session, actor, kind, period_key)
    filename = f"{kind}-{period_key}"
    if format_ == "xlsx":
        return Response(reports.to_xlsx(row), media_type=reports.XLSX,
                        headers={"Content-Disposition": f'attachment; filename="{filename}.xlsx"'})
    return JSONResponse({"kind": row.kind, "period_key": row.period_key, "title": row.title,
                         "created_at": row.created_at.isoformat(), "data": row.data},
                        headers={"Content-Disposition": f'inline; filename="{filename}.json"'})


router = APIRouter()
for _r in (inquiries_router, clinics_router, joint_router, follow_ups_router, visits_router, runs_router,
           reports_router):
    router.include_router(_r)

"""Ticket endpoints (SPEC §7): submit, list, read, history, and one POST per action."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, Query, Response, status
from sqlmodel import Session

from service import clock
from service.auth.actor import Actor
from service.auth.dependencies import CurrentActor, SessionDep
from service.common.enums import Channel, Priority, ServiceType, TicketStatus
from service.common.openapi import problem_responses
from service.common.params import QueryId
from service.common.schemas import ApiDateTime
from service.db import commit_in_thread
from service.errors import FieldError
from service.ticketing import intake_pg
from service.ticketing import service as ticket_service
from service.ticketing.dependencies import CurrentTicket, if_match_version
from service.tickets import schemas
from service.tickets.models import Ticket
from service.tickets.workflow import Action
from service.triage.schemas import TicketWithSuggestions
from service.triage.suggest import suggestions_for

router = APIRouter(prefix="/tickets", tags=["tickets"])


def _utc(value: datetime | None, name: str) -> datetime | None:
    """``value`` in UTC (naive = China time); a date beyond the calendar's range is a 422."""
    if value is None:
        return None
    try:
        return clock.as_utc(value)
    except OverflowError as exc:
        raise FieldError(name, "日期超出范围") from exc


def _respond(session: Session, actor: Actor, ticket: Ticket, response: Response) -> schemas.TicketRead:
    response.headers["ETag"] = f'"{ticket.version}"'
    return ticket_service.ticket_read(session, ticket, actor)


@router.post("", response_model=schemas.TicketRead, status_code=status.HTTP_201_CREATED,
             responses=problem_responses(403), summary="提交诉求")
async def submit(
    body: schemas.TicketCreate, session: SessionDep, actor: CurrentActor, response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255,
                                                  pattern=r"^[^\x00]+$")] = None,
) -> schemas.TicketRead:
    # async: an enterprise's own submission on PostgreSQL is one statement on the event loop
    # (intake_pg); the others run submission, response model and commit in one worker-thread hop
    # (docs/performance.md)
    if intake_pg.applies(session, actor):
        read = await intake_pg.submit(session, actor, body, idempotency_key)
        if read is not None:  # already a TicketRead: serialised here, not validated again
            return Response(read.model_dump_json(), status.HTTP_201_CREATED, media_type="application/json",
                            headers={"Location": f"/api/v1/tickets/{read.number}", "ETag": f'"{read.version}"'})

    def work() -> schemas.TicketRead:
        ticket, _created = ticket_service.submit_ticket(session, actor, body, idempotency_key=idempotency_key)
        response.headers["Location"] = f"/api/v1/tickets/{ticket.number}"
        return _respond(session, actor, ticket, response)

    return await commit_in_thread(session, work)


@router.get("", response_model=schemas.TicketPage, summary="工单列表（筛选、游标分页、排序）")
def list_tickets(
    session: SessionDep, actor: CurrentActor,
    status_: Annotated[list[TicketStatus] | None, Query(alias="status")] = None,
    department_id: QueryId = None,
    grid_id: QueryId = None,
    category_id: QueryId = None,
    service_type: ServiceType | None = None,
    channel: Channel | None = None,
    enterprise_id: QueryId = None,
    priority: Priority | None = None,
    created_from: ApiDateTime | None = None,
    created_to: ApiDateTime | None = None,
    q: Annotated[str | None, Query(max_length=100, pattern=r"^[^\x00]*$")] = None,
    sort: Annotated[str, Query(pattern=r"^-?(submitted_at|updated_at)$")] = "-submitted_at",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> schemas.TicketPage:
    flt = ticket_service.TicketFilter(
        status=[s.value for s in status_ or []], department_id=department_id, grid_id=grid_id,
        category_id=category_id, service_type=service_type.value if service_type else None,
        channel=channel.value if channel else None, enterprise_id=enterprise_id,
        priority=priority.value if priority else None,
        created_from=_utc(created_from, "created_from"), created_to=_utc(created_to, "created_to"), q=q,
    )
    rows, next_cursor = ticket_service.list_tickets(session, actor, flt, sort=sort, limit=limit, cursor=cursor)
    return schemas.TicketPage(items=[ticket_service.ticket_read(session, t, actor) for t in rows],
                              next_cursor=next_cursor)


@router.get("/{number}", response_model=TicketWithSuggestions, response_model_exclude_unset=True,
            summary="工单详情")
def read_ticket(ticket: CurrentTicket, session: SessionDep, actor: CurrentActor,
                response: Response) -> TicketWithSuggestions:
    """The ticket; for officers, supervisors and admins with the category and department
    suggestions (issue 13, computed on read from the cached model: docs/triage.md). Other readers
    get exactly the ticket's read model, without a ``suggestions`` member (the body the submission
    answered)."""
    read = _respond(session, actor, ticket, response)
    suggestions = suggestions_for(session, actor.role, ticket.title, ticket.description)
    extra = {} if suggestions is None else {"suggestions": suggestions}
    # every member of the read model is set explicitly, so exclude_unset drops only an absent
    # ``suggestions``
    return TicketWithSuggestions.model_construct(**read.__dict__, **extra)


@router.get("/{number}/events", response_model=list[schemas.TicketEventRead], summary="流转记录")
def read_events(ticket: CurrentTicket, session: SessionDep, actor: CurrentActor):
    return ticket_service.list_events(session, actor, ticket)


def _make_action_endpoint(action: Action):
    body_model = ticket_service.ACTION_BODIES[action]
    required = any(f.is_required() for f in body_model.model_fields.values())

    def endpoint(
        ticket: CurrentTicket, session: SessionDep, actor: CurrentActor, response: Response,
        expected_version: Annotated[int | None, Depends(if_match_version)],
        # no default: FastAPI takes ``= ...`` as a default value, and a request without a body
        # reached the service as Ellipsis (a 500); a required body is now a 422 naming it
        body: Annotated[body_model, Body()],  # type: ignore[valid-type]
    ) -> schemas.TicketRead:
        ticket_service.apply_action(session, actor, ticket, action, body,
                                    expected_version=expected_version)
        return _respond(session, actor, ticket, response)

    if not required:  # the body may be omitted: {} is implied
        endpoint.__defaults__ = (None,)

    endpoint.__name__ = f"ticket_{action.value}"
    return endpoint


ACTION_SUMMARIES = {
    Action.accept: "受理（可更正分类）", Action.reject: "不予受理", Action.answer: "直接答复（政策咨询）",
    Action.dispatch: "交办（主办+协办，可更正分类）", Action.claim: "签收", Action.return_: "退单",
    Action.hold: "挂起", Action.resume: "恢复办理", Action.reply: "答复", Action.confirm: "确认办结（评价）",
    Action.reopen: "重办", Action.comment: "评论", Action.add_info: "补充材料", Action.remind: "催办",
    Action.escalate: "督办", Action.merge: "合并为重复件", Action.link: "关联工单",
    Action.request_extension: "申请延期", Action.approve_extension: "批准延期", Action.deny_extension: "驳回延期",
}

_CATEGORY_CORRECTION = (
    "可带 `category_id` 更正分类（官员分诊时的更正，issue 13）：须与原分类同一服务类型，否则 422；"
    "流转记录载明 `from_category_id` 与 `category_id`；此后交办未指定主办单位时按新分类的默认承办单位；"
    "统计按新分类计数；模型训练读取最终分类。")
ACTION_DESCRIPTIONS = {
    Action.accept: "受理诉求（官员）。" + _CATEGORY_CORRECTION,
    Action.dispatch: "交办主办单位（默认：分类的默认承办单位）及协办单位。" + _CATEGORY_CORRECTION
    + "分类先于默认承办单位生效。",
}

for _action, _summary in ACTION_SUMMARIES.items():
    router.add_api_route(
        f"/{{number}}/{_action.value}", _make_action_endpoint(_action), methods=["POST"],
        response_model=schemas.TicketRead, summary=_summary, description=ACTION_DESCRIPTIONS.get(_action, ""),
        responses=problem_responses(403, 404, 409, 412),
    )

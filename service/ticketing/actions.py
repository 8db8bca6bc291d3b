"""Ticket actions (SPEC §3): :func:`apply_action` and the action-specific handlers.

Plain functions taking a session; they flush but never commit (ARCHITECTURE rule 2). Every state
change goes through :func:`apply_action`: check the pure workflow table, run the action's handler
(what is truly its own: validating the body, dispatch's departments, merge's link), apply the
effects declared for it in :mod:`service.tickets.effects`, append the event, bump the version
(optimistic concurrency), and fan the notification out (:mod:`service.notifications.fanout`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import Session, select

from service import clock
from service.auth.actor import Actor
from service.categories.models import Category
from service.common.enums import Role, TicketStatus
from service.departments.models import Department
from service.errors import AppError, Conflict, FieldError, NotAllowed, VersionConflict
from service.notifications import fanout
from service.sla.deadlines import apply_sla
from service.tickets import schemas
from service.tickets import workflow as wf
from service.tickets.effects import EFFECTS
from service.tickets.models import Attachment, Ticket, TicketCoDepartment, TicketEvent, TicketLink
from service.tickets.visibility import ticket_visibility

Action = wf.Action


# --------------------------------------------------------------------------- actions

#: The request body model of each action (one endpoint each).
ACTION_BODIES: dict[Action, type[BaseModel]] = {
    Action.accept: schemas.AcceptIn,
    Action.reject: schemas.ReasonIn,
    Action.answer: schemas.TextIn,
    Action.dispatch: schemas.DispatchIn,
    Action.claim: schemas.EmptyIn,
    Action.return_: schemas.ReasonIn,
    Action.hold: schemas.ReasonIn,
    Action.resume: schemas.EmptyIn,
    Action.reply: schemas.TextIn,
    Action.confirm: schemas.ConfirmIn,
    Action.reopen: schemas.ReopenIn,
    Action.comment: schemas.CommentIn,
    Action.add_info: schemas.AddInfoIn,
    Action.remind: schemas.RemindIn,
    Action.escalate: schemas.EscalateIn,
    Action.merge: schemas.MergeIn,
    Action.link: schemas.LinkIn,
    Action.auto_close: schemas.EmptyIn,
    Action.request_extension: schemas.RequestExtensionIn,
    Action.approve_extension: schemas.DecideExtensionIn,
    Action.deny_extension: schemas.DecideExtensionIn,
    Action.attach: schemas.AttachIn,
}


@dataclass
class EventDraft:
    """The event an action appends, filled in by its handler, inserted with one Core INSERT
    (a table-model instance per event costs more than the rest of a replayed action)."""

    ticket_id: int
    actor_id: int | None
    actor_role: str
    action: str
    from_status: str | None
    created_at: datetime
    reason: str | None = None
    to_status: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    visibility: str = "public"

    def insert(self, session: Session) -> None:
        """INSERT the event now, or at the end of the enclosing :func:`deferred_events` block."""
        deferred = session.info.get(_DEFERRED_EVENTS)
        if deferred is not None:  # inside deferred_events(): written together at its end
            deferred.append(dict(self.__dict__))
            return
        session.execute(sa.insert(TicketEvent.__table__), [self.__dict__])


_DEFERRED_EVENTS = "qifu.deferred_events"


@contextmanager
def deferred_events(session: Session) -> Iterator[None]:
    """Collect the events that :func:`service.ticketing.submission.create_ticket` and
    :func:`apply_action` append inside the block and insert them, in order, with one statement
    when it ends without an error (dropped on an error: the caller rolls back). For replays of
    history (the importer: six events per replied row cost six statements). Nothing inside may
    read the ticket's events back.
    """
    if session.info.get(_DEFERRED_EVENTS) is not None:
        yield  # nested: the outer block writes them
        return
    events: list[dict[str, Any]] = []
    session.info[_DEFERRED_EVENTS] = events
    try:
        yield
    finally:
        session.info.pop(_DEFERRED_EVENTS, None)
    if events:
        session.execute(sa.insert(TicketEvent.__table__), events)


@dataclass
class _Ctx:
    session: Session
    actor: Actor
    ticket: Ticket
    body: Any
    at: datetime
    event: EventDraft
    extension_days: int | None = None  # set by approve_extension: moves the reply deadline


def _require_lead_department(ctx: _Ctx) -> None:
    if ctx.actor.role == Role.department and ctx.actor.department_id != ctx.ticket.lead_department_id:
        raise NotAllowed("只有主办单位可以执行此操作，协办单位可以评论")


def _on_reject(ctx: _Ctx) -> None:
    ctx.ticket.reject_reason = ctx.body.reason


def _on_answer(ctx: _Ctx) -> None:
    ctx.ticket.reply_text = ctx.body.text
    ctx.event.payload = {"text": ctx.body.text}


def _active_department(session: Session, department_id: int, field_name: str) -> Department:
    dept = session.get(Department, department_id)
    if dept is None or not dept.is_active:
        raise FieldError(field_name, f"承办单位 {department_id} 不存在或已停用")
    return dept


def _correct_category(ctx: _Ctx) -> None:
    """The officer's correction of the category at triage (accept, dispatch: ``body.category_id``).

    Same service type only: the service type decided the SLA steps already running (a
    consultation's first reply) and which actions are legal (answer). Recorded in the event
    payload as ``from_category_id`` → ``category_id``; nothing when the category is unchanged.

    Raises:
        FieldError (422, ``category_id``): unknown category, or one of another service type.
    """
    t, new_id = ctx.ticket, ctx.body.category_id
    if new_id is None or new_id == t.category_id:
        return
    category = ctx.session.get(Category, new_id)
    if category is None:
        raise FieldError("category_id", f"分类 {new_id} 不存在")
    if category.service_type != t.service_type:
        raise FieldError("category_id", f"分类 {new_id} 属于其他服务类型（{category.service_type}），"
                                        f"不能更正为该分类；工单服务类型为 {t.service_type}")
    ctx.event.payload = {**ctx.event.payload, "from_category_id": t.category_id, "category_id": new_id}
    t.category_id = new_id


def _on_accept(ctx: _Ctx) -> None:
    _correct_category(ctx)


def _on_dispatch(ctx: _Ctx) -> None:
    t, body, session = ctx.ticket, ctx.body, ctx.session
    _correct_category(ctx)
    lead_id = body.lead_department_id
    if lead_id is None:
        lead_id = session.get(Category, t.category_id).default_department_id
        if lead_id is None:
            raise FieldError("lead_department_id", "该分类没有默认承办单位，请指定主办单位")
    _active_department(session, lead_id, "lead_department_id")
    co_ids = sorted(set(body.co_department_ids) - {lead_id})
    for i, dept_id in enumerate(co_ids):
        _active_department(session, dept_id, f"co_department_ids[{i}]")
    if t.lead_department_id is not None:  # co-handlers exist only beside a lead (return clears both)
        session.execute(sa.delete(TicketCoDepartment).where(TicketCoDepartment.ticket_id == t.id))
    session.add_all(TicketCoDepartment(ticket_id=t.id, department_id=d) for d in co_ids)
    t.lead_department_id = lead_id
    ctx.event.payload = {**ctx.event.payload, "lead_department_id": lead_id, "co_department_ids": co_ids}


def _on_claim(ctx: _Ctx) -> None:
    _require_lead_department(ctx)


def _on_return(ctx: _Ctx) -> None:
    _require_lead_department(ctx)
    t = ctx.ticket
    # delete first: the DELETE autoflushes, and a dirty ticket would be flushed (and its version
    # bumped) twice in one action
    ctx.session.execute(sa.delete(TicketCoDepartment).where(TicketCoDepartment.ticket_id == t.id))
    ctx.event.payload = {"department_id": t.lead_department_id}  # before the lead is cleared


def _on_hold(ctx: _Ctx) -> None:
    _require_lead_department(ctx)


def _on_resume(ctx: _Ctx) -> None:
    _require_lead_department(ctx)


def _on_reply(ctx: _Ctx) -> None:
    _require_lead_department(ctx)
    t = ctx.ticket
    t.reply_text = ctx.body.text
    ctx.event.payload = {"text": ctx.body.text, "department_id": t.lead_department_id}


def _on_confirm(ctx: _Ctx) -> None:
    ctx.ticket.rating = ctx.body.rating
    ctx.event.payload = {"comment": ctx.body.comment, "callback": ctx.actor.role == Role.officer}


def _on_reopen(ctx: _Ctx) -> None:
    t = ctx.ticket
    if t.lead_department_id is None:  # pragma: no cover - replied/closed tickets of answer have none
        raise AppError("该工单没有主办单位，无法重办")
    if t.status == TicketStatus.replied:
        t.rating = "dissatisfied"
    ctx.event.payload = {"lead_department_id": t.lead_department_id}


def _on_comment(ctx: _Ctx) -> None:
    if ctx.body.internal and ctx.actor.role == Role.enterprise:
        raise FieldError("internal", "企业用户不能发表内部评论")
    ctx.event.reason = ctx.body.text
    ctx.event.visibility = "internal" if ctx.body.internal else "public"


def _on_add_info(ctx: _Ctx) -> None:
    ctx.event.reason = ctx.body.text


def _on_remind(ctx: _Ctx) -> None:
    ctx.event.reason = ctx.body.note


def _on_escalate(ctx: _Ctx) -> None:
    t = ctx.ticket
    level = ctx.body.level or min(t.escalation_level + 1, 2)
    if level <= t.escalation_level:
        raise FieldError("level", f"督办级别须高于当前级别 {t.escalation_level}")
    t.escalation_level = level
    if level >= 2:  # the running deadline is at level 2 by hand: its automatic level 2 is moot
        t.level2_at = None
    ctx.event.reason = ctx.body.reason
    ctx.event.payload = {"level": level}


def _other_ticket(ctx: _Ctx, number: str, field_name: str) -> Ticket:
    other = ctx.session.exec(
        select(Ticket).where(Ticket.number == number, ticket_visibility(ctx.session, ctx.actor))
    ).first()
    if other is None:
        raise FieldError(field_name, f"工单 {number} 不存在")
    if other.id == ctx.ticket.id:
        raise FieldError(field_name, "不能指向工单自身")
    return other


def _on_merge(ctx: _Ctx) -> None:
    survivor = _other_ticket(ctx, ctx.body.into, "into")
    if survivor.status == TicketStatus.rejected:
        raise FieldError("into", f"工单 {survivor.number} 已不予受理，不能作为合并目标")
    t = ctx.ticket
    t.duplicate_of_id = survivor.id
    ctx.session.add(TicketLink(ticket_id=t.id, other_ticket_id=survivor.id, kind="duplicate_of",
                               created_at=ctx.at))
    ctx.event.reason = "duplicate"
    ctx.event.payload = {"into": survivor.number}


def _on_link(ctx: _Ctx) -> None:
    other = _other_ticket(ctx, ctx.body.other, "other")
    exists = ctx.session.get(TicketLink, (ctx.ticket.id, other.id, "related"))
    if exists is None:
        ctx.session.add(TicketLink(ticket_id=ctx.ticket.id, other_ticket_id=other.id, kind="related",
                                   created_at=ctx.at))
    ctx.event.reason = ctx.body.note
    ctx.event.payload = {"other": other.number}


def _on_request_extension(ctx: _Ctx) -> None:
    """SPEC §3-§4: asked by the lead department before the reply deadline, at most 15 working days
    per request and 2 approved per ticket, one pending at a time."""
    _require_lead_department(ctx)
    t = ctx.ticket
    if t.extension_requested_days is not None:
        raise Conflict(f"已有待审批的延期申请（{t.extension_requested_days}个工作日）")
    if t.extension_count >= wf.MAX_EXTENSIONS:
        raise Conflict(f"每件工单最多延期{wf.MAX_EXTENSIONS}次")
    if t.reply_by is None or (t.status == TicketStatus.in_progress and ctx.at >= t.reply_by):
        raise Conflict("延期须在答复期限届满前申请")
    t.extension_requested_days = ctx.body.days
    ctx.event.payload = {"days": ctx.body.days, "reply_by": t.reply_by.isoformat()}


def _decide_extension(ctx: _Ctx, approved: bool) -> None:
    t = ctx.ticket
    if t.extension_requested_days is None:
        raise Conflict("没有待审批的延期申请")
    days = t.extension_requested_days
    t.extension_requested_days = None
    if approved:
        ctx.extension_days = days
    ctx.event.reason = ctx.body.note
    ctx.event.payload = {"days": days, "approved": approved}


def _on_attach(ctx: _Ctx) -> None:
    """The file's row must be this ticket's (written just before by service.attachments.service)."""
    att = ctx.session.get(Attachment, ctx.body.attachment_id)
    if att is None or att.ticket_id != ctx.ticket.id:
        raise FieldError("attachment_id", f"附件 {ctx.body.attachment_id} 不属于该工单")
    ctx.event.reason = ctx.body.note
    ctx.event.payload = {"attachment_id": att.id, "filename": att.filename, "content_type": att.content_type,
                         "size": att.size, "event_id": att.event_id, "declared_type": ctx.body.declared_type}


def _on_approve_extension(ctx: _Ctx) -> None:
    _decide_extension(ctx, True)


def _on_deny_extension(ctx: _Ctx) -> None:
    _decide_extension(ctx, False)


#: What each action does beyond its declared effects (service/tickets/effects.py): validating the
#: body, reading it into the ticket, dispatch's departments, merge's and link's links.
HANDLERS: dict[Action, Callable[[_Ctx], None]] = {
    Action.request_extension: _on_request_extension, Action.approve_extension: _on_approve_extension,
    Action.deny_extension: _on_deny_extension,
    Action.accept: _on_accept, Action.reject: _on_reject, Action.answer: _on_answer,
    Action.dispatch: _on_dispatch, Action.claim: _on_claim, Action.return_: _on_return,
    Action.hold: _on_hold, Action.resume: _on_resume, Action.reply: _on_reply,
    Action.confirm: _on_confirm, Action.reopen: _on_reopen, Action.comment: _on_comment,
    Action.add_info: _on_add_info, Action.remind: _on_remind, Action.escalate: _on_escalate,
    Action.merge: _on_merge, Action.link: _on_link, Action.attach: _on_attach,
}


def _no_handler(ctx: _Ctx) -> None:
    """auto_close: nothing beyond the declared effects."""


def apply_action(
    session: Session,
    actor: Actor,
    ticket: Ticket,
    action: Action | str,
    body: BaseModel | dict | None = None,
    *,
    expected_version: int | None = None,
    at: datetime | None = None,
    history: bool = False,
) -> Ticket:
    """Apply ``action`` to ``ticket`` as ``actor`` (SPEC §3) and flush.

    Args:
        body: the action's request model (see :data:`ACTION_BODIES`) or a dict validated into it.
        expected_version: the ``If-Match`` version; a mismatch changes nothing.
        at: the instant of the action (aware; default now); imports replay original times.
        history: replaying a known past action (imports): no notification, no sweep trigger
            armed, and no flush — the caller flushes once after the ticket's whole history (one
            UPDATE for all its actions; the version still guards that UPDATE).

    Raises:
        IllegalTransition (409): not legal from the current status (names status and allowed actions).
        NotAllowed (403): wrong role, or a co-handling department acting as the lead.
        VersionConflict: 412 when ``expected_version`` is stale; 409 when a concurrent update won.
        FieldError (422): bad body field (unknown department, ticket, ...).
    """
    action = Action(action)
    model = ACTION_BODIES[action]
    if body is None:
        body = model()
    elif isinstance(body, dict):
        body = model.model_validate(body)
    if expected_version is not None and expected_version != ticket.version:
        raise VersionConflict(
            f"工单已被修改（当前版本 {ticket.version}，请求版本 {expected_version}），请刷新后重试",
            current_version=ticket.version,
        )
    transition = wf.check(ticket.status, action, actor.role, return_count=ticket.return_count,
                          service_type=ticket.service_type)
    at = at or clock.now()
    from_status = ticket.status
    effects = EFFECTS[action.value]
    reason = getattr(body, "reason", None) or effects.reason
    event = EventDraft(ticket_id=ticket.id, actor_id=actor.user_id, actor_role=actor.role,
                        action=action.value, from_status=from_status, reason=reason, created_at=at,
                        visibility=effects.visibility)
    ctx = _Ctx(session=session, actor=actor, ticket=ticket, body=body, at=at, event=event)
    # Nothing is flushed until the ticket, its event and its deadlines are complete: the flush
    # below is the one UPDATE ... WHERE version = <loaded> that wins or loses a race.
    with session.no_autoflush:
        HANDLERS.get(action, _no_handler)(ctx)  # what is the action's own, then what is declared
        effects.apply(ticket, at)
        if transition.next_status is not None:
            ticket.status = transition.next_status.value
        event.to_status = ticket.status
        ticket.updated_at = at
        apply_sla(session, ticket, action.value, at, extension_days=ctx.extension_days, arm=not history)
        event.payload = {**effects.event_payload(ticket), **event.payload}
    if ticket not in session:  # e.g. loaded by another session; in it, add() only walks its mapper
        session.add(ticket)
    if history:
        event.insert(session)  # the ticket's UPDATE waits for the caller's one flush
        return ticket
    try:
        session.flush()
    except StaleDataError as exc:
        raise VersionConflict("工单已被他人同时修改，请刷新后重试", status=409) from exc
    event.insert(session)
    if effects.notify is not None:
        fanout.notify_tickets(session, [ticket.id], effects.notify, at=at, body=event.reason or "")
    return ticket


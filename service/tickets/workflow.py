"""The ticket workflow as a pure transition table (SPEC §3). No I/O.

``TRANSITIONS[(status, action)] = Transition(next_status, roles)``: the only legal moves.
``next_status is None`` means the action does not change the status (comment, remind, ...).
:func:`check` adds the guards that depend on the ticket (after two returns only a supervisor may
dispatch; only consultations are answered directly) and raises the domain errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from service.common.enums import OPEN_STATUSES, STATUS_LABELS, Role, TicketStatus
from service.errors import IllegalTransition, NotAllowed

S = TicketStatus
R = Role


class Action(StrEnum):
    """Every ticket action of SPEC §3 (one endpoint each: ``POST /tickets/{number}/{action}``)."""

    accept = "accept"  # 受理
    reject = "reject"  # 不予受理
    answer = "answer"  # 直接答复 (consultations)
    dispatch = "dispatch"  # 交办
    claim = "claim"  # 签收
    return_ = "return"  # 退单
    hold = "hold"  # 挂起
    resume = "resume"  # 恢复办理
    reply = "reply"  # 答复
    confirm = "confirm"  # 确认办结 (satisfied | basically_satisfied)
    reopen = "reopen"  # 重办
    comment = "comment"
    add_info = "add_info"  # 补充材料
    remind = "remind"  # 催办
    escalate = "escalate"  # 督办
    merge = "merge"  # 合并 (the merged ticket becomes rejected, reason duplicate)
    link = "link"
    auto_close = "auto_close"  # worker: no feedback in time → closed, rating none
    request_extension = "request_extension"  # 申请延期 (department, before the reply deadline)
    approve_extension = "approve_extension"  # 批准延期 (supervisor): moves the reply deadline
    deny_extension = "deny_extension"  # 驳回延期 (supervisor)
    attach = "attach"  # 上传附件: one event per file stored (service/attachments; no plain endpoint)


SYSTEM = "system"  # the actor role of workers

#: Chinese names of the actions, for messages people read.
ACTION_LABELS: dict[str, str] = {
    "accept": "受理", "reject": "不予受理", "answer": "直接答复", "dispatch": "交办", "claim": "签收",
    "return": "退单", "hold": "挂起", "resume": "恢复办理", "reply": "答复", "confirm": "确认办结",
    "reopen": "重办", "comment": "评论", "add_info": "补充材料", "remind": "催办", "escalate": "督办",
    "merge": "合并", "link": "关联", "auto_close": "自动办结", "request_extension": "申请延期",
    "approve_extension": "批准延期", "deny_extension": "驳回延期", "attach": "上传附件",
}


@dataclass(frozen=True)
class Transition:
    """A legal move: the status after it (``None`` = unchanged) and the roles allowed to make it."""

    next_status: TicketStatus | None
    roles: frozenset[str]


def _t(next_status: TicketStatus | None, *roles: str) -> Transition:
    return Transition(next_status, frozenset(roles))


TRANSITIONS: dict[tuple[TicketStatus, Action], Transition] = {
    (S.submitted, Action.accept): _t(S.accepted, R.officer),
    (S.submitted, Action.reject): _t(S.rejected, R.officer),
    (S.submitted, Action.answer): _t(S.replied, R.officer),
    (S.accepted, Action.dispatch): _t(S.dispatched, R.officer, R.supervisor),
    (S.dispatched, Action.claim): _t(S.in_progress, R.department),
    (S.dispatched, Action.return_): _t(S.accepted, R.department),
    (S.in_progress, Action.hold): _t(S.on_hold, R.department),
    (S.on_hold, Action.resume): _t(S.in_progress, R.department),
    (S.in_progress, Action.reply): _t(S.replied, R.department),
    (S.replied, Action.confirm): _t(S.closed, R.enterprise, R.officer),
    (S.replied, Action.reopen): _t(S.dispatched, R.enterprise, R.officer),
    (S.closed, Action.reopen): _t(S.dispatched, R.officer, R.supervisor, SYSTEM),
    (S.replied, Action.auto_close): _t(S.closed, SYSTEM),
}
for _status in (S.submitted, S.accepted):
    TRANSITIONS[(_status, Action.merge)] = _t(S.rejected, R.officer, R.supervisor)
for _status in TicketStatus:
    TRANSITIONS[(_status, Action.comment)] = _t(None, R.enterprise, R.officer, R.department, R.supervisor)
    TRANSITIONS[(_status, Action.link)] = _t(None, R.officer, R.supervisor)
    # attachments (issue 12): the enterprise on its own ticket, the officer and departments handling
    # it (row scope: service.tickets.visibility), the system (e-mail intake), in every status
    TRANSITIONS[(_status, Action.attach)] = _t(None, R.enterprise, R.officer, R.department, SYSTEM)
for _status in (S.in_progress, S.on_hold):  # extensions of the reply deadline (SPEC §3, §4)
    TRANSITIONS[(_status, Action.request_extension)] = _t(None, R.department)
    TRANSITIONS[(_status, Action.approve_extension)] = _t(None, R.supervisor)
    TRANSITIONS[(_status, Action.deny_extension)] = _t(None, R.supervisor)
for _status in OPEN_STATUSES:
    TRANSITIONS[(_status, Action.add_info)] = _t(None, R.enterprise, R.officer)
    TRANSITIONS[(_status, Action.remind)] = _t(None, R.officer, R.supervisor, SYSTEM)
    TRANSITIONS[(_status, Action.escalate)] = _t(None, R.supervisor, SYSTEM)

#: Actions with no ``POST /tickets/{number}/{action}`` endpoint: the sweep's auto-close, and attach
#: (``POST /tickets/{number}/attachments`` stores the file and appends it); left out of 409 messages.
NO_ENDPOINT = frozenset({Action.auto_close, Action.attach})

#: Actions that need a non-empty reason (SPEC §3: reject, return, hold, reopen "(reason)").
REASON_REQUIRED = frozenset({Action.reject, Action.return_, Action.hold, Action.reopen})
#: Extensions (SPEC §4): at most this many working days per request, and this many per ticket.
MAX_EXTENSION_DAYS = 15
MAX_EXTENSIONS = 2
#: After this many returns only a supervisor may dispatch (审定, SPEC §3).
MAX_RETURNS_BEFORE_SUPERVISOR = 2


def allowed_actions(status: TicketStatus | str, role: str | None = None) -> list[str]:
    """Actions legal from ``status`` (for ``role`` when given), sorted; used in 409 messages."""
    status = TicketStatus(status)
    return sorted(
        a.value
        for (s, a), t in TRANSITIONS.items()
        if s == status and a not in NO_ENDPOINT and (role is None or role in t.roles)
    )


def check(
    status: TicketStatus | str,
    action: Action | str,
    role: str,
    *,
    return_count: int = 0,
    service_type: str | None = None,
) -> Transition:
    """Return the transition for ``(status, action)`` by ``role`` or raise.

    Raises:
        IllegalTransition (409): the action is not legal from ``status`` (the problem names the
            current status and the actions allowed from it), or a guard fails.
        NotAllowed (403): the move is legal but not for ``role``.
    """
    status, action = TicketStatus(status), Action(action)
    transition = TRANSITIONS.get((status, action))
    if transition is None:
        raise IllegalTransition(
            f"工单当前状态为“{STATUS_LABELS[status.value]}”（{status.value}），"
            f"不能执行“{ACTION_LABELS[action.value]}”（{action.value}）",
            current_status=status.value,
            allowed_actions=allowed_actions(status),
        )
    if role not in transition.roles:
        raise NotAllowed(f"角色 {role} 不能执行“{ACTION_LABELS[action.value]}”（{action.value}）",
                         allowed_roles=sorted(transition.roles))
    if action == Action.dispatch and return_count >= MAX_RETURNS_BEFORE_SUPERVISOR and role != R.supervisor:
        raise NotAllowed(
            f"该工单已退单{return_count}次，只能由督办人员审定交办", allowed_roles=[R.supervisor.value]
        )
    if action == Action.answer and service_type is not None and service_type != "consultation":
        raise IllegalTransition(
            "只有政策咨询类诉求可以直接答复，其他诉求须交办",
            current_status=status.value,
            allowed_actions=[a for a in allowed_actions(status) if a != Action.answer.value],
        )
    return transition

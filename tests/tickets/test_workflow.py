"""The pure ticket workflow (SPEC §3): every (status, action) pair × every role, and the guards.

``EXPECTED`` below is transcribed by hand from SPEC §3 (and the decisions recorded in
``service/tickets/workflow.py``), one row per legal move, so that any edit of
``workflow.TRANSITIONS`` shows up here as a failing test.
"""

from __future__ import annotations

import itertools

import pytest

from service.common.enums import Role, TicketStatus
from service.errors import IllegalTransition, NotAllowed
from service.tickets import workflow as wf
from service.tickets.workflow import Action, Transition

ENT, OFF, DEP, SUP, ADM, SYS = "enterprise", "officer", "department", "supervisor", "admin", "system"
ROLES = [r.value for r in Role] + [wf.SYSTEM]

# (status, action, next status or None = unchanged, roles allowed)
EXPECTED: list[tuple[str, str, str | None, frozenset[str]]] = [
    # --- state-changing moves (SPEC §3 diagram)
    ("submitted", "accept", "accepted", frozenset({OFF})),
    ("submitted", "reject", "rejected", frozenset({OFF})),
    ("submitted", "answer", "replied", frozenset({OFF})),
    ("accepted", "dispatch", "dispatched", frozenset({OFF, SUP})),
    ("dispatched", "claim", "in_progress", frozenset({DEP})),
    ("dispatched", "return", "accepted", frozenset({DEP})),
    ("in_progress", "hold", "on_hold", frozenset({DEP})),
    ("on_hold", "resume", "in_progress", frozenset({DEP})),
    ("in_progress", "reply", "replied", frozenset({DEP})),
    ("replied", "confirm", "closed", frozenset({ENT, OFF})),
    ("replied", "reopen", "dispatched", frozenset({ENT, OFF})),
    ("replied", "auto_close", "closed", frozenset({SYS})),
    ("closed", "reopen", "dispatched", frozenset({OFF, SUP, SYS})),
    # merge: the merged ticket becomes rejected (duplicate); only before dispatch
    ("submitted", "merge", "rejected", frozenset({OFF, SUP})),
    ("accepted", "merge", "rejected", frozenset({OFF, SUP})),
    # --- cross-cutting actions that keep the status
    ("submitted", "comment", None, frozenset({ENT, OFF, DEP, SUP})),
    ("accepted", "comment", None, frozenset({ENT, OFF, DEP, SUP})),
    ("rejected", "comment", None, frozenset({ENT, OFF, DEP, SUP})),
    ("dispatched", "comment", None, frozenset({ENT, OFF, DEP, SUP})),
    ("in_progress", "comment", None, frozenset({ENT, OFF, DEP, SUP})),
    ("on_hold", "comment", None, frozenset({ENT, OFF, DEP, SUP})),
    ("replied", "comment", None, frozenset({ENT, OFF, DEP, SUP})),
    ("closed", "comment", None, frozenset({ENT, OFF, DEP, SUP})),
    ("submitted", "link", None, frozenset({OFF, SUP})),
    ("accepted", "link", None, frozenset({OFF, SUP})),
    ("rejected", "link", None, frozenset({OFF, SUP})),
    ("dispatched", "link", None, frozenset({OFF, SUP})),
    ("in_progress", "link", None, frozenset({OFF, SUP})),
    ("on_hold", "link", None, frozenset({OFF, SUP})),
    ("replied", "link", None, frozenset({OFF, SUP})),
    ("closed", "link", None, frozenset({OFF, SUP})),
    ("submitted", "add_info", None, frozenset({ENT, OFF})),
    ("accepted", "add_info", None, frozenset({ENT, OFF})),
    ("dispatched", "add_info", None, frozenset({ENT, OFF})),
    ("in_progress", "add_info", None, frozenset({ENT, OFF})),
    ("on_hold", "add_info", None, frozenset({ENT, OFF})),
    ("replied", "add_info", None, frozenset({ENT, OFF})),
    ("submitted", "remind", None, frozenset({OFF, SUP, SYS})),
    ("accepted", "remind", None, frozenset({OFF, SUP, SYS})),
    ("dispatched", "remind", None, frozenset({OFF, SUP, SYS})),
    ("in_progress", "remind", None, frozenset({OFF, SUP, SYS})),
    ("on_hold", "remind", None, frozenset({OFF, SUP, SYS})),
    ("replied", "remind", None, frozenset({OFF, SUP, SYS})),
    ("submitted", "escalate", None, frozenset({SUP, SYS})),
    ("accepted", "escalate", None, frozenset({SUP, SYS})),
    ("dispatched", "escalate", None, frozenset({SUP, SYS})),
    ("in_progress", "escalate", None, frozenset({SUP, SYS})),
    ("on_hold", "escalate", None, frozenset({SUP, SYS})),
    ("replied", "escalate", None, frozenset({SUP, SYS})),
    # extensions of the reply deadline (SPEC §3-§4; decision: asked by the lead department while
    # handling, decided by a supervisor)
    ("in_progress", "request_extension", None, frozenset({DEP})),
    ("on_hold", "request_extension", None, frozenset({DEP})),
    ("in_progress", "approve_extension", None, frozenset({SUP})),
    ("on_hold", "approve_extension", None, frozenset({SUP})),
    ("in_progress", "deny_extension", None, frozenset({SUP})),
    ("on_hold", "deny_extension", None, frozenset({SUP})),
    # attachments (issue 12): the enterprise, the officer and departments handling the ticket, and
    # the system (e-mail intake), in every status; no endpoint of its own (POST .../attachments)
    *((s, "attach", None, frozenset({ENT, OFF, DEP, SYS})) for s in
      ("submitted", "accepted", "rejected", "dispatched", "in_progress", "on_hold", "replied", "closed")),
]
EXPECTED_MAP = {(s, a): (n, roles) for s, a, n, roles in EXPECTED}


def _expected_allowed(status: str, role: str | None = None) -> list[str]:
    return sorted(a for (s, a), (_n, roles) in EXPECTED_MAP.items()
                  if s == status and a not in ("auto_close", "attach") and (role is None or role in roles))


def _guard_kwargs(action: str) -> dict:
    """Guard inputs under which the plain table applies (no returns; a consultation)."""
    return {"return_count": 0, "service_type": "consultation" if action == "answer" else "problem"}


# --------------------------------------------------------------------------- the table itself

def test_expected_list_has_no_duplicates():
    assert len(EXPECTED_MAP) == len(EXPECTED)


def test_table_matches_spec_transcription():
    actual = {(s.value, a.value): (t.next_status.value if t.next_status else None, frozenset(t.roles))
              for (s, a), t in wf.TRANSITIONS.items()}
    missing = EXPECTED_MAP.keys() - actual.keys()
    extra = actual.keys() - EXPECTED_MAP.keys()
    assert not missing, f"moves missing from TRANSITIONS: {sorted(missing)}"
    assert not extra, f"moves in TRANSITIONS that SPEC §3 does not list: {sorted(extra)}"
    for key, expected in EXPECTED_MAP.items():
        assert actual[key] == expected, key


def test_every_action_and_status_is_covered():
    assert {a for _s, a, _n, _r in EXPECTED} == {a.value for a in Action}
    assert {s for s, _a, _n, _r in EXPECTED} == {s.value for s in TicketStatus}
    # every status except the end states can be left; rejected is terminal
    leaving = {s for s, _a, n, _r in EXPECTED if n is not None}
    assert leaving == {s.value for s in TicketStatus} - {"rejected"}


def test_reason_required_actions():
    assert {a.value for a in wf.REASON_REQUIRED} == {"reject", "return", "hold", "reopen"}
    assert wf.MAX_RETURNS_BEFORE_SUPERVISOR == 2


def test_every_status_is_reachable_from_submitted():
    graph: dict[str, set[str]] = {}
    for s, _a, n, _r in EXPECTED:
        if n is not None:
            graph.setdefault(s, set()).add(n)
    seen, stack = {"submitted"}, ["submitted"]
    while stack:
        for nxt in graph.get(stack.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    assert seen == {s.value for s in TicketStatus}


# --------------------------------------------------------------------------- every pair × role

ALL_CASES = list(itertools.product([s.value for s in TicketStatus], [a.value for a in Action], ROLES))


@pytest.mark.parametrize(("status", "action", "role"), ALL_CASES,
                         ids=[f"{s}-{a}-{r}" for s, a, r in ALL_CASES])
def test_check_every_pair_and_role(status: str, action: str, role: str):
    expected = EXPECTED_MAP.get((status, action))
    if expected is None:
        with pytest.raises(IllegalTransition) as info:
            wf.check(status, action, role, **_guard_kwargs(action))
        problem = info.value.to_problem()
        assert info.value.status == 409
        assert problem["status"] == 409
        assert problem["type"] == "/problems/illegal-transition"
        assert problem["current_status"] == status
        assert problem["allowed_actions"] == _expected_allowed(status)
        assert status in problem["detail"] and action in problem["detail"]
        return
    next_status, roles = expected
    if role not in roles:
        with pytest.raises(NotAllowed) as info:
            wf.check(status, action, role, **_guard_kwargs(action))
        assert info.value.status == 403
        assert info.value.to_problem()["allowed_roles"] == sorted(roles)
        return
    transition = wf.check(status, action, role, **_guard_kwargs(action))
    assert isinstance(transition, Transition)
    assert (transition.next_status.value if transition.next_status else None) == next_status
    assert role in transition.roles


@pytest.mark.parametrize("status", [s.value for s in TicketStatus])
@pytest.mark.parametrize("role", [None, *ROLES])
def test_allowed_actions(status: str, role: str | None):
    assert wf.allowed_actions(status, role) == _expected_allowed(status, role)
    assert wf.allowed_actions(TicketStatus(status), role) == _expected_allowed(status, role)


def test_auto_close_is_never_offered_to_people():
    for status in TicketStatus:
        assert "auto_close" not in wf.allowed_actions(status)


def test_check_accepts_enums_and_strings():
    assert wf.check(TicketStatus.submitted, Action.accept, Role.officer).next_status == TicketStatus.accepted
    assert wf.check("submitted", "accept", "officer").next_status == TicketStatus.accepted


@pytest.mark.parametrize(("status", "action"), [("nonsense", "accept"), ("submitted", "nonsense"),
                                                ("SUBMITTED", "accept"), ("", "")])
def test_unknown_status_or_action_is_a_value_error(status: str, action: str):
    with pytest.raises(ValueError):
        wf.check(status, action, "officer")


def test_unknown_role_is_not_allowed():
    with pytest.raises(NotAllowed):
        wf.check("submitted", "accept", "hacker")


# --------------------------------------------------------------------------- guards

@pytest.mark.parametrize("returns", [0, 1])
@pytest.mark.parametrize("role", [OFF, SUP])
def test_dispatch_before_two_returns_officer_or_supervisor(returns: int, role: str):
    t = wf.check("accepted", "dispatch", role, return_count=returns)
    assert t.next_status == TicketStatus.dispatched


@pytest.mark.parametrize("returns", [2, 3, 10])
def test_dispatch_after_two_returns_only_supervisor(returns: int):
    with pytest.raises(NotAllowed) as info:
        wf.check("accepted", "dispatch", OFF, return_count=returns)
    assert info.value.status == 403
    assert info.value.to_problem()["allowed_roles"] == [SUP]
    assert str(returns) in info.value.detail
    assert wf.check("accepted", "dispatch", SUP, return_count=returns).next_status == "dispatched"


@pytest.mark.parametrize("role", [ENT, DEP, ADM, SYS])
def test_dispatch_after_two_returns_other_roles_still_refused(role: str):
    with pytest.raises(NotAllowed):
        wf.check("accepted", "dispatch", role, return_count=2)


@pytest.mark.parametrize("service_type", ["problem", "agency", "matching"])
def test_answer_only_for_consultations(service_type: str):
    with pytest.raises(IllegalTransition) as info:
        wf.check("submitted", "answer", OFF, service_type=service_type)
    problem = info.value.to_problem()
    assert problem["status"] == 409
    assert problem["current_status"] == "submitted"
    assert "answer" not in problem["allowed_actions"]
    assert problem["allowed_actions"] == [a for a in _expected_allowed("submitted") if a != "answer"]


@pytest.mark.parametrize("service_type", ["consultation", None])
def test_answer_for_consultation_or_unknown_type(service_type: str | None):
    assert wf.check("submitted", "answer", OFF, service_type=service_type).next_status == "replied"


def test_answer_by_wrong_role_is_403_even_for_problems():
    # the role check comes first: a department never answers, whatever the type
    with pytest.raises(NotAllowed):
        wf.check("submitted", "answer", DEP, service_type="problem")


def test_illegal_move_wins_over_guards():
    # a dispatch from the wrong status is 409 even after many returns
    with pytest.raises(IllegalTransition) as info:
        wf.check("submitted", "dispatch", OFF, return_count=5)
    assert info.value.to_problem()["current_status"] == "submitted"

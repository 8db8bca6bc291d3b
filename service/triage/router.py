"""Triage endpoints (issue 13): category and department suggestions for a title and description.
Thin: the rules are in service/triage/suggest.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from service.auth.actor import Actor
from service.auth.dependencies import SessionDep, require_roles
from service.common.openapi import problem_responses
from service.triage import schemas
from service.triage.suggest import SUGGESTION_ROLES, suggester

router = APIRouter(prefix="/triage", tags=["triage"])
StaffActor = Annotated[Actor, Depends(require_roles(*SUGGESTION_ROLES))]


@router.post("/suggest", response_model=schemas.Suggestions, responses=problem_responses(403),
             summary="分类与承办单位建议（前三名、置信度与依据词）")
def suggest(body: schemas.SuggestIn, session: SessionDep, _actor: StaffActor) -> schemas.Suggestions:
    """The top 3 categories and lead departments for a request, from the newest trained model
    (or the category and department names before one exists). Officers, supervisors and admins:
    internal routing advice, not shown to enterprises or departments."""
    return suggester.suggest(session, body.title, body.description)

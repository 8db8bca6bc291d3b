"""Request and response models of the suggestions (issue 13)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.common.schemas import InputModel, LongText, ShortText
from service.tickets.schemas import TicketRead


class SuggestIn(InputModel):
    """Body of ``POST /api/v1/triage/suggest``: the request's title and description as an
    enterprise would write them (the same limits as a submission: title 1-200, description
    1-20,000 characters, no NUL)."""

    model_config = ConfigDict(extra="forbid")

    title: ShortText
    description: LongText


class CategorySuggestion(BaseModel):
    """A suggested category: ``path`` is the names from the root, joined by ``/``; ``confidence``
    0..1; ``words``: the words of the request that weighed most, strongest first."""

    id: int
    code: str
    name: str
    path: str
    confidence: float = Field(ge=0, le=1)
    words: list[str]


class DepartmentSuggestion(BaseModel):
    """A suggested lead department (承办单位), as :class:`CategorySuggestion`."""

    id: int
    code: str
    name: str
    confidence: float = Field(ge=0, le=1)
    words: list[str]


class Suggestions(BaseModel):
    """The top 3 categories and departments for a request.

    ``category_source`` / ``department_source``: ``model`` (the stored model ``model_version``)
    or ``keywords`` (no model yet, none for that label, or it is still loading: the category and
    department names, docs/triage.md). With ``keywords`` the confidence is the share of the
    keyword score, not a probability.
    """

    category_source: Literal["model", "keywords"]
    department_source: Literal["model", "keywords"]
    model_version: int | None = None
    categories: list[CategorySuggestion]
    departments: list[DepartmentSuggestion]


class TicketWithSuggestions(TicketRead):
    """A ticket as its reader sees it; ``suggestions`` only for officers, supervisors and admins
    (internal routing advice: for enterprises and departments the member is absent, and the body
    is the plain :class:`TicketRead`)."""

    suggestions: Suggestions | None = None

"""Query-parameter types of the routers (FastAPI's ``Query``), apart from :mod:`service.common.schemas`
so that importing the domain (the schemas, the ticket service: ``qifu import``, the workers) does
not import FastAPI (about 0.15 s of a command's start-up)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from service.common.schemas import Id

#: an optional id in a query string (a filter): an :data:`~service.common.schemas.Id`, or absent
QueryId = Annotated[Id | None, Query()]

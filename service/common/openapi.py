"""Error answers in the OpenAPI document (issue #11 point 5, RFC 9457).

Every error is an ``application/problem+json`` :class:`Problem`. Each operation declares the
errors it gives, derived from the route itself by :func:`declare_problem_responses` (one rule, no
hand-written list per route):

- **401** when it needs a bearer token (depends on ``get_current_actor``), and ``POST
  /auth/token`` (a wrong password);
- **403** when a role dependency (``require_roles``) guards it;
- **404** when it has path parameters (an id or number that does not exist or is not visible);
- **422** when it takes parameters or a body; **400** when it takes a body (one that cannot be
  decoded at all);
- **409**, **412** and in-handler **403**/**404**: declared on the route or router with
  :func:`problem_responses` (e.g. the ticket actions: 409 illegal move or lost race, 412 stale
  ``If-Match``).

:func:`install_problem_openapi` then renders every 4xx answer of the document as
``application/problem+json`` with the ``Problem`` schema (FastAPI's own ``HTTPValidationError``
is not what the API answers, so it is dropped).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

PROBLEM_MEDIA_TYPE = "application/problem+json"
_REF = "#/components/schemas/Problem"

#: What each status means in this API (Chinese, for people reading the docs).
DESCRIPTIONS = {
    400: "请求有误",
    401: "未登录、令牌无效或已过期",
    403: "角色无权进行此操作",
    404: "不存在或不在可见范围内",
    409: "冲突：当前状态不允许，或并发修改",
    412: "If-Match 版本已过期",
    422: "输入有误（errors 逐项指出字段）",
}


class FieldProblem(BaseModel):
    """One invalid field of a 422."""

    field: str = Field(description="字段名（请求体字段用点号连接，如 problems.0.title；头部如 If-Match）")
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem document. More members may follow (``errors`` for 422;
    ``current_status`` and ``allowed_actions`` for an illegal move; ``allowed_roles``)."""

    model_config = ConfigDict(extra="allow", title="Problem")

    type: str = Field(description="问题类型，如 /problems/validation-error；about:blank 表示仅看状态码")
    title: str
    status: int
    detail: str
    errors: list[FieldProblem] | None = None


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route or router: the problem answers ``codes`` (e.g. ``409, 412``)."""
    return {code: {"description": DESCRIPTIONS.get(code, "请求有误"),
                   "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": _REF}}}} for code in codes}


def _calls(dependant) -> Iterator[Any]:
    for dep in dependant.dependencies:
        if dep.call is not None:
            yield dep.call
        yield from _calls(dep)


def api_routes(routes) -> Iterator[APIRoute]:
    """Every :class:`APIRoute` under ``routes`` (``app.router.routes``), included routers too."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(route, "original_router", None)  # FastAPI >= 0.16x keeps included routers
        if inner is not None:
            yield from api_routes(inner.routes)


def route_problem_codes(route: APIRoute) -> set[int]:
    """The error statuses ``route`` can give by its shape (see the module docstring)."""
    from service.auth.dependencies import get_current_actor

    calls = list(_calls(route.dependant))
    codes: set[int] = set()
    if get_current_actor in calls:
        codes.add(401)
    if any("require_roles" in getattr(call, "__qualname__", "") for call in calls):
        codes.add(403)
    dependants = (route.dependant, *_all(route.dependant))
    if any(d.path_params for d in dependants):
        codes.add(404)
    if any(d.path_params or d.query_params or d.header_params or d.cookie_params or d.body_params
           for d in dependants):
        codes.add(422)
    if any(d.body_params for d in dependants):
        codes.add(400)
    return codes


def _all(dependant) -> Iterator[Any]:
    for dep in dependant.dependencies:
        yield dep
        yield from _all(dep)


def declare_problem_responses(app: FastAPI) -> None:
    """Add to each API route of ``app`` the problem answers its shape implies (idempotent)."""
    for route in api_routes(app.router.routes):
        for code, response in problem_responses(*sorted(route_problem_codes(route))).items():
            route.responses.setdefault(code, response)


def _problem_everywhere(schema: dict[str, Any]) -> dict[str, Any]:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in problem.pop("$defs", {}).items():
        components[name] = definition
    components["Problem"] = problem
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for code, response in operation["responses"].items():
                if code.startswith("4") or code.startswith("5"):
                    response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": _REF}}}
                    response["description"] = response.get("description") or DESCRIPTIONS.get(int(code), "")
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    return schema


def install_problem_openapi(app: FastAPI) -> None:
    """Declare each route's problem answers and serve every 4xx of the OpenAPI document as
    ``application/problem+json`` :class:`Problem`. Call after the routers are included."""
    declare_problem_responses(app)
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _problem_everywhere(original())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

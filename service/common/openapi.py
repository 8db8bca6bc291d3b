"""Error answers in the OpenAPI document (issue #11 point 5, RFC 9457).

Every error is an ``application/problem+json`` :class:`Problem`. Each operation declares the
errors it gives, derived from the route itself by :func:`qifu.openapi.declare_problem_responses` (one rule, no
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

:func:`qifu.openapi.install_problem_openapi` (the entry layer: it inspects the app's routes and
their auth dependencies) then renders every 4xx answer of the document as
``application/problem+json`` with the ``Problem`` schema (FastAPI's own ``HTTPValidationError``
is not what the API answers, so it is dropped).
"""

from __future__ import annotations

from typing import Any

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
    413: "文件或请求体过大（errors 指出文件字段）",
    415: "文件类型不允许（按内容检测，errors 指出文件字段）",
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

"""Open311 GeoReport v2 at ``/open311/v2`` (issue 12, docs/open311.md) and the administration of
its API keys at ``/api/v1/open311/keys``.

Every GeoReport method answers in the format its path ends with (``.json`` or ``.xml``); errors
are the specification's error lists in that format, with its status codes (400, 403, 404; and
429, 503), never ``application/problem+json``: Open311 clients read error lists. The parameters
are read as text and checked by :mod:`service.open311.service` (no 422 from FastAPI).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.datastructures import FormData

from service.auth.dependencies import AdminActor, SessionDep
from service.common.schemas import Id
from service.errors import AppError
from service.open311 import render, schemas
from service.open311 import service as open311

router = APIRouter(prefix="/open311/v2", tags=["open311"])
keys_router = APIRouter(prefix="/open311/keys", tags=["open311-keys"])


# --------------------------------------------------------------------------- documented shapes

class ErrorItem(BaseModel):
    """One error of the GeoReport v2 error list."""

    code: int
    description: str


class EndpointOut(BaseModel):
    specification: str
    url: str
    changeset: str
    type: str
    formats: list[str]


class DiscoveryOut(BaseModel):
    changeset: str
    contact: str
    key_service: str
    endpoints: list[EndpointOut]


class ServiceOut(BaseModel):
    service_code: str
    service_name: str
    description: str
    metadata: bool
    type: str
    keywords: str
    group: str


class ValueOut(BaseModel):
    key: str
    name: str


class AttributeOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variable: bool
    code: str
    datatype: str
    required: bool
    datatype_description: str | None
    order: int
    description: str
    values: list[ValueOut] | None = None


class ServiceDefinitionOut(BaseModel):
    service_code: str
    attributes: list[AttributeOut]


class PostedOut(BaseModel):
    service_request_id: str
    token: str
    service_notice: str
    account_id: str | None


class RequestOut(BaseModel):
    service_request_id: str
    status: str
    status_notes: str | None
    service_name: str
    service_code: str
    description: str
    agency_responsible: str | None
    service_notice: str | None
    requested_datetime: str
    updated_datetime: str
    expected_datetime: str | None
    address: str | None
    address_id: str | None
    zipcode: str | None
    lat: float | None
    long: float | None
    media_url: str | None


class TokenOut(BaseModel):
    service_request_id: str
    token: str


class JSONDoc(JSONResponse):
    """A GeoReport v2 JSON document, for the OpenAPI document only (the handlers answer with the
    bytes :mod:`service.open311.render` made)."""

    media_type = "application/json"


class XMLDoc(Response):
    """A GeoReport v2 XML document (rendered by :mod:`service.open311.render`)."""

    media_type = "text/xml"


_ERROR_DESCRIPTIONS = {400: "请求有误（GeoReport v2 error list）", 403: "api_key 缺失、无效或已吊销，或无权",
                       404: "jurisdiction_id、service_code、请求或 token 不存在",
                       413: "请求体超过上限（max_body_bytes）", 429: "该 api_key 请求过于频繁",
                       503: "服务暂不可用"}


def _responses(fmt: str, model: Any, ok: int, codes: tuple[int, ...]) -> dict[int | str, dict[str, Any]]:
    if fmt == "json":  # the models go to the document's components (the success: response_model)
        out: dict[int | str, dict[str, Any]] = {}
        for code in codes:
            out[code] = {"description": _ERROR_DESCRIPTIONS[code], "model": list[ErrorItem]}
        return out
    xml = {"text/xml": {"schema": {"type": "string"}}}
    out = {ok: {"description": "OK", "content": xml}}
    for code in codes:
        out[code] = {"description": _ERROR_DESCRIPTIONS[code], "content": xml}
    return out


# --------------------------------------------------------------------------- answering

def _answer(fmt: str, root: str, data: Any, status_code: int = 200) -> Response:
    return Response(render.render(fmt, root, data), status_code, media_type=render.MEDIA_TYPES[fmt])


def _error(fmt: str, exc: AppError) -> Response:
    status_code = exc.status if exc.status in (400, 403, 404, 413, 429, 503) else 400
    description = getattr(exc, "description", None) or exc.detail
    response = _answer(fmt, "errors", render.errors(status_code, description), status_code)
    for name, value in (getattr(exc, "headers", None) or {}).items():
        response.headers[name] = value
    return response


async def _guarded(fmt: str, work: Callable[[], Awaitable[Response]]) -> Response:
    try:
        return await work()
    except AppError as exc:
        return _error(fmt, exc)


def _api_key(request: Request, form: Any = None) -> str | None:
    """The key from ``api_key`` (query string or form), else the user name of HTTP Basic
    authentication (for clients that cannot add a parameter to their GETs)."""
    key = request.query_params.get("api_key")
    if not key and form is not None:
        value = form.get("api_key")
        key = value if isinstance(value, str) else None
    if not key:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic" and credentials:
            try:
                key = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                key = None
    return key or None


#: a run of percent-escapes (``%E6%8B%9B...``): Chinese text is one long run
_ESCAPES = re.compile(r"(?:%[0-9A-Fa-f]{2})+")
MAX_FIELDS = 1000


def _unquote(text: str) -> str:
    """``urllib.parse.unquote_plus(text, errors="strict")``, decoding each run of escapes at once:
    the standard library loops in Python over every ``%``, 0.28 ms for a 300-character Chinese
    description on the bench machine, about a fifth of a submission's CPU (docs/open311.md)."""
    text = text.replace("+", " ")
    if "%" not in text:
        return text
    return _ESCAPES.sub(lambda m: bytes.fromhex(m.group().replace("%", "")).decode("utf-8"), text)


def parse_urlencoded(body: str) -> list[tuple[str, str]]:
    """The fields of an ``application/x-www-form-urlencoded`` body, as
    ``urllib.parse.parse_qsl(body, keep_blank_values=True, errors="strict", max_num_fields=1000)``
    gives them (tests/open311/test_georeport.py holds them equal).

    Raises:
        UnicodeDecodeError: an escape sequence that is not UTF-8. ValueError: over 1,000 fields.
    """
    fields = [field for field in body.split("&") if field]
    if len(fields) > MAX_FIELDS:
        raise ValueError("Max number of fields exceeded")
    pairs = []
    for field in fields:
        name, _, value = field.partition("=")
        pairs.append((_unquote(name), _unquote(value)))
    return pairs


async def _form(request: Request) -> Any:
    """The POST parameters: an ``application/x-www-form-urlencoded`` body (the specification's,
    strict UTF-8: :func:`parse_urlencoded`), or a multipart one (parsed by Starlette)."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
        return FormData(parse_urlencoded((await request.body()).decode("utf-8")))
    return await request.form()


def _query(request: Request) -> dict[str, str]:
    return {k: v for k, v in request.query_params.items()}


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + router.prefix


Jurisdiction = str | None
FORM_BODY = {"requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
    "type": "object", "required": ["service_code"],
    "properties": {name: {"type": "string", "maxLength": limit} for name, limit in open311._LIMITS.items()},
    "additionalProperties": {"type": "string", "maxLength": 64}}}}}}


def _make_routes(fmt: str) -> None:
    ext = f".{fmt}"

    async def get_discovery(request: Request) -> Response:
        return _answer(fmt, "discovery", open311.discovery(_base_url(request)))

    async def get_services(request: Request, session: SessionDep, jurisdiction_id: Jurisdiction = None) -> Response:
        async def work() -> Response:
            open311.check_jurisdiction(jurisdiction_id)
            return _answer(fmt, "services", open311.services(session))
        return await _guarded(fmt, work)

    async def get_service_definition(request: Request, session: SessionDep, service_code: Annotated[str, Path()],
                                     jurisdiction_id: Jurisdiction = None) -> Response:
        async def work() -> Response:
            open311.check_jurisdiction(jurisdiction_id)
            return _answer(fmt, "service_definition", open311.service_definition(session, service_code))
        return await _guarded(fmt, work)

    async def post_request(request: Request, session: SessionDep) -> Response:
        async def work() -> Response:
            try:
                form = await _form(request)
            except AppError:
                raise
            except Exception as exc:  # noqa: BLE001 - a malformed multipart body is the client's error
                if getattr(exc, "status_code", None) == 413:  # a chunked body over the limit
                    raise open311.Open311Error(413, f"the request body is too large（{exc}）") from exc
                raise open311.Open311Error(400, f"the request body could not be read as a form（{type(exc).__name__}）") \
                    from exc
            key = await open311.authenticate(session, _api_key(request, form), "create_request")
            params, attributes = open311.parse_params([*request.query_params.multi_items(), *form.multi_items()])
            answer = await open311.submit_request(session, key, params, attributes)
            return _answer(fmt, "service_requests", [answer], status.HTTP_201_CREATED)
        return await _guarded(fmt, work)

    async def get_requests(request: Request, session: SessionDep, jurisdiction_id: Jurisdiction = None,
                           service_request_id: str | None = None, service_code: str | None = None,
                           start_date: str | None = None, end_date: str | None = None,
                           status: str | None = None, api_key: str | None = None) -> Response:
        async def work() -> Response:
            key = await open311.authenticate(session, _api_key(request), "get_service_requests")
            return _answer(fmt, "service_requests", open311.list_requests(session, key, _query(request)))
        return await _guarded(fmt, work)

    async def get_request(request: Request, session: SessionDep, service_request_id: Annotated[str, Path()],
                          jurisdiction_id: Jurisdiction = None, api_key: str | None = None) -> Response:
        async def work() -> Response:
            key = await open311.authenticate(session, _api_key(request), "get_service_request")
            return _answer(fmt, "service_requests",
                           open311.get_request(session, key, service_request_id, jurisdiction_id))
        return await _guarded(fmt, work)

    async def get_token(request: Request, session: SessionDep, token_id: Annotated[str, Path()],
                        jurisdiction_id: Jurisdiction = None, api_key: str | None = None) -> Response:
        async def work() -> Response:
            key = await open311.authenticate(session, _api_key(request), "get_request_id_from_token")
            return _answer(fmt, "service_requests", open311.token_request(session, key, token_id, jurisdiction_id))
        return await _guarded(fmt, work)

    routes = [  # matched in this order: the POST first
        ("POST", f"/requests{ext}", post_request, list[PostedOut], 201, (400, 403, 404, 413, 429, 503),
         "提交诉求（需 api_key）"),
        ("GET", f"/discovery{ext}", get_discovery, DiscoveryOut, 200, (), "服务发现（GeoReport v2 Service Discovery）"),
        ("GET", f"/services{ext}", get_services, list[ServiceOut], 200, (400, 404), "服务列表（分类）"),
        ("GET", f"/services/{{service_code}}{ext}", get_service_definition, ServiceDefinitionOut, 200, (400, 404),
         "服务定义（属性）"),
        ("GET", f"/requests{ext}", get_requests, list[RequestOut], 200, (400, 403, 404, 429),
         "诉求列表（需 api_key：仅该密钥可见的诉求）"),
        ("GET", f"/requests/{{service_request_id}}{ext}", get_request, list[RequestOut], 200, (400, 403, 404, 429),
         "诉求详情（需 api_key）"),
        ("GET", f"/tokens/{{token_id}}{ext}", get_token, list[TokenOut], 200, (400, 403, 404, 429),
         "由 token 查诉求编号（需 api_key）"),
    ]
    for method, path, endpoint, model, ok, codes, summary in routes:
        endpoint.__name__ = f"open311_{endpoint.__name__}_{fmt}"
        router.add_api_route(path, endpoint, methods=[method], summary=summary,
                             response_class=JSONDoc if fmt == "json" else XMLDoc,
                             response_model=model if fmt == "json" else None,
                             status_code=ok, responses=_responses(fmt, model, ok, codes),
                             openapi_extra=FORM_BODY if method == "POST" else None)


for _fmt in ("json", "xml"):
    _make_routes(_fmt)


# --------------------------------------------------------------------------- keys (admin)

@keys_router.post("", response_model=schemas.KeyCreated, status_code=status.HTTP_201_CREATED,
                  summary="签发 Open311 API 密钥（仅显示一次）")
def create_key(body: schemas.KeyCreate, session: SessionDep, actor: AdminActor) -> schemas.KeyCreated:
    row, raw = open311.create_key(session, actor, body)
    return schemas.KeyCreated(**schemas.KeyRead.model_validate(row).model_dump(), api_key=raw)


@keys_router.get("", response_model=list[schemas.KeyRead], summary="Open311 API 密钥列表")
def list_keys(session: SessionDep, _actor: AdminActor) -> list[schemas.KeyRead]:
    return [schemas.KeyRead.model_validate(row) for row in open311.list_keys(session)]


@keys_router.post("/{key_id}/revoke", response_model=schemas.KeyRead, summary="吊销 Open311 API 密钥")
def revoke_key(key_id: Id, session: SessionDep, _actor: AdminActor) -> schemas.KeyRead:
    return schemas.KeyRead.model_validate(open311.revoke_key(session, key_id))

"""The FastAPI application: ``create_app()`` wires routers, problem+json error handlers, health."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from qifu.openapi import install_problem_openapi
from service.errors import AppError, Unavailable, database_unavailable

log = logging.getLogger("qifu")
PROBLEM = "application/problem+json"


def _problem(status: int, title: str, detail: str, type_: str = "about:blank", **extra: Any) -> JSONResponse:
    body = {"type": type_, "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def _field_name(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or (str(loc[-1]) if loc else "body")


async def app_error_handler(_request: Request, exc: AppError) -> JSONResponse:
    return JSONResponse(exc.to_problem(), status_code=exc.status, media_type=PROBLEM,
                        headers=getattr(exc, "headers", None))


async def validation_error_handler(_request: Request, exc: RequestValidationError) -> JSONResponse:
    # a body that is not JSON has no field: its loc is ("body", <character offset>)
    errors = [{"field": "body" if e.get("type") == "json_invalid" else _field_name(tuple(e.get("loc", ()))),
               "message": e.get("msg", "")}
              for e in exc.errors()]
    detail = "；".join(f"{e['field']}: {e['message']}" for e in errors)
    return _problem(422, "输入有误", detail, "/problems/validation-error", errors=errors)


async def http_error_handler(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    titles = {401: "未登录或登录已过期", 403: "无权操作", 404: "未找到", 405: "方法不允许", 413: "请求体过大"}
    types = {413: "/problems/body-too-large"}
    response = _problem(exc.status_code, titles.get(exc.status_code, "请求有误"), str(exc.detail),
                        types.get(exc.status_code, "about:blank"))
    for k, v in (exc.headers or {}).items():
        response.headers[k] = v
    return response


async def unhandled_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    if database_unavailable(exc):  # the database restarting or unreachable: 503, never a 500
        return await database_error_handler(_request, exc)
    log.exception("unhandled error", exc_info=exc)
    return _problem(500, "服务器内部错误", "服务器内部错误，请稍后重试")


async def database_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """A lost or refused database connection (:func:`service.errors.database_unavailable`) is a
    503 problem with ``Retry-After``: the outcome of a write is unknown, a retry with the same
    ``Idempotency-Key`` is safe. Any other database error is a 500."""
    if not database_unavailable(exc):
        log.exception("unhandled database error", exc_info=exc)
        return _problem(500, "服务器内部错误", "服务器内部错误，请稍后重试")
    log.warning("database unavailable: %s", f"{type(exc).__name__}: {getattr(exc, 'orig', exc)}"[:300])
    problem = Unavailable(f"数据库暂不可用，请稍后重试；写操作请携带相同的 Idempotency-Key 重试（{type(exc).__name__}）")
    response = JSONResponse(problem.to_problem(), status_code=503, media_type=PROBLEM)
    response.headers["Retry-After"] = "1"
    return response


@asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    from service.db import close_async_pools, open_async_pools

    await open_async_pools()
    yield
    await close_async_pools()


def _add_operations(app: FastAPI) -> None:
    """``GET /metrics`` and per-route request metrics (service.observability.metrics); the request
    id of every request (``X-Request-ID`` in and out, bound for the logs: service.logs)."""
    from asgi_correlation_id import CorrelationIdMiddleware

    from service.observability.metrics import instrument

    instrument(app)
    app.add_middleware(CorrelationIdMiddleware, header_name="X-Request-ID")  # outermost: ids every line


def create_app() -> FastAPI:
    """Build the API application (routers under ``/api/v1``, problem+json errors, health)."""
    from qifu.web import add_docs
    from qifu.web import router as web_router
    from service.attachments.router import router as attachments_router
    from service.auth.router import router as auth_router
    from service.auth.secret_file import check_settings
    from service.cadences.router import router as cadences_router
    from service.calendar.router import router as calendar_router
    from service.common.body_limit import BodySizeLimit
    from service.mail_intake.router import router as mail_router
    from service.notifications.router import router as notifications_router
    from service.open311.router import keys_router as open311_keys_router
    from service.open311.router import router as open311_router
    from service.reference.router import router as reference_router
    from service.sla.router import router as sla_router
    from service.stats.router import router as stats_router
    from service.ticketing.router import router as tickets_router
    from service.triage.router import router as triage_router
    from service.triage.search_router import router as triage_search_router
    from workers.dispatch import register

    register()  # outbox messages written by requests go to the broker (or the embedded workers)

    settings = check_settings()  # invalid settings (a weak JWT secret): no app, not a 500 per request
    app = FastAPI(
        lifespan=_lifespan,
        docs_url=None,  # /docs is served from this package's files (qifu.web.add_docs): no CDN
        redoc_url=None,
        title="Qifu 企服 API",
        version="0.1.0",
        description="企业服务诉求平台：诉求受理、交办、答复、评价与统计。错误均为 RFC 9457 problem+json。",
    )
    from service.open311.render import too_large

    # uploads carry files: a larger limit on that route only (docs/attachments.md); Open311 answers
    # its own error list (docs/open311.md)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes,
                       limits={"/api/v1/tickets/*/attachments": settings.attachment_max_request_bytes},
                       answers={"/open311/": too_large})
    app.add_exception_handler(AppError, app_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(sa.exc.DBAPIError, database_error_handler)
    app.add_exception_handler(sa.exc.TimeoutError, database_error_handler)
    app.add_exception_handler(psycopg.Error, database_error_handler)
    app.add_exception_handler(Exception, unhandled_error_handler)
    # routes are matched in order: the two intake paths first (docs/open311.md "Figures")
    for router in (auth_router, tickets_router):
        app.include_router(router, prefix="/api/v1")
    app.include_router(open311_router)  # Open311 GeoReport v2 at /open311/v2 (docs/open311.md)
    for router in (reference_router, stats_router, calendar_router, sla_router, notifications_router,
                   cadences_router, open311_keys_router, mail_router, attachments_router, triage_router,
                   triage_search_router):
        app.include_router(router, prefix="/api/v1")
    app.include_router(web_router)  # /dashboard and its files (qifu/web/static)
    add_docs(app)
    _add_operations(app)

    @app.get("/healthz", tags=["ops"], summary="存活检查")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], summary="就绪检查（数据库可连接）",
             responses={503: {"description": "数据库不可用"}})
    def readyz() -> JSONResponse:
        import sqlalchemy as sa

        from service.db import get_engine

        try:
            with get_engine().connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - report, never raise
            return _problem(503, "未就绪", f"数据库不可用：{type(exc).__name__}")
        return JSONResponse({"status": "ready"})

    install_problem_openapi(app)  # after every route: each operation's problem answers

    return app

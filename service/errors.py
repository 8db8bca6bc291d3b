"""Domain errors and their RFC 9457 problem+json rendering (ARCHITECTURE rule 4).

Every business failure is an :class:`AppError` subclass carrying an HTTP status; one handler in
``qifu.main`` renders it as ``application/problem+json`` with ``type``, ``title``, ``status``,
``detail`` and, for field errors, ``errors: [{"field": ..., "message": ...}]``.
"""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """Base class of domain errors.

    Attributes:
        status: HTTP status code.
        title: short Chinese title for people.
        type: a URI-ish problem type (``/problems/<slug>``).
        detail: human-readable explanation (Chinese).
        extra: extra members merged into the problem document.
    """

    status: int = 400
    title: str = "请求有误"
    slug: str = "bad-request"

    def __init__(self, detail: str, *, status: int | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra
        if status is not None:
            self.status = status

    @property
    def type(self) -> str:
        return f"/problems/{self.slug}"

    def to_problem(self) -> dict[str, Any]:
        body = {"type": self.type, "title": self.title, "status": self.status, "detail": self.detail}
        body.update(self.extra)
        return body


class NotFound(AppError):
    status, title, slug = 404, "未找到", "not-found"


class TicketNotFound(NotFound):
    slug = "ticket-not-found"


class NotAllowed(AppError):
    """The caller's role may not do this (403)."""

    status, title, slug = 403, "无权操作", "forbidden"


class Unauthenticated(AppError):
    status, title, slug = 401, "未登录或登录已过期", "unauthenticated"


class IllegalTransition(AppError):
    """The action is not legal from the ticket's current status (409, SPEC §3)."""

    status, title, slug = 409, "当前状态不允许此操作", "illegal-transition"


class VersionConflict(AppError):
    """``If-Match`` named a stale version (412), or a concurrent update won the race (409)."""

    status, title, slug = 412, "版本冲突", "version-conflict"


class Conflict(AppError):
    status, title, slug = 409, "冲突", "conflict"


class Unavailable(AppError):
    """A backing service failed mid-request (503): e.g. the database connection broke while a
    statement ran, so whether it committed is unknown; a retry with the same
    ``Idempotency-Key`` is safe (SPEC §7)."""

    status, title, slug = 503, "服务暂不可用", "unavailable"


class TooManyRequests(AppError):
    """Too many attempts or requests in a window (429, SPEC §9); ``retry_after`` (whole seconds)
    is sent as the ``Retry-After`` header and the ``retry_after`` member of the problem."""

    status, title, slug = 429, "请求过于频繁", "too-many-requests"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after)}


class FieldError(AppError):
    """Invalid input on a named field (422)."""

    status, title, slug = 422, "输入有误", "validation-error"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", errors=[{"field": field, "message": message}])
        self.field = field


class FileTooLarge(FieldError):
    """A file (or a count of files) passes a size limit (413); names the field like a 422."""

    status, title, slug = 413, "文件过大", "file-too-large"


class UnsupportedFileType(FieldError):
    """A file's bytes are not of an accepted type (415); names the field like a 422."""

    status, title, slug = 415, "文件类型不允许", "unsupported-file-type"


def database_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` (psycopg's, or SQLAlchemy's wrapping it) means the database connection is
    gone or could not be had, so the request's outcome is unknown and a retry may succeed (503,
    :class:`Unavailable`): no SQLSTATE (socket closed, connection refused), class 08 (connection
    exception), 57P (the server shutting down, starting up, or the backend terminated), a
    connection SQLAlchemy invalidated, or the pool's checkout timeout. Other errors (deadlock,
    constraint, syntax) are answered by the server and are not this (SPEC §9: no 500 for an outage).
    """
    import psycopg
    import sqlalchemy as sa

    if isinstance(exc, sa.exc.TimeoutError):  # QueuePool checkout timeout
        return True
    if getattr(exc, "connection_invalidated", False):
        return True
    orig = getattr(exc, "orig", exc)
    if isinstance(orig, psycopg.OperationalError):
        state = orig.sqlstate
        return state is None or state.startswith(("08", "57P"))
    return isinstance(orig, psycopg.InterfaceError)  # "the connection is closed"

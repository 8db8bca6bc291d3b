"""A limit on the size of request bodies, enforced before they are read (SPEC §9, issue 11).

A pure ASGI middleware: a ``Content-Length`` above the limit is answered 413 at once, without
reading the body or running the endpoint (which would otherwise parse it before its 401 or 422);
a body without ``Content-Length`` (chunked) is counted as it is read and refused as soon as it
passes the limit. The answer is an RFC 9457 problem like every other error.

One limit for every route, and larger ones for the few routes that take files (the attachment
upload), named by path pattern: ``*`` stands for one path segment.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PROBLEM = "application/problem+json"


class BodyTooLarge(HTTPException):
    """The request body passed ``limit`` bytes (413). An :class:`HTTPException`, so that FastAPI
    passes it on from the body parsing (it turns other errors there into a 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _detail(limit))


def _detail(limit: int) -> str:
    size = f"{limit // (1024 * 1024)} MiB" if limit % (1024 * 1024) == 0 else f"{limit} 字节"
    return f"请求体超过 {size} 的上限"


def _pattern(path: str) -> re.Pattern[str]:
    return re.compile("".join("[^/]+" if part == "*" else re.escape(part) for part in re.split(r"(\*)", path)))


class BodySizeLimit:
    """Refuse request bodies larger than ``max_bytes`` bytes with 413 ``application/problem+json``.

    Args:
        limits: larger (or smaller) limits of some routes, ``{path pattern: bytes}``; a pattern
            matches the whole path, ``*`` one segment (``/api/v1/tickets/*/attachments``).
        answers: under a path prefix (e.g. ``/open311/``, which answers error lists), the
            function giving the 413 answer for ``(path, limit)``: ``(body, content type)``.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, limits: Mapping[str, int] | None = None,
                 answers: dict[str, Callable[[str, int], tuple[bytes, str]]] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.limits = [(_pattern(path), size) for path, size in (limits or {}).items()]
        self.answers = answers or {}

    def limit_of(self, path: str) -> int:
        """The body limit of a request to ``path`` (bytes)."""
        for pattern, size in self.limits:
            if pattern.fullmatch(path):
                return size
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_of(scope.get("path", ""))
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(send, scope, limit)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLarge:  # read outside FastAPI's error handling (e.g. by another middleware)
            if started:
                raise
            await self._refuse(send, scope, limit)

    async def _refuse(self, send: Send, scope: Scope, limit: int) -> None:
        path = scope.get("path", "")
        answer = next((f for prefix, f in self.answers.items() if path.startswith(prefix)), None)
        if answer is not None:
            body, content_type = answer(path, limit)
        else:
            body = json.dumps({"type": "/problems/body-too-large", "title": "请求体过大", "status": 413,
                               "detail": _detail(limit)}, ensure_ascii=False).encode()
            content_type = PROBLEM
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length itself
    return None

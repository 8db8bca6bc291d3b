"""Request bodies above ``max_body_bytes`` get 413 problem+json before they are read (issue 11)."""

from __future__ import annotations

import asyncio
import json

import pytest

from service.common.body_limit import BodySizeLimit
from service.config import get_settings

PROBLEM = "application/problem+json"
LIMIT = get_settings().max_body_bytes
SUBMIT = {"title": "厂区门口道路破损", "description": "道路破损影响货车进出，请协调修复。",
          "category_code": "problem.transport"}


def _big_json(size: int) -> bytes:
    body = json.dumps({**SUBMIT, "description": "路" * (size // 3)}, ensure_ascii=False).encode()
    assert len(body) > size
    return body


def _assert_413(resp) -> None:
    assert resp.status_code == 413, resp.text[:300]
    assert resp.headers["content-type"] == PROBLEM
    body = resp.json()
    assert body["status"] == 413 and body["type"] == "/problems/body-too-large" and "MiB" in body["detail"]


@pytest.mark.parametrize("authenticated", [False, True])
def test_large_body_refused_before_auth_and_validation(client, login, authenticated):
    """A 100 MiB body: 413 whether or not the caller is logged in (it was read, then 401/422)."""
    headers = {"Content-Type": "application/json", **(login("ent1") if authenticated else {})}
    _assert_413(client.post("/api/v1/tickets", content=b" " * (100 * 1024 * 1024), headers=headers))


def test_chunked_body_refused_once_it_passes_the_limit(client, login):
    sent = []

    def chunks():  # no Content-Length: Transfer-Encoding chunked
        for _ in range(64):
            sent.append(1)
            yield b" " * (256 * 1024)

    resp = client.post("/api/v1/tickets", content=chunks(), headers={"Content-Type": "application/json",
                                                                     **login("ent1")})
    _assert_413(resp)


def test_login_form_limited_too(client):
    body = b"username=admin&password=" + b"x" * (LIMIT + 1)
    _assert_413(client.post("/api/v1/auth/token", content=body,
                            headers={"Content-Type": "application/x-www-form-urlencoded"}))


def test_body_at_the_limit_is_accepted(client, login):
    body = json.dumps(SUBMIT, ensure_ascii=False).encode()
    body += b" " * (LIMIT - len(body))  # trailing white space is valid JSON
    assert len(body) == LIMIT
    resp = client.post("/api/v1/tickets", content=body, headers={"Content-Type": "application/json",
                                                                 **login("ent1")})
    assert resp.status_code == 201, resp.text


def test_the_middleware_answers_without_reading_a_declared_large_body():
    """Pure ASGI: the endpoint never runs and ``receive`` is never awaited."""
    called = []

    async def app(scope, receive, send):  # pragma: no cover - must not run
        called.append(scope)

    async def receive():  # pragma: no cover - must not be awaited
        raise AssertionError("body read")

    sent = []

    async def send(message):
        sent.append(message)

    limited = BodySizeLimit(app, max_bytes=1024)
    asyncio.run(limited({"type": "http", "headers": [(b"content-length", b"2048")]}, receive, send))
    assert not called and sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["status"] == 413

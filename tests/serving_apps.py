"""Small ASGI applications for the supervisor tests of ``qifu serve`` (tests/entry/test_serving.py).

Imported by name in the spawned API processes, so they live in a module of their own.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI


@asynccontextmanager
async def _failing_lifespan(_app: FastAPI):
    raise RuntimeError("数据库不可用（测试）")
    yield  # pragma: no cover


failing_startup = FastAPI(lifespan=_failing_lifespan)
"""An application whose lifespan start-up fails, as when its database cannot be reached."""

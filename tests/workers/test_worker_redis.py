"""A real Celery worker on real Redis runs a task (no eager mode, no fake broker)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from service.config import get_settings

REDIS_URL = os.environ.get("QIFU_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def celery_worker_process(monkeypatch):
    """A `celery worker` child process on the test Redis database; stopped after the test."""
    redis.Redis.from_url(REDIS_URL).flushdb()
    env = {**os.environ, "QIFU_REDIS_URL": REDIS_URL}
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers.celery_app:celery_app", "worker",
         "--pool=solo", "-Q", "celery,sla,notifications,cadence", "--loglevel=WARNING", "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    monkeypatch.setenv("QIFU_REDIS_URL", REDIS_URL)
    get_settings.cache_clear()
    yield proc
    proc.terminate()
    proc.wait(timeout=30)
    get_settings.cache_clear()


def test_redis_is_real():
    client = redis.Redis.from_url(REDIS_URL)
    assert client.ping() is True
    client.set("qifu:test", "1", ex=5)
    assert client.get("qifu:test") == b"1"


def test_real_worker_runs_a_task(celery_worker_process):
    from workers.celery_app import make_celery

    app = make_celery()
    started = time.monotonic()
    result = app.send_task("ops.ping")
    assert result.get(timeout=60) == "pong"
    assert time.monotonic() - started < 60
    assert celery_worker_process.poll() is None

"""The beat entries of the triage search features name registered Celery tasks, and each task
runs its service function in a session of its own."""

from __future__ import annotations

from service.config import get_settings


def test_beat_entries_name_registered_tasks():
    from workers.celery_app import beat_schedule, get_celery

    app = get_celery()
    entries = {k: v for k, v in beat_schedule(get_settings()).items() if k.startswith("triage-")}
    assert {v["task"] for v in entries.values()} == {
        "triage.refresh_hot_issues", "triage.sweep_duplicate_index", "triage.harvest_replies", "triage.train",
        "triage.index_duplicates"}
    for entry in entries.values():
        assert entry["task"] in app.tasks


def test_tasks_run(sqlite_engine, monkeypatch):
    """On the SQLite file of the fixtures: each task commits in its own session."""
    from service.config import get_settings as settings
    from service.db import get_engine

    monkeypatch.setenv("QIFU_DATABASE_URL", sqlite_engine.url.render_as_string(hide_password=False))
    settings.cache_clear()
    get_engine.cache_clear()
    try:
        from workers import search_tasks

        assert search_tasks.refresh_hot_issues() >= 0
        assert search_tasks.sweep_duplicate_index() >= 0
        assert search_tasks.index_duplicates() >= 0
        assert search_tasks.harvest_replies() >= 0
    finally:
        get_engine().dispose()
        settings.cache_clear()
        get_engine.cache_clear()

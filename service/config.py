"""Application settings: one class, read once from the environment (prefix ``QIFU_``).

See ARCHITECTURE.md "Settings in one class". Every value can be overridden with an environment
variable, e.g. ``QIFU_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1/qifu``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "qifu-development-secret-change-me-0123456789"


class Settings(BaseSettings):
    """Qifu settings.

    Attributes:
        environment: ``development`` | ``test`` | ``production``. Outside development and test,
            the JWT secret must not be the shipped default (a ``ValueError`` is raised at start-up).
        database_url: SQLAlchemy URL. Default: the embedded SQLite file ``./qifu.db``.
        redis_url: Redis URL for Celery; empty means the embedded in-process worker.
        jwt_secret: HMAC key for access tokens (HS256).
        access_token_minutes: token lifetime in minutes.
        timezone: the office's time zone (working-time rules are evaluated there).
        working_hours: working periods of a working day, ``"09:00-12:00,13:30-17:30"`` (SPEC §4).
        ticket_number_prefix: prefix of ticket numbers, ``QF`` gives ``QF2026-000123``.
        max_text_length / max_title_length: size limits (characters) on free text fields.
        import_default_category: category code used by ``qifu import`` when a row has none.
        webhook_url / webhook_secret: notification webhook; bodies signed with HMAC-SHA256.
        smtp_host / smtp_port / smtp_from: SMTP for e-mail notifications (empty host = off).
        delivery_max_attempts: deliveries failing this many times are dead-lettered.
        delivery_backoff_seconds: first retry delay; doubles on each failure.
        delivery_stale_seconds: a delivery still ``pending`` this long after it was queued is
            queued again (its broker message was lost); see ``notifications.retry_failed``.
        metrics_token: when set, ``GET /metrics`` needs ``Authorization: Bearer <token>``.
        log_format / log_level: ``json`` (one JSON object a line, with ``request_id``) or
            ``console``; the level of the ``qifu`` commands' logs.
        worker_metrics_port: port of a Celery worker's own ``/metrics`` (sweep durations); 0 = off.
        db_pool_size: pooled connections per API process (the sync pool, and the async pool of the
            intake statement).
        intake_statement: an enterprise's own submission on PostgreSQL runs as one SQL statement
            on the event loop (``service/tickets/intake_pg.py``, docs/performance.md); ``false``
            sends every submission through the ORM path (same answers, lower throughput).
    """

    model_config = SettingsConfigDict(env_prefix="QIFU_", env_file=".env", extra="ignore")

    environment: str = "development"
    database_url: str = "sqlite:///./qifu.db"
    redis_url: str = ""
    jwt_secret: str = DEV_SECRET
    access_token_minutes: int = 8 * 60
    timezone: str = "Asia/Shanghai"
    working_hours: str = "09:00-12:00,13:30-17:30"
    ticket_number_prefix: str = "QF"
    max_title_length: int = 200
    max_text_length: int = 20_000
    max_reason_length: int = 2_000
    db_pool_size: int = 10
    db_max_overflow: int = 20
    # an enterprise's own submission on PostgreSQL as one statement on the event loop
    # (service/tickets/intake_pg.py); false = every submission takes the ORM path
    intake_statement: bool = True
    seeds_dir: Path = Path(__file__).resolve().parent.parent / "seeds" / "data"
    import_default_category: str = "problem.other"
    sql_echo: bool = False
    # notifications (issue #3): delivery channels; empty = channel off
    webhook_url: str = ""
    webhook_secret: str = ""
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_from: str = "qifu@localhost"
    delivery_max_attempts: int = 5
    delivery_backoff_seconds: float = 30.0
    # a delivery still pending this long after it was queued is queued again (its broker message
    # was lost: Redis restarted without persistence); notifications.retry_failed
    delivery_stale_seconds: float = 300.0
    # Celery on Redis: seconds before a message taken by a worker that died unacknowledged is
    # redelivered (acks_late); longer than any task
    broker_visibility_timeout: float = 3600.0
    # embedded scheduler (qifu standalone): seconds between SLA sweeps / outbox relays
    embedded_sweep_seconds: float = 60.0
    # operations (docs/operations.md): GET /metrics needs "Authorization: Bearer <token>" when set;
    # logs are JSON lines ("json") or human-readable ("console"); `qifu worker` serves its own
    # metrics on this port (0 = off)
    metrics_token: str = ""
    log_format: str = "json"
    log_level: str = "INFO"
    worker_metrics_port: int = 9540

    @model_validator(mode="after")
    def _refuse_default_secret(self) -> Settings:
        if self.environment not in {"development", "test"} and self.jwt_secret == DEV_SECRET:
            raise ValueError("QIFU_JWT_SECRET must be set outside development")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings (cached; tests call ``get_settings.cache_clear()``)."""
    return Settings()

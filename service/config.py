"""Application settings: one class, read once from the environment (prefix ``QIFU_``).

See ARCHITECTURE.md "Settings in one class". Every value can be overridden with an environment
variable, e.g. ``QIFU_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1/qifu``.
"""

from __future__ import annotations

from datetime import time
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "qifu-development-secret-change-me-0123456789"
#: Shortest JWT secret accepted (bytes): HS256 wants a key of at least its 256-bit output (RFC 7518 §3.2).
MIN_SECRET_BYTES = 32


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
            on the event loop (``service/ticketing/intake_pg.py``, docs/performance.md); ``false``
            sends every submission through the ORM path (same answers, lower throughput).

    The five cadences (SPEC §5; environment ``QIFU_CADENCE_...``):
        cadence_inquiry_intervals: contact interval in calendar days per enterprise tag; an
            enterprise with several configured tags gets the shortest (default ``{"重点": 7}``),
            e.g. ``QIFU_CADENCE_INQUIRY_INTERVALS='{"重点": 7, "专精特新": 14}'``.
        cadence_inquiry_default_interval_days: interval of enterprises with no configured tag (30 days).
        cadence_inquiry_daily_cap: most enterprises on one officer's list per working day (10).
        cadence_inquiry_lookahead_working_days: enterprises coming due within this many working days
            fill the list up to the cap, to smooth the load (2).
        cadence_clinic_weekday: default clinic weekday, ISO (1 = Monday ... 7 = Sunday; default 3).
        cadence_clinic_time / cadence_clinic_capacity: default start time (local) and bookings per session.
        cadence_clinic_stalled_working_days: a ticket with no event for this many working days is stalled (5).
        cadence_joint_offset_working_days: the joint consultation is held this many working days after
            the quarterly run (3), so invitations arrive in time.
        cadence_follow_up_expiry_working_days: an unanswered follow-up / return visit expires after this (10).
        cadence_long_open_days: open tickets older than this (calendar days) go to supervisors (30).
        cadence_catch_up_days: how far back (calendar days) missed periods are caught up (40).
        cadence_ranking_weights: weights of the quarterly ranking's score (normalised over available rates).
        stats_fold_seconds: how often beat folds the statistics rollup's appended changes into its
            rows (``service.stats.rollup.fold``; default 15 s; queries are exact before a fold).
        cadence_run_times: local time of day (``timezone``) at which each cadence becomes due on its run
            date; beat fires each cadence's task at this time (``workers/celery_app.py``).
        rate_limit_url: where login and request counts live (``limits`` storage URL); empty = the
            Redis of ``redis_url``, or this process's memory (``memory://``) when that is empty.
        login_failures_per_account / login_failures_per_address / login_failure_window_seconds:
            login throttling (SPEC §9, service/auth/login.py): attempts on one account, failures
            from one client address, in a moving window of that many seconds; then 429.
        requests_per_user_per_minute: API requests one user may make per minute in each API
            process (SPEC §9 "rate limits per user"; a guard against runaway scripts, 100/s by
            default); 0 = no limit.
        max_body_bytes: largest request body accepted (bytes); larger ones get 413 before
            they are read.
        jwt_secret_file: where ``qifu standalone`` keeps the JWT secret it generated when
            ``jwt_secret`` is not set (empty = beside the SQLite file, ``<db>.secret``, or
            ``./qifu.secret`` for another database).
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
    # (service/ticketing/intake_pg.py); false = every submission takes the ORM path
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
    stats_fold_seconds: float = Field(default=15.0, gt=0, le=3600)
    # the five cadences (SPEC §5), QIFU_CADENCE_*
    cadence_inquiry_intervals: dict[str, int] = Field(default_factory=lambda: {"重点": 7})
    cadence_inquiry_default_interval_days: int = Field(default=30, ge=1, le=366)
    cadence_inquiry_daily_cap: int = Field(default=10, ge=1, le=500)
    cadence_inquiry_lookahead_working_days: int = Field(default=2, ge=0, le=20)
    cadence_clinic_weekday: int = Field(default=3, ge=1, le=7)
    cadence_clinic_time: time = time(9, 0)
    cadence_clinic_capacity: int = Field(default=10, ge=1, le=1000)
    cadence_clinic_stalled_working_days: int = Field(default=5, ge=1, le=60)
    cadence_joint_offset_working_days: int = Field(default=3, ge=0, le=20)
    cadence_follow_up_expiry_working_days: int = Field(default=10, ge=1, le=60)
    cadence_long_open_days: int = Field(default=30, ge=1, le=366)
    cadence_catch_up_days: int = Field(default=40, ge=1, le=400)
    cadence_ranking_weights: dict[str, float] = Field(default_factory=lambda: {
        "closure_rate": 0.25, "on_time_rate": 0.25, "response_rate": 0.15, "satisfaction_rate": 0.2,
        "reopen_rate": 0.075, "return_rate": 0.075})
    cadence_run_times: dict[str, time] = Field(default_factory=lambda: {
        "daily": time(8, 30), "weekly": time(8, 0), "monthly": time(8, 0), "quarterly": time(8, 0),
        "annual": time(8, 0)})

    @field_validator("cadence_inquiry_intervals")
    @classmethod
    def _positive_intervals(cls, value: dict[str, int]) -> dict[str, int]:
        for tag, days in value.items():
            if not 1 <= int(days) <= 366:
                raise ValueError(f"{tag}: interval must be 1-366 days")
        return value

    # hardening (issue 11): throttling, rate limits, body size, the standalone secret
    rate_limit_url: str = ""
    login_failures_per_account: int = Field(default=5, ge=1)
    login_failures_per_address: int = Field(default=100, ge=1)
    login_failure_window_seconds: int = Field(default=900, ge=1)
    requests_per_user_per_minute: int = Field(default=6000, ge=0)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    jwt_secret_file: str = ""
    # operations (docs/operations.md): GET /metrics needs "Authorization: Bearer <token>" when set;
    # logs are JSON lines ("json") or human-readable ("console"); `qifu worker` serves its own
    # metrics on this port (0 = off)
    metrics_token: str = ""
    log_format: str = "json"
    log_level: str = "INFO"
    worker_metrics_port: int = 9540

    @model_validator(mode="after")
    def _refuse_weak_secret(self) -> Settings:
        if self.environment not in {"development", "test"} and self.jwt_secret == DEV_SECRET:
            raise ValueError("QIFU_JWT_SECRET must be set outside development and test "
                             "(the development secret is public)")
        if len(self.jwt_secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"QIFU_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes "
                             f"(got {len(self.jwt_secret.encode())})")
        return self

    @property
    def rate_limit_storage_url(self) -> str:
        """The ``limits`` storage of login and request counts (see ``rate_limit_url``)."""
        return self.rate_limit_url or self.redis_url or "memory://"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings (cached; tests call ``get_settings.cache_clear()``)."""
    return Settings()

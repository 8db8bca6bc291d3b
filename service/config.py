"""Application settings: one class, read once from the environment (prefix ``QIFU_``).

See ARCHITECTURE.md "Settings in one class". Every value can be overridden with an environment
variable, e.g. ``QIFU_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1/qifu``.
"""

from __future__ import annotations

from datetime import time
from functools import lru_cache
from pathlib import Path
from typing import Any

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
        attachment_storage_url: where attachment bytes are stored (an fsspec URL): empty = a
            local directory beside the SQLite file (``qifu.db`` -> ``qifu.db.attachments/``), or
            ``./attachments`` for another database; ``/srv/qifu/attachments`` (a local path);
            ``s3://bucket/prefix`` (S3-compatible object storage; needs the ``s3`` extra, s3fs).
        attachment_storage_options: options of that file system, a JSON object, e.g.
            ``{"endpoint_url": "http://minio:9000", "key": "...", "secret": "..."}`` for s3fs.
        attachment_max_bytes: largest attachment (bytes of one file; 10 MiB), refused with 413.
        attachment_max_files: most files in one upload request (5).
        attachment_max_per_ticket: most attachments on one ticket (30).
        attachment_types: the content types accepted, detected from the bytes
            (service/attachments/detect.py; docs/attachments.md).
        triage_train_time: local time of day (``timezone``) at which beat retrains the category and
            department suggestion models (``triage.train``, docs/triage.md); default 02:30.
        triage_poll_seconds: how often (seconds) an API process looks for a newer stored suggestion
            model, in a background thread (``service/triage/suggest.py``); default 30.
        duplicate_index_seconds: how often beat adds the near-duplicate index rows of tickets taken
            by the one-statement intake (``service.triage.duplicates.index_pending``; default 5 s):
            until then a new ticket is not yet a candidate in other tickets' duplicate checks.
        open311_jurisdiction_id: the ``jurisdiction_id`` of this office in Open311 GeoReport v2
            (docs/open311.md); a request naming another one is answered 404.
        open311_requests_per_key_per_minute: requests one Open311 API key may make per minute
            (a moving window over the ``rate_limit_url`` storage, shared by every API process);
            0 = no limit.
        open311_media_fetch_hosts: the hosts whose Open311 ``media_url`` a worker fetches and
            stores as an attachment (a JSON list of host names, ``host`` or ``host:port``, lower
            case; docs/open311.md "media_url"). Empty (the default) = fetching off: offices run on
            intranets, and the URL stays on the request as a link.
        open311_media_fetch_allow_private: also fetch from private, loopback, link-local and other
            non-public addresses (default False: an allowed name that resolves to such an address
            is refused, against server-side request forgery).
        open311_media_fetch_timeout_seconds: the whole fetch of one ``media_url`` (connect, each
            read, and the body as a whole), seconds; default 10.
        jwt_secret_file: where ``qifu standalone`` keeps the JWT secret it generated when
            ``jwt_secret`` is not set (empty = beside the SQLite file, ``<db>.secret``, or
            ``./qifu.secret`` for another database).

    E-mail intake (issue 12, docs/mail_intake.md; environment ``QIFU_MAIL_...``):
        mail_enabled: poll the office's IMAP mailbox (beat entry ``mail-poll``); off by default.
        mail_imap_host / mail_imap_port: the IMAP server (port 993 with ``mail_imap_tls``, else 143).
        mail_imap_tls: implicit TLS (IMAPS); ``mail_imap_starttls`` upgrades a plain connection.
        mail_imap_user / mail_imap_password: the mailbox's login (plain ``LOGIN`` over the connection).
        mail_imap_folder: the folder polled (``INBOX``).
        mail_poll_seconds: seconds between polls (beat), 60.
        mail_batch_size: messages fetched per IMAP ``FETCH`` (and flagged per ``STORE``), 50.
        mail_workers: threads taking a fetched batch's messages, each in its own transaction on
            its own connection (8; SQLite always 1).
        mail_max_messages_per_poll: most messages one poll takes (the rest wait for the next), 5000.
        mail_default_category: category code of a ticket made from an e-mail, for an officer to
            triage (``problem.other``).
        mail_max_message_bytes: larger messages are recorded as ``ignored`` (reason: too large), 25 MiB.
        mail_timeout_seconds: socket timeout of the IMAP connection.
        mail_message_id_domain: right-hand side of the ``Message-ID`` of Qifu's notification
            e-mails, ``<ticket-QF2026-000001.<uuid>@qifu>``; a reply's ``In-Reply-To`` names it.
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
    # suggestions (issue 13): nightly training, polling for a newer model
    triage_train_time: time = time(2, 30)
    triage_poll_seconds: float = Field(default=30.0, ge=0.1, le=86_400)
    duplicate_index_seconds: float = Field(default=5.0, gt=0, le=3600)
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
    # Open311 GeoReport v2 (issue 12, docs/open311.md)
    open311_jurisdiction_id: str = "qifu"
    open311_requests_per_key_per_minute: int = Field(default=600, ge=0)
    open311_media_fetch_hosts: list[str] = Field(default_factory=list)
    open311_media_fetch_allow_private: bool = False
    open311_media_fetch_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    jwt_secret_file: str = ""
    # attachments (issue 12, docs/attachments.md): sizes and types checked on the bytes
    attachment_storage_url: str = ""
    attachment_storage_options: dict[str, Any] = Field(default_factory=dict)
    attachment_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    attachment_max_files: int = Field(default=5, ge=1, le=100)
    attachment_max_per_ticket: int = Field(default=30, ge=1, le=10_000)
    attachment_types: list[str] = Field(default_factory=lambda: [
        "image/jpeg", "image/png", "image/gif", "image/webp", "application/pdf",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/msword", "application/vnd.ms-excel", "application/vnd.ms-powerpoint", "text/plain"])
    # operations (docs/operations.md): GET /metrics needs "Authorization: Bearer <token>" when set;
    # logs are JSON lines ("json") or human-readable ("console"); `qifu worker` serves its own
    # metrics on this port (0 = off)
    metrics_token: str = ""
    log_format: str = "json"
    log_level: str = "INFO"
    worker_metrics_port: int = 9540
    # e-mail intake (issue 12, docs/mail_intake.md): an IMAP mailbox polled by beat; off by default
    mail_enabled: bool = False
    mail_imap_host: str = ""
    mail_imap_port: int = Field(default=993, ge=1, le=65535)
    mail_imap_tls: bool = True
    mail_imap_starttls: bool = False
    mail_imap_user: str = ""
    mail_imap_password: str = ""
    mail_imap_folder: str = "INBOX"
    mail_poll_seconds: float = Field(default=60.0, gt=0)
    mail_batch_size: int = Field(default=50, ge=1, le=1000)
    mail_workers: int = Field(default=8, ge=1, le=32)
    mail_max_messages_per_poll: int = Field(default=5000, ge=1)
    mail_default_category: str = "problem.other"
    mail_max_message_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    mail_timeout_seconds: float = Field(default=30.0, gt=0)
    mail_message_id_domain: str = "qifu"

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
    def attachment_max_request_bytes(self) -> int:
        """The body limit of the upload route (bytes): ``attachment_max_files`` files of
        ``attachment_max_bytes`` plus ``max_body_bytes`` for the multipart framing and fields."""
        return self.attachment_max_files * self.attachment_max_bytes + self.max_body_bytes

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings (cached; tests call ``get_settings.cache_clear()``)."""
    return Settings()

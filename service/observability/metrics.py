"""Prometheus metrics (SPEC §7 ``/metrics``; issue #11 "Operations").

Three kinds, each from a maintained library (prometheus-client, prometheus-fastapi-instrumentator):

- **HTTP** — ``http_requests_total{method, handler, status}`` and
  ``http_request_duration_seconds{method, handler}`` per *route template*
  (``/api/v1/tickets/{number}``, never a ticket number), from the instrumentator's middleware.
- **Background work** — ``qifu_sweep_duration_seconds{sweep}`` (histogram, seconds) and
  ``qifu_sweep_claimed_total{sweep}``, recorded by :func:`timed_sweep` where the tasks call the SLA
  sweeps, the outbox relay and the delivery retries.
- **The database's state** — ``qifu_tickets{status}``, ``qifu_tickets_overdue{step}``,
  ``qifu_tickets_escalated{level}``, ``qifu_outbox_pending``, ``qifu_outbox_oldest_pending_seconds``
  and ``qifu_notification_deliveries{state, channel}`` (``failed`` and ``dead`` are the delivery
  failures). Gauges computed **at scrape time** by :class:`DatabaseCollector` with one short
  read-only query each (statement timeout :data:`SCRAPE_TIMEOUT_MS` on PostgreSQL): every API
  process gives the same answer, so several ``qifu serve`` workers need nothing shared for them.

Several processes (``qifu serve --workers N``, the Celery prefork pool): the counters and
histograms use prometheus-client's multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR`` is set
(:func:`service.observability.multiproc.ensure_multiprocess_dir` sets it before the processes start): each process writes its
values to files there and a scrape sums them. Without it (one process, tests) they live in memory.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from prometheus_fastapi_instrumentator.middleware import PrometheusInstrumentatorMiddleware

log = logging.getLogger("qifu.metrics")

#: milliseconds a scrape's database query may take on PostgreSQL before it is cancelled
SCRAPE_TIMEOUT_MS = 2000
from service.observability.multiproc import MULTIPROC_ENV  # noqa: E402  (no prometheus import there)

SWEEP_DURATION = Histogram(
    "qifu_sweep_duration_seconds", "Duration of one run of a periodic sweep (seconds)", ["sweep"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
SWEEP_CLAIMED = Counter("qifu_sweep_claimed_total", "Rows a sweep claimed (tickets, outbox messages, deliveries)",
                        ["sweep"])
SWEEP_FAILURES = Counter("qifu_sweep_failures_total", "Sweep runs that raised", ["sweep"])


def _claimed(result) -> int:
    """How many rows a sweep's return value says it handled (int, tuple of ints or a list)."""
    if isinstance(result, bool) or result is None:
        return 0
    if isinstance(result, int):
        return result
    if isinstance(result, tuple) and all(isinstance(x, int) for x in result):
        return sum(result)
    if isinstance(result, list) and all(isinstance(x, int) for x in result):
        return sum(result) if len(result) == 2 else len(result)  # relay: (sent, failed)
    return 0


@contextmanager
def timed_sweep(name: str) -> Iterator[dict]:
    """Time one run of sweep ``name`` (``qifu_sweep_duration_seconds{sweep=name}``); a run that
    raises counts in ``qifu_sweep_failures_total``. Put the sweep's return value in
    ``box["result"]`` to count what it claimed::

        with timed_sweep("sla.send_reminders") as box:
            box["result"] = sweeps.send_reminders(session)
    """
    box: dict = {}
    started = time.perf_counter()
    try:
        yield box
    except BaseException:
        SWEEP_FAILURES.labels(name).inc()
        raise
    finally:
        SWEEP_DURATION.labels(name).observe(time.perf_counter() - started)
    claimed = _claimed(box.get("result"))
    if claimed:
        SWEEP_CLAIMED.labels(name).inc(claimed)


# ----------------------------------------------------------------- gauges read from the database

def _queries(now) -> dict:
    """The gauges' statements; overdue and open are the domain's own rules
    (:func:`service.sla.deadlines.overdue_clause`, :data:`service.common.enums.OPEN_STATUSES`)."""
    import sqlalchemy as sa

    from service.common.enums import OPEN_STATUSES
    from service.sla.deadlines import overdue_clause
    from service.tickets.models import Ticket

    t = Ticket.__table__.c
    count = sa.func.count()
    return {
        "status": sa.select(t.status, count).group_by(t.status),
        "overdue": sa.select(t.due_step, count).where(overdue_clause(now)).group_by(t.due_step),
        "escalated": sa.select(t.escalation_level, count).where(
            t.escalation_level > 0, t.status.in_(OPEN_STATUSES)).group_by(t.escalation_level),
        "outbox": sa.text("SELECT count(*), min(created_at) FROM outbox_message WHERE sent_at IS NULL"),
        "deliveries": sa.text("SELECT state, channel, count(*) FROM notification_delivery WHERE state <> 'sent' "
                              "GROUP BY state, channel"),
    }


class DatabaseCollector(Collector):
    """Gauges of the database's state, queried at each scrape (see the module docstring).

    A scrape whose database is unreachable or slow yields ``qifu_metrics_db_up 0`` and none of these
    gauges (never an error: the HTTP and process metrics still answer).
    """

    def __init__(self, connect=None) -> None:
        """``connect()`` returns a context manager giving a SQLAlchemy ``Connection`` (default: a
        connection of the application's engine)."""
        self._connect = connect

    def _connection(self):
        if self._connect is not None:
            return self._connect()
        from service.db import get_engine

        return get_engine().connect()

    def describe(self):  # no describe at registration: collect() would query the database
        return []

    def collect(self):
        import sqlalchemy as sa

        from service import clock
        from service.common.enums import TicketStatus

        now = clock.now()

        up = GaugeMetricFamily("qifu_metrics_db_up", "1 when the scrape could read the database")
        try:
            with self._connection() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(sa.text(f"SET LOCAL statement_timeout = {int(SCRAPE_TIMEOUT_MS)}"))
                rows = {name: conn.execute(stmt).all() for name, stmt in _queries(now).items()}
        except Exception as exc:  # noqa: BLE001 - a scrape never fails because the database did
            log.warning("metrics: database gauges unavailable: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        tickets = GaugeMetricFamily("qifu_tickets", "Tickets by status (SPEC §3)", labels=["status"])
        counts = {status: n for status, n in rows["status"]}
        for status in TicketStatus:
            tickets.add_metric([status.value], counts.get(status.value, 0))
        yield tickets

        overdue = GaugeMetricFamily("qifu_tickets_overdue", "Tickets whose running deadline has passed (SPEC §4)",
                                    labels=["step"])
        for step, n in sorted(rows["overdue"], key=lambda r: str(r[0])):
            overdue.add_metric([str(step)], n)
        yield overdue
        total = GaugeMetricFamily("qifu_tickets_overdue_total", "Tickets overdue, all steps")
        total.add_metric([], sum(n for _, n in rows["overdue"]))
        yield total

        escalated = GaugeMetricFamily("qifu_tickets_escalated", "Open tickets by escalation level (督办)",
                                      labels=["level"])
        for level, n in sorted(rows["escalated"]):
            escalated.add_metric([str(level)], n)
        yield escalated

        [(pending, oldest)] = rows["outbox"]
        depth = GaugeMetricFamily("qifu_outbox_pending", "Outbox messages not yet taken by the broker")
        depth.add_metric([], pending)
        yield depth
        age = GaugeMetricFamily("qifu_outbox_oldest_pending_seconds",
                                "Age of the oldest pending outbox message (seconds; 0 when none)")
        if oldest is not None and isinstance(oldest, str):  # SQLite without the column type's decoding
            from datetime import datetime

            oldest = datetime.fromisoformat(oldest)
        if oldest is not None and oldest.tzinfo is None:
            from datetime import UTC

            oldest = oldest.replace(tzinfo=UTC)
        age.add_metric([], max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0)
        yield age

        deliveries = GaugeMetricFamily(
            "qifu_notification_deliveries", "Notification deliveries not sent, by state (failed = retrying, "
            "dead = gave up) and channel", labels=["state", "channel"])
        for state, channel, n in sorted(rows["deliveries"]):
            deliveries.add_metric([state, channel], n)
        yield deliveries


# ----------------------------------------------------------------- exposition

def render(*registries: CollectorRegistry, database: bool = True) -> bytes:
    """The text exposition format of ``registries`` (the in-memory ones; in multiprocess mode the
    files' sum instead, plus the default registry's process collectors are left out as the
    library advises) and, with ``database``, the database gauges."""
    parts = []
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        parts.append(generate_latest(merged))
    else:
        parts.extend(generate_latest(r) for r in (*registries, REGISTRY))
    if database:
        db = CollectorRegistry(auto_describe=False)
        db.register(DatabaseCollector())
        parts.append(generate_latest(db))
    return b"".join(parts)


def instrument(app) -> None:
    """Add the per-route HTTP metrics to ``app`` and serve ``GET /metrics`` (not in the OpenAPI).

    Who may read it (docs/operations.md): with ``QIFU_METRICS_TOKEN`` set, only a request with
    ``Authorization: Bearer <token>`` (else 401); unset, anyone who reaches the port: the stack
    publishes the API behind a reverse proxy that must not route ``/metrics`` to the outside.
    """
    import secrets

    from prometheus_fastapi_instrumentator import Instrumentator

    from service.config import get_settings

    registry = CollectorRegistry()  # per app: tests build many apps in one process
    Instrumentator(should_group_status_codes=False, excluded_handlers=["/metrics", "/healthz", "/readyz"],
                   registry=registry).instrument(app)
    _remember_route_names(app)

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        token = get_settings().metrics_token
        if token:
            given = request.headers.get("authorization", "")
            if not secrets.compare_digest(given.encode(), f"Bearer {token}".encode()):
                from starlette.exceptions import HTTPException

                raise HTTPException(401, "需要指标令牌（QIFU_METRICS_TOKEN）", headers={"WWW-Authenticate": "Bearer"})
        return Response(render(registry), media_type=CONTENT_TYPE_LATEST)


#: distinct (method, path, root_path) whose route name a middleware remembers before starting over
ROUTE_NAME_CACHE_SIZE = 4096


def _remember_route_names(app) -> None:
    """Make the instrumentator's middleware on ``app`` remember the route name of each request
    path (:class:`RouteNameCache`) instead of resolving it again on every request."""
    from starlette.middleware import Middleware

    for i, m in enumerate(app.user_middleware):
        if m.cls is PrometheusInstrumentatorMiddleware:
            app.user_middleware[i] = Middleware(RouteNameCache, *m.args, **m.kwargs)


class RouteNameCache(PrometheusInstrumentatorMiddleware):
    """The instrumentator's middleware, its ``handler`` label looked up once per distinct
    (method, path, root_path) and then remembered (docs/performance.md "Intake, session 3").

    The library resolves the route template of every request by matching the path against every
    route of the application in turn (``routing.get_route_name``): ~0.2 ms per request with Qifu's
    routes, a fifth of a submission's CPU. The routes do not change once the application serves,
    so the answer for a path is always the same and the labels are exactly the library's. At most
    :data:`ROUTE_NAME_CACHE_SIZE` paths are kept (each ticket number makes a new path): the
    memory stays bounded, the cache starts over when full.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._route_names: dict[tuple, tuple[str, bool]] = {}

    def _get_handler(self, request: Request) -> tuple[str, bool]:
        scope = request.scope
        key = (scope.get("method"), scope.get("path"), scope.get("root_path", ""))
        found = self._route_names.get(key)
        if found is None:
            found = super()._get_handler(request)
            if len(self._route_names) >= ROUTE_NAME_CACHE_SIZE:
                self._route_names.clear()
            self._route_names[key] = found
        return found


def serve_worker_metrics(port: int) -> None:
    """Serve this host's worker processes' metrics (sweep durations; multiprocess files) on
    ``port`` (all interfaces) from a daemon thread of a Celery worker's main process. No database
    gauges here: the API's ``/metrics`` has them."""
    from prometheus_client import multiprocess, start_http_server

    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    try:
        start_http_server(port, registry=registry)
    except OSError as exc:  # another worker on this host has the port: run without it
        log.warning("worker metrics not served on port %d: %s", port, exc)

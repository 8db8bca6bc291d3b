"""``/metrics`` (Prometheus) and the structured logs with a request id (issue #11 "Operations").

The end-to-end check that a request's id reaches the log lines of its Celery task, through a real
``qifu serve`` and a real worker, is in tests/reliability/test_reliability.py::test_redis_down_for_the_middle_third_every_notification_delivered_once.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import uuid
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service import clock, logs
from service.notifications.models import Notification, NotificationDelivery
from service.observability.metrics import DatabaseCollector, timed_sweep
from service.outbox_models import OutboxMessage
from tests import factories as f
from tests.notifications.test_notifications import settings_env


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def db_gauges(session) -> dict[tuple[str, tuple], float]:
    """The database gauges as a scrape gives them, read inside the test's transaction."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(connect=lambda: contextlib.nullcontext(session.connection())))
    return samples(generate_latest(registry).decode())


# =========================================================================== /metrics

def test_metrics_per_route_template_never_per_ticket(client, login):
    headers = login("ent1")
    for number in ("QF2099-000001", "QF2099-000002"):
        assert client.get(f"/api/v1/tickets/{number}", headers=headers).status_code == 404
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    values = samples(resp.text)
    key = ("http_requests_total", (("handler", "/api/v1/tickets/{number}"), ("method", "GET"), ("status", "404")))
    assert values[key] == 2
    assert any(name == "http_request_duration_seconds_bucket" and ("handler", "/api/v1/tickets/{number}") in labels
               for name, labels in values)
    assert "QF2099-000001" not in resp.text
    assert values[("qifu_metrics_db_up", ())] in (0.0, 1.0)
    assert "/openapi.json" in client.app.openapi_url and "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_route_name_cache_gives_the_librarys_labels(client, login, monkeypatch):
    """The remembered route names (service.observability.metrics.RouteNameCache) are the library's
    own lookup: templated routes, a method the route lacks (405), an unknown path, the same path
    again; and the cache stays bounded."""
    from prometheus_fastapi_instrumentator import routing
    from starlette.requests import Request

    from service.observability import metrics

    app = client.app
    app.build_middleware_stack()
    # find the instrumentator's middleware instance in the built stack
    layer, cached = app.middleware_stack, None
    while layer is not None and cached is None:
        if isinstance(layer, metrics.RouteNameCache):
            cached = layer
        layer = getattr(layer, "app", None)
    assert cached is not None
    cases = [("POST", "/api/v1/tickets"), ("GET", "/api/v1/tickets"), ("GET", "/api/v1/tickets/QF2099-000001"),
             ("DELETE", "/api/v1/tickets/QF2099-000001"), ("GET", "/api/v1/no-such-thing"), ("GET", "/metrics"),
             ("GET", "/api/v1/tickets/QF2099-000001/duplicates"), ("POST", "/api/v1/tickets")]
    for method, path in cases:
        scope = {"type": "http", "method": method, "path": path, "root_path": "", "app": app, "headers": [],
                 "query_string": b""}
        name = routing.get_route_name(Request(scope), should_include_root_path=False)
        expected = (name or path, name is not None)
        assert cached._get_handler(Request(scope)) == expected
        assert cached._get_handler(Request(scope)) == expected  # remembered
    assert cached._get_handler(Request({"type": "http", "method": "GET", "path": "/api/v1/tickets/QF2099-000001",
                                        "root_path": "", "app": app, "headers": []}))[0] == "/api/v1/tickets/{number}"
    monkeypatch.setattr(metrics, "ROUTE_NAME_CACHE_SIZE", 3)
    for i in range(10):
        cached._get_handler(Request({"type": "http", "method": "GET", "path": f"/api/v1/tickets/QF2099-{i:06}",
                                     "root_path": "", "app": app, "headers": []}))
    assert len(cached._route_names) <= 3


def test_metrics_token_when_configured(client):
    with settings_env() as set_env:
        set_env(QIFU_METRICS_TOKEN="s3cret-token-for-prometheus")
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = client.get("/metrics", headers={"Authorization": "Bearer s3cret-token-for-prometheus"})
        assert ok.status_code == 200 and "http_requests_total" in ok.text


def test_database_gauges_follow_the_tickets(session):
    before = db_gauges(session)
    submitted = f.make_ticket(session, "submitted")
    f.make_ticket(session, "replied")
    late = f.make_ticket(session, "submitted")
    late.due_at, late.due_step = clock.now() - timedelta(hours=1), "accept"
    late.escalation_level = 1
    session.add(OutboxMessage(task="notifications.deliver", kwargs={"delivery_ids": []},
                              created_at=clock.now() - timedelta(seconds=120)))
    note = Notification(user_id=submitted.officer_id, ticket_id=submitted.id, kind="submitted", title="t", body="")
    session.add(note)
    session.flush()
    session.add(NotificationDelivery(notification_id=note.id, channel="webhook", target="http://x", state="dead"))
    session.flush()
    after = db_gauges(session)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert after[("qifu_metrics_db_up", ())] == 1
    assert delta("qifu_tickets", status="submitted") == 2
    assert delta("qifu_tickets", status="replied") == 1
    assert delta("qifu_tickets_overdue", step="accept") == 1
    assert delta("qifu_tickets_overdue_total") == 1
    assert delta("qifu_tickets_escalated", level="1") == 1
    assert delta("qifu_outbox_pending") == 1
    assert after[("qifu_outbox_oldest_pending_seconds", ())] >= 119
    assert delta("qifu_notification_deliveries", state="dead", channel="webhook") == 1


def test_database_gauges_when_the_database_is_down():
    @contextlib.contextmanager
    def broken():
        raise OSError("connection refused")
        yield  # pragma: no cover

    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(connect=broken))
    assert samples(generate_latest(registry).decode()) == {("qifu_metrics_db_up", ()): 0.0}


def test_timed_sweep_records_duration_claims_and_failures():
    name = f"test.sweep.{uuid.uuid4().hex[:6]}"

    def value(metric: str) -> float:
        return REGISTRY.get_sample_value(metric, {"sweep": name}) or 0.0

    with timed_sweep(name) as box:
        box["result"] = (3, 1)
    assert value("qifu_sweep_duration_seconds_count") == 1
    assert value("qifu_sweep_claimed_total") == 4
    with pytest.raises(RuntimeError), timed_sweep(name):
        raise RuntimeError("database gone")
    assert value("qifu_sweep_duration_seconds_count") == 2
    assert value("qifu_sweep_failures_total") == 1


# =========================================================================== request id and JSON logs

def test_request_id_echoed_generated_or_replaced(client):
    given = str(uuid.uuid4())
    assert client.get("/healthz", headers={"X-Request-ID": given}).headers["X-Request-ID"] == given
    made = client.get("/healthz").headers["X-Request-ID"]
    assert uuid.UUID(made)
    forged = client.get("/healthz", headers={"X-Request-ID": 'x", "level": "critical'}).headers["X-Request-ID"]
    assert uuid.UUID(forged), "an id that is not a UUID is replaced (no log injection)"
    # also on an error answer
    assert client.get("/api/v1/tickets", headers={"X-Request-ID": given}).headers["X-Request-ID"] == given


def test_json_log_lines_carry_the_request_id():
    config = logs.logging_config(fmt="json", level="INFO")
    formatter = logging.config.dictConfigClass(config).configure_custom(dict(config["formatters"]["qifu"]))
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"qifu.test.{uuid.uuid4().hex[:6]}")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    with logs.request_id_bound("abc123"):
        logger.info("受理 %s", "QF2026-000001", extra={"ticket": "QF2026-000001"})
    logger.warning("outside")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["event"] == "受理 QF2026-000001" and first["request_id"] == "abc123"
    assert first["ticket"] == "QF2026-000001" and first["level"] == "info" and first["timestamp"].endswith("Z")
    assert "request_id" not in second


def test_task_signal_handlers_bind_and_publish_the_id():
    class Request:
        request_id = "rid-from-message"
        headers = None

    class Task:
        name = "notifications.deliver"
        request = Request()

    headers: dict = {}
    with logs.request_id_bound("rid-of-request"):
        logs.publish_headers(headers=headers)
    assert headers == {"request_id": "rid-of-request"}
    logs.task_started(task_id="t1", task=Task())
    assert logs.current_request_id() == "rid-from-message"
    logs.task_finished(task_id="t1", state="SUCCESS")
    assert logs.current_request_id() is None


# =========================================================================== database unreachable

def test_database_unreachable_is_a_503_problem_never_a_500():
    """Every path (here the sync actor lookup and the ORM list), not only the intake statement:
    a refused connection is 503 with Retry-After (SPEC §9; PostgreSQL restarting)."""
    from fastapi.testclient import TestClient

    from qifu.main import create_app
    from service.auth.security import create_access_token
    from tests.notifications.test_notifications import free_port

    with settings_env() as set_env:
        set_env(QIFU_DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere")
        headers = {"Authorization": "Bearer " + create_access_token(1, "admin")[0]}
        with TestClient(create_app(), raise_server_exceptions=False) as client:
            for method, url in (("GET", "/api/v1/tickets"), ("POST", "/api/v1/tickets")):
                resp = client.request(method, url, headers=headers, json={"title": "t", "description": "d",
                                                                          "category_code": "problem.power"})
                assert resp.status_code == 503, resp.text
                assert resp.headers["content-type"].startswith("application/problem+json")
                assert resp.headers["Retry-After"] == "1"
                assert resp.json()["type"].endswith("unavailable")
            assert client.get("/readyz").status_code == 503

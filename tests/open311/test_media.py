"""Open311 ``media_url`` fetched into an attachment by a job (issue 12, docs/open311.md): against a
real HTTP server started here on 127.0.0.1 (the allowed host configured per test). A refused type,
a body over the limit, a 404, a timeout, a host not allowed, a private address not allowed, and
fetching off: the ticket keeps its ``media_url`` (Open311 GET returns it) and the failure is logged."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa
from sqlmodel import select

from service.config import get_settings
from service.open311 import media
from service.outbox_models import OutboxMessage
from service.tickets.models import Attachment, Ticket, TicketEvent
from tests.attachments.samples import png
from tests.open311.conftest import BASE

PHOTO = png(4, 4, seed=7)


class _Handler(BaseHTTPRequestHandler):
    hits: list[str]

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/octet-stream",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        port = self.server.server_address[1]
        if self.path == "/photo.png":
            self._send(200, PHOTO, "image/jpeg")  # a wrong declared type: the bytes decide
        elif self.path == "/page.html":
            self._send(200, b"<html><script>alert(1)</script></html>", "text/html")
        elif self.path == "/big.png":
            self._send(200, PHOTO + b"\x00" * 20_000, "image/png")
        elif self.path == "/slow.png":
            time.sleep(10)
            self._send(200, PHOTO, "image/png")
        elif self.path == "/moved":
            self._send(302, b"", headers={"Location": "/photo.png"})
        elif self.path == "/away":
            self._send(302, b"", headers={"Location": f"http://localhost:{port}/photo.png"})
        else:
            self._send(404, b"not found", "text/plain")


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.hits = []  # type: ignore[attr-defined]
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture
def fetching(monkeypatch) -> Iterator[None]:
    """Fetching on for 127.0.0.1 (a loopback address, so private addresses allowed), 2,048-byte
    attachments, a 10 s timeout (a loaded CI machine must not turn a good fetch into a timeout;
    the timeout case sets its own, shorter one)."""
    monkeypatch.setenv("QIFU_OPEN311_MEDIA_FETCH_HOSTS", '["127.0.0.1"]')
    monkeypatch.setenv("QIFU_OPEN311_MEDIA_FETCH_ALLOW_PRIVATE", "true")
    monkeypatch.setenv("QIFU_OPEN311_MEDIA_FETCH_TIMEOUT_SECONDS", "10")
    monkeypatch.setenv("QIFU_ATTACHMENT_MAX_BYTES", "2048")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def url(server, path: str, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{server.server_address[1]}{path}"


def submit(client, session, key, media_url: str) -> Ticket:
    resp = client.post(f"{BASE}/requests.json", data={
        "api_key": key.raw, "service_code": "problem.labour", "description": f"现场照片 {media_url}",
        "lat": "30.75", "long": "120.93", "media_url": media_url})
    assert resp.status_code == 201, resp.text
    number = resp.json()[0]["service_request_id"]
    return session.exec(select(Ticket).where(Ticket.number == number)).one()


def jobs_of(session, ticket: Ticket) -> list[OutboxMessage]:
    return [m for m in session.exec(select(OutboxMessage).where(OutboxMessage.task == media.TASK)).all()
            if m.kwargs == {"ticket_id": ticket.id}]


def open311_media_url(client, key, ticket: Ticket) -> str:
    (row,) = client.get(f"{BASE}/requests/{ticket.number}.json", params={"api_key": key.raw}).json()
    return row["media_url"]


def attachments_of(session, ticket: Ticket) -> list[Attachment]:
    return list(session.exec(select(Attachment).where(Attachment.ticket_id == ticket.id)).all())


@pytest.mark.parametrize("key_kind", ["own_key", "any_key"])
def test_media_url_becomes_an_attachment_of_the_system(client, session, server, fetching, request, key_kind):
    key = request.getfixturevalue(key_kind)
    extra = {}
    if key_kind == "any_key":
        from tests import factories as f

        extra = {"attribute[uscc]": f.enterprise_of(session, "ent1").uscc}
    resp = client.post(f"{BASE}/requests.json", data={
        "api_key": key.raw, "service_code": "problem.labour", "description": "现场照片", "lat": "30.75",
        "long": "120.93", "media_url": url(server, "/photo.png"), **extra})
    assert resp.status_code == 201, resp.text
    ticket = session.exec(select(Ticket).where(Ticket.number == resp.json()[0]["service_request_id"])).one()
    # never fetched in the request: a job in the ticket's transaction
    assert server.hits == [] and len(jobs_of(session, ticket)) == 1

    outcome = media.fetch_media(session, ticket.id)
    assert outcome.state == "stored", outcome
    (att,) = attachments_of(session, ticket)
    assert att.content_type == "image/png" and att.size == len(PHOTO) and att.filename == "photo.png"
    assert att.uploaded_by_id is None and outcome.attachment_id == att.id
    submit_event = session.exec(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id,
                                                          TicketEvent.action == "submit")).one()
    assert att.event_id == submit_event.id
    (attach,) = session.exec(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id,
                                                       TicketEvent.action == "attach")).all()
    assert attach.actor_role == "system" and attach.actor_id is None
    assert attach.payload["declared_type"] == "image/jpeg" and "media_url" in attach.reason
    session.refresh(ticket)
    assert ticket.attachment_count == 1
    # the link stays on the request
    assert open311_media_url(client, key, ticket) == url(server, "/photo.png")
    # a job run twice stores nothing twice
    assert media.fetch_media(session, ticket.id).attachment_id == att.id
    assert len(attachments_of(session, ticket)) == 1
    assert session.execute(sa.select(sa.func.count()).select_from(TicketEvent).where(
        TicketEvent.ticket_id == ticket.id, TicketEvent.action == "attach")).scalar() == 1


def test_redirect_within_allowed_hosts_is_followed(client, session, own_key, server, fetching):
    ticket = submit(client, session, own_key, url(server, "/moved"))
    assert media.fetch_media(session, ticket.id).state == "stored"
    assert server.hits == ["/moved", "/photo.png"]


FAILURES = [
    ("/page.html", "415"),  # HTML: not an accepted type, judged on the bytes
    ("/big.png", "413"),  # over attachment_max_bytes (2,048 here)
    ("/missing.png", "HTTP 404"),
    ("/slow.png", "秒"),  # a 1 s timeout against a server taking 10 s
    ("/away", "localhost 不在允许"),  # a redirect to a host not allowed
]


@pytest.mark.parametrize(("path", "says"), FAILURES)
def test_failed_fetches_keep_the_link_and_are_logged(client, session, own_key, server, fetching, caplog,
                                                     path, says, monkeypatch):
    if path == "/slow.png":
        monkeypatch.setenv("QIFU_OPEN311_MEDIA_FETCH_TIMEOUT_SECONDS", "1")
        get_settings.cache_clear()
    ticket = submit(client, session, own_key, url(server, path))
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="qifu.open311.media"):
        outcome = media.fetch_media(session, ticket.id)
    assert time.monotonic() - started < 8  # the slow one was cut at its 1 s timeout, not served after 10 s
    assert outcome.state == "failed" and says in outcome.reason, outcome
    (record,) = [r for r in caplog.records if r.name == "qifu.open311.media"]
    assert record.levelno == logging.WARNING and record.ticket == ticket.number and says in record.reason
    assert attachments_of(session, ticket) == []
    session.refresh(ticket)
    assert ticket.attachment_count == 0 and ticket.status == "submitted"
    assert open311_media_url(client, own_key, ticket) == url(server, path)


def test_host_not_allowed_is_never_contacted(client, session, own_key, server, fetching):
    ticket = submit(client, session, own_key, url(server, "/photo.png", host="localhost"))
    outcome = media.fetch_media(session, ticket.id)
    assert outcome.state == "failed" and "localhost 不在允许" in outcome.reason
    assert server.hits == [] and attachments_of(session, ticket) == []


def test_private_addresses_are_refused_unless_allowed(client, session, own_key, server, fetching, monkeypatch):
    monkeypatch.setenv("QIFU_OPEN311_MEDIA_FETCH_ALLOW_PRIVATE", "false")
    monkeypatch.setenv("QIFU_OPEN311_MEDIA_FETCH_HOSTS", '["127.0.0.1", "localhost"]')
    get_settings.cache_clear()
    for host in ("127.0.0.1", "localhost"):  # an address, and a name that resolves to loopback
        ticket = submit(client, session, own_key, url(server, "/photo.png", host=host))
        outcome = media.fetch_media(session, ticket.id)
        assert outcome.state == "failed" and "refused address" in outcome.reason, outcome
    assert server.hits == []


def test_fetching_off_by_default_keeps_the_link(client, session, own_key, server, caplog):
    assert get_settings().open311_media_fetch_hosts == []
    with caplog.at_level(logging.INFO, logger="qifu.open311"):
        ticket = submit(client, session, own_key, url(server, "/photo.png"))
    assert jobs_of(session, ticket) == []  # no job at all
    assert any(r.name == "qifu.open311" and getattr(r, "ticket", None) == ticket.number and "off" in r.getMessage()
               for r in caplog.records)
    assert media.fetch_media(session, ticket.id).state == "off"
    assert server.hits == [] and attachments_of(session, ticket) == []
    assert open311_media_url(client, own_key, ticket) == url(server, "/photo.png")


def test_a_request_without_media_url_queues_nothing(client, session, own_key, fetching):
    resp = client.post(f"{BASE}/requests.json", data={"api_key": own_key.raw, "service_code": "problem.labour",
                                                      "description": "无照片", "lat": "30.75", "long": "120.93"})
    ticket = session.exec(select(Ticket).where(Ticket.number == resp.json()[0]["service_request_id"])).one()
    assert jobs_of(session, ticket) == [] and media.fetch_media(session, ticket.id).state == "none"


@pytest.mark.parametrize(("raw", "says"), [
    ("ftp://127.0.0.1/a.png", "http/https"),
    ("file:///etc/passwd", "http/https"),
    ("http://user:pw@127.0.0.1/a.png", "用户名"),
    ("http://127.0.0.2/a.png", "不在允许"),
    ("http://[::1]/a.png", "不在允许"),
])
def test_check_url_refuses(fetching, raw, says):
    with pytest.raises(media.MediaRefused) as exc:
        media.check_url(raw)
    assert says in exc.value.reason


def test_check_url_allows_host_or_host_and_port(monkeypatch):
    monkeypatch.setenv("QIFU_OPEN311_MEDIA_FETCH_HOSTS", '["img.example.cn", "files.example.cn:8443"]')
    get_settings.cache_clear()
    try:
        assert media.check_url("https://IMG.example.cn./a.png").host.rstrip(".") == "img.example.cn"
        assert media.check_url("https://files.example.cn:8443/a.pdf").port == 8443
        with pytest.raises(media.MediaRefused):
            media.check_url("https://files.example.cn/a.pdf")  # another port
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


@pytest.mark.parametrize("address", ["10.0.0.1", "192.168.1.1", "169.254.169.254", "127.0.0.1", "::1",
                                     "::ffff:127.0.0.1", "fd00::1", "0.0.0.0", "224.0.0.1"])
def test_non_public_addresses(address):
    assert not media._address_allowed(address, allow_private=False)


def test_public_addresses():
    assert media._address_allowed("8.8.8.8", allow_private=False)
    assert media._address_allowed("10.0.0.1", allow_private=True)
    assert not media._address_allowed("0.0.0.0", allow_private=True)

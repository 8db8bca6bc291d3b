"""Open311 ``media_url`` as an attachment (issue 12, docs/open311.md "media_url and attachments").

A POST with ``media_url`` keeps the URL in the ticket's ``submit`` event (GET returns it, always).
When the office allows fetching (``QIFU_OPEN311_MEDIA_FETCH_HOSTS`` non-empty), the submission
also writes an ``open311.fetch_media`` outbox message in its transaction (:func:`wants_fetch`);
a worker then runs :func:`fetch_media`: it downloads the URL (:func:`download`: httpx, http/https
only, allowed hosts only, public addresses only unless allowed, a timeout, at most
``attachment_max_bytes`` read) and stores the bytes through
:func:`service.attachments.service.store` as an ``attach`` action of the system on the submit
event: the same size and byte-type checks as uploads, counted in the ticket's history.

Nothing here ever fails the ticket: a refused or failed fetch is logged (``qifu.open311.media``,
a warning with the ticket number, the URL's host and the reason) and the URL stays on the request.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import httpcore
import httpx
import sqlalchemy as sa
from sqlmodel import Session

from service.attachments import service as attachments
from service.auth.actor import Actor
from service.config import Settings, get_settings
from service.errors import FieldError
from service.tickets.models import Ticket, TicketEvent

log = logging.getLogger("qifu.open311.media")

#: The outbox task that fetches a request's ``media_url`` (``workers.tasks.fetch_open311_media``).
TASK = "open311.fetch_media"
#: The submit event's payload member of Open311 (``service.open311.service.PAYLOAD_KEY``).
PAYLOAD_KEY = "open311"
#: Redirects followed, each checked like the URL itself.
MAX_REDIRECTS = 3
_CHUNK = 64 * 1024


class MediaRefused(Exception):  # noqa: N818 - a refusal, recorded, never raised to a client
    """The ``media_url`` was not fetched or not stored; ``reason`` says why (Chinese, for the log
    and the officer)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class MediaOutcome:
    """What :func:`fetch_media` did: ``state`` is ``stored`` (``attachment_id`` set), ``off``
    (fetching not configured), ``none`` (no ``media_url``; or no such ticket) or ``failed``
    (``reason`` set)."""

    state: str
    attachment_id: int | None = None
    reason: str | None = None


def fetch_enabled(settings: Settings | None = None) -> bool:
    """True when the office allows fetching ``media_url`` (some host is allowed)."""
    return bool((settings or get_settings()).open311_media_fetch_hosts)


def wants_fetch(payload: dict[str, Any], settings: Settings | None = None) -> bool:
    """Whether a submission with the submit-event ``payload`` needs an ``open311.fetch_media`` job:
    it has a ``media_url`` and fetching is on."""
    return bool((payload.get(PAYLOAD_KEY) or {}).get("media_url")) and fetch_enabled(settings)


def _host_allowed(url: httpx.URL, settings: Settings) -> bool:
    host = (url.host or "").lower().rstrip(".")
    port = url.port or (443 if url.scheme == "https" else 80)
    allowed = {h.strip().lower().rstrip(".") for h in settings.open311_media_fetch_hosts}
    return host in allowed or f"{host}:{port}" in allowed


def check_url(raw: str, settings: Settings | None = None) -> httpx.URL:
    """The URL to fetch, if the configuration allows it: ``http``/``https``, no user information,
    a host in ``open311_media_fetch_hosts`` (``host`` or ``host:port``).

    Raises:
        MediaRefused: fetching off, another scheme, user information, a host not allowed.
    """
    settings = settings or get_settings()
    if not fetch_enabled(settings):
        raise MediaRefused("未配置允许抓取的主机（QIFU_OPEN311_MEDIA_FETCH_HOSTS），media_url 仅作为链接保留")
    try:
        url = httpx.URL(raw)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise MediaRefused("media_url 不是有效的网址") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise MediaRefused("只抓取 http/https 网址")
    if url.userinfo:
        raise MediaRefused("网址不能包含用户名或密码")
    if not _host_allowed(url, settings):
        raise MediaRefused(f"主机 {url.host} 不在允许抓取的列表中")
    return url


def _address_allowed(address: str, allow_private: bool) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified or ip.is_multicast:
        return False
    return allow_private or ip.is_global


class _CheckedBackend(httpcore.SyncBackend):
    """httpcore's socket backend that resolves the host itself and connects only to an address
    it checked (public, unless ``allow_private``): the address checked is the address used, so a
    name that resolves differently on a second lookup (DNS rebinding) cannot slip through. TLS
    still verifies the certificate against the host name (httpcore passes it to ``start_tls``)."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        refused = [a for a in addresses if not _address_allowed(a, self.allow_private)]
        if refused or not addresses:
            raise httpcore.ConnectError(f"refused address {', '.join(refused) or '(none)'} of {host}")
        return super().connect_tcp(addresses[0], port, timeout=timeout, local_address=local_address,
                                   socket_options=socket_options)


def _client(settings: Settings) -> httpx.Client:
    transport = httpx.HTTPTransport(retries=0)
    # the same pool httpx builds, with the checking backend (httpx has no parameter for it)
    transport._pool = httpcore.ConnectionPool(  # noqa: SLF001
        ssl_context=httpx.create_ssl_context(), max_connections=1,
        network_backend=_CheckedBackend(settings.open311_media_fetch_allow_private))
    return httpx.Client(transport=transport, follow_redirects=False, trust_env=False,
                        timeout=httpx.Timeout(settings.open311_media_fetch_timeout_seconds),
                        headers={"User-Agent": "Qifu-Open311-media/1", "Accept": "*/*"})


def download(raw_url: str, settings: Settings | None = None) -> tuple[bytes, str | None, str]:
    """Fetch ``raw_url`` (see :func:`check_url`); returns ``(body, declared content type, file name
    from the last URL path segment)``. The body is read up to ``attachment_max_bytes + 1`` bytes
    (the attachment check refuses a longer one as too large; nothing more is read). Redirects are
    followed up to :data:`MAX_REDIRECTS`, each target checked again. The whole fetch takes at most
    ``open311_media_fetch_timeout_seconds`` (seconds).

    Raises:
        MediaRefused: not allowed (:func:`check_url`, or the host's address is private/loopback),
            an HTTP status other than 200, a timeout, a connection error, too many redirects.
    """
    settings = settings or get_settings()
    url = check_url(raw_url, settings)
    limit = settings.attachment_max_bytes + 1
    deadline = time.monotonic() + settings.open311_media_fetch_timeout_seconds
    try:
        with _client(settings) as client:
            for _hop in range(MAX_REDIRECTS + 1):
                with client.stream("GET", url) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = check_url(str(url.join(response.headers["location"])), settings)
                        continue
                    if response.status_code != 200:
                        raise MediaRefused(f"服务器答复 HTTP {response.status_code}")
                    body = bytearray()
                    for chunk in response.iter_bytes(_CHUNK):
                        body += chunk
                        if len(body) >= limit:
                            del body[limit:]
                            break
                        if time.monotonic() > deadline:
                            raise MediaRefused(f"抓取超过 {settings.open311_media_fetch_timeout_seconds:g} 秒")
                    name = unquote(url.path.rsplit("/", 1)[-1])
                    return bytes(body), response.headers.get("content-type"), name
            raise MediaRefused(f"重定向超过 {MAX_REDIRECTS} 次")
    except httpx.TimeoutException:
        raise MediaRefused(f"抓取超过 {settings.open311_media_fetch_timeout_seconds:g} 秒") from None
    except httpx.HTTPError as exc:
        raise MediaRefused(f"无法连接：{exc}"[:300]) from None


def _submit_event(session: Session, ticket_id: int) -> tuple[Ticket, TicketEvent] | None:
    row = session.execute(sa.select(Ticket, TicketEvent).join(TicketEvent, TicketEvent.ticket_id == Ticket.id)
                          .where(Ticket.id == ticket_id, TicketEvent.action == "submit")).first()
    return (row[0], row[1]) if row is not None else None


def fetch_media(session: Session, ticket_id: int, settings: Settings | None = None) -> MediaOutcome:
    """Fetch the ``media_url`` of the Open311 request that made ticket ``ticket_id`` and store it
    as an attachment of its submit event, by the system (:meth:`Actor.system`); flushes, never
    commits (the task's unit of work commits). Idempotent: the same bytes again are the same
    attachment (no second ``attach`` event).

    Never raises for the URL's sake: a refusal or failure is logged as a warning and returned as
    ``failed`` (the ticket and its ``media_url`` stay as they are).
    """
    settings = settings or get_settings()
    found = _submit_event(session, ticket_id)
    url = ((found[1].payload or {}).get(PAYLOAD_KEY) or {}).get("media_url") if found else None
    if found is None or not url:
        return MediaOutcome("none")
    ticket, event = found
    if not fetch_enabled(settings):
        return MediaOutcome("off")
    try:
        data, declared, name = download(url, settings)
        attachment = attachments.store(
            session, ticket=ticket, event_id=event.id, filename=name or None, content_type_hint=declared,
            data=data, actor=Actor.system(), note=f"Open311 media_url：{url}"[:2000], field="media_url")
    except MediaRefused as exc:
        reason = exc.reason
    except FieldError as exc:  # too large (413), not an accepted type (415), empty, the ticket's limit
        reason = f"{exc.status} {exc.detail}"
    else:
        log.info("open311 media_url stored", extra={"ticket": ticket.number, "attachment_id": attachment.id})
        return MediaOutcome("stored", attachment_id=attachment.id)
    try:
        host = httpx.URL(url).host
    except (httpx.InvalidURL, TypeError, ValueError):
        host = "?"
    log.warning("open311 media_url not stored: %s", reason,
                extra={"ticket": ticket.number, "media_host": host, "reason": reason})
    return MediaOutcome("failed", reason=reason)

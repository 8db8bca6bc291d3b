"""Open311 GeoReport v2 (issue 12, SPEC §7; http://wiki.open311.org/GeoReport_v2): API keys and
the six methods, format-free (the router renders JSON or XML with :mod:`service.open311.render`).

- **Services** are the leaf categories (SPEC §2): ``service_code`` = the category code; each has
  the same service definition (:data:`ATTRIBUTES`: the enterprise's USCC, a contact, the priority).
- **POST requests** go through the one intake (:func:`service.ticketing.service.submit_ticket`,
  or its one-statement form :mod:`service.ticketing.intake_pg`), as the key's service account,
  with the key's channel: SLA, notifications and statistics treat them like every submission.
  Idempotent: the ``Idempotency-Key`` is derived from the key and the canonical body
  (:func:`request_digest`), so the same key and body twice make one ticket.
- **GET requests** (and one request, and tokens) need an API key as well (a deviation from the
  specification, where they are public: enterprise requests are not, SPEC §1) and show only the
  requests the key may see (:func:`key_scope`); no contact data is ever returned.
- Errors are :class:`Open311Error` (the specification's error list: ``code`` and ``description``).

Keys are stored as SHA-256 of the key (they are 256-bit random strings: a fast hash is enough,
no salt or slow hash needed, docs/open311.md) and cached per process for :data:`KEY_TTL_SECONDS`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import anyio
import sqlalchemy as sa
from pydantic import ValidationError
from sqlmodel import Session, select

from service import clock, jobs
from service.auth.actor import Actor
from service.auth.throttle import Counter, Limit, UserRequestLimit
from service.categories.models import Category
from service.common.enums import STATUS_LABELS, Channel, Priority, Role, TicketStatus
from service.common.schemas import MAX_DATE, MIN_DATE
from service.config import get_settings
from service.db import commit_in_thread, database_key
from service.departments.models import Department
from service.enterprises.models import Enterprise
from service.enterprises.uscc import InvalidUSCC, normalize_uscc
from service.errors import AppError, FieldError, NotFound, TooManyRequests
from service.open311 import schemas
from service.open311.media import PAYLOAD_KEY
from service.open311.media import TASK as FETCH_MEDIA_TASK
from service.open311.media import wants_fetch as media_wants_fetch
from service.open311.models import Open311Key
from service.sla.deadlines import running_deadline
from service.ticketing import intake_pg
from service.ticketing import service as ticket_service
from service.tickets.models import IdempotencyKey, Ticket, TicketEvent
from service.tickets.schemas import TicketCreate
from service.tickets.visibility import ticket_visibility
from service.users.models import User

log = logging.getLogger("qifu.open311")

SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
#: When this implementation of the endpoint last changed (discovery ``changeset``).
CHANGESET = "2026-12-04T00:00:00+08:00"
#: Every key starts with this (so that a leaked one is recognisable, e.g. by secret scanners).
KEY_PREFIX = "q311_"
#: Seconds a process reuses what it read about a key; a revocation in another process takes
#: effect within this time (at once in the process that revoked it).
KEY_TTL_SECONDS = 5.0
#: Longest ``description`` (GeoReport v2: "limited to 4,000 characters").
MAX_DESCRIPTION = 4000
#: Most requests a GET of requests returns, and its default and longest date range (GeoReport v2).
MAX_REQUESTS = 1000
DEFAULT_RANGE_DAYS = 90
MAX_IDS = 100

#: Statuses shown as ``closed`` (a merged ticket is a rejected duplicate: closed too).
CLOSED = frozenset({TicketStatus.closed.value, TicketStatus.rejected.value})


class Open311Error(AppError):
    """An error of the GeoReport v2 error list: ``status`` is the HTTP status and the error's
    ``code``; ``description`` says what is wrong (English first, as the specification's
    examples, then Chinese for people)."""

    slug = "open311"

    def __init__(self, status: int, description: str, *, retry_after: int | None = None) -> None:
        super().__init__(description, status=status)
        self.description = description
        self.headers = {"Retry-After": str(retry_after)} if retry_after else None


# --------------------------------------------------------------------------- API keys

@dataclass(frozen=True)
class KeyInfo:
    """What a request needs to know about a valid (not revoked) key."""

    id: int
    system_name: str
    channel: str
    enterprise_id: int | None
    user_id: int
    username: str
    enterprise_uscc: str | None = None
    enterprise_address: str | None = None

    @property
    def actor(self) -> Actor:
        """The key's service account as an actor: an enterprise user of its enterprise, or (a key
        for any enterprise) an administrator submitting on behalf of enterprises (SPEC §1)."""
        if self.enterprise_id is not None:
            return Actor(user_id=self.user_id, role=Role.enterprise.value, enterprise_id=self.enterprise_id,
                         username=self.username)
        return Actor(user_id=self.user_id, role=Role.admin.value, username=self.username)


def hash_key(raw: str) -> str:
    """SHA-256 (hex) of an API key, as stored in ``open311_api_key.key_hash``."""
    return hashlib.sha256(raw.encode()).hexdigest()


def create_key(session: Session, actor: Actor, data: schemas.KeyCreate) -> tuple[Open311Key, str]:
    """Make an API key and its service account (a ``user_account`` that cannot log in: inactive,
    no usable password). Returns ``(row, key)``; the key is not stored and cannot be shown again.

    Raises:
        FieldError (422): unknown ``enterprise_id``; a key bound to one enterprise with a channel
            that is not a self-service one (``open311``, ``web``, ``app``, ``email``).
    """
    from service.ticketing.intake import SELF_SERVICE_CHANNELS

    if data.channel == Channel.import_:
        raise FieldError("channel", "import 渠道仅供数据导入使用")
    if data.enterprise_id is not None:
        if session.get(Enterprise, data.enterprise_id) is None:
            raise FieldError("enterprise_id", f"企业 {data.enterprise_id} 不存在")
        if data.channel.value not in SELF_SERVICE_CHANNELS:
            raise FieldError("channel", f"绑定企业的密钥只能使用 {', '.join(sorted(SELF_SERVICE_CHANNELS))}")
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    prefix = raw[:12]
    user = User(username=f"open311:{prefix}", full_name=data.system_name[:100],
                password_hash="!open311-service-account", is_active=False,
                role=Role.enterprise.value if data.enterprise_id is not None else Role.admin.value,
                enterprise_id=data.enterprise_id)
    session.add(user)
    session.flush()
    row = Open311Key(system_name=data.system_name, channel=data.channel.value, key_prefix=prefix,
                     key_hash=hash_key(raw), enterprise_id=data.enterprise_id, user_id=user.id,
                     created_by_id=actor.user_id)
    session.add(row)
    session.flush()
    return row, raw


def list_keys(session: Session) -> list[Open311Key]:
    """Every key, newest first (revoked ones included)."""
    return list(session.exec(select(Open311Key).order_by(Open311Key.id.desc())).all())


def revoke_key(session: Session, key_id: int) -> Open311Key:
    """Revoke the key ``key_id`` (idempotent: a revoked key keeps its first ``revoked_at``).

    Raises:
        NotFound (404): no such key.
    """
    row = session.get(Open311Key, key_id)
    if row is None:
        raise NotFound(f"密钥 {key_id} 不存在")
    if row.revoked_at is None:
        row.revoked_at = clock.now()
        session.add(row)
        session.flush()
    clear_key_cache()
    return row


#: (database, key hash) -> (expires, the key or None when unknown/revoked)
_keys: dict[tuple[str, str], tuple[float, KeyInfo | None]] = {}
_KEYS_MAX = 10_000


def clear_key_cache() -> None:
    """Forget what this process read about keys (after a revocation; between tests), and the
    per-process request counts of keys."""
    _keys.clear()
    _local_limits.clear()


def _load_key(session: Session, digest: str) -> KeyInfo | None:
    row = session.execute(
        sa.select(Open311Key.id, Open311Key.system_name, Open311Key.channel, Open311Key.enterprise_id,
                  Open311Key.user_id, User.username, Enterprise.uscc, Enterprise.address)
        .join(User, User.id == Open311Key.user_id)
        .outerjoin(Enterprise, Enterprise.id == Open311Key.enterprise_id)
        .where(Open311Key.key_hash == digest, Open311Key.revoked_at.is_(None))).first()
    if row is None:
        return None
    return KeyInfo(id=row[0], system_name=row[1], channel=row[2], enterprise_id=row[3], user_id=row[4],
                   username=row[5], enterprise_uscc=row[6], enterprise_address=row[7])


async def authenticate(session: Session, raw: str | None, method: str) -> KeyInfo:
    """The valid key ``raw``, counted against its rate limit.

    ``method`` names the GeoReport method in the error (``create_request``, ...).

    Raises:
        Open311Error 403: no key, or not a valid one (unknown or revoked).
        Open311Error 429: the key's requests of the last minute are used up
            (``open311_requests_per_key_per_minute``; ``Retry-After`` in seconds).
    """
    if not raw:
        raise Open311Error(403, f"api_key was not provided -- can't proceed with {method}（需要 api_key）")
    if len(raw) > 100 or not raw.isascii() or not raw.startswith(KEY_PREFIX):
        raise Open311Error(403, f"Invalid api_key received -- can't proceed with {method}（api_key 无效）")
    cache_key = (database_key(session), hash_key(raw))
    cached = _keys.get(cache_key)
    if cached is None or time.monotonic() >= cached[0]:
        info = await anyio.to_thread.run_sync(_load_key, session, cache_key[1])
        if len(_keys) >= _KEYS_MAX:
            _keys.clear()
        _keys[cache_key] = (time.monotonic() + KEY_TTL_SECONDS, info)
    else:
        info = cached[1]
    if info is None:
        raise Open311Error(403, f"Invalid api_key received -- can't proceed with {method}（api_key 无效或已吊销）")
    _throttle(info)
    return info


@lru_cache
def key_counter() -> Counter | None:
    """The counter of key requests shared by every API process: ``limits``' moving window over the
    Redis of ``rate_limit_url`` (this process's memory while Redis does not answer,
    :class:`~service.auth.throttle.Counter`); ``None`` when no Redis is configured: then each
    process counts in fixed minutes (:class:`~service.auth.throttle.UserRequestLimit`, without
    ``limits``' in-memory storage, whose timer thread costs every request CPU).
    ``cache_clear()`` between tests."""
    url = get_settings().rate_limit_storage_url
    return None if url.startswith("memory") else Counter(url)


#: per-process fixed-window counts of keys when no Redis is configured (per limit value)
_local_limits: dict[int, UserRequestLimit] = {}


def _too_many(per_minute: int, seconds: int) -> Open311Error:
    return Open311Error(429, f"Too many requests for this api_key: at most {per_minute} per minute; "
                             f"retry in {seconds} s（请求过于频繁，请 {seconds} 秒后再试）", retry_after=seconds)


def _throttle(key: KeyInfo) -> None:
    per_minute = get_settings().open311_requests_per_key_per_minute
    if per_minute <= 0:
        return
    counter = key_counter()
    if counter is None:
        local = _local_limits.get(per_minute)
        if local is None:
            _local_limits.clear()
            local = _local_limits[per_minute] = UserRequestLimit(per_minute)
        try:
            local.hit(key.id)
        except TooManyRequests as exc:
            raise _too_many(per_minute, exc.retry_after) from None
        return
    limit = Limit("open311-key", per_minute, 60)
    # counted under the key's random prefix (its service account's name), not its row id: ids
    # repeat between databases that share one Redis (test runs, staging beside production)
    if not counter.hit(limit, key.username):
        raise _too_many(per_minute, counter.retry_after(limit, key.username))


# --------------------------------------------------------------------------- services

@dataclass(frozen=True)
class ServiceInfo:
    """One service (a leaf category)."""

    category_id: int
    code: str
    name: str
    group: str
    service_type: str


#: (database) -> (expires, code -> service)
_catalogues: dict[str, tuple[float, dict[str, ServiceInfo]]] = {}
CATALOGUE_TTL_SECONDS = 10.0


def _read_catalogue(session: Session) -> dict[str, ServiceInfo]:
    rows = session.execute(sa.select(Category.id, Category.code, Category.name, Category.parent_id,
                                     Category.service_type)).all()
    by_id = {r[0]: r for r in rows}
    parents = {r[3] for r in rows if r[3] is not None}
    out = {}
    for r in rows:
        if r[0] in parents or r[3] is None:
            continue  # not a leaf, or a root (a service type)
        root = r
        while root[3] is not None and root[3] in by_id:
            root = by_id[root[3]]
        out[r[1]] = ServiceInfo(category_id=r[0], code=r[1], name=r[2], group=root[2], service_type=r[4])
    return dict(sorted(out.items()))


def catalogue(session: Session) -> dict[str, ServiceInfo]:
    """The services (leaf categories) by code, as read at most :data:`CATALOGUE_TTL_SECONDS` ago."""
    key = database_key(session)
    cached = _catalogues.get(key)
    if cached is None or time.monotonic() >= cached[0]:
        cached = _catalogues[key] = (time.monotonic() + CATALOGUE_TTL_SECONDS, _read_catalogue(session))
    return cached[1]


def catalogue_is_fresh(session: Session) -> bool:
    """True when :func:`catalogue` answers without reading the database."""
    cached = _catalogues.get(database_key(session))
    return cached is not None and time.monotonic() < cached[0]


def clear_catalogue() -> None:
    """Forget the cached services (between tests, after a category change)."""
    _catalogues.clear()


def check_jurisdiction(jurisdiction_id: str | None) -> None:
    """``jurisdiction_id`` is optional (one jurisdiction per server); when given it must be ours.

    Raises:
        Open311Error 404: another jurisdiction.
    """
    ours = get_settings().open311_jurisdiction_id
    if jurisdiction_id is not None and jurisdiction_id != ours:
        raise Open311Error(404, f"jurisdiction_id provided was not found: {jurisdiction_id[:64]!r} "
                                f"(this server serves {ours!r})（jurisdiction_id 不存在）")


def discovery(base_url: str) -> dict[str, Any]:
    """The service discovery document (GeoReport v2 "Service Discovery"); ``base_url`` is the
    endpoint's URL (``.../open311/v2``)."""
    return {
        "changeset": CHANGESET,
        "contact": "企服平台管理员（Qifu office administrator）: see docs/open311.md",
        "key_service": "API keys are issued by the office administrator (qifu open311 key create)"
                       "（API 密钥由管理员签发）",
        "endpoints": [{"specification": SPECIFICATION, "url": base_url, "changeset": CHANGESET,
                       "type": "production", "formats": ["text/xml", "application/json"]}],
    }


def services(session: Session) -> list[dict[str, Any]]:
    """GET Service List: every leaf category, in code order."""
    return [{"service_code": s.code, "service_name": s.name,
             "description": f"{s.group} / {s.name}", "metadata": True, "type": "realtime",
             "keywords": f"{s.service_type}, {s.group}", "group": s.group}
            for s in catalogue(session).values()]


#: The service definition shared by every service (GeoReport v2 "GET Service Definition").
ATTRIBUTES: tuple[dict[str, Any], ...] = (
    {"variable": True, "code": "uscc", "datatype": "string", "required": False,
     "datatype_description": "统一社会信用代码（18位，GB 32100-2015）; required when the api_key is not bound "
                             "to one enterprise",
     "order": 1, "description": "The enterprise's unified social credit code（企业统一社会信用代码）"},
    {"variable": True, "code": "contact_name", "datatype": "string", "required": False,
     "datatype_description": "up to 50 characters", "order": 2, "description": "Contact person（联系人）"},
    {"variable": True, "code": "contact_phone", "datatype": "string", "required": False,
     "datatype_description": "up to 32 characters", "order": 3, "description": "Contact phone（联系电话）"},
    {"variable": True, "code": "priority", "datatype": "singlevaluelist", "required": False,
     "datatype_description": None, "order": 4, "description": "Priority（紧急程度）",
     "values": [{"key": "normal", "name": "一般"}, {"key": "urgent", "name": "紧急"}]},
)
_ATTRIBUTE_CODES = frozenset(a["code"] for a in ATTRIBUTES)


def service_definition(session: Session, service_code: str) -> dict[str, Any]:
    """GET Service Definition of ``service_code``.

    Raises:
        Open311Error 404: no such service.
    """
    service = _service(session, service_code)
    return {"service_code": service.code, "attributes": [dict(a) for a in ATTRIBUTES]}


def _service(session: Session, code: str) -> ServiceInfo:
    service = catalogue(session).get(code)
    if service is None:
        raise Open311Error(404, f"service_code provided was not found: {code[:64]!r}（服务代码不存在）")
    return service


# --------------------------------------------------------------------------- POST requests

_ATTRIBUTE_PARAM = re.compile(r"attribute\[([^\]]{1,64})\](\[\])?")
#: longest value of each parameter (characters); attributes are checked on their own
_LIMITS = {"jurisdiction_id": 64, "service_code": 64, "lat": 32, "long": 32, "address_string": 200,
           "address_id": 64, "email": 254, "device_id": 64, "account_id": 64, "first_name": 50,
           "last_name": 50, "phone": 32, "description": MAX_DESCRIPTION, "media_url": 2000, "api_key": 100}


def _bad(description: str) -> Open311Error:
    return Open311Error(400, description)


def parse_params(items: Iterable[tuple[str, Any]]) -> tuple[dict[str, str], dict[str, str]]:
    """Split the POST parameters into ``(params, attributes)`` (``attribute[code]=value``); the
    first value of a repeated parameter counts.

    Raises:
        Open311Error 400: a value that is not text (an uploaded file: media goes by ``media_url``),
            contains NUL, or is longer than the parameter allows; an unknown parameter or attribute.
    """
    params: dict[str, str] = {}
    attributes: dict[str, str] = {}
    for name, value in items:
        if not isinstance(value, str):
            raise _bad(f"{name[:64]}: files are not accepted; give media_url（不接受上传文件，请提供 media_url）")
        if "\x00" in value or "\x00" in name:
            raise _bad(f"{name[:64]!r}: NUL characters are not allowed（含有 NUL 字符）")
        match = _ATTRIBUTE_PARAM.fullmatch(name)
        if match:
            code = match.group(1)
            if code not in _ATTRIBUTE_CODES:
                raise _bad(f"attribute[{code[:64]}] is not an attribute of this service（未知属性）")
            if len(value) > 64:
                raise _bad(f"attribute[{code}] is longer than 64 characters（过长）")
            attributes.setdefault(code, value.strip())
            continue
        if name not in _LIMITS:
            raise _bad(f"{name[:64]!r} is not a parameter of POST Service Request（未知参数）")
        if len(value) > _LIMITS[name]:
            raise _bad(f"{name} is longer than {_LIMITS[name]} characters（{name} 过长）")
        params.setdefault(name, value.strip())
    return params, attributes


def request_digest(key: KeyInfo, params: Mapping[str, str], attributes: Mapping[str, str]) -> str:
    """SHA-256 (hex) of the key's id and the canonical body (every parameter but ``api_key``,
    sorted): the same key and body give the same digest, hence the same ``Idempotency-Key``."""
    body = sorted((k, v) for k, v in params.items() if k != "api_key")
    canonical = json.dumps([key.id, body, sorted(attributes.items())], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _coordinate(params: Mapping[str, str], name: str, bound: float) -> float | None:
    raw = params.get(name)
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise _bad(f"{name} is not a number（{name} 应为数字）") from None
    if not math.isfinite(value) or not -bound <= value <= bound:
        raise _bad(f"{name} must lie between -{bound:g} and {bound:g}（{name} 超出范围）")
    return value


def _media_url(raw: str | None) -> str | None:
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in raw):
        raise _bad("media_url must be an http or https URL（media_url 应为 http/https 地址）")
    return raw


@dataclass
class Submission:
    """A POST Service Request, checked: what the intake needs and what the event keeps."""

    service: ServiceInfo
    title: str
    description: str
    priority: Priority
    uscc: str | None
    has_location: bool
    payload: dict[str, Any]
    digest: str
    account_id: str | None


def check_submission(session: Session, key: KeyInfo, params: dict[str, str],
                     attributes: dict[str, str]) -> Submission:
    """Check a POST Service Request (no I/O while the catalogue is fresh).

    Raises:
        Open311Error 400: ``service_code`` missing; a coordinate that is not a number or out of
            range, or one without the other; a bad ``media_url``; a bad USCC or priority; a key
            for any enterprise without ``attribute[uscc]``.
        Open311Error 403: a key bound to an enterprise used for another USCC.
        Open311Error 404: unknown ``jurisdiction_id`` or ``service_code``.
    """
    check_jurisdiction(params.get("jurisdiction_id"))
    code = params.get("service_code")
    if not code:
        raise _bad("service_code was not provided（缺少 service_code）")
    service = _service(session, code)
    lat, long = _coordinate(params, "lat", 90), _coordinate(params, "long", 180)
    if (lat is None) != (long is None):
        raise _bad("lat and long must be given together（lat 与 long 须同时提供）")
    media_url = _media_url(params.get("media_url"))
    uscc = attributes.get("uscc") or None
    if uscc is not None:
        try:
            uscc = normalize_uscc(uscc)
        except InvalidUSCC as exc:
            raise _bad(f"attribute[uscc] is not a valid unified social credit code（{exc}）") from None
    if key.enterprise_id is not None:
        if uscc is not None and uscc != key.enterprise_uscc:
            raise Open311Error(403, "this api_key may submit only for its own enterprise（该密钥只能为本企业提交）")
    elif uscc is None:
        raise _bad("required attribute uscc was missing: this api_key is not bound to one enterprise"
                   "（缺少 attribute[uscc]）")
    try:
        priority = Priority(attributes.get("priority") or Priority.normal.value)
    except ValueError:
        raise _bad("attribute[priority] must be normal or urgent（priority 应为 normal 或 urgent）") from None
    description = params.get("description") or ""
    if not description:
        description = f"{service.name}（Open311）"
    first_line = description.splitlines()[0].strip() if description.strip() else ""
    title = (first_line or service.name)[:60]
    location = {"lat": lat, "long": long, "address_string": params.get("address_string") or None,
                "address_id": params.get("address_id") or None}
    contact = {k: v for k, v in (("first_name", params.get("first_name")), ("last_name", params.get("last_name")),
                                 ("email", params.get("email")), ("phone", params.get("phone")),
                                 ("contact_name", attributes.get("contact_name")),
                                 ("contact_phone", attributes.get("contact_phone"))) if v}
    digest = request_digest(key, params, attributes)
    payload = {k: v for k, v in {
        **location, "media_url": media_url, "device_id": params.get("device_id") or None,
        "account_id": params.get("account_id") or None, "contact": contact or None,
        "api_key_id": key.id, "token": digest}.items() if v is not None}
    has_location = any(v is not None for v in location.values())
    return Submission(service=service, title=title, description=description, priority=priority, uscc=uscc,
                      has_location=has_location, payload={PAYLOAD_KEY: payload}, digest=digest,
                      account_id=params.get("account_id") or None)


def _no_location() -> Open311Error:
    return _bad("lat/long, address_string or address_id was not provided, and the enterprise has no address "
                "on file（缺少位置：lat/long、address_string 或 address_id）")


def _notice(due: datetime | None) -> str:
    if due is None:
        return "已收到您的诉求（request received）"
    local = due.astimezone(clock.office_zone())
    return f"已收到您的诉求，将于 {local:%Y-%m-%d %H:%M} 前受理（request received; to be accepted by {local.isoformat()}）"


async def submit_request(session: Session, key: KeyInfo, params: dict[str, str],
                         attributes: dict[str, str]) -> dict[str, Any]:
    """POST Service Request: submit through the one intake as the key's service account.

    Returns the response item: ``service_request_id`` (the ticket number), ``token`` (the request's
    digest: GET tokens/{token} finds the request again), ``service_notice``, ``account_id``.

    Raises:
        Open311Error: see :func:`check_submission`; 400 also for an unknown USCC (a key for any
            enterprise), no location when the enterprise has no address, or any refusal of the
            intake (named field).
    """
    if not catalogue_is_fresh(session):
        await anyio.to_thread.run_sync(catalogue, session)
    sub = check_submission(session, key, params, attributes)
    actor = key.actor
    idempotency_key = f"open311:{sub.digest}"

    def ticket_data(enterprise_id: int) -> TicketCreate:
        return TicketCreate(title=sub.title, description=sub.description, category_code=sub.service.code,
                            priority=sub.priority, channel=Channel(key.channel), enterprise_id=enterprise_id)

    # a media_url to fetch needs its outbox message in the ticket's transaction: the general path
    fetch_media = media_wants_fetch(sub.payload)
    try:
        if key.enterprise_id is not None:
            if not sub.has_location and not key.enterprise_address:
                raise _no_location()
            data = ticket_data(key.enterprise_id)
            if not fetch_media and intake_pg.applies(session, actor):
                read = await intake_pg.submit(session, actor, data, idempotency_key, sub.payload)
                if read is not None:
                    return _post_answer(read.number, read.accept_by or read.due_at, sub)

        def work() -> tuple[str, datetime | None]:
            if key.enterprise_id is not None:
                enterprise_id = key.enterprise_id
            else:
                row = session.execute(sa.select(Enterprise.id, Enterprise.address)
                                      .where(Enterprise.uscc == sub.uscc)).first()
                if row is None:
                    raise _bad("attribute[uscc]: no enterprise with this unified social credit code is "
                               "registered（该统一社会信用代码的企业未登记）")
                if not sub.has_location and not row[1]:
                    raise _no_location()
                enterprise_id = row[0]
            ticket, created = ticket_service.submit_ticket(session, actor, ticket_data(enterprise_id),
                                                           idempotency_key=idempotency_key,
                                                           event_payload=sub.payload)
            if created and fetch_media:
                jobs.enqueue(session, FETCH_MEDIA_TASK, ticket_id=ticket.id)
            return ticket.number, ticket.accept_by or ticket.due_at

        number, due = await commit_in_thread(session, work)
        return _post_answer(number, due, sub)
    except FieldError as exc:
        raise _bad(f"{exc.detail}") from exc
    except ValidationError as exc:  # the ticket's own bounds (checked above already: a safety net)
        first = exc.errors()[0]
        raise _bad(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from exc
    except Open311Error:
        raise
    except AppError as exc:
        status = 403 if exc.status == 403 else (503 if exc.status == 503 else 400)
        raise Open311Error(status, exc.detail) from exc


def _post_answer(number: str, due: datetime | None, sub: Submission) -> dict[str, Any]:
    if sub.payload[PAYLOAD_KEY].get("media_url") and not media_wants_fetch(sub.payload):
        log.info("open311 media_url kept as a link: fetching is off (QIFU_OPEN311_MEDIA_FETCH_HOSTS)",
                 extra={"ticket": number})
    return {"service_request_id": number, "token": sub.digest, "service_notice": _notice(due),
            "account_id": sub.account_id}


# --------------------------------------------------------------------------- GET requests

def key_scope(session: Session, key: KeyInfo) -> sa.ColumnElement[bool]:
    """The tickets a key may read (SPEC §1 through :func:`service.tickets.visibility.ticket_visibility`
    of its actor): a key bound to an enterprise, that enterprise's tickets (what its users see);
    a key for any enterprise, only the tickets it submitted itself."""
    scope = ticket_visibility(session, key.actor)
    if key.enterprise_id is None:
        scope = sa.and_(scope, Ticket.submitted_by_id == key.user_id)
    return scope


def _parse_datetime(name: str, raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise _bad(f"{name} is not a W3C date-time such as 2026-12-01T00:00:00+08:00（{name} 格式有误）") from None
    if not MIN_DATE <= value.date() <= MAX_DATE:
        raise _bad(f"{name} must lie between {MIN_DATE} and {MAX_DATE}（{name} 超出范围）")
    return clock.as_utc(value)


def _list(raw: str | None, name: str, longest: int) -> list[str]:
    if raw is None:
        return []
    values = [v.strip() for v in raw.split(",") if v.strip()]
    if len(values) > MAX_IDS or any(len(v) > longest or "\x00" in v for v in values):
        raise _bad(f"{name}: at most {MAX_IDS} values of at most {longest} characters（{name} 有误）")
    return values


def list_requests(session: Session, key: KeyInfo, query: Mapping[str, str]) -> list[dict[str, Any]]:
    """GET Service Requests: the key's requests (:func:`key_scope`), newest first, at most
    :data:`MAX_REQUESTS`. ``service_request_id`` (comma list) overrides every other filter;
    else ``service_code`` (comma list), ``status`` (``open``/``closed``, comma list) and
    ``requested_datetime`` within ``start_date .. end_date`` (default: the last 90 days; at most
    90 days apart).

    Raises:
        Open311Error 400: a malformed list, status or date; ``start_date`` after ``end_date``; a
            range longer than 90 days. 404: another jurisdiction.
    """
    check_jurisdiction(query.get("jurisdiction_id"))
    ids = _list(query.get("service_request_id"), "service_request_id", 32)
    stmt = _request_select().where(key_scope(session, key))
    if ids:
        stmt = stmt.where(Ticket.number.in_(ids))
    else:
        codes = _list(query.get("service_code"), "service_code", 64)
        statuses = _list(query.get("status"), "status", 16)
        if any(s not in ("open", "closed") for s in statuses):
            raise _bad("status must be open or closed（status 应为 open 或 closed）")
        start = _parse_datetime("start_date", query["start_date"]) if query.get("start_date") else None
        end = _parse_datetime("end_date", query["end_date"]) if query.get("end_date") else None
        span = timedelta(days=DEFAULT_RANGE_DAYS)
        if start is None and end is None:
            end = clock.now()
        if start is None:
            start = end - span
        if end is None:
            end = start + span
        if start > end:
            raise _bad("start_date is after end_date（start_date 晚于 end_date）")
        if end - start > span:
            raise _bad(f"start_date and end_date may not be more than {DEFAULT_RANGE_DAYS} days apart"
                       f"（查询范围不能超过 {DEFAULT_RANGE_DAYS} 天）")
        stmt = stmt.where(Ticket.submitted_at >= start, Ticket.submitted_at <= end)
        if codes:
            stmt = stmt.where(Category.code.in_(codes))
        if set(statuses) == {"open"}:
            stmt = stmt.where(Ticket.status.not_in(CLOSED))
        elif set(statuses) == {"closed"}:
            stmt = stmt.where(Ticket.status.in_(CLOSED))
    rows = session.execute(stmt.order_by(Ticket.submitted_at.desc(), Ticket.id.desc()).limit(MAX_REQUESTS)).all()
    return [_request_view(row) for row in rows]


def get_request(session: Session, key: KeyInfo, number: str, jurisdiction_id: str | None) -> list[dict[str, Any]]:
    """GET Service Request: ``[the request]``.

    Raises:
        Open311Error 404: unknown, or not the key's (:func:`key_scope`); another jurisdiction.
    """
    check_jurisdiction(jurisdiction_id)
    row = None
    if len(number) <= 32 and "\x00" not in number:
        row = session.execute(_request_select().where(Ticket.number == number, key_scope(session, key))).first()
    if row is None:
        raise Open311Error(404, f"service_request_id provided was not found: {number[:32]!r}（诉求不存在）")
    return [_request_view(row)]


def token_request(session: Session, key: KeyInfo, token_id: str, jurisdiction_id: str | None) -> list[dict[str, Any]]:
    """GET request_id from a token: the request a POST of this key answered with ``token``.

    Raises:
        Open311Error 404: unknown token (or another key's); another jurisdiction.
    """
    check_jurisdiction(jurisdiction_id)
    number = None
    if re.fullmatch(r"[0-9a-f]{64}", token_id):
        number = session.execute(
            sa.select(Ticket.number).join(IdempotencyKey, IdempotencyKey.ticket_id == Ticket.id)
            .where(IdempotencyKey.user_id == key.user_id, IdempotencyKey.key == f"open311:{token_id}")).scalar()
    if number is None:
        raise Open311Error(404, f"token provided was not found: {token_id[:64]!r}（token 不存在）")
    return [{"service_request_id": number, "token": token_id}]


def _request_select() -> sa.Select:
    submit = sa.orm.aliased(TicketEvent)
    survivor = sa.orm.aliased(Ticket)
    return (sa.select(Ticket, Category.code, Category.name, Department.name, Enterprise.address, submit.payload,
                      survivor.number, Enterprise.latitude, Enterprise.longitude)
            .join(Category, Category.id == Ticket.category_id)
            .join(Enterprise, Enterprise.id == Ticket.enterprise_id)
            .outerjoin(Department, Department.id == Ticket.lead_department_id)
            .outerjoin(submit, sa.and_(submit.ticket_id == Ticket.id, submit.action == "submit"))
            .outerjoin(survivor, survivor.id == Ticket.duplicate_of_id))


def _w3c(value: datetime | None) -> str | None:
    return value.astimezone(clock.office_zone()).isoformat(timespec="seconds") if value is not None else None


def _request_view(row: Any) -> dict[str, Any]:
    """One request as GeoReport v2 shows it. No contact data (names, phones, e-mail, USCC) and
    no internal notes: what the enterprise itself sees of its ticket, less the people.

    Location: the request's own (``address_string``, ``lat``/``long``); where it has none, the
    enterprise's on file: its ``address``, and its coordinates unless the request named an
    address of its own (a point elsewhere would contradict it)."""
    ticket, code, name, department, enterprise_address, payload, survivor, ent_lat, ent_long = row
    extra = (payload or {}).get(PAYLOAD_KEY) or {}
    lat, long = extra.get("lat"), extra.get("long")
    if lat is None and not extra.get("address_string") and not extra.get("address_id"):
        lat, long = ent_lat, ent_long
    closed = ticket.status in CLOSED
    notes = STATUS_LABELS.get(ticket.status, ticket.status)
    if survivor is not None:
        notes += f"：已合并至 {survivor}"
    elif ticket.status == TicketStatus.rejected and ticket.reject_reason:
        notes += f"：{ticket.reject_reason}"
    elif ticket.reply_text and ticket.status in (TicketStatus.replied, TicketStatus.closed):
        notes += f"：{ticket.reply_text}"
    _step, due = running_deadline(ticket)
    return {
        "service_request_id": ticket.number,
        "status": "closed" if closed else "open",
        "status_notes": notes[:4000],
        "service_name": name,
        "service_code": code,
        "description": ticket.description,
        "agency_responsible": department,
        "service_notice": None if closed else _notice(due),
        "requested_datetime": _w3c(ticket.submitted_at),
        "updated_datetime": _w3c(ticket.updated_at),
        "expected_datetime": None if closed else _w3c(due),
        "address": extra.get("address_string") or enterprise_address,
        "address_id": extra.get("address_id"),
        "zipcode": None,
        "lat": lat,
        "long": long,
        "media_url": extra.get("media_url"),
    }

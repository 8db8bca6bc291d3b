"""Open311 GeoReport v2 at /open311/v2 (issue 12): every method in JSON and XML, the error lists,
idempotency, throttling, revoked keys, scope, and bad input (never a 500, never a write)."""

from __future__ import annotations

import base64
import os

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import settings as settings_
from hypothesis import strategies as st
from sqlmodel import select

from service.config import get_settings
from service.notifications.models import Notification
from service.tickets.models import Ticket, TicketEvent
from tests import factories as f
from tests.open311.conftest import BASE, make_key
from tests.open311.spec import REQUEST_FIELDS, check_xml

FORMATS = ("json", "xml")


def post(client, fmt, key, **params):
    return client.post(f"{BASE}/requests.{fmt}", data={"api_key": key.raw, **params})


def form(**extra):
    return {"service_code": "problem.labour", "description": "急需焊工50名，希望对接招聘渠道", "lat": "30.75",
            "long": "120.93", **extra}


def tickets(session) -> int:
    return session.execute(sa.select(sa.func.count()).select_from(Ticket)).scalar()


def error_of(resp, fmt, status):
    """The one error of a GeoReport v2 error list answer, checked in its format."""
    assert resp.status_code == status, resp.text
    if fmt == "json":
        assert resp.headers["content-type"] == "application/json; charset=utf-8"
        (err,) = resp.json()
        assert set(err) == {"code", "description"} and err["code"] == status
        return err["description"]
    assert resp.headers["content-type"] == "text/xml; charset=utf-8"
    root = check_xml(resp.content, "errors")
    (err,) = root.findall("error")
    assert err.findtext("code") == str(status)
    return err.findtext("description")


# --------------------------------------------------------------------------- every method

@pytest.mark.parametrize("fmt", FORMATS)
def test_discovery_services_and_definitions(client, fmt):
    resp = client.get(f"{BASE}/discovery.{fmt}")
    assert resp.status_code == 200
    if fmt == "json":
        doc = resp.json()
        (endpoint,) = doc["endpoints"]
        assert endpoint["url"].endswith("/open311/v2") and set(endpoint["formats"]) == {"text/xml", "application/json"}
        assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
        services = client.get(f"{BASE}/services.json").json()
        codes = {s["service_code"] for s in services}
        assert "problem.labour" in codes and "problem" not in codes  # leaves only, not the service types
        labour = next(s for s in services if s["service_code"] == "problem.labour")
        assert labour == {"service_code": "problem.labour", "service_name": "用工与招聘", "metadata": True,
                          "type": "realtime", "group": "问题交办", "description": "问题交办 / 用工与招聘",
                          "keywords": "problem, 问题交办"}
        definition = client.get(f"{BASE}/services/problem.labour.json").json()
        assert definition["service_code"] == "problem.labour"
        assert [a["code"] for a in definition["attributes"]] == ["uscc", "contact_name", "contact_phone", "priority"]
        assert definition["attributes"][3]["values"] == [{"key": "normal", "name": "一般"},
                                                          {"key": "urgent", "name": "紧急"}]
    else:
        root = check_xml(resp.content, "discovery")
        assert {e.text for e in root.iter("format")} == {"text/xml", "application/json"}
        services = check_xml(client.get(f"{BASE}/services.xml").content, "services")
        assert "problem.labour" in {s.findtext("service_code") for s in services}
        assert services.find("service").findtext("metadata") == "true"
        definition = check_xml(client.get(f"{BASE}/services/problem.labour.xml").content, "service_definition")
        assert [a.findtext("code") for a in definition.iter("attribute")] == ["uscc", "contact_name",
                                                                               "contact_phone", "priority"]
    for path in ("services", "services/problem.labour"):  # our jurisdiction is accepted, another is a 404
        assert client.get(f"{BASE}/{path}.{fmt}", params={"jurisdiction_id": "qifu"}).status_code == 200
        assert "jurisdiction_id" in error_of(client.get(f"{BASE}/{path}.{fmt}", params={"jurisdiction_id": "sf"}),
                                             fmt, 404)
    assert "service_code" in error_of(client.get(f"{BASE}/services/nope.{fmt}"), fmt, 404)
    assert "service_code" in error_of(client.get(f"{BASE}/services/problem.{fmt}"), fmt, 404)  # not a leaf


@pytest.mark.parametrize("fmt", FORMATS)
def test_post_then_read_back_in_every_way(client, session, own_key, fmt):
    before = tickets(session)
    resp = post(client, fmt, own_key, **form(media_url="https://img.example.cn/a.jpg", account_id="u-7",
                                            email="li@example.cn", first_name="李", phone="13800000000",
                                            **{"attribute[contact_name]": "李四", "attribute[priority]": "urgent"}))
    assert resp.status_code == 201, resp.text
    if fmt == "json":
        (posted,) = resp.json()
        assert set(posted) == {"service_request_id", "token", "service_notice", "account_id"}
    else:
        (item,) = check_xml(resp.content, "service_requests")
        posted = {child.tag: child.text for child in item}
    assert posted["account_id"] == "u-7" and "受理" in posted["service_notice"]
    number, token = posted["service_request_id"], posted["token"]
    assert tickets(session) == before + 1

    # the same intake as the JSON API: channel, submitter, SLA, notification, history
    ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
    assert ticket.channel == "open311" and ticket.priority == "urgent" and ticket.submitted_by_id == own_key.user_id
    assert ticket.enterprise_id == own_key.enterprise_id and ticket.accept_by is not None and ticket.due_at
    assert ticket.title == "急需焊工50名，希望对接招聘渠道"
    (event,) = session.exec(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)).all()
    extra = event.payload["open311"]
    assert event.payload["channel"] == "open311" and extra["media_url"] == "https://img.example.cn/a.jpg"
    assert extra["lat"] == 30.75 and extra["contact"] == {"first_name": "李", "email": "li@example.cn",
                                                          "phone": "13800000000", "contact_name": "李四"}
    assert session.exec(select(Notification).where(Notification.ticket_id == ticket.id)).all()

    key = {"api_key": own_key.raw}
    listed = client.get(f"{BASE}/requests.{fmt}", params=key)
    one = client.get(f"{BASE}/requests/{number}.{fmt}", params=key)
    by_token = client.get(f"{BASE}/tokens/{token}.{fmt}", params=key)
    assert listed.status_code == one.status_code == by_token.status_code == 200
    if fmt == "json":
        rows = {r["service_request_id"]: r for r in listed.json()}
        (row,) = one.json()
        assert rows[number] == row and set(row) == REQUEST_FIELDS
        assert by_token.json() == [{"service_request_id": number, "token": token}]
    else:
        rows = {r.findtext("service_request_id"): r for r in check_xml(listed.content, "service_requests")}
        assert number in rows
        (item,) = check_xml(one.content, "service_requests")
        row = {child.tag: child.text for child in item}
        assert set(row) == REQUEST_FIELDS
        (tok,) = check_xml(by_token.content, "service_requests")
        assert tok.findtext("service_request_id") == number and tok.findtext("token") == token
    assert row["status"] == "open" and row["service_code"] == "problem.labour" and row["service_name"] == "用工与招聘"
    assert row["media_url"] == "https://img.example.cn/a.jpg" and str(row["lat"]) == "30.75"
    assert row["requested_datetime"].endswith("+08:00") and row["expected_datetime"].endswith("+08:00")
    # no contact data in what Open311 returns
    text = listed.text + one.text
    assert "13800000000" not in text and "li@example.cn" not in text and "李四" not in text


def test_status_mapping_department_and_deadline(client, session, own_key):
    dispatched = f.make_ticket(session, "dispatched", lead_department="RSJ")
    rejected = f.make_ticket(session, "rejected")
    closed = f.make_ticket(session, "closed")
    survivor = f.make_ticket(session, "accepted")
    merged = f.make_ticket(session, "submitted")
    f.act(session, merged, "merge", {"into": survivor.number})
    session.commit()
    rows = {r["service_request_id"]: r for r in
            client.get(f"{BASE}/requests.json", params={"api_key": own_key.raw}).json()}
    d = rows[dispatched.number]
    assert d["status"] == "open" and d["agency_responsible"] == "青禾县人力资源和社会保障局" and d["status_notes"] == "已交办"
    assert d["expected_datetime"] is not None and d["address"]  # the enterprise's address on file
    assert rows[rejected.number]["status"] == "closed" and rows[rejected.number]["expected_datetime"] is None
    assert rows[closed.number]["status"] == "closed"
    assert rows[merged.number]["status"] == "closed" and survivor.number in rows[merged.number]["status_notes"]
    only_closed = client.get(f"{BASE}/requests.json", params={"api_key": own_key.raw, "status": "closed"}).json()
    assert {r["status"] for r in only_closed} == {"closed"}
    both = client.get(f"{BASE}/requests.json", params={"api_key": own_key.raw, "status": "open,closed"}).json()
    assert len(both) == len(rows)
    picked = client.get(f"{BASE}/requests.json", params={
        "api_key": own_key.raw, "service_request_id": f"{closed.number},{rejected.number}", "status": "open"}).json()
    assert {r["service_request_id"] for r in picked} == {closed.number, rejected.number}  # ids override filters
    by_code = client.get(f"{BASE}/requests.json", params={"api_key": own_key.raw, "service_code": "consultation.tax"})
    assert dispatched.number not in {r["service_request_id"] for r in by_code.json()}


def test_any_enterprise_key_submits_by_uscc_and_sees_only_its_own(client, session, any_key, own_key):
    ent2 = f.enterprise_of(session, "ent2")
    mine = f.make_ticket(session, "submitted", enterprise="ent2")  # through the JSON API, not the key
    resp = post(client, "json", any_key, **form(**{"attribute[uscc]": ent2.uscc.lower()}))
    assert resp.status_code == 201, resp.text
    number = resp.json()[0]["service_request_id"]
    ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
    assert ticket.enterprise_id == ent2.id and ticket.channel == "open311" and ticket.submitted_by_id == any_key.user_id
    (event,) = session.exec(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)).all()  # the ORM path
    assert event.payload["channel"] == "open311" and event.payload["open311"]["lat"] == 30.75
    assert event.payload["open311"]["api_key_id"] == any_key.id and ticket.accept_by is not None
    listed = {r["service_request_id"] for r in client.get(f"{BASE}/requests.json",
                                                          params={"api_key": any_key.raw}).json()}
    assert listed == {number}  # not the enterprise's other tickets
    assert client.get(f"{BASE}/requests/{mine.number}.json", params={"api_key": any_key.raw}).status_code == 404
    # the key bound to ent1's enterprise sees neither
    assert client.get(f"{BASE}/requests/{number}.json", params={"api_key": own_key.raw}).status_code == 404
    token = resp.json()[0]["token"]
    assert client.get(f"{BASE}/tokens/{token}.json", params={"api_key": own_key.raw}).status_code == 404


def test_api_key_by_http_basic_authentication(client, own_key):
    basic = "Basic " + base64.b64encode(f"{own_key.raw}:".encode()).decode()
    assert client.get(f"{BASE}/requests.json", headers={"Authorization": basic}).status_code == 200
    assert client.get(f"{BASE}/requests.json", headers={"Authorization": "Basic !!"}).status_code == 403


# --------------------------------------------------------------------------- idempotency, throttle, keys

def test_same_key_and_body_make_one_ticket(client, session, own_key, any_key):
    before = tickets(session)
    first = post(client, "json", own_key, **form())
    again = post(client, "json", own_key, **form())
    as_xml = post(client, "xml", own_key, **form())
    assert first.status_code == again.status_code == as_xml.status_code == 201
    number = first.json()[0]["service_request_id"]
    assert again.json()[0]["service_request_id"] == number and f">{number}<" in as_xml.text
    assert tickets(session) == before + 1
    other = post(client, "json", own_key, **form(description="另一件事"))
    assert other.json()[0]["service_request_id"] != number
    ent1 = f.enterprise_of(session, "ent1")
    by_other_key = post(client, "json", any_key, **form(**{"attribute[uscc]": ent1.uscc}))
    assert by_other_key.json()[0]["service_request_id"] not in (number, other.json()[0]["service_request_id"])
    assert tickets(session) == before + 3


REDIS = os.environ.get("QIFU_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.mark.parametrize(("fmt", "storage"), [("json", ""), ("xml", ""), ("json", REDIS), ("xml", REDIS)])
def test_requests_per_key_are_throttled(client, session, own_key, any_key, monkeypatch, fmt, storage):
    """Per process without Redis; with Redis (limits' moving window), shared by every process."""
    from service.open311 import service as open311

    monkeypatch.setenv("QIFU_OPEN311_REQUESTS_PER_KEY_PER_MINUTE", "3")
    monkeypatch.setenv("QIFU_RATE_LIMIT_URL", storage)
    get_settings.cache_clear()
    open311.key_counter.cache_clear()
    assert (open311.key_counter() is None) == (storage == "")
    try:
        key = {"api_key": own_key.raw}
        codes = [client.get(f"{BASE}/requests.{fmt}", params=key).status_code for _ in range(3)]
        refused = post(client, fmt, own_key, **form())
        assert codes == [200, 200, 200]
        assert "3 per minute" in error_of(refused, fmt, 429) and 1 <= int(refused.headers["Retry-After"]) <= 60
        assert client.get(f"{BASE}/requests.{fmt}", params={"api_key": any_key.raw}).status_code == 200  # per key
        assert client.get(f"{BASE}/services.{fmt}").status_code == 200  # the public methods are not counted
    finally:
        monkeypatch.delenv("QIFU_OPEN311_REQUESTS_PER_KEY_PER_MINUTE")
        monkeypatch.delenv("QIFU_RATE_LIMIT_URL")
        get_settings.cache_clear()
        open311.key_counter.cache_clear()


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_invalid_and_revoked_keys(client, session, login, own_key, fmt):
    before = tickets(session)
    assert "api_key was not provided" in error_of(client.post(f"{BASE}/requests.{fmt}", data=form()), fmt, 403)
    assert "Invalid api_key" in error_of(post(client, fmt, type(own_key)(0, "q311_nope", 0, None), **form()), fmt, 403)
    assert "Invalid api_key" in error_of(client.get(f"{BASE}/requests.{fmt}", params={"api_key": "x" * 500}), fmt, 403)
    assert post(client, fmt, own_key, **form()).status_code == 201
    revoked = client.post(f"/api/v1/open311/keys/{own_key.id}/revoke", headers=login("admin"))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert "Invalid api_key" in error_of(post(client, fmt, own_key, **form(description="再报一件")), fmt, 403)
    assert error_of(client.get(f"{BASE}/requests.{fmt}", params={"api_key": own_key.raw}), fmt, 403)
    assert tickets(session) == before + 1


def test_key_administration(client, session, login):
    admin = login("admin")
    ent1 = f.enterprise_of(session, "ent1")
    made = client.post("/api/v1/open311/keys", json={"system_name": "某园区门户", "enterprise_id": ent1.id},
                       headers=admin)
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["api_key"].startswith("q311_") and body["key_prefix"] == body["api_key"][:12]
    listed = client.get("/api/v1/open311/keys", headers=admin)
    assert listed.status_code == 200 and body["api_key"] not in listed.text
    assert any(k["id"] == body["id"] and k["channel"] == "open311" for k in listed.json())
    # stored hashed; the service account cannot log in
    from service.open311.models import Open311Key
    from service.users.models import User

    row = session.get(Open311Key, body["id"])
    assert row.key_hash != body["api_key"] and len(row.key_hash) == 64
    account = session.get(User, row.user_id)
    assert not account.is_active and account.role == "enterprise" and account.enterprise_id == ent1.id
    assert client.post("/api/v1/auth/token", data={"username": account.username,
                                                   "password": "!open311-service-account"}).status_code == 401
    # bad input and other roles
    for bad, field in (({"system_name": ""}, "system_name"), ({"system_name": "x", "enterprise_id": 999_999},
                                                            "enterprise_id"),
                       ({"system_name": "x", "enterprise_id": ent1.id, "channel": "hotline"}, "channel"),
                       ({"system_name": "x", "channel": "import"}, "channel"), ({"system_name": "x", "foo": 1}, "foo"),
                       ({"system_name": "x\x00"}, "system_name")):
        resp = client.post("/api/v1/open311/keys", json=bad, headers=admin)
        assert resp.status_code == 422 and field in resp.text, (bad, resp.text)
    assert client.post("/api/v1/open311/keys/999999/revoke", headers=admin).status_code == 404
    for who in ("ent1", "officer1", "supervisor1"):
        assert client.post("/api/v1/open311/keys", json={"system_name": "x"}, headers=login(who)).status_code == 403
        assert client.get("/api/v1/open311/keys", headers=login(who)).status_code == 403


# --------------------------------------------------------------------------- bad input: 400/404 lists

BAD_POSTS = [
    ({"service_code": ""}, 400, "service_code was not provided"),
    ({"service_code": None}, 400, "service_code was not provided"),
    ({"service_code": "nope"}, 404, "service_code provided was not found"),
    ({"jurisdiction_id": "other"}, 404, "jurisdiction_id"),
    ({"description": "长" * 4001}, 400, "description is longer than 4000"),
    ({"lat": "north"}, 400, "lat is not a number"),
    ({"lat": "91", "long": "1"}, 400, "lat must lie between"),
    ({"long": "nan"}, 400, "long must lie between"),
    ({"long": None}, 400, "lat and long must be given together"),
    ({"media_url": "javascript:alert(1)"}, 400, "media_url"),
    ({"media_url": "https://x y"}, 400, "media_url"),
    ({"colour": "red"}, 400, "not a parameter"),
    ({"attribute[shoe_size]": "42"}, 400, "not an attribute"),
    ({"attribute[priority]": "asap"}, 400, "priority"),
    ({"attribute[uscc]": "123"}, 400, "unified social credit code"),
    ({"description": "a\x00b"}, 400, "NUL"),
    ({"address_string": "路" * 201}, 400, "address_string is longer"),
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("change", "status", "says"), BAD_POSTS)
def test_bad_posts_are_error_lists_and_write_nothing(client, session, own_key, fmt, change, status, says):
    body = {k: v for k, v in {**form(), **change}.items() if v is not None}
    before = tickets(session)
    assert says in error_of(post(client, fmt, own_key, **body), fmt, status)
    assert tickets(session) == before


@pytest.mark.parametrize("fmt", FORMATS)
def test_bad_posts_for_the_key_and_the_enterprise(client, session, own_key, any_key, fmt):
    before = tickets(session)
    ent2 = f.enterprise_of(session, "ent2")
    assert "its own enterprise" in error_of(post(client, fmt, own_key, **form(**{"attribute[uscc]": ent2.uscc})),
                                            fmt, 403)
    assert "uscc was missing" in error_of(post(client, fmt, any_key, **form()), fmt, 400)
    from service.enterprises.uscc import check_character

    unknown = "91330482MA2B0C0D1" + check_character("91330482MA2B0C0D1")
    assert "no enterprise" in error_of(post(client, fmt, any_key, **form(**{"attribute[uscc]": unknown})), fmt, 400)
    files = client.post(f"{BASE}/requests.{fmt}", data={"api_key": own_key.raw, **form()},
                        files={"media": ("a.jpg", b"\xff\xd8\xff", "image/jpeg")})
    assert "media_url" in error_of(files, fmt, 400)
    not_form = client.post(f"{BASE}/requests.{fmt}", params={"api_key": own_key.raw}, json=form())
    assert "service_code was not provided" in error_of(not_form, fmt, 400)
    assert tickets(session) == before


@pytest.mark.parametrize("fmt", FORMATS)
def test_huge_and_undecodable_bodies(client, session, own_key, fmt, settings):
    before = tickets(session)
    huge = "description=" + "长" * settings.max_body_bytes
    resp = client.post(f"{BASE}/requests.{fmt}", content=huge.encode(), params={"api_key": own_key.raw},
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert "larger than" in error_of(resp, fmt, 413)
    chunked = client.post(f"{BASE}/requests.{fmt}", params={"api_key": own_key.raw},
                          content=iter([b"description=", b"x" * settings.max_body_bytes]),
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert error_of(chunked, fmt, 413)
    latin = client.post(f"{BASE}/requests.{fmt}", content=b"service_code=problem.labour&description=\xe9",
                        params={"api_key": own_key.raw}, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert "could not be read" in error_of(latin, fmt, 400)
    pct = client.post(f"{BASE}/requests.{fmt}", content=b"service_code=problem.labour&description=%E9",
                      params={"api_key": own_key.raw}, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert "could not be read" in error_of(pct, fmt, 400)
    assert tickets(session) == before


def test_no_location_needs_an_address_on_file(client, session, own_key):
    from service.enterprises.models import Enterprise

    ent = session.get(Enterprise, own_key.enterprise_id)
    body = {"service_code": "problem.labour", "description": "没有位置"}
    assert post(client, "json", own_key, **body).status_code == 201  # the enterprise's address stands in
    ent.address = None
    session.add(ent)
    session.commit()
    keyless = make_key(session, ent.id)  # a fresh key: the first one's enterprise address is cached
    assert "address_string" in error_of(post(client, "json", keyless, **{**body, "description": "再来"}), "json", 400)
    assert post(client, "json", keyless, **{**body, "description": "再来", "address_string": "兴业路1号"}) \
        .status_code == 201


BAD_GETS = [
    ({"start_date": "yesterday"}, "start_date is not a W3C date-time"),
    ({"end_date": "2026-13-01T00:00:00Z"}, "end_date is not a W3C date-time"),
    ({"start_date": "1800-01-01T00:00:00Z"}, "start_date must lie between"),
    ({"start_date": "2026-06-01T00:00:00Z", "end_date": "2026-05-01T00:00:00Z"}, "after end_date"),
    ({"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-06-01T00:00:00Z"}, "90 days"),
    ({"status": "pending"}, "status must be open or closed"),
    ({"service_request_id": ",".join(["QF1"] * 101)}, "service_request_id"),
    ({"service_code": "x" * 65}, "service_code"),
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("params", "says"), BAD_GETS)
def test_bad_gets_are_error_lists(client, own_key, fmt, params, says):
    assert says in error_of(client.get(f"{BASE}/requests.{fmt}", params={"api_key": own_key.raw, **params}),
                            fmt, 400)


@pytest.mark.parametrize("fmt", FORMATS)
def test_unknown_ids_and_tokens_are_404_lists(client, own_key, fmt):
    key = {"api_key": own_key.raw}
    assert "service_request_id" in error_of(client.get(f"{BASE}/requests/QF0000-999999.{fmt}", params=key), fmt, 404)
    assert "token" in error_of(client.get(f"{BASE}/tokens/{'0' * 64}.{fmt}", params=key), fmt, 404)
    assert "token" in error_of(client.get(f"{BASE}/tokens/abc.{fmt}", params=key), fmt, 404)
    assert "jurisdiction_id" in error_of(client.get(f"{BASE}/requests.{fmt}", params={**key, "jurisdiction_id": "x"}),
                                         fmt, 404)


def test_dates_filter_requested_datetime(client, session, own_key):
    ticket = f.make_ticket(session, "submitted")
    key = {"api_key": own_key.raw}
    at = ticket.submitted_at.replace(microsecond=0)
    numbers = lambda params: {r["service_request_id"] for r in  # noqa: E731
                              client.get(f"{BASE}/requests.json", params={**key, **params}).json()}
    assert ticket.number in numbers({"start_date": at.isoformat()})
    assert ticket.number not in numbers({"end_date": "2020-01-01T00:00:00Z"})
    assert ticket.number not in numbers({"start_date": "2099-12-01T00:00:00+08:00"})


@settings_(max_examples=300, deadline=None)
@given(fields=st.lists(st.tuples(st.text(max_size=12), st.text(max_size=40)), max_size=6),
       raw=st.text(alphabet="ab=&+%20E9e4B8AD国", max_size=30))
def test_urlencoded_parsing_is_the_standard_librarys(fields, raw):
    """The router's fast form parser answers exactly as urllib.parse.parse_qsl (or fails alike)."""
    from urllib.parse import parse_qsl, urlencode

    from service.open311.router import parse_urlencoded

    for body in (urlencode(fields), raw):
        try:
            expected = parse_qsl(body, keep_blank_values=True, errors="strict", max_num_fields=1000)
        except UnicodeDecodeError:
            with pytest.raises(UnicodeDecodeError):
                parse_urlencoded(body)
            continue
        assert parse_urlencoded(body) == expected, body

"""A real Open311 client library against a running server (issue 12): ``georeport`` (PyPI,
GeoReport v2, Python 3) in JSON and in XML, over HTTP to ``uvicorn qifu.app:app`` in a subprocess
on its own freshly built database.

The client libraries on PyPI: ``georeport`` 0.3.1 (2025) reads services, definitions and requests
but cannot POST and sends no ``api_key`` with its GETs; ``open311`` 1.1 (2011) and ``three`` 0.8
(2013) are Python 2 only (``urllib2``, ``itertools.ifilter``) and do not import on 3.11. So
``georeport`` is used unchanged for every method it has, with the key as the user name of HTTP
Basic authentication in its root address (``requests`` sends it; the server accepts a key that
way too, docs/open311.md), and ``httpx`` sends what it cannot: the POSTs (form-encoded, as the
specification says), discovery and tokens. Every XML answer is checked against the
specification's element names (:mod:`tests.open311.spec`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import requests
from georeport import GeoReport
from sqlmodel import Session, select

from bench.harness import free_port
from service.auth.actor import Actor
from service.db import make_engine
from service.enterprises.models import Enterprise
from service.open311 import schemas
from service.open311 import service as open311
from service.users.models import User
from tests.conftest import PG_SERVER
from tests.open311.spec import REQUEST_FIELDS, check_xml
from tests.scratch_db import scratch_database

ROOT = Path(__file__).resolve().parents[2]




@pytest.fixture(scope="module")
def live():
    """``(base URL, own key, any key, ent2's USCC)`` of a server on a fresh database."""
    with scratch_database(PG_SERVER, f"qifu_test_open311_live_{os.getpid()}", enterprises=40) as url:
        engine = make_engine(url)
        with Session(engine) as session:
            admin = session.exec(select(User).where(User.username == "admin")).one()
            ent1 = session.exec(select(User).where(User.username == "ent1")).one().enterprise_id
            ent2 = session.get(Enterprise, session.exec(select(User).where(User.username == "ent2")).one()
                               .enterprise_id)
            actor = Actor(user_id=admin.id, role="admin")
            _row, own = open311.create_key(session, actor, schemas.KeyCreate(system_name="企业自有系统",
                                                                             enterprise_id=ent1))
            _row, anyone = open311.create_key(session, actor, schemas.KeyCreate(system_name="城市门户"))
            uscc = ent2.uscc
            session.commit()
        engine.dispose()
        port = free_port()
        env = {**os.environ, "QIFU_DATABASE_URL": url, "QIFU_ENVIRONMENT": "test", "QIFU_LOG_LEVEL": "WARNING"}
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "qifu.app:app", "--host", "127.0.0.1",
                                 "--port", str(port), "--log-level", "warning"], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start: {proc.stderr.read().decode()[-2000:]}")
                time.sleep(0.2)
            yield base, own, anyone, uscc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _client(base: str, key: str | None, fmt: str) -> GeoReport:
    host = base.removeprefix("http://")
    root = f"http://{key}:x@{host}/open311/v2" if key else f"{base}/open311/v2"  # user:password
    return GeoReport(root, jurisdiction="qifu", output_format=fmt)


def _items(value):
    """xmltodict gives one child as a dict, several as a list."""
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_every_method_through_the_client_library(live, fmt):
    base, own, anyone, uscc = live
    api = f"{base}/open311/v2"
    public = _client(base, None, fmt)

    # discovery (not in the library): the endpoint it announces is the one the library uses
    disc = httpx.get(f"{api}/discovery.{fmt}")
    assert disc.status_code == 200
    if fmt == "xml":
        assert check_xml(disc.content, "discovery").find("endpoints/endpoint/url").text == api
    else:
        assert disc.json()["endpoints"][0]["url"] == api

    services = _items(public.get_service_list())
    codes = {s["service_code"] for s in services}
    assert "problem.labour" in codes and len(codes) > 10
    definition = public.get_service_definition("problem.labour")
    attributes = definition["attributes"] if fmt == "json" else _items(definition["attributes"]["attribute"])
    assert [a["code"] for a in attributes] == ["uscc", "contact_name", "contact_phone", "priority"]
    with pytest.raises(requests.HTTPError) as missing:
        public.get_service_definition("nope")
    assert missing.value.response.status_code == 404
    if fmt == "xml":
        check_xml(missing.value.response.content, "errors")
        check_xml(httpx.get(f"{api}/services.xml").content, "services")
        check_xml(httpx.get(f"{api}/services/problem.labour.xml").content, "service_definition")

    # POST (not in the library): form-encoded, api_key in the body
    mine = httpx.post(f"{api}/requests.{fmt}", data={
        "api_key": own, "service_code": "problem.labour", "description": f"招工难（{fmt}）", "lat": "30.74",
        "long": "120.95", "media_url": "https://img.example.cn/p.jpg"})
    theirs = httpx.post(f"{api}/requests.{fmt}", data={
        "api_key": anyone, "service_code": "problem.power", "description": f"停电（{fmt}）",
        "address_string": "兴业路88号", "attribute[uscc]": uscc})
    assert mine.status_code == theirs.status_code == 201, (mine.text, theirs.text)
    if fmt == "json":
        number, token = mine.json()[0]["service_request_id"], mine.json()[0]["token"]
        their_number = theirs.json()[0]["service_request_id"]
    else:
        (item,) = check_xml(mine.content, "service_requests")
        number, token = item.findtext("service_request_id"), item.findtext("token")
        their_number = check_xml(theirs.content, "service_requests")[0].findtext("service_request_id")

    # GET requests through the library, with each key
    client = _client(base, own, fmt)
    listed = _items(client.get_service_requests())
    assert number in {r["service_request_id"] for r in listed} and their_number not in \
        {r["service_request_id"] for r in listed}
    assert {r["service_request_id"] for r in _items(_client(base, anyone, fmt).get_service_requests())} \
        >= {their_number}
    one = client.get_service_request(number)
    assert set(one) == REQUEST_FIELDS and one["status"] == "open" and one["media_url"].endswith("p.jpg")
    assert one["service_code"] == "problem.labour" and one["expected_datetime"]
    picked = _items(client.get_service_requests(service_request_id=number))
    assert [r["service_request_id"] for r in picked] == [number]
    month_ago = (datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    recent = _items(client.get_service_requests(service_code="problem.labour,problem.power", status="open",
                                                start_date=month_ago))
    assert number in {r["service_request_id"] for r in recent}
    if fmt == "json":
        assert client.get_service_requests(start_date="2020-01-01T00:00:00Z", end_date="2020-02-01T00:00:00Z") == []
    else:  # an empty list in XML has no <request>, which the library cannot read (its limitation): by hand
        empty = httpx.get(f"{api}/requests.xml", params={"api_key": own, "start_date": "2020-01-01T00:00:00Z",
                                                          "end_date": "2020-02-01T00:00:00Z"})
        assert len(check_xml(empty.content, "service_requests")) == 0
        for url in (f"{api}/requests.xml", f"{api}/requests/{number}.xml", f"{api}/tokens/{token}.xml"):
            check_xml(httpx.get(url, params={"api_key": own}).content, "service_requests")
    with pytest.raises(requests.HTTPError) as refused:
        public.get_service_requests()  # no key
    assert refused.value.response.status_code == 403

    # tokens (not in the library)
    by_token = httpx.get(f"{api}/tokens/{token}.{fmt}", params={"api_key": own})
    assert by_token.status_code == 200 and number in by_token.text

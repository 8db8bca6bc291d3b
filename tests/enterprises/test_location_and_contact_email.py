"""An enterprise's coordinates (``latitude``/``longitude``, WGS 84 degrees) and ``contact_email``
(issue 12): set, changed and cleared through the enterprises API, loaded from the seeds where the
data exists, and shown by Open311 GET for requests that carry no location. Bad values: 422 naming
the field (more in tests/api/test_bad_input.py)."""

from __future__ import annotations

import pytest

from service.enterprises.models import Enterprise
from service.enterprises.uscc import make_uscc
from tests import factories as f
from tests.open311.conftest import BASE, make_key


def _uscc(n: int) -> str:
    return make_uscc(authority="9", org_type="1", division="330428", org_code=f"MA{n:07d}")


def test_create_change_and_clear(session, client, login):
    admin = login("admin")
    resp = client.post("/api/v1/enterprises", headers=admin, json={
        "uscc": _uscc(4242421), "name": "坐标测试有限公司", "address": "青禾县兴业路1号", "latitude": 30.5,
        "longitude": 120.69, "contact_email": " Office@Example.com "})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert (body["latitude"], body["longitude"], body["contact_email"]) == (30.5, 120.69, "Office@Example.com")
    ent_id = body["id"]
    resp = client.patch(f"/api/v1/enterprises/{ent_id}", headers=admin, json={"latitude": -90, "longitude": 180})
    assert resp.status_code == 200 and (resp.json()["latitude"], resp.json()["longitude"]) == (-90, 180)
    resp = client.patch(f"/api/v1/enterprises/{ent_id}", headers=admin,
                        json={"latitude": None, "longitude": None, "contact_email": None})
    assert resp.status_code == 200, resp.text
    assert (resp.json()["latitude"], resp.json()["longitude"], resp.json()["contact_email"]) == (None, None, None)
    assert client.get(f"/api/v1/enterprises/{ent_id}", headers=admin).json()["latitude"] is None


@pytest.mark.parametrize(("body", "field"), [
    ({"latitude": 90.0001, "longitude": 0}, "latitude"),
    ({"latitude": 0, "longitude": -180.5}, "longitude"),
    ({"latitude": True, "longitude": 0}, "latitude"),
    ('{"latitude": 1e400, "longitude": 0}', "latitude"),  # infinite
    ({"latitude": "30.5", "longitude": 0}, "latitude"),
    ({"latitude": 10}, "longitude"),
    ({"contact_email": "office@"}, "contact_email"),
    ({"contact_email": ["a@example.com"]}, "contact_email"),
])
def test_bad_values_name_the_field(session, client, login, body, field):
    ent = f.enterprise_of(session, "ent5")
    before = (ent.latitude, ent.longitude, ent.contact_email)
    if isinstance(body, str):
        resp = client.patch(f"/api/v1/enterprises/{ent.id}", content=body,
                            headers={**login("admin"), "Content-Type": "application/json"})
    else:
        resp = client.patch(f"/api/v1/enterprises/{ent.id}", headers=login("admin"), json=body)
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["errors"][0]["field"].split(".")[-1] == field, resp.json()
    session.expire_all()
    ent = session.get(Enterprise, ent.id)
    assert (ent.latitude, ent.longitude, ent.contact_email) == before


def test_only_an_admin_edits_them(session, client, login):
    ent = f.enterprise_of(session, "ent1")
    for who in ("ent1", "officer1"):
        resp = client.patch(f"/api/v1/enterprises/{ent.id}", headers=login(who), json={"contact_email": "x@example.com"})
        assert resp.status_code == 403, (who, resp.text)


def test_seeded_where_the_data_exists(session):
    """enterprises.yaml pins coordinates and a contact e-mail on enterprise #1 only."""
    ent1 = f.enterprise_of(session, "ent1")
    assert (ent1.latitude, ent1.longitude) == (30.5152, 120.6918) and ent1.contact_email.endswith(".example.cn")
    ent2 = f.enterprise_of(session, "ent2")
    assert (ent2.latitude, ent2.longitude, ent2.contact_email) == (None, None, None)


def test_open311_shows_the_enterprise_location_when_the_request_has_none(session, client, login):
    ent = f.enterprise_of(session, "ent6")
    assert client.patch(f"/api/v1/enterprises/{ent.id}", headers=login("admin"),
                        json={"latitude": 30.7512, "longitude": 120.9301}).status_code == 200
    key = make_key(session, ent.id)

    def post(**extra) -> dict:
        resp = client.post(f"{BASE}/requests.json", data={"api_key": key.raw, "service_code": "problem.labour",
                                                          **extra})
        assert resp.status_code == 201, resp.text
        number = resp.json()[0]["service_request_id"]
        (row,) = client.get(f"{BASE}/requests/{number}.json", params={"api_key": key.raw}).json()
        return row

    bare = post(description="没有位置")
    assert (bare["lat"], bare["long"], bare["address"]) == (30.7512, 120.9301, ent.address)
    own = post(description="有坐标", lat="30.1", long="120.2")
    assert (own["lat"], own["long"]) == (30.1, 120.2)
    addressed = post(description="有地址", address_string="另一处：工业大道9号")
    assert (addressed["lat"], addressed["long"], addressed["address"]) == (None, None, "另一处：工业大道9号")
    xml = client.get(f"{BASE}/requests/{bare['service_request_id']}.xml", params={"api_key": key.raw}).text
    assert "<lat>30.7512</lat>" in xml and "<long>120.9301</long>" in xml

"""No 500, ever (issue #11 point 2): each class of bad input at the edge of the API is a 4xx
problem naming the field, wherever it can occur.

Classes: ``If-Match`` that is not an ASCII version number; dates at the ends of the calendar
(query, path and body, datetimes too); integers beyond ``INTEGER`` (query, path, body, a token's
``sub``); NUL in text; ``null`` through PATCH for columns that refuse it; time-zone offsets in a
clinic schedule; cadence runs far from today unless forced.
"""

from __future__ import annotations

from datetime import date, datetime

import jwt
import pytest
import time_machine
from pydantic import BaseModel

from qifu.openapi import api_routes
from service.common.schemas import InputModel
from service.config import get_settings
from tests import factories as f
from tests.factories import SHANGHAI

PROBLEM = "application/problem+json"
BIG = 2**31


def bad(resp, field: str | None, status: int | tuple[int, ...] = 422) -> dict:
    """A 4xx problem+json (``status``) naming ``field`` in ``errors[].field`` or ``detail``."""
    statuses = (status,) if isinstance(status, int) else status
    assert resp.status_code in statuses, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith(PROBLEM), resp.headers["content-type"]
    body = resp.json()
    if field is not None:
        fields = [e["field"] for e in body.get("errors", [])]
        assert any(field in x for x in fields) or field in body["detail"], (field, body)
    return body


# --------------------------------------------------------------------------- If-Match

@pytest.mark.parametrize("if_match", ["²", '"²"', "³", 'W/"¹"', "٣", '"٣"', "9" * 5000, f'"{"9" * 5000}"',
                                      '"2147483648"', "１", "3\x00", "\u00a03", "+3", "0x3"])
def test_if_match_not_ascii_version_is_422(session, client, login, if_match):
    """Header bytes are read as Latin-1: "²" arrives as the one character "²", which
    ``str.isdigit`` accepts and ``int`` refuses (it was a 500)."""
    ticket = f.make_ticket(session, "submitted")
    try:
        raw = if_match.encode("latin-1")
    except UnicodeEncodeError:
        raw = if_match.encode("utf-8")
    resp = client.post(f"/api/v1/tickets/{ticket.number}/accept", json={},
                       headers={**login("officer1"), "If-Match": raw})
    bad(resp, "If-Match")
    assert f.reload(session, ticket).status == "submitted"


def test_if_match_still_takes_a_version(session, client, login):
    ticket = f.make_ticket(session, "submitted")
    url = f"/api/v1/tickets/{ticket.number}/accept"
    bad(client.post(url, json={}, headers={**login("officer1"), "If-Match": '"2147483647"'}), None, 412)
    resp = client.post(url, json={}, headers={**login("officer1"), "If-Match": f'W/"{ticket.version}"'})
    assert resp.status_code == 200, resp.text


# --------------------------------------------------------------------------- dates

FAR_DATES = ["9999-12-31", "0001-01-01", "1989-12-31", "2101-01-01"]


@pytest.mark.parametrize("day", FAR_DATES)
def test_stats_dates_are_bounded(client, login, day):
    params = {"date_from": "2026-01-01", "date_to": day}
    bad(client.get("/api/v1/stats/summary", params=params, headers=login("supervisor1")), "date_to")
    params = {"date_from": day, "date_to": "2026-01-01"}
    bad(client.get("/api/v1/stats/summary", params=params, headers=login("supervisor1")), "date_from")


def test_stats_at_the_edges_of_the_range_answer(client, login):
    resp = client.get("/api/v1/stats/summary", params={"date_from": "1990-01-01", "date_to": "2100-12-31",
                                                        "group_by": "channel"},
                      headers=login("supervisor1"))
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("day", FAR_DATES)
@pytest.mark.parametrize("path", ["/api/v1/inquiries/today", "/api/v1/inquiries/coverage"])
def test_inquiry_dates_are_bounded(client, login, path, day):
    bad(client.get(path, params={"date": day}, headers=login("officer1")), "date")


@pytest.mark.parametrize("day", FAR_DATES)
@pytest.mark.parametrize("path", ["/api/v1/clinics", "/api/v1/joint-consultations"])
def test_session_list_dates_are_bounded(client, login, path, day):
    bad(client.get(path, params={"date_from": day}, headers=login("officer1")), "date_from")
    bad(client.get(path, params={"date_to": day}, headers=login("officer1")), "date_to")


@pytest.mark.parametrize("day", FAR_DATES)
def test_cadence_run_dates_are_bounded_even_when_forced(client, login, day):
    for force in ("false", "true"):
        bad(client.post("/api/v1/cadences/daily/run", params={"date": day, "force": force},
                        headers=login("admin")), "date")


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
def test_datetimes_are_bounded(session, client, login, stamp):
    bad(client.get("/api/v1/tickets", params={"created_from": stamp}, headers=login("admin")), "created_from")
    ent = f.enterprise_of(session, "ent1")
    bad(client.post("/api/v1/inquiries", json={"enterprise_id": ent.id, "method": "phone", "finding": "none",
                                               "contacted_at": stamp}, headers=login("officer1")),
        "contacted_at")


@pytest.mark.parametrize("day", FAR_DATES)
def test_body_dates_are_bounded(client, login, day):
    bad(client.put("/api/v1/calendar/years/2030", json={"holidays": [day]}, headers=login("admin")), "holidays")
    bad(client.get("/api/v1/calendar/days", params={"date_from": day, "date_to": "2030-01-01"},
                   headers=login("admin")), "date_from")


# --------------------------------------------------------------------------- cadence runs far from today

@pytest.mark.parametrize("day", ["2024-03-01", "2027-06-01"])
def test_cadence_run_far_from_today_needs_force(session, client, login, day):
    with time_machine.travel(datetime(2026, 3, 2, 9, tzinfo=SHANGHAI), tick=False):
        body = bad(client.post("/api/v1/cadences/daily/run", params={"date": day}, headers=login("admin")),
                   "date")
        assert "force" in body["detail"]
        resp = client.post("/api/v1/cadences/daily/run", params={"date": day, "force": "true"},
                           headers=login("admin"))
        assert resp.status_code == 200, resp.text
        # near today needs no force
        resp = client.post("/api/v1/cadences/daily/run", params={"date": "2026-02-20"}, headers=login("admin"))
        assert resp.status_code == 200, resp.text


def test_cadence_run_date_rule(session):
    from service.cadences import service as cadences
    from service.errors import FieldError

    now = datetime(2026, 3, 2, 9, tzinfo=SHANGHAI)
    with pytest.raises(FieldError, match="force"):
        cadences.check_run_date(date(2020, 1, 1), now=now)
    with pytest.raises(FieldError, match="force"):
        cadences.check_run_date(date(2026, 4, 3), now=now)
    assert cadences.check_run_date(date(2020, 1, 1), force=True, now=now) == date(2020, 1, 1)
    assert cadences.check_run_date(date(2025, 3, 1), now=now) == date(2025, 3, 1)
    assert cadences.check_run_date(date(2026, 4, 1), now=now) == date(2026, 4, 1)
    for far in (date(1, 1, 1), date(9999, 12, 31)):
        with pytest.raises(FieldError):
            cadences.check_run_date(far, force=True, now=now)


def test_cadence_cli_far_from_today_needs_force():
    from typer.testing import CliRunner

    from qifu.cadence_cli import cadence_app

    with time_machine.travel(datetime(2026, 3, 2, 9, tzinfo=SHANGHAI), tick=False):
        result = CliRunner().invoke(cadence_app, ["run", "daily", "--date", "2020-01-01"])
        assert result.exit_code == 2 and "--force" in result.output, result.output
        for day in ("0001-01-01", "9999-12-31"):
            for force in ([], ["--force"]):
                result = CliRunner().invoke(cadence_app, ["run", "daily", "--date", day, *force])
                assert result.exit_code == 2 and "--date" in result.output, result.output


# --------------------------------------------------------------------------- integers

@pytest.mark.parametrize("path", [
    f"/api/v1/enterprises/{BIG}", f"/api/v1/sla-policies/{BIG}",
])
def test_path_ids_beyond_int32(client, login, path):
    method = client.delete if "sla-policies" in path else client.get
    bad(method(path, headers=login("admin")), None, (404, 422))


@pytest.mark.parametrize("path,body", [
    (f"/api/v1/departments/{BIG}", {"name": "x"}),
    (f"/api/v1/categories/{BIG}", {"name": "x"}),
    (f"/api/v1/enterprises/{BIG}", {"name": "x"}),
    (f"/api/v1/users/{BIG}", {"full_name": "x"}),
])
def test_patch_path_ids_beyond_int32(client, login, path, body):
    bad(client.patch(path, json=body, headers=login("admin")), None, (404, 422))


def test_query_and_body_ids_beyond_int32(client, login):
    bad(client.get("/api/v1/notifications", params={"before_id": BIG}, headers=login("ent1")), "before_id")
    bad(client.post("/api/v1/notifications/read", json={"ids": [BIG]}, headers=login("ent1")), "ids")
    bad(client.put("/api/v1/sla-policies", json={"category_id": BIG, "priority": "normal", "step": "accept",
                                                  "amount": 1, "unit": "working_hours"},
                   headers=login("admin")), "category_id")


@pytest.mark.parametrize("sub", [str(BIG), str(10**30), "-1", "0", "٣", "1e3", "1.0"])
def test_token_subject_beyond_int32_is_401(client, sub):
    settings = get_settings()
    token = jwt.encode({"sub": sub, "exp": 4_102_444_800, "role": "admin"}, settings.jwt_secret,
                       algorithm="HS256")
    bad(client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}), None, 401)


# --------------------------------------------------------------------------- NUL and null

def test_nul_refused_in_bodies_without_input_model(client, login):
    bad(client.put("/api/v1/calendar/overrides/2030-01-02", json={"is_working_day": True, "note": "a\x00b"},
                   headers=login("admin")), "note")
    bad(client.put("/api/v1/calendar/years/2030", json={"note": "a\x00b"}, headers=login("admin")), "note")


def _patch_routes(app):
    for route in api_routes(app.router.routes):
        if route.methods & {"PATCH"} and route.body_field is not None:
            yield route


def test_every_request_body_is_an_input_model(app):
    """One base (:class:`InputModel`) for every body: NUL, bounds and unknown fields in one place."""
    checked = 0
    for route in api_routes(app.router.routes):
        if route.body_field is not None:
            model = route.body_field.field_info.annotation
            if isinstance(model, type) and issubclass(model, BaseModel) and route.path != "/auth/token":
                assert issubclass(model, InputModel), (route.path, model)
                checked += 1
    assert checked > 30


PATCH_NULLS = [
    ("/api/v1/regions/{id}", "name"), ("/api/v1/grids/{id}", "name"),
    ("/api/v1/departments/{id}", "name"), ("/api/v1/departments/{id}", "is_active"),
    ("/api/v1/categories/{id}", "name"), ("/api/v1/enterprises/{id}", "name"),
    ("/api/v1/enterprises/{id}", "tags"), ("/api/v1/users/{id}", "full_name"),
    ("/api/v1/users/{id}", "password"), ("/api/v1/users/{id}", "is_active"),
]


def test_patch_null_for_non_nullable_is_422(session, client, login, app):
    from service.categories.models import Category
    from service.departments.models import Department
    from service.regions.models import Grid, Region

    ids = {"regions": session.exec(Region.__table__.select().limit(1)).first().id,
           "grids": session.exec(Grid.__table__.select().limit(1)).first().id,
           "departments": f.department(session, "rsj").id if False else
           session.exec(Department.__table__.select().limit(1)).first().id,
           "categories": session.exec(Category.__table__.select().limit(1)).first().id,
           "enterprises": f.enterprise_of(session, "ent1").id,
           "users": f.user(session, "ent1").id}
    collections = {r.path.split("/")[1] for r in _patch_routes(app)}
    assert {"departments", "categories", "enterprises", "users"} <= collections
    for template, field in PATCH_NULLS:
        resource = template.split("/")[3]
        if resource not in collections:
            continue  # this collection has no PATCH (regions, grids)
        url = template.replace("{id}", str(ids[resource]))
        bad(client.patch(url, json={field: None}, headers=login("admin")), field)


def test_patch_null_clears_nullable_columns(session, client, login):
    ent = f.enterprise_of(session, "ent1")
    resp = client.patch(f"/api/v1/enterprises/{ent.id}", json={"contact_phone": None}, headers=login("admin"))
    assert resp.status_code == 200 and resp.json()["contact_phone"] is None, resp.text


# --------------------------------------------------------------------------- clinic schedule time zones

@pytest.mark.parametrize("start", ["09:00+25:00", "09:00+24:00", "09:00-99:00", "09:00+16:00", "09:00-15:59",
                                   "09:00+05:00"])
def test_clinic_schedule_offsets(client, login, start):
    admin = login("admin")
    region = client.get("/api/v1/clinics/schedules", headers=admin).json()[0]["region_id"]
    resp = client.put(f"/api/v1/clinics/schedules/{region}",
                      json={"weekday": 2, "start_time": start, "place": "大厅"}, headers=admin)
    bad(resp, "start_time")


@pytest.mark.parametrize("start,served", [("14:30", "14:30:00+08:00"), ("14:30+08:00", "14:30:00+08:00"),
                                          ("14:30:15", "14:30:15+08:00")])
def test_clinic_schedule_time_is_served_with_its_offset(client, login, start, served):
    admin = login("admin")
    region = client.get("/api/v1/clinics/schedules", headers=admin).json()[0]["region_id"]
    resp = client.put(f"/api/v1/clinics/schedules/{region}",
                      json={"weekday": 2, "start_time": start, "place": "大厅"}, headers=admin)
    assert resp.status_code == 200, resp.text
    assert resp.json()["start_time"] == served
    listed = client.get("/api/v1/clinics/schedules", headers=admin).json()
    assert all(s["start_time"].endswith("+08:00") for s in listed)


def test_idempotency_key_with_nul_is_422(session, client, login):
    from sqlmodel import func, select

    from service.tickets.models import Ticket

    before = session.exec(select(func.count()).select_from(Ticket)).one()
    body = {"title": "园区道路破损", "description": "园区东路路面破损严重。", "category_code": "problem.transport"}
    resp = client.post("/api/v1/tickets", json=body, headers={**login("ent1"), "Idempotency-Key": b"k\x00"})
    bad(resp, "Idempotency-Key")
    assert session.exec(select(func.count()).select_from(Ticket)).one() == before

"""``/api/v1/calendar`` (SPEC §4): the year view with its official-data flag and warning, the days
view with each day's source, admin overrides and whole-year schedules, role checks, and bad input
rendered as problem+json naming the field (never a 500)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from service.calendar.service import get_calendar

API = "/api/v1/calendar"
PROBLEM = "application/problem+json"
SH = ZoneInfo("Asia/Shanghai")


def problem(resp, status: int, field: str | None = None) -> dict[str, Any]:
    """Assert ``resp`` is an RFC 9457 problem with ``status`` (naming ``field``); return its body."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM), resp.headers["content-type"]
    body = resp.json()
    for key in ("type", "title", "status", "detail"):
        assert key in body, body
    assert body["status"] == status
    if field is not None:
        fields = [e["field"] for e in body.get("errors", [])]
        assert field in fields, body
    return body


def official_count(year: int) -> int:
    d, n = date(year, 1, 1), 0
    while d.year == year:
        n += chinese_calendar.is_workday(d)
        d += timedelta(days=1)
    return n


@pytest.fixture
def admin(login) -> dict[str, str]:
    return login("admin")


# --------------------------------------------------------------------------- reading

def test_year_with_official_data(client: TestClient, login) -> None:
    resp = client.get(API, params={"year": 2026}, headers=login("officer1"))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["year"] == 2026
    assert body["official_data"] is True
    assert body["warning"] is None
    assert body["working_hours"] == "09:00-12:00,13:30-17:30"
    assert 240 <= body["working_days"] <= 255
    assert body["working_days"] == official_count(2026) == 248  # no 2026 overrides are seeded
    assert body["overrides"] == []


def test_year_without_official_data_warns(client: TestClient, login) -> None:
    resp = client.get(API, params={"year": 2027}, headers=login("ent1"))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["official_data"] is False
    assert "2027" in body["warning"] and "周一至周五" in body["warning"]
    assert body["working_days"] == 261  # Monday-Friday


def test_year_defaults_to_the_current_one(client: TestClient, login) -> None:
    resp = client.get(API, headers=login("officer1"))
    assert resp.status_code == 200, resp.text
    assert resp.json()["year"] == datetime.now(SH).year


def test_reading_needs_a_login(client: TestClient) -> None:
    problem(client.get(API, params={"year": 2026}), 401)
    problem(client.get(f"{API}/days", params={"date_from": "2026-10-01", "date_to": "2026-10-02"}), 401)


def test_days_with_their_source(client: TestClient, login) -> None:
    resp = client.get(f"{API}/days", params={"date_from": "2026-09-28", "date_to": "2026-10-11"},
                      headers=login("officer1"))
    assert resp.status_code == 200, resp.text
    days = {d["day"]: d for d in resp.json()}
    assert len(days) == 14
    assert {d["source"] for d in days.values()} == {"official"}
    assert [k for k, d in days.items() if d["is_working_day"]] == [
        "2026-09-28", "2026-09-29", "2026-09-30", "2026-10-08", "2026-10-09", "2026-10-10"]

    resp = client.get(f"{API}/days", params={"date_from": "2026-12-30", "date_to": "2027-01-03"},
                      headers=login("officer1"))
    assert [(d["day"], d["is_working_day"], d["source"]) for d in resp.json()] == [
        ("2026-12-30", True, "official"), ("2026-12-31", True, "official"),
        ("2027-01-01", True, "fallback"), ("2027-01-02", False, "fallback"), ("2027-01-03", False, "fallback")]

    one = client.get(f"{API}/days", params={"date_from": "2025-02-08", "date_to": "2025-02-08"},
                     headers=login("officer1"))
    assert one.json() == [{"day": "2025-02-08", "is_working_day": True, "source": "official"}]


# --------------------------------------------------------------------------- writing

def test_override_a_holiday_then_delete_it(client: TestClient, admin, login, session: Session) -> None:
    start = datetime(2026, 9, 30, 16, tzinfo=SH)
    assert get_calendar(session).add_working_days(start, 1) == datetime(2026, 10, 8, 17, 30, tzinfo=SH)

    resp = client.put(f"{API}/overrides/2026-10-05", json={"is_working_day": True, "note": "补班（本地）"},
                      headers=admin)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"day": "2026-10-05", "is_working_day": True, "note": "补班（本地）"}

    year = client.get(API, params={"year": 2026}, headers=login("officer1")).json()
    assert year["working_days"] == 249
    assert [o["day"] for o in year["overrides"]] == ["2026-10-05"]
    day = client.get(f"{API}/days", params={"date_from": "2026-10-05", "date_to": "2026-10-05"},
                     headers=login("officer1")).json()
    assert day == [{"day": "2026-10-05", "is_working_day": True, "source": "override"}]

    cal = get_calendar(session)
    assert cal.is_working_day(date(2026, 10, 5))
    assert cal.add_working_days(start, 1) == datetime(2026, 10, 5, 17, 30, tzinfo=SH)

    # an override can be changed in place
    resp = client.put(f"{API}/overrides/2026-10-05", json={"is_working_day": False}, headers=admin)
    assert resp.status_code == 200 and resp.json()["note"] is None
    assert not get_calendar(session).is_working_day(date(2026, 10, 5))

    assert client.delete(f"{API}/overrides/2026-10-05", headers=admin).status_code == 204
    problem(client.delete(f"{API}/overrides/2026-10-05", headers=admin), 404)
    assert get_calendar(session).add_working_days(start, 1) == datetime(2026, 10, 8, 17, 30, tzinfo=SH)
    assert client.get(API, params={"year": 2026}, headers=admin).json()["overrides"] == []


def test_override_a_working_day_off(client: TestClient, admin, session: Session) -> None:
    resp = client.put(f"{API}/overrides/2026-03-12", json={"is_working_day": False, "note": "台风停工"},
                      headers=admin)
    assert resp.status_code == 200, resp.text
    cal = get_calendar(session)
    assert not cal.is_working_day(date(2026, 3, 12))
    assert cal.add_working_days(datetime(2026, 3, 11, 10, tzinfo=SH), 1) == datetime(2026, 3, 13, 17, 30, tzinfo=SH)
    assert client.get(API, params={"year": 2026}, headers=admin).json()["working_days"] == 247


def test_put_a_whole_year(client: TestClient, admin, login, session: Session) -> None:
    """An admin enters 2027 in one request (illustrative dates: the real schedule is not out yet)."""
    holidays = ["2027-01-01"] + [str(date(2027, 2, 5) + timedelta(days=i)) for i in range(9)]
    workdays = ["2027-01-31", "2027-02-14"]
    resp = client.put(f"{API}/years/2027", json={"holidays": holidays, "workdays": workdays, "note": "2027年安排"},
                      headers=admin)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["year"] == 2027
    assert body["official_data"] is False  # still no package data; the overrides fill the year in
    assert body["working_days"] == 261 - 7 + 2  # seven weekday holidays off, two Sundays worked
    assert body["warning"] is None  # entered: no "without official data" warning any more (issue 11)
    assert client.get(API, params={"year": 2027}, headers=login("ent1")).json()["warning"] is None
    assert len(body["overrides"]) == 12
    assert {o["note"] for o in body["overrides"]} == {"2027年安排"}

    cal = get_calendar(session)
    assert cal.add_working_days(datetime(2026, 12, 31, 10, tzinfo=SH), 1) == datetime(2027, 1, 4, 17, 30, tzinfo=SH)
    assert cal.add_working_days(datetime(2027, 2, 4, 10, tzinfo=SH), 1) == datetime(2027, 2, 14, 17, 30, tzinfo=SH)
    assert cal.add_working_hours(datetime(2027, 2, 4, 17, tzinfo=SH), 1) == datetime(2027, 2, 14, 9, 30, tzinfo=SH)

    days = client.get(f"{API}/days", params={"date_from": "2027-01-30", "date_to": "2027-02-01"},
                      headers=login("officer1")).json()
    assert [(d["day"], d["is_working_day"], d["source"]) for d in days] == [
        ("2027-01-30", False, "fallback"), ("2027-01-31", True, "override"), ("2027-02-01", True, "fallback")]

    # putting the year again replaces it: nothing of the first version survives
    resp = client.put(f"{API}/years/2027", json={"holidays": ["2027-01-01"]}, headers=admin)
    assert resp.status_code == 200, resp.text
    assert [(o["day"], o["is_working_day"]) for o in resp.json()["overrides"]] == [("2027-01-01", False)]
    assert resp.json()["working_days"] == 260
    cal = get_calendar(session)
    assert not cal.is_working_day(date(2027, 1, 31)) and cal.is_working_day(date(2027, 2, 8))

    assert resp.json()["warning"] is None

    # other years' overrides are untouched by a year's replacement; an emptied year warns again
    client.put(f"{API}/overrides/2026-10-05", json={"is_working_day": True}, headers=admin)
    emptied = client.put(f"{API}/years/2027", json={}, headers=admin).json()
    assert "2027" in emptied["warning"]
    assert get_calendar(session).overrides == {date(2026, 10, 5): True}


def test_the_warning_goes_once_the_days_off_are_entered_day_by_day(client: TestClient, admin, login) -> None:
    """A worked day alone (a make-up Sunday) does not make the year entered; a day off does."""
    assert client.get(API, params={"year": 2027}, headers=admin).json()["warning"]
    client.put(f"{API}/overrides/2027-01-31", json={"is_working_day": True}, headers=admin)
    assert client.get(API, params={"year": 2027}, headers=admin).json()["warning"]
    client.put(f"{API}/overrides/2027-01-01", json={"is_working_day": False, "note": "元旦"}, headers=admin)
    body = client.get(API, params={"year": 2027}, headers=login("officer1")).json()
    assert body["warning"] is None and body["official_data"] is False and body["working_days"] == 261
    assert client.get(API, params={"year": 2028}, headers=admin).json()["warning"]  # other years still warn


@pytest.mark.parametrize("username", ["officer1", "ent1", "supervisor1", "dept_fgj"])
def test_non_admins_cannot_write(client: TestClient, login, session: Session, username: str) -> None:
    headers = login(username)
    problem(client.put(f"{API}/overrides/2026-10-05", json={"is_working_day": True}, headers=headers), 403)
    problem(client.delete(f"{API}/overrides/2026-10-05", headers=headers), 403)
    problem(client.put(f"{API}/years/2027", json={"holidays": ["2027-01-01"]}, headers=headers), 403)
    assert get_calendar(session).overrides == {}


def test_writes_need_a_login(client: TestClient) -> None:
    problem(client.put(f"{API}/overrides/2026-10-05", json={"is_working_day": True}), 401)
    problem(client.put(f"{API}/years/2027", json={}), 401)


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize(("method", "url", "params", "json", "field"), [
    ("get", API, {"year": 1800}, None, "year"),
    ("get", API, {"year": 2101}, None, "year"),
    ("get", API, {"year": "abc"}, None, "year"),
    ("get", f"{API}/days", {"date_from": "2026-02-30", "date_to": "2026-03-01"}, None, "date_from"),
    ("get", f"{API}/days", {"date_from": "2026-03-01", "date_to": "tomorrow"}, None, "date_to"),
    ("get", f"{API}/days", {"date_from": "2026-03-01"}, None, "date_to"),
    ("get", f"{API}/days", {"date_from": "2026-03-02", "date_to": "2026-03-01"}, None, "date_to"),
    ("get", f"{API}/days", {"date_from": "2025-01-01", "date_to": "2026-12-31"}, None, "date_to"),
    ("put", f"{API}/overrides/2026-02-30", None, {"is_working_day": True}, "day"),
    ("put", f"{API}/overrides/not-a-date", None, {"is_working_day": True}, "day"),
    ("put", f"{API}/overrides/2026-10-05", None, {}, "is_working_day"),
    ("put", f"{API}/overrides/2026-10-05", None, {"is_working_day": "maybe"}, "is_working_day"),
    ("put", f"{API}/overrides/2026-10-05", None, {"is_working_day": True, "reason": "x"}, "reason"),
    ("put", f"{API}/overrides/2026-10-05", None, {"is_working_day": True, "note": "长" * 101}, "note"),
    ("put", f"{API}/overrides/9999-12-31", None, {"is_working_day": True}, "day"),
    ("put", f"{API}/overrides/1989-12-31", None, {"is_working_day": True}, "day"),
    ("delete", f"{API}/overrides/2026-13-01", None, None, "day"),
    ("put", f"{API}/years/1800", None, {}, "year"),
    ("put", f"{API}/years/2101", None, {}, "year"),
    ("put", f"{API}/years/twenty", None, {}, "year"),
    ("put", f"{API}/years/2027", None, {"holidays": ["2027-01-01", "2026-10-01"]}, "holidays[1]"),
    ("put", f"{API}/years/2027", None, {"workdays": ["2028-01-01"]}, "workdays[0]"),
    ("put", f"{API}/years/2027", None, {"holidays": ["2027-02-30"]}, "holidays.0"),
    ("put", f"{API}/years/2027", None, {"holidays": "2027-01-01"}, "holidays"),
    ("put", f"{API}/years/2027", None, {"holidays": ["2027-01-01"], "workdays": ["2027-01-01"]}, "workdays"),
    ("put", f"{API}/years/2027", None, {"holidays": [], "make_up": []}, "make_up"),
])
def test_bad_input_is_a_problem_naming_the_field(client: TestClient, admin, session: Session, method: str,
                                                url: str, params, json, field: str) -> None:
    kwargs: dict[str, Any] = {"headers": admin, "params": params}
    if json is not None:
        kwargs["json"] = json
    resp = client.request(method.upper(), url, **kwargs)
    assert 400 <= resp.status_code < 500, resp.text
    problem(resp, 422, field)
    assert get_calendar(session).overrides == {}  # nothing written


@pytest.mark.parametrize(("method", "url", "params"), [
    ("get", f"{API}/days", {"date_from": "9999-12-01", "date_to": "9999-12-31"}),
    ("get", f"{API}/days", {"date_from": "0001-01-01", "date_to": "0001-01-02"}),
    ("put", f"{API}/overrides/9999-12-31", None),
    ("put", f"{API}/overrides/0001-01-01", None),
])
def test_extreme_dates_never_500(client: TestClient, admin, method: str, url: str, params) -> None:
    kwargs: dict[str, Any] = {"headers": admin, "params": params}
    if method == "put":
        kwargs["json"] = {"is_working_day": True}
    resp = client.request(method.upper(), url, **kwargs)
    assert resp.status_code < 500, resp.text

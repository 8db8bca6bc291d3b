"""Reference data API (SPEC §2, §7): admin CRUD, non-admin writes refused, duplicates 409."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import Session, func, select

from service.categories.models import Category
from service.departments.models import Department
from service.enterprises.models import Enterprise
from service.enterprises.uscc import make_uscc
from service.regions.models import Grid, Region
from service.users.models import OfficerGrid, User
from tests import factories as f

PROBLEM = "application/problem+json"
NEW_USCC = make_uscc("9", "1", "330428", "MA0TEQ01X")


def region_id(session: Session, code: str) -> int:
    return session.exec(select(Region.id).where(Region.code == code)).one()


def grid_id(session: Session, code: str) -> int:
    return session.exec(select(Grid.id).where(Grid.code == code)).one()


def count(session: Session, model) -> int:
    session.expire_all()
    return session.exec(select(func.count()).select_from(model)).one()


def conflict(resp, field: str) -> dict[str, Any]:
    assert resp.status_code == 409, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    body = resp.json()
    assert body["status"] == 409 and body["type"] == "/problems/conflict"
    assert [e["field"] for e in body["errors"]] == [field]
    return body


# --------------------------------------------------------------------------- reads

@pytest.mark.parametrize("username", ["admin", "officer1", "dept_rsj", "ent1", "supervisor2"])
def test_public_reference_data_readable_by_everyone(client, login, username):
    headers = login(username)
    for path, minimum in (("/api/v1/regions", 12), ("/api/v1/grids", 43), ("/api/v1/departments", 17),
                          ("/api/v1/categories", 35)):
        resp = client.get(path, headers=headers)
        assert resp.status_code == 200
        assert len(resp.json()) >= minimum, path


def test_reads_need_login(client):
    for path in ("/api/v1/regions", "/api/v1/grids", "/api/v1/departments", "/api/v1/categories",
                 "/api/v1/enterprises", "/api/v1/users"):
        resp = client.get(path)
        assert resp.status_code == 401, path
        assert resp.headers["content-type"].startswith(PROBLEM)


def test_grids_filter_by_region(session, client, login):
    rid = region_id(session, "330428100")
    rows = client.get("/api/v1/grids", params={"region_id": rid}, headers=login("officer1")).json()
    assert rows and {r["region_id"] for r in rows} == {rid}


def test_users_list_scope(session, client, login):
    assert len(client.get("/api/v1/users", params={"limit": 1000}, headers=login("admin")).json()) == count(session, User)
    officers = client.get("/api/v1/users", params={"role": "officer"}, headers=login("supervisor1")).json()
    n_officers = session.exec(select(func.count()).select_from(User).where(User.role == "officer")).one()
    assert len(officers) == n_officers >= 12 and {u["role"] for u in officers} == {"officer"}
    own = client.get("/api/v1/users", headers=login("ent1")).json()
    assert [u["username"] for u in own] == ["ent1"]
    assert all("password_hash" not in u for u in own)


def test_enterprise_search(session, client, login):
    ent = f.enterprise_of(session, "ent1")
    by_uscc = client.get("/api/v1/enterprises", params={"q": ent.uscc.lower()}, headers=login("admin")).json()
    assert [e["id"] for e in by_uscc] == [ent.id]
    by_name = client.get("/api/v1/enterprises", params={"q": ent.name[:4]}, headers=login("admin")).json()
    assert ent.id in {e["id"] for e in by_name}
    everything = client.get("/api/v1/enterprises", params={"limit": 20}, headers=login("admin")).json()
    page = client.get("/api/v1/enterprises", params={"limit": 5, "offset": 5}, headers=login("admin")).json()
    assert [e["id"] for e in page] == [e["id"] for e in everything[5:10]]


# --------------------------------------------------------------------------- admin CRUD

def test_admin_region_and_grid(session, client, login):
    h = login("admin")
    county = region_id(session, "330428")
    resp = client.post("/api/v1/regions", json={"code": "330428106", "name": "  新港镇 ", "kind": "town",
                                                "parent_id": county}, headers=h)
    assert resp.status_code == 201, resp.text
    town = resp.json()
    assert town["name"] == "新港镇" and town["parent_id"] == county and town["kind"] == "town"
    assert town["id"] in {r["id"] for r in client.get("/api/v1/regions", headers=h).json()}

    resp = client.post("/api/v1/grids", json={"code": "330428106-01", "name": "新港镇工业区网格",
                                              "region_id": town["id"]}, headers=h)
    assert resp.status_code == 201, resp.text
    grid = resp.json()
    assert grid["region_id"] == town["id"]
    rows = client.get("/api/v1/grids", params={"region_id": town["id"]}, headers=h).json()
    assert [g["code"] for g in rows] == ["330428106-01"]
    # a town supervisor of the new town sees its subtree (the new grid) only
    assert session.get(Grid, grid["id"]).region_id == town["id"]


def test_admin_region_without_parent_is_a_root(client, login):
    resp = client.post("/api/v1/regions", json={"code": "999999", "name": "另一县", "kind": "county"},
                       headers=login("admin"))
    assert resp.status_code == 201 and resp.json()["parent_id"] is None


def test_admin_department(session, client, login):
    h = login("admin")
    resp = client.post("/api/v1/departments", json={"code": "SWGLJ", "name": "青禾县商务局"}, headers=h)
    assert resp.status_code == 201, resp.text
    dept = resp.json()
    assert dept["is_active"] is True
    resp = client.patch(f"/api/v1/departments/{dept['id']}", json={"name": "青禾县商务和投资促进局"}, headers=h)
    assert resp.status_code == 200 and resp.json()["name"] == "青禾县商务和投资促进局"
    resp = client.patch(f"/api/v1/departments/{dept['id']}", json={"is_active": False}, headers=h)
    assert resp.status_code == 200 and resp.json()["is_active"] is False
    assert resp.json()["name"] == "青禾县商务和投资促进局"  # PATCH changes only what is given
    # keeping its own name is not a duplicate
    assert client.patch(f"/api/v1/departments/{dept['id']}", json={"name": "青禾县商务和投资促进局"},
                        headers=h).status_code == 200


def test_admin_category(session, client, login):
    h = login("admin")
    rsj = f.department(session, "RSJ").id
    resp = client.post("/api/v1/categories", json={"code": "training", "name": "培训服务", "service_type": "matching"},
                       headers=h)
    assert resp.status_code == 201, resp.text
    root = resp.json()
    assert root["service_type"] == "matching" and root["parent_id"] is None
    resp = client.post("/api/v1/categories", json={"code": "training.skills", "name": "技能培训",
                                                   "parent_id": root["id"], "default_department_id": rsj}, headers=h)
    assert resp.status_code == 201, resp.text
    child = resp.json()
    assert child["service_type"] == "matching"  # inherited
    assert child["default_department_id"] == rsj
    resp = client.patch(f"/api/v1/categories/{child['id']}",
                        json={"default_department_id": f.department(session, "JXJ").id, "name": "职业技能培训"},
                        headers=h)
    assert resp.status_code == 200
    assert resp.json()["name"] == "职业技能培训" and resp.json()["default_department_id"] != rsj
    # a child naming its parent's service type explicitly is fine
    resp = client.post("/api/v1/categories", json={"code": "training.lang", "name": "语言培训",
                                                   "parent_id": root["id"], "service_type": "matching"}, headers=h)
    assert resp.status_code == 201
    # the new category is usable at once: submit and dispatch to its default department
    ticket = f.make_ticket(session, "dispatched", category_code="training.skills")
    assert ticket.service_type == "matching"


def test_admin_enterprise(session, client, login):
    h = login("admin")
    grid = grid_id(session, "330428400-01")
    officer = f.user(session, "officer1").id
    body = {"uscc": NEW_USCC.lower(), "name": "青禾新材料有限公司", "industry": "新材料", "grid_id": grid,
            "tags": ["规上", "专精特新", "规上"], "contact_name": "王经理", "contact_phone": "13800000000",
            "address": "经开区创业路1号", "officer_id": officer}
    resp = client.post("/api/v1/enterprises", json=body, headers=h)
    assert resp.status_code == 201, resp.text
    ent = resp.json()
    assert ent["uscc"] == NEW_USCC  # normalised to upper case
    assert ent["tags"] == ["规上", "专精特新"]  # de-duplicated
    assert client.get(f"/api/v1/enterprises/{ent['id']}", headers=login("officer1")).status_code == 200
    resp = client.patch(f"/api/v1/enterprises/{ent['id']}", json={"tags": ["重点"], "officer_id": None}, headers=h)
    assert resp.status_code == 200
    assert resp.json()["tags"] == ["重点"] and resp.json()["officer_id"] is None
    assert resp.json()["name"] == "青禾新材料有限公司"


def test_admin_user_lifecycle(session, client, login):
    h = login("admin")
    grids = [grid_id(session, "330428402-01"), grid_id(session, "330428402-02")]
    resp = client.post("/api/v1/users", json={"username": "officer99", "full_name": "新专员",
                                              "password": "new-officer-2026", "role": "officer",
                                              "grid_ids": grids + grids[:1], "phone": "13900000000"}, headers=h)
    assert resp.status_code == 201, resp.text
    user = resp.json()
    assert user["role"] == "officer" and "password" not in user and "password_hash" not in user
    links = session.exec(select(OfficerGrid.grid_id).where(OfficerGrid.officer_id == user["id"])).all()
    assert sorted(links) == sorted(grids)
    # the new officer can log in (Argon2) and sees the enterprises of their grids
    token = client.post("/api/v1/auth/token", data={"username": "officer99", "password": "new-officer-2026"})
    assert token.status_code == 200, token.text
    auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
    assert client.get("/api/v1/me", headers=auth).json()["username"] == "officer99"
    ents = client.get("/api/v1/enterprises", params={"limit": 1000}, headers=auth).json()
    assert ents and {e["grid_id"] for e in ents} <= set(grids)

    # deactivate: the token stops working and login fails
    resp = client.patch(f"/api/v1/users/{user['id']}", json={"is_active": False}, headers=h)
    assert resp.status_code == 200 and resp.json()["is_active"] is False
    assert client.get("/api/v1/me", headers=auth).status_code == 401
    assert client.post("/api/v1/auth/token",
                       data={"username": "officer99", "password": "new-officer-2026"}).status_code == 401


def test_admin_changes_a_password(session, client, login):
    uid = f.user(session, "ent5").id
    resp = client.patch(f"/api/v1/users/{uid}", json={"password": "changed-pass-2026", "full_name": "新联系人"},
                        headers=login("admin"))
    assert resp.status_code == 200 and resp.json()["full_name"] == "新联系人"
    assert client.post("/api/v1/auth/token", data={"username": "ent5", "password": f.DEMO_PASSWORD}).status_code == 401
    assert client.post("/api/v1/auth/token", data={"username": "ent5", "password": "changed-pass-2026"}).status_code == 200


@pytest.mark.parametrize(("role", "scope"), [("enterprise", "enterprise_id"), ("department", "department_id"),
                                             ("supervisor", "region_id"), ("admin", None)])
def test_admin_creates_users_of_every_role(session, client, login, role, scope):
    values = {"enterprise_id": f.enterprise_of(session, "ent20").id, "department_id": f.department(session, "SFJ").id,
              "region_id": region_id(session, "330428101")}
    body = {"username": f"new_{role}", "full_name": "新用户", "password": "long-enough-1", "role": role}
    if scope:
        body[scope] = values[scope]
    resp = client.post("/api/v1/users", json=body, headers=login("admin"))
    assert resp.status_code == 201, resp.text
    if scope:
        assert resp.json()[scope] == values[scope]
    # the new user works at once (token made directly: no Argon2 round trip)
    assert client.get("/api/v1/me", headers=login(f"new_{role}")).json()["role"] == role


def test_scope_fields_of_other_roles_are_dropped(session, client, login):
    body = {"username": "new_admin2", "full_name": "管理员二", "password": "long-enough-1", "role": "admin",
            "enterprise_id": f.enterprise_of(session, "ent1").id, "department_id": f.department(session, "RSJ").id}
    data = client.post("/api/v1/users", json=body, headers=login("admin")).json()
    assert data["enterprise_id"] is None and data["department_id"] is None


# --------------------------------------------------------------------------- non-admin writes

def _write_requests(session: Session) -> list[tuple[str, str, dict[str, Any], type]]:
    county = region_id(session, "330428")
    dept = f.department(session, "RSJ").id
    cat = f.category(session, "problem.labour").id
    ent = f.enterprise_of(session, "ent1").id
    officer = f.user(session, "officer1").id
    return [
        ("POST", "/api/v1/regions", {"code": "r-x", "name": "x", "kind": "town", "parent_id": county}, Region),
        ("POST", "/api/v1/grids", {"code": "g-x", "name": "x", "region_id": county}, Grid),
        ("POST", "/api/v1/departments", {"code": "DX", "name": "新部门"}, Department),
        ("PATCH", f"/api/v1/departments/{dept}", {"name": "改名"}, Department),
        ("POST", "/api/v1/categories", {"code": "cx", "name": "x", "service_type": "problem"}, Category),
        ("PATCH", f"/api/v1/categories/{cat}", {"name": "改名"}, Category),
        ("POST", "/api/v1/enterprises", {"uscc": NEW_USCC, "name": "x"}, Enterprise),
        ("PATCH", f"/api/v1/enterprises/{ent}", {"name": "改名"}, Enterprise),
        ("POST", "/api/v1/users", {"username": "ux", "full_name": "x", "password": "long-enough-1",
                                   "role": "admin"}, User),
        ("PATCH", f"/api/v1/users/{officer}", {"full_name": "改名"}, User),
    ]


def _state(session: Session, model) -> list[str]:
    session.expire_all()
    return sorted(r.model_dump_json() for r in session.exec(select(model)).all())


@pytest.mark.parametrize("username", ["officer1", "supervisor1", "dept_rsj", "ent1"])
def test_non_admin_writes_are_403(session, client, login, username):
    headers = login(username)
    for method, path, body, model in _write_requests(session):
        before = _state(session, model)
        resp = client.request(method, path, json=body, headers=headers)
        assert resp.status_code == 403, (method, path, resp.text)
        assert resp.headers["content-type"].startswith(PROBLEM)
        assert resp.json()["type"] == "/problems/forbidden"
        assert _state(session, model) == before, (method, path)


def test_anonymous_writes_are_401(session, client):
    for method, path, body, model in _write_requests(session):
        before = count(session, model)
        resp = client.request(method, path, json=body)
        assert resp.status_code == 401, (method, path)
        assert count(session, model) == before


def test_user_cannot_promote_themselves(session, client, login):
    uid = f.user(session, "officer1").id
    resp = client.patch(f"/api/v1/users/{uid}", json={"role": "admin"}, headers=login("officer1"))
    assert resp.status_code in (403, 422)
    assert f.user(session, "officer1").role == "officer"


# --------------------------------------------------------------------------- duplicates

@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/v1/regions", {"code": "330428", "name": "重复县", "kind": "county"}, "code"),
    ("/api/v1/grids", {"code": "330428100-01", "name": "重复网格", "region_id": "@town"}, "code"),
    ("/api/v1/departments", {"code": "RSJ", "name": "另一个人社局"}, "code"),
    ("/api/v1/departments", {"code": "RSJ2", "name": "青禾县教育局"}, "name"),
    ("/api/v1/categories", {"code": "problem.labour", "name": "重复", "parent_id": "@problem"}, "code"),
    ("/api/v1/categories", {"code": "problem", "name": "重复", "service_type": "problem"}, "code"),
    ("/api/v1/enterprises", {"uscc": "91330428MAPE7MH831", "name": "冒名企业"}, "uscc"),
    ("/api/v1/enterprises", {"uscc": "91330428mape7mh831", "name": "冒名企业"}, "uscc"),  # case-insensitive
    ("/api/v1/users", {"username": "ent1", "full_name": "x", "password": "long-enough-1", "role": "admin"},
     "username"),
])
def test_duplicates_are_409_naming_the_field(session, client, login, path, body, field):
    refs = {"@town": region_id(session, "330428100"), "@problem": f.category(session, "problem").id}
    body = {k: refs.get(v, v) if isinstance(v, str) else v for k, v in body.items()}
    model = {"regions": Region, "grids": Grid, "departments": Department, "categories": Category,
             "enterprises": Enterprise, "users": User}[path.rsplit("/", 1)[1]]
    before = count(session, model)
    body_409 = conflict(client.post(path, json=body, headers=login("admin")), field)
    assert field in body_409["detail"]
    assert count(session, model) == before


def test_renaming_a_department_to_a_taken_name_is_409(session, client, login):
    dept = f.department(session, "RSJ")
    conflict(client.patch(f"/api/v1/departments/{dept.id}", json={"name": "青禾县教育局"}, headers=login("admin")),
             "name")
    assert f.department(session, "RSJ").name == "青禾县人力资源和社会保障局"


def test_created_twice_second_is_409(session, client, login):
    h = login("admin")
    before = count(session, Department)
    body = {"code": "TWICE", "name": "两次创建的部门"}
    assert client.post("/api/v1/departments", json=body, headers=h).status_code == 201
    conflict(client.post("/api/v1/departments", json=body, headers=h), "code")
    assert count(session, Department) == before + 1

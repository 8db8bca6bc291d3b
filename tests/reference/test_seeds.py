"""Seed data and its idempotent loader (seeds/)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy import event
from sqlmodel import Session, SQLModel, create_engine, func, select

import service.models  # noqa: F401  (registers every table)
from seeds.enterprises import GridInfo, generate_enterprises
from seeds.loader import COUNT_KEYS, SeedDataError, load_seeds
from service.auth.security import verify_password
from service.categories.models import Category
from service.departments.models import Department
from service.enterprises.models import ENTERPRISE_TAGS, Enterprise
from service.enterprises.uscc import is_valid_uscc
from service.regions.models import Grid, Region
from service.sla.models import SlaPolicy
from service.users.models import OfficerGrid, User

DATA = Path(__file__).resolve().parents[2] / "seeds" / "data"
DEMO_PASSWORD = "qifu-demo-2026"
TABLES = {"regions": Region, "grids": Grid, "departments": Department, "categories": Category,
          "users": User, "officer_grids": OfficerGrid, "enterprises": Enterprise,
          "sla_policies": SlaPolicy}


def _engine() -> sa.Engine:
    engine = create_engine("sqlite://")

    @event.listens_for(engine, "connect")
    def _fk_on(dbapi_conn, _record):
        dbapi_conn.execute("PRAGMA foreign_keys=ON")

    SQLModel.metadata.create_all(engine)
    return engine


def _row_counts(session: Session) -> dict[str, int]:
    return {k: session.exec(select(func.count()).select_from(m)).one() for k, m in TABLES.items()}


@pytest.fixture(scope="module")
def loaded() -> Iterator[tuple[Session, dict[str, int], dict[str, int]]]:
    """One database loaded twice (committed in between): (session, first counts, second counts)."""
    engine = _engine()
    with Session(engine) as session:
        first = load_seeds(session, DATA)
        session.commit()
        second = load_seeds(session, DATA)
        session.commit()
        yield session, first, second
    engine.dispose()


def test_second_load_creates_nothing(loaded):
    session, first, second = loaded
    assert set(first) == set(COUNT_KEYS)
    assert second == dict.fromkeys(COUNT_KEYS, 0)
    assert _row_counts(session) == first
    assert first["enterprises"] == 300
    assert first["regions"] >= 10 and first["grids"] >= 30


def test_loader_does_not_commit():
    engine = _engine()
    with Session(engine) as session:
        counts = load_seeds(session, DATA, enterprises=3)
        assert counts["enterprises"] == 3
        session.rollback()
        assert all(v == 0 for v in _row_counts(session).values())
    engine.dispose()


def test_more_enterprises_later_only_adds():
    engine = _engine()
    with Session(engine) as session:
        small = load_seeds(session, DATA, enterprises=5)
        bigger = load_seeds(session, DATA, enterprises=25)
        assert small["enterprises"] == 5 and small["users"] > 0
        assert bigger["enterprises"] == 20
        assert bigger["users"] == 15  # ent6..ent20
        assert bigger["regions"] == bigger["categories"] == 0
    engine.dispose()


def test_region_tree_and_grids(loaded):
    session, _, _ = loaded
    regions = session.exec(select(Region)).all()
    counties = [r for r in regions if r.kind == "county"]
    assert len(counties) == 1 and counties[0].parent_id is None
    county = counties[0]
    assert len(county.code) == 6 and county.code.isdigit()
    others = [r for r in regions if r.kind != "county"]
    assert {r.kind for r in others} == {"town", "street", "park"}
    assert all(r.parent_id == county.id for r in others)
    assert sum(r.kind == "park" for r in others) >= 2
    for region in others:
        n = session.exec(select(func.count()).select_from(Grid).where(Grid.region_id == region.id)).one()
        assert 3 <= n <= 6, region.name


def test_departments(loaded):
    session, _, _ = loaded
    departments = session.exec(select(Department)).all()
    assert 14 <= len(departments) <= 18
    names = {d.name for d in departments}
    assert "青禾县人力资源和社会保障局" in names and "国网青禾县供电公司" in names
    assert len({d.code for d in departments}) == len(departments)


def test_category_tree(loaded):
    session, _, _ = loaded
    categories = session.exec(select(Category)).all()
    by_id = {c.id: c for c in categories}
    roots = {c.code for c in categories if c.parent_id is None}
    assert roots == {"problem", "consultation", "agency", "matching"}
    parents = {c.parent_id for c in categories}
    leaves = [c for c in categories if c.id not in parents]
    assert all(c.default_department_id is not None for c in leaves)
    codes = {c.code for c in categories}
    assert {"problem.other", "problem.land", "problem.labour", "problem.power", "problem.water_gas",
            "problem.schooling", "consultation.policy", "agency.project", "matching.financing"} <= codes
    for c in categories:
        root = c
        while root.parent_id is not None:
            root = by_id[root.parent_id]
        assert c.service_type == root.code
        assert c.code.split(".")[0] == root.code
    rsj = session.exec(select(Department).where(Department.code == "RSJ")).one()
    labour = next(c for c in categories if c.code == "problem.labour")
    assert labour.default_department_id == rsj.id


def test_enterprises(loaded):
    session, _, _ = loaded
    enterprises = session.exec(select(Enterprise).order_by(Enterprise.id)).all()
    assert len(enterprises) == 300
    assert all(is_valid_uscc(e.uscc) for e in enterprises)
    assert all(e.uscc.startswith("91330428") for e in enterprises)
    assert len({e.uscc for e in enterprises}) == len({e.name for e in enterprises}) == 300
    assert all(set(e.tags) <= set(ENTERPRISE_TAGS) for e in enterprises)
    key = [e for e in enterprises if "重点" in e.tags]
    assert 0.1 * 300 <= len(key) <= 0.3 * 300
    assert all(e.officer_id is not None for e in key)  # every key enterprise has a named officer
    assert all(e.grid_id and e.contact_name and e.contact_phone and e.address and e.industry
               for e in enterprises)
    # the assigned officer is the officer of the enterprise's grid, when it has one
    grid_officers: dict[int, set[int]] = {}
    for og in session.exec(select(OfficerGrid)):
        grid_officers.setdefault(og.grid_id, set()).add(og.officer_id)
    for e in enterprises:
        if e.grid_id in grid_officers:
            assert e.officer_id in grid_officers[e.grid_id]


def test_demo_users(loaded):
    session, _, _ = loaded

    def user(username: str) -> User:
        return session.exec(select(User).where(User.username == username)).one()

    assert user("admin").role == "admin"
    sup1, sup2 = user("supervisor1"), user("supervisor2")
    assert sup1.role == sup2.role == "supervisor"
    assert sup1.region_id is None and sup2.region_id is not None
    officer1 = user("officer1")
    assert officer1.role == "officer"
    officer_grids = session.exec(select(OfficerGrid).where(OfficerGrid.officer_id == officer1.id)).all()
    assert 1 <= len(officer_grids) <= 2
    dept_rsj = user("dept_rsj")
    assert dept_rsj.role == "department"
    assert session.get(Department, dept_rsj.department_id).code == "RSJ"
    ent1 = user("ent1")
    assert ent1.role == "enterprise"
    first_enterprise = session.exec(select(Enterprise).order_by(Enterprise.id)).first()
    assert ent1.enterprise_id == first_enterprise.id
    assert first_enterprise.name == "青禾恒达精密机械有限公司"
    assert first_enterprise.officer_id == officer1.id
    assert verify_password(DEMO_PASSWORD, ent1.password_hash)

    users = session.exec(select(User)).all()
    assert len({u.password_hash for u in users}) == 1  # hashed once, shared
    departments = session.exec(select(Department)).all()
    handlers = {u.department_id for u in users if u.role == "department"}
    assert handlers == {d.id for d in departments}
    officers = [u for u in users if u.role == "officer"]
    assert 10 <= len(officers) <= 14
    assert sorted(u.username for u in users if u.role == "enterprise") == sorted(f"ent{i}" for i in range(1, 21))


def test_generation_is_deterministic_and_prefix_stable():
    spec = yaml.safe_load((DATA / "enterprises.yaml").read_text(encoding="utf-8"))
    # the pinned enterprise #1 names grid 330428400-01, so it must be among the grids
    grids = [GridInfo(f"G{i}", "R1", "某镇", "town") for i in range(5)]
    grids.append(GridInfo("330428400-01", "R2", "某园区", "park"))
    many = generate_enterprises(spec, grids, "330428", "青禾县", 40)
    again = generate_enterprises(spec, grids, "330428", "青禾县", 10)
    assert again == many[:10]
    assert all(is_valid_uscc(e.uscc) for e in many)


def test_bad_data_is_refused(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(DATA, data)
    doc = yaml.safe_load((data / "categories.yaml").read_text(encoding="utf-8"))
    del doc["categories"][0]["children"][0]["department"]
    (data / "categories.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    engine = _engine()
    with Session(engine) as session, pytest.raises(SeedDataError, match="no department"):
        load_seeds(session, data, enterprises=0)
    engine.dispose()

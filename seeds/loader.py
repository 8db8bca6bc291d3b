"""Idempotent loader of the seed data in ``seeds/data/`` (ARCHITECTURE "Seeds").

Everything is matched by its natural key, so loading twice creates nothing twice:

============== ===================== ==========================================================
table          natural key           on a second load
============== ===================== ==========================================================
region         ``code``              name, kind and parent updated to match ``regions.yaml``
grid           ``code``              name and region updated to match ``regions.yaml``
department     ``code``              name updated to match ``departments.yaml``
category       ``code``              name, parent, service type and default department updated
user_account   ``username``          left alone (a changed password or name stays changed)
officer_grid   (officer, grid)       missing pairs added; pairs are never removed
enterprise     ``uscc``              left alone (edits made in the application survive)
============== ===================== ==========================================================

The loader never commits: it adds and flushes on the caller's session; the caller commits (or
rolls back). Usage::

    from service.db import session_scope
    from seeds.loader import load_seeds

    with session_scope() as session:
        counts = load_seeds(session)          # {"regions": 12, "grids": 43, ...} on an empty DB

or from the shell: ``uv run qifu seed [--enterprises N]`` (``qifu/cli.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from sqlmodel import Session, SQLModel, select

import service.models  # noqa: F401  (registers every table)
from seeds.enterprises import EnterpriseSeed, GridInfo, generate_enterprises
from service.auth.security import hash_password
from service.categories.models import Category
from service.common.enums import RegionKind, Role, ServiceType
from service.config import get_settings
from service.departments.models import Department
from service.enterprises.models import Enterprise
from service.regions.models import Grid, Region
from service.sla.models import SlaPolicy
from service.users.models import OfficerGrid, User

COUNT_KEYS = ("regions", "grids", "departments", "categories", "users", "officer_grids", "enterprises",
              "sla_policies")
_CHUNK = 500  # keeps IN (...) lists well below every backend's parameter limit

M = TypeVar("M", bound=SQLModel)


class SeedDataError(ValueError):
    """The seed files are inconsistent (unknown code, missing default department, ...)."""


def load_seeds(session: Session, data_dir: Path | None = None, enterprises: int = 300) -> dict[str, int]:
    """Load (upsert) the seed data into ``session`` without committing.

    Args:
        session: an open session; rows are added and flushed, never committed.
        data_dir: the folder with ``regions.yaml``, ``departments.yaml``, ``categories.yaml``,
            ``users.yaml`` and ``enterprises.yaml``. Default: ``Settings.seeds_dir``
            (``seeds/data`` of this repository unless ``QIFU_SEEDS_DIR`` says otherwise).
        enterprises: how many demo enterprises to generate (numbers ``1..enterprises``; each is
            the same on every run, so a larger number only adds). ``0`` loads reference data and
            staff only.

    Returns:
        The number of rows **created** by this call per table, keys
        ``regions, grids, departments, categories, users, officer_grids, enterprises, sla_policies``; a second
        load of the same data returns all zeros. (Reference rows whose fields changed in the files
        are updated in place and not counted.)

    Raises:
        SeedDataError: the files refer to an unknown code, a leaf category has no department, etc.
    """
    data_dir = Path(data_dir) if data_dir is not None else get_settings().seeds_dir
    regions_doc = _read(data_dir / "regions.yaml")
    departments_doc = _read(data_dir / "departments.yaml")
    categories_doc = _read(data_dir / "categories.yaml")
    users_doc = _read(data_dir / "users.yaml")
    enterprises_doc = _read(data_dir / "enterprises.yaml")

    counts = dict.fromkeys(COUNT_KEYS, 0)
    password_hash = _OnceHash(str(users_doc["demo_password"]))

    regions = _load_regions(session, regions_doc["regions"], counts)
    grids = _load_grids(session, regions_doc["grids"], regions, counts)
    departments = _load_departments(session, departments_doc["departments"], counts)
    _load_categories(session, categories_doc["categories"], departments, counts)
    users = _load_staff(session, users_doc, regions, departments, password_hash, counts)
    grid_officers = _load_officer_grids(session, users_doc.get("officers") or [], users, grids, counts)
    if enterprises > 0:
        _load_enterprises(session, enterprises_doc, enterprises, regions, grids, users, grid_officers,
                          password_hash, counts)
    _load_sla_policies(session, data_dir / "sla_policies.yaml", counts)
    session.flush()
    return counts


# --------------------------------------------------------------------------------------------- files


def _read(path: Path) -> dict[str, Any]:
    """Parse one YAML file (UTF-8) into a mapping."""
    with path.open(encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    if not isinstance(doc, dict):
        raise SeedDataError(f"{path.name}: expected a mapping at the top level")
    return doc


class _OnceHash:
    """The demo password hashed at most once per load, and only if some user is created
    (Argon2 is deliberately slow)."""

    def __init__(self, password: str) -> None:
        self._password = password
        self._hash: str | None = None

    def __call__(self) -> str:
        if self._hash is None:
            self._hash = hash_password(self._password)
        return self._hash


# ------------------------------------------------------------------------------------------ helpers


def _fetch(session: Session, model: type[M], key: str, values: Iterable[Any]) -> dict[Any, M]:
    """Existing rows of ``model`` whose ``key`` column is in ``values``, by key."""
    wanted = list(dict.fromkeys(values))
    column = getattr(model, key)
    found: dict[Any, M] = {}
    for start in range(0, len(wanted), _CHUNK):
        for row in session.exec(select(model).where(column.in_(wanted[start:start + _CHUNK]))):
            found[getattr(row, key)] = row
    return found


def _upsert(
    session: Session,
    model: type[M],
    key: str,
    rows: Sequence[Mapping[str, Any]],
    counts: dict[str, int],
    count_key: str,
    *,
    update: bool,
    on_create: Callable[[], Mapping[str, Any]] | None = None,
) -> dict[Any, M]:
    """Create the rows missing by ``key``; with ``update``, set changed fields on existing ones.

    ``on_create`` supplies extra fields for new rows only (the password hash). Flushes so that every
    returned row has its id.
    """
    existing = _fetch(session, model, key, (r[key] for r in rows))
    for values in rows:
        row = existing.get(values[key])
        if row is None:
            row = model(**values, **(on_create() if on_create else {}))
            session.add(row)
            existing[values[key]] = row
            counts[count_key] += 1
        elif update:
            for name, value in values.items():
                if getattr(row, name) != value:
                    setattr(row, name, value)
    session.flush()
    return existing


def _tree_levels(nodes: Sequence[Mapping[str, Any]], parent_key: str, what: str) -> list[list[Mapping[str, Any]]]:
    """Group tree nodes by depth (roots first); a parent must be one of ``nodes``."""
    by_code = {n["code"]: n for n in nodes}
    if len(by_code) != len(nodes):
        raise SeedDataError(f"{what}: duplicate code")
    depth: dict[str, int] = {}

    def depth_of(code: str, seen: tuple[str, ...] = ()) -> int:
        if code in depth:
            return depth[code]
        if code in seen:
            raise SeedDataError(f"{what}: cycle through {code}")
        parent = by_code[code].get(parent_key)
        if parent is not None and parent not in by_code:
            raise SeedDataError(f"{what}: {code} has unknown parent {parent}")
        depth[code] = 0 if parent is None else depth_of(parent, (*seen, code)) + 1
        return depth[code]

    levels: list[list[Mapping[str, Any]]] = []
    for node in nodes:
        d = depth_of(node["code"])
        while len(levels) <= d:
            levels.append([])
        levels[d].append(node)
    return levels


def _lookup(mapping: Mapping[str, M], code: Any, what: str) -> M:
    try:
        return mapping[str(code)]
    except KeyError:
        raise SeedDataError(f"{what}: unknown code {code}") from None


# ----------------------------------------------------------------------------------- reference data


def _load_regions(session: Session, nodes: list[dict[str, Any]], counts: dict[str, int]) -> dict[str, Region]:
    """``regions.yaml`` ``regions``: code, name, kind (county|town|street|park), parent (code|null)."""
    kinds = {k.value for k in RegionKind}
    nodes = [{**n, "code": str(n["code"]), "parent": None if n.get("parent") is None else str(n["parent"])}
             for n in nodes]
    for n in nodes:
        if n["kind"] not in kinds:
            raise SeedDataError(f"regions.yaml: {n['code']} has unknown kind {n['kind']}")
    regions: dict[str, Region] = {}
    for level in _tree_levels(nodes, "parent", "regions.yaml"):
        rows = [{"code": n["code"], "name": n["name"], "kind": n["kind"],
                 "parent_id": regions[n["parent"]].id if n["parent"] else None} for n in level]
        regions.update(_upsert(session, Region, "code", rows, counts, "regions", update=True))
    return regions


def _load_grids(session: Session, items: list[dict[str, Any]], regions: dict[str, Region],
                counts: dict[str, int]) -> dict[str, Grid]:
    """``regions.yaml`` ``grids``: code, name, region (code of a street, town or park)."""
    rows = [{"code": str(g["code"]), "name": g["name"],
             "region_id": _lookup(regions, g["region"], f"regions.yaml grid {g['code']}").id} for g in items]
    return _upsert(session, Grid, "code", rows, counts, "grids", update=True)


def _load_departments(session: Session, items: list[dict[str, Any]],
                      counts: dict[str, int]) -> dict[str, Department]:
    """``departments.yaml`` ``departments``: code, name."""
    rows = [{"code": str(d["code"]), "name": d["name"]} for d in items]
    return _upsert(session, Department, "code", rows, counts, "departments", update=True)


def _load_categories(session: Session, roots: list[dict[str, Any]], departments: dict[str, Department],
                     counts: dict[str, int]) -> dict[str, Category]:
    """``categories.yaml`` ``categories``: a tree of {code, name, children | department}.

    A root's code is its service type; every descendant inherits it. Leaves must name a department.
    """
    service_types = {s.value for s in ServiceType}
    flat: list[dict[str, Any]] = []

    def walk(node: dict[str, Any], parent: str | None, service_type: str) -> None:
        children = node.get("children") or []
        department = node.get("department")
        if not children and department is None:
            raise SeedDataError(f"categories.yaml: leaf {node['code']} has no department")
        flat.append({"code": node["code"], "name": node["name"], "parent": parent,
                     "service_type": service_type, "department": department})
        for child in children:
            walk(child, node["code"], service_type)

    for root in roots:
        if root["code"] not in service_types:
            raise SeedDataError(f"categories.yaml: top-level code {root['code']} is not a service type")
        walk(root, None, root["code"])

    categories: dict[str, Category] = {}
    for level in _tree_levels(flat, "parent", "categories.yaml"):
        rows = [{"code": n["code"], "name": n["name"], "service_type": n["service_type"],
                 "parent_id": categories[n["parent"]].id if n["parent"] else None,
                 "default_department_id": (
                     _lookup(departments, n["department"], f"categories.yaml {n['code']}").id
                     if n["department"] is not None else None)}
                for n in level]
        categories.update(_upsert(session, Category, "code", rows, counts, "categories", update=True))
    return categories


# -------------------------------------------------------------------------------------------- users


def _load_staff(session: Session, doc: dict[str, Any], regions: dict[str, Region],
                departments: dict[str, Department], password_hash: _OnceHash,
                counts: dict[str, int]) -> dict[str, User]:
    """``users.yaml``: admins, supervisors (region code or null), officers, department handlers."""
    rows: list[dict[str, Any]] = []
    for u in doc.get("admins") or []:
        rows.append({"username": u["username"], "full_name": u["full_name"], "role": Role.admin.value})
    for u in doc.get("supervisors") or []:
        region = u.get("region")
        rows.append({"username": u["username"], "full_name": u["full_name"], "role": Role.supervisor.value,
                     "region_id": None if region is None
                     else _lookup(regions, region, f"users.yaml {u['username']}").id})
    for u in doc.get("officers") or []:
        rows.append({"username": u["username"], "full_name": u["full_name"], "role": Role.officer.value,
                     "phone": None if u.get("phone") is None else str(u["phone"])})
    for u in doc.get("departments") or []:
        rows.append({"username": u["username"], "full_name": u["full_name"], "role": Role.department.value,
                     "department_id": _lookup(departments, u["department"], f"users.yaml {u['username']}").id})
    return _upsert(session, User, "username", rows, counts, "users", update=False,
                   on_create=lambda: {"password_hash": password_hash()})


def _load_officer_grids(session: Session, officers: list[dict[str, Any]], users: dict[str, User],
                        grids: dict[str, Grid], counts: dict[str, int]) -> dict[str, list[User]]:
    """Link each officer to the grids listed in ``users.yaml``; return grid code -> officers (file order)."""
    grid_officers: dict[str, list[User]] = {}
    wanted: list[tuple[User, Grid]] = []
    for o in officers:
        for code in o.get("grids") or []:
            grid = _lookup(grids, code, f"users.yaml {o['username']} grids")
            wanted.append((users[o["username"]], grid))
            grid_officers.setdefault(str(code), []).append(users[o["username"]])
    officer_ids = list({u.id for u, _ in wanted})
    existing: set[tuple[int, int]] = set()
    for start in range(0, len(officer_ids), _CHUNK):
        stmt = select(OfficerGrid).where(OfficerGrid.officer_id.in_(officer_ids[start:start + _CHUNK]))
        existing.update((og.officer_id, og.grid_id) for og in session.exec(stmt))
    for user, grid in wanted:
        pair = (user.id, grid.id)
        if pair not in existing:
            session.add(OfficerGrid(officer_id=user.id, grid_id=grid.id))
            existing.add(pair)
            counts["officer_grids"] += 1
    session.flush()
    return grid_officers


# -------------------------------------------------------------------------------------- enterprises


def _load_enterprises(session: Session, spec: dict[str, Any], count: int, regions: dict[str, Region],
                      grids: dict[str, Grid], users: dict[str, User], grid_officers: dict[str, list[User]],
                      password_hash: _OnceHash, counts: dict[str, int]) -> None:
    """Generate ``count`` enterprises (``seeds/enterprises.py``), insert the missing ones by USCC,
    then the enterprise users ``ent1..entN``.

    The assigned officer is the first officer of the enterprise's grid; a key (重点) enterprise in a
    grid without an officer gets an officer of the same region, else one of the county's officers
    in turn (SPEC: every key enterprise has a named service officer).
    """
    county = next((r for r in regions.values() if r.kind == RegionKind.county.value), None)
    if county is None:
        raise SeedDataError("regions.yaml: no region of kind county (its code goes into credit codes)")
    region_by_id = {r.id: r for r in regions.values()}
    infos = [GridInfo(code=g.code, region_code=region_by_id[g.region_id].code,
                      region_name=region_by_id[g.region_id].name, region_kind=region_by_id[g.region_id].kind)
             for g in grids.values()]
    seeds = generate_enterprises(spec, infos, county.code, county.name, count)

    region_officers: dict[str, list[User]] = {}
    for info in infos:
        for officer in grid_officers.get(info.code, []):
            region_officers.setdefault(info.region_code, [])
            if officer not in region_officers[info.region_code]:
                region_officers[info.region_code].append(officer)
    all_officers = [u for u in users.values() if u.role == Role.officer.value]
    info_by_code = {i.code: i for i in infos}

    def officer_for(item: EnterpriseSeed) -> int | None:
        officers = grid_officers.get(item.grid)
        if officers:
            return officers[0].id
        if "重点" not in item.tags:
            return None
        fallback = region_officers.get(info_by_code[item.grid].region_code) or all_officers
        return fallback[item.number % len(fallback)].id if fallback else None

    rows = [{"uscc": s.uscc, "name": s.name, "industry": s.industry, "grid_id": grids[s.grid].id,
             "tags": list(s.tags), "contact_name": s.contact_name, "contact_phone": s.contact_phone,
             "address": s.address, "latitude": s.latitude, "longitude": s.longitude,
             "contact_email": s.contact_email, "officer_id": officer_for(s)} for s in seeds]
    enterprises = _upsert(session, Enterprise, "uscc", rows, counts, "enterprises", update=False)

    first = min(int(spec.get("users_for_first", 0)), len(seeds))
    user_rows = [{"username": f"ent{s.number}", "full_name": s.contact_name, "role": Role.enterprise.value,
                  "phone": s.contact_phone, "enterprise_id": enterprises[s.uscc].id} for s in seeds[:first]]
    _upsert(session, User, "username", user_rows, counts, "users", update=False,
            on_create=lambda: {"password_hash": password_hash()})


def _load_sla_policies(session: Session, path: Path, counts: dict[str, int]) -> None:
    """SPEC §4 default limits on the service-type roots (``first_reply`` only for consultations,
    ``reply`` for the others). Existing policies are left as an admin set them."""
    if not path.exists():
        return
    doc = _read(path)
    roots = _fetch(session, Category, "code", doc["roots"])
    existing = {(p.category_id, p.priority, p.step) for p in session.exec(select(SlaPolicy)).all()}
    for code in doc["roots"]:
        root = _lookup(roots, code, "category")
        for priority, steps in doc["defaults"].items():
            for step, limit in steps.items():
                consultation = root.service_type == "consultation"
                if (step == "first_reply" and not consultation) or (step == "reply" and consultation):
                    continue
                if (root.id, priority, step) in existing:
                    continue
                session.add(SlaPolicy(category_id=root.id, priority=priority, step=step,
                                      amount=int(limit["amount"]), unit=str(limit["unit"])))
                counts["sla_policies"] += 1

"""Reference-data use cases (SPEC §2): create and update regions, grids, departments, categories,
enterprises and users with their integrity rules. Admin-only writes are enforced by the router."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlmodel import Session, SQLModel, select

from service.auth.security import hash_password
from service.categories.models import Category
from service.common.enums import Role
from service.departments.models import Department
from service.enterprises.models import Enterprise
from service.errors import Conflict, FieldError
from service.reference import schemas
from service.regions.models import Grid, Region
from service.users.models import OfficerGrid, User
from service.users.schemas import UserCreate, UserRoleChange, UserUpdate


def require_row(session: Session, model: type[SQLModel], row_id: int | None, field: str) -> Any:
    """Return ``model`` row ``row_id`` or raise FieldError(422) naming ``field``."""
    if row_id is None:
        return None
    row = session.get(model, row_id)
    if row is None:
        raise FieldError(field, f"{row_id} 不存在")
    return row


def require_unique(session: Session, column, value: Any, field: str, exclude_id: int | None = None) -> None:
    """Raise Conflict(409) naming ``field`` when another row already has ``value`` in ``column``."""
    if value is None:
        return
    model = column.class_
    stmt = select(model.id).where(column == value)
    if exclude_id is not None:
        stmt = stmt.where(model.id != exclude_id)
    if session.exec(stmt).first() is not None:
        raise Conflict(f"{field} “{value}” 已存在", errors=[{"field": field, "message": "已存在"}])


def _apply(row: SQLModel, data: BaseModel) -> None:
    for key, value in data.model_dump(exclude_unset=True).items():
        setattr(row, key, value)


def create_region(session: Session, data: schemas.RegionCreate) -> Region:
    require_unique(session, Region.code, data.code, "code")
    require_row(session, Region, data.parent_id, "parent_id")
    row = Region(**data.model_dump(mode="json"))
    session.add(row)
    session.flush()
    return row


def create_grid(session: Session, data: schemas.GridCreate) -> Grid:
    require_unique(session, Grid.code, data.code, "code")
    require_row(session, Region, data.region_id, "region_id")
    row = Grid(**data.model_dump())
    session.add(row)
    session.flush()
    return row


def create_department(session: Session, data: schemas.DepartmentCreate) -> Department:
    require_unique(session, Department.code, data.code, "code")
    require_unique(session, Department.name, data.name, "name")
    row = Department(**data.model_dump())
    session.add(row)
    session.flush()
    return row


def update_department(session: Session, row: Department, data: schemas.DepartmentUpdate) -> Department:
    require_unique(session, Department.name, data.name, "name", exclude_id=row.id)
    _apply(row, data)
    session.flush()
    return row


def create_category(session: Session, data: schemas.CategoryCreate) -> Category:
    """A root category needs ``service_type``; a child takes its parent's (a different one is 422)."""
    require_unique(session, Category.code, data.code, "code")
    parent = require_row(session, Category, data.parent_id, "parent_id")
    require_row(session, Department, data.default_department_id, "default_department_id")
    if parent is None and data.service_type is None:
        raise FieldError("service_type", "顶级分类必须指定服务类型")
    if parent is not None and data.service_type is not None and data.service_type != parent.service_type:
        raise FieldError("service_type", f"子分类的服务类型须与上级一致（{parent.service_type}）")
    row = Category(code=data.code, name=data.name, parent_id=data.parent_id,
                   service_type=parent.service_type if parent else data.service_type.value,
                   default_department_id=data.default_department_id)
    session.add(row)
    session.flush()
    return row


def update_category(session: Session, row: Category, data: schemas.CategoryUpdate) -> Category:
    require_row(session, Department, data.default_department_id, "default_department_id")
    _apply(row, data)
    session.flush()
    return row


def _require_officer(session: Session, officer_id: int | None) -> None:
    officer = require_row(session, User, officer_id, "officer_id")
    if officer is not None and officer.role != Role.officer:
        raise FieldError("officer_id", f"用户 {officer_id} 不是服务专员")


def create_enterprise(session: Session, data: schemas.EnterpriseCreate) -> Enterprise:
    """Register an enterprise (SPEC §2).

    Raises:
        Conflict (409): the ``uscc`` is taken.
        FieldError (422): unknown ``grid_id`` or ``officer_id``; ``latitude`` without
            ``longitude`` or the reverse (:func:`_check_coordinates`).
    """
    require_unique(session, Enterprise.uscc, data.uscc, "uscc")
    require_row(session, Grid, data.grid_id, "grid_id")
    _require_officer(session, data.officer_id)
    row = Enterprise(**data.model_dump())
    _check_coordinates(row)
    session.add(row)
    session.flush()
    return row


def update_enterprise(session: Session, row: Enterprise, data: schemas.EnterpriseUpdate) -> Enterprise:
    """Change the fields given of an enterprise (``null`` clears an optional one).

    Raises:
        FieldError (422): unknown ``grid_id`` or ``officer_id``; the coordinates would be left
            half set (:func:`_check_coordinates`).
    """
    require_row(session, Grid, data.grid_id, "grid_id")
    _require_officer(session, data.officer_id)
    _apply(row, data)
    _check_coordinates(row)
    session.flush()
    return row


def _check_coordinates(row: Enterprise) -> None:
    """An enterprise's site is both coordinates or neither (WGS 84 degrees, issue 12: Open311 shows
    them as a point).

    Raises:
        FieldError (422): naming the missing one (``longitude`` when only ``latitude`` is set).
    """
    if row.latitude is not None and row.longitude is None:
        raise FieldError("longitude", "经纬度须同时提供：缺少 longitude")
    if row.longitude is not None and row.latitude is None:
        raise FieldError("latitude", "经纬度须同时提供：缺少 latitude")


def create_user(session: Session, data: UserCreate) -> User:
    """Create a login user; the role decides the scope field required (SPEC §1).

    Raises:
        FieldError (422): missing/unknown ``enterprise_id`` (enterprise), ``department_id``
            (department), unknown ``region_id`` or ``grid_ids``.
        Conflict (409): the username is taken.
    """
    require_unique(session, User.username, data.username, "username")
    _check_scope(session, data.role, data.enterprise_id, data.department_id, data.region_id)
    if data.grid_ids and data.role != Role.officer:
        raise FieldError("grid_ids", "只有服务专员可以分配网格")
    for i, grid_id in enumerate(data.grid_ids):
        require_row(session, Grid, grid_id, f"grid_ids[{i}]")
    user = User(username=data.username, full_name=data.full_name, password_hash=hash_password(data.password),
                role=data.role.value, enterprise_id=data.enterprise_id if data.role == Role.enterprise else None,
                department_id=data.department_id if data.role == Role.department else None,
                region_id=data.region_id, phone=data.phone, email=data.email)
    session.add(user)
    session.flush()
    session.add_all(OfficerGrid(officer_id=user.id, grid_id=g) for g in sorted(set(data.grid_ids)))
    session.flush()
    return user


def _check_scope(session: Session, role: Role, enterprise_id: int | None, department_id: int | None,
                 region_id: int | None) -> None:
    """The scope fields a ``role`` needs exist (SPEC §1).

    Raises:
        FieldError (422): missing/unknown ``enterprise_id`` (enterprise), ``department_id``
            (department), unknown ``region_id``.
    """
    if role == Role.enterprise and enterprise_id is None:
        raise FieldError("enterprise_id", "企业用户必须指定所属企业")
    if role == Role.department and department_id is None:
        raise FieldError("department_id", "承办单位用户必须指定所属单位")
    require_row(session, Enterprise, enterprise_id, "enterprise_id")
    require_row(session, Department, department_id, "department_id")
    require_row(session, Region, region_id, "region_id")


def update_user(session: Session, user: User, data: UserUpdate) -> User:
    """Change the fields of ``user`` given in ``data``; a new password bumps
    ``user.token_version``, so the user's access tokens issued before stop working (issue 11)."""
    values = data.model_dump(exclude_unset=True)
    if values.pop("password", None) is not None:
        user.password_hash = hash_password(data.password)
        user.token_version += 1
    for key, value in values.items():
        setattr(user, key, value)
    session.flush()
    return user


def change_role(session: Session, user: User, data: UserRoleChange) -> User:
    """Give ``user`` a new role and scope (SPEC §1). A different role bumps
    ``user.token_version``: the user's access tokens issued before stop working (issue 11).

    Raises:
        FieldError (422): the role's scope field is missing or unknown (:func:`_check_scope`).
    """
    _check_scope(session, data.role, data.enterprise_id, data.department_id, data.region_id)
    if data.role.value != user.role:
        user.token_version += 1
    user.role = data.role.value
    user.enterprise_id = data.enterprise_id if data.role == Role.enterprise else None
    user.department_id = data.department_id if data.role == Role.department else None
    user.region_id = data.region_id
    if data.role != Role.officer:  # grids are an officer's scope
        session.execute(sa.delete(OfficerGrid).where(OfficerGrid.officer_id == user.id))
    session.flush()
    return user


def count(session: Session, model: type[SQLModel]) -> int:
    return session.exec(select(sa.func.count()).select_from(model)).one()

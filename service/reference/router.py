"""Reference-data endpoints (SPEC §2, §7): admin writes, others read what they may see.

Regions, grids, departments and categories are public reference data for every logged-in user.
Enterprises are filtered by row visibility; users: admins and supervisors see all, others
only themselves.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from sqlmodel import select

from service.auth.dependencies import AdminActor, CurrentActor, SessionDep
from service.categories.models import Category
from service.common.enums import Role
from service.common.openapi import problem_responses
from service.common.schemas import INT32_MAX
from service.departments.models import Department
from service.enterprises.models import Enterprise
from service.errors import NotFound
from service.reference import schemas
from service.reference import service as ref
from service.regions.models import Grid, Region
from service.tickets.visibility import enterprise_visibility, scope_of
from service.users.models import User
from service.users.schemas import UserCreate, UserRead, UserRoleChange, UserUpdate

router = APIRouter()
CONFLICT = problem_responses(409)  # a code or name already taken
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=INT32_MAX)]


def _get(session, model, row_id: int, label: str):
    row = session.get(model, row_id) if 1 <= row_id <= INT32_MAX else None
    if row is None:
        raise NotFound(f"{label} {row_id} 不存在")
    return row


# ---- regions and grids
@router.get("/regions", response_model=list[schemas.RegionRead], tags=["reference"], summary="区域树（平铺）")
def list_regions(session: SessionDep, _actor: CurrentActor):
    return session.exec(select(Region).order_by(Region.id)).all()


@router.post("/regions", responses=CONFLICT, response_model=schemas.RegionRead, status_code=status.HTTP_201_CREATED,
             tags=["reference"], summary="新增区域（管理员）")
def create_region(body: schemas.RegionCreate, session: SessionDep, _admin: AdminActor):
    return ref.create_region(session, body)


@router.get("/grids", response_model=list[schemas.GridRead], tags=["reference"], summary="网格")
def list_grids(session: SessionDep, _actor: CurrentActor,
               region_id: Annotated[int | None, Query(ge=1, le=INT32_MAX)] = None):
    stmt = select(Grid).order_by(Grid.id)
    if region_id is not None:
        stmt = stmt.where(Grid.region_id == region_id)
    return session.exec(stmt).all()


@router.post("/grids", responses=CONFLICT, response_model=schemas.GridRead, status_code=status.HTTP_201_CREATED,
             tags=["reference"], summary="新增网格（管理员）")
def create_grid(body: schemas.GridCreate, session: SessionDep, _admin: AdminActor):
    return ref.create_grid(session, body)


# ---- departments
@router.get("/departments", response_model=list[schemas.DepartmentRead], tags=["reference"], summary="承办单位")
def list_departments(session: SessionDep, _actor: CurrentActor):
    return session.exec(select(Department).order_by(Department.id)).all()


@router.post("/departments", responses=CONFLICT, response_model=schemas.DepartmentRead, status_code=status.HTTP_201_CREATED,
             tags=["reference"], summary="新增承办单位（管理员）")
def create_department(body: schemas.DepartmentCreate, session: SessionDep, _admin: AdminActor):
    return ref.create_department(session, body)


@router.patch("/departments/{department_id}", responses=CONFLICT, response_model=schemas.DepartmentRead, tags=["reference"],
              summary="修改承办单位（管理员）")
def update_department(department_id: int, body: schemas.DepartmentUpdate, session: SessionDep,
                      _admin: AdminActor):
    return ref.update_department(session, _get(session, Department, department_id, "承办单位"), body)


# ---- categories
@router.get("/categories", response_model=list[schemas.CategoryRead], tags=["reference"], summary="分类树（平铺）")
def list_categories(session: SessionDep, _actor: CurrentActor):
    return session.exec(select(Category).order_by(Category.id)).all()


@router.post("/categories", responses=CONFLICT, response_model=schemas.CategoryRead, status_code=status.HTTP_201_CREATED,
             tags=["reference"], summary="新增分类（管理员）")
def create_category(body: schemas.CategoryCreate, session: SessionDep, _admin: AdminActor):
    return ref.create_category(session, body)


@router.patch("/categories/{category_id}", responses=CONFLICT, response_model=schemas.CategoryRead, tags=["reference"],
              summary="修改分类（管理员）")
def update_category(category_id: int, body: schemas.CategoryUpdate, session: SessionDep, _admin: AdminActor):
    return ref.update_category(session, _get(session, Category, category_id, "分类"), body)


# ---- enterprises
@router.get("/enterprises", response_model=list[schemas.EnterpriseRead], tags=["reference"],
            summary="企业（按可见范围）")
def list_enterprises(session: SessionDep, actor: CurrentActor, limit: Limit = 100, offset: Offset = 0,
                     q: Annotated[str | None, Query(max_length=100, pattern=r"^[^\x00]*$")] = None):
    stmt = select(Enterprise).where(enterprise_visibility(session, actor))
    if q:
        stmt = stmt.where(Enterprise.name.contains(q) | (Enterprise.uscc == q.upper()))
    return session.exec(stmt.order_by(Enterprise.id).offset(offset).limit(limit)).all()


@router.get("/enterprises/{enterprise_id}", response_model=schemas.EnterpriseRead, tags=["reference"],
            summary="企业详情")
def read_enterprise(enterprise_id: int, session: SessionDep, actor: CurrentActor):
    row = None
    if 1 <= enterprise_id <= INT32_MAX:  # a larger id cannot exist (and would be a database error)
        row = session.exec(select(Enterprise).where(Enterprise.id == enterprise_id,
                                                    enterprise_visibility(session, actor))).first()
    if row is None:
        raise NotFound(f"企业 {enterprise_id} 不存在")
    return row


@router.post("/enterprises", responses=CONFLICT, response_model=schemas.EnterpriseRead, status_code=status.HTTP_201_CREATED,
             tags=["reference"], summary="新增企业（管理员）",
             description="地址 `address`、坐标 `latitude`（-90..90）/`longitude`（-180..180，WGS 84，须同时提供）"
                         "与联系邮箱 `contact_email` 可选：Open311 诉求未带位置时显示企业的地址与坐标，"
                         "邮件受理把来自 `contact_email` 的邮件视为该企业的邮件（docs/open311.md、docs/mail_intake.md）。"
                         "字段有误时 422 并指明字段。")
def create_enterprise(body: schemas.EnterpriseCreate, session: SessionDep, _admin: AdminActor):
    return ref.create_enterprise(session, body)


@router.patch("/enterprises/{enterprise_id}", responses=CONFLICT, response_model=schemas.EnterpriseRead, tags=["reference"],
              summary="修改企业（管理员）",
              description="只修改给出的字段；`null` 清空可选字段。`latitude`（-90..90）与 `longitude`（-180..180）"
                          "须同时有值或同时为空，`contact_email` 须为邮件地址；有误时 422 并指明字段。")
def update_enterprise(enterprise_id: int, body: schemas.EnterpriseUpdate, session: SessionDep,
                      _admin: AdminActor):
    return ref.update_enterprise(session, _get(session, Enterprise, enterprise_id, "企业"), body)


# ---- users
@router.get("/users", response_model=list[UserRead], tags=["users"], summary="用户（管理员、督办看可见范围内的）")
def list_users(session: SessionDep, actor: CurrentActor, limit: Limit = 100, offset: Offset = 0,
               role: Role | None = None):
    # admins and county supervisors: everyone; a region's supervisor: staff and the users of its
    # enterprises; others: themselves (SPEC §1, service.tickets.visibility.Scope.users)
    stmt = select(User).where(scope_of(session, actor).users())
    if role:
        stmt = stmt.where(User.role == role.value)
    return session.exec(stmt.order_by(User.id).offset(offset).limit(limit)).all()


@router.post("/users", responses=CONFLICT, response_model=UserRead, status_code=status.HTTP_201_CREATED, tags=["users"],
             summary="新增用户（管理员）")
def create_user(body: UserCreate, session: SessionDep, _admin: AdminActor):
    return ref.create_user(session, body)


@router.patch("/users/{user_id}", responses=CONFLICT, response_model=UserRead, tags=["users"], summary="修改用户（管理员）")
def update_user(user_id: int, body: UserUpdate, session: SessionDep, _admin: AdminActor):
    return ref.update_user(session, _get(session, User, user_id, "用户"), body)


@router.put("/users/{user_id}/role", response_model=UserRead, tags=["users"], summary="变更用户角色（管理员）",
            description="角色及其范围字段同新增用户；角色变更后该用户已签发的令牌立即失效，须重新登录。")
def change_user_role(user_id: int, body: UserRoleChange, session: SessionDep, _admin: AdminActor):
    return ref.change_role(session, _get(session, User, user_id, "用户"), body)

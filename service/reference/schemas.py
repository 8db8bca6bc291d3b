"""Request/response models of the reference data (SPEC §2)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints, field_validator

from service.common.enums import RegionKind, ServiceType
from service.common.schemas import EmailAddress, InputModel, RowRead, ShortText
from service.enterprises.models import ENTERPRISE_TAGS
from service.enterprises.uscc import InvalidUSCC, normalize_uscc

Code = str
_CODE = {"min_length": 1, "max_length": 32, "pattern": r"^[A-Za-z0-9_.-]+$"}


#: Names of regions, grids, departments and categories: their columns hold 100 characters.
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class _In(InputModel):
    pass


class RegionCreate(_In):
    code: str = Field(**_CODE)
    name: Name
    kind: RegionKind
    parent_id: int | None = Field(default=None, ge=1)


class RegionUpdate(_In):
    name: Name = None  # type: ignore[assignment]  # omitted: unchanged; null: 422 (InputModel)


class _CodedRead(RowRead):
    """A reference row read back: ``id``, ``code``, ``name`` first."""

    code: str
    name: str


class RegionRead(_CodedRead):
    kind: str
    parent_id: int | None


class GridCreate(_In):
    code: str = Field(**_CODE)
    name: Name
    region_id: int = Field(ge=1)


class GridUpdate(_In):
    name: Name = None  # type: ignore[assignment]


class GridRead(_CodedRead):
    region_id: int


class DepartmentCreate(_In):
    code: str = Field(**_CODE)
    name: Name


class DepartmentUpdate(_In):
    name: Name = None  # type: ignore[assignment]  # omitted: unchanged; null: 422 (InputModel)
    is_active: bool = None  # type: ignore[assignment]


class DepartmentRead(_CodedRead):
    is_active: bool


class CategoryCreate(_In):
    """A category: a root needs ``service_type``; a child inherits its parent's."""

    code: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    name: Name
    parent_id: int | None = Field(default=None, ge=1)
    service_type: ServiceType | None = None
    default_department_id: int | None = Field(default=None, ge=1)


class CategoryUpdate(_In):
    name: Name = None  # type: ignore[assignment]  # omitted: unchanged; null: 422 (InputModel)
    default_department_id: int | None = Field(default=None, ge=1)


class CategoryRead(_CodedRead):
    service_type: str
    parent_id: int | None
    default_department_id: int | None


#: WGS 84 latitude and longitude of an enterprise's site, degrees (issue 12; Open311 ``lat``/``long``).
#: Strict: a JSON number only (``true`` or ``"30.5"`` is a 422, not a coordinate).
Latitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False, strict=True)]
Longitude = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False, strict=True)]


def _check_uscc(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return normalize_uscc(value)
    except InvalidUSCC as exc:
        raise ValueError(str(exc)) from exc


def _check_tags(value: list[str]) -> list[str]:
    unknown = [t for t in value if t not in ENTERPRISE_TAGS]
    if unknown:
        raise ValueError(f"未知标签 {unknown}，可选：{', '.join(ENTERPRISE_TAGS)}")
    return list(dict.fromkeys(value))


class EnterpriseCreate(_In):
    """An enterprise; ``uscc`` is validated per GB 32100-2015."""

    uscc: str = Field(min_length=18, max_length=18)
    name: ShortText
    industry: str | None = Field(default=None, max_length=100)
    grid_id: int | None = Field(default=None, ge=1)
    tags: list[str] = Field(default_factory=list, max_length=10)
    contact_name: str | None = Field(default=None, max_length=50)
    contact_phone: str | None = Field(default=None, max_length=32)
    address: str | None = Field(default=None, max_length=200)
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    contact_email: EmailAddress | None = None
    officer_id: int | None = Field(default=None, ge=1)

    _uscc = field_validator("uscc")(_check_uscc)
    _tags = field_validator("tags")(_check_tags)


class EnterpriseUpdate(_In):
    """Only the fields given change; ``null`` clears the optional ones (``industry``, ``grid_id``,
    contacts, ``address``, ``latitude``, ``longitude``, ``contact_email``, ``officer_id``) and is a
    422 for ``name`` and ``tags``. ``latitude`` -90..90 and ``longitude`` -180..180 (WGS 84
    degrees), ``contact_email`` an e-mail address: else 422 naming the field."""

    name: ShortText = None  # type: ignore[assignment]
    industry: str | None = Field(default=None, max_length=100)
    grid_id: int | None = Field(default=None, ge=1)
    tags: list[str] = Field(default=None, max_length=10)  # type: ignore[assignment]
    contact_name: str | None = Field(default=None, max_length=50)
    contact_phone: str | None = Field(default=None, max_length=32)
    address: str | None = Field(default=None, max_length=200)
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    contact_email: EmailAddress | None = None
    officer_id: int | None = Field(default=None, ge=1)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        return _check_tags(value)


class EnterpriseRead(RowRead):
    uscc: str | None
    name: str
    industry: str | None
    grid_id: int | None
    tags: list[str]
    contact_name: str | None
    contact_phone: str | None
    address: str | None
    latitude: float | None
    longitude: float | None
    contact_email: str | None
    officer_id: int | None
    created_at: datetime

"""``/api/v1/calendar``: the working calendar and its admin overrides (SPEC §4)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from service import clock
from service.auth.dependencies import AdminActor, CurrentActor, SessionDep
from service.calendar import service as calendar_service
from service.common.schemas import ApiDate, InputModel
from service.errors import FieldError, NotFound

router = APIRouter(prefix="/calendar", tags=["calendar"])


class OverrideIn(InputModel):
    is_working_day: bool
    note: str | None = Field(default=None, max_length=100)


class OverrideRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    day: date
    is_working_day: bool
    note: str | None


class YearIn(InputModel):
    """A year's schedule as published by the State Council: days off and make-up working days."""

    holidays: list[ApiDate] = Field(default_factory=list, max_length=366)
    workdays: list[ApiDate] = Field(default_factory=list, max_length=366)
    note: str | None = Field(default=None, max_length=100)

    @field_validator("workdays")
    @classmethod
    def _disjoint(cls, workdays: list[date], info: ValidationInfo) -> list[date]:
        # a field validator (not a model one) so that the problem names the field ``workdays``
        both = set(info.data.get("holidays") or ()) & set(workdays)
        if both:
            raise ValueError(f"同一天不能既是假日又是调休工作日：{sorted(both)[0]}")
        return workdays


class DayRead(BaseModel):
    day: date
    is_working_day: bool
    source: str  # override | official | fallback


class CalendarRead(BaseModel):
    year: int
    official_data: bool
    warning: str | None
    working_hours: str
    working_days: int
    overrides: list[OverrideRead]


@router.get("", response_model=CalendarRead, summary="某年的工作日历（官方数据、覆盖、告警）")
def read_year(session: SessionDep, _actor: CurrentActor,
              year: Annotated[int | None, Query(ge=1990, le=2100)] = None) -> CalendarRead:
    """``year`` defaults to the current year in the office time zone. ``warning`` is set for a
    year without official data until an admin has entered its days off (``has_admin_schedule``)."""
    year = year or clock.now().astimezone(clock.office_zone()).year
    cal = calendar_service.get_calendar(session)
    fallback = cal.is_fallback_year(year)
    count = sum(1 for _ in cal.working_days(date(year, 1, 1), date(year, 12, 31)))
    return CalendarRead(
        year=year, official_data=not fallback,
        warning=(f"{year}年没有官方节假日数据，按周一至周五计算工作日；请管理员录入该年的放假与调休安排"
                 if fallback and not cal.has_admin_schedule(year) else None),
        working_hours=",".join(f"{s:%H:%M}-{e:%H:%M}" for s, e in cal.hours.periods),
        working_days=count, overrides=calendar_service.list_overrides(session, year),
    )


@router.get("/days", response_model=list[DayRead], summary="区间内每天是否工作日")
def read_days(session: SessionDep, _actor: CurrentActor, date_from: ApiDate, date_to: ApiDate) -> list[DayRead]:
    if date_to < date_from or (date_to - date_from).days > 400:
        raise FieldError("date_to", "区间须为0-400天")
    cal = calendar_service.get_calendar(session)
    result = []
    for i in range((date_to - date_from).days + 1):  # not `d += 1 day`: that overflows after 9999-12-31
        d = date_from + timedelta(days=i)
        source = "override" if d in cal.overrides else ("fallback" if cal.is_fallback_year(d.year) else "official")
        result.append(DayRead(day=d, is_working_day=cal.is_working_day(d), source=source))
    return result


@router.put("/overrides/{day}", response_model=OverrideRead, summary="设置某天为工作日或休息日（管理员）")
def put_override(day: ApiDate, body: OverrideIn, session: SessionDep, _admin: AdminActor):
    calendar_service.set_overrides(session, [(day, body.is_working_day, body.note)])
    return next(o for o in calendar_service.list_overrides(session, day.year) if o.day == day)


@router.delete("/overrides/{day}", status_code=status.HTTP_204_NO_CONTENT, summary="删除覆盖（管理员）")
def delete_override(day: ApiDate, session: SessionDep, _admin: AdminActor) -> Response:
    if not calendar_service.delete_override(session, day):
        raise NotFound(f"{day} 没有覆盖设置")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/years/{year}", response_model=CalendarRead, summary="一次录入某年的放假与调休安排（管理员）")
def put_year(year: Annotated[int, Path(ge=1990, le=2100)], body: YearIn, session: SessionDep,
             admin: AdminActor) -> CalendarRead:
    entries = calendar_service.year_entries(year, body.holidays, body.workdays, body.note)
    calendar_service.replace_year(session, year, entries)
    return read_year(session, admin, year)

"""Enterprises (SPEC §2)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from service import clock
from service.db import UTCDateTime

ENTERPRISE_TAGS = ("规上", "专精特新", "外资", "亿元以上", "重点")


class Enterprise(SQLModel, table=True):
    """An enterprise served by the office.

    ``uscc`` is validated per GB 32100-2015 (see :mod:`service.enterprises.uscc`); imported
    requesters that have no real code carry ``uscc=None`` and ``external_ref`` instead.
    ``officer_id`` is the assigned service officer (首席服务官, point-to-point).
    ``latitude``/``longitude`` (WGS 84 degrees) and ``contact_email`` are optional (issue 12).
    """

    __tablename__ = "enterprise"

    id: int | None = Field(default=None, primary_key=True)
    uscc: str | None = Field(default=None, max_length=18, unique=True)
    external_ref: str | None = Field(default=None, max_length=64, unique=True)
    name: str = Field(max_length=200, index=True)
    industry: str | None = Field(default=None, max_length=100)
    grid_id: int | None = Field(default=None, foreign_key="grid.id", index=True)
    tags: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    contact_name: str | None = Field(default=None, max_length=50)
    contact_phone: str | None = Field(default=None, max_length=32)
    address: str | None = Field(default=None, max_length=200)
    #: WGS 84 coordinates of the enterprise's site (degrees; latitude -90..90, longitude -180..180):
    #: what Open311 GET shows as ``lat``/``long`` when a request carries none (docs/open311.md).
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    #: The enterprise's contact e-mail (254 characters, RFC 5321): the e-mail intake takes a message
    #: from it as from the enterprise, beside its users' addresses (docs/mail_intake.md).
    contact_email: str | None = Field(default=None, max_length=254)
    # use_alter: enterprise and user_account refer to each other (the migration adds this FK last).
    officer_id: int | None = Field(
        default=None,
        sa_column=sa.Column(sa.Integer, sa.ForeignKey("user_account.id", use_alter=True), index=True),
    )
    created_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)

"""The replay of one row: checks and cleans it, then writes it through the ticket service (SPEC §7).

Each row becomes a ticket created by :func:`service.ticketing.service.create_ticket` (channel
``import``) at its original submission time; a row with a reply is then accepted, dispatched and
claimed (stamped at the submission time), replied at the reply time and auto-closed (rating
``none``) when the feedback window after the reply has passed — all through
:func:`service.ticketing.service.apply_action`, so every imported ticket has a valid history.

Rules (``docs/import.md``): one requester (an enterprise-like row with ``uscc = NULL``) per user id
and source; the lead department is a department named in the reply text, else the category's
default; each row is written in its own savepoint, so a failing row leaves nothing behind; rows
whose external ref exists are skipped, so importing twice imports nothing twice.

Usage::

    from service.imports import ImportOptions, import_file
    result = import_file(engine, Path("附件4.xlsx"), ImportOptions())   # commits every 500 rows
    result = import_file(session, path, options)                          # caller commits
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DataError, IntegrityError
from sqlmodel import Session, select

from service import clock
from service.auth.actor import Actor
from service.calendar.service import get_calendar
from service.categories.models import Category
from service.common.enums import Channel, Role
from service.config import get_settings
from service.departments.models import Department
from service.enterprises.models import Enterprise
from service.errors import AppError
from service.imports.cleaning import (
    TIME_FORMATS,
    TimeParseError,
    clean_id,
    clean_text,
    one_line,
    parse_time,
    zone,
)
from service.imports.departments import DepartmentMatcher
from service.imports.options import ImportConfigError, ImportOptions
from service.imports.report import ImportResult
from service.sla.policy import Limit, limit_for
from service.ticketing.actions import apply_action, deferred_events
from service.ticketing.submission import create_ticket
from service.tickets.models import Ticket
from service.tickets.numbering import reserve_ticket_numbers

log = logging.getLogger(__name__)

NO_REPLY_TEXT = "（导入：原始记录只有答复时间，没有答复内容）"
EXTERNAL_REF_MAX = 64
TITLE_FROM_BODY_CHARS = 30


def _clip(text: str, limit: int, note: str, notes: list[str], mark: str = "") -> str:
    """``text`` cut to ``limit`` characters (the last one ``mark`` when given), noting ``note``."""
    if len(text) <= limit:
        return text
    notes.append(note)
    return text[: limit - len(mark)] + mark


@dataclass
class Row:
    """A row checked and cleaned, ready to write (``number``: its row number, header = 1)."""

    number: int
    ref: str
    requester: str | None
    title: str
    description: str
    submitted_at: datetime
    category: str
    reply: str | None
    replied_at: datetime | None
    notes: list[str]


class Skip(Exception):
    """The row is skipped for ``reason`` (a code of :data:`service.imports.report.REASONS`)."""

    def __init__(self, reason: str, message: str | None = None):
        super().__init__(reason)
        self.reason, self.message = reason, message


_SUBMITTER = Actor.system()
_OFFICER = Actor(user_id=None, role=Role.officer.value, username="import")


class Importer:
    """Prepares (:meth:`prepare`) and writes (:meth:`write`) the rows of one file in ``session``."""

    def __init__(self, session: Session, path: Path, options: ImportOptions, result: ImportResult):
        self.session, self.path, self.options, self.result = session, path, options, result
        self.settings = get_settings()
        try:
            self.tz = zone(options.timezone)
        except Exception as exc:  # ZoneInfoNotFoundError, ValueError
            raise ImportConfigError(f"未知的时区 {options.timezone!r}") from exc
        self.formats = ((options.time_format,) if options.time_format else ()) + TIME_FORMATS
        self.now = clock.now()
        self.source = result.source
        self._load_reference()
        self.calendar = get_calendar(session)
        self.feedback_limits: dict[int, Limit] = {}
        self.day_deadlines: dict[tuple[int, Any], datetime] = {}

    # ---- caches (read once; per-row work never SELECTs reference data)

    def _load_reference(self) -> None:
        s = self.session
        categories = list(s.exec(select(Category).order_by(Category.id)).all())
        self.categories_by_code = {c.code: c for c in categories}
        self.categories_by_name: dict[str, Category] = {}
        for c in categories:  # prefer a category that routes somewhere
            known = self.categories_by_name.get(c.name)
            if known is None or (known.default_department_id is None and c.default_department_id):
                self.categories_by_name[c.name] = c
        code = self.options.default_category or self.settings.import_default_category
        self.default_category = self.categories_by_code.get(code)
        if self.default_category is None:
            raise ImportConfigError(f"默认分类 {code!r} 不存在（--default-category）")
        self.problem_root = self.categories_by_code.get("problem")
        departments = list(s.exec(select(Department).where(Department.is_active)).all())
        self.departments = {d.id: d for d in departments}
        self.matcher = DepartmentMatcher(departments, self.options.department_aliases)
        prefix = f"{self.source}:"
        self.requesters = {
            e.external_ref: self._detached(e)
            for e in s.exec(select(Enterprise).where(Enterprise.external_ref.startswith(prefix, autoescape=True)))
        }
        self.existing_refs = set(s.exec(
            select(Ticket.external_ref).where(Ticket.external_ref.startswith(prefix, autoescape=True))
        ).all())
        self.claimed_refs: set[str] = set()  # refs of rows of this run that passed prepare()
        self.numbers: dict[str, str] = {}  # ref → ticket number reserved for the row (reserve_numbers)
        self.department_actors: dict[int, Actor] = {}

    # ---- reading a row

    def prepare(self, number: int, cells: dict[str, Any]) -> Row:
        notes: list[str] = []
        ext_id = clean_id(cells.get("external_id"))
        if not ext_id:
            raise Skip("missing_id")
        ref = f"{self.source}:{ext_id}"
        if len(ref) > EXTERNAL_REF_MAX:
            raise Skip("id_too_long", f"编号 {ext_id[:20]}… 超过 {EXTERNAL_REF_MAX - len(self.source) - 1} 个字符")
        if ref in self.existing_refs:
            raise Skip("already_imported")
        if ref in self.claimed_refs:
            raise Skip("duplicate_id", f"编号 {ext_id} 在文件中重复出现")

        raw_time = cells.get("submitted_at")
        try:
            submitted_at = parse_time(raw_time, self.tz, self.formats)
        except TimeParseError as exc:
            raise Skip("bad_time", str(exc)) from None
        if submitted_at is None:
            raise Skip("missing_time")
        if submitted_at > self.now:
            raise Skip("future_time", f"{submitted_at.isoformat()}")

        limit_title, limit_text = self.settings.max_title_length, self.settings.max_text_length
        description = clean_text(cells.get("description"))
        title = one_line(clean_text(cells.get("title")))
        if not title and not description:
            raise Skip("empty_content")
        if not title:
            title = one_line(description)[:TITLE_FROM_BODY_CHARS]
            notes.append("title_from_body")
        title = _clip(title, limit_title, "title_truncated", notes, "…")
        if not description:
            description = title
            notes.append("description_from_title")
        description = _clip(description, limit_text, "description_truncated", notes)

        reply = clean_text(cells.get("reply")) or None
        try:
            replied_at = parse_time(cells.get("replied_at"), self.tz, self.formats)
        except TimeParseError as exc:
            raise Skip("bad_reply_time", str(exc)) from None
        if reply is not None and replied_at is None:
            reply = None  # cannot be placed on the timeline: import the request as not replied
            notes.append("reply_without_time")
        if replied_at is not None:
            if replied_at < submitted_at:
                raise Skip("reply_before_submit",
                            f"答复 {replied_at.isoformat()} 早于留言 {submitted_at.isoformat()}")
            if replied_at > self.now:
                raise Skip("future_reply", replied_at.isoformat())
            if reply is None:
                reply = NO_REPLY_TEXT
                notes.append("reply_text_missing")
            else:
                reply = _clip(reply, limit_text, "reply_truncated", notes)

        requester = clean_id(cells.get("requester")) or None
        if requester is not None and len(f"{self.source}:user:{requester}") > EXTERNAL_REF_MAX:
            raise Skip("id_too_long", f"留言用户 {requester[:20]}… 过长")
        category = one_line(clean_text(cells.get("category")))
        self.claimed_refs.add(ref)
        return Row(number, ref, requester, title, description, submitted_at, category, reply,
                    replied_at, notes)

    # ---- requesters and categories

    def requester_key(self, row: Row) -> tuple[str, str]:
        """``(external_ref, name)`` of the requester of ``row``."""
        if row.requester is None:
            return f"{self.source}:anonymous", f"匿名留言用户（{self.source}）"
        return f"{self.source}:user:{row.requester}", f"留言用户 {row.requester}"[:200]

    def reserve_numbers(self, rows: list[Row]) -> None:
        """Reserve the ticket numbers of a batch of valid rows, in row order, with one statement
        per year (SQLite) instead of one per row. A row that then fails leaves its number unused
        (a gap; numbers are unique and increasing, not gap-free)."""
        by_year: dict[int, list[Row]] = {}
        for row in rows:
            by_year.setdefault(row.submitted_at.astimezone(clock.office_zone()).year, []).append(row)
        for year, year_rows in by_year.items():
            for row, number in zip(year_rows, reserve_ticket_numbers(self.session, year, len(year_rows)),
                                   strict=True):
                self.numbers[row.ref] = number

    def _detached(self, ent: Enterprise) -> Enterprise:
        """``ent`` (loaded) out of the session. The cache keeps thousands of requesters; left in
        the session, every ORM UPDATE/DELETE of a row (the ticket number counter, the dispatch's
        co-department DELETE) would walk them all to synchronise the session: a cost growing with
        the file (two thirds of the import's time on 附件4). Tickets only read their ``id``,
        ``grid_id`` and ``officer_id``."""
        self.session.expunge(ent)
        return ent

    def ensure_requesters(self, rows: list[Row]) -> None:
        """Create the requesters of a batch of valid rows at once (one INSERT, one SELECT back)
        instead of one flush per new requester: the main per-row cost after the workflow itself.
        A requester is reference data, kept even if its row later fails (it is reused)."""
        missing: dict[str, str] = {}
        for row in rows:
            ref, name = self.requester_key(row)
            if ref not in self.requesters:
                missing.setdefault(ref, name)
        if not missing:
            return
        now = clock.now()
        self.session.execute(sa.insert(Enterprise), [
            {"external_ref": ref, "name": name, "uscc": None, "tags": [], "created_at": now}
            for ref, name in missing.items()
        ])
        for ent in self.session.exec(select(Enterprise).where(Enterprise.external_ref.in_(list(missing)))):
            self.requesters[ent.external_ref] = self._detached(ent)
        self.result.requesters_created += len(missing)

    def requester(self, row: Row, undo: list[Callable[[], None]]) -> Enterprise:
        ref, name = self.requester_key(row)
        ent = self.requesters.get(ref)
        if ent is None:
            ent = Enterprise(external_ref=ref, name=name, uscc=None)
            self.session.add(ent)
            self.session.flush()
            self.requesters[ref] = self._detached(ent)
            self.result.requesters_created += 1

            def forget() -> None:
                self.requesters.pop(ref, None)
                self.result.requesters_created -= 1

            undo.append(forget)
        return ent

    def category(self, row: Row, undo: list[Callable[[], None]]) -> Category:
        label = row.category
        if not label:
            return self.default_category
        found = self.categories_by_code.get(label) or self.categories_by_name.get(label[:100])
        if found is not None:
            return found
        if self.problem_root is None:
            return self.default_category
        code = "problem.import_" + hashlib.sha1(label.encode()).hexdigest()[:10]
        cat = Category(code=code, name=label[:100], service_type=self.problem_root.service_type,
                       parent_id=self.problem_root.id,
                       default_department_id=self.default_category.default_department_id)
        self.session.add(cat)
        self.session.flush()
        self.categories_by_code[code] = self.categories_by_name[cat.name] = cat
        self.result.categories_created += 1

        def forget() -> None:
            self.categories_by_code.pop(code, None)
            self.categories_by_name.pop(cat.name, None)
            self.result.categories_created -= 1

        undo.append(forget)
        return cat

    def lead_department(self, row: Row, category: Category) -> tuple[int, str]:
        found = self.matcher.match(row.reply or "")
        if found is not None:
            return found, "department_from_reply"
        for dept_id in (category.default_department_id, self.default_category.default_department_id):
            if dept_id in self.departments:
                return dept_id, "department_from_category"
        raise Skip("no_department", f"分类 {category.code} 没有可用的默认承办单位")

    def feedback_deadline(self, ticket: Ticket, replied_at: datetime) -> datetime:
        """When the auto-close closes ``ticket`` replied at ``replied_at`` (SPEC §3/§4)."""
        days = self.options.feedback_days
        if days is not None:
            return self.calendar.add_working_days(replied_at, days) if days > 0 else replied_at
        due = getattr(ticket, "feedback_by", None)  # set by the SLA rules when they run on reply
        if due is not None:
            return due
        limit = self.feedback_limits.get(ticket.category_id)
        if limit is None:
            limit = limit_for(self.session, ticket.category_id, ticket.priority, "feedback")
            self.feedback_limits[ticket.category_id] = limit
        if limit.unit != "working_days":
            return limit.deadline(self.calendar, replied_at)
        # N working days ends at 17:30 of a day that depends only on the local date of the reply
        key = (limit.amount, replied_at.astimezone(self.calendar.tz).date())
        due = self.day_deadlines.get(key)
        if due is None:
            due = self.day_deadlines[key] = limit.deadline(self.calendar, replied_at)
        return due

    def department_actor(self, dept_id: int) -> Actor:
        actor = self.department_actors.get(dept_id)
        if actor is None:
            actor = Actor(user_id=None, role=Role.department.value, department_id=dept_id, username="import")
            self.department_actors[dept_id] = actor
        return actor

    # ---- writing a row

    def write(self, row: Row) -> None:
        """Replay ``row`` inside a savepoint; raises :class:`Skip` (nothing written) on failure."""
        s = self.session
        undo: list[Callable[[], None]] = []
        notes = list(row.notes)
        closed = False
        try:
            # no autoflush: each action's event INSERT would flush the ticket's UPDATE first, five
            # UPDATEs per replied row; the savepoint's end flushes once (apply_action(history=True)).
            # The row's events are inserted together at the end of the block (deferred_events).
            with s.begin_nested(), s.no_autoflush, deferred_events(s):
                enterprise = self.requester(row, undo)
                category = self.category(row, undo)
                lead = None
                if row.reply is not None:
                    lead, how = self.lead_department(row, category)
                    notes.append(how)
                ticket = create_ticket(
                    s, enterprise=enterprise, category=category, title=row.title,
                    description=row.description, channel=Channel.import_.value, actor=_SUBMITTER,
                    at=row.submitted_at, external_ref=row.ref, history=True,
                    number=self.numbers.pop(row.ref, None),
                )
                if lead is not None:
                    at = row.submitted_at
                    apply_action(s, _OFFICER, ticket, "accept", at=at, history=True)
                    apply_action(s, _OFFICER, ticket, "dispatch", {"lead_department_id": lead}, at=at, history=True)
                    handler = self.department_actor(lead)
                    apply_action(s, handler, ticket, "claim", at=at, history=True)
                    apply_action(s, handler, ticket, "reply", {"text": row.reply}, at=row.replied_at, history=True)
                    close_at = self.feedback_deadline(ticket, row.replied_at)
                    if close_at <= self.now:
                        apply_action(s, Actor.system(), ticket, "auto_close", at=close_at, history=True)
                        closed = True
        except Skip:
            for fn in reversed(undo):
                fn()
            raise
        except IntegrityError as exc:
            for fn in reversed(undo):
                fn()
            if "external_ref" in str(exc.orig):
                raise Skip("already_imported") from None
            raise Skip("service_error", _short(exc)) from None
        except (AppError, DataError, ValueError) as exc:
            # a problem of this row (a rule of the workflow, a value the database refuses); other
            # database errors (connection lost, schema out of date) abort the import
            for fn in reversed(undo):
                fn()
            log.warning("import %s row %s failed: %s", self.path.name, row.number, _short(exc))
            raise Skip("service_error", _short(exc)) from None
        self.result.imported += 1
        self.result.notes.update(notes)
        if lead is not None:
            self.result.replied += 1
            self.result.closed += closed


def _short(exc: Exception) -> str:
    text = getattr(exc, "detail", None) or str(getattr(exc, "orig", None) or exc)
    return one_line(str(text))[:200]

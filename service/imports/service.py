"""Import historical requests from CSV/XLSX by replaying them through the ticket service (SPEC §7).

Each row becomes a ticket created by :func:`service.tickets.service.create_ticket` (channel
``import``) at its original submission time; a row with a reply is then accepted, dispatched and
claimed (stamped at the submission time), replied at the reply time and auto-closed (rating
``none``) when the feedback window after the reply has passed — all through
:func:`service.tickets.service.apply_action`, so every imported ticket has a valid history.

Rules (``docs/import.md``): one requester (an enterprise-like row with ``uscc = NULL``) per user id
and source; the lead department is a department named in the reply text, else the category's
default; each row is written in its own savepoint, so a failing row leaves nothing behind; rows
whose external ref exists are skipped, so importing twice imports nothing twice.

Usage::

    from service.imports.service import ImportOptions, import_file
    result = import_file(engine, Path("附件4.xlsx"), ImportOptions())   # commits every 500 rows
    result = import_file(session, path, options)                          # caller commits
"""

from __future__ import annotations

import hashlib
import logging
import re
import time as _time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from sqlalchemy.engine import Engine
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
from service.imports.reader import ImportFileError, open_table
from service.sla.policy import Limit, limit_for
from service.tickets.models import Ticket
from service.tickets.service import apply_action, create_ticket, deferred_events, reserve_ticket_numbers

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- mapping

#: The importer's fields and the Teddy Cup (泰迪杯 2020 C) column that fills each by default.
DEFAULT_COLUMNS: dict[str, str] = {
    "external_id": "留言编号",
    "requester": "留言用户",
    "title": "留言主题",
    "description": "留言详情",
    "submitted_at": "留言时间",
    "reply": "答复意见",
    "replied_at": "答复时间",
    "category": "一级分类",
}
FIELDS = tuple(DEFAULT_COLUMNS)
REQUIRED_FIELDS = ("external_id", "submitted_at")

#: Why a row was skipped (reason code → label shown in the summary).
REASONS: dict[str, str] = {
    "already_imported": "已导入过（外部编号已存在）",
    "duplicate_id": "文件内编号重复",
    "missing_id": "缺少编号",
    "id_too_long": "编号或用户过长",
    "missing_time": "缺少留言时间",
    "bad_time": "留言时间无法识别",
    "future_time": "留言时间晚于现在",
    "empty_content": "标题和详情均为空",
    "bad_reply_time": "答复时间无法识别",
    "reply_before_submit": "答复时间早于留言时间",
    "future_reply": "答复时间晚于现在",
    "no_department": "找不到承办单位",
    "service_error": "业务校验失败",
}

#: Notes counted on imported rows (the row was imported, but something was adjusted).
NOTES: dict[str, str] = {
    "title_truncated": "标题超过上限已截断",
    "title_from_body": "标题为空，取详情前30字",
    "description_from_title": "详情为空，用标题代替",
    "description_truncated": "详情超过上限已截断",
    "reply_truncated": "答复超过上限已截断",
    "reply_text_missing": "只有答复时间没有答复意见（用占位文字）",
    "reply_without_time": "有答复意见但没有答复时间（按未答复导入，答复文字未导入）",
    "department_from_reply": "主办单位由答复文本识别",
    "department_from_category": "主办单位取分类默认单位",
}

NO_REPLY_TEXT = "（导入：原始记录只有答复时间，没有答复内容）"
EXTERNAL_REF_MAX = 64
SOURCE_MAX = 24
TITLE_FROM_BODY_CHARS = 30

#: Common short forms of department names, keyed by the name without its region prefix (the
#: "core" name, e.g. 青禾县人力资源和社会保障局 → 人力资源和社会保障局). Used to recognise the
#: handling unit in reply texts ("A7县人社局"); extend per import with ``departments:`` aliases.
DEPARTMENT_ALIASES: dict[str, tuple[str, ...]] = {
    "发展和改革局": ("发改局", "发改委", "发展和改革委员会", "发展改革局"),
    "经济和信息化局": ("经信局", "工信局", "经济和信息化委员会", "工业和信息化局"),
    "人力资源和社会保障局": ("人社局", "人力资源社会保障局", "社保局"),
    "自然资源和规划局": ("自然资源局", "规划局", "国土资源局", "国土局"),
    "住房和城乡建设局": ("住建局", "住房城乡建设局", "城乡建设局"),
    "交通运输局": ("交通局",),
    "市场监督管理局": ("市场监管局", "工商局", "质监局", "食药监局"),
    "税务局": ("地税局", "国税局"),
    "供电公司": ("供电局", "电力公司"),
    "水务集团有限公司": ("水务集团", "水务局", "自来水公司"),
    "燃气有限公司": ("燃气公司",),
    "金融工作办公室": ("金融办",),
    "科学技术局": ("科技局",),
    "生态环境局": ("环保局", "环境保护局"),
    "应急管理局": ("安监局", "安全生产监督管理局"),
    "教育局": ("教育体育局", "教体局"),
}


@dataclass
class ImportOptions:
    """How to read and replay a file (every field has a default that fits the Teddy Cup files).

    Attributes:
        columns: field → column overrides on top of :data:`DEFAULT_COLUMNS` (fields:
            ``external_id, requester, title, description, submitted_at, reply, replied_at,
            category``). A column given here must exist; a default column that is absent is
            simply not used (except the required ``external_id`` and ``submitted_at``).
        sheet: XLSX worksheet name (default: the first).
        default_category: category code for rows without one (default:
            ``Settings.import_default_category``).
        source: prefix of external refs (``<source>:<id>``, ``<source>:user:<id>``); default: the
            file name without extension.
        limit: read at most this many data rows.
        dry_run: do everything, then roll back.
        timezone: zone of times written without one (default Asia/Shanghai).
        time_format: a ``strptime`` format tried before the built-in ones.
        encoding: CSV encoding (default ``utf-8-sig``).
        batch_size: rows per commit when the importer owns the session.
        feedback_days: working days without feedback after the reply before the auto-close;
            default (``None``): the ticket's ``feedback_by`` deadline, else the SLA policy's
            feedback limit for the category (SPEC §4 default 5 working days); 0 closes at the
            reply time. A window still open now leaves the ticket ``replied`` for the worker.
        department_aliases: text in a reply → department code (adds to the built-in recognition).
        progress: called as ``progress(rows_done, rows_total_or_None)`` while importing.
    """

    columns: dict[str, str] = field(default_factory=dict)
    sheet: str | None = None
    default_category: str | None = None
    source: str | None = None
    limit: int | None = None
    dry_run: bool = False
    timezone: str = "Asia/Shanghai"
    time_format: str | None = None
    encoding: str = "utf-8-sig"
    batch_size: int = 500
    feedback_days: int | None = None
    department_aliases: dict[str, str] = field(default_factory=dict)
    progress: Callable[[int, int | None], None] | None = None


class ImportConfigError(ValueError):
    """The options or the file do not allow an import (unknown column, category, zone, ...)."""


MAPPING_FILE_KEYS = {"columns", "sheet", "default_category", "source", "timezone", "time_format",
                     "encoding", "feedback_days", "departments"}


def load_mapping_file(path: Path) -> dict[str, Any]:
    """Read a YAML mapping file into :class:`ImportOptions` keyword arguments.

    Format (every key optional)::

        columns: {external_id: Unique Key, title: Complaint Type, submitted_at: Created Date}
        sheet: Sheet1
        default_category: problem.other
        source: nyc311
        timezone: America/New_York
        time_format: "%m/%d/%Y %I:%M:%S %p"
        encoding: utf-8-sig
        feedback_days: 5
        departments: {公安局: SFJ}        # text in a reply → department code

    Raises:
        ImportConfigError: unreadable YAML, unknown keys or fields.
    """
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ImportConfigError(f"无法读取映射文件 {path}：{exc}") from exc
    if not isinstance(data, dict):
        raise ImportConfigError("映射文件的顶层须是键值表")
    unknown = set(data) - MAPPING_FILE_KEYS
    if unknown:
        raise ImportConfigError(f"映射文件中有未知的键：{', '.join(sorted(map(str, unknown)))}；"
                                f"可用：{', '.join(sorted(MAPPING_FILE_KEYS))}")
    out = {k: v for k, v in data.items() if k not in ("columns", "departments")}
    columns = data.get("columns") or {}
    if not isinstance(columns, dict):
        raise ImportConfigError("columns 须是“字段: 列名”的键值表")
    out["columns"] = parse_column_map([f"{k}={v}" for k, v in columns.items()])
    departments = data.get("departments") or {}
    if not isinstance(departments, dict):
        raise ImportConfigError("departments 须是“文本: 单位代码”的键值表")
    out["department_aliases"] = {str(k): str(v) for k, v in departments.items()}
    return out


def parse_column_map(items: list[str]) -> dict[str, str]:
    """``["title=留言主题", ...]`` → ``{"title": "留言主题"}``.

    Raises:
        ImportConfigError: no ``=`` or an unknown field.
    """
    result: dict[str, str] = {}
    for item in items:
        key, sep, column = item.partition("=")
        key, column = key.strip(), column.strip()
        if not sep or not key or not column:
            raise ImportConfigError(f"列映射须写成 字段=列名：{item!r}")
        if key not in FIELDS:
            raise ImportConfigError(f"未知字段 {key!r}；可用：{', '.join(FIELDS)}")
        result[key] = column
    return result


def default_source(path: Path) -> str:
    """The default source of ``path``: its file name without extension (spaces and ``:`` become
    ``_``); a long name keeps 16 characters and a short hash of the whole name."""
    stem = re.sub(r"[\s:]+", "_", path.stem.strip()) or "import"
    if len(stem) > SOURCE_MAX:
        stem = stem[:16] + "~" + hashlib.sha1(stem.encode()).hexdigest()[:6]
    return stem


# --------------------------------------------------------------------------- result

@dataclass
class ImportResult:
    """What an import did. ``imported + skipped_count == read`` always holds.

    ``skipped`` maps a reason code (:data:`REASONS`) to the row numbers (header = row 1);
    ``notes`` counts adjustments on imported rows (:data:`NOTES`); ``messages`` keeps the first
    error message per reason.
    """

    path: str
    source: str
    dry_run: bool = False
    read: int = 0
    imported: int = 0
    skipped: dict[str, list[int]] = field(default_factory=dict)
    notes: Counter = field(default_factory=Counter)
    messages: dict[str, str] = field(default_factory=dict)
    replied: int = 0
    closed: int = 0
    requesters_created: int = 0
    categories_created: int = 0
    seconds: float = 0.0

    @property
    def skipped_count(self) -> int:
        return sum(len(rows) for rows in self.skipped.values())

    @property
    def rows_per_second(self) -> float:
        return self.read / self.seconds if self.seconds else 0.0

    def skip(self, reason: str, row: int, message: str | None = None) -> None:
        self.skipped.setdefault(reason, []).append(row)
        if message and reason not in self.messages:
            self.messages[reason] = f"行 {row}: {message}"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(notes=dict(self.notes), skipped_count=self.skipped_count,
                    rows_per_second=round(self.rows_per_second, 1))
        return data

    def summary_lines(self, first: int = 5) -> list[str]:
        """A human summary (Chinese), the first ``first`` row numbers per skip reason."""
        head = "（试运行，未写入）" if self.dry_run else ""
        lines = [
            f"{self.path}（来源 {self.source}）{head}：读取 {self.read}，导入 {self.imported}，"
            f"跳过 {self.skipped_count}；{self.seconds:.1f} 秒，{self.rows_per_second:.0f} 行/秒",
            f"  已答复 {self.replied}，其中已办结 {self.closed}；新建诉求人 {self.requesters_created}，"
            f"新建分类 {self.categories_created}",
        ]
        for reason, rows in sorted(self.skipped.items(), key=lambda kv: -len(kv[1])):
            shown = ", ".join(map(str, rows[:first])) + (" …" if len(rows) > first else "")
            lines.append(f"  跳过 {REASONS.get(reason, reason)} [{reason}]：{len(rows)} 行（行 {shown}）")
            if reason in self.messages:
                lines.append(f"    例：{self.messages[reason]}")
        for note, count in sorted(self.notes.items()):
            if count:
                lines.append(f"  说明 {NOTES.get(note, note)} [{note}]：{count}")
        return lines


# --------------------------------------------------------------------------- departments

def _core_name(name: str) -> str:
    """The department name without its region prefix: 青禾县教育局 → 教育局,
    国家税务总局青禾县税务局 → 税务局, 青禾县人民政府金融工作办公室 → 金融工作办公室."""
    m = re.search(r"^.{2,}?[县市区旗州](?=.{2,})", name)
    core = name[m.end():] if m else name
    return core.removeprefix("人民政府")


class DepartmentMatcher:
    """Recognise a department named in a reply text (the leftmost mention wins).

    Keys: each active department's full name, its core name (:func:`_core_name`) and that core's
    short forms (:data:`DEPARTMENT_ALIASES`), plus explicit aliases (text → code). A key shared by
    two departments is ambiguous and dropped.
    """

    def __init__(self, departments: list[Department], aliases: dict[str, str] | None = None):
        keys: dict[str, set[int]] = {}

        def add(key: str, dept_id: int) -> None:
            if len(key) >= 2:
                keys.setdefault(key, set()).add(dept_id)

        by_code = {d.code: d for d in departments}
        for d in departments:
            add(d.name, d.id)
            core = _core_name(d.name)
            if len(core) >= 3:
                add(core, d.id)
            for alias in DEPARTMENT_ALIASES.get(core, ()):
                add(alias, d.id)
        self.keys = {k: next(iter(v)) for k, v in keys.items() if len(v) == 1}
        for text, code in (aliases or {}).items():
            if code not in by_code:
                raise ImportConfigError(f"departments 别名 {text!r} 指向不存在的单位代码 {code!r}")
            self.keys[text] = by_code[code].id
        ordered = sorted(self.keys, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def match(self, text: str) -> int | None:
        if self._pattern is None or not text:
            return None
        m = self._pattern.search(text)
        return self.keys[m.group()] if m else None


# --------------------------------------------------------------------------- the import

@dataclass
class _Row:
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


class _Skip(Exception):
    def __init__(self, reason: str, message: str | None = None):
        super().__init__(reason)
        self.reason, self.message = reason, message


_SUBMITTER = Actor.system()
_OFFICER = Actor(user_id=None, role=Role.officer.value, username="import")


class _Importer:
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

    def prepare(self, number: int, cells: dict[str, Any]) -> _Row:
        notes: list[str] = []
        ext_id = clean_id(cells.get("external_id"))
        if not ext_id:
            raise _Skip("missing_id")
        ref = f"{self.source}:{ext_id}"
        if len(ref) > EXTERNAL_REF_MAX:
            raise _Skip("id_too_long", f"编号 {ext_id[:20]}… 超过 {EXTERNAL_REF_MAX - len(self.source) - 1} 个字符")
        if ref in self.existing_refs:
            raise _Skip("already_imported")
        if ref in self.claimed_refs:
            raise _Skip("duplicate_id", f"编号 {ext_id} 在文件中重复出现")

        raw_time = cells.get("submitted_at")
        try:
            submitted_at = parse_time(raw_time, self.tz, self.formats)
        except TimeParseError as exc:
            raise _Skip("bad_time", str(exc)) from None
        if submitted_at is None:
            raise _Skip("missing_time")
        if submitted_at > self.now:
            raise _Skip("future_time", f"{submitted_at.isoformat()}")

        limit_title, limit_text = self.settings.max_title_length, self.settings.max_text_length
        description = clean_text(cells.get("description"))
        title = one_line(clean_text(cells.get("title")))
        if not title and not description:
            raise _Skip("empty_content")
        if not title:
            title = one_line(description)[:TITLE_FROM_BODY_CHARS]
            notes.append("title_from_body")
        if len(title) > limit_title:
            title = title[: limit_title - 1] + "…"
            notes.append("title_truncated")
        if not description:
            description = title
            notes.append("description_from_title")
        if len(description) > limit_text:
            description = description[:limit_text]
            notes.append("description_truncated")

        reply = clean_text(cells.get("reply")) or None
        try:
            replied_at = parse_time(cells.get("replied_at"), self.tz, self.formats)
        except TimeParseError as exc:
            raise _Skip("bad_reply_time", str(exc)) from None
        if reply is not None and replied_at is None:
            reply = None  # cannot be placed on the timeline: import the request as not replied
            notes.append("reply_without_time")
        if replied_at is not None:
            if replied_at < submitted_at:
                raise _Skip("reply_before_submit",
                            f"答复 {replied_at.isoformat()} 早于留言 {submitted_at.isoformat()}")
            if replied_at > self.now:
                raise _Skip("future_reply", replied_at.isoformat())
            if reply is None:
                reply = NO_REPLY_TEXT
                notes.append("reply_text_missing")
            elif len(reply) > limit_text:
                reply = reply[:limit_text]
                notes.append("reply_truncated")

        requester = clean_id(cells.get("requester")) or None
        if requester is not None and len(f"{self.source}:user:{requester}") > EXTERNAL_REF_MAX:
            raise _Skip("id_too_long", f"留言用户 {requester[:20]}… 过长")
        category = one_line(clean_text(cells.get("category")))
        self.claimed_refs.add(ref)
        return _Row(number, ref, requester, title, description, submitted_at, category, reply,
                    replied_at, notes)

    # ---- requesters and categories

    def requester_key(self, row: _Row) -> tuple[str, str]:
        """``(external_ref, name)`` of the requester of ``row``."""
        if row.requester is None:
            return f"{self.source}:anonymous", f"匿名留言用户（{self.source}）"
        return f"{self.source}:user:{row.requester}", f"留言用户 {row.requester}"[:200]

    def reserve_numbers(self, rows: list[_Row]) -> None:
        """Reserve the ticket numbers of a batch of valid rows, in row order, with one statement
        per year (SQLite) instead of one per row. A row that then fails leaves its number unused
        (a gap; numbers are unique and increasing, not gap-free)."""
        by_year: dict[int, list[_Row]] = {}
        for row in rows:
            by_year.setdefault(row.submitted_at.astimezone(clock.SHANGHAI).year, []).append(row)
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

    def ensure_requesters(self, rows: list[_Row]) -> None:
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

    def requester(self, row: _Row, undo: list[Callable[[], None]]) -> Enterprise:
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

    def category(self, row: _Row, undo: list[Callable[[], None]]) -> Category:
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

    def lead_department(self, row: _Row, category: Category) -> tuple[int, str]:
        found = self.matcher.match(row.reply or "")
        if found is not None:
            return found, "department_from_reply"
        for dept_id in (category.default_department_id, self.default_category.default_department_id):
            if dept_id in self.departments:
                return dept_id, "department_from_category"
        raise _Skip("no_department", f"分类 {category.code} 没有可用的默认承办单位")

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

    def write(self, row: _Row) -> None:
        """Replay ``row`` inside a savepoint; raises :class:`_Skip` (nothing written) on failure."""
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
                    at=row.submitted_at, external_ref=row.ref, history=True, number=self.numbers.pop(row.ref, None),
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
        except _Skip:
            for fn in reversed(undo):
                fn()
            raise
        except IntegrityError as exc:
            for fn in reversed(undo):
                fn()
            if "external_ref" in str(exc.orig):
                raise _Skip("already_imported") from None
            raise _Skip("service_error", _short(exc)) from None
        except (AppError, DataError, ValueError) as exc:
            # a problem of this row (a rule of the workflow, a value the database refuses); other
            # database errors (connection lost, schema out of date) abort the import
            for fn in reversed(undo):
                fn()
            log.warning("import %s row %s failed: %s", self.path.name, row.number, _short(exc))
            raise _Skip("service_error", _short(exc)) from None
        self.result.imported += 1
        self.result.notes.update(notes)
        if lead is not None:
            self.result.replied += 1
            self.result.closed += closed


def _short(exc: Exception) -> str:
    text = getattr(exc, "detail", None) or str(getattr(exc, "orig", None) or exc)
    return one_line(str(text))[:200]


SessionTarget = Session | Engine | Callable[[], Session]


def import_file(target: SessionTarget, path: Path | str, options: ImportOptions | None = None) -> ImportResult:
    """Import the requests in ``path`` (CSV or XLSX).

    Args:
        target: a ``Session`` (everything is flushed in it; the **caller** commits or rolls
            back), or an ``Engine`` / session factory (the importer opens its own session and
            commits every ``options.batch_size`` rows, so an interrupted import keeps whole
            batches and a re-run continues where it stopped).
        path: the file.
        options: see :class:`ImportOptions`.

    Returns:
        The :class:`ImportResult` (counts, skipped rows with reasons, timing).

    Raises:
        ImportConfigError: bad options or mapping (unknown category, column, time zone ...).
        ImportFileError: unreadable file (type, sheet, encoding, no header).
    """
    options = options or ImportOptions()
    path = Path(path)
    if not path.is_file():
        raise ImportFileError(f"文件不存在：{path}")
    source = options.source or default_source(path)
    if not (0 < len(source) <= SOURCE_MAX) or re.search(r"[\s:]", source):
        raise ImportConfigError(f"来源 --source 须为 1-{SOURCE_MAX} 个字符，不含空白和冒号：{source!r}")
    if options.batch_size < 1:
        raise ImportConfigError("batch_size 须 ≥ 1")
    result = ImportResult(path=str(path), source=source, dry_run=options.dry_run)
    started = _time.perf_counter()

    table = open_table(path, options.sheet, options.encoding)
    try:
        index = _column_index(table.header, options.columns)
        if isinstance(target, Session):
            owns, session = False, target
        else:
            owns = True
            session = Session(target, expire_on_commit=False) if isinstance(target, Engine) else target()
        try:
            outer = session.begin_nested() if options.dry_run else None
            importer = _Importer(session, path, options, result)
            total = table.total if options.limit is None else min(options.limit, table.total or options.limit)
            done = 0

            def run_batch(batch: list[tuple[int, dict[str, Any]]]) -> None:
                nonlocal done
                rows: list[_Row] = []
                for number, values in batch:
                    try:
                        rows.append(importer.prepare(number, values))
                    except _Skip as skip:
                        result.skip(skip.reason, number, skip.message)
                importer.ensure_requesters(rows)
                importer.reserve_numbers(rows)
                for row in rows:
                    try:
                        importer.write(row)
                    except _Skip as skip:
                        result.skip(skip.reason, row.number, skip.message)
                    done += 1
                    if options.progress is not None and done % 50 == 0:
                        options.progress(result.imported + result.skipped_count, total)
                if owns and not options.dry_run:
                    session.commit()

            batch: list[tuple[int, dict[str, Any]]] = []
            for number, cells in table.rows:
                if options.limit is not None and result.read >= options.limit:
                    break
                result.read += 1
                batch.append((number, {f: (cells[i] if i < len(cells) else None) for f, i in index.items()}))
                if len(batch) >= options.batch_size:
                    run_batch(batch)
                    batch = []
            run_batch(batch)
            if outer is not None:
                outer.rollback()
        except BaseException:
            if owns:
                session.rollback()
            raise
        finally:
            if owns:
                session.close()
    finally:
        if table.close is not None:
            table.close()
    for rows in result.skipped.values():
        rows.sort()
    if options.progress is not None:
        options.progress(result.read, result.read)
    result.seconds = _time.perf_counter() - started
    return result


def _column_index(header: list[str], overrides: dict[str, str]) -> dict[str, int]:
    """Field → column position. Explicit columns must exist; default ones are used if present.

    Raises:
        ImportConfigError: a required field has no column, or an explicit column is missing.
    """
    positions = {name: i for i, name in reversed(list(enumerate(header))) if name}
    index: dict[str, int] = {}
    for f in FIELDS:
        column = overrides.get(f) or DEFAULT_COLUMNS[f]
        if column in positions:
            index[f] = positions[column]
        elif f in overrides:
            raise ImportConfigError(f"列 {column!r}（字段 {f}）不在表头中；表头：{', '.join(header)}")
    missing = [f for f in REQUIRED_FIELDS if f not in index]
    if "title" not in index and "description" not in index:
        missing.append("title 或 description")
    if missing:
        raise ImportConfigError(
            f"缺少必需的列：{', '.join(missing)}；用 --map 字段=列名 指定。表头：{', '.join(header)}")
    return index


def _import_in_child(url: str, path: Path, options: ImportOptions) -> ImportResult:
    # a forked child opens its own engine and never touches the pooled connections it inherited
    from service.db import make_engine

    engine = make_engine(url)
    try:
        return import_file(engine, path, options)
    finally:
        engine.dispose()


def import_files(engine: Engine, paths: list[Path], options: ImportOptions, jobs: int = 1,
                 on_result: Callable[[ImportResult], None] | None = None) -> list[ImportResult]:
    """Import several files, each with its own source; returns the results in ``paths`` order.

    With ``jobs > 1`` on PostgreSQL the files are imported in parallel worker processes (one file
    per process; each commits its own batches). SQLite has a single writer, so there the files
    are always imported one after the other. ``options.progress`` is used only when serial.

    Raises:
        ImportConfigError / ImportFileError: as :func:`import_file` (in parallel mode, the first
            failing file's error after the others finished).
    """
    if options.source and len(paths) > 1:
        raise ImportConfigError("来源 source 只能用于单个文件（多个文件各用文件名作来源）")
    jobs = max(1, min(jobs, len(paths)))
    if jobs == 1 or engine.dialect.name != "postgresql":
        results = []
        for path in paths:
            results.append(import_file(engine, path, options))
            if on_result is not None:
                on_result(results[-1])
        return results

    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from dataclasses import replace

    child_options = replace(options, progress=None)
    url = engine.url.render_as_string(hide_password=False)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        # largest file first (longest-processing-time-first keeps both processes busy to the end)
        order = sorted(range(len(paths)), key=lambda i: -Path(paths[i]).stat().st_size)
        futures = {i: pool.submit(_import_in_child, url, Path(paths[i]), child_options) for i in order}
        results = []
        for future in (futures[i] for i in range(len(paths))):
            results.append(future.result())
            if on_result is not None:
                on_result(results[-1])
    return results

"""How an import reads a file: the fields and their default columns (the Teddy Cup files), the
options of ``qifu import``, the YAML mapping file and the column map (docs/import.md)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.config import get_settings

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

SOURCE_MAX = 24


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
        timezone: zone of times written without one (default: the office zone, ``QIFU_TIMEZONE``).
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
    timezone: str = field(default_factory=lambda: get_settings().timezone)
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
    import yaml  # only for a mapping file: not at every ``qifu import``'s start-up

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


def column_index(header: list[str], overrides: dict[str, str]) -> dict[str, int]:
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

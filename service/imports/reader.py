"""Read a CSV or XLSX file as a header and numbered rows (streaming).

Row numbers are those a person sees in a spreadsheet: the header is row 1, the first data row is
row 2. For CSV a "row" is a CSV record (a quoted cell may span several lines).
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any


class ImportFileError(ValueError):
    """The file cannot be imported at all (unknown type, no such sheet, no header, ...)."""


@dataclass
class Table:
    """A file opened for reading: its header, the number of data rows if known, and the rows."""

    header: list[str]
    total: int | None
    rows: Iterator[tuple[int, list[Any]]]  # (row number, cells)
    close: Any = None


def _header(cells) -> list[str]:
    header = ["" if c is None else str(c).strip().lstrip("\ufeff") for c in cells]
    while header and not header[-1]:
        header.pop()
    return header


def open_table(path: Path, sheet: str | None = None, encoding: str = "utf-8-sig") -> Table:
    """Open ``path`` (``.csv``/``.txt``/``.tsv`` in ``encoding``, or ``.xlsx``/``.xlsm``).

    Raises:
        ImportFileError: unknown extension, missing sheet, undecodable or empty file.
    """
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        return _open_xlsx(path, sheet)
    if suffix in (".csv", ".txt", ".tsv"):
        if sheet:
            raise ImportFileError("--sheet 只适用于 Excel 文件")
        try:
            return _open_csv(path, encoding)
        except UnicodeDecodeError as exc:
            raise ImportFileError(f"文件不是 {encoding} 编码（{exc.reason}）：请另存为 UTF-8，或用 --encoding gb18030") from exc
        except LookupError as exc:
            raise ImportFileError(f"未知的编码 {encoding!r}") from exc
    raise ImportFileError(f"不支持的文件类型 {suffix or '(无扩展名)'}：请用 .csv 或 .xlsx")


def _xlsx_cell(value: Any) -> Any:
    """A calamine cell as openpyxl (``data_only``) gave it, so every reader of the rows sees the same
    values: an empty cell is ``None``, an integral number an ``int``, a date-only cell a midnight
    ``datetime``."""
    if value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day)
    return value


def _open_xlsx(path: Path, sheet: str | None) -> Table:
    """Read an xlsx workbook with python-calamine (Rust): 附件3's 4,326 rows in ~0.25 s against
    ~1.7 s with openpyxl on the same machine (docs/triage.md "## Hot issues"); cells are normalised
    by :func:`_xlsx_cell` to openpyxl's types."""
    from python_calamine import CalamineError, CalamineWorkbook, PasswordError, XmlError, ZipError

    try:
        wb = CalamineWorkbook.from_path(str(path))
    except (CalamineError, PasswordError, XmlError, ZipError, ValueError, OSError) as exc:
        raise ImportFileError(f"无法读取 Excel 文件：{exc}") from exc
    if sheet is not None and sheet not in wb.sheet_names:
        wb.close()
        raise ImportFileError(f"工作表 {sheet!r} 不存在；可选：{', '.join(wb.sheet_names)}")
    ws = wb.get_sheet_by_name(sheet) if sheet is not None else wb.get_sheet_by_index(0)
    data = ws.to_python(skip_empty_area=False)
    wb.close()
    while data and not any(c != "" for c in data[-1]):  # trailing empty rows are not data
        data.pop()
    if not data:
        raise ImportFileError("文件是空的（没有表头行）")
    header = _header([_xlsx_cell(c) for c in data[0]])

    def rows() -> Iterator[tuple[int, list[Any]]]:
        for number, raw in enumerate(data[1:], start=2):
            cells = [_xlsx_cell(c) for c in raw]
            if any(c is not None and (not isinstance(c, str) or c.strip()) for c in cells):
                yield number, cells

    return Table(header=header, total=len(data) - 1, rows=rows(), close=None)


def _open_csv(path: Path, encoding: str) -> Table:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with path.open(encoding=encoding, newline="") as f:
        sample = f.read(64 * 1024)
        f.seek(0)
        total = sum(1 for _ in csv.reader(f)) - 1
    try:
        dialect = csv.Sniffer().sniff(sample.split("\n", 1)[0], delimiters=",\t;|")
    except csv.Error:
        dialect = csv.excel
    f = path.open(encoding=encoding, newline="")
    reader = csv.reader(f, dialect)
    first = next(reader, None)
    if first is None:
        f.close()
        raise ImportFileError("文件是空的（没有表头行）")

    def rows() -> Iterator[tuple[int, list[Any]]]:
        for number, cells in enumerate(reader, start=2):
            if any(c.strip() for c in cells):
                yield number, cells

    return Table(header=_header(first), total=max(total, 0), rows=rows(), close=f.close)

"""Read a CSV or XLSX file as a header and numbered rows (streaming).

Row numbers are those a person sees in a spreadsheet: the header is row 1, the first data row is
row 2. For CSV a "row" is a CSV record (a quoted cell may span several lines).
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from dataclasses import dataclass
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


def _open_xlsx(path: Path, sheet: str | None) -> Table:
    import openpyxl

    wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    if sheet is not None:
        if sheet not in wb.sheetnames:
            wb.close()
            raise ImportFileError(f"工作表 {sheet!r} 不存在；可选：{', '.join(wb.sheetnames)}")
        ws = wb[sheet]
    else:
        ws = wb.worksheets[0]
    it = ws.iter_rows(values_only=True)
    first = next(it, None)
    if first is None:
        wb.close()
        raise ImportFileError("文件是空的（没有表头行）")
    header = _header(first)
    total = ws.max_row - 1 if ws.max_row else None

    def rows() -> Iterator[tuple[int, list[Any]]]:
        for number, cells in enumerate(it, start=2):
            if any(c is not None and (not isinstance(c, str) or c.strip()) for c in cells):
                yield number, list(cells)

    return Table(header=header, total=total, rows=rows(), close=wb.close)


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

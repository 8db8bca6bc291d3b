"""Exports of the summary and the rankings (SPEC §6): CSV and Excel (xlsx, openpyxl), with Chinese
column headers and sheet names. In Excel, counts are numbers, rates are fractions shown as
percentages (number format ``0.0%``) and working hours numbers with two decimals; in CSV (UTF-8
with a byte-order mark, so that Excel opens it in Chinese) rates are the same fractions.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from service.stats.metrics import RATES
from service.stats.service import (
    GROUPING_LABELS,
    SUMMARY_FIELDS,
    RankingRow,
    SummaryRow,
    column_label,
)

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV = "text/csv"
FORMATS = ("json", "csv", "xlsx")


def choose_format(fmt: str | None, accept: str | None) -> str:
    """``format=`` wins; else the ``Accept`` header (``text/csv`` or the xlsx type); else json.

    Raises:
        FieldError (422, ``format``): an unknown ``format``.
    """
    from service.errors import FieldError

    if fmt is not None:
        if fmt not in FORMATS:
            raise FieldError("format", f"可选：{', '.join(FORMATS)}")
        return fmt
    accept = (accept or "").lower()
    if XLSX in accept:
        return "xlsx"
    if CSV in accept:
        return "csv"
    return "json"


class Table:
    """A sheet: a title (sheet name), ``columns`` (field names) and rows (dicts by field name)."""

    def __init__(self, title: str, columns: Sequence[str], rows: Sequence[dict[str, Any]],
                 headers: dict[str, str] | None = None) -> None:
        self.title, self.columns, self.rows = title, list(columns), list(rows)
        self.headers = {c: column_label(c) for c in self.columns} | (headers or {})


def summary_table(group_by: str, rows: Sequence[SummaryRow], total: SummaryRow, title: str) -> Table:
    """The summary as a table: the group label first, then every measure; the total last."""
    columns = [c for c in SUMMARY_FIELDS if c != "key"]
    return Table(title, columns, [r.as_dict() for r in [*rows, total]],
                 {"label": GROUPING_LABELS.get(group_by, group_by)})


def ranking_table(rows: Sequence[RankingRow], title: str) -> Table:
    """A ranking as a table: rank, department, code, score, then every measure."""
    columns = ["rank", "department", "code", "score", *[c for c in SUMMARY_FIELDS if c not in ("key", "label")]]
    return Table(title, columns, [r.as_dict() for r in rows])


def to_csv(table: Table) -> bytes:
    """UTF-8 CSV with a BOM; empty cells for missing values."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([table.headers[c] for c in table.columns])
    for row in table.rows:
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in table.columns])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def to_xlsx(*tables: Table) -> bytes:
    """A workbook with one sheet per table (names cut to Excel's 31 characters)."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    wb.remove(wb.active)
    for table in tables:
        ws = wb.create_sheet(title=_sheet_name(table.title))
        ws.append([table.headers[c] for c in table.columns])
        for cell in ws[1]:
            cell.font = Font(bold=True)
        for row in table.rows:
            ws.append([row.get(c) for c in table.columns])
        for j, c in enumerate(table.columns, 1):
            fmt = "0.0%" if c in RATES else "0.00" if c.startswith("hours_") or c == "score" else None
            if fmt:
                for i in range(2, ws.max_row + 1):
                    ws.cell(i, j).number_format = fmt
            ws.column_dimensions[ws.cell(1, j).column_letter].width = max(10, 2 * len(table.headers[c]) + 2)
        ws.freeze_panes = "B2"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _sheet_name(title: str) -> str:
    for ch in "[]:*?/\\":
        title = title.replace(ch, "-")
    return title[:31] or "Sheet"

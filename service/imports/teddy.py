"""Readers of the 2020 Teddy Cup problem C files (../shared/data/README.md) for the triage search
features: 附件3 (messages with likes, for hot issues) and 附件4 (messages with their official reply,
for answer suggestions). Cleaning as every import (:mod:`service.imports.cleaning`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from service.imports.cleaning import TimeParseError, clean_id, clean_text, one_line, parse_time
from service.imports.reader import ImportFileError, open_table
from service.triage.hotspots import Message
from service.triage.knowledge import ReplyRecord

#: columns of 附件3 (留言编号, 留言用户, 留言主题, 留言时间, 留言详情, 反对数, 点赞数)
MESSAGE_COLUMNS = ("留言编号", "留言用户", "留言主题", "留言时间", "留言详情", "反对数", "点赞数")


def _records(path: Path, columns: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    """The rows of a table file as ``{column: cell}`` over ``columns`` (short rows padded with
    ``None``); the file is closed when the iteration ends.

    Raises:
        service.imports.reader.ImportFileError: unreadable file or missing columns.
    """
    table = open_table(Path(path))
    try:
        missing = [c for c in columns if c not in table.header]
        if missing:
            raise ImportFileError(f"缺少列：{', '.join(missing)}")
        at = {c: table.header.index(c) for c in columns}
        width = len(table.header)
        for _number, cells in table.rows:
            cells = list(cells) + [None] * (width - len(cells))
            yield {c: cells[i] for c, i in at.items()}
    finally:
        if table.close:
            table.close()


def read_messages(path: Path) -> list[Message]:
    """The messages of a 附件3-like file (xlsx/csv), cleaned (service.imports.cleaning); rows
    without a parsable time are skipped.

    Raises:
        service.imports.reader.ImportFileError: unreadable file or missing columns.
    """
    out = []
    for row in _records(path, MESSAGE_COLUMNS):
        try:
            when = parse_time(row["留言时间"])
        except TimeParseError:
            continue
        if when is None:
            continue
        out.append(Message(id=clean_id(row["留言编号"]), user=clean_id(row["留言用户"]),
                           title=one_line(clean_text(row["留言主题"])), body=clean_text(row["留言详情"]),
                           at=when, likes=_int(row["点赞数"]), against=_int(row["反对数"])))
    return out


def _int(value) -> int:
    try:
        return max(int(float(value)), 0)
    except (TypeError, ValueError):
        return 0


#: columns of 附件4 (留言编号, 留言用户, 留言主题, 留言时间, 留言详情, 答复意见, 答复时间)
REPLY_COLUMNS = ("留言编号", "留言主题", "留言时间", "留言详情", "答复意见", "答复时间")


def read_replies(path: Path) -> Iterable[ReplyRecord]:
    """The rows of a 附件4-like file (xlsx/csv), cleaned (service.imports.cleaning); rows without a
    reply are skipped.

    Raises:
        service.imports.reader.ImportFileError: unreadable file or missing columns.
    """
    for row in _records(path, REPLY_COLUMNS):
        reply = clean_text(row["答复意见"])
        ref = clean_id(row["留言编号"])
        if not reply or not ref:
            continue
        yield ReplyRecord(
            external_ref=f"import:{ref}"[:64], title=one_line(clean_text(row["留言主题"]))[:200],
            question=clean_text(row["留言详情"]), reply=reply,
            asked_at=_time(row["留言时间"]), replied_at=_time(row["答复时间"]))


def _time(value) -> datetime | None:
    try:
        return parse_time(value)
    except ValueError:
        return None



"""Cleaning of imported cells: text and times (pure functions, no I/O).

See ``docs/import.md`` for the rules and ``../shared/data/README.md`` for the dirt they remove.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from functools import lru_cache
from zoneinfo import ZoneInfo

from service.clock import office_zone

#: Formats tried, in order, for time cells given as text (no zone: the file's time zone applies).
#: ``%Y/%m/%d`` also reads ``2019/2/8`` (strptime accepts missing zero padding).
TIME_FORMATS = (
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M:%S",
    "%m/%d/%Y %I:%M:%S %p",  # NYC Open Data: 02/28/2023 11:45:00 PM
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%Y/%m/%d",
    "%Y-%m-%d",
    "%m/%d/%Y",
    "%Y年%m月%d日 %H:%M:%S",
    "%Y年%m月%d日 %H:%M",
    "%Y年%m月%d日",
)

_BLANKS = re.compile(r"\s+")
_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_MANY_NEWLINES = re.compile(r"\n{3,}")
_MOJIBAKE = re.compile(r"[\xc2-\xf4][\x80-\xbf]")


class TimeParseError(ValueError):
    """A time cell that is not a time in any known format."""


def _fix_mojibake(text: str) -> str:
    """Undo UTF-8 read as Latin-1 (``â\\x80\\x99`` → ``'``), only when that decodes cleanly."""
    if not _MOJIBAKE.search(text):
        return text
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def clean_text(value: object) -> str:
    """A cell as clean multi-line text: ``_x000D_`` (an escaped carriage return) and CR/LF become
    ``\\n``, ``\\xa0`` becomes a space, control characters go, leading/trailing whitespace (the
    ``\\n\\t\\t\\t\\t\\t`` of the Teddy Cup bodies, ideographic spaces) is stripped, runs of blank
    lines are collapsed. ``None`` gives ``""``."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if "_x000" in text:
        text = text.replace("_x000D_\n", "\n").replace("_x000D_", "\n").replace("_x000A_", "\n")
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ")
    text = _CTRL.sub("", _fix_mojibake(text))
    lines = [line.rstrip() for line in text.split("\n")]
    text = "\n".join(lines).strip()
    return _MANY_NEWLINES.sub("\n\n", text)


def one_line(text: str) -> str:
    """``text`` on one line: every run of whitespace becomes one space."""
    return _BLANKS.sub(" ", text).strip()


def clean_id(value: object) -> str:
    """An identifier cell as text: ``188006`` (int or ``188006.0``) → ``"188006"``, stripped."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return one_line(str(value))


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """The ``ZoneInfo`` called ``name`` (``ZoneInfoNotFoundError`` if unknown)."""
    return ZoneInfo(name)


def parse_time(value: object, tz: ZoneInfo | None = None, formats: tuple[str, ...] = TIME_FORMATS) -> datetime | None:
    """A time cell as an aware UTC datetime, or ``None`` when the cell is empty.

    Accepts real datetimes (Excel cells; naive ones are local time in ``tz``, default the office zone), dates (midnight),
    Excel serial numbers, ISO 8601 text with an offset, and text in one of ``formats`` (local time
    in ``tz``).

    Raises:
        TimeParseError: text that matches no format, or a number that is no plausible Excel date.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        local = value
    elif isinstance(value, date):
        local = datetime.combine(value, time.min)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if not 1 <= value < 2958466:  # 1900-01-01 .. 9999-12-31
            raise TimeParseError(f"不是时间：{value!r}")
        from openpyxl.utils.datetime import from_excel

        local = from_excel(value)
    else:
        text = one_line(str(value))
        if not text:
            return None
        local = None
        for fmt in formats:
            try:
                local = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
        if local is None:
            try:
                local = datetime.fromisoformat(text)
            except ValueError:
                raise TimeParseError(f"无法识别的时间：{text[:40]!r}") from None
    if local.tzinfo is None:
        local = local.replace(tzinfo=tz or office_zone())
    return local.astimezone(UTC)

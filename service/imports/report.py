"""What an import did: counts, skipped rows with their reasons, notes on imported rows, timing."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

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

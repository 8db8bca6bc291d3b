"""Recognising the handling department named in a reply text (docs/import.md)."""

from __future__ import annotations

import re

from service.departments.models import Department
from service.imports.options import ImportConfigError

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

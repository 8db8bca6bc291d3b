"""``qifu triage hot-issues --file … --xlsx …`` and ``qifu triage import-replies`` on small files
(CSV in the layouts of 附件3 and 附件4) against a migrated SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook
from typer.testing import CliRunner

from qifu.cli import app
from service.config import get_settings
from service.db import get_engine

ROWS_3 = [
    ("1", "U1", "A市A5区魅力之城小区临街餐饮店油烟扰民", "2019/8/18 14:44:00", "魅力之城小区楼下餐馆油烟大", "0", "3"),
    ("2", "U2", "A5区魅力之城小区餐饮油烟噪音扰民", "2019/8/20 9:00:00", "魅力之城小区商铺油烟扰民严重", "1", "2"),
    ("3", "U3", "咨询A3区公积金提取流程", "2019/8/21 9:00:00", "公积金如何提取", "0", "0"),
]


@pytest.fixture
def sqlite_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from tests.scratch_db import migrate

    url = f"sqlite:///{tmp_path / 'qifu.db'}"
    migrate(url)
    monkeypatch.setenv("QIFU_DATABASE_URL", url)
    get_settings.cache_clear()
    get_engine.cache_clear()
    yield url
    get_engine().dispose()
    get_settings.cache_clear()
    get_engine.cache_clear()


def test_hot_issues_from_a_file(tmp_path: Path):
    src = tmp_path / "附件3.csv"
    src.write_text("留言编号,留言用户,留言主题,留言时间,留言详情,反对数,点赞数\n"
                   + "".join(",".join(r) + "\n" for r in ROWS_3), encoding="utf-8")
    out = tmp_path / "热点问题.xlsx"
    result = CliRunner().invoke(app, ["triage", "hot-issues", "--file", str(src), "--xlsx", str(out)])
    assert result.exit_code == 0, result.output
    assert '"rank": 1' in result.output
    wb = load_workbook(out)
    hot = list(wb["热点问题表"].iter_rows(values_only=True))
    detail = list(wb["热点问题留言明细表"].iter_rows(values_only=True))
    assert hot[1][0] == 1 and "魅力之城" in hot[1][4]
    assert [r[1] for r in detail[1:]] == [1, 2] and detail[1][6:] == (3, 0)


def test_bad_file_is_exit_2(tmp_path: Path):
    src = tmp_path / "x.csv"
    src.write_text("a,b\n1,2\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["triage", "hot-issues", "--file", str(src)])
    assert result.exit_code == 2 and "缺少列" in result.output


def test_import_replies(tmp_path: Path, sqlite_db: str):
    src = tmp_path / "附件4.csv"
    src.write_text("留言编号,留言用户,留言主题,留言时间,留言详情,答复意见,答复时间\n"
                   "10,U1,高新技术企业认定,2019/3/1 10:00:00,需要哪些材料,请提交知识产权证明等材料,2019/3/8 10:00:00\n"
                   "11,U2,无答复,2019/3/1 10:00:00,问题,,\n", encoding="utf-8")
    first = CliRunner().invoke(app, ["triage", "import-replies", str(src)])
    assert first.exit_code == 0, first.output
    assert '"added": 1' in first.output and '"skipped": 0' in first.output
    again = CliRunner().invoke(app, ["triage", "import-replies", str(src)])
    assert '"added": 0' in again.output and '"skipped": 1' in again.output
    engine = sa.create_engine(sqlite_db)
    with engine.connect() as conn:  # the FTS5 table follows the rows (trigger)
        hits = conn.execute(sa.text("SELECT rowid FROM past_reply_fts WHERE past_reply_fts MATCH '\"认定\"'")).all()
    engine.dispose()
    assert len(hits) == 1
    assert CliRunner().invoke(app, ["triage", "index-duplicates"]).exit_code == 0

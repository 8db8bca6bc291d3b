"""``qifu import`` starts without the modules it does not use (issue 11: the README's Teddy Cup
import under 10 s on SQLite, start-up included; docs/import.md "Performance"): FastAPI, numpy,
psycopg, structlog, Celery and the API's routers cost about 0.5 s of every command's start-up and
are loaded only by the code that needs them (the API, the triage index, PostgreSQL's async pools,
logging configuration, the broker)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.scratch_db import build_database

ROOT = Path(__file__).resolve().parents[2]
NOT_NEEDED = ["fastapi", "numpy", "psycopg", "psycopg_pool", "structlog", "celery", "yaml", "service.main",
              "qifu.main", "service.ticketing.router"]

_PROBE = """
import json, runpy, sys
sys.argv = ["qifu", *sys.argv[1:]]
try:
    runpy.run_module("qifu.cli", run_name="__main__")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print(json.dumps({"code": code, "loaded": sorted(m for m in %r if m in sys.modules)}))
"""


def test_import_command_loads_only_what_it_needs(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'qifu.db'}"
    build_database(url, enterprises=0)
    csv = tmp_path / "留言.csv"
    csv.write_text("留言编号,留言用户,留言主题,留言时间,留言详情,答复意见,答复时间\n"
                   "1,U1,噪音扰民,2019/3/1 10:00:00,夜间施工噪音,已转青禾县生态环境局处理,2019/3/5 10:00:00\n",
                   encoding="utf-8")
    done = subprocess.run([sys.executable, "-c", _PROBE % (NOT_NEEDED,), "import", str(csv)], cwd=ROOT,
                          env={**os.environ, "QIFU_DATABASE_URL": url}, capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"code": 0, "loaded": []}, done.stdout
    assert "导入 1" in done.stdout  # the row was imported (replied and closed), not just parsed

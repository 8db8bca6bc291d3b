"""The README's import of the Teddy Cup files into the embedded default (SQLite), timed.

    uv run python bench/import_sqlite.py                 # 附件4 then 附件3, as the README runs them
    uv run python bench/import_sqlite.py --runs 3        # best of three
    uv run python bench/import_sqlite.py --files 附件4.xlsx

Builds a fresh SQLite file in a temporary directory (``qifu migrate`` + ``qifu seed``: the Alembic
migrations and the seeds), then runs the production command ``qifu import FILE`` once per file, in
a child process each, as a user would. Prints per file the wall seconds of the command (start-up
included), the CPU seconds of the child, and the load average of the machine before the run (the
figures depend on what else the machine is doing: compare runs only when it is low). Target
(issue 11): the two files under 10 s in all on an idle 2-core machine. docs/import.md has the
figures.
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "tipdm2020c" / "from_15625103741_Text-Mining"


def _qifu(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run ``qifu ARGS``; returns (wall seconds, child CPU seconds, last output line)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "qifu.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"qifu {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = done.stdout.strip().splitlines()
    return wall, cpu, lines[0] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the Teddy Cup directory")
    parser.add_argument("--files", nargs="+", default=["附件4.xlsx", "附件3.xlsx"])
    parser.add_argument("--runs", type=int, default=1, help="repeat on a fresh database, keep the best")
    args = parser.parse_args()
    for name in args.files:
        if not (args.data / name).is_file():
            raise SystemExit(f"missing {args.data / name}")

    with tempfile.TemporaryDirectory(prefix="qifu-import-bench-") as tmp:
        seeded = Path(tmp) / "seeded.db"
        env = {**os.environ, "QIFU_DATABASE_URL": f"sqlite:///{seeded}"}
        _qifu(["migrate"], env)
        _qifu(["seed"], env)
        best: dict[str, tuple[float, float]] = {}
        for run in range(args.runs):
            db = Path(tmp) / f"run{run}.db"
            with sqlite3.connect(seeded) as src, sqlite3.connect(db) as dst:
                src.backup(dst)  # with what is still in the write-ahead log (a file copy misses it)
            env["QIFU_DATABASE_URL"] = f"sqlite:///{db}"
            load = os.getloadavg()[0]
            total_wall = total_cpu = 0.0
            for name in args.files:
                wall, cpu, line = _qifu(["import", str(args.data / name)], env)
                total_wall, total_cpu = total_wall + wall, total_cpu + cpu
                print(f"run {run + 1}: qifu import {name}: {wall:.1f} s wall, {cpu:.1f} s CPU  | {line}")
                if name not in best or wall < best[name][0]:
                    best[name] = (wall, cpu)
            print(f"run {run + 1}: total {total_wall:.1f} s wall, {total_cpu:.1f} s CPU "
                  f"(load average before: {load:.1f} on {os.cpu_count()} cores)")
        if args.runs > 1:
            wall = sum(w for w, _ in best.values())
            print(f"best per file: {', '.join(f'{n} {w:.1f} s' for n, (w, _) in best.items())}; sum {wall:.1f} s")


if __name__ == "__main__":
    main()

"""The README's import of the Teddy Cup files into the embedded default (SQLite), timed.

    uv run python bench/import_sqlite.py                 # 附件4 then 附件3, as the README runs them
    uv run python bench/import_sqlite.py --runs 3        # best of three
    uv run python bench/import_sqlite.py --files 附件4.xlsx
    uv run python bench/import_sqlite.py --bytecode cached   # only the figure of the target

Builds a fresh SQLite file in a temporary directory (``qifu migrate`` + ``qifu seed``: the Alembic
migrations and the seeds), then runs the production command ``qifu import FILE`` once per file, in
a child process each, as a user would. Prints per file the wall seconds of the command (start-up
included), the CPU seconds of the child, and the load average of the machine before the run (the
figures depend on what else the machine is doing: compare runs only when it is low). Target
(issue 11): the two files under 10 s in all on an idle 2-core machine. docs/import.md has the
figures.

**Bytecode.** Each command's start-up depends on Python's bytecode cache (``__pycache__``). The
bench measures two set-ups (``--bytecode both``, the default):

- ``cached`` (the target's figure): the children run **without** ``PYTHONDONTWRITEBYTECODE``
  (removed from their environment if set), as Python runs by default, and one untimed
  ``qifu import --dry-run --limit 1`` first writes the cache of every module the command loads.
- ``none``: ``PYTHONDONTWRITEBYTECODE=1`` and an empty ``PYTHONPYCACHEPREFIX``: no cache is read
  or written, every module is compiled at every start (a machine that sets
  ``PYTHONDONTWRITEBYTECODE=1`` and has no ``__pycache__``, as the development machine did).
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


def _env(mode: str, tmp: Path) -> dict[str, str]:
    """The children's environment for bytecode set-up ``mode`` (``cached`` or ``none``)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    if mode == "none":
        empty = tmp / "no-pycache"
        empty.mkdir(exist_ok=True)
        env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONPYCACHEPREFIX=str(empty))
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the Teddy Cup directory")
    parser.add_argument("--files", nargs="+", default=["附件4.xlsx", "附件3.xlsx"])
    parser.add_argument("--runs", type=int, default=1, help="repeat on a fresh database, keep the best")
    parser.add_argument("--bytecode", choices=["cached", "none", "both"], default="both",
                        help="bytecode cache of the children (module docstring); default both")
    args = parser.parse_args()
    for name in args.files:
        if not (args.data / name).is_file():
            raise SystemExit(f"missing {args.data / name}")
    modes = ["cached", "none"] if args.bytecode == "both" else [args.bytecode]

    with tempfile.TemporaryDirectory(prefix="qifu-import-bench-") as tmp:
        seeded = Path(tmp) / "seeded.db"
        env = {**_env("cached", Path(tmp)), "QIFU_DATABASE_URL": f"sqlite:///{seeded}"}
        _qifu(["migrate"], env)
        _qifu(["seed"], env)
        for mode in modes:
            env = _env(mode, Path(tmp))
            label = ("bytecode cached (PYTHONDONTWRITEBYTECODE unset)" if mode == "cached" else
                     "no bytecode cache (PYTHONDONTWRITEBYTECODE=1, empty PYTHONPYCACHEPREFIX)")
            print(f"== {label}")
            if mode == "cached":  # write the cache of every module the command loads (untimed)
                _qifu(["import", "--dry-run", "--limit", "1", str(args.data / args.files[0])],
                      {**env, "QIFU_DATABASE_URL": f"sqlite:///{seeded}"})
            best: dict[str, tuple[float, float]] = {}
            for run in range(args.runs):
                db = Path(tmp) / f"{mode}-run{run}.db"
                with sqlite3.connect(seeded) as src, sqlite3.connect(db) as dst:
                    src.backup(dst)  # with what is still in the write-ahead log (a file copy misses it)
                env["QIFU_DATABASE_URL"] = f"sqlite:///{db}"
                load = os.getloadavg()[0]
                total_wall = total_cpu = 0.0
                for name in args.files:
                    wall, cpu, line = _qifu(["import", str(args.data / name)], env)
                    total_wall, total_cpu = total_wall + wall, total_cpu + cpu
                    print(f"{mode} run {run + 1}: qifu import {name}: {wall:.1f} s wall, {cpu:.1f} s CPU  | {line}")
                    if name not in best or wall < best[name][0]:
                        best[name] = (wall, cpu)
                print(f"{mode} run {run + 1}: total {total_wall:.1f} s wall, {total_cpu:.1f} s CPU "
                      f"(load average before: {load:.1f} on {os.cpu_count()} cores)")
            if args.runs > 1:
                wall = sum(w for w, _ in best.values())
                print(f"{mode} best per file: {', '.join(f'{n} {w:.1f} s' for n, (w, _) in best.items())}; "
                      f"sum {wall:.1f} s")


if __name__ == "__main__":
    main()

"""Dump every table of a SQLite database after the README's Teddy Cup import, to compare two versions of the code.

    uv run python bench/import_identity.py --seeded S.db --out before.dump   # on the old code
    uv run python bench/import_identity.py --seeded S.db --out after.dump    # on the new code
    diff before.dump after.dump

Copies the seeded SQLite file ``--seeded`` (``qifu migrate`` + ``qifu seed``; the same file for
both runs, so the seed's demo data does not matter), runs ``qifu import 附件4.xlsx`` then
``qifu import 附件3.xlsx`` on the copy as the README does (each in a child process), then writes
every row of every table (FTS shadow tables included), each table sorted on all its columns, one
line per row. Columns that depend on the wall clock are masked and listed with ``--volatile``
(default: ``enterprise.created_at`` of the requesters created by the import, the only one found
by comparing two runs of the same code; see ``VOLATILE``).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "tipdm2020c" / "from_15625103741_Text-Mining"

#: table -> columns set from the wall clock when the import runs (masked in the dump).
VOLATILE: dict[str, set[str]] = {"enterprise": {"created_at"}}  # the requesters the import creates


def dump(db: Path, out, volatile: dict[str, set[str]]) -> dict[str, int]:
    """Write every table of ``db`` to the text stream ``out``; returns the row count per table."""
    counts: dict[str, int] = {}
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        for table in tables:
            cols = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]
            masked = volatile.get(table, set())
            order = ", ".join(f'"{c}"' for c in cols)
            rows = conn.execute(f'SELECT {order} FROM "{table}" ORDER BY {order}').fetchall()
            counts[table] = len(rows)
            out.write(f"== {table} ({len(rows)} rows) {cols}\n")
            for row in rows:
                out.write(repr(tuple("<masked>" if c in masked else v for c, v in zip(cols, row, strict=True)))
                          + "\n")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeded", type=Path, required=True, help="a migrated and seeded SQLite file")
    parser.add_argument("--out", type=Path, required=True, help="the dump to write")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--files", nargs="+", default=["附件4.xlsx", "附件3.xlsx"])
    parser.add_argument("--volatile", nargs="*", default=[], metavar="TABLE.COLUMN",
                        help="more columns to mask")
    args = parser.parse_args()
    volatile = {t: set(c) for t, c in VOLATILE.items()}
    for item in args.volatile:
        table, column = item.split(".", 1)
        volatile.setdefault(table, set()).add(column)
    with tempfile.TemporaryDirectory(prefix="qifu-import-identity-") as tmp:
        db = Path(tmp) / "import.db"
        with sqlite3.connect(args.seeded) as src, sqlite3.connect(db) as dst:
            src.backup(dst)
        env = {**os.environ, "QIFU_DATABASE_URL": f"sqlite:///{db}"}
        for name in args.files:
            subprocess.run([sys.executable, "-m", "qifu.cli", "import", str(args.data / name)], env=env,
                           cwd=ROOT, check=True, capture_output=True)
        with args.out.open("w", encoding="utf-8") as out:
            counts = dump(db, out, volatile)
    print(", ".join(f"{t}={n}" for t, n in counts.items() if n))


if __name__ == "__main__":
    main()

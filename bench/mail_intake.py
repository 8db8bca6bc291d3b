"""E-mail intake benchmark (issue 12 figures): 1,000 messages fetched from a real IMAP server and
turned into tickets, timed; then 1,000 more taken by a worker SIGKILLed at random points and
restarted until done, which must leave exactly 1,000 tickets.

    uv run python bench/mail_intake.py                        # 1,000 messages, 10 kills
    uv run python bench/mail_intake.py --messages 200 --kills 3 --workers 8

What it does:

1. builds a fresh PostgreSQL database (``--db``, default ``qifu_bench_mail``; dropped and
   recreated; migrations to head, then the seeds with 20 demo enterprises) and registers an
   e-mail address on ``ent1``'s user;
2. starts Dovecot (``tests/mail_intake/dovecot.py``: own configuration, first free port of
   18060-18068) and delivers ``--messages`` messages by IMAP APPEND to a new folder: UTF-8 plain
   text, every fifth GB18030, every tenth with a PNG attachment (stored in a temporary directory);
3. **throughput**: runs ``qifu mail poll`` once as a subprocess and prints its wall time
   (process start, IMAP fetch, one transaction per message, flags) and the poll's own
   ``seconds``, then checks one ticket per message;
4. **kill test**: delivers ``--messages`` more to another folder and runs ``qifu mail poll``
   until nothing is pending, SIGKILLing the first ``--kills`` runs once a random 1-``--max-step``
   further messages are committed (``tests/mail_intake/harness.py``), then checks exactly one
   ledger row and one ticket per message and no message left unflagged on the server;
5. prints the load average before and after (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlmodel import Session, select  # noqa: E402

from service.db import make_engine  # noqa: E402
from service.users.models import User  # noqa: E402
from tests.mail_intake.dovecot import Dovecot  # noqa: E402
from tests.mail_intake.harness import (  # noqa: E402
    check_exactly_once,
    deliver_mix,
    poll_command,
    run_with_kills,
)
from tests.scratch_db import build_database, create_database, drop_database  # noqa: E402

SERVER = os.environ.get("QIFU_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=10, help="0: the throughput part only")
    parser.add_argument("--max-step", type=int, default=100, help="most messages committed before a kill")
    parser.add_argument("--workers", type=int, default=8, help="QIFU_MAIL_WORKERS")
    parser.add_argument("--batch", type=int, default=50, help="QIFU_MAIL_BATCH_SIZE")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--db", default="qifu_bench_mail")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()

    print(f"load average before: {load()}  (cores: {os.cpu_count()})")
    url = create_database(SERVER, args.db)
    attachments = tempfile.mkdtemp(prefix="qifu-bench-attachments-")
    try:
        started = time.monotonic()
        build_database(url, enterprises=20)
        engine = make_engine(url)
        address = f"bench-{uuid.uuid4().hex[:8]}@example.com"
        with Session(engine) as session:
            session.exec(select(User).where(User.username == "ent1")).one().email = address
            session.commit()
        engine.dispose()
        print(f"database {args.db} built in {time.monotonic() - started:.1f} s")
        extra = {"QIFU_MAIL_WORKERS": str(args.workers), "QIFU_MAIL_BATCH_SIZE": str(args.batch),
                 "QIFU_ATTACHMENT_STORAGE_URL": attachments}
        with Dovecot() as dovecot:
            print(f"dovecot on 127.0.0.1:{dovecot.port}")
            # 1. throughput
            folder = dovecot.new_folder("speed" + uuid.uuid4().hex[:8])
            started = time.monotonic()
            expected = deliver_mix(dovecot, folder, address, args.messages, contacts_only=True)
            print(f"delivered {args.messages} messages by IMAP APPEND in {time.monotonic() - started:.1f} s")
            command, env = poll_command(url, dovecot, folder)
            env.update(extra)
            load_at = load()
            started = time.monotonic()
            done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, check=True)
            wall = time.monotonic() - started
            result = json.loads(done.stdout.decode().strip().splitlines()[-1])
            check_exactly_once(url, dovecot, folder, address, expected)
            print(f"THROUGHPUT: {args.messages} messages -> {result['states'].get('ticket', 0)} tickets: "
                  f"`qifu mail poll` {wall:.1f} s wall (poll itself {result['seconds']:.1f} s, "
                  f"{args.messages / result['seconds']:.0f} messages/s), workers {args.workers}, "
                  f"load average at start {load_at}, now {load()}")
            # 2. kill test
            if args.kills == 0:
                return
            folder = dovecot.new_folder("kill" + uuid.uuid4().hex[:8])
            expected = deliver_mix(dovecot, folder, address, args.messages, contacts_only=True)
            load_at = load()
            outcome = run_with_kills(url, dovecot, folder, args.kills, args.seed, max_step=args.max_step,
                                     timeout=3600, extra_env=extra)
            check_exactly_once(url, dovecot, folder, address, expected)
            print(f"KILL TEST: {args.messages} messages, {outcome['kills']} SIGKILLs over {outcome['runs']} runs "
                  f"in {outcome['seconds']:.1f} s -> exactly {expected[0]} tickets, {args.messages} ledger rows, "
                  f"nothing left unflagged; load average at start {load_at}, now {load()}")
    finally:
        if not args.keep:
            drop_database(SERVER, args.db)
        import shutil

        shutil.rmtree(attachments, ignore_errors=True)
    print(f"load average after: {load()}")


if __name__ == "__main__":
    main()

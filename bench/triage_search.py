"""Triage search benchmark (issue 13): the near-duplicate check at 1 M tickets, hot issues over
附件3, knowledge-base and past-reply search latency.

    uv run python bench/triage_search.py                      # all three, 1,000,000 tickets
    uv run python bench/triage_search.py --tickets 100000     # smaller
    uv run python bench/triage_search.py --reuse              # time again on the database built
    uv run python bench/triage_search.py --only hot           # one part: dup | hot | search

Data: ../shared/data/tipdm2020c (``--data`` or ``QIFU_SHARED_DATA``).

1. **Duplicates** (PostgreSQL database ``--db``, default ``qifu_bench_search``): migrations and
   seeds, ``--tickets`` tickets set-based (bench/stats.py's ``load_tickets``: five years, ~6 %
   open), and 16 LSH rows for *every* ticket, open or not (the index as if never swept: the worst
   case), set-based with random band hashes (``INSERT … SELECT … generate_series``: unrelated texts
   share no band). Then ``--real`` open tickets get the real texts of 附件3/附件4 and their real
   bands, and as many near-copies of them (a few characters changed, another enterprise of the
   same grid) are inserted the same way. Timed: :func:`service.triage.duplicates.find_duplicates`
   for each near-copy as an admin (MinHash of the text, the indexed query, exact Jaccard), p50/p99,
   and the recall (the original found).
2. **Hot issues**: read 附件3 (4,326 messages) and :func:`service.triage.hotspots.find_hot_issues`;
   prints both times and the top five groups.
3. **Search**: import 附件4's 2,816 replies as past replies and 500 of them as knowledge-base
   articles; time :func:`~service.triage.knowledge.search_past_replies` and
   :func:`~service.triage.knowledge.search_articles` for ``--queries`` message texts of 附件3.

Every figure is printed with the load average (the machine may be shared).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from sqlmodel import Session  # noqa: E402

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def _teddy(data: Path) -> Path:
    return data / "tipdm2020c" / "from_15625103741_Text-Mining"


LSH_SQL = """
INSERT INTO ticket_lsh (band, ticket_id)
SELECT (floor((random() - 0.5) * 18446744073709551615::numeric))::bigint + 0 * b, t.id
FROM ticket t CROSS JOIN generate_series(1, 16) AS b
WHERE t.id BETWEEN :lo AND :hi
"""


def build(url: str, tickets: int) -> None:
    from bench.stats import load_tickets
    from tests.scratch_db import build_database, create_database

    server, name = url.rsplit("/", 1)
    create_database(server, name)
    t0 = time.perf_counter()
    build_database(url)
    print(f"migrated and seeded in {time.perf_counter() - t0:.1f} s", flush=True)
    print(f"{tickets:,} tickets loaded in {load_tickets(url, tickets):.1f} s ({_load()})", flush=True)
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    t0 = time.perf_counter()
    with engine.connect() as conn:
        conn.execute(sa.text("SET synchronous_commit = off"))
        conn.execute(sa.text("ALTER TABLE ticket_lsh DROP CONSTRAINT pk_ticket_lsh"))
        lo, hi = conn.execute(sa.text("SELECT min(id), max(id) FROM ticket")).one()
        for start in range(lo, hi + 1, 250_000):
            conn.execute(sa.text(LSH_SQL), {"lo": start, "hi": start + 249_999})
        conn.execute(sa.text("ALTER TABLE ticket_lsh ADD CONSTRAINT pk_ticket_lsh PRIMARY KEY (band, ticket_id)"))
        conn.execute(sa.text("VACUUM ANALYZE ticket_lsh"))
        rows = conn.execute(sa.text("SELECT count(*) FROM ticket_lsh")).scalar()
    engine.dispose()
    print(f"{rows:,} LSH rows (16 per ticket) in {time.perf_counter() - t0:.1f} s ({_load()})", flush=True)


def _perturb(rng: random.Random, text: str, changes: int = 4) -> str:
    chars = list(text)
    for _ in range(changes):
        if len(chars) < 10:
            break
        k = rng.randrange(len(chars))
        chars[k] = rng.choice("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动")
    return "".join(chars)


def plant(url: str, data: Path, real: int) -> list[int]:
    """Give ``real`` open tickets real texts and their bands, insert a near-copy of each; returns
    the ids of the near-copies."""
    from service.imports import teddy
    from service.triage import duplicates
    from service.triage.search_models import TicketLsh

    msgs = teddy.read_messages(_teddy(data) / "附件3.xlsx")
    rng = random.Random(7)
    rng.shuffle(msgs)
    engine = sa.create_engine(url)
    copies = []
    with Session(engine) as s:
        opened = s.execute(sa.text(
            "SELECT t.id, t.grid_id, (SELECT e.id FROM enterprise e WHERE e.grid_id = t.grid_id AND e.id <> "
            "t.enterprise_id LIMIT 1) FROM ticket t WHERE t.status IN ('submitted','accepted','dispatched',"
            "'in_progress','on_hold','replied') AND t.grid_id IS NOT NULL ORDER BY t.id DESC LIMIT :n"),
            {"n": real * 3}).all()
        opened = [o for o in opened if o[2] is not None][:real]
        for (tid, _grid, other_ent), m in zip(opened, msgs, strict=False):
            title, body = m.title[:200], m.body
            s.execute(sa.text("UPDATE ticket SET title = :t, description = :d WHERE id = :i"),
                      {"t": title, "d": body, "i": tid})
            # its random rows stay (no index on ticket_id to delete them by; they match nothing)
            s.execute(sa.insert(TicketLsh), [{"band": b, "ticket_id": tid} for b in duplicates.bands(title, body)])
            ctitle, cbody = _perturb(rng, title, 1), _perturb(rng, body)
            new_id = s.execute(sa.text(
                "INSERT INTO ticket (number, enterprise_id, channel, service_type, category_id, title, description,"
                " priority, status, officer_id, grid_id, reopen_count, return_count, escalation_level, remind_count,"
                " version, submitted_at, updated_at, hold_seconds, extension_count, overdue_count) "
                "SELECT 'QD' || lpad(CAST(:i AS text), 10, '0'), :e, channel, service_type, category_id, :t, :d, priority,"
                " 'submitted', officer_id, grid_id, 0, 0, 0, 0, 1, now(), now(), 0, 0, 0 FROM ticket WHERE id = :src"
                " RETURNING id"), {"i": tid, "e": other_ent, "t": ctitle, "d": cbody, "src": tid}).scalar_one()
            s.execute(sa.insert(TicketLsh), [{"band": b, "ticket_id": new_id}
                                             for b in duplicates.bands(ctitle, cbody)])
            copies.append((new_id, tid))
        s.commit()
    engine.dispose()
    return copies


def bench_duplicates(url: str, copies: list[tuple[int, int]]) -> None:
    from service.auth.actor import Actor
    from service.tickets.models import Ticket
    from service.triage import duplicates

    engine = sa.create_engine(url)
    with Session(engine) as s:
        n = s.execute(sa.text("SELECT count(*) FROM ticket")).scalar()
        rows = s.execute(sa.text("SELECT count(*) FROM ticket_lsh")).scalar()
        admin = Actor.system()
        tickets = [(s.get(Ticket, c), o) for c, o in copies]
        for t, _ in tickets[:20]:  # warm: jieba is not used; the pool and the plans are
            duplicates.find_duplicates(s, admin, t)
        times, found = [], 0
        for t, original in tickets:
            t0 = time.perf_counter()
            cands = duplicates.find_duplicates(s, admin, t)
            times.append((time.perf_counter() - t0) * 1000)
            orig_number = s.get(Ticket, original).number
            found += any(c.number == orig_number for c in cands)
        t0 = time.perf_counter()
        for _ in range(200):
            duplicates.bands(tickets[0][0].title, tickets[0][0].description)
        bands_ms = (time.perf_counter() - t0) / 200 * 1000
    engine.dispose()
    print(f"duplicate check at {n:,} tickets ({rows:,} LSH rows): {len(times)} checks, p50 {_pct(times, .5):.2f} ms, "
          f"p99 {_pct(times, .99):.2f} ms, max {max(times):.2f} ms; near-copy found {found}/{len(times)}; "
          f"bands of one request {bands_ms:.3f} ms ({_load()})", flush=True)


def bench_hot(data: Path) -> None:
    from service.imports import teddy
    from service.triage import hotspots

    ti = time.perf_counter()
    import scipy.sparse.csgraph  # noqa: F401  (what find_hot_issues imports on its first call)
    import sklearn.feature_extraction.text  # noqa: F401

    t0 = time.perf_counter()
    msgs = teddy.read_messages(_teddy(data) / "附件3.xlsx")
    t1 = time.perf_counter()
    groups = hotspots.find_hot_issues(msgs, limit=5)
    t2 = time.perf_counter()
    groups = hotspots.find_hot_issues(msgs, limit=5)  # warm
    t3 = time.perf_counter()
    print(f"hot issues over {len(msgs):,} messages: import scikit-learn/scipy {t0 - ti:.2f} s, read {t1 - t0:.2f} s, "
          f"group and rank {t2 - t1:.2f} s (first call), {t3 - t2:.2f} s (second); TOTAL read + first grouping "
          f"{t2 - t0:.2f} s (target < 5 s), with the imports {t2 - ti:.2f} s ({_load()})", flush=True)
    for g in groups:
        print(f"  {g.rank} | {g.heat} | {g.date_from:%Y/%m/%d} 至 {g.date_to:%Y/%m/%d} | {g.place} | {g.description} "
              f"| {g.messages} messages, {g.users} users, {g.likes} likes, {g.against} against", flush=True)


def bench_search(url: str, data: Path, queries: int) -> None:
    from service.auth.actor import Actor
    from service.imports import teddy
    from service.triage import knowledge
    from service.triage.text import warm_up

    warm_up()
    engine = sa.create_engine(url)
    with Session(engine) as s:
        s.execute(sa.text("DELETE FROM past_reply WHERE source = 'import'"))
        records = list(teddy.read_replies(_teddy(data) / "附件4.xlsx"))
        t0 = time.perf_counter()
        added, _ = knowledge.import_replies(s, records)
        t1 = time.perf_counter()
        s.execute(sa.text("DELETE FROM knowledge_article"))
        admin = Actor.system()
        for r in records[:500]:
            knowledge.create_article(s, admin, knowledge.ArticleCreate(title=r.title or "无主题", body=r.reply[:20000]))
        s.commit()
        print(f"imported {added:,} past replies in {t1 - t0:.1f} s (jieba segmentation included) ({_load()})",
              flush=True)
        msgs = teddy.read_messages(_teddy(data) / "附件3.xlsx")
        random.Random(3).shuffle(msgs)
        probes = [f"{m.title}\n{m.body}" for m in msgs[:queries]]
        for p in probes[:5]:
            knowledge.search_past_replies(s, p)
        for name, fn in (("past replies", lambda q: knowledge.search_past_replies(s, q, limit=5)),
                         ("knowledge base", lambda q: knowledge.search_articles(s, q, limit=5))):
            times = []
            for p in probes:
                t0 = time.perf_counter()
                fn(p)
                times.append((time.perf_counter() - t0) * 1000)
            print(f"{name} search ({s.execute(sa.text('SELECT count(*) FROM ' + ('past_reply' if name == 'past replies' else 'knowledge_article'))).scalar():,} rows), "
                  f"{len(times)} queries of 附件3 messages: p50 {_pct(times, .5):.1f} ms, p99 {_pct(times, .99):.1f} ms "
                  f"({_load()})", flush=True)
        # ranking quality: a 附件4 question should find its own reply first
        sample = random.Random(5).sample(records, 100)
        top1 = 0
        for r in sample:
            hits = knowledge.search_past_replies(s, f"{r.title}\n{r.question}", limit=1)
            top1 += bool(hits) and hits[0].external_ref == r.external_ref
        print(f"self-retrieval: {top1}/100 附件4 questions find their own reply first", flush=True)
    engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tickets", type=int, default=1_000_000)
    ap.add_argument("--real", type=int, default=300, help="open tickets given real texts, each with a near-copy")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--pg-url", default=PG_SERVER)
    ap.add_argument("--db", default="qifu_bench_search")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("QIFU_SHARED_DATA") or ROOT.parent / "shared" / "data"))
    ap.add_argument("--reuse", action="store_true", help="do not rebuild the database")
    ap.add_argument("--only", choices=("dup", "hot", "search"))
    args = ap.parse_args()
    url = f"{args.pg_url}/{args.db}"
    print(_load(), flush=True)
    if args.only in (None, "hot"):
        bench_hot(args.data)
    if args.only in (None, "dup", "search") and not args.reuse:
        build(url, args.tickets)
    if args.only in (None, "dup"):
        copies = plant(url, args.data, args.real)
        bench_duplicates(url, copies)
    if args.only in (None, "search"):
        bench_search(url, args.data, args.queries)


if __name__ == "__main__":
    main()

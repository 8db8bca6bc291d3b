"""Category and department suggestions (issue 13): evaluation, training time, API latency.

    uv run python bench/triage.py                     # all three parts
    uv run python bench/triage.py --part eval         # evaluation only (no database)
    uv run python bench/triage.py --part train --part latency --requests 600

``eval``  (no database; the same functions the service uses: ``training.document``,
          ``model.fit_classifier``, ``suggest.keyword_bags`` + ``model.KeywordRanker``):
  * category on the labelled file (附件2-labelled-train, 298 distinct ids, 7 first-level
    categories): stratified 5-fold cross-validation (shuffled, seed 0) and a time split (the
    earliest 80 % by 留言时间 to learn, the latest 20 % to test);
  * department on 附件4: the label is the department the reply names, found by the importer's
    rule (``service.imports.departments.DepartmentMatcher``) over the seeds' 17 departments; rows
    whose reply names none are left out; time split 80/20 by 留言时间;
  * each against the majority class (top 3: the three most frequent training labels) and the
    keyword fallback (category: the names of the taxonomy 附件1, each first-level category with
    its descendants' names; department: the department names and the seeds' categories they
    handle by default), in the same run.
``train`` a PostgreSQL database ``qifu_bench_triage7`` (dropped and recreated) with 10,000
          training examples: the 9,943 real texts of 附件3, 附件4 and 测试数据 plus 57 drawn again;
          labels synthesized (category: the keyword fallback's best second-level taxonomy category,
          ~100 classes; department: the reply's department else the keyword fallback's); times
          ``service.triage.training.train`` (read, segment, fit, dump, store).
``latency`` ``qifu serve --workers 1`` on that database (port 18070), one officer posting
          ``POST /api/v1/triage/suggest`` with real titles and texts of 附件3 back to back
          (``--requests``, after 50 warm-up requests), client-side p50/p95/p99/max; then the same
          for ``GET /api/v1/tickets/{number}`` as an officer (suggestions computed on read).
The load average is printed beside every timing: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from seeds.loader import _read as read_yaml  # noqa: E402
from service.departments.models import Department  # noqa: E402
from service.imports.cleaning import clean_id, clean_text, one_line, parse_time  # noqa: E402
from service.imports.departments import DepartmentMatcher  # noqa: E402
from service.triage.model import KeywordRanker, fit_classifier  # noqa: E402
from service.triage.suggest import keyword_bags  # noqa: E402
from service.triage.training import document  # noqa: E402

DATA = Path(os.environ.get("QIFU_SHARED_DATA", ROOT.parent / "shared" / "data")) / "tipdm2020c"
if not DATA.is_dir():
    DATA = Path("/work/shared/data/tipdm2020c")
TEDDY = DATA / "from_15625103741_Text-Mining"
LABELLED = DATA / "from_694035434_Natural-language-processing-and-text-mining" / "附件2-labelled-train.xlsx"
PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
DB_NAME = "qifu_bench_triage7"
PORT = 18070


def load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def read_rows(path: Path) -> list[dict]:
    """The rows of a Teddy Cup file as dicts (header → cell), cleaned as the importer cleans."""
    import openpyxl

    wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    it = wb.worksheets[0].iter_rows(values_only=True)
    header = [str(h).strip() for h in next(it)]
    out = []
    for cells in it:
        row = dict(zip(header, cells, strict=False))
        if row.get("留言编号") is None:
            continue
        row["id"] = clean_id(row["留言编号"])
        row["title"] = one_line(clean_text(row.get("留言主题")))
        row["description"] = clean_text(row.get("留言详情"))
        row["at"] = parse_time(row.get("留言时间"))
        out.append(row)
    wb.close()
    return out


# ------------------------------------------------------------------------------------- metrics

def scores(y_true: list, ranked: list[list]) -> dict:
    """accuracy, macro-F1 (over the true labels' classes) and top-3 accuracy of ranked predictions
    (an empty ranking is a wrong answer), and the per-class rows."""
    from sklearn.metrics import f1_score, precision_recall_fscore_support

    pred = [r[0] if r else "(none)" for r in ranked]
    labels = sorted(set(y_true))
    acc = float(np.mean([p == t for p, t in zip(pred, y_true, strict=True)]))
    top3 = float(np.mean([t in r[:3] for r, t in zip(ranked, y_true, strict=True)]))
    macro = float(f1_score(y_true, pred, labels=labels, average="macro", zero_division=0))
    p, r, f, s = precision_recall_fscore_support(y_true, pred, labels=labels, zero_division=0)
    per = {lb: (p[i], r[i], f[i], int(s[i]),
                float(np.mean([lb in rk[:3] for rk, t in zip(ranked, y_true, strict=True) if t == lb])))
           for i, lb in enumerate(labels)}
    return {"accuracy": acc, "macro_f1": macro, "top3": top3, "per_class": per, "n": len(y_true)}


def rank_model(model, docs) -> list[list]:
    proba = model.probabilities(docs)
    order = np.argsort(-proba, axis=1)[:, :3]
    return [[model.labels[j] for j in row] for row in order]


def rank_majority(train_labels, n) -> list[list]:
    top = [lb for lb, _ in Counter(train_labels).most_common(3)]
    return [top] * n


def rank_keywords(ranker: KeywordRanker, docs) -> list[list]:
    return [[r.label for r in ranker.rank(d, 3)] for d in docs]


def evaluate(train_docs, train_y, test_docs, ranker) -> dict[str, tuple[list, list]]:
    model = fit_classifier(train_docs, train_y)
    return {"model": rank_model(model, test_docs), "majority": rank_majority(train_y, len(test_docs)),
            "keywords": rank_keywords(ranker, test_docs)}


def print_summary(title: str, results: dict[str, dict]) -> None:
    print(f"\n### {title}\n")
    print("| method | n | accuracy | macro-F1 | top-3 accuracy |")
    print("|---|---:|---:|---:|---:|")
    for name, m in results.items():
        print(f"| {name} | {m['n']} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} | {m['top3']:.3f} |")


def print_per_class(title: str, m: dict) -> None:
    print(f"\n{title}\n")
    print("| class | support | precision | recall | F1 | top-3 accuracy |")
    print("|---|---:|---:|---:|---:|---:|")
    for lb, (p, r, f, s, t3) in sorted(m["per_class"].items(), key=lambda kv: -kv[1][3]):
        print(f"| {lb} | {s} | {p:.2f} | {r:.2f} | {f:.2f} | {t3:.2f} |")


# ------------------------------------------------------------------------------------- the parts

def taxonomy_rows() -> list[tuple[str, str, str]]:
    import openpyxl

    wb = openpyxl.load_workbook(TEDDY / "附件1.xlsx", read_only=True)
    rows = [tuple(one_line(clean_text(c)) for c in r) for r in list(wb.worksheets[0].iter_rows(values_only=True))[1:]]
    wb.close()
    return rows


def taxonomy_tree(level: int) -> tuple[list[tuple], dict[int, str]]:
    """The taxonomy as ``keyword_bags`` categories (a root, then the paths) and id → the label of
    its ancestor at ``level`` (1 = first level)."""
    paths: dict[tuple, int] = {}
    cats = [(0, "root", None, None)]
    for row in taxonomy_rows():
        for depth in range(1, len(row) + 1):
            p = row[:depth]
            if p not in paths:
                paths[p] = len(paths) + 1
                cats.append((paths[p], p[-1], paths[p[:-1]] if depth > 1 else 0, None))
    label_of = {cid: "/".join(p[:level]) for p, cid in paths.items() if len(p) == level}
    return cats, label_of


def seed_reference() -> tuple[list[Department], list[tuple], list[tuple]]:
    """The seeds' departments (as rows for the matcher) and categories (for the keyword bags)."""
    depts_doc = read_yaml(ROOT / "seeds" / "data" / "departments.yaml")["departments"]
    depts = [Department(id=i + 1, code=d["code"], name=d["name"]) for i, d in enumerate(depts_doc)]
    code_id = {d.code: d.id for d in depts}
    cats: list[tuple] = []

    def walk(node, parent):
        cid = len(cats) + 1
        cats.append((cid, node["name"], parent, code_id.get(node.get("department"))))
        for child in node.get("children") or []:
            walk(child, cid)

    for root in read_yaml(ROOT / "seeds" / "data" / "categories.yaml")["categories"]:
        walk(root, None)
    return depts, cats, [(d.id, d.name) for d in depts]


def part_eval() -> None:
    from sklearn.model_selection import StratifiedKFold

    print(f"## evaluation ({load()})")
    # ---- category on the labelled file
    rows, seen = [], set()
    for r in read_rows(LABELLED):
        if r["id"] not in seen:
            seen.add(r["id"])
            rows.append(r)
    docs = [document(r["title"], r["description"]) for r in rows]
    y = [one_line(clean_text(r["一级分类"])) for r in rows]
    cats, label_of = taxonomy_tree(1)
    bags, _ = keyword_bags(cats, [])
    ranker = KeywordRanker({label_of[c]: b for c, b in bags.items() if c in label_of})
    print(f"\nlabelled file: {len(rows)} rows ({len(read_rows(LABELLED)) - len(rows)} duplicate id dropped), "
          f"{len(set(y))} classes, {min(r['at'] for r in rows):%Y-%m-%d} .. {max(r['at'] for r in rows):%Y-%m-%d}")
    pooled: dict[str, tuple[list, list]] = {"model": ([], []), "majority": ([], []), "keywords": ([], [])}
    t0 = time.perf_counter()
    for tr, te in StratifiedKFold(5, shuffle=True, random_state=0).split(docs, y):
        got = evaluate([docs[i] for i in tr], [y[i] for i in tr], [docs[i] for i in te], ranker)
        for name, ranked in got.items():
            pooled[name][0].extend(y[i] for i in te)
            pooled[name][1].extend(ranked)
    cv = {name: scores(t, r) for name, (t, r) in pooled.items()}
    print_summary(f"category, stratified 5-fold cross-validation (pooled out-of-fold, "
                  f"{time.perf_counter() - t0:.1f} s)", cv)
    print_per_class("per class (model, cross-validation):", cv["model"])
    print_per_class("per class (keyword baseline, cross-validation):", cv["keywords"])
    order = sorted(range(len(rows)), key=lambda i: rows[i]["at"])
    cut = int(len(order) * 0.8)
    tr, te = order[:cut], order[cut:]
    got = evaluate([docs[i] for i in tr], [y[i] for i in tr], [docs[i] for i in te], ranker)
    split = {name: scores([y[i] for i in te], ranked) for name, ranked in got.items()}
    print_summary(f"category, time split: learn {len(tr)} rows up to {rows[tr[-1]]['at']:%Y-%m-%d}, "
                  f"test {len(te)} rows from {rows[te[0]]['at']:%Y-%m-%d}", split)
    print_per_class("per class (model, time split):", split["model"])

    # ---- department on 附件4
    depts, seed_cats, dept_rows = seed_reference()
    matcher = DepartmentMatcher(depts)
    name_of = {d.id: d.name for d in depts}
    rows4 = read_rows(TEDDY / "附件4.xlsx")
    labelled = []
    for r in rows4:
        dept = matcher.match(clean_text(r.get("答复意见")))
        if dept is not None and r["at"] is not None:
            labelled.append((r, name_of[dept]))
    _, dbags = keyword_bags(seed_cats, dept_rows)
    dranker = KeywordRanker({name_of[d]: b for d, b in dbags.items()})
    labelled.sort(key=lambda p: p[0]["at"])
    cut = int(len(labelled) * 0.8)
    docs4 = [document(r["title"], r["description"]) for r, _ in labelled]
    y4 = [lb for _, lb in labelled]
    print(f"\n附件4: {len(rows4)} rows, {len(labelled)} whose reply names one of the seeds' departments "
          f"({len(set(y4))} departments: {dict(Counter(y4).most_common())})")
    got = evaluate(docs4[:cut], y4[:cut], docs4[cut:], dranker)
    dsplit = {name: scores(y4[cut:], ranked) for name, ranked in got.items()}
    print_summary(f"department, time split: learn {cut} rows up to {labelled[cut - 1][0]['at']:%Y-%m-%d}, "
                  f"test {len(labelled) - cut} rows from {labelled[cut][0]['at']:%Y-%m-%d}", dsplit)
    print_per_class("per class (model, time split):", dsplit["model"])
    print_per_class("per class (keyword baseline, time split):", dsplit["keywords"])


def set_db_name(name: str) -> None:
    """Use the database ``name`` instead of :data:`DB_NAME` (helpers prefix theirs)."""
    global DB_NAME
    DB_NAME = name


def part_train() -> str:
    import sqlalchemy as sa
    from sqlmodel import Session

    from service.categories.models import Category
    from service.db import make_engine
    from service.imports.triage import import_taxonomy
    from service.triage.models import TriageExample
    from service.triage.training import train
    from tests.scratch_db import build_database, create_database

    url = create_database(PG_SERVER, DB_NAME)
    build_database(url, enterprises=20)
    engine = make_engine(url)
    texts = []
    for name in ("附件3.xlsx", "附件4.xlsx", "测试数据.xlsx"):
        for r in read_rows(TEDDY / name):
            texts.append((r["title"], r["description"], r["at"], clean_text(r.get("答复意见"))))
    rng = random.Random(0)
    real = len(texts)
    texts += rng.sample(texts, 10_000 - real) if real < 10_000 else []
    texts = texts[:10_000]
    with Session(engine) as s:
        import_taxonomy(s, TEDDY / "附件1.xlsx")
        s.commit()
        cats = s.execute(sa.select(Category.id, Category.name, Category.parent_id, Category.default_department_id)).all()
        depts = s.execute(sa.select(Department.id, Department.name, Department.code)).all()
        problem = s.scalar(sa.select(Category.id).where(Category.code == "problem"))
        first = {c.id for c in cats if c.parent_id == problem and c.name}
        second = {c.id for c in cats if c.parent_id in first}
        cat_bags, dept_bags = keyword_bags([tuple(c) for c in cats], [(d.id, d.name) for d in depts])
        cranker = KeywordRanker({c: b for c, b in cat_bags.items() if c in second})
        dranker = KeywordRanker(dept_bags)
        matcher = DepartmentMatcher([Department(id=d.id, name=d.name, code=d.code) for d in depts])
        second_list = sorted(second)
        rows = []
        now = time.time()
        for i, (title, desc, at, reply) in enumerate(texts):
            doc = document(title, desc)
            c = cranker.rank(doc, 1)
            d = matcher.match(reply) or (dranker.rank(doc, 1) or [None])[0]
            rows.append({"external_ref": f"bench:{i}", "title": title[:200] or "无标题", "description": desc or title,
                         "category_id": c[0].label if c else rng.choice(second_list),
                         "department_id": getattr(d, "label", d), "submitted_at": at,
                         "created_at": at})
        s.execute(sa.insert(TriageExample), rows)
        s.commit()
        n_cat = len({r["category_id"] for r in rows})
        n_dept = len({r["department_id"] for r in rows if r["department_id"]})
        print(f"\n## training time\n\n10,000 examples ({real} real texts + {10_000 - real} drawn again; "
              f"synthesized labels: {n_cat} categories, {n_dept} departments; prepared in {time.time() - now:.0f} s)")
    from service.triage.text import _cut
    _cut.cache_clear()
    with Session(engine) as s:
        before = load()
        t0 = time.perf_counter()
        summary = train(s)
        s.commit()
        wall = time.perf_counter() - t0
    print(f"train(): {wall:.1f} s wall ({before} before, {load()} after); summary {summary}")
    engine.dispose()
    return url


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def part_latency(url: str, requests: int) -> None:
    import httpx
    from sqlmodel import Session

    from bench.harness import ApiServer
    from service.db import make_engine
    from tests import factories as f

    texts = [(r["title"][:200] or "无标题", (r["description"] or r["title"])[:20_000])
             for r in read_rows(TEDDY / "附件3.xlsx")]
    random.Random(1).shuffle(texts)
    engine = make_engine(url)
    with Session(engine) as s:
        numbers = [f.make_ticket(s, "submitted", title=t, description=d, commit=True).number
                   for t, d in texts[:100]]
        # in process, no HTTP: the cost of one suggestion itself (wall and CPU per call)
        from service.triage.suggest import suggester
        from service.triage.text import _cut

        suggester.refresh(s)
        _cut.cache_clear()
        for t, d in texts[:50]:
            suggester.suggest(s, t, d)
        wall, cpu = [], []
        before = load()
        for t, d in texts[50:50 + requests]:
            w0, c0 = time.perf_counter(), time.process_time()
            suggester.suggest(s, t, d)
            wall.append((time.perf_counter() - w0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
        print(f"\nsuggester.suggest in process, {len(wall)} distinct texts (uncached segmentation): wall p50 "
              f"{_pct(wall, 50):.1f} ms p99 {_pct(wall, 99):.1f} ms; CPU p50 {_pct(cpu, 50):.1f} ms "
              f"p99 {_pct(cpu, 99):.1f} ms ({before} before, {load()} after)")
    engine.dispose()
    server = ApiServer({"QIFU_DATABASE_URL": url}, workers=1, port=PORT).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            token = c.post("/api/v1/auth/token", data={"username": "officer1", "password": "qifu-demo-2026"}).json()
            headers = {"Authorization": f"Bearer {token['access_token']}"}
            ent = c.post("/api/v1/auth/token", data={"username": "ent1", "password": "qifu-demo-2026"}).json()
            ent_headers = {"Authorization": f"Bearer {ent['access_token']}"}
            for label, call in (
                ("POST /api/v1/triage/suggest",
                 lambda i: c.post("/api/v1/triage/suggest", headers=headers,
                                  json={"title": texts[i % len(texts)][0], "description": texts[i % len(texts)][1]})),
                ("GET /api/v1/tickets/{number} (officer)",
                 lambda i: c.get(f"/api/v1/tickets/{numbers[i % len(numbers)]}", headers=headers)),
                ("GET /api/v1/tickets/{number} (the enterprise: no suggestions, the baseline)",
                 lambda i: c.get(f"/api/v1/tickets/{numbers[i % len(numbers)]}", headers=ent_headers)),
            ):
                for i in range(50):  # warm-up: jieba's dictionary, the model's load, the pool
                    assert call(i).status_code == 200

                def source(call=call) -> str:
                    first = call(0).json()
                    return first.get("category_source") or (first.get("suggestions") or {}).get("category_source")

                deadline = time.monotonic() + 300  # the model loads in the background: measure it, not the fallback
                while source() not in ("model", None) and time.monotonic() < deadline:
                    time.sleep(1)
                src = source()
                lat = []
                before = load()
                for i in range(50, 50 + requests):
                    t0 = time.perf_counter()
                    resp = call(i)
                    lat.append((time.perf_counter() - t0) * 1000)
                    assert resp.status_code == 200, resp.text
                print(f"\n{label}: {requests} requests, one client, source={src}: p50 {_pct(lat, 50):.1f} ms, "
                      f"p95 {_pct(lat, 95):.1f} ms, p99 {_pct(lat, 99):.1f} ms, max {max(lat):.1f} ms, "
                      f"mean {statistics.mean(lat):.1f} ms ({before} before, {load()} after)")
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", action="append", choices=["eval", "train", "latency"])
    ap.add_argument("--requests", type=int, default=600)
    ap.add_argument("--keep", action="store_true", help=f"keep the database {DB_NAME}")
    ap.add_argument("--db", default=DB_NAME, help=f"the database's name (default {DB_NAME})")
    args = ap.parse_args()
    set_db_name(args.db)
    parts = args.part or ["eval", "train", "latency"]
    if "eval" in parts:
        part_eval()
    if "train" in parts or "latency" in parts:
        url = part_train() if "train" in parts else f"{PG_SERVER}/{DB_NAME}"
        try:
            if "latency" in parts:
                part_latency(url, args.requests)
        finally:
            if not args.keep:
                from tests.scratch_db import drop_database
                drop_database(PG_SERVER, DB_NAME)


if __name__ == "__main__":
    main()

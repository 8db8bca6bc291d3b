"""Category and department suggestions (issue 13): taxonomy and labelled imports, training from
closed tickets and examples, the stored versions, the keyword cold start, the endpoint and the
staff ticket read."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from service.categories.models import Category
from service.imports.options import ImportConfigError
from service.imports.triage import import_labelled, import_taxonomy, taxonomy_code
from service.triage.model import KeywordRanker, fit_classifier
from service.triage.models import TriageExample, TriageModel
from service.triage.suggest import keyword_bags, suggester
from service.triage.text import tokens
from service.triage.training import KEEP_VERSIONS, train, training_rows
from tests import factories as f

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "tipdm2020c"
TAXONOMY = DATA / "from_15625103741_Text-Mining" / "附件1.xlsx"
LABELLED = DATA / "from_694035434_Natural-language-processing-and-text-mining" / "附件2-labelled-train.xlsx"

LABOUR = [("招工难，缺普工", "今年订单增加，普工缺口约50人，希望人社部门协助招聘和技能培训。"),
          ("社保缴费基数调整咨询", "员工社保缴费基数如何调整，养老保险和失业保险的比例是多少？"),
          ("技术工人招聘困难", "企业急需数控技工，招聘会效果不好，请协助对接职业技术学校。")]
POWER = [("厂区频繁停电", "上周厂区停电三次，生产线停工，请供电公司排查线路。"),
         ("新增变压器增容", "扩产需要增加用电容量，申请变压器增容，电力报装流程太慢。"),
         ("电压不稳烧坏设备", "车间电压波动大，烧坏两台电机，希望供电部门检修线路。")]


@pytest.fixture(autouse=True)
def _fresh_suggester():
    suggester.clear()
    yield
    suggester.clear()


def _xlsx(path: Path, rows: list[tuple]) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    for row in rows:
        ws.append(list(row))
    wb.save(path)
    return path


def _closed(session: Session, code: str, texts, lead: str | None = None):
    return [f.make_ticket(session, "closed", category_code=code, title=t, description=d, lead_department=lead)
            for t, d in texts]


# ----------------------------------------------------------------------------------- pure parts

def test_keyword_ranker_scores_overlap_and_names_the_words():
    ranker = KeywordRanker({"labour": ["招聘", "社保", "用工"], "power": ["停电", "供电", "用电"]})
    top = ranker.rank(tokens("厂区停电，供电公司不来修"))
    assert [r.label for r in top] == ["power"]
    assert top[0].confidence == 1.0 and set(top[0].words) == {"停电", "供电"}
    assert ranker.rank(tokens("完全无关的内容")) == []


def test_keyword_bags_give_a_parent_its_descendants_words():
    cats = [(1, "问题交办", None, None), (2, "劳动和社会保障", 1, None), (3, "社保基金管理", 2, None)]
    cat_bags, dept_bags = keyword_bags(cats + [(4, "用工与招聘", 1, 10)], [(10, "人力资源局")])
    assert 1 not in cat_bags  # a service type is not suggested
    assert {"社保", "基金"} <= cat_bags[2]
    assert "招聘" in dept_bags[10]  # the names of the categories it handles by default


def test_classifier_ranks_with_probabilities_and_words():
    docs = [tokens(t + d) for t, d in LABOUR + POWER]
    model = fit_classifier(docs, ["labour"] * 3 + ["power"] * 3)
    top = model.rank(tokens("停电了，供电线路坏了"), k=2)
    assert top[0].label == "power" and top[0].confidence > 0.5
    assert abs(sum(r.confidence for r in top) - 1) < 1e-6
    assert top[0].words and set(top[0].words) <= {"停电", "供电", "线路"}
    assert fit_classifier(docs, ["x"] * 6) is None  # one label: nothing to learn


# ----------------------------------------------------------------------------------- imports

@pytest.mark.parametrize("classes", [2, 3])
def test_fast_rank_equals_scikit_learn_predict_proba(classes: int):
    """rank() scores the sparse row itself (no scikit-learn call per request): the probabilities
    and the order are those of predict_proba(transform(...)); unknown words are ignored."""
    groups = [LABOUR, POWER, [("道路积水严重", "园区门口道路下雨积水，车辆无法通行，请交通部门修路。"),
                              ("公交线路调整建议", "建议增开到园区的公交线路，员工通勤不便。"),
                              ("货车限行咨询", "园区货车白天能否通行，限行时间是什么？")]][:classes]
    docs = [tokens(f"{t} {d}") for group in groups for t, d in group]
    labels = [i for i, group in enumerate(groups) for _ in group]
    clf = fit_classifier(docs, labels)
    probes = [tokens(t) for t in ("厂区停电，线路老化", "社保缴费基数", "公交通勤", "完全无关的词语", "停电 停电 停电 社保")]
    for doc in probes:
        want = clf.probabilities([doc])[0]
        got = clf.rank(doc, k=classes)
        assert [r.label for r in got] == [clf.labels[i] for i in sorted(range(classes), key=lambda i: -want[i])]
        assert [r.confidence for r in got] == pytest.approx(sorted(want, reverse=True), abs=1e-6)


def test_taxonomy_import_is_idempotent_and_hangs_under_the_root(session: Session, tmp_path: Path):
    path = _xlsx(tmp_path / "tax.xlsx", [("一级分类", "二级分类", "三级分类"), ("劳动和社会保障", "社会保险", "养老保险"),
                                          ("劳动和社会保障", "社会保险", "医疗保险"), ("交通运输", "交通运输", None)])
    first = import_taxonomy(session, path)
    assert first == {"levels": 3, "nodes": 6, "created": 6, "updated": 0}
    assert import_taxonomy(session, path) == {"levels": 3, "nodes": 6, "created": 0, "updated": 0}
    leaf = session.exec(select(Category).where(
        Category.code == taxonomy_code("problem", ("劳动和社会保障", "社会保险", "养老保险")))).one()
    parent = session.get(Category, leaf.parent_id)
    assert (leaf.name, parent.name, leaf.service_type) == ("养老保险", "社会保险", "problem")
    assert session.get(Category, session.get(Category, parent.parent_id).parent_id).code == "problem"
    with pytest.raises(ImportConfigError):
        import_taxonomy(session, path, root_code="no.such")


def test_labelled_import_writes_examples_not_tickets(session: Session, tmp_path: Path):
    tax = _xlsx(tmp_path / "tax.xlsx", [("一级分类", "二级分类"), ("劳动和社会保障", "社会保险"), ("交通运输", "交通运输")])
    import_taxonomy(session, tax)
    rows = [("留言编号", "留言用户", "留言主题", "留言时间", "留言详情", "一级分类"),
            (1, "u1", "社保转移", "2019/3/1 9:00:00", "\n\t\t社保怎么转_x000D_回来", "劳动和社会保障"),
            (2, "u2", "公交线路", "2019/3/2 9:00:00", "希望增加公交线路", "交通运输"),
            (2, "u2", "公交线路", "2019/3/2 9:00:00", "重复编号", "交通运输"),
            (3, "u3", "未知", "2019/3/3 9:00:00", "x", "不存在的分类"),
            (4, "u4", "", "2019/3/4 9:00:00", "", "交通运输")]
    path = _xlsx(tmp_path / "labelled.xlsx", rows)
    result = import_labelled(session, path, source="lab")
    assert (result["read"], result["imported"]) == (5, 2)
    assert result["skipped"] == {"duplicate_id": 1, "unknown_category": 1, "empty_content": 1}
    ex = session.exec(select(TriageExample).where(TriageExample.external_ref == "lab:1")).one()
    assert ex.description == "社保怎么转\n回来"
    traffic = session.get(Category, session.exec(select(TriageExample.category_id)
                                                 .where(TriageExample.external_ref == "lab:2")).one())
    assert traffic.parent_id is not None and session.get(Category, traffic.parent_id).code == "problem"  # shallowest
    assert import_labelled(session, path, source="lab")["imported"] == 0


# ----------------------------------------------------------------------------------- training

def test_training_reads_closed_tickets_and_an_officers_correction(session: Session):
    _closed(session, "problem.labour", LABOUR)
    _closed(session, "problem.power", POWER)
    f.make_ticket(session, "closed", category_code="problem.labour", lead_department="JYJ",  # corrected lead
                  title="员工子女入学", description="外地员工子女入学难，请教育部门协调学位。")
    open_one = f.make_ticket(session, "dispatched", category_code="problem.power")
    rows = {(r.title, r.category_id, r.department_id) for r in training_rows(session)}
    jyj = f.department(session, "JYJ").id
    assert ("员工子女入学", f.category(session, "problem.labour").id, jyj) in rows
    assert open_one.title not in {r[0] for r in rows}  # only closed tickets teach

    summary = train(session)
    assert summary["version"] is not None and summary["category_examples"] >= 7
    assert suggester.refresh(session) == summary["version"]
    got = suggester.suggest(session, "车间停电", "供电线路老化，频繁停电")
    assert got.category_source == "model" and got.department_source == "model"
    assert got.model_version == summary["version"]
    assert got.categories[0].id == f.category(session, "problem.power").id
    assert got.departments[0].code == "GDGS" and got.departments[0].words
    assert len(got.categories) <= 3 and len(got.departments) <= 3


def test_versions_are_kept_bounded(session: Session):
    _closed(session, "problem.labour", LABOUR[:2])
    _closed(session, "problem.power", POWER[:2])
    versions = [train(session)["version"] for _ in range(KEEP_VERSIONS + 1)]
    assert versions == sorted(versions)
    stored = session.scalars(sa.select(TriageModel.id).order_by(TriageModel.id)).all()
    assert stored == versions[1:]


def test_cold_start_falls_back_to_category_names(session: Session):
    got = suggester.suggest(session, "员工子女入学难", "外地员工的子女入学问题")
    assert got.category_source == "keywords" and got.model_version is None
    assert got.categories[0].code == "problem.schooling"
    assert "入学" in got.categories[0].words
    assert got.departments[0].code == "JYJ"


# ----------------------------------------------------------------------------------- API

def test_suggest_endpoint_for_staff_only(client, login):
    body = {"title": "厂区频繁停电", "description": "请供电公司排查用电线路"}
    for who in ("officer1", "supervisor1", "admin"):
        resp = client.post("/api/v1/triage/suggest", json=body, headers=login(who))
        assert resp.status_code == 200, resp.text
        data = resp.json()
        assert data["categories"] and data["categories"][0]["code"] == "problem.power"
    for who in ("ent1", "dept_rsj"):
        assert client.post("/api/v1/triage/suggest", json=body, headers=login(who)).status_code == 403
    assert client.post("/api/v1/triage/suggest", json=body).status_code == 401


@pytest.mark.parametrize("body, field", [
    ({"title": "", "description": "x"}, "title"),
    ({"title": "   ", "description": "x"}, "title"),
    ({"title": "a\x00b", "description": "x"}, "title"),
    ({"title": "t", "description": "d\x00"}, "description"),
    ({"title": "t" * 201, "description": "x"}, "title"),
    ({"title": "t", "description": "长" * 20_001}, "description"),
    ({"title": "t"}, "description"),
    ({"title": "t", "description": "d", "extra": 1}, "extra"),
    ({"title": 5, "description": "d"}, "title"),
])
def test_suggest_bad_input_is_a_422_naming_the_field(client, login, body, field):
    resp = client.post("/api/v1/triage/suggest", json=body, headers=login("officer1"))
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert field in resp.text


def test_suggest_refuses_a_body_that_is_not_json(client, login):
    resp = client.post("/api/v1/triage/suggest", content=b"not json",
                       headers={**login("officer1"), "Content-Type": "application/json"})
    assert resp.status_code == 422


def test_ticket_read_carries_suggestions_for_staff_not_for_the_enterprise(session: Session, client, login):
    ticket = f.make_ticket(session, "submitted", title="厂区频繁停电", description="请供电公司排查用电线路")
    officer = client.get(f"/api/v1/tickets/{ticket.number}", headers=login("officer1")).json()
    assert officer["suggestions"]["categories"][0]["code"] == "problem.power"
    assert officer["number"] == ticket.number and officer["status_label"]
    # an enterprise gets the plain read model (the body its submission answered): no suggestions
    assert "suggestions" not in client.get(f"/api/v1/tickets/{ticket.number}", headers=login("ent1")).json()


def test_beat_retrains_nightly():
    from service.config import get_settings
    from workers.celery_app import beat_schedule

    entry = beat_schedule(get_settings())["triage-train"]
    assert entry["task"] == "triage.train"


# ----------------------------------------------------------------------------------- real data

@pytest.mark.realdata
def test_real_taxonomy_and_labelled_file(session: Session):
    if not TAXONOMY.exists():
        pytest.skip("no ../shared/data")
    result = import_taxonomy(session, TAXONOMY)
    assert result["levels"] == 3 and result["created"] == result["nodes"]
    problem = f.category(session, "problem")
    first_level = session.scalars(sa.select(Category.name).where(
        Category.parent_id == problem.id, Category.code.like("problem.tx.%"))).all()
    assert len(first_level) == 15 and "劳动和社会保障" in first_level
    labelled = import_labelled(session, LABELLED)
    assert labelled["read"] == 299 and labelled["imported"] == 298  # one id appears twice in the file
    assert labelled["categories"]["劳动和社会保障"] == 63


# ----------------------------------------------------------------------------------- CLI

def test_cli_imports_trains_and_suggests_on_sqlite(tmp_path: Path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from qifu.cli import app
    from service.config import get_settings
    from service.db import get_engine
    from tests.scratch_db import build_database

    url = f"sqlite:///{tmp_path / 'triage.db'}"
    build_database(url, enterprises=0)
    tax = _xlsx(tmp_path / "tax.xlsx", [("一级分类", "二级分类"), ("劳动和社会保障", "社会保险"), ("交通运输", "公交")])
    lab = _xlsx(tmp_path / "lab.xlsx", [("留言编号", "留言主题", "留言时间", "留言详情", "一级分类")]
                + [(i, t, "2019/3/1 9:00:00", d, "劳动和社会保障") for i, (t, d) in enumerate(LABOUR)]
                + [(10 + i, t, "2019/3/2 9:00:00", d, "交通运输")
                   for i, (t, d) in enumerate([("公交线路太少", "园区公交线路少，员工通勤难"),
                                               ("道路拥堵", "上下班道路拥堵，希望增加公交班次")])])
    monkeypatch.setenv("QIFU_DATABASE_URL", url)
    get_settings.cache_clear()
    get_engine.cache_clear()
    try:
        runner = CliRunner()
        first = runner.invoke(app, ["triage", "import-taxonomy", str(tax)])
        assert first.exit_code == 0, first.output
        assert json.loads(first.output)["created"] == 4
        assert json.loads(runner.invoke(app, ["triage", "import-taxonomy", str(tax)]).output)["created"] == 0
        bad = runner.invoke(app, ["triage", "import-taxonomy", str(tax), "--root", "nope"])
        assert bad.exit_code == 2 and "nope" in bad.output
        got = runner.invoke(app, ["triage", "import-labelled", str(lab)])
        assert got.exit_code == 0 and json.loads(got.output)["imported"] == 5, got.output
        trained = runner.invoke(app, ["triage", "train"])
        assert trained.exit_code == 0 and json.loads(trained.output)["version"] == 1, trained.output
        listed = runner.invoke(app, ["triage", "models"])
        assert json.loads(listed.output.splitlines()[0])["version"] == 1
        answer = json.loads(runner.invoke(app, ["triage", "suggest", "公交班次太少", "员工通勤难"]).output)
        assert answer["category_source"] == "model" and answer["categories"][0]["name"] == "交通运输"
    finally:
        suggester.clear()
        get_engine().dispose()
        get_settings.cache_clear()
        get_engine.cache_clear()

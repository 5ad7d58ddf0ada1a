"""The ALPS manifest and what it brought: per-table zero-shot tasks with stand-ins and left-out
tasks, per-paper seeds, the wall-time column, relative claims recomputed from regenerated rows,
and single-layer studies rendered from their rows."""
from __future__ import annotations

import copy
import csv
import math
from pathlib import Path

import pytest
import yaml

from reprise.io import ReproError, write_json
from reprise.papers import WALL, load_manifest, manifest_from_data, plan, render_table, required_metrics, run_dir
from reprise.papers.layer_study import render_study
from reprise.papers.plan import paper_seeds, run_metrics, study_model, table_tasks
from reprise.papers.report import claim_rows, render_report
from reprise.papers.results import load_results
from reprise.papers.tables import caption, study_caption

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "config" / "papers" / "alps.yaml"
TASKS_FULL = {t: t for t in ("alps_lambada", "mmlu", "piqa", "arc_easy", "arc_challenge")}
TASKS_SMOKE = {"alps_lambada": "enwiki-cloze", "mmlu": "none", "piqa": "none", "arc_easy": "none",
               "arc_challenge": "none"}


@pytest.fixture(scope="module")
def m():
    return load_manifest(MANIFEST)


def cfg(scale="full", models=("opt-13b", "opt-30b", "llama-3-8b"), tasks=None, seeds=None, sparsities=None):
    paper = {"models": list(models), "tasks": tasks or TASKS_FULL}
    if seeds is not None:
        paper["seeds"] = seeds
    if sparsities is not None:
        paper["sparsities"] = sparsities
    return {"scale": scale, "seeds": [0, 1, 2], "eval": {"seqlen": 2048, "testsets": ["wikitext2", "ptb", "c4"]},
            "papers": {"alps": paper}}


SMOKE = cfg("smoke", ["smollm2-135m"], TASKS_SMOKE, sparsities=[0.5, 0.7, 0.9])


def test_inventory_targets_and_layer_studies(m):
    assert {"table2", "table3", "table6", "table9", "table_llama"} <= set(m.tables)
    assert set(m.layer_studies) == {"table1_support", "table1_refit", "table5_rho", "table7_admm_grad",
                                    "admm_convergence"}
    assert m.layer_studies["admm_convergence"].is_figure and not m.layer_studies["table5_rho"].is_figure
    # every layer study runs on block 0 k_proj of OPT-13B (Table 1's layer)
    assert {(s.block, s.layer, s.models) for s in m.layer_studies.values()} == {(0, "self_attn.k_proj", ("opt-13b",))}


def test_table_tasks_map_to_stand_ins_or_are_left_out(m):
    assert required_metrics(m, "table2", cfg())[3:] == [f"{t}/acc" for t in
                                                      ("mmlu", "piqa", "alps_lambada", "arc_easy", "arc_challenge")]
    assert required_metrics(m, "table2", SMOKE) == ["wikitext2_ppl@2048",
                                                    "ptb_ppl@2048", "c4_ppl@2048", "enwiki-cloze/acc"]
    assert table_tasks(m, "table3", SMOKE) == [("piqa", None), ("arc_easy", None), ("arc_challenge", None)]
    text = caption(m, "table2", SMOKE)
    assert "enwiki-cloze stands in for alps_lambada" in text and "mmlu, piqa, arc_easy, arc_challenge" in text


def test_a_table_with_no_column_at_a_scale_plans_no_runs(m):
    # Table 9 reads MMLU only; smoke leaves MMLU out, so nothing is solved for it there
    assert required_metrics(m, "table9", SMOKE) == []
    assert plan(m, SMOKE, "table9") == []
    assert len(plan(m, cfg(), "table9")) == 1 + 6 * (4 * 3 + 1)  # dense + 6 settings x (4 seeded + MP once)


def test_paper_seeds_override_the_scale_seeds(m):
    five = cfg(seeds=[0, 1, 2, 3, 4])
    assert paper_seeds(m, five) == [0, 1, 2, 3, 4] and paper_seeds(m, cfg()) == [0, 1, 2]
    seeds = {c.seed for c in plan(m, five, "table2") if c.method == "alps"}
    assert seeds == {0, 1, 2, 3, 4}
    assert {c.seed for c in plan(m, five, "table2") if c.method == "magnitude"} == {0}  # no calibration data
    bad = cfg(seeds=[])
    with pytest.raises(ReproError, match="papers.alps.seeds"):
        paper_seeds(m, bad)


def test_runtime_table_reads_wall_time_from_provenance(m, tmp_path):
    c = cfg(models=("opt-13b",))
    runs = tmp_path / "runs"
    for method in ("magnitude", "alps"):
        d = run_dir(runs, "opt-13b", method, "sp70", 0)
        (d).mkdir(parents=True)
        (d / "solve_log.csv").write_text("block,layer,objective,rel_err,seconds\n0,q,1,0.1,2.5\n")
        write_json(d / "provenance.json", {"wall_seconds": 10.0 if method == "alps" else 1.0})
    assert run_metrics(m, c)[("opt-13b", "alps", "sp70", 1)]  # seeded runs also carry eval metrics (table 2)
    results = load_results(runs, plan(m, c, "table6"), [], runtime=True)
    render_table(m, "table6", c, results, tmp_path / "t6")
    rows = {r["method"]: r for r in csv.DictReader(open(tmp_path / "t6.csv"))}
    assert float(rows["alps"][WALL]) == 10.0 and float(rows["magnitude"][WALL]) == 1.0
    assert float(rows["alps"]["solve_seconds"]) == 2.5


def _results(values, metric="wikitext2_ppl@2048", model="opt-30b", seeds=(0, 1, 2)):
    out = {}
    for key, v in values.items():
        method, setting = key.split("/")
        for s in seeds:
            out[(model, method, setting, s)] = {metric: v}
    return out


def test_claims_are_recomputed_against_the_best_regenerated_baseline(m):
    c = cfg()
    res = _results({"magnitude/sp70": 1e4, "sparsegpt/sp70": 20.0, "wanda/sp70": 30.0, "dsnot/sp70": 25.0,
                    "alps/sp70": 17.0})
    for key, acc in {"magnitude/sp70": 0.30, "sparsegpt/sp70": 0.40, "wanda/sp70": 0.35, "dsnot/sp70": 0.38,
                     "alps/sp70": 0.44}.items():
        method, setting = key.split("/")
        for s in (0, 1, 2):
            res[("opt-30b", method, setting, s)].update({f"{t}/acc": acc for t in
                                                        ("mmlu", "piqa", "alps_lambada", "arc_easy", "arc_challenge")})
    rows = {r["claim"].id: r for r in claim_rows(m, c, res)}
    ppl = rows["opt30b-ppl"]
    assert ppl["best"] == "sparsegpt/sp70" and math.isclose(ppl["rel"], (17 - 20) / 20) and ppl["holds"]
    zs = rows["opt30b-zeroshot"]
    assert zs["best"] == "sparsegpt/sp70" and math.isclose(zs["rel"], (0.44 - 0.40) / 0.40) and zs["holds"]
    assert len(zs["metrics"]) == 5
    # no regenerated value: nothing is claimed
    assert rows["llama3-ppl"]["rel"] is None and rows["llama3-ppl"]["holds"] is None


def test_report_lists_claims_and_layer_studies(m, tmp_path):
    out = tmp_path / "report.md"
    render_report(m, SMOKE, {}, out)
    text = out.read_text()
    assert "## Relative claims, recomputed" in text and "-13.0%" in text.replace("−", "-")
    assert "## Layer studies" in text and "`table5_rho`" in text


def test_layer_study_captions_name_the_stand_in_and_the_error_form(m):
    text = study_caption(m, "table1_support", SMOKE)
    assert "smollm2-135m stands in" in text and "‖XΔWᵀ‖/‖XWᵀ‖" in text and "SMOKE" in text
    assert study_model(m, "table1_support", cfg()) == "opt-13b"


def test_layer_study_table_renders_wide_markdown_and_long_csv(m, tmp_path):
    rows = [{"row": "ALPS", "column": "0.5", "value": 0.1, "objective": 0.01, "ref_energy": 1.0, "seconds": 0.5},
            {"row": "ALPS", "column": "0.7", "value": 0.2, "objective": 0.04, "ref_energy": 1.0, "seconds": 0.5},
            {"row": "ADMM-Grad", "column": "0.5", "value": 0.12, "objective": 0.0144, "ref_energy": 1.0, "seconds": 1.0}]
    paths = render_study(m, "table7_admm_grad", SMOKE, {"rows": rows}, tmp_path / "t7")
    assert [p.suffix for p in paths] == [".csv", ".md", ".tex"]
    md = paths[1].read_text()
    assert "| ALPS | 0.1 | 0.2 | 1.000 |" in md and "| ADMM-Grad | 0.12 | — | 1.000 |" in md
    long = list(csv.DictReader(open(paths[0])))
    assert len(long) == 3 and {r["scale"] for r in long} == {"smoke"} and long[0]["objective"] == "0.01"
    fig = render_study(m, "admm_convergence", SMOKE,
                       {"traces": [("ALPS", [[1, 0.1, 0.5, 0.02], [2, 0.1, 0.0, 0.01]])]}, tmp_path / "conv")
    assert fig[0].read_bytes()[:4] == b"\x89PNG"


def _data():
    return yaml.safe_load(MANIFEST.read_text())


def test_bad_layer_studies_and_claims_fail_with_the_key(tmp_path):
    d = _data()
    del d["layer_studies"]["table5_rho"]["fixed_rhos"]
    with pytest.raises(ReproError, match=r"layer_studies.table5_rho.fixed_rhos.*needs fixed_rhos"):
        manifest_from_data(d, tmp_path / "alps.yaml")
    d = _data()
    d["layer_studies"]["admm_convergence"]["sparsities"] = [0.5, 0.7]
    with pytest.raises(ReproError, match="runs at one sparsity"):
        manifest_from_data(d, tmp_path / "alps.yaml")
    d = _data()
    d["claims"][0]["baselines"] = ["wanda/sp50"]
    with pytest.raises(ReproError, match=r"claims\[0\].*no regenerated row 'wanda/sp50'"):
        manifest_from_data(d, tmp_path / "alps.yaml")
    d = _data()
    d["layer_studies"]["table1_support"]["kind"] = "support"
    with pytest.raises(ReproError, match="kind"):
        manifest_from_data(d, tmp_path / "alps.yaml")
    d = copy.deepcopy(_data())
    d["tables"]["table2"]["tasks"] = ["piqa", "piqa"]
    with pytest.raises(ReproError, match="tasks"):
        manifest_from_data(d, tmp_path / "alps.yaml")


def test_alps_lambada_task_normalises_quotes_and_scores_the_raw_last_word():
    # the packaged lm-eval task reproduces ALPS's lambada.py prompt (spec §1.9), checked on its templates
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import apply_template

    from reprise.llm.eval.zeroshot import packaged_tasks

    tasks = packaged_tasks()
    assert "alps_lambada" in TaskManager(include_path=[str(tasks["alps_lambada"])], include_defaults=False).all_tasks
    spec = yaml.safe_load((tasks["alps_lambada"] / "alps_lambada.yaml").read_text())
    doc = {"text": "She said \u201cgo\u201d and ``stop'' to him twice"}
    assert apply_template(spec["doc_to_text"], doc) == '\nShe said "go" and "stop" to him'
    assert apply_template(spec["doc_to_target"], doc) == " twice"
    assert spec["target_delimiter"] == "" and [m["metric"] for m in spec["metric_list"]] == ["acc"]

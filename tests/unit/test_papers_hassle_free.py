"""The HASSLE-free manifest and what it brought: a paper's own calibration draw and test sets
(papers.<paper>.{calibration, testsets}), per-task zero-shot metrics with their plain average,
scale-limited rows (a smoke configuration named apart), and claims on the gap to dense."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from reprise.io import ReproError, write_json
from reprise.llm.methods import get_method
from reprise.papers import load_manifest, plan, render_table, required_metrics, run_dir
from reprise.papers.plan import calibration, row_skip, run_calibrations, run_metrics, paper_testsets
from reprise.papers.report import claim_rows
from reprise.papers.results import load_results

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "config" / "papers" / "hassle-free.yaml"
TASKS = ["piqa", "hellaswag", "arc_easy", "arc_challenge", "winogrande", "rte", "openbookqa", "boolq"]
SMOKE_SETTINGS = ["sparsegpt/nm2-4", "alps/nm2-4", "oats/smoke-nm2-4-r64", "hassle-free/smoke-sgpt-nm2-4-r64",
                  "hassle-free/smoke-alps-nm2-4-r64"]
LAB = {"dataset": "c4-val", "split": "validation", "protocol": "lab-c4", "n": 128, "seqlen": 2048}


@pytest.fixture(scope="module")
def m():
    return load_manifest(MANIFEST)


def full(models=("llama-3-8b-fp32",), **paper):
    own = {"models": list(models), "settings": "all", "calibration": {"dataset": "c4-train", "split": "train",
                                                                         "protocol": "gptq-c4"},
           "testsets": ["wikitext2", "c4-new", "ptb-new"], "tasks": {t: t for t in TASKS}, **paper}
    return {"scale": "full", "seeds": [0, 1], "calibration": dict(LAB),
            "eval": {"seqlen": 2048, "testsets": ["wikitext2", "ptb", "c4"]}, "papers": {"hassle-free": own}}


SMOKE = {"scale": "smoke", "seeds": [0], "calibration": {**LAB, "dataset": "enwiki-gensim", "n": 16, "seqlen": 256},
         "eval": {"seqlen": 256, "testsets": ["enwiki-gensim"]}, "driver": {"blocks": [0, 8]},
         "papers": {"hassle-free": {"models": ["smollm2-135m"], "settings": SMOKE_SETTINGS,
                                    "tasks": {"piqa": "enwiki-cloze", **{t: "none" for t in TASKS[1:]}}}}}


def test_every_setting_is_a_valid_solver_config(m):
    for (method, setting), conf in m.settings.items():
        if method != "dense":
            get_method(method).make_config(dict(conf))  # fails with the key's name if a setting is wrong
    # the fixed-compression scripts' exceptions live under their own names (spec §5.4)
    assert m.config("hassle-free", "sgpt-nm2-8-cr50-8b")["am_iters"] == 100
    assert m.config("hassle-free", "alps-nm3-8-cr50-3b")["rel_damp"] == 0.001
    assert "sgpt-nm3-8-cr50-3b" not in {s for (_meth, s) in m.settings}  # the 3B SparseGPT script runs only 2:8


def test_paper_calibration_and_testsets(m):
    cfg = full()
    assert calibration(m, cfg) == {**LAB, "dataset": "c4-train", "split": "train", "protocol": "gptq-c4"}
    assert paper_testsets(cfg, m) == ["wikitext2", "c4-new", "ptb-new"] and paper_testsets(cfg) == ["wikitext2", "ptb", "c4"]
    metrics = required_metrics(m, "table_nm_r64_8b", cfg)
    assert metrics[:3] == ["wikitext2_ppl@2048", "c4-new_ppl@2048", "ptb-new_ppl@2048"]
    # acc_norm where the task has it, acc for winogrande, rte and boolq (spec §5.7)
    assert metrics[3:] == ["piqa/acc_norm", "hellaswag/acc_norm", "arc_easy/acc_norm", "arc_challenge/acc_norm",
                           "winogrande/acc", "rte/acc", "openbookqa/acc_norm", "boolq/acc"]
    per_run = run_calibrations([m], cfg)
    assert per_run and all(c["protocol"] == "gptq-c4" for c in per_run.values())
    assert not any(run[1] == "dense" for run in per_run)  # the dense model draws no calibration
    # without its own calibration the paper uses the scale's
    plain = full()
    plain["papers"]["hassle-free"].pop("calibration")
    assert set(c["protocol"] for c in run_calibrations([m], plain).values()) == {"lab-c4"}
    # two papers planning one run with different draws: an error that names the fix
    other = load_manifest(MANIFEST)
    object.__setattr__(other, "paper", "hassle-free2")
    both = full()
    both["papers"]["hassle-free2"] = {**plain["papers"]["hassle-free"]}
    with pytest.raises(ReproError, match="papers.<paper>.calibration or distinct setting names"):
        run_calibrations([m, other], both)


def test_smoke_runs_only_its_configurations(m):
    runs = {(meth, s) for (_m, meth, s, _seed) in run_metrics(m, SMOKE)}
    assert runs == {("dense", "dense"), ("sparsegpt", "nm2-4"), ("alps", "nm2-4"), ("oats", "smoke-nm2-4-r64"),
                    ("hassle-free", "smoke-sgpt-nm2-4-r64"), ("hassle-free", "smoke-alps-nm2-4-r64")}
    assert m.config("hassle-free", "smoke-sgpt-nm2-4-r64")["am_iters"] < 80
    # the smoke rows never run at full, whatever settings: all says
    full_runs = {(meth, s) for (_m, meth, s, _seed) in run_metrics(m, full())}
    assert not any(s.startswith("smoke-") for _meth, s in full_runs)
    row = next(r for r in m.tables["table_nm_r64_8b"].rows if r.setting == "smoke-sgpt-nm2-4-r64")
    assert "for smoke only" in row_skip(m, row, full())
    assert row_skip(m, row, SMOKE) is None
    assert "zeroshot" not in str(required_metrics(m, "table_runtime", SMOKE))


def _write(runs: Path, method: str, setting: str, ppl: float, acc: float) -> None:
    d = run_dir(runs, "smollm2-135m", method, setting, 0) / "eval"
    write_json(d / "enwiki-gensim_ppl@256.json", {"metrics": {"enwiki-gensim_ppl@256": ppl}})
    write_json(d / "zeroshot-enwiki-cloze.json", {"metrics": {"enwiki-cloze/acc_norm": acc, "enwiki-cloze/acc": 0.0}})


def test_table_average_column_and_gap_claims(m, tmp_path):
    runs = tmp_path / "runs"
    _write(runs, "dense", "dense", 20.0, 0.60)
    _write(runs, "sparsegpt", "nm2-4", 40.0, 0.40)
    _write(runs, "alps", "nm2-4", 36.0, 0.44)
    _write(runs, "oats", "smoke-nm2-4-r64", 30.0, 0.50)
    _write(runs, "hassle-free", "smoke-sgpt-nm2-4-r64", 27.0, 0.54)
    _write(runs, "hassle-free", "smoke-alps-nm2-4-r64", 24.0, 0.55)
    metrics = required_metrics(m, "table_nm_r64_8b", SMOKE)
    assert metrics == ["enwiki-gensim_ppl@256", "enwiki-cloze/acc_norm"]  # the stand-in reads piqa's metric
    results = load_results(runs, plan(m, SMOKE), metrics)
    render_table(m, "table_nm_r64_8b", SMOKE, results, tmp_path / "t")
    with open(tmp_path / "t.csv", newline="") as fh:
        rows = {r["setting"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"dense", "nm2-4", "smoke-nm2-4-r64", "smoke-sgpt-nm2-4-r64", "smoke-alps-nm2-4-r64"}
    assert float(rows["smoke-alps-nm2-4-r64"]["zeroshot/avg"]) == pytest.approx(0.55)
    md = (tmp_path / "t.md").read_text()
    assert "enwiki-cloze stands in for piqa" in md and "smoke: 2 outer iterations" in md
    assert "(smoke: 1 outer iteration, 100 ADMM iterations) stands in for HASSLE-free-ALPS 2:4 + r64 at this scale" in md
    claims = {r["claim"].id: r for r in claim_rows(m, SMOKE, results)}
    # the smoke rows stand in for the paper's settings; the baseline is OATS
    ppl = claims["llama3-24-ppl-cpal"]
    assert ppl["method_key"] == "hassle-free/smoke-alps-nm2-4-r64" and ppl["best"] == "oats/smoke-nm2-4-r64"
    assert ppl["rel"] == pytest.approx((24.0 - 30.0) / 30.0)
    gap = claims["llama3-24-zeroshot-cpal"]  # gaps to dense: 0.05 against OATS's 0.10
    assert gap["rel"] == pytest.approx((0.05 - 0.10) / 0.10) and gap["holds"] is True


def test_gap_claim_needs_a_dense_row(tmp_path):
    text = MANIFEST.read_text().replace('      - {method: dense, setting: dense, label: "dense"}\n', "", 1)
    bad = tmp_path / "hassle-free.yaml"
    bad.write_text(text)
    with pytest.raises(ReproError, match="no regenerated dense row"):
        load_manifest(bad)


def test_smoke_labels_state_their_iterations(m):
    """Every smoke row's label names the iteration count of its configuration (captions say it)."""
    smoke_rows = [r for t in m.tables.values() for r in t.rows if r.scales == ("smoke",)]
    assert smoke_rows
    for r in smoke_rows:
        conf = m.config(r.method, r.setting)
        n = conf["iters"] if r.method == "oats" else conf["am_iters"]
        assert f"smoke: {n} " in r.label and r.stands_in_for in {s for (meth, s) in m.settings if meth == r.method}
        if "alps_max_iter" in conf:  # fewer ADMM iterations inside: the label says how many
            assert f"{conf['alps_max_iter']} ADMM iterations" in r.label
        counts = ("iters", "am_iters", "alps_max_iter")
        assert {k: v for k, v in conf.items() if k not in counts} == \
            {k: v for k, v in m.config(r.method, r.stands_in_for).items() if k not in counts}


def test_full_scale_table_leaves_smoke_rows_out(m, tmp_path):
    cfg = full()
    results = load_results(tmp_path / "runs", plan(m, cfg, "table_nm_r64_8b"), required_metrics(m, "table_nm_r64_8b", cfg))
    render_table(m, "table_nm_r64_8b", cfg, results, tmp_path / "t")
    md = (tmp_path / "t.md").read_text()
    assert "smoke" not in md.lower() and "HASSLE-free-ALPS 3:8 + r64" in md
    with open(tmp_path / "t.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 21  # dense + 4 patterns x 5 rows

"""The QuantEase manifest and the target kinds it brought: zero-shot-vs-size and per-layer-error
figures, runtime-only tables, stand-in models and tasks, and a baseline shown only as published."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from reprise.papers import (FAIL, NOT_REGENERATED, PASS, SMOKE, load_manifest, plan, render_figure, render_table,
                            report_cells, required_metrics, run_dir)
from reprise.papers.figures import layer_errors
from reprise.papers.plan import run_metrics, target_models
from reprise.papers.tables import caption

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def m():
    return load_manifest(ROOT / "config" / "papers" / "quantease.yaml")


def cfg(scale="full", models=("opt-1.3b", "opt-13b", "bloom-560m"), tasks=None):
    paper = {"models": list(models), **({"tasks": tasks} if tasks else {})}
    return {"scale": scale, "seeds": [0], "eval": {"seqlen": 2048, "testsets": ["wikitext2"]},
            "papers": {"quantease": paper}}


SMOKE_CFG = cfg("smoke", ["smollm2-135m"], {"lambada_openai": "enwiki-cloze"})


def test_targets_and_every_row_names_a_setting(m):
    assert set(m.tables) == {"readme", "ppl_opt", "ppl_bloom", "ppl_falcon", "outliers", "runtime"}
    assert set(m.figures) == {"lambada_opt", "lambada_bloom", "layer_error"}
    # the README table is verified: every quantized cell has a value and a tolerance
    readme = [p for p in m.published if p.table == "readme"]
    assert len(readme) == 6 * 5 and all(p.value is not None and p.tolerance for p in readme)


def test_models_of_the_paper_filter_the_scale_and_stand_ins_are_captioned(m):
    full = cfg()
    assert target_models(m, "ppl_opt", full) == ["opt-1.3b", "opt-13b"]
    assert target_models(m, "ppl_bloom", full) == ["bloom-560m"]
    assert target_models(m, "ppl_falcon", full) == ["opt-1.3b", "opt-13b", "bloom-560m"]  # stand-ins
    assert "stands in" in caption(m, "ppl_falcon", full) and "stands in" not in caption(m, "ppl_opt", full)
    assert target_models(m, "readme", SMOKE_CFG) == ["smollm2-135m"]


def test_zeroshot_figure_metric_follows_the_scale_stand_in(m):
    assert required_metrics(m, "lambada_opt", cfg()) == ["lambada_openai/acc"]
    assert required_metrics(m, "lambada_opt", SMOKE_CFG) == ["enwiki-cloze/acc"]
    assert "enwiki-cloze, standing in for lambada_openai" in caption(m, "lambada_opt", SMOKE_CFG)
    assert required_metrics(m, "layer_error", cfg()) == [] and required_metrics(m, "runtime", cfg()) == []


def test_runs_read_only_what_their_targets_need(m):
    needs = run_metrics(m, cfg())
    assert needs[("opt-1.3b", "quantease", "w3-fast", 0)] == []  # runtime table only: solve, no eval
    assert needs[("opt-1.3b", "quantease", "w3", 0)] == ["lambada_openai/acc", "wikitext2_ppl@2048"]
    assert not any(run[1] == "spqr" for run in needs)  # shown with published numbers only


def test_figure_points_get_verdicts_and_spqr_is_not_regenerated(m):
    c = cfg(models=["opt-1.3b", "opt-13b"])
    pub = {(p.table, p.model, p.method, p.setting, p.metric): p.value for p in m.published if p.value is not None}

    def value(model, method, setting, metric, table):
        v = pub.get((table, model, method, setting, metric))
        return None if v is None else (v + 0.05 if method == "awq" else v)  # AWQ points off by 0.05

    results = {}
    for t in [*m.tables, *m.figures]:
        for cell in plan(m, c, t):
            for metric in required_metrics(m, t, c):
                v = value(cell.model, cell.method, cell.setting, metric, t)
                results.setdefault(cell.run, {})[metric] = v if v is not None else results.get(cell.run, {}).get(metric)
    cells = report_cells(m, c, results)
    lam = [x for x in cells if x.table == "lambada_opt" and x.published and x.published.value is not None]
    assert lam and {x.verdict for x in lam if x.method == "awq"} == {FAIL}
    assert {x.verdict for x in lam if x.method != "awq"} == {PASS}
    spqr = [x for x in cells if x.method == "spqr"]
    assert spqr and {x.verdict for x in spqr} == {NOT_REGENERATED} and "SpQR" in spqr[0].reason
    smoke = report_cells(m, SMOKE_CFG, {})
    assert {x.verdict for x in smoke if x.table == "lambada_opt" and x.metric == "enwiki-cloze/acc"} <= {SMOKE, "missing"}


def _solve_log(runs: Path, model, method, setting, objectives, ref=10.0):
    d = run_dir(runs, model, method, setting, 0)
    d.mkdir(parents=True)
    with (d / "solve_log.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["block", "layer", "objective", "ref_energy", "seconds"])
        w.writeheader()
        for i, o in enumerate(objectives):
            w.writerow({"block": i // 2, "layer": f"l{i % 2}", "objective": o, "ref_energy": ref, "seconds": 1.5})


def test_layer_error_figure_and_runtime_table_read_solve_logs(m, tmp_path):
    runs = tmp_path / "runs"
    for method, setting, scale in [("rtn", "w3", 3.0), ("gptq", "w3", 2.0), ("quantease", "w3", 1.0),
                                   ("gptq", "w4", 0.5), ("quantease", "w4", 0.25)]:
        _solve_log(runs, "smollm2-135m", method, setting, [scale * (i + 1) for i in range(4)])
    errs = layer_errors(runs, "smollm2-135m", "quantease", "w3", 0)
    assert errs == [("0.l0", 0.1), ("0.l1", 0.2), ("1.l0", 0.3), ("1.l1", 0.4)]  # objective / ref_energy
    paths = render_figure(m, "layer_error", SMOKE_CFG, {}, tmp_path / "out" / "layer_error", runs)
    assert all(p.stat().st_size > 1000 for p in paths)
    from reprise.papers import load_results
    from reprise.papers.results import RUNTIME

    results = load_results(runs, plan(m, SMOKE_CFG, "runtime"), [], runtime=True)
    assert results[("smollm2-135m", "gptq", "w3", 0)][RUNTIME] == 6.0
    render_table(m, "runtime", SMOKE_CFG, results, tmp_path / "out" / "runtime")
    rows = list(csv.DictReader((tmp_path / "out" / "runtime.csv").open()))
    assert {r["label"]: r[RUNTIME] for r in rows}["GPTQ 3-bit"] == "6.0"


def test_zeroshot_figure_renders_with_published_points(m, tmp_path):
    c = cfg(models=["opt-350m", "opt-1.3b"])
    results = {cell.run: {"lambada_openai/acc": 0.3} for cell in plan(m, c, "lambada_opt")}
    paths = render_figure(m, "lambada_opt", c, results, tmp_path / "lambada_opt", tmp_path)
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)


def test_smoke_outlier_rows_stand_in_with_fewer_sweeps_and_say_so(m):
    """Smoke runs the outlier-aware rows in 10-sweep configurations (the time budget): each differs
    from the row it stands in for only in ``iters``, its label states the count, and mini/full never
    plan it while smoke never plans the 30-sweep run."""
    smoke_runs = {(r[1], r[2]) for r in run_metrics(m, SMOKE_CFG)}
    full_runs = {(r[1], r[2]) for r in run_metrics(m, cfg())}
    for t in ("readme", "outliers"):
        stand_ins = [r for r in m.tables[t].rows if r.stands_in_for]
        assert {r.setting for r in stand_ins} == {"smoke-w3-s1", "smoke-w3-u1"}
        for r in stand_ins:
            conf, real = m.config(r.method, r.setting), m.config(r.method, r.stands_in_for)
            assert f"{conf['iters']} sweeps" in r.label and conf["iters"] < real.get("iters", 30)
            assert {k: v for k, v in conf.items() if k != "iters"} == {k: v for k, v in real.items() if k != "iters"}
            assert (r.method, r.setting) in smoke_runs and (r.method, r.setting) not in full_runs
            assert (r.method, r.stands_in_for) in full_runs and (r.method, r.stands_in_for) not in smoke_runs

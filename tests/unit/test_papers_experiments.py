"""Experiments of the sparse-learning papers as targets: the registry, a job's files, the table
and figure views, the checks with verdicts, and the manifest's errors."""
from __future__ import annotations

import csv
import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reprise.experiments import (EXPERIMENTS, boolean, choice, experiment, get_experiment, integer, list_of, optional,
                                 params, real, run_job)
from reprise.io import ReproError
from reprise.papers import load_manifest
from reprise.papers.experiment_study import (check_lines, check_results, experiment_caption, seed_ranges, experiment_file, experiment_jobs, experiment_params,
                                             read_rows, render_experiment)

KIND = "sam.unit_quadratic"


@experiment(KIND)
def _quadratic(params, seed):
    """Rows: (method, step, replicate) -> loss, with a seeded perturbation."""
    rng = np.random.default_rng(seed)
    if params.get("steps", 0) < 1:
        raise ReproError("steps: use an integer >= 1")
    rows = []
    for method, rate in (("gd", 0.5), ("sam", 0.7)):
        for rep in range(params.get("replicates", 2)):
            noise = rng.normal(scale=0.01)
            rows += [{"method": method, "step": t, "replicate": rep, "loss": (1 - rate) ** t + noise, "pixel": t,
                      "image": method} for t in range(params["steps"])]
    return pd.DataFrame(rows)


MANIFEST = textwrap.dedent(f"""
    format: 1
    paper: toyexp
    title: "A toy experiment paper"
    version: "test"
    sources:
      log: {{citation: "a log", url: "https://example.org", version: "v", transcribed: "one value", reliability: "test"}}
    experiments:
      tab:
        kind: {KIND}
        caption: "Loss by method at the last steps"
        params: {{smoke: {{steps: 3}}, full: {{steps: 5, replicates: 4}}}}
        index: [method, step]
        values: [loss]
        runtime_min: {{smoke: 0.1, full: 2}}
      curve:
        kind: {KIND}
        caption: "Loss against steps"
        params: {{smoke: {{steps: 6}}}}
        view: line
        plot: {{x: step, y: loss, series: method, logy: true}}
      grid:
        kind: {KIND}
        caption: "Images"
        params: {{smoke: {{steps: 4}}}}
        view: image_grid
        plot: {{image: image, pixel: pixel, value: loss, shape: [2, 2]}}
    checks:
      - {{id: gd-first, text: "GD loss at step 0 is 1", experiment: tab, where: {{method: gd, step: 0}}, metric: loss,
          value: 1.0, tolerance: {{abs: 0.05}}, source: log, scales: [smoke]}}
      - {{id: sam-first, text: "SAM loss at step 0 is 2 (a wrong value)", experiment: tab, where: {{method: sam, step: 0}},
          metric: loss, value: 2.0, tolerance: {{abs: 0.05}}, source: log, scales: [smoke]}}
      - {{id: unscaled, text: "only compared beyond smoke", experiment: tab, metric: loss, value: 0.5, source: log}}
      - {{id: bound, text: "loss at most 0.9 after step 0", experiment: tab, where: {{step: [1, 2]}}, metric: loss,
          value: 0.9, at_most: true, source: log, scales: [smoke]}}
      - {{id: floor, text: "GD loss at least 0.4 at step 1", experiment: tab, where: {{method: gd, step: 1}}, metric: loss,
          value: 0.4, at_least: true, source: log, scales: [smoke]}}
      - {{id: high-floor, text: "GD loss at least 0.9 at step 1 (a wrong bound)", experiment: tab,
          where: {{method: gd, step: 1}}, metric: loss, value: 0.9, at_least: true, source: log, scales: [smoke]}}
""")
SMOKE = {"scale": "smoke", "seeds": [0, 1], "papers": {"toyexp": {}}}


@pytest.fixture()
def m(tmp_path):
    path = tmp_path / "toyexp.yaml"
    path.write_text(MANIFEST)
    return load_manifest(path)


def _run_all(m, runs: Path, cfg=SMOKE):
    for j in experiment_jobs(m, cfg):
        out = experiment_file(runs, m.paper, j.experiment, j.seed, j.part)
        run_job(j.kind, experiment_params(m, j.experiment, cfg, j.part), j.seed, out, out.with_suffix(".json"))


def test_registry_errors():
    assert get_experiment(KIND) is _quadratic and KIND in EXPERIMENTS
    with pytest.raises(ReproError, match="<package>.<id>"):
        experiment("nopackage")
    with pytest.raises(ReproError, match="unknown package"):
        get_experiment("xyz.tab1")


def test_params_kit():
    spec = {"n": (3, integer(1)), "rate": (0.5, real(0.0, strict=True, high=1.0)), "ok": (False, boolean),
            "xs": ([0.1], list_of(real(0.0))), "kind": ("a", choice("a", "b")), "cap": (None, optional(integer(0)))}
    p = params("sam.demo", {"n": np.int64(7), "ok": np.True_}, spec)
    assert p == {"n": 7, "rate": 0.5, "ok": True, "xs": [0.1], "kind": "a", "cap": None}
    assert type(p["n"]) is int and type(p["ok"]) is bool
    with pytest.raises(ReproError, match="sam.demo: unknown params 'nope'"):
        params("sam.demo", {"nope": 1}, spec)
    with pytest.raises(ReproError, match=r"sam.demo: params\['xs'\]\[1\]=-0.1 must be a finite number ≥ 0"):
        params("sam.demo", {"xs": [0.2, -0.1]}, spec)
    for bad in ({"n": 0}, {"n": True}, {"n": 2.0}, {"rate": 0}, {"rate": 1.5}, {"xs": []}, {"kind": "c"}):
        with pytest.raises(ReproError, match=repr(next(iter(bad)))):
            params("sam.demo", bad, spec)


def test_job_files_and_table_over_seeds(m, tmp_path):
    runs = tmp_path / "runs"
    _run_all(m, runs)
    f = experiment_file(runs, "toyexp", "tab", 1)
    prov = json.loads(f.with_suffix(".json").read_text())
    assert prov["experiment"] == KIND and prov["params"] == {"steps": 3} and prov["seed"] == 1 and "git_commit" in prov
    rows = read_rows([experiment_file(runs, "toyexp", "tab", s) for s in (0, 1)])
    assert sorted(rows["seed"].unique()) == [0, 1]
    render_experiment(m, "tab", SMOKE, rows, tmp_path / "tab")
    with open(tmp_path / "tab.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 6 and {r["scale"] for r in table} == {"smoke"}
    first = next(r for r in table if r["method"] == "gd" and r["step"] == "0")
    assert int(first["n_rows"]) == 4  # 2 replicates x 2 seeds
    assert float(first["loss"]) == pytest.approx(rows.query("method == 'gd' and step == 0")["loss"].mean())
    md = (tmp_path / "tab.md").read_text()
    assert "±" in md and "smoke" in md.lower() and "steps=3" in md


def test_figures_render(m, tmp_path):
    runs = tmp_path / "runs"
    _run_all(m, runs)
    for eid in ("curve", "grid"):
        rows = read_rows([experiment_file(runs, "toyexp", eid, s) for s in (0, 1)])
        paths = render_experiment(m, eid, SMOKE, rows, tmp_path / eid)
        assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)


def test_checks_give_verdicts(m, tmp_path):
    runs = tmp_path / "runs"
    assert {r.check.id: r.verdict for r in check_results(m, SMOKE, runs)}["gd-first"] == "missing"
    _run_all(m, runs)
    verdicts = {r.check.id: r for r in check_results(m, SMOKE, runs)}
    assert verdicts["gd-first"].verdict == "pass" and verdicts["gd-first"].n_rows == 4
    assert verdicts["sam-first"].verdict == "fail"
    assert verdicts["unscaled"].verdict == "smoke"  # no scales: never compared at smoke
    assert verdicts["bound"].verdict == "pass" and verdicts["bound"].ours < 0.9
    # a lower bound: GD's loss at step 1 is about 0.5
    assert verdicts["floor"].verdict == "pass" and verdicts["high-floor"].verdict == "fail"
    lines = "\n".join(check_lines(list(verdicts.values())))
    assert "| ≥ 0.4 |" in lines and "| ≤ 0.9 |" in lines


def test_params_per_scale_and_manifest_errors(m, tmp_path):
    full = {"scale": "full", "seeds": [0], "papers": {"toyexp": {}}}
    assert experiment_params(m, "tab", full) == {"steps": 5, "replicates": 4}
    with pytest.raises(ReproError, match="curve does not run at scale 'full'"):
        experiment_params(m, "curve", full)
    # an experiment without params for a scale is left out of that scale's jobs, and its caption says so
    assert {j.experiment for j in experiment_jobs(m, full)} == {"tab"}
    assert "Not run at scale 'full'" in experiment_caption(m, "curve", full)
    assert {j.experiment for j in experiment_jobs(m, SMOKE)} == {"tab", "curve", "grid"}
    bad = tmp_path / "bad.yaml"
    bad.write_text(MANIFEST.replace("plot: {x: step, y: loss, series: method, logy: true}", "plot: {x: step}"))
    with pytest.raises(ReproError, match="view line needs y"):
        load_manifest(bad)
    bad.write_text(MANIFEST.replace("experiment: tab, where: {method: gd", "experiment: nope, where: {method: gd"))
    with pytest.raises(ReproError, match="unknown experiment 'nope'"):
        load_manifest(bad)
    with pytest.raises(ReproError, match="steps"):
        run_job(KIND, {"steps": 0}, 0, tmp_path / "x.csv", tmp_path / "x.json")
    assert not (tmp_path / "x.csv").exists()  # a failed job leaves no rows behind


def test_gpu_and_inputs_per_scale(m, tmp_path):
    """`gpu` and `inputs` are per scale: the smoke job stays on the CPU with no inputs, the full job
    asks for a GPU (counted as GPU-hours by the plan) and depends on its fetched file; a rows_from
    experiment has no job and so may carry neither."""
    from reprise.cli import _summarise_jobs

    text = MANIFEST.replace("runtime_min: {smoke: 0.1, full: 2}",
                            "runtime_min: {smoke: 0.1, full: 2}\n    gpu: {full: 1}\n"
                            "    inputs: {full: [data/raw/toy/train.npz]}")
    path = tmp_path / "sub" / "toyexp.yaml"
    path.parent.mkdir()
    path.write_text(text)
    tab = load_manifest(path).experiments["tab"]
    assert (tab.gpus_at("smoke"), tab.gpus_at("full")) == (0, 1)
    assert tab.inputs_at("smoke") == () and tab.inputs_at("full") == ("data/raw/toy/train.npz",)
    assert m.experiments["tab"].gpus_at("full") == 0  # default: CPU
    # mini falls back to full for every per-scale field, as the params do
    assert (tab.gpus_at("mini"), tab.inputs_at("mini"), tab.runtime_at("mini")) == (1, ("data/raw/toy/train.npz",), 2.0)
    assert tab.runtime_at("smoke") == 0.1 and m.experiments["curve"].runtime_at("full") == 10.0
    jobs = [{"kind": "experiment", "minutes": 60.0, "checkpoint_bytes": 0, "gpu": True},
            {"kind": "experiment", "minutes": 30.0, "checkpoint_bytes": 0, "gpu": False}]
    total = _summarise_jobs(jobs, gpu=True, keep=False)
    assert (total["gpu_hours_est"], total["cpu_hours_est"], total["experiment_jobs"]) == (1.0, 0.5, 2)
    path.write_text(text.replace("  curve:\n    kind: sam.unit_quadratic\n",
                                 "  curve:\n    kind: sam.unit_quadratic\n    gpu: {full: 1}\n    rows_from: tab\n"))
    with pytest.raises(ReproError, match="rows_from has no job"):
        load_manifest(path)
    path.write_text(text.replace("gpu: {full: 1}", "gpu: {full: 2}"))
    with pytest.raises(ReproError):
        load_manifest(path)


def test_seed_ranges_keep_long_grids_short():
    assert seed_ranges([0]) == "0" and seed_ranges([1, 0]) == "0, 1"
    assert seed_ranges(list(range(471))) == "0-470"
    assert seed_ranges([0, 1, 2, 5, 7, 8, 9, 10]) == "0-2, 5, 7-10"


SPLIT_KIND = "sam.unit_rates"


@experiment(SPLIT_KIND)
def _rates(params, seed):
    """Rows (rate, scale, step) -> loss; each (rate, scale) seeded on its own, so a part's rows do
    not depend on which other values share its job."""
    rows = []
    for rate in params.get("rates", [0.5]):
        for scale in params.get("factors", [1.0]):
            rng = np.random.default_rng([seed, int(rate * 100), int(scale * 10)])
            rows += [{"rate": rate, "factor": scale, "step": t, "loss": scale * (1 - rate) ** t + rng.normal(scale=0.01)}
                     for t in range(params["steps"])]
    return pd.DataFrame(rows)


SPLIT_MANIFEST = textwrap.dedent(f"""
    format: 1
    paper: toysplit
    title: "A toy paper with a split grid"
    version: "test"
    sources:
      log: {{citation: "a log", url: "https://example.org", version: "v", transcribed: "one value", reliability: "test"}}
    experiments:
      grid:
        kind: {SPLIT_KIND}
        caption: "Loss per rate and scale"
        params: {{smoke: {{steps: 3}}, full: {{steps: 3, rates: [0.25, 0.5, 0.75], factors: [1.0, 2.0]}}}}
        split_by: [rates, factors]
        index: [rate, factor, step]
        values: [loss]
        runtime_min: {{smoke: 0.1, full: 30}}
      grid_view:
        kind: {SPLIT_KIND}
        rows_from: grid
        caption: "The same rows at step 0"
        where: {{step: 0}}
        index: [rate, factor]
        values: [loss]
    checks:
      - {{id: start, text: "loss at step 0 is the factor", experiment: grid_view, where: {{factor: 2.0, step: 0}},
          metric: loss, value: 2.0, tolerance: {{abs: 0.05}}, source: log, scales: [full]}}
""")
FULL2 = {"scale": "full", "seeds": [0, 1], "papers": {"toysplit": {}}}


def _split_manifest(tmp_path, text=SPLIT_MANIFEST):
    path = tmp_path / "toysplit.yaml"
    path.write_text(text)
    return load_manifest(path)


def test_split_by_runs_one_job_per_part_and_renders_as_one(tmp_path):
    """A split_by experiment runs one job per (part, seed), each with its lists cut to the part's
    values; the parts' rows render the same table as one unsplit job, the checks and the cost table
    read every part, and a scale whose params do not list the split params runs unsplit."""
    from reprise.papers.cost import experiment_job_files

    m = _split_manifest(tmp_path)
    jobs = experiment_jobs(m, FULL2)
    parts = ["0.25-1.0", "0.25-2.0", "0.5-1.0", "0.5-2.0", "0.75-1.0", "0.75-2.0"]
    assert [(j.experiment, j.seed, j.part) for j in jobs] == [("grid", s, p) for s in (0, 1) for p in parts]
    assert experiment_jobs(m, FULL2, only="grid_view") == jobs  # rows_from renders grid's jobs
    assert experiment_params(m, "grid", FULL2, "0.5-2.0") == {"steps": 3, "rates": [0.5], "factors": [2.0]}
    assert experiment_file("runs", "toysplit", "grid", 1, "0.5-2.0") == Path("runs/experiments/toysplit/grid/0.5-2.0_s1.csv")
    with pytest.raises(ReproError, match="no part '0.5-3.0'.*0.25-1.0"):
        experiment_params(m, "grid", FULL2, "0.5-3.0")
    smoke = {**FULL2, "scale": "smoke"}
    assert [(j.seed, j.part) for j in experiment_jobs(m, smoke)] == [(0, None), (1, None)]
    assert "ran as" not in experiment_caption(m, "grid", smoke)
    assert "Each seed ran as 6 jobs, one per value of rates, factors." in experiment_caption(m, "grid", FULL2)

    runs, whole = tmp_path / "runs", tmp_path / "whole"
    for j in jobs:
        out = experiment_file(runs, m.paper, j.experiment, j.seed, j.part)
        run_job(j.kind, experiment_params(m, "grid", FULL2, j.part), j.seed, out, out.with_suffix(".json"))
        assert json.loads(out.with_suffix(".json").read_text())["params"]["rates"] == [float(j.part.split("-")[0])]
    for s in (0, 1):  # the same grid as one job per seed
        out = experiment_file(whole, m.paper, "grid", s)
        run_job(SPLIT_KIND, experiment_params(m, "grid", FULL2), s, out, out.with_suffix(".json"))
    split_rows = read_rows([experiment_file(runs, m.paper, j.experiment, j.seed, j.part) for j in jobs])
    whole_rows = read_rows([experiment_file(whole, m.paper, "grid", s) for s in (0, 1)])
    assert sorted(split_rows["seed"].unique()) == [0, 1] and len(split_rows) == len(whole_rows) == 36
    render_experiment(m, "grid", FULL2, split_rows, tmp_path / "split")
    render_experiment(m, "grid", FULL2, whole_rows, tmp_path / "one")
    a, b = pd.read_csv(tmp_path / "split.csv"), pd.read_csv(tmp_path / "one.csv")
    pd.testing.assert_frame_equal(a.sort_values(["rate", "factor", "step"]).reset_index(drop=True),
                                  b.sort_values(["rate", "factor", "step"]).reset_index(drop=True))
    (verdict,) = check_results(m, FULL2, runs)
    assert verdict.verdict == "pass" and verdict.n_rows == 6  # 3 rates x 2 seeds, from three part files each
    (job, bench, prov), *_ = experiment_job_files(runs, m.paper, jobs)  # what the cost table reads per part
    assert job.part == "0.25-1.0" and prov.is_file() and bench == runs / "experiments/toysplit/benchmark/grid/0.25-1.0_s0.tsv"


def test_split_by_errors_name_the_key(tmp_path):
    with pytest.raises(ReproError, match="is not a non-empty list"):
        experiment_jobs(_split_manifest(tmp_path, SPLIT_MANIFEST.replace("rates: [0.25, 0.5, 0.75]", "rates: 0.5")), FULL2)
    with pytest.raises(ReproError, match="rows_from has no job, so no gpu, inputs or split_by"):
        _split_manifest(tmp_path, SPLIT_MANIFEST.replace("    rows_from: grid\n", "    rows_from: grid\n    split_by: rates\n"))
    per_part = "    inputs: {full: {0.25-1.0: [data/raw/a.npz], 0.25-2.0: [data/raw/b.npz]}}\n"
    with pytest.raises(ReproError, match="files per part need split_by"):
        _split_manifest(tmp_path, SPLIT_MANIFEST.replace("    split_by: [rates, factors]\n", per_part))
    grid = _split_manifest(tmp_path, SPLIT_MANIFEST.replace("    split_by: [rates, factors]\n",
                                                            "    split_by: [rates, factors]\n" + per_part)).experiments["grid"]
    assert grid.inputs_at("full", "0.25-2.0") == ("data/raw/b.npz",)
    assert grid.inputs_at("full") == ("data/raw/a.npz", "data/raw/b.npz")
    with pytest.raises(ReproError, match="no files for part '0.5-1.0'"):
        grid.inputs_at("full", "0.5-1.0")
    with pytest.raises(ReproError, match="not a plain file name"):
        experiment_jobs(_split_manifest(tmp_path, SPLIT_MANIFEST.replace("[0.25, 0.5, 0.75]", "['a/b', c]")), FULL2)

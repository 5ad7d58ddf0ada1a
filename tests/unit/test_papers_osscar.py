"""The OSSCAR manifest and what it brought: the speed columns and the speed-up trade-off figure,
per-scale thinning of a table's rows (papers.<paper>.settings), and a paper's own block slice
(papers.<paper>.blocks: all) carried to its compress jobs."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from reprise.io import ReproError, write_json
from reprise.metrics import eval_stem, speed_metric
from reprise.papers import load_manifest, plan, render_figure, render_table, required_metrics, run_dir
from reprise.papers.figures import speedup_series
from reprise.papers.plan import blocks, row_skip, run_blocks, run_metrics, speed_metrics
from reprise.papers.results import load_results
from reprise.papers.tables import fmt

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "config" / "papers" / "osscar.yaml"
SMOKE_SETTINGS = ["s20", "s20-ls", "osscar/s40", "mp-plus/s40"]


@pytest.fixture(scope="module")
def m():
    return load_manifest(MANIFEST)


def cfg(scale="full", models=("opt-1.3b", "opt-2.7b"), settings="all", paper_blocks="all", driver_blocks=None,
        speed=None):
    paper = {"models": list(models), "settings": settings, "blocks": paper_blocks}
    ev = {"seqlen": 2048, "testsets": ["wikitext2", "ptb", "c4"]}
    if speed:
        ev["speed"] = speed
    return {"scale": scale, "seeds": [0], "eval": ev, "driver": {"blocks": driver_blocks}, "papers": {"osscar": paper}}


SMOKE = {"scale": "smoke", "seeds": [0], "eval": {"seqlen": 256, "testsets": ["enwiki-gensim"],
                                                  "speed": {"batch_size": 1, "seqlen": 256}},
         "driver": {"blocks": [0, 8]},
         "papers": {"osscar": {"models": ["smollm2-135m"], "blocks": "all", "settings": SMOKE_SETTINGS}}}


def test_inventory_and_methods(m):
    assert set(m.tables) == {"table_opt", "table_runtime", "table_ablation"}
    assert m.figures["speedup_tradeoff"].kind == "ppl_vs_speedup"
    methods = {r.method for r in m.tables["table_opt"].rows}
    assert methods == {"dense", "mp", "mp-plus", "ziplm", "osscar"}
    # every structured setting prunes heads and neurons by the same fraction (spec §4.5)
    for (method, setting), conf in m.settings.items():
        if method == "dense":
            continue
        assert conf["heads_sparsity"] == conf["neurons_sparsity"], (method, setting)
    assert m.config("osscar", "s30-ls")["local_search"] is True


def test_speed_metrics_name_one_job_per_shape():
    metric = speed_metric("speedup", 1, 256)
    assert metric == "speed@b1x256/speedup"
    assert eval_stem(metric) == eval_stem(speed_metric("params", 1, 256)) == "speed@b1x256"
    with pytest.raises(ValueError):
        speed_metric("latency", 1, 256)
    assert speed_metrics(cfg(speed={"batch_size": 8, "seqlen": 128}))[0] == "speed@b8x128/speedup"
    assert speed_metrics(cfg())[0] == "speed@b1x2048/speedup"  # default: batch 1 x eval.seqlen


def test_table_columns_and_figure_metrics(m):
    assert required_metrics(m, "table_opt", cfg()) == [
        "wikitext2_ppl@2048", "ptb_ppl@2048", "c4_ppl@2048",
        "speed@b1x2048/speedup", "speed@b1x2048/flop_ratio", "speed@b1x2048/params"]
    assert required_metrics(m, "speedup_tradeoff", cfg())[:2] == ["wikitext2_ppl@2048", "speed@b1x2048/speedup"]
    assert fmt("speed@b1x256/params", 84_900_000) == "84.9M" and fmt("speed@b1x256/speedup", 1.614) == "1.61"


def test_smoke_thins_the_grid_full_runs_every_row(m):
    smoke_runs = {(meth, s) for (_m, meth, s, _seed) in run_metrics(m, SMOKE)}
    assert smoke_runs == {("dense", "dense"), ("mp", "s20"), ("mp-plus", "s20"), ("ziplm", "s20"), ("osscar", "s20"),
                          ("osscar", "s20-ls"), ("osscar", "s40"), ("mp-plus", "s40")}
    row = next(r for r in m.tables["table_opt"].rows if (r.method, r.setting) == ("ziplm", "s40"))
    assert "papers.osscar.settings" in row_skip(m, row, SMOKE)
    full = {(meth, s) for (_m, meth, s, _seed) in run_metrics(m, cfg())}
    assert full == set(m.settings)
    with pytest.raises(ReproError, match="does not declare"):
        row_skip(m, row, cfg(settings=["s25"]))


def test_paper_blocks_all_reach_its_runs_and_conflicts_fail(m):
    assert blocks(m, SMOKE) is None  # all: every block, whatever driver.blocks says
    per_run = run_blocks([m], SMOKE)
    assert per_run and set(per_run.values()) == {None}
    assert ("smollm2-135m", "dense", "dense", 0) not in per_run  # dense is never compressed
    # a paper without its own slice falls back to driver.blocks
    fallback = cfg(driver_blocks=[0, 4])
    fallback["papers"]["osscar"].pop("blocks")
    assert set(map(tuple, run_blocks([m], fallback).values())) == {(0, 4)}
    # the same run planned by two papers with different slices is an error
    other = load_manifest(MANIFEST)
    object.__setattr__(other, "paper", "osscar2")
    both = cfg()
    both["papers"]["osscar2"] = {**both["papers"]["osscar"], "blocks": [0, 2]}
    with pytest.raises(ReproError, match="runs are shared by path"):
        run_blocks([m, other], both)


def _write_run(runs: Path, model, method, setting, ppl, speedup, params):
    d = run_dir(runs, model, method, setting, 0) / "eval"
    write_json(d / "enwiki-gensim_ppl@256.json", {"metrics": {"enwiki-gensim_ppl@256": ppl}})
    write_json(d / "speed@b1x256.json", {"metrics": {"speed@b1x256/speedup": speedup,
                                                     "speed@b1x256/flop_ratio": speedup,
                                                     "speed@b1x256/params": params}})


def test_tradeoff_figure_and_table_render_from_runs(m, tmp_path):
    runs = tmp_path / "runs"
    model = "smollm2-135m"
    _write_run(runs, model, "dense", "dense", 23.0, 1.0, 134e6)
    for method, base in (("osscar", 60.0), ("mp-plus", 1e4), ("ziplm", 61.0), ("mp", 1e6)):
        _write_run(runs, model, method, "s20", base, 1.25, 110e6)
        if method in ("osscar", "mp-plus"):
            _write_run(runs, model, method, "s40", base * 3, 1.6, 85e6)
    _write_run(runs, model, "osscar", "s20-ls", 59.0, 1.25, 110e6)
    cells = plan(m, SMOKE)
    metrics = sorted({x for t in ("table_opt", "speedup_tradeoff") for x in required_metrics(m, t, SMOKE)})
    results = load_results(runs, cells, metrics)
    series = speedup_series(m, "speedup_tradeoff", SMOKE, results)[model]
    assert [p[:2] for p in series["osscar"]] == [(1.25, 60.0), (1.6, 180.0)]  # ordered by speed-up
    assert series["dense"] == [(1.0, 23.0, "dense")] and "ziplm" in series
    paths = render_figure(m, "speedup_tradeoff", SMOKE, results, tmp_path / "fig", runs_dir=runs)
    assert all(p.stat().st_size > 1000 for p in paths)
    render_table(m, "table_opt", SMOKE, results, tmp_path / "t")
    with open(tmp_path / "t.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8  # dense + the 7 smoke runs; thinned rows are listed in the notes only
    assert {r["scale"] for r in rows} == {"smoke"}
    assert float(next(r for r in rows if r["setting"] == "s40" and r["method"] == "osscar")["speed@b1x256/speedup"]) == 1.6
    assert "Not run at scale 'smoke'" in (tmp_path / "t.md").read_text()


def test_vision_study_models_per_scale_and_render(m, tmp_path):
    from reprise.papers.plan import vision_file, vision_models
    from reprise.papers.vision_study import read_rows, render_vision_study

    spec = m.vision_studies["vision_channels"]
    assert spec.models == ("resnet50", "mobilenet_v2") and "osscar" in spec.methods
    smoke = {**SMOKE, "papers": {"osscar": {**SMOKE["papers"]["osscar"], "vision_models": ["digits-resnet"]}}}
    assert vision_models(m, "vision_channels", smoke) == ["digits-resnet"]
    assert vision_models(m, "vision_channels", cfg()) == ["resnet50", "mobilenet_v2"]  # the study's own
    f = vision_file("runs", "digits-resnet", "osscar", "vision_channels", 0)
    assert f.as_posix() == "runs/vision/digits-resnet/osscar.vision_channels_s0.csv"
    src = tmp_path / "rows.csv"
    src.write_text("model,method,sparsity,top1,params,flops_kept,prune_seconds,speedup,note\n"
                   "digits-resnet,dense,0,0.99,151274,1.0,0,,\n"
                   "digits-resnet,osscar,0.5,0.98,77386,0.51,0.2,,held-out test split\n")
    paths = render_vision_study(m, "vision_channels", smoke, read_rows([src]), tmp_path / "v")
    md = paths[1].read_text()
    assert "digits-resnet stands in" in md and "SMOKE" in md and "98.00%" in md and "0.151M" in md
    assert "speed-up" not in md  # an all-empty column is left out
    with open(paths[0], newline="") as fh:
        assert [r["scale"] for r in csv.DictReader(fh)] == ["smoke", "smoke"]
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ReproError, match="not a vision study result"):
        read_rows([bad])

"""Tables, figures, results loading and the published-vs-regenerated report."""
from __future__ import annotations

import re
import statistics
from pathlib import Path

import pandas as pd
import pytest

from reprise.io import ReproError, write_json
from reprise.papers import (DENSE, FAIL, MISSING, NOT_REGENERATED, PASS, RUNTIME, WALL, SMOKE, Tolerance, count_verdicts,
                            load_manifest, load_results, plan, render_figure, render_report, render_table,
                            report_cells, required_metrics, run_dir, unique_runs, verdict)

ROOT = Path(__file__).resolve().parents[2]
BASELINES = ROOT / "config" / "papers" / "baselines.yaml"


@pytest.fixture(scope="module")
def m():
    return load_manifest(BASELINES)


def cfg(scale="mini", models=("opt-125m",), seeds=(0, 1, 2), testsets=("wikitext2", "c4"), seqlen=2048, **paper):
    return {"scale": scale, "seeds": list(seeds), "eval": {"seqlen": seqlen, "testsets": list(testsets)},
            "papers": {"baselines": {"models": list(models), **paper}}}


def fake_results(m, scale_cfg, value):
    """results for every planned run: value(model, method, setting, seed, metric)."""
    cells = plan(m, scale_cfg)
    metrics = sorted({x for t in m.tables for x in required_metrics(m, t, scale_cfg)})
    return {run: {k: value(*run, k) for k in metrics} for run in unique_runs(cells)}


# --------------------------------------------------------------------------- verdicts


def test_verdict_edges():
    rel, ab = Tolerance(rel=0.02), Tolerance(abs=0.02)
    assert verdict(31.12 * 1.02, 31.12, rel) == PASS
    assert verdict(31.12 * 0.98, 31.12, rel) == PASS
    assert verdict(31.12 * 1.0201, 31.12, rel) == FAIL
    assert verdict(27.65 + 0.02, 27.65, ab) == PASS
    assert verdict(27.65 - 0.02, 27.65, ab) == PASS
    assert verdict(27.65 + 0.0201, 27.65, ab) == FAIL
    both = Tolerance(rel=0.001, abs=0.05)  # the wider bound wins
    assert verdict(10.05, 10.0, both) == PASS and verdict(10.06, 10.0, both) == FAIL
    assert verdict(None, 27.65, ab) == MISSING
    assert verdict(27.65, None, None) == SMOKE
    assert verdict(27.65, 27.65, ab, smoke=True) == SMOKE


def test_smoke_scale_never_compares(m):
    # a smoke run on a model and metric that do have published values is still only "smoke"
    c = cfg(scale="smoke", seeds=[0], testsets=["wikitext2"])
    pub = {(p.model, p.method, p.setting): p.value for p in m.published
           if p.metric == "wikitext2_ppl@2048" and p.value is not None}
    results = fake_results(m, c, lambda mo, me, se, s, k: pub.get((mo, me, se), 50.0))
    cells = report_cells(m, c, results)
    assert {x.verdict for x in cells} == {SMOKE}
    assert any(x.published is not None and x.published.value is not None for x in cells)


def test_report_counts_and_verdicts(m, tmp_path):
    c = cfg(models=["opt-125m", "llama-2-7b"], seeds=[0, 1], testsets=["wikitext2"])
    pub = {(p.table, p.model, p.method, p.setting): p for p in m.published if p.metric == "wikitext2_ppl@2048"}

    def value(model, method, setting, seed, metric):
        p = pub.get(("quant", model, method, setting))
        if (model, method, setting) == ("opt-125m", "gptq", "w3"):
            return None  # not run yet
        if p is not None and p.value is not None:
            return p.value * (1.5 if method == "rtn" else 1.0)  # RTN cells fail, the rest pass
        return 42.0

    results = fake_results(m, c, value)
    cells = report_cells(m, c, results)
    counts = render_report(m, c, results, tmp_path / "report.md")
    assert counts == count_verdicts(cells)
    text = (tmp_path / "report.md").read_text()
    summary = dict(re.findall(r"^\| (pass|fail|missing|not regenerated|smoke) \| (\d+) \|", text, re.M))
    assert {k: int(v) for k, v in summary.items()} == counts
    assert sum(counts.values()) == len(cells) == text.count("| **")

    # every cell is accounted for by the rule that should decide it
    for x in cells:
        if x.metric != "wikitext2_ppl@2048":
            assert x.verdict == NOT_REGENERATED and "4096" in x.metric and x.reason
        elif (x.model, x.method, x.setting) == ("opt-125m", "gptq", "w3"):
            assert x.verdict == MISSING
        elif x.published is None or x.published.value is None:
            assert x.verdict == SMOKE
        elif x.table == "quant" and x.method == "rtn":
            assert x.verdict == FAIL
        elif x.table == "quant" or (x.table, x.method) == ("prune", DENSE):
            # prune's dense (SparseGPT 27.66) is met by the quant value 27.65 within ±0.02
            assert x.verdict == PASS
    assert counts[PASS] > 0 and counts[FAIL] > 0 and counts[NOT_REGENERATED] == 7
    assert "sparsegpt-t1" in text and "±2% rel" in text and "calibration" in text.lower()


# --------------------------------------------------------------------------- tables


def test_table_renders_and_parses_back(m, tmp_path):
    c = cfg(models=["opt-125m", "llama-3.2-1b"], testsets=["wikitext2", "c4"])
    results = fake_results(m, c, lambda mo, me, se, s, k: 10.0 + s + len(me) + (0.5 if k.startswith("c4") else 0))
    results[("opt-125m", "wanda", "sp50", 1)]["c4_ppl@2048"] = None  # a missing seed
    for run in results:
        results[run][RUNTIME] = 3.5
    paths = render_table(m, "prune", c, results, tmp_path / "prune")
    assert [p.suffix for p in paths] == [".csv", ".md", ".tex"] and all(p.stat().st_size for p in paths)

    df = pd.read_csv(paths[0])
    rows = m.tables["prune"].rows
    assert len(df) == 2 * len(rows)
    assert set(df["scale"]) == {c["scale"]}  # every CSV row says which scale produced it
    assert list(df["method"][: len(rows)]) == [r.method for r in rows]
    w = df.set_index(["model", "method", "setting"])
    vals = [10.0 + s + len("wanda") for s in (0, 1, 2)]
    assert w.loc[("opt-125m", "wanda", "sp50"), "wikitext2_ppl@2048"] == pytest.approx(statistics.fmean(vals))
    assert w.loc[("opt-125m", "wanda", "sp50"), "wikitext2_ppl@2048_std"] == pytest.approx(statistics.stdev(vals))
    assert w.loc[("opt-125m", "wanda", "sp50"), "c4_ppl@2048_n"] == 2
    assert w.loc[("opt-125m", "magnitude", "sp50"), "wikitext2_ppl@2048_n"] == 1  # seed-independent
    assert w.loc[("opt-125m", DENSE, DENSE), "solve_seconds"] == pytest.approx(3.5)

    md = paths[1].read_text().splitlines()
    body = [line for line in md if line.startswith("| opt-125m") or line.startswith("| llama-3.2-1b")]
    assert len(body) == len(df)
    cells = [x.strip() for x in body[2].strip("|").split("|")]
    assert cells[:2] == ["opt-125m", rows[2].label]
    assert cells[2] == f"{statistics.fmean(vals):.2f} ± {statistics.stdev(vals):.2f}"

    tex = paths[2].read_text()
    assert tex.count(r"\begin{tabular}") == 1 and r"\caption{" in tex
    data_lines = [ln for ln in tex.splitlines() if ln.endswith(r"\\") and not ln.startswith("Model")]
    assert len(data_lines) == len(df)
    assert all(ln.count("&") == 1 + 3 for ln in data_lines)  # model, method, 2 ppl sets, runtime
    assert r"$\pm$" in tex and "50\\%" in tex and "scale 'mini'" in tex


def test_smoke_caption_states_scale_and_blocks(m, tmp_path):
    c = cfg(scale="smoke", models=["smollm2-135m"], seeds=[0], testsets=["enwiki-gensim"], seqlen=256, blocks=[0, 4])
    paths = render_table(m, "quant", c, {}, tmp_path / "quant")
    md, tex = paths[1].read_text(), paths[2].read_text()
    for text in (md, tex):
        assert "SMOKE" in text and "smoke" in text and "blocks 0-3 are compressed" in text
    assert "enwiki-gensim_ppl@256" in md and "—" in md  # no results: dashes, not zeros
    df = pd.read_csv(paths[0])
    assert df["enwiki-gensim_ppl@256"].isna().all()


# --------------------------------------------------------------------------- figures


@pytest.mark.parametrize("scale", ["smoke", "mini"])
def test_figure_written(m, tmp_path, scale):
    c = cfg(scale=scale, models=["opt-125m", "llama-3.2-1b"], sparsities=[0.3, 0.5, 0.8])
    grow = {f"sp{p}": 1 + p / 10 for p in (30, 50, 80)}
    results = fake_results(m, c, lambda mo, me, se, s, k: 20.0 * (1 + s * 0.01) * grow.get(se, 1.0))
    paths = render_figure(m, "ppl_vs_sparsity", c, results, tmp_path / "fig")
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[0].stat().st_size > 5000
    assert paths[1].read_bytes()[:5] == b"%PDF-" and paths[1].stat().st_size > 1000
    # no results at all still renders (panels say so) rather than failing
    assert render_figure(m, "ppl_vs_sparsity", c, {}, tmp_path / "empty")[0].stat().st_size > 0


# --------------------------------------------------------------------------- results on disk


def test_load_results_reads_eval_and_solve_log(m, tmp_path):
    c = cfg(seeds=[0], testsets=["wikitext2", "c4"])
    cells = plan(m, c, target="quant")
    runs = tmp_path / "runs"
    d = run_dir(runs, "opt-125m", "gptq", "w4", 0)
    write_json(d / "eval" / "wikitext2.json", {"metrics": {"wikitext2_ppl@2048": 31.0}, "provenance": {}})
    write_json(d / "eval" / "c4.json", {"metrics": {"c4_ppl@2048": 33.0}, "provenance": {}})
    (d / "solve_log.csv").write_text("block,layer,objective,rel_err,seconds,peak_mem_mb\n0,q,1,0.1,1.5,10\n0,k,1,0.1,2.0,10\n")
    write_json(d / "provenance.json", {"stage": "compress", "wall_seconds": 7.25})
    metrics = required_metrics(m, "quant", c)
    res = load_results(runs, cells, metrics, runtime=True)
    assert set(res) == set(unique_runs(cells))
    assert res[("opt-125m", "gptq", "w4", 0)] == {"wikitext2_ppl@2048": 31.0, "c4_ppl@2048": 33.0, RUNTIME: 3.5,
                                                  WALL: 7.25}
    assert res[("opt-125m", "rtn", "w4", 0)] == {"wikitext2_ppl@2048": None, "c4_ppl@2048": None, RUNTIME: None,
                                                 WALL: None}
    cells_r = [x for x in report_cells(m, c, res) if x.table == "quant" and x.metric == "wikitext2_ppl@2048"]
    got = {(x.method, x.setting): x.verdict for x in cells_r}
    assert got[("gptq", "w4")] == PASS and got[("rtn", "w4")] == MISSING

    write_json(d / "eval" / "stale.json", {"metrics": {"c4_ppl@2048": 40.0}})
    with pytest.raises(ReproError, match="stale.json"):
        load_results(runs, cells, metrics)
    (d / "eval" / "stale.json").write_text("{not json")
    with pytest.raises(ReproError, match="stale.json"):
        load_results(runs, cells, metrics)

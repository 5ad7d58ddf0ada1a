"""Cost tables from benchmark files and provenance: per job, grouped, and bad files named."""
from __future__ import annotations

import json

import pytest

from reprise.io import ReproError
from reprise.papers.cost import group_costs, job_costs, write_costs

BENCH = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n{s}\t0:00:01\t{rss}\t1\t1\t1\t0\t0\t50\t{cpu}\n"


def _run(root, model, method, setting, wall, rss, gpu_prov=None, slurm=None, layers=(1.0, 2.0)):
    d = root / model / method / setting / "s0"
    (d / "benchmark").mkdir(parents=True)
    (d / "eval").mkdir()
    device = {"device": "auto", "resolved": "cuda" if gpu_prov else "cpu", "gpu": "H200" if gpu_prov else None}
    prov = {"usage": {"peak_rss_mb": rss / 2, "peak_gpu_mb": gpu_prov}, "slurm": slurm, "device": device}
    if method != "dense":
        (d / "benchmark" / "compress.tsv").write_text(BENCH.format(s=wall, rss=rss, cpu=wall * 2))
        (d / "provenance.json").write_text(json.dumps(prov))
        rows = "".join(f"{i},{sec},{100 * (i + 1)}\n" for i, sec in enumerate(layers))
        (d / "solve_log.csv").write_text("block,seconds,peak_mem_mb\n" + rows)
    (d / "benchmark" / "w_ppl@8.tsv").write_text(BENCH.format(s=wall / 10, rss=rss, cpu=wall))
    (d / "eval" / "w_ppl@8.json").write_text(json.dumps({"metrics": {"w_ppl@8": 3.0}, "provenance": prov}))


def _needs(*runs, metrics=("w_ppl@8",)):
    return {(m, meth, s, 0): list(metrics) for m, meth, s in runs}


def test_job_rows_and_groups(tmp_path):
    _run(tmp_path, "m1", "dense", "dense", 10, 1000)
    _run(tmp_path, "m1", "gptq", "w4", 100, 3000, slurm={"job_id": "42"})
    _run(tmp_path, "m2", "gptq", "w4", 300, 5000, gpu_prov=700.0)
    needs = _needs(("m1", "dense", "dense"), ("m1", "gptq", "w4"), ("m2", "gptq", "w4"))
    jobs = job_costs(tmp_path, needs)
    assert [(j["stage"], j["model"], j["method"]) for j in jobs] == [
        ("perplexity", "m1", "dense"), ("compress", "m1", "gptq"), ("perplexity", "m1", "gptq"),
        ("compress", "m2", "gptq"), ("perplexity", "m2", "gptq")]
    c1, c2 = jobs[1], jobs[3]
    assert c1["wall_s"] == 100 and c1["cpu_s"] == 200 and c1["solve_s"] == 3.0 and c1["slurm_job_id"] == "42"
    assert c1["device"] == "cpu" and c1["peak_gpu_mb"] is None  # CPU per-layer peaks are host memory
    assert c2["device"] == "H200" and c2["peak_gpu_mb"] == 700.0
    groups = {(g["stage"], g["model"], g["method"]): g for g in group_costs(jobs)}
    allc = groups[("compress", "all", "all")]
    assert allc["jobs"] == 2 and allc["wall_s"] == 400 and allc["wall_s_max"] == 300
    assert allc["peak_rss_mb"] == 5000 and allc["peak_gpu_mb"] == 700 and allc["slurm_jobs"] == 1
    assert allc["device"] == "H200+cpu"
    assert groups[("perplexity", "all", "all")]["jobs"] == 3
    out = write_costs(tmp_path, needs, tmp_path / "res", "smoke", "p")
    assert len(out) == len(groups)
    head = (tmp_path / "res" / "cost.csv").read_text().splitlines()[0]
    assert head.startswith("scale,stage,model,method,jobs,wall_s")
    assert (tmp_path / "res" / "cost.png").stat().st_size > 1000


def test_missing_or_bad_benchmark_names_the_file(tmp_path):
    _run(tmp_path, "m1", "gptq", "w4", 100, 3000)
    bench = tmp_path / "m1" / "gptq" / "w4" / "s0" / "benchmark" / "compress.tsv"
    bench.write_text("nothing\n1\n")
    with pytest.raises(ReproError, match="compress.tsv.*not a Snakemake benchmark"):
        job_costs(tmp_path, _needs(("m1", "gptq", "w4")))
    bench.unlink()
    with pytest.raises(ReproError, match="compress.tsv: no benchmark file"):
        job_costs(tmp_path, _needs(("m1", "gptq", "w4")))


def test_a_run_without_metrics_costs_only_its_solve(tmp_path):
    _run(tmp_path, "m1", "gptq", "w4", 100, 3000)
    jobs = job_costs(tmp_path, _needs(("m1", "gptq", "w4"), metrics=()))
    assert [j["stage"] for j in jobs] == ["compress"]

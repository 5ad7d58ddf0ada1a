"""The workflow itself: the smoke DAG under snakemake in a temporary directory, offline dry-runs of
the mini and full grids, and bad configuration failing before any job."""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.workflow
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "PYTHONPATH": str(REPO / "src")}

# The smoke DAG on a tiny random-weight Llama (SmolLM2's tokenizer): the same rules and code paths
# as `make reproduce`, with every paper's experiments at their smoke size, in about 9 minutes on 2
# cores (most of it the ~6 s each of the ~100 model jobs spends importing torch and transformers).
# The sparsities are smoke's, so the figures share the tables' runs as they do there.
TINY_CONFIG = {
    "calibration": {"dataset": "enwiki-gensim", "split": "train", "protocol": "contiguous", "n": 4, "seqlen": 64},
    "eval": {"seqlen": 64, "max_windows": 2, "testsets": ["enwiki-gensim"], "zeroshot_tasks": [], "batch_size": 1,
             "zeroshot_limit": 8, "zeroshot_batch_size": 8,
             "speed": {"batch_size": 1, "seqlen": 64, "warmup": 1, "repeats": 3}},
    "papers": {"baselines": {"models": ["tiny-llama"], "sparsities": [0.5, 0.7]},
               "quantease": {"models": ["tiny-llama"], "tasks": {"lambada_openai": "enwiki-cloze"}},
               "alps": {"models": ["tiny-llama"], "sparsities": [0.5, 0.7]},
               "osscar": {"models": ["tiny-llama"]},
               "hassle-free": {"models": ["tiny-llama"]},
               "effai": {"models": ["tiny-llama"]}},  # its public-model tables share the runs above
    "driver": {"device": "cpu", "blocks": None, "batch_size": 4},
}


def _workdir(tmp_path: Path, smollm2_dir: Path) -> Path:
    work = tmp_path / "wf"
    work.mkdir()
    for name in ("workflow", "src"):
        (work / name).symlink_to(REPO / name)
    shutil.copytree(REPO / "config", work / "config")  # a copy: the test edits a manifest
    (work / "models").mkdir()
    (work / "models" / "smollm2-135m").symlink_to(smollm2_dir)  # the tokenizer tiny-llama borrows
    (work / "tiny.yaml").write_text(yaml.safe_dump(TINY_CONFIG))
    return work


def _snakemake(work: Path, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    # targets go before --configfile, which takes every following word as a config file
    return subprocess.run([*SNAKEMAKE, *args, "--cores", "2", "--configfile", "tiny.yaml"], cwd=work, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_smoke_dag_runs_then_has_nothing_to_do(tmp_path, smollm2_dir):
    work = _workdir(tmp_path, smollm2_dir)
    run = _snakemake(work, "all")
    assert run.returncode == 0, run.stderr[-4000:]
    results = work / "results" / "papers" / "baselines"
    for name in ("quant.csv", "quant.md", "quant.tex", "prune.csv", "ppl_vs_sparsity.png", "ppl_vs_sparsity.pdf",
                 "report.md"):
        assert (results / name).is_file() and (results / name).stat().st_size > 0, name
    with open(results / "quant.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    metric = "enwiki-gensim_ppl@64"
    assert rows and all(float(r[metric]) > 1 for r in rows if r.get(metric))
    report = (results / "report.md").read_text()
    assert "smoke" in report.lower()
    qe = work / "results" / "papers" / "quantease"
    for name in ("readme", "ppl_opt", "ppl_bloom", "ppl_falcon", "outliers", "runtime"):
        assert (qe / f"{name}.csv").is_file() and (qe / f"{name}.tex").is_file(), name
    for name in ("lambada_opt", "lambada_bloom", "layer_error"):
        assert (qe / f"{name}.png").stat().st_size > 1000, name
    with open(qe / "runtime.csv", newline="") as fh:
        assert all(float(r["solve_seconds"]) > 0 for r in csv.DictReader(fh))
    with open(qe / "outliers.csv", newline="") as fh:
        spqr = [r for r in csv.DictReader(fh) if r["method"] == "spqr"]
    assert spqr and spqr[0][metric] == ""  # shown, not regenerated
    qe_report = (qe / "report.md").read_text()
    assert "not regenerated" in qe_report and "## Figure `lambada_opt`" in qe_report
    alps = work / "results" / "papers" / "alps"
    for name in ("table2", "table3", "table6", "table9", "table_llama", "table1_support", "table1_refit", "table5_rho",
                 "table7_admm_grad"):
        assert (alps / f"{name}.csv").is_file() and (alps / f"{name}.tex").is_file(), name
    for name in ("ppl_vs_sparsity", "admm_convergence"):
        assert (alps / f"{name}.png").stat().st_size > 1000, name
    with open(alps / "table2.csv", newline="") as fh:
        t2 = {r["method"]: r for r in csv.DictReader(fh)}
    assert set(t2) == {"dense", "magnitude", "sparsegpt", "wanda", "dsnot", "alps"}
    assert all(float(r[metric]) > 1 and 0 <= float(r["enwiki-cloze/acc"]) <= 1 for r in t2.values())
    with open(alps / "table6.csv", newline="") as fh:  # wall time includes activation generation
        assert all(float(r["wall_seconds"]) >= float(r["solve_seconds"]) > 0 for r in csv.DictReader(fh))
    alps_report = (alps / "report.md").read_text()
    assert "## Relative claims, recomputed" in alps_report and "## Layer studies" in alps_report
    assert not list((work / "runs" / "tiny-llama").glob("*/sp40/*"))  # Table 9 (MMLU only) solves nothing at smoke
    lam = json.loads((work / "runs/tiny-llama/quantease/w3/s0/eval/zeroshot-enwiki-cloze.json").read_text())
    assert 0 <= lam["metrics"]["enwiki-cloze/acc"] <= 1
    oss = work / "results" / "papers" / "osscar"
    for name in ("table_opt", "table_runtime", "table_ablation"):
        assert (oss / f"{name}.csv").is_file() and (oss / f"{name}.tex").is_file(), name
    assert (oss / "speedup_tradeoff.png").stat().st_size > 1000
    with open(oss / "table_opt.csv", newline="") as fh:
        t_opt = list(csv.DictReader(fh))
    speed = {(r["method"], r["setting"]): r for r in t_opt}
    assert ("osscar", "s40") in speed and ("mp", "s40") not in speed  # the smoke grid is thinned
    # every pruned model is physically smaller: fewer parameters, a FLOP ratio above 1
    dense = float(speed[("dense", "dense")]["speed@b1x64/params"])
    assert all(float(r["speed@b1x64/params"]) < dense and float(r["speed@b1x64/flop_ratio"]) > 1
               for k, r in speed.items() if k[0] != "dense")
    assert "papers.osscar.settings thins the grid" in (oss / "table_opt.md").read_text()
    with open(oss / "vision_channels.csv", newline="") as fh:  # the digits CNN, shrunk per method
        vis = {(r["method"], r["sparsity"]): r for r in csv.DictReader(fh)}
    assert float(vis[("dense", "0.0")]["top1"]) > 0.9
    assert float(vis[("osscar", "0.5")]["top1"]) >= float(vis[("mp", "0.5")]["top1"])
    hf = work / "results" / "papers" / "hassle-free"
    for name in ("table_nm_r64_8b", "table_nm_r64_small", "table_cr50", "table_unstructured", "table_runtime"):
        assert (hf / f"{name}.csv").is_file() and (hf / f"{name}.tex").is_file(), name
    with open(hf / "table_nm_r64_8b.csv", newline="") as fh:
        t_hf = {(r["method"], r["setting"]): r for r in csv.DictReader(fh)}
    assert set(t_hf) == {("dense", "dense"), ("sparsegpt", "nm2-4"), ("alps", "nm2-4"), ("oats", "smoke-nm2-4-r64"),
                         ("hassle-free", "smoke-sgpt-nm2-4-r64"), ("hassle-free", "smoke-alps-nm2-4-r64")}
    assert all(0 <= float(r["zeroshot/avg"]) <= 1 and float(r[metric]) > 1 for r in t_hf.values())
    assert "## Relative claims, recomputed" in (hf / "report.md").read_text()
    # every solve left its per-layer log and provenance; checkpoints were temporary at this scale
    logs = list((work / "runs" / "tiny-llama").glob("*/*/s0/solve_log.csv"))
    assert len(logs) >= 10
    assert all((log.parent / "provenance.json").is_file() for log in logs)
    assert not list((work / "runs" / "tiny-llama").glob("*/*/s0/model"))  # keep_checkpoints: false
    # cost accounting: one row per job from its benchmark file and provenance, grouped per method
    with open(results / "cost_jobs.csv", newline="") as fh:
        jobs = list(csv.DictReader(fh))
    from reprise.papers import load_manifest
    from reprise.papers.plan import run_metrics

    tiny = yaml.safe_load((work / "config" / "config.yaml").read_text())
    for key, value in TINY_CONFIG.items():  # as snakemake merges --configfile into the defaults
        tiny[key] = {**tiny[key], **value} if isinstance(value, dict) else value
    tiny["papers"] = {p: {**yaml.safe_load((work / "config" / "config.yaml").read_text())["papers"].get(p, {}), **v}
                      for p, v in TINY_CONFIG["papers"].items()}
    baseline_runs = {(meth, setting) for (_m, meth, setting, _s) in
                     run_metrics(load_manifest(work / "config" / "papers" / "baselines.yaml"), tiny)}
    own = [log for log in logs if (log.parts[-4], log.parts[-3]) in baseline_runs]
    assert {(j["method"], j["setting"]) for j in jobs if j["stage"] == "compress"} == \
        {(log.parts[-4], log.parts[-3]) for log in own}
    assert sum(j["stage"] == "perplexity" for j in jobs) == len(own) + 1  # and the dense model
    assert all(float(j["wall_s"]) > 0 and float(j["peak_rss_mb"]) > 100 and j["device"] == "cpu" for j in jobs)
    assert all(float(j["solve_s"]) > 0 for j in jobs if j["stage"] == "compress")
    with open(results / "cost.csv", newline="") as fh:
        groups = {(g["stage"], g["model"], g["method"]): g for g in csv.DictReader(fh)}
    assert int(groups[("compress", "all", "all")]["jobs"]) == len(own)
    assert float(groups[("compress", "all", "all")]["wall_s"]) == pytest.approx(
        sum(float(j["wall_s"]) for j in jobs if j["stage"] == "compress"), rel=1e-6)
    assert (results / "cost.png").stat().st_size > 1000
    assert "## Cost" in report
    again = _snakemake(work, "-n", "all")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Nothing to be done" in again.stdout + again.stderr

    # changing one method's config reruns that method's solve and what depends on it, nothing else.
    # gptq/w3 is one run shared by both papers: an edit of one manifest alone is refused, by name
    old, new = "w3: {bits: 3, group_size: -1, act_order: false}", "w3: {bits: 3, group_size: -1, act_order: true}"
    manifests = [work / "config" / "papers" / f"{p}.yaml" for p in ("baselines", "quantease")]
    texts = [m.read_text() for m in manifests]
    assert all(t.count(old) == 1 for t in texts)
    manifests[0].write_text(texts[0].replace(old, new))
    one_sided = _snakemake(work, "-n", "all")
    assert one_sided.returncode != 0
    assert "setting gptq/w3 differs between" in one_sided.stdout + one_sided.stderr
    manifests[1].write_text(texts[1].replace(old, new))
    changed = _snakemake(work, "-n", "all")
    assert changed.returncode == 0, changed.stderr[-2000:]
    out = changed.stdout + changed.stderr
    solves = {m for m in re.findall(r"rule compress:\n(?:.*\n)*?\s+wildcards: model=tiny-llama, method=(\w+), "
                                      r"setting=([\w.-]+)", out)}
    assert solves == {("gptq", "w3")}, solves
    stats = out.split("Job stats")[-1]
    assert "baselines_quant" in stats and "quantease_ppl_opt" in stats and "quantease_layer_error" in stats
    assert "baselines_prune" not in stats and "quantease_readme" not in stats  # no gptq row there
    for m, t in zip(manifests, texts):
        m.write_text(t)  # back to the config the outputs were made with

    # zero-shot through the DAG: the generated cloze task, then lm-eval's HFLM on a compressed run
    target = "runs/tiny-llama/wanda/sp50/s0/eval/zeroshot-enwiki-cloze.json"
    zs = _snakemake(work, target)
    assert zs.returncode == 0, zs.stderr[-4000:]
    result = json.loads((work / target).read_text())
    assert 0 <= result["metrics"]["enwiki-cloze/acc"] <= 1
    assert result["provenance"]["versions"]["lm_eval"] == "0.4.13" and result["provenance"]["limit"] == 8
    assert len((work / "data" / "tasks" / "enwiki-cloze" / "enwiki-cloze.jsonl").read_text().splitlines()) >= 500


@pytest.mark.parametrize("scale", ["mini", "full"])
def test_dry_run_of_larger_scales_builds_offline(scale):
    run = subprocess.run([*SNAKEMAKE, "all", "-n", "--cores", "1", "--configfile", f"config/scales/{scale}.yaml"],
                         cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout + run.stderr
    assert "Using workflow specific profile workflow/profiles/default" in out  # found beside the Snakefile
    assert "compress" in out and "fetch_dataset" in out
    if scale == "full":
        for model in ("opt-125m", "opt-13b", "llama-2-7b"):
            assert f"runs/{model}/gptq/w4/s0" in out
    # smoke's offline stand-in task does not leak into a larger scale through the config merge
    assert "task=lambada_openai" in out and "task=enwiki-cloze" not in out
    # `reprise plan` counts the jobs this DAG holds
    from reprise.cli import _load_config, plan_totals

    stats = dict(re.findall(r"^(compress|perplexity|zeroshot|speed)\s+(\d+)$", out, re.M))
    _, total = plan_totals(_load_config(scale, str(REPO / "config" / "config.yaml")))
    assert total["compress_jobs"] == int(stats["compress"])
    assert total["eval_jobs"] == int(stats["perplexity"]) + int(stats.get("zeroshot", 0)) + int(stats.get("speed", 0))


@pytest.mark.parametrize("override, message", [
    ({"papers": {"baselines": {"models": ["no-such-model"]}}}, "no-such-model"),
    ({"calibration": {"dataset": "no-such-data"}}, "no-such-data"),
    ({"eval": {"testsets": ["wikitext3"]}}, "wikitext3"),
    ({"driverr": {}}, "driverr"),
])
def test_bad_config_fails_before_any_job(tmp_path, override, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(override))
    run = subprocess.run([*SNAKEMAKE, "all", "-n", "--cores", "1", "--configfile", str(bad)], cwd=REPO, env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert message in run.stdout + run.stderr

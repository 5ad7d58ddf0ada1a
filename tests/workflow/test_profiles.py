"""The workflow profiles: the SLURM one repeats the default one's settings and plans the full grid offline
with per-job requests that follow the model."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml

from reprise.resources import CLUSTER_MAX_RUNTIME_MIN

from conftest import REPO

pytestmark = pytest.mark.workflow
PROFILES = REPO / "workflow" / "profiles"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "PYTHONPATH": str(REPO / "src")}
EDIT_START, EDIT_END = "# ---- EDIT FOR YOUR CLUSTER ----", "# ---- END EDIT FOR YOUR CLUSTER ----"


def _load(name: str) -> dict:
    return yaml.safe_load((PROFILES / name / "config.yaml").read_text())


def _full_threads() -> int:
    return yaml.safe_load((REPO / "config" / "scales" / "full.yaml").read_text())["threads"]


def test_slurm_profile_repeats_the_default_profile():
    """A workflow profile replaces workflow/profiles/default, so the SLURM one carries its settings, except
    `cores`: Snakemake caps every job's threads at --cores even for SLURM jobs, so there it must not cap."""
    default, slurm = _load("default"), _load("slurm")
    for key, value in default.items():
        assert key in slurm, f"workflow/profiles/slurm lacks {key!r} of the default profile"
        if key == "cores":
            assert slurm["cores"] >= _full_threads(), "cores would cap the full scale's threads per job"
        else:
            assert slurm[key] == value, (key, slurm[key], value)
    assert slurm["executor"] == "slurm"
    assert slurm["jobs"] >= 10 and slurm["retries"] >= 1
    # the production status command is the plugin's default (sacct); squeue is for clusters without slurmdbd
    assert not any(k.startswith("slurm-status") or k.startswith("slurm-init") for k in slurm), sorted(slurm)


def test_cluster_names_live_only_in_the_marked_block():
    text = (PROFILES / "slurm" / "config.yaml").read_text()
    assert text.count(EDIT_START) == 1 and text.count(EDIT_END) == 1
    head, rest = text.split(EDIT_START)
    block, tail = rest.split(EDIT_END)
    outside = yaml.safe_load(head + tail)
    assert "default-resources" not in outside and "set-resources" not in outside  # resources only in the block
    for name in ("slurm_account", "slurm_partition", "qos", "gpu_model", "constraint"):
        assert re.search(rf"^\s*#\s*{name}: ", block, re.M), f"the marked block has no commented {name} entry"
        assert not any(name in key for key in outside), f"{name} is set outside the marked block"
    # every commented line of the block is valid YAML once uncommented, as a user would do
    uncommented = re.sub(r"^(\s*)# (?=\s*[a-z_-]+:)", r"\1", block, flags=re.M)
    filled = yaml.safe_load(head + uncommented + tail)
    assert filled["default-resources"]["slurm_account"] and filled["set-resources"]["compress"]["gpu_model"]


def _job_resources(out: str, rule: str, wildcards: str) -> tuple[int, dict[str, str]]:
    for chunk in out.split("\n\n"):
        if f"rule {rule}:" in chunk and f"wildcards: {wildcards}\n" in chunk + "\n":
            found = re.search(r"^\s+threads: (\d+)$", chunk, re.M)
            threads = int(found.group(1)) if found else 1  # the dry run omits a single thread
            line = re.search(r"^\s+resources: (.*)$", chunk, re.M).group(1)
            return threads, dict(kv.split("=", 1) for kv in line.split(", "))
    raise AssertionError(f"no {rule} job with wildcards {wildcards} in the dry run")


def test_slurm_profile_plans_the_full_grid_offline():
    run = subprocess.run([*SNAKEMAKE, "-n", "--workflow-profile", "workflow/profiles/slurm", "all",
                          "--configfile", "config/scales/full.yaml"],
                         cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout + run.stderr
    assert "Using workflow specific profile workflow/profiles/slurm" in out
    small_threads, small = _job_resources(out, "compress", "model=opt-125m, method=gptq, setting=w4, seed=0")
    big_threads, big = _job_resources(out, "compress", "model=opt-13b, method=gptq, setting=w4, seed=0")
    assert int(big["mem_mb"]) > int(small["mem_mb"]) and int(big["runtime"]) > int(small["runtime"]), (small, big)
    assert small["gpu"] == big["gpu"] == "1"  # -> sbatch --gpus=1
    assert small_threads == big_threads == _full_threads()  # -> --cpus-per-task, not capped by `cores`
    _, ev = _job_resources(out, "perplexity", "model=opt-13b, method=gptq, setting=w4, seed=0, testset=wikitext2, "
                                              "seqlen=2048")
    assert ev["gpu"] == "1" and int(ev["mem_mb"]) > 0 and int(ev["runtime"]) > 0
    # the QuantEase grid plans with the same requests: its sweeps ask for more time than GPTQ
    _, qe = _job_resources(out, "compress", "model=opt-13b, method=quantease, setting=w3, seed=0")
    _, qe_big = _job_resources(out, "compress", "model=falcon-40b, method=quantease-outlier, setting=w3-s1, seed=0")
    assert int(qe["runtime"]) > int(big["runtime"]) and qe["gpu"] == "1"
    assert int(qe_big["mem_mb"]) > int(qe["mem_mb"]) and int(qe_big["runtime"]) > int(qe["runtime"])
    _, lam = _job_resources(out, "zeroshot", "model=bloom-7b1, method=quantease, setting=w4, seed=0, "
                                              "task=lambada_openai")
    assert lam["gpu"] == "1"
    # ALPS: five seeds, ADMM asks for more time than SparseGPT, the layer studies run as GPU jobs
    _, alps = _job_resources(out, "compress", "model=opt-13b, method=alps, setting=sp70, seed=4")
    _, sgpt = _job_resources(out, "compress", "model=opt-13b, method=sparsegpt, setting=sp70, seed=4")
    assert alps["gpu"] == "1" and int(alps["runtime"]) > int(sgpt["runtime"])
    assert "rule alps_table1_support:" in out and "rule layer_gram:" in out
    study = next(c for c in out.split("\n\n") if "rule alps_table1_support:" in c)
    assert "gpu=1" in study and "runs/opt-13b/layers/b0.self_attn.k_proj_s0.pt" in study
    assert "task=alps_lambada" in out and "task=mmlu" in out
    # long experiment grids run split (manifest split_by): a Skinny Trees dataset is a GPU job of its
    # own that waits only for that dataset's fetch
    _, churn = _job_resources(out, "experiment_part_run", "paper=skinny, experiment=tab2, part=churn, seed=0")
    assert churn["gpu"] == "1"
    job = next(c for c in out.split("\n\n") if "wildcards: paper=skinny, experiment=tab2, part=churn, seed=0" in c)
    assert "data/raw/pmlb/churn/churn.tsv.gz" in job and "satimage" not in job
    # every job's first attempt fits a common 48-hour partition limit (sbatch -t)
    runtimes = [int(r) for r in re.findall(r"^\s+resources: .*\bruntime=(\d+)", out, re.M)]
    assert len(runtimes) > 1000 and max(runtimes) <= CLUSTER_MAX_RUNTIME_MIN, max(runtimes)

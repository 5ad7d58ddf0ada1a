"""Live single-node SLURM: the workflow through workflow/profiles/slurm and the official executor plugin.

Run by `make test-slurm` (which sets REPRISE_LIVE_SLURM=1; as root, it installs slurm-wlm and munge
with apt-get when missing, see tests/slurm/cluster.py). A small fixed smoke slice -- the dense, RTN
4-bit and GPTQ 4-bit runs of SmolLM2-135M on blocks 0-5 and their perplexity -- runs first locally
(`snakemake --cores 2`), then in a second copy that shares the local run's data, model and tokens,
so that only the solves and the evaluations run, each as its own SLURM job. The GPTQ job is
cancelled (scancel: SIGTERM, then SIGKILL, as at a time limit) once it has finished a block; the
profile's retry must resume it from its finished blocks and still reproduce the local numbers.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from conftest import REPO, in_ci

# Opt-in outside CI; under CI=true they always run (a collection-time skip would escape conftest's
# skip-is-a-failure hook).
if os.environ.get("REPRISE_LIVE_SLURM") != "1" and not in_ci():
    pytest.skip("the live SLURM tests start slurmctld/slurmd/munged as root and install slurm-wlm and munge "
                "when missing: they run from `make test-slurm` (REPRISE_LIVE_SLURM=1)", allow_module_level=True)

from .cluster import SlurmUnavailable, local_slurm  # noqa: E402

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

MODEL = "smollm2-135m"
SEQLEN = 128
METRIC = f"enwiki-gensim_ppl@{SEQLEN}"
BLOCKS = [0, 6]
SLICE = {
    "calibration": {"dataset": "enwiki-gensim", "split": "train", "protocol": "contiguous", "n": 8, "seqlen": SEQLEN},
    "eval": {"seqlen": SEQLEN, "max_windows": 4, "testsets": ["enwiki-gensim"], "zeroshot_tasks": [],
             "batch_size": 1, "zeroshot_limit": 8, "zeroshot_batch_size": 8},
    "papers": {"baselines": {"models": [MODEL], "sparsities": [0.5]}},
    "driver": {"device": "cpu", "blocks": BLOCKS, "batch_size": 4},
    "threads": 1,
}
RUNS = [("dense", "dense"), ("rtn", "w4"), ("gptq", "w4")]


def run_dir(method: str, setting: str) -> str:
    return f"runs/{MODEL}/{method}/{setting}/s0"


EVALS = [f"{run_dir(m, s)}/eval/{METRIC}.json" for m, s in RUNS]
SOLVES = [f"{run_dir(m, s)}/solve_log.csv" for m, s in RUNS if m != "dense"]
# The evaluations only: each pulls in its solve. A solve_log.csv as a target would rerun its solve every
# time, because the solve's other output, the checkpoint, is temp() at smoke scale and gone once evaluated.
TARGETS = EVALS
CANCELLED_RUN = ("gptq", "w4")
PARTITION = "reprise"
# Targets go before these (--set-threads takes every following word) and --configfile goes last.
SLURM_ARGS = ["--workflow-profile", "workflow/profiles/slurm", "--slurm-status-command", "squeue",
              "--slurm-init-seconds-before-status-checks", "2", "--set-threads", "compress=1", "perplexity=1"]
# Hang guards (`timeout -k 10`), not timings: .ci/run runs this suite beside `make test`, which
# keeps both cores busy, so each is about 4x what its step took alone on the 2-core machine
# (local 97 s, through SLURM 134 s, again 8 s, failing 78 s, time limit 209 s, resume 270 s).
LOCAL_LIMIT, SLURM_LIMIT, AGAIN_LIMIT, FAIL_LIMIT = 480, 600, 180, 300
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "PYTHONPATH": str(REPO / "src")}
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")
EDIT_START, EDIT_END = "# ---- EDIT FOR YOUR CLUSTER ----", "# ---- END EDIT FOR YOUR CLUSTER ----"

_NOTES: list[str] = []


def note(msg: str) -> None:
    """Shown by `make test-slurm` (pytest -rA) and kept in <tmp>/live-slurm.log."""
    line = f"[live-slurm {time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    _NOTES.append(line)


def _snakemake(work: Path, *args: str, env: dict, limit: int, name: str) -> SimpleNamespace:
    t0 = time.monotonic()
    res = subprocess.run(["timeout", "-k", "10", str(limit), *SNAKEMAKE, *args], cwd=work, env=env,
                         capture_output=True, text=True, timeout=limit + 60)
    out = res.stdout + res.stderr
    (work / f"snakemake-{name}.log").write_text(out)
    seconds = time.monotonic() - t0
    note(f"{name}: snakemake rc {res.returncode} in {seconds:.0f} s (log {work}/snakemake-{name}.log)")
    return SimpleNamespace(rc=res.returncode, out=out, seconds=seconds)


def _workdir(work: Path, copy_workflow: bool) -> Path:
    work.mkdir(parents=True)
    for name in ("src", "envs"):
        (work / name).symlink_to(REPO / name)
    if copy_workflow:  # the SLURM copy fills in the profile's marked block, as a user would
        shutil.copytree(REPO / "workflow", work / "workflow", ignore=shutil.ignore_patterns("__pycache__"))
    else:
        (work / "workflow").symlink_to(REPO / "workflow")
    shutil.copytree(REPO / "config", work / "config")
    (work / "slice.yaml").write_text(yaml.safe_dump(SLICE))
    return work


def _fill_in_partition(profile: Path) -> None:
    """Uncomment the marked block's slurm_partition line and name this cluster's partition."""
    text = profile.read_text()
    head, rest = text.split(EDIT_START, 1)
    block, tail = rest.split(EDIT_END, 1)
    block, n = re.subn(r"^(\s*)# slurm_partition: \"[^\"]*\"", rf'\1slurm_partition: "{PARTITION}"', block, count=1,
                       flags=re.M)
    assert n == 1, "the marked block has no commented slurm_partition line to fill in"
    profile.write_text(head + EDIT_START + block + EDIT_END + tail)
    assert yaml.safe_load(profile.read_text())["default-resources"]["slurm_partition"] == PARTITION


def _submissions(out: str) -> list[dict[str, str]]:
    """Every SLURM submission the plugin logged: SLURM job id, rule, wildcards and its log file."""
    subs = []
    for _sm_id, job_id, log in SUBMITTED.findall(out):
        parts = Path(log).parts
        i = parts.index("slurm_logs")
        subs.append({"id": job_id, "rule": parts[i + 1].removeprefix("rule_"), "wildcards": parts[i + 2], "log": log})
    return subs


def _job_table(cluster, subs: list[dict[str, str]]) -> str:
    known = {j["id"]: j for j in cluster.jobs()}
    lines = [f"{'slurm id':>8}  {'state':<10} {'limit':>8} {'mem':>7}  rule/wildcards"]
    for s in subs:
        j = known.get(s["id"], {})
        lines.append(f"{s['id']:>8}  {j.get('state', '?'):<10} {j.get('time_limit', '?'):>8} "
                     f"{j.get('min_memory', '?'):>7}  {s['rule']}/{s['wildcards']}")
    return "\n".join(lines)


def _cancel_mid_solve(cluster, work: Path, stop: threading.Event, found: dict) -> None:
    """scancel the GPTQ job once its resume state holds a finished block (and more blocks remain)."""
    state_file = work / "runs" / ".resume" / MODEL / CANCELLED_RUN[0] / CANCELLED_RUN[1] / "s0" / "state.json"
    n_blocks = BLOCKS[1] - BLOCKS[0]
    while not stop.wait(0.1):
        try:
            finished = json.loads(state_file.read_text())["finished"]
        except (OSError, ValueError, KeyError):
            continue
        if not 1 <= len(finished) < n_blocks:
            continue
        running = [j for j in cluster.jobs() if j["state"] == "RUNNING" and f"_{CANCELLED_RUN[0]}_" in j["comment"]
                   and "compress" in j["comment"]]
        if running:
            job = running[0]["id"]
            res = cluster.run("scancel", job, timeout=30)
            found.update(id=job, finished=list(finished), rc=res.returncode, at=time.monotonic())
            return


@pytest.fixture(scope="module")
def cluster():
    stack = ExitStack()
    try:
        c = stack.enter_context(local_slurm(partition=PARTITION, log=note))
    except SlurmUnavailable as exc:
        pytest.skip(f"no local SLURM cluster: {exc}")
    with stack:
        yield c


@pytest.fixture(scope="module")
def local(cluster, tmp_path_factory) -> Path:  # `cluster` first: no local run when SLURM cannot start here
    work = _workdir(tmp_path_factory.mktemp("live-slurm") / "local", copy_workflow=False)
    run = _snakemake(work, *TARGETS, "--cores", "2", "--configfile", "slice.yaml", env=ENV, limit=LOCAL_LIMIT,
                     name="local")
    assert run.rc == 0, run.out[-4000:]
    assert "has been submitted with SLURM jobid" not in run.out
    return work


@pytest.fixture(scope="module")
def slurm(cluster, local) -> SimpleNamespace:
    work = _workdir(local.parent / "slurm", copy_workflow=True)
    _fill_in_partition(work / "workflow" / "profiles" / "slurm" / "config.yaml")
    for name in ("data", "models"):  # prepared once, by the local run: hard links keep content and mtimes
        shutil.copytree(local / name, work / name, copy_function=os.link, symlinks=True)
    stop, cancelled = threading.Event(), {}
    watcher = threading.Thread(target=_cancel_mid_solve, args=(cluster, work, stop, cancelled), daemon=True)
    watcher.start()
    try:
        run = _snakemake(work, *TARGETS, *SLURM_ARGS, "--configfile", "slice.yaml", env=cluster.env,
                         limit=SLURM_LIMIT, name="slurm")
    finally:
        stop.set()
        watcher.join(10)
    subs = _submissions(run.out)
    table = _job_table(cluster, subs)
    note(f"SLURM jobs of the run (cancelled mid-solve: {cancelled or 'none'}):\n{table}")
    (local.parent / "live-slurm.log").write_text("\n".join(_NOTES) + "\n")
    return SimpleNamespace(work=work, run=run, subs=subs, cancelled=cancelled,
                           jobs={j["id"]: j for j in cluster.jobs()})


def test_every_solve_and_eval_ran_as_a_slurm_job(slurm):
    assert slurm.run.rc == 0, slurm.run.out[-6000:]
    subs = slurm.subs
    rules = [s["rule"] for s in subs]
    # only the solves and the evaluations: data, model and tokens came from the local run
    assert set(rules) == {"compress", "perplexity"}, rules
    assert rules.count("perplexity") == len(EVALS)
    assert rules.count("compress") == len(SOLVES) + (1 if slurm.cancelled else 0)
    for s in subs:
        assert Path(s["log"]).is_file(), f"no SLURM log {s['log']}"
        expected = "CANCELLED" if s["id"] == slurm.cancelled.get("id") else "COMPLETED"
        assert slurm.jobs[s["id"]]["state"] == expected, (s, slurm.jobs.get(s["id"]))
    # each output was written by a process that saw SLURM_JOB_ID, the id of the job that made it
    last = {}
    for s in subs:
        last[(s["rule"], s["wildcards"])] = s["id"]
    for method, setting in RUNS:
        files = [Path(slurm.work, run_dir(method, setting), "eval", f"{METRIC}.json")]
        if method != "dense":
            files.append(Path(slurm.work, run_dir(method, setting), "provenance.json"))
        for f in files:
            data = json.loads(f.read_text())
            prov = data.get("provenance", data)
            job_id = (prov.get("slurm") or {}).get("job_id")
            rule = "perplexity" if f.suffix == ".json" and "eval" in f.parts else "compress"
            mine = [i for (r, wc), i in last.items() if r == rule and f"_{method}_{setting}_" in f"_{wc}_"]
            assert job_id in mine, (f, prov.get("slurm"), mine)


def _close(a: float, b: float, rel: float = 1e-6) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-30)


def test_outputs_equal_the_local_run(local, slurm):
    assert slurm.run.rc == 0, slurm.run.out[-4000:]
    for target in EVALS:
        ours = json.loads((slurm.work / target).read_text())["metrics"]
        theirs = json.loads((local / target).read_text())["metrics"]
        assert ours.keys() == theirs.keys()
        for k in ours:
            assert _close(ours[k], theirs[k]), (target, k, ours[k], theirs[k])
        note(f"{target}: {ours} (local {theirs})")
    for target in SOLVES:
        with open(slurm.work / target, newline="") as fh:
            ours = list(csv.DictReader(fh))
        with open(local / target, newline="") as fh:
            theirs = list(csv.DictReader(fh))
        assert [(r["block"], r["layer"]) for r in ours] == [(r["block"], r["layer"]) for r in theirs]
        bad = [(r["block"], r["layer"], r["objective"], t["objective"]) for r, t in zip(ours, theirs)
               if not _close(float(r["objective"]), float(t["objective"]))]
        assert not bad, (target, bad)
        note(f"{target}: {len(ours)} layer objectives equal the local run's (rel 1e-6)")


def _mb(memory: str) -> float:
    """squeue's %m: 3792M, 5G, ..."""
    units = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2}
    return float(memory[:-1]) * units[memory[-1]] if memory[-1] in units else float(memory)


def _minutes(limit: str) -> float:
    """squeue's %l: [D-][HH:]MM:SS."""
    days, _, clock = limit.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    return int(days or 0) * 1440 + parts[0] * 60 + parts[1] + parts[2] / 60


def test_cancelled_solve_is_retried_and_resumes(slurm):
    assert slurm.cancelled, "the GPTQ job was never seen running with a finished block, so nothing was cancelled"
    assert slurm.cancelled["rc"] == 0
    out = slurm.run.out
    assert f"SLURM-job '{slurm.cancelled['id']}' failed, SLURM status is: 'CANCELLED'" in out, out[-4000:]
    method, setting = CANCELLED_RUN
    tries = [s for s in slurm.subs if s["rule"] == "compress" and f"_{method}_{setting}_" in f"_{s['wildcards']}_"]
    assert [t["id"] for t in tries][0] == slurm.cancelled["id"] and len(tries) == 2, tries
    first, retry = (slurm.jobs[t["id"]] for t in tries)
    assert retry["state"] == "COMPLETED"
    # attempt 2 asks for more: the rules' resources scale with `attempt`
    assert _mb(retry["min_memory"]) > _mb(first["min_memory"]), (first, retry)
    assert _minutes(retry["time_limit"]) > _minutes(first["time_limit"]), (first, retry)
    prov = json.loads((slurm.work / run_dir(method, setting) / "provenance.json").read_text())
    resumed = prov["resumed_blocks"]
    n_blocks = BLOCKS[1] - BLOCKS[0]
    assert resumed and resumed == list(range(BLOCKS[0], BLOCKS[0] + len(resumed))) and len(resumed) < n_blocks, resumed
    assert len(resumed) >= len(slurm.cancelled["finished"])
    log = (slurm.work / "logs" / "compress" / MODEL / method / setting / "s0.log").read_text()
    assert "already compressed" in log, log[-2000:]
    assert not (slurm.work / "runs" / ".resume" / MODEL / method / setting / "s0").exists()  # cleared when done
    note(f"job {slurm.cancelled['id']} cancelled after blocks {slurm.cancelled['finished']}; retry {tries[1]['id']} "
         f"(mem {first['min_memory']} -> {retry['min_memory']}, limit {first['time_limit']} -> "
         f"{retry['time_limit']}) resumed blocks {resumed}")


def test_second_run_through_slurm_has_nothing_to_do(cluster, slurm):
    assert slurm.run.rc == 0
    again = _snakemake(slurm.work, *TARGETS, *SLURM_ARGS, "--configfile", "slice.yaml", env=cluster.env,
                       limit=AGAIN_LIMIT, name="slurm-again")
    assert again.rc == 0, again.out[-3000:]
    assert "Nothing to be done" in again.out
    assert not SUBMITTED.search(again.out)


def test_failing_job_is_reported_failed(cluster, slurm):
    """A solve that raises inside its SLURM job (blocks past the model's 30) fails the run, named FAILED."""
    (slurm.work / "broken.yaml").write_text(yaml.safe_dump({"driver": {"blocks": [0, 99]}}))
    target = f"{run_dir('rtn', 'w3')}/solve_log.csv"
    bad = _snakemake(slurm.work, target, *SLURM_ARGS, "--retries", "0", "--configfile", "slice.yaml", "broken.yaml",
                     env=cluster.env, limit=FAIL_LIMIT, name="slurm-failing")
    assert bad.rc != 0, bad.out[-3000:]
    subs = _submissions(bad.out)
    assert len(subs) == 1 and subs[0]["rule"] == "compress", subs
    job = subs[0]["id"]
    assert f"SLURM-job '{job}' failed, SLURM status is: 'FAILED'" in bad.out, bad.out[-3000:]
    assert {j["id"]: j["state"] for j in cluster.jobs()}[job] == "FAILED"
    assert "exceeds the model's 30 blocks" in bad.out + Path(subs[0]["log"]).read_text(errors="replace")
    assert not (slurm.work / target).exists()
    note(f"failing run: SLURM job {job} FAILED, snakemake rc {bad.rc}\n{_job_table(cluster, subs)}")
    (slurm.work.parent / "live-slurm.log").write_text("\n".join(_NOTES) + "\n")


# A solve long enough to outlive a 1-minute SLURM time limit (slurmctld enforces limits every ~30 s,
# so the kill comes 60-90 s after the start): GPTQ 3-bit over all 30 blocks with 128 x 256
# calibration tokens, about 6 s a block on one thread here (13 blocks were done at the kill).
LONG = {"calibration": {"n": 128, "seqlen": 256}, "driver": {"blocks": [0, 30]}}
TIMEOUT_RUN = ("gptq", "w3")
TIMEOUT_LIMIT, RESUME_LIMIT = 600, 900


def test_time_limit_kill_leaves_nothing_finished_and_the_rerun_resumes(cluster, slurm):
    """SLURM's own time limit (SIGTERM, then SIGKILL after KillWait) stops a solve mid-way: the job is
    TIMEOUT, the run leaves no solve log or provenance, the finished blocks stay in the resume state,
    and a rerun with the rules' own time request resumes exactly from them."""
    work = slurm.work
    (work / "long.yaml").write_text(yaml.safe_dump(LONG))
    method, setting = TIMEOUT_RUN
    run = work / run_dir(method, setting)
    state_file = work / "runs" / ".resume" / MODEL / method / setting / "s0" / "state.json"
    target = f"{run_dir(method, setting)}/eval/{METRIC}.json"
    killed = _snakemake(work, target, *SLURM_ARGS, "--retries", "0", "--set-resources", "compress:runtime=1",
                        "--configfile", "slice.yaml", "long.yaml", env=cluster.env, limit=TIMEOUT_LIMIT,
                        name="slurm-timeout")
    assert killed.rc != 0, killed.out[-3000:]
    subs = [s for s in _submissions(killed.out) if s["rule"] == "compress"]
    assert len(subs) == 1, subs
    job = subs[0]["id"]
    assert f"SLURM-job '{job}' failed, SLURM status is: 'TIMEOUT'" in killed.out, killed.out[-3000:]
    assert {j["id"]: j["state"] for j in cluster.jobs()}[job] == "TIMEOUT"
    assert not (run / "solve_log.csv").exists() and not (run / "provenance.json").exists()
    if run.exists():  # no temporary leftovers of interrupted writes either
        assert not list(run.glob("**/.*")), list(run.glob("**/.*"))
    finished = json.loads(state_file.read_text())["finished"]
    assert 1 <= len(finished) < LONG["driver"]["blocks"][1], finished
    log = (work / "logs" / "compress" / MODEL / method / setting / "s0.log").read_text()
    assert "received signal 15" in log, log[-2000:]  # the clean SIGTERM exit, before KillWait's SIGKILL
    note(f"time limit: SLURM job {job} TIMEOUT after blocks {finished}\n{_job_table(cluster, subs)}")

    again = _snakemake(work, target, *SLURM_ARGS, "--retries", "0", "--configfile", "slice.yaml", "long.yaml",
                       env=cluster.env, limit=RESUME_LIMIT, name="slurm-resume")
    assert again.rc == 0, again.out[-3000:]
    prov = json.loads((run / "provenance.json").read_text())
    assert prov["resumed_blocks"] == finished, (prov["resumed_blocks"], finished)
    assert prov["slurm"]["job_id"] != job and not state_file.parent.exists()
    note(f"rerun: resumed blocks {prov['resumed_blocks']} in SLURM job {prov['slurm']['job_id']}")
    (work.parent / "live-slurm.log").write_text("\n".join(_NOTES) + "\n")

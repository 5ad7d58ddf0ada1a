"""What a paper's jobs cost: wall time, peak host and GPU memory, device and SLURM job, per job and
grouped, from Snakemake's ``benchmark:`` files and the in-process figures in each job's provenance.

Snakemake measures a job from outside (wall seconds, RSS of its process tree, CPU time); the job
itself records what only it can see (peak GPU memory, the device it resolved, its SLURM job id).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from reprise.io import ReproError, atomic_path
from reprise.metrics import eval_stem
from reprise.papers.manifest import DENSE
from reprise.papers.plan import run_dir
from reprise.papers.results import solve_log_rows, total_seconds

RunMetrics = Mapping[tuple[str, str, str, int], Iterable[str]]

COMPRESS = "compress"
JOB_COLUMNS = ("stage", "job", "model", "method", "setting", "seed", "wall_s", "cpu_s", "max_rss_mb", "peak_rss_mb",
               "peak_gpu_mb", "solve_s", "device", "slurm_job_id")
GROUP_COLUMNS = ("stage", "model", "method", "jobs", "wall_s", "wall_s_max", "cpu_s", "peak_rss_mb", "peak_gpu_mb",
                 "device", "slurm_jobs")


def benchmark_file(run: Path, stem: str) -> Path:
    """``<run>/benchmark/<stem>.tsv``: where the rule's ``benchmark:`` directive writes."""
    return Path(run) / "benchmark" / f"{stem}.tsv"


def job_files(runs_dir: str | Path, needs: RunMetrics) -> list[tuple[str, str, Path, Path]]:
    """(stage, job, benchmark file, provenance source) of every job behind ``needs`` (each run with
    the metrics read from it, ``plan.run_metrics``): its solve, and one evaluation per metric's job."""
    out = []
    for run, metrics in needs.items():
        d = run_dir(runs_dir, *run)
        if run[1] != DENSE:
            out.append((COMPRESS, COMPRESS, benchmark_file(d, COMPRESS), d / "provenance.json"))
        for stem in dict.fromkeys(eval_stem(m) for m in metrics):
            stage = "zeroshot" if stem.startswith("zeroshot-") else "perplexity"
            out.append((stage, stem, benchmark_file(d, stem), d / "eval" / f"{stem}.json"))
    return out


def _read_benchmark(path: Path) -> dict[str, float]:
    if not path.is_file():
        raise ReproError(f"{path}: no benchmark file; rerun the job that writes it (snakemake {path})")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if not rows or "s" not in rows[0]:
        raise ReproError(f"{path}: not a Snakemake benchmark file (no 's' column); delete it and rerun its job")

    def num(key: str) -> float | None:
        v = rows[-1].get(key)
        try:
            return float(v)
        except (TypeError, ValueError):
            return None

    return {"wall_s": num("s"), "cpu_s": num("cpu_time"), "max_rss_mb": num("max_rss")}


def _provenance(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    return data.get("provenance", data)  # eval JSONs nest it; a run's provenance.json is it


def _device(prov: Mapping[str, Any]) -> str:
    dev = prov.get("device") or {}
    resolved = dev.get("resolved") or dev.get("device") or "?"
    return (dev.get("gpu") or "cuda") if str(resolved).startswith("cuda") else str(resolved)


def _solve_log(run: Path) -> tuple[float | None, float | None]:
    """(sum of per-layer seconds, max per-layer peak memory) of ``solve_log.csv``."""
    rows = solve_log_rows(run)
    if rows is None:
        return None, None
    return total_seconds(rows), _max(r.get("peak_mem_mb") or None for r in rows)


def job_costs(runs_dir: str | Path, needs: RunMetrics) -> list[dict[str, Any]]:
    """One row per job (JOB_COLUMNS)."""
    rows = []
    for stage, job, bench, source in job_files(runs_dir, needs):
        run = source.parent if stage == COMPRESS else source.parent.parent
        model, method, setting, seed = run.relative_to(runs_dir).parts
        prov = _provenance(source) if source.is_file() else {}
        usage = prov.get("usage") or {}
        row: dict[str, Any] = {"stage": stage, "job": job, "model": model, "method": method, "setting": setting,
                               "seed": int(seed.removeprefix("s")), **_read_benchmark(bench),
                               "peak_rss_mb": usage.get("peak_rss_mb"), "peak_gpu_mb": usage.get("peak_gpu_mb"),
                               "solve_s": None, "device": _device(prov),
                               "slurm_job_id": (prov.get("slurm") or {}).get("job_id")}
        if stage == COMPRESS:
            row["solve_s"], layer_peak = _solve_log(run)
            if row["device"] not in ("cpu", "?"):  # on a GPU the per-layer peaks are CUDA memory
                row["peak_gpu_mb"] = max(filter(None, (row["peak_gpu_mb"], layer_peak)), default=None)
        rows.append(row)
    return rows


EXPERIMENT = "experiment"


def experiment_job_files(runs_dir: str | Path, paper: str, jobs: Iterable) -> list[tuple[Any, Path, Path]]:
    """(job, benchmark file, provenance file) of a paper's experiment jobs
    (:class:`reprise.papers.experiment_study.ExperimentJob`)."""
    base = Path(runs_dir) / "experiments" / paper
    return [(j, base / "benchmark" / f"{j.stem}.tsv", base / f"{j.stem}.json") for j in jobs]


def experiment_job_costs(runs_dir: str | Path, paper: str, jobs: Iterable) -> list[dict[str, Any]]:
    """One row per experiment job (JOB_COLUMNS); a split experiment's part is its ``setting``."""
    rows = []
    for j, bench, source in experiment_job_files(runs_dir, paper, jobs):
        prov = _provenance(source) if source.is_file() else {}
        usage = prov.get("usage") or {}
        rows.append({"stage": EXPERIMENT, "job": j.experiment, "model": "-", "method": j.kind,
                     "setting": j.name,
                     "seed": j.seed, **_read_benchmark(bench), "peak_rss_mb": usage.get("peak_rss_mb"),
                     "peak_gpu_mb": usage.get("peak_gpu_mb"), "solve_s": None, "device": _device(prov),
                     "slurm_job_id": (prov.get("slurm") or {}).get("job_id")})
    return rows


def _max(values: Iterable[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return max(vals) if vals else None


def group_costs(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Jobs summed per (stage, model, method), then one ``all`` row per stage (GROUP_COLUMNS)."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for j in jobs:
        groups.setdefault((j["stage"], j["model"], j["method"]), []).append(j)
    for stage in dict.fromkeys(j["stage"] for j in jobs):
        groups[(stage, "all", "all")] = [j for j in jobs if j["stage"] == stage]
    stages = {COMPRESS: 0, "perplexity": 1, "zeroshot": 2, EXPERIMENT: 3}

    def order(key: tuple[str, str, str]) -> tuple:  # stage by stage, its `all` row last
        stage, model, method = key
        return (stages.get(stage, 9), stage, model == "all", model, method)

    out = []
    for (stage, model, method), js in sorted(groups.items(), key=lambda kv: order(kv[0])):
        out.append({
            "stage": stage, "model": model, "method": method, "jobs": len(js),
            "wall_s": round(sum(j["wall_s"] or 0 for j in js), 2), "wall_s_max": _max(j["wall_s"] for j in js),
            "cpu_s": round(sum(j["cpu_s"] or 0 for j in js), 2),
            "peak_rss_mb": _max(v for j in js for v in (j["max_rss_mb"], j["peak_rss_mb"])),
            "peak_gpu_mb": _max(j["peak_gpu_mb"] for j in js),
            "device": "+".join(sorted({j["device"] for j in js})),
            "slurm_jobs": sum(1 for j in js if j["slurm_job_id"]),
        })
    return out


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: tuple[str, ...], scale: str) -> None:
    with atomic_path(path, ".csv") as tmp, tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["scale", *columns], extrasaction="ignore")
        w.writeheader()
        w.writerows({"scale": scale, **r} for r in rows)


def plot_costs(groups: list[dict[str, Any]], out_png: Path, title: str) -> None:
    """Wall seconds per method, one bar segment per stage (the per-method rows summed over models)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [g for g in groups if g["model"] != "all"]
    methods = list(dict.fromkeys(g["method"] for g in rows))
    stages = list(dict.fromkeys(g["stage"] for g in rows))
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(methods) + 1.6))
    left = [0.0] * len(methods)
    for stage in stages:
        widths = [sum(g["wall_s"] for g in rows if g["method"] == m and g["stage"] == stage) / 60 for m in methods]
        ax.barh(methods, widths, left=left, label=stage)
        left = [a + b for a, b in zip(left, widths)]
    ax.set_xlabel("wall minutes (sum over jobs, Snakemake benchmark)")
    ax.set_title(title, fontsize=9)
    ax.invert_yaxis()
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out_png, ".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def write_costs(runs_dir: str | Path, needs: RunMetrics, out_dir: str | Path, scale: str,
                paper: str, experiments: Iterable = ()) -> list[dict[str, Any]]:
    """``cost.csv`` (grouped), ``cost_jobs.csv`` (per job) and ``cost.png`` in ``out_dir``;
    ``experiments`` lists the paper's experiment jobs (``experiment_study.experiment_jobs``)."""
    out_dir = Path(out_dir)
    jobs = job_costs(runs_dir, needs) + experiment_job_costs(runs_dir, paper, experiments)
    groups = group_costs(jobs)
    _write_csv(out_dir / "cost_jobs.csv", jobs, JOB_COLUMNS, scale)
    _write_csv(out_dir / "cost.csv", groups, GROUP_COLUMNS, scale)
    plot_costs(groups, out_dir / "cost.png", f"{paper}: compute per method ({scale} scale)")
    return groups


def read_cost_summary(path: str | Path) -> list[dict[str, str]]:
    """The per-stage ``all`` rows of a ``cost.csv`` (for the report's Cost section)."""
    with Path(path).open(newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["model"] == "all"]

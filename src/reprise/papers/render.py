"""One call per workflow target: load the manifest, read the runs, render the table/figure/report."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from reprise.papers.cost import read_cost_summary, write_costs
from reprise.papers.figures import render_figure
from reprise.papers.manifest import load_manifest
from reprise.papers.plan import plan, required_metrics, run_metrics, scale_name, targets
from reprise.papers.report import render_report
from reprise.papers.results import load_results
from reprise.papers.tables import render_table


def render_target(manifest_path: str | Path, target: str, scale_cfg: Mapping, runs_dir: str | Path,
                  out_prefix: str | Path) -> list[Path]:
    manifest = load_manifest(manifest_path)
    cells = plan(manifest, scale_cfg, target)
    results = load_results(runs_dir, cells, required_metrics(manifest, target, scale_cfg), runtime=True)
    if target in manifest.tables:
        return render_table(manifest, target, scale_cfg, results, out_prefix)
    return render_figure(manifest, target, scale_cfg, results, out_prefix, runs_dir)


def _paper_metrics(manifest, scale_cfg: Mapping) -> list[str]:
    return sorted({m for t in targets(manifest) for m in required_metrics(manifest, t, scale_cfg)})


def render_paper_report(manifest_path: str | Path, scale_cfg: Mapping, runs_dir: str | Path,
                        out_path: str | Path, cost_csv: str | Path | None = None) -> dict[str, int]:
    manifest = load_manifest(manifest_path)
    cells = plan(manifest, scale_cfg)
    results = load_results(runs_dir, cells, _paper_metrics(manifest, scale_cfg), runtime=True)
    from reprise.papers.experiment_study import experiment_section

    return render_report(manifest, scale_cfg, results, out_path, data_findings=overlap_findings(runs_dir, cells),
                         cost=read_cost_summary(cost_csv) if cost_csv else None,
                         extra_sections=experiment_section(manifest, scale_cfg, runs_dir))


def render_paper_cost(manifest_path: str | Path, scale_cfg: Mapping, runs_dir: str | Path,
                      out_dir: str | Path) -> list[dict]:
    """``cost.csv``, ``cost_jobs.csv`` and ``cost.png`` of every job the paper's targets need."""
    manifest = load_manifest(manifest_path)
    from reprise.papers.experiment_study import experiment_jobs

    return write_costs(runs_dir, run_metrics(manifest, scale_cfg), out_dir, scale_name(scale_cfg), manifest.paper,
                       experiments=experiment_jobs(manifest, scale_cfg))


def overlap_findings(runs_dir: str | Path, cells) -> list[str]:
    """Calibration/test overlap measured by the perplexity jobs (spec §1.5), one line per distinct finding."""
    found: dict[str, set[str]] = {}
    for cell in cells:
        for f in sorted((Path(cell.run_dir(runs_dir)) / "eval").glob("*_ppl@*.json")):
            overlap = json.loads(f.read_text()).get("details", {}).get("calibration_overlap")
            if overlap:
                found.setdefault(f"{f.stem}: {overlap['finding']}", set()).add(cell.model)
    return [f"{text} (models: {', '.join(sorted(models))})" for text, models in sorted(found.items())]

"""Render a single-layer study (``layer_studies`` of a manifest) from the rows that
``reprise.llm.experiments.run_layer_study`` computed: a table (CSV long form with the raw
objective, reference energy and seconds; Markdown and LaTeX wide) or, for ``admm_convergence``, a
figure. No solving here (DESIGN.md, dependency rules).
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Mapping

from reprise.io import atomic_path
from reprise.papers.manifest import LayerStudy, Manifest
from reprise.papers.plan import scale_name, study_model
from reprise.papers.tables import study_caption, write_md_tex


# --------------------------------------------------------------------------- output


def _fmt(column: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if column == "iterations":
        return f"{value:.0f}"
    if column.startswith("iter "):
        return f"{value:.3g}"
    return f"{value:.4g}"


def _write_table(manifest: Manifest, spec: LayerStudy, scale_cfg: Mapping, model: str, rows: list[dict],
                 out_prefix: Path) -> list[Path]:
    out_prefix = Path(out_prefix)
    paths = [out_prefix.with_name(out_prefix.name + ext) for ext in (".csv", ".md", ".tex")]
    scale = scale_name(scale_cfg)
    fields = ["scale", "model", "block", "layer", "row", "column", "value", "objective", "ref_energy", "seconds"]
    with atomic_path(paths[0], suffix=".csv") as tmp, tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({"scale": scale, "model": model, "block": spec.block, "layer": spec.layer, **r})
    columns = list(dict.fromkeys(r["column"] for r in rows))
    labels = list(dict.fromkeys(r["row"] for r in rows))
    value = {(r["row"], r["column"]): r["value"] for r in rows}
    secs = {(r["row"], r["column"]): r["seconds"] for r in rows}
    timed = spec.kind in ("refit_time", "method_error")
    cap = study_caption(manifest, spec.id, scale_cfg)
    head = ["row", *columns] + (["seconds (total)"] if timed else [])
    body = []
    for lab in labels:
        line = [lab] + [_fmt(c, value.get((lab, c))) for c in columns]
        if timed:
            line.append(f"{sum(secs.get((lab, c)) or 0.0 for c in columns):.3f}")
        body.append(line)
    notes = [n.text for n in spec.notes if n.applies(scale)]
    write_md_tex(paths[1], paths[2], manifest.paper, spec.id, cap, head, body, notes)
    return paths


def _convergence_figure(manifest: Manifest, spec: LayerStudy, scale_cfg: Mapping, model: str,
                        traces: list, out_prefix: Path) -> list[Path]:
    """Support change and objective per ADMM iteration, adaptive versus fixed ρ (two panels)."""
    from reprise.papers.figures import _canvas, _save

    fig, axes, frac = _canvas(manifest, spec.id, scale_cfg, 2, text=study_caption(manifest, spec.id, scale_cfg))
    for label, trace in traces:
        it = [r[0] for r in trace]
        axes[0].plot(it, [100 * r[2] for r in trace], lw=1, label=label)
        axes[1].plot(it, [r[3] for r in trace], lw=1, label=label)
    axes[0].set_yscale("symlog", linthresh=1e-2)
    axes[0].set_ylabel("support change since previous iteration (% of kept)")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("objective of the projected iterate (normalised)")
    for ax in axes[:2]:
        ax.set_xlabel("ADMM iteration")
        ax.set_title(f"{model} b{spec.block} {spec.layer}, sparsity {spec.sparsities[0]:g}", fontsize=8)
        ax.legend(fontsize=7)
    return _save(fig, out_prefix, frac)


def render_study(manifest: Manifest, study: str, scale_cfg: Mapping, result: Mapping[str, Any],
                 out_prefix: str | Path) -> list[Path]:
    """Write the study's table (or figure) under ``out_prefix`` from ``run_layer_study``'s result."""
    spec = manifest.layer_studies[study]
    model = study_model(manifest, study, scale_cfg)
    if spec.is_figure:
        return _convergence_figure(manifest, spec, scale_cfg, model, result["traces"], Path(out_prefix))
    return _write_table(manifest, spec, scale_cfg, model, result["rows"], Path(out_prefix))

"""Render a manifest figure (perplexity vs sparsity) as PNG and PDF with matplotlib (Agg)."""
from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Mapping

from reprise.io import ReproError, atomic_path
from reprise.papers.manifest import DENSE, Manifest, sparsity_setting
from reprise.papers.plan import figure_sparsities, is_smoke, required_metrics, scale_name, seeds, target_models
from reprise.papers.results import Results, summarise
from reprise.papers.tables import caption

WIDE_RANGE = 20.0  # use a log y-axis when max/min of the plotted values exceeds this


def figure_series(manifest: Manifest, figure_id: str, scale_cfg: Mapping, results: Results) -> dict:
    """{model: {"dense": (mean, std) | None, method: [(sparsity, mean, std), ...]}} for the plotted metric."""
    fig = manifest.figures[figure_id]
    metric = required_metrics(manifest, figure_id, scale_cfg)[0]
    s = seeds(scale_cfg)
    out: dict = {}
    for model in target_models(manifest, figure_id, scale_cfg):
        series: dict = {}
        if fig.dense_reference:
            mean, std, n = summarise(results, model, DENSE, DENSE, metric, s)
            series[DENSE] = None if n == 0 else (mean, std)
        for method in fig.methods:
            pts = []
            for sp in figure_sparsities(manifest, figure_id, scale_cfg):
                mean, std, n = summarise(results, model, method, sparsity_setting(sp), metric, s)
                if n:
                    pts.append((sp, mean, std))
            series[method] = pts
        out[model] = series
    return out


def render_figure(manifest: Manifest, figure_id: str, scale_cfg: Mapping, results: Results, out_prefix: str | Path) -> list[Path]:
    """Write ``<out_prefix>.png`` and ``.pdf``: one panel per model, one line per method, dense dashed."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig_spec = manifest.figures[figure_id]
    if fig_spec.kind != "ppl_vs_sparsity":
        raise ReproError(f"{manifest.path}: figures.{figure_id}.kind {fig_spec.kind!r} has no renderer; use ppl_vs_sparsity")
    metric = required_metrics(manifest, figure_id, scale_cfg)[0]
    data = figure_series(manifest, figure_id, scale_cfg, results)
    models = list(data)
    ncols = min(len(models), 4) or 1
    nrows = max(1, math.ceil(len(models) / ncols))
    width = max(6.4, 4.2 * ncols)
    text = textwrap.wrap(caption(manifest, figure_id, scale_cfg), int(width * 17))
    text_h = (len(text) * 7 * 1.35 + 10) / 72  # inches for the caption at 7 pt
    height = 3.4 * nrows + 0.7 + text_h
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False)
    for ax in axes.flat[len(models):]:
        ax.set_visible(False)
    for ax, model in zip(axes.flat, models):
        series = data[model]
        values = []
        for method in fig_spec.methods:
            pts = series[method]
            if pts:
                xs, ys, es = zip(*pts)
                err = [e or 0.0 for e in es] if any(e for e in es) else None
                ax.errorbar(xs, ys, yerr=err, marker="o", ms=4, capsize=3, label=method)
                values += list(ys)
        dense = series.get(DENSE)
        if dense is not None:
            ax.axhline(dense[0], color="black", ls="--", lw=1, label="dense")
            values.append(dense[0])
        pos = [v for v in values if v > 0]
        if pos and max(pos) / min(pos) > WIDE_RANGE:
            ax.set_yscale("log")
        if not values:
            ax.text(0.5, 0.5, "no results yet", ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.set_title(model)
        ax.set_xticks(figure_sparsities(manifest, figure_id, scale_cfg))
        ax.set_xlabel("sparsity")
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.3)
        if values:
            ax.legend(fontsize="small")
    title = f"{manifest.paper} / {figure_id} [{scale_name(scale_cfg)}]"
    if is_smoke(scale_cfg):
        title = f"SMOKE (not comparable with papers): {manifest.paper} / {figure_id}"
    fig.suptitle(title)
    fig.text(0.01, 0.01, "\n".join(text), fontsize=7, va="bottom")
    fig.tight_layout(rect=(0, text_h / height, 1, 1))
    out_prefix = Path(out_prefix)
    paths = []
    for ext in ("png", "pdf"):
        target = out_prefix.with_name(f"{out_prefix.name}.{ext}")
        with atomic_path(target, suffix=f".{ext}") as tmp:
            fig.savefig(tmp, format=ext, dpi=150, metadata={"CreationDate": None} if ext == "pdf" else {"Software": None})
        paths.append(target)
    plt.close(fig)
    return paths

"""Render a manifest figure (see RENDERERS: one function per kind) as PNG and PDF with matplotlib (Agg)."""
from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Mapping

from reprise.io import ReproError, atomic_path
from reprise.papers.manifest import DENSE, Manifest, sparsity_setting
from reprise.papers.plan import (figure_sparsities, is_smoke, required_metrics, row_skip, run_dir, scale_name,
                                 paper_seeds, target_models)
from reprise.papers.results import Results, solve_log_rows, summarise
from reprise.papers.tables import caption

WIDE_RANGE = 20.0  # use a log y-axis when max/min of the plotted values exceeds this


def figure_series(manifest: Manifest, figure_id: str, scale_cfg: Mapping, results: Results) -> dict:
    """{model: {"dense": (mean, std) | None, method: [(sparsity, mean, std), ...]}} for the plotted metric."""
    fig = manifest.figures[figure_id]
    metric = required_metrics(manifest, figure_id, scale_cfg)[0]
    s = paper_seeds(manifest, scale_cfg)
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


def _canvas(manifest: Manifest, figure_id: str, scale_cfg: Mapping, n_panels: int, text: str | None = None):
    """Figure with ``n_panels`` axes (up to 4 per row) and room for the caption (``text``, default the
    figure's caption) underneath."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    ncols = min(n_panels, 4) or 1
    nrows = max(1, math.ceil(n_panels / ncols))
    width = max(6.4, 4.2 * ncols)
    text = textwrap.wrap(text or caption(manifest, figure_id, scale_cfg), int(width * 17))
    text_h = (len(text) * 7 * 1.35 + 10) / 72  # inches for the caption at 7 pt
    height = 3.4 * nrows + 0.7 + text_h
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False)
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    title = f"{manifest.paper} / {figure_id} [{scale_name(scale_cfg)}]"
    if is_smoke(scale_cfg):
        title = f"SMOKE (not comparable with papers): {manifest.paper} / {figure_id}"
    fig.suptitle(title)
    fig.text(0.01, 0.01, "\n".join(text), fontsize=7, va="bottom")
    return fig, list(axes.flat[:n_panels]), text_h / height


def _save(fig, out_prefix: str | Path, caption_frac: float) -> list[Path]:
    import matplotlib.pyplot as plt

    fig.tight_layout(rect=(0, caption_frac, 1, 1))
    out_prefix = Path(out_prefix)
    paths = []
    for ext in ("png", "pdf"):
        target = out_prefix.with_name(f"{out_prefix.name}.{ext}")
        with atomic_path(target, suffix=f".{ext}") as tmp:
            fig.savefig(tmp, format=ext, dpi=150, metadata={"CreationDate": None} if ext == "pdf" else {"Software": None})
        paths.append(target)
    plt.close(fig)
    return paths


def _empty(ax, has_values: bool) -> None:
    if not has_values:
        ax.text(0.5, 0.5, "no results yet", ha="center", va="center", transform=ax.transAxes, color="grey")
    else:
        ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)


def _ppl_vs_sparsity(manifest, figure_id, scale_cfg, results, runs_dir, out_prefix) -> list[Path]:
    fig_spec = manifest.figures[figure_id]
    metric = required_metrics(manifest, figure_id, scale_cfg)[0]
    data = figure_series(manifest, figure_id, scale_cfg, results)
    fig, axes, frac = _canvas(manifest, figure_id, scale_cfg, len(data))
    for ax, (model, series) in zip(axes, data.items()):
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
        ax.set_title(model)
        ax.set_xticks(figure_sparsities(manifest, figure_id, scale_cfg))
        ax.set_xlabel("sparsity")
        ax.set_ylabel(metric)
        _empty(ax, bool(values))
    return _save(fig, out_prefix, frac)


def layer_errors(runs_dir: str | Path, model: str, method: str, setting: str, seed: int) -> list[tuple[str, float]]:
    """(block.layer, squared relative error) of every compressed linear of a run, in solve order.

    Squared, as QuantEase reports it: tr(ΔW Σ ΔWᵀ) / tr(W Σ Wᵀ) = objective / ref_energy."""
    rows = solve_log_rows(run_dir(runs_dir, model, method, setting, seed), ("block", "layer", "objective", "ref_energy"))
    out = []
    for r in rows or ():
        ref = float(r["ref_energy"])
        out.append((f"{r['block']}.{r['layer']}", float(r["objective"]) / ref if ref > 0 else 0.0))
    return out


def _layer_error(manifest, figure_id, scale_cfg, results, runs_dir, out_prefix) -> list[Path]:
    fig_spec = manifest.figures[figure_id]
    models = target_models(manifest, figure_id, scale_cfg)
    seed = paper_seeds(manifest, scale_cfg)[0]
    fig, axes, frac = _canvas(manifest, figure_id, scale_cfg, len(models))
    for ax, model in zip(axes, models):
        plotted = False
        for row in fig_spec.series:
            errs = layer_errors(runs_dir, model, row.method, row.setting, seed)
            if errs:
                ax.plot(range(len(errs)), [e for _, e in errs], marker=".", ms=3, lw=1, label=row.label)
                plotted = True
        if plotted:
            ax.set_yscale("log")
        ax.set_title(f"{model} (seed {seed})")
        ax.set_xlabel("compressed linear (block order)")
        ax.set_ylabel("squared relative error")
        _empty(ax, plotted)
    return _save(fig, out_prefix, frac)


def _zeroshot_vs_size(manifest, figure_id, scale_cfg, results, runs_dir, out_prefix) -> list[Path]:
    fig_spec = manifest.figures[figure_id]
    metric = required_metrics(manifest, figure_id, scale_cfg)[0]
    published_metric = f"{fig_spec.task}/{fig_spec.zeroshot_metric}"
    models = target_models(manifest, figure_id, scale_cfg)
    s = paper_seeds(manifest, scale_cfg)
    fig, axes, frac = _canvas(manifest, figure_id, scale_cfg, 1)
    ax = axes[0]
    plotted = False
    n = len(fig_spec.series)
    for i, row in enumerate(fig_spec.series):
        dodge = (i - (n - 1) / 2) * min(0.08, 0.6 / n)  # side by side, so equal values stay visible
        xs = [x + dodge for x in range(len(models))]
        pts = [(x, *summarise(results, m, row.method, row.setting, metric, s)[:2]) for x, m in zip(xs, models)]
        pts = [p for p in pts if p[1] is not None]
        if pts:
            px, py, pe = zip(*pts)
            line = ax.errorbar(px, py, yerr=[e or 0.0 for e in pe] if any(pe) else None, marker="o", ms=4,
                               capsize=3, label=row.label)
            plotted = True
        else:
            line = None
        pub = [(x, p.value) for x, m in zip(xs, models)
               if (p := manifest.published_for(figure_id, m, row.method, row.setting, published_metric))
               and p.value is not None]
        if pub and metric == published_metric:  # published points only beside the same task
            color = line[0].get_color() if line else None
            ax.scatter(*zip(*pub), marker="s", facecolors="none", edgecolors=color, s=30,
                       label=f"{row.label} (published)")
            plotted = True
    ax.set_xticks(range(len(models)), models, rotation=30, ha="right", fontsize=8)
    ax.set_xlabel("model (increasing size)")
    ax.set_ylabel(metric)
    _empty(ax, plotted)
    return _save(fig, out_prefix, frac)


def speedup_series(manifest: Manifest, figure_id: str, scale_cfg: Mapping, results: Results) -> dict:
    """{model: {method: [(speed-up, perplexity, label), ...] sorted by speed-up}}; a ``dense`` series
    row is the dense model at its measured speed-up (about 1: it is timed against itself)."""
    fig = manifest.figures[figure_id]
    ppl, speed = required_metrics(manifest, figure_id, scale_cfg)[:2]
    s = paper_seeds(manifest, scale_cfg)
    out: dict = {}
    for model in target_models(manifest, figure_id, scale_cfg):
        series: dict = {}
        for r in (r for r in fig.series if row_skip(manifest, r, scale_cfg) is None):
            x = summarise(results, model, r.method, r.setting, speed, s)[0]
            y = summarise(results, model, r.method, r.setting, ppl, s)[0]
            if x is not None and y is not None:
                series.setdefault(r.method, []).append((x, y, r.label))
        out[model] = {m: sorted(pts) for m, pts in series.items()}
    return out


def _ppl_vs_speedup(manifest, figure_id, scale_cfg, results, runs_dir, out_prefix) -> list[Path]:
    ppl, speed = required_metrics(manifest, figure_id, scale_cfg)[:2]
    data = speedup_series(manifest, figure_id, scale_cfg, results)
    fig, axes, frac = _canvas(manifest, figure_id, scale_cfg, len(data))
    for ax, (model, series) in zip(axes, data.items()):
        values = []
        dense = series.pop(DENSE, None)
        for method, pts in series.items():
            xs, ys, _ = zip(*pts)
            ax.plot(xs, ys, marker="o", ms=4, label=method)
            values += list(ys)
        if dense:
            ax.scatter([dense[0][0]], [dense[0][1]], marker="*", s=80, color="black", label="dense", zorder=3)
            values.append(dense[0][1])
        pos = [v for v in values if v > 0]
        if pos and max(pos) / min(pos) > WIDE_RANGE:
            ax.set_yscale("log")
        ax.set_title(model)
        ax.set_xlabel(f"measured speed-up over dense ({speed.split('/')[0]})")
        ax.set_ylabel(ppl)
        _empty(ax, bool(values))
    return _save(fig, out_prefix, frac)


RENDERERS = {"ppl_vs_sparsity": _ppl_vs_sparsity, "layer_error": _layer_error, "zeroshot_vs_size": _zeroshot_vs_size,
             "ppl_vs_speedup": _ppl_vs_speedup}


def render_figure(manifest: Manifest, figure_id: str, scale_cfg: Mapping, results: Results, out_prefix: str | Path,
                  runs_dir: str | Path = "runs") -> list[Path]:
    """Write ``<out_prefix>.png`` and ``.pdf`` for the figure's kind (see RENDERERS)."""
    kind = manifest.figures[figure_id].kind
    if kind not in RENDERERS:
        raise ReproError(f"{manifest.path}: figures.{figure_id}.kind {kind!r} has no renderer; use one of "
                         f"{', '.join(RENDERERS)}")
    return RENDERERS[kind](manifest, figure_id, scale_cfg, results, runs_dir, out_prefix)

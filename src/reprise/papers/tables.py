"""Render a manifest table as CSV, Markdown and LaTeX from regenerated results."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Mapping

from reprise.io import atomic_path
from reprise.metrics import is_speed_metric
from reprise.papers.manifest import Manifest
from reprise.papers.plan import (blocks, figure_task, paper_testsets, is_smoke, perplexity_metrics, required_metrics, row_skip, scale_name,
                                 scale_models, paper_seeds, stand_in_models, study_model, table_tasks, target_models)
from reprise.papers.results import RUNTIME, WALL, Results, summarise

SMOKE_LABEL = "SMOKE: substitute model and corpora; not comparable with published values"


def fmt(metric: str, value: float | None, std: float | None = None) -> str:
    """Human form of a number: perplexity 2 decimals (3 significant digits from 10^4), accuracy 4, seconds 1."""
    if value is None:
        return "—"

    def one(v: float) -> str:
        if metric in (RUNTIME, WALL):
            return f"{v:.1f}"
        if is_speed_metric(metric):  # speed-up and FLOP ratio to 2 decimals, parameters in millions
            return f"{v / 1e6:.1f}M" if metric.endswith("/params") else f"{v:.2f}"
        if "/" in metric:
            return f"{v:.4f}"
        return f"{v:.3g}" if abs(v) >= 1e4 else f"{v:.2f}"

    return one(value) if std is None else f"{one(value)} ± {one(std)}"


def caption(manifest: Manifest, target: str, scale_cfg: Mapping) -> str:
    """The target's caption plus what was run: scale, seeds, protocol, block slice, smoke label."""
    spec = manifest.tables.get(target) or manifest.figures[target]
    scale = scale_name(scale_cfg)
    s = paper_seeds(manifest, scale_cfg)
    seqlen = scale_cfg.get("eval", {}).get("seqlen")
    sets = ", ".join(paper_testsets(scale_cfg, manifest))
    parts = [spec.caption.rstrip(". ") + "."]
    parts.append(f"Regenerated at scale '{scale}' with seed{'s' if len(s) > 1 else ''} {', '.join(map(str, s))}"
                 + (" (mean ± std over seeds)." if len(s) > 1 else "."))
    protocol = manifest.protocol.get(scale)
    parts.append(f"Protocol: {protocol.rstrip('. ')}." if protocol else
                 f"Perplexity on {sets}, non-overlapping windows of {seqlen} tokens.")
    if stand_in_models(manifest, target, scale_cfg):
        parts.append(f"This target's models ({', '.join(spec.models)}) do not run at this scale; "
                     f"{', '.join(scale_models(manifest, scale_cfg))} stands in.")
    if target in manifest.tables and manifest.tables[target].tasks is not None:
        pairs = table_tasks(manifest, target, scale_cfg)
        subs = [f"{used} stands in for {t}" for t, used in pairs if used and used != t]
        left = [t for t, used in pairs if used is None]
        if subs:
            parts.append(f"Zero-shot: {'; '.join(subs)}.")
        if left:
            parts.append(f"Not evaluated at this scale (their datasets come from the Hugging Face hub): {', '.join(left)}.")
    task = getattr(spec, "task", None)
    if task:
        used = figure_task(manifest, target, scale_cfg)
        parts.append(f"Zero-shot task: {used}" + (f", standing in for {task}." if used != task else "."))
    b = blocks(manifest, scale_cfg, target)
    if b is not None:
        start, stop = (list(b) + [None, None])[:2] if isinstance(b, (list, tuple)) else (None, None)
        where = f"blocks {start}-{stop - 1}" if isinstance(start, int) and isinstance(stop, int) else f"blocks {b}"
        parts.append(f"Only {where} are compressed (the same slice for every method; the rest stay dense).")
    if is_smoke(scale_cfg):
        parts.append(SMOKE_LABEL + ".")
    return " ".join(parts)


def study_caption(manifest: Manifest, study: str, scale_cfg: Mapping) -> str:
    """A layer study's caption plus the layer, the model (or its stand-in), the seed and the smoke label."""
    spec = manifest.layer_studies[study]
    model = study_model(manifest, study, scale_cfg)
    seed = paper_seeds(manifest, scale_cfg)[0]
    parts = [spec.caption.rstrip(". ") + "."]
    parts.append(f"Layer: block {spec.block} {spec.layer} of {model}, calibration seed {seed}, scale "
                 f"'{scale_name(scale_cfg)}'.")
    if model not in spec.models:
        parts.append(f"The paper's model ({', '.join(spec.models)}) does not run at this scale; {model} stands in.")
    form = {"rel_err": "‖XΔWᵀ‖/‖XWᵀ‖", "rel_err_sq": "‖XΔWᵀ‖²/‖XWᵀ‖²"}[spec.error]
    parts.append(f"Error: {form} on the calibration inputs ({spec.error}, from the objective tr(ΔW G ΔWᵀ) "
                 "and reference energy tr(W G Wᵀ)).")
    return " ".join(parts + caption_tail(manifest, scale_cfg))


def caption_tail(manifest: Manifest, scale_cfg: Mapping) -> list[str]:
    """The last sentences of a study's or experiment's caption: the scale's protocol, the smoke label."""
    parts = []
    protocol = manifest.protocol.get(scale_name(scale_cfg))
    if protocol:
        parts.append(f"Protocol: {protocol.rstrip('. ')}.")
    if is_smoke(scale_cfg):
        parts.append(SMOKE_LABEL + ".")
    return parts


def table_frame(manifest: Manifest, table_id: str, scale_cfg: Mapping, results: Results) -> tuple[list[str], list[dict]]:
    """(metric columns, rows): one row per model × table row, each metric as (mean, std, n)."""
    table = manifest.tables[table_id]
    metrics = (required_metrics(manifest, table_id, scale_cfg) + ([RUNTIME] if table.runtime else [])
               + ([WALL] if table.wall_time else []))
    s = paper_seeds(manifest, scale_cfg)
    rows = []
    for model in target_models(manifest, table_id, scale_cfg):
        for r in table.rows:
            if r.skip is None and row_skip(manifest, r, scale_cfg) is not None:
                continue  # thinned at this scale: listed once in the notes
            cells = {m: summarise(results, model, r.method, r.setting, m, s) for m in metrics}
            if table.zeroshot_average:
                cells[ZEROSHOT_AVERAGE] = zeroshot_mean(cells)
            rows.append({"model": model, "method": r.method, "setting": r.setting, "label": r.label, "skip": r.skip, "cells": cells})
    return metrics + ([ZEROSHOT_AVERAGE] if table.zeroshot_average else []), rows


ZEROSHOT_AVERAGE = "zeroshot/avg"  # the plain mean of a table's zero-shot columns (HASSLE-free's "Avg")


def zeroshot_mean(cells: Mapping[str, tuple]) -> tuple[float | None, None, int]:
    """(plain mean of the zero-shot columns' means, no std, fewest seeds); None when one is missing."""
    zs = [c for m, c in cells.items() if "/" in m and not is_speed_metric(m) and m != ZEROSHOT_AVERAGE]
    if not zs or any(c[0] is None for c in zs):
        return None, None, 0
    return sum(c[0] for c in zs) / len(zs), None, min(c[2] for c in zs)


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}", "±": r"$\pm$", "—": "--"}


def _tex_escape(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)


def render_table(manifest: Manifest, table_id: str, scale_cfg: Mapping, results: Results, out_prefix: str | Path) -> list[Path]:
    """Write ``<out_prefix>.csv``, ``.md`` and ``.tex``; return their paths."""
    out_prefix = Path(out_prefix)
    metrics, rows = table_frame(manifest, table_id, scale_cfg, results)
    with_std = any(c[2] > 1 for r in rows for c in r["cells"].values())
    cap = caption(manifest, table_id, scale_cfg)
    paths = [out_prefix.with_name(out_prefix.name + ext) for ext in (".csv", ".md", ".tex")]

    scale = scale_name(scale_cfg)  # every row carries it: a smoke number read from the CSV alone stays labelled
    header = ["scale", "model", "method", "setting", "label"]
    for m in metrics:
        header += [m, f"{m}_std", f"{m}_n"] if with_std else [m]
    with atomic_path(paths[0], suffix=".csv") as tmp, tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in rows:
            line = [scale, r["model"], r["method"], r["setting"], r["label"]]
            for m in metrics:
                mean, std, n = r["cells"][m]
                line += [_num(mean), _num(std), n] if with_std else [_num(mean)]
            w.writerow(line)

    shown = [[r["model"], r["label"]] + [fmt(m, *r["cells"][m][:2]) for m in metrics] for r in rows]
    md = [f"**{manifest.paper} / {table_id}.** {cap}", "", "| model | method | " + " | ".join(metrics) + " |",
          "|" + "---|" * 2 + "---:|" * len(metrics)]
    md += ["| " + " | ".join(line) + " |" for line in shown]
    notes = [n.text for n in manifest.tables[table_id].notes if n.applies(scale_name(scale_cfg))]
    notes += [f"{r.label}: not regenerated ({r.skip})." for r in manifest.tables[table_id].rows if r.skip]
    rows_here = manifest.tables[table_id].rows
    thinned = [r.label for r in rows_here if r.skip is None and row_skip(manifest, r, scale_cfg) is not None
               and (r.scales is None or scale in r.scales)]  # another scale's own configurations: not listed
    labels = {(r.method, r.setting): r.label for r in rows_here}
    notes += [f"{r.label} stands in for {labels.get((r.method, r.stands_in_for), r.stands_in_for)} at this scale."
              for r in rows_here if r.stands_in_for and row_skip(manifest, r, scale_cfg) is None]
    if thinned:
        notes.append(f"Not run at scale '{scale}' (papers.{manifest.paper}.settings thins the grid): "
                     + ", ".join(thinned) + ".")
    md += [""] + [f"- {t}" for t in notes] if notes else []
    with atomic_path(paths[1], suffix=".md") as tmp:
        tmp.write_text("\n".join(md) + "\n")

    tex = [r"\begin{table}[t]", r"\centering", r"\caption{" + _tex_escape(cap) + "}",
           r"\label{tab:" + f"{manifest.paper}-{table_id}" + "}", r"\begin{tabular}{ll" + "r" * len(metrics) + "}",
           r"\toprule", " & ".join(["Model", "Method"] + [_tex_escape(m) for m in metrics]) + r" \\", r"\midrule"]
    prev = None
    for line in shown:
        model = line[0] if line[0] != prev else ""
        if prev is not None and line[0] != prev:
            tex.append(r"\midrule")
        prev = line[0]
        tex.append(" & ".join([_tex_escape(model)] + [_tex_escape(x) for x in line[1:]]) + r" \\")
    tex += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    with atomic_path(paths[2], suffix=".tex") as tmp:
        tmp.write_text("\n".join(tex) + "\n")
    return paths


def write_md_tex(md_path: Path, tex_path: Path, paper: str, target: str, cap: str, head: list[str],
                 body: list[list[str]], notes: list[str], text_columns: int = 1) -> None:
    """The Markdown and LaTeX forms of a plain table (``head``, ``body`` already formatted): the
    first ``text_columns`` columns left-aligned, the rest right-aligned; ``notes`` as a list."""
    right = len(head) - text_columns
    md = [f"**{paper} / {target}.** {cap}", "", "| " + " | ".join(head) + " |",
          "|" + "---|" * text_columns + "---:|" * right] + ["| " + " | ".join(line) + " |" for line in body]
    md += [""] + [f"- {t}" for t in notes] if notes else []
    with atomic_path(md_path, suffix=".md") as tmp:
        tmp.write_text("\n".join(md) + "\n")
    tex = [r"\begin{table}[t]", r"\centering", r"\caption{" + _tex_escape(cap) + "}",
           r"\label{tab:" + f"{paper}-{target}" + "}", r"\begin{tabular}{" + "l" * text_columns + "r" * right + "}",
           r"\toprule", " & ".join(_tex_escape(h) for h in head) + r" \\", r"\midrule"]
    tex += [" & ".join(_tex_escape(x) for x in line) + r" \\" for line in body]
    tex += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    with atomic_path(tex_path, suffix=".tex") as tmp:
        tmp.write_text("\n".join(tex) + "\n")


def _num(v: float | None) -> str:
    return "" if v is None else repr(float(v))

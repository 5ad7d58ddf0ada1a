"""Published vs regenerated: a verdict for every (table, model, row, metric) cell, as report.md."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from reprise.io import atomic_path
from reprise.papers.manifest import DENSE, Manifest, Published, Tolerance
from reprise.metrics import is_speed_metric
from reprise.papers.plan import (is_smoke, perplexity_metrics, required_metrics, row_skip, scale_models, scale_name, paper_seeds,
                                 target_models)
from reprise.papers.results import Results, summarise
from reprise.papers.tables import SMOKE_LABEL, caption, fmt, study_caption

PASS, FAIL, MISSING, NOT_REGENERATED, SMOKE = "pass", "fail", "missing", "not regenerated", "smoke"
VERDICTS = (PASS, FAIL, MISSING, NOT_REGENERATED, SMOKE)
_EDGE = 1e-9  # relative slack so a value exactly on the tolerance edge passes despite float rounding

LEGEND = {
    PASS: "within the published value's tolerance",
    FAIL: "outside the tolerance",
    MISSING: "no regenerated value yet (run the target's jobs)",
    NOT_REGENERATED: "the manifest or this scale does not regenerate this cell (reason given)",
    SMOKE: "regenerated, but with no published counterpart (smoke scale, or the paper has no such number)",
}


@dataclass(frozen=True)
class ReportCell:
    table: str
    model: str
    method: str
    setting: str
    label: str
    metric: str
    verdict: str
    ours: float | None = None
    std: float | None = None
    n_seeds: int = 0
    published: Published | None = None
    reason: str | None = None

    @property
    def rel_diff(self) -> float | None:
        p = self.published.value if self.published else None
        if self.ours is None or p is None or p == 0:
            return None
        return (self.ours - p) / abs(p)


def verdict(ours: float | None, published: float | None, tolerance: Tolerance | None, smoke: bool = False) -> str:
    """pass / fail / missing / smoke for a regenerated value against a published one."""
    if ours is None:
        return MISSING
    if smoke or published is None or tolerance is None:
        return SMOKE
    bound = tolerance.bound(published)
    return PASS if abs(ours - published) <= bound * (1 + _EDGE) + 1e-12 else FAIL


def _not_evaluated_reason(manifest: Manifest, scale_cfg: Mapping) -> str:
    return (f"not evaluated at scale '{scale_name(scale_cfg)}', which measures "
            f"{', '.join(perplexity_metrics(scale_cfg, manifest)) or 'no perplexity'}")


def report_cells(manifest: Manifest, scale_cfg: Mapping, results: Results) -> list[ReportCell]:
    smoke = is_smoke(scale_cfg)
    s = paper_seeds(manifest, scale_cfg)
    cells = []
    for tid, table in manifest.scored().items():
        required = required_metrics(manifest, tid, scale_cfg)
        for model in target_models(manifest, tid, scale_cfg):
            for row in table.rows:
                # published numbers this scale does not measure (unknown ones are left out)
                extra = sorted({p.metric for p in manifest.published if p.value is not None
                                and (p.table, p.model, p.method, p.setting) == (tid, model, row.method, row.setting)} - set(required))
                for metric in required + extra:
                    pub = manifest.published_for(tid, model, row.method, row.setting, metric)
                    base = dict(table=tid, model=model, method=row.method, setting=row.setting, label=row.label,
                                metric=metric, published=pub)
                    if row.skip:
                        cells.append(ReportCell(**base, verdict=NOT_REGENERATED, reason=row.skip))
                    elif metric not in required:
                        why = _not_evaluated_reason(manifest, scale_cfg) + (f"; {pub.note}" if pub and pub.note else "")
                        cells.append(ReportCell(**base, verdict=NOT_REGENERATED, reason=why))
                    else:
                        mean, std, n = summarise(results, model, row.method, row.setting, metric, s)
                        v = verdict(mean, pub.value if pub else None, pub.tolerance if pub else None, smoke)
                        cells.append(ReportCell(**base, verdict=v, ours=mean, std=std, n_seeds=n, reason=pub.note if pub else None))
    return cells


def claim_rows(manifest: Manifest, scale_cfg: Mapping, results: Results) -> list[dict]:
    """Each relative claim recomputed from the regenerated rows: ``(method − best baseline) / best``
    (with ``gap``: of the gaps ``|dense − x|``, so −0.15 is 15% of the best baseline's gap closed).

    ``perplexity`` stands for the table's first perplexity column, ``zeroshot`` for the mean of its
    zero-shot columns at this scale; the baseline is the best regenerated one, never a published number."""
    out = []
    s = paper_seeds(manifest, scale_cfg)
    for c in manifest.claims:
        models = target_models(manifest, c.table, scale_cfg)
        model = c.model if c.model in models else models[0]
        required = required_metrics(manifest, c.table, scale_cfg)
        metrics: list[str] = []
        for m in c.metrics:
            if m == "perplexity":
                metrics += [x for x in required if "_ppl@" in x][:1]
            elif m == "zeroshot":
                metrics += [x for x in required if "/" in x and not is_speed_metric(x)]
            else:
                metrics.append(m)

        def raw(key: str) -> float | None:
            method, setting = key.split("/", 1)
            vals = [summarise(results, model, method, setting, m, s)[0] for m in metrics]
            return None if not vals or any(v is None for v in vals) else sum(vals) / len(vals)

        dense = raw(f"{DENSE}/{DENSE}") if c.gap else None

        def value(key: str) -> float | None:
            v = raw(key)
            if not c.gap:
                return v
            return None if v is None or dense is None else abs(dense - v)  # the gap to dense

        table = manifest.tables[c.table]

        def at_scale(key: str) -> str:
            """The row read for ``key`` here: itself, or the scale-limited row standing in for it."""
            method, setting = key.split("/", 1)
            for r in table.rows:
                if (r.method, r.stands_in_for) == (method, setting) and row_skip(manifest, r, scale_cfg) is None:
                    return r.key
            return key

        method_key = at_scale(c.method)
        ours_v = value(method_key)
        base = {at_scale(b): value(at_scale(b)) for b in c.baselines}
        known = {b: v for b, v in base.items() if v is not None}
        best_key = (min if c.better == "lower" else max)(known, key=known.get) if known else None
        rel = None
        if ours_v is not None and best_key is not None and known[best_key] != 0:
            rel = (ours_v - known[best_key]) / abs(known[best_key])
        holds = None if rel is None else (rel < 0 if c.better == "lower" else rel > 0)
        out.append({"claim": c, "model": model, "metrics": metrics, "ours": ours_v, "best": best_key,
                    "best_value": known.get(best_key) if best_key else None, "rel": rel, "holds": holds,
                    "stand_in": model != c.model, "method_key": method_key})
    return out


def _claim_lines(rows: list[dict], smoke: bool) -> list[str]:
    lines = ["", "## Relative claims, recomputed", "",
             "Each claim is recomputed from this run's regenerated rows (the best regenerated baseline, not a "
             "published one)." + (" Smoke numbers: a stand-in model and corpus, so a claim's direction is "
                                   "plumbing, not evidence." if smoke else ""), "",
             "| claim | model | metrics | published | ours | best baseline | holds here |", "|---|---|---|---:|---:|---|---|"]
    for r in rows:
        c = r["claim"]
        ours = f"{r['rel'] * 100:+.1f}%" if r["rel"] is not None else "—"
        best = f"{r['best']} ({r['best_value']:.4g})" if r["best"] else "—"
        holds = "—" if r["holds"] is None else ("yes" if r["holds"] else "no")
        model = r["model"] + (f" (stands in for {c.model})" if r["stand_in"] and c.model else "")
        what = ", ".join(r["metrics"]) or "—"
        what += f" (row {r['method_key']} stands in for {c.method})" if r["method_key"] != c.method else ""
        what = f"gap to dense of {what}" if c.gap else what
        lines.append(f"| {c.text} [`{c.source}`] | {model} | {what} | "
                     f"{c.published * 100:+.1f}% | {ours} | {best} | {holds} |")
    return lines


def count_verdicts(cells: list[ReportCell]) -> dict[str, int]:
    c = Counter(cell.verdict for cell in cells)
    return {v: c.get(v, 0) for v in VERDICTS}


def _cell_line(c: ReportCell) -> str:
    pub = c.published
    pv = fmt(c.metric, pub.value) if pub and pub.value is not None else "—"
    src = pub.source if pub else "—"
    tol = pub.tolerance.describe() if pub and pub.tolerance else "—"
    ours = fmt(c.metric, c.ours, c.std) + (f" (n={c.n_seeds})" if c.n_seeds > 1 else "")
    rd = f"{c.rel_diff * 100:+.2f}%" if c.rel_diff is not None else "—"
    note = (c.reason or "").replace("|", "/")
    return f"| {c.model} | {c.label} | {c.metric} | {pv} | {src} | {tol} | {ours} | {rd} | **{c.verdict}** | {note} |"


def _cost_lines(cost: list[Mapping[str, str]]) -> list[str]:
    lines = ["", "## Cost", "", "Per stage, summed over jobs (`cost.csv` has each model and method, `cost_jobs.csv` "
             "each job, `cost.png` the plot).", "",
             "| stage | jobs | wall s | CPU s | peak RSS MB | peak GPU MB | device | SLURM jobs |",
             "|---|---:|---:|---:|---:|---:|---|---:|"]
    lines += [f"| {r['stage']} | {r['jobs']} | {r['wall_s']} | {r['cpu_s']} | {r['peak_rss_mb'] or '—'} | "
              f"{r['peak_gpu_mb'] or '—'} | {r['device']} | {r['slurm_jobs']} |" for r in cost]
    return lines


def render_report(manifest: Manifest, scale_cfg: Mapping, results: Results, out_path: str | Path,
                  data_findings: list[str] | None = None, cost: list[Mapping[str, str]] | None = None,
                  extra_sections: list[str] = ()) -> dict[str, int]:
    """Write the report (Markdown) and return the verdict counts.

    ``data_findings`` are measured facts about the data (such as calibration/test overlap) that a
    reader must see beside the numbers; ``cost`` the per-stage rows of ``cost.csv``."""
    scale = scale_name(scale_cfg)
    cells = report_cells(manifest, scale_cfg, results)
    counts = count_verdicts(cells)
    lines = [f"# Reproduction report: {manifest.title}", "",
             f"Paper `{manifest.paper}`; published numbers pinned to: {manifest.version.rstrip('. ')}.  ",
             f"Scale: **{scale}**; seeds {', '.join(map(str, paper_seeds(manifest, scale_cfg)))}; manifest `{manifest.path}`.", ""]
    if is_smoke(scale_cfg):
        lines += [f"> {SMOKE_LABEL}.", ""]
    lines += ["## Summary", "", "| verdict | cells | meaning |", "|---|---:|---|"]
    lines += [f"| {v} | {counts[v]} | {LEGEND[v]} |" for v in VERDICTS]
    lines += ["", f"Total: {len(cells)} cells."]
    models = set(scale_models(manifest, scale_cfg)) if manifest.tables or manifest.figures else set()
    outside = sorted({p.model for p in manifest.published if p.model not in models})
    if outside:
        n = sum(1 for p in manifest.published if p.model not in models)
        lines.append(f"{n} published values refer to models outside this scale's grid ({', '.join(outside)}); they are not listed.")
    notes = [n.text for n in manifest.notes if n.applies(scale)]
    if manifest.protocol.get(scale):
        notes.insert(0, f"Protocol at this scale: {manifest.protocol[scale]}")
    if notes:
        lines += ["", "## Notes and caveats", ""] + [f"- {t}" for t in notes]
    if data_findings:
        lines += ["", "## Measured data findings", ""] + [f"- {t}" for t in data_findings]
    scored = manifest.scored()
    for tid, table in scored.items():
        kind = "Table" if tid in manifest.tables else "Figure"
        lines += ["", f"## {kind} `{tid}`", "", caption(manifest, tid, scale_cfg), ""]
        lines += [f"- {n.text}" for n in table.notes if n.applies(scale)]
        lines += ["", "| model | row | metric | published | source | tolerance | ours | rel. diff | verdict | note |",
                  "|---|---|---|---:|---|---|---:|---:|---|---|"]
        lines += [_cell_line(c) for c in cells if c.table == tid]
    if manifest.claims:
        lines += _claim_lines(claim_rows(manifest, scale_cfg, results), is_smoke(scale_cfg))
    lines += list(extra_sections)
    if cost:
        lines += _cost_lines(cost)
    if set(manifest.figures) - set(scored):
        lines += ["", "## Figures (regenerated, not compared)", ""]
        lines += [f"- `{fid}`: {caption(manifest, fid, scale_cfg)}" for fid in manifest.figures if fid not in scored]
    if manifest.layer_studies:
        lines += ["", "## Layer studies (regenerated, not compared)", "",
                  "Single-layer experiments; the papers' numbers for them are not transcribed here.", ""]
        lines += [f"- `{sid}`: {study_caption(manifest, sid, scale_cfg)}" for sid in manifest.layer_studies]
    if manifest.vision_studies:
        from reprise.papers.vision_study import vision_caption

        lines += ["", "## Vision studies (regenerated, not compared)", ""]
        lines += [f"- `{sid}`: {vision_caption(manifest, sid, scale_cfg)}" for sid in manifest.vision_studies]
    lines += ["", "## Sources", ""]
    for src in manifest.sources.values():
        extra = "".join(f" {x}." for x in (src.version and f"Version: {src.version}", src.url and f"<{src.url}>") if x)
        lines.append(f"- `{src.id}`: {src.citation.rstrip('. ')}.{extra} Transcribed: {src.transcribed.rstrip('. ')}. "
                     f"Reliability: {src.reliability.rstrip('. ')}.")
    tols = sorted({p.tolerance.note for p in manifest.published if p.tolerance and p.tolerance.note})
    if tols:
        lines += ["", "Tolerance notes:", ""] + [f"- {t}" for t in tols]
    with atomic_path(out_path, suffix=".md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return counts

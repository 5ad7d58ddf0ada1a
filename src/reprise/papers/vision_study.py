"""Render a vision study (``vision_studies`` of a manifest) from the per-model CSVs that
``reprise.vision.study.run_channel_study`` wrote: one table (CSV long form as measured; Markdown
and LaTeX with accuracy, FLOP ratio, parameters and prune seconds). No solving here.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Mapping, Sequence

from reprise.io import ReproError, atomic_path
from reprise.papers.manifest import Manifest
from reprise.papers.plan import is_smoke, paper_seeds, scale_name, vision_models
from reprise.papers.tables import SMOKE_LABEL, write_md_tex

SHOWN = (("top1", "top-1"), ("flops_kept", "FLOPs kept"), ("params", "parameters"), ("prune_seconds", "prune s"),
         ("speedup", "speed-up"))


def vision_caption(manifest: Manifest, study: str, scale_cfg: Mapping) -> str:
    spec = manifest.vision_studies[study]
    models = vision_models(manifest, study, scale_cfg)
    parts = [spec.caption.rstrip(". ") + "."]
    parts.append(f"Regenerated at scale '{scale_name(scale_cfg)}' with seed {paper_seeds(manifest, scale_cfg)[0]}; "
                 f"methods {', '.join(spec.methods)} at channel sparsities {', '.join(f'{x:g}' for x in spec.sparsities)}.")
    if not set(models) & set(spec.models):
        parts.append(f"This target's models ({', '.join(spec.models)}) do not run at this scale; "
                     f"{', '.join(models)} stands in.")
    parts.append("FLOPs kept and parameters: the shrunk network's share of the dense one's (convs and linears).")
    if is_smoke(scale_cfg):
        parts.append(SMOKE_LABEL + ".")
    return " ".join(parts)


def read_rows(paths: Sequence[str | Path]) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for p in paths:
        with open(p, newline="") as fh:
            got = list(csv.DictReader(fh))
        if not got or "top1" not in got[0]:
            raise ReproError(f"{p}: not a vision study result (no rows or no top1 column); delete it and rerun its job")
        rows += got
    return rows


def _cell(column: str, value: str) -> str:
    if value in ("", None):
        return "—"
    v = float(value)
    if column == "top1":
        return f"{100 * v:.2f}%"
    if column == "params":
        return f"{v / 1e6:.3g}M"
    return f"{v:.2f}"


def render_vision_study(manifest: Manifest, study: str, scale_cfg: Mapping, rows: list[dict[str, str]],
                        out_prefix: str | Path) -> list[Path]:
    """Write ``<out_prefix>.csv``, ``.md`` and ``.tex`` of the study from its models' rows."""
    out_prefix = Path(out_prefix)
    paths = [out_prefix.with_name(out_prefix.name + ext) for ext in (".csv", ".md", ".tex")]
    scale = scale_name(scale_cfg)
    fields = ["scale", *dict.fromkeys(k for r in rows for k in r)]
    with atomic_path(paths[0], suffix=".csv") as tmp, tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({"scale": scale, **r})
    shown = [c for c, _ in SHOWN if any(r.get(c) not in ("", None) for r in rows)]
    head = ["model", "method", "sparsity", *[dict(SHOWN)[c] for c in shown]]
    body = [[r["model"], r["method"], f"{float(r['sparsity']):g}", *[_cell(c, r.get(c, "")) for c in shown]] for r in rows]
    cap = vision_caption(manifest, study, scale_cfg)
    notes = [n.text for n in manifest.vision_studies[study].notes if n.applies(scale)]
    notes += sorted({r["note"] for r in rows if r.get("note")})
    write_md_tex(paths[1], paths[2], manifest.paper, study, cap, head, body, notes, text_columns=2)
    return paths

"""Which runs a paper's targets need at a given scale, and which metrics they read.

The scale config is the dict the workflow passes in (``config/scales/<scale>.yaml``):
``scale``, ``seeds``, ``eval.seqlen``, ``eval.testsets``, ``eval.zeroshot_tasks`` and
``papers.<paper>.{models, sparsities, blocks}``. This module only reads it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from reprise.io import ReproError
from reprise.papers.manifest import DENSE, Figure, Manifest, Table, sparsity_setting

SCALES = ("smoke", "mini", "full")


@dataclass(frozen=True, order=True)
class Cell:
    """One (model, method, setting, seed) run needed by one table or figure of one paper."""

    paper: str
    target: str
    model: str
    method: str
    setting: str
    seed: int

    @property
    def run(self) -> tuple[str, str, str, int]:
        return (self.model, self.method, self.setting, self.seed)

    def run_dir(self, runs_dir: str | Path) -> Path:
        return run_dir(runs_dir, *self.run)


def run_dir(runs_dir: str | Path, model: str, method: str, setting: str, seed: int) -> Path:
    """``runs/<model>/<method>/<setting>/s<seed>``: where a run's checkpoint, logs and eval live."""
    return Path(runs_dir) / model / method / setting / f"s{seed}"


# --------------------------------------------------------------------------- scale config


def _get(scale_cfg: Mapping, dotted: str, default: Any = ...) -> Any:
    node: Any = scale_cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            if default is not ...:
                return default
            raise ReproError(f"scale config lacks {dotted!r}; add it to config/scales/<scale>.yaml")
        node = node[part]
    return node


def scale_name(scale_cfg: Mapping) -> str:
    name = _get(scale_cfg, "scale")
    if name not in SCALES:
        raise ReproError(f"scale config: scale is {name!r}; use one of {', '.join(SCALES)}")
    return name


def is_smoke(scale_cfg: Mapping) -> bool:
    return scale_name(scale_cfg) == "smoke"


def seeds(scale_cfg: Mapping) -> list[int]:
    s = list(_get(scale_cfg, "seeds"))
    if not s or not all(isinstance(x, int) for x in s):
        raise ReproError(f"scale config: seeds must be a non-empty list of integers, got {s!r}")
    return s


def paper_scale(manifest: Manifest, scale_cfg: Mapping) -> Mapping:
    """The scale's ``papers.<paper>`` entry."""
    return _get(scale_cfg, f"papers.{manifest.paper}")


def scale_models(manifest: Manifest, scale_cfg: Mapping) -> list[str]:
    models = list(_get(scale_cfg, f"papers.{manifest.paper}.models"))
    if not models:
        raise ReproError(f"scale config: papers.{manifest.paper}.models is empty; list the model keys to run")
    return models


def blocks(manifest: Manifest, scale_cfg: Mapping) -> Any:
    """The block slice of this paper at this scale (``papers.<paper>.blocks``, else ``driver.blocks``),
    or None when every block is compressed."""
    b = _get(scale_cfg, f"papers.{manifest.paper}.blocks", None)
    return b if b is not None else _get(scale_cfg, "driver.blocks", None)


def perplexity_metrics(scale_cfg: Mapping) -> list[str]:
    seqlen = _get(scale_cfg, "eval.seqlen")
    return [f"{name}_ppl@{seqlen}" for name in _get(scale_cfg, "eval.testsets")]


def zeroshot_metrics(scale_cfg: Mapping, metric: str = "acc") -> list[str]:
    """``<task>/<metric>`` per zero-shot task; an entry already written as task/metric is kept."""
    tasks = _get(scale_cfg, "eval.zeroshot_tasks", None) or []
    return [t if "/" in t else f"{t}/{metric}" for t in tasks]


# --------------------------------------------------------------------------- targets


def targets(manifest: Manifest) -> list[str]:
    """Ids of the manifest's tables, then its figures (manifest order)."""
    return [*manifest.tables, *manifest.figures]


def _target(manifest: Manifest, target: str) -> Table | Figure:
    if target in manifest.tables:
        return manifest.tables[target]
    if target in manifest.figures:
        return manifest.figures[target]
    raise ReproError(f"{manifest.path}: no table or figure {target!r}; targets are {', '.join(targets(manifest))}")


def target_models(manifest: Manifest, target: str, scale_cfg: Mapping) -> list[str]:
    """Models of ``target`` at this scale: the scale's models, filtered by the target's own list.

    When none of the target's models runs at this scale (smoke runs one small model), the scale's
    models stand in, so every target still builds; ``stand_in_models`` says so for the caption."""
    spec = _target(manifest, target)
    models = scale_models(manifest, scale_cfg)
    if spec.models is None:
        return models
    return [m for m in models if m in spec.models] or models


def stand_in_models(manifest: Manifest, target: str, scale_cfg: Mapping) -> bool:
    """True when the scale's models stand in for a target whose own models do not run at this scale."""
    spec = _target(manifest, target)
    return spec.models is not None and not set(spec.models) & set(scale_models(manifest, scale_cfg))


def figure_task(manifest: Manifest, figure: str, scale_cfg: Mapping) -> str:
    """The zero-shot task a figure is evaluated on at this scale: its own, or the scale's stand-in
    (``papers.<paper>.tasks: {<task>: <stand-in>}``)."""
    fig = manifest.figures[figure]
    subs = _get(scale_cfg, f"papers.{manifest.paper}.tasks", None) or {}
    return subs.get(fig.task, fig.task)


def figure_sparsities(manifest: Manifest, figure: str, scale_cfg: Mapping) -> list[float]:
    """The figure's sparsity grid, thinned by the scale's ``papers.<paper>.sparsities`` if set."""
    fig = manifest.figures[figure]
    thin = _get(scale_cfg, f"papers.{manifest.paper}.sparsities", None)
    if thin is None:
        return list(fig.sparsities)
    out = []
    for s in thin:
        match = [g for g in fig.sparsities if math.isclose(g, float(s))]
        if not match:
            raise ReproError(
                f"scale config: papers.{manifest.paper}.sparsities has {s}, which is not on the grid of figure "
                f"{figure} {list(fig.sparsities)}; use a subset of that grid"
            )
        out.append(match[0])
    return sorted(set(out))


def required_metrics(manifest: Manifest, target: str, scale_cfg: Mapping) -> list[str]:
    """Metric names the target reads at this scale (runtime is not an eval metric)."""
    spec = _target(manifest, target)
    if isinstance(spec, Figure):
        if spec.kind == "layer_error":
            return []  # read from solve_log.csv
        if spec.kind == "zeroshot_vs_size":
            return [f"{figure_task(manifest, target, scale_cfg)}/{spec.zeroshot_metric}"]
        ppl = perplexity_metrics(scale_cfg)
        if not ppl:
            raise ReproError(f"scale config: eval.testsets is empty, but figure {target} plots perplexity")
        return ppl[:1]
    out = perplexity_metrics(scale_cfg) if spec.perplexity else []
    if spec.zeroshot:
        out += zeroshot_metrics(scale_cfg, spec.zeroshot_metric)
    return out


def target_rows(manifest: Manifest, target: str, scale_cfg: Mapping) -> list[tuple[str, str]]:
    """(method, setting) pairs the target regenerates at this scale (skipped rows excluded)."""
    spec = _target(manifest, target)
    if isinstance(spec, Table) or spec.series:
        return [(r.method, r.setting) for r in spec.rows if r.skip is None]
    pairs = [(DENSE, DENSE)] if spec.dense_reference else []
    for method in spec.methods:
        pairs += [(method, sparsity_setting(s)) for s in figure_sparsities(manifest, target, scale_cfg)]
    return pairs


def seeds_for(manifest: Manifest, method: str, scale_cfg: Mapping) -> list[int]:
    s = seeds(scale_cfg)
    return s[:1] if method in manifest.seed_independent else s


def plan(manifest: Manifest, scale_cfg: Mapping, target: str | None = None) -> list[Cell]:
    """Every cell the manifest's targets (or just ``target``) need at this scale, without duplicates."""
    out: dict[Cell, None] = {}
    for t in [target] if target else targets(manifest):
        for model in target_models(manifest, t, scale_cfg):
            for method, setting in target_rows(manifest, t, scale_cfg):
                for seed in seeds_for(manifest, method, scale_cfg):
                    out[Cell(manifest.paper, t, model, method, setting, seed)] = None
    return list(out)


def run_metrics(manifest: Manifest, scale_cfg: Mapping) -> dict[tuple[str, str, str, int], list[str]]:
    """Each run the paper needs, with the metrics its targets read from it (a run in a perplexity
    table and a zero-shot figure needs both; one only in the runtime table needs none)."""
    out: dict[tuple[str, str, str, int], set[str]] = {}
    for t in targets(manifest):
        metrics = required_metrics(manifest, t, scale_cfg)
        for cell in plan(manifest, scale_cfg, t):
            out.setdefault(cell.run, set()).update(metrics)
    return {run: sorted(m) for run, m in out.items()}


def unique_runs(cells: Iterable[Cell]) -> list[tuple[str, str, str, int]]:
    """The distinct (model, method, setting, seed) runs behind ``cells`` (first-seen order)."""
    return list(dict.fromkeys(c.run for c in cells))


def method_config(manifests: Manifest | Iterable[Manifest], method: str, setting: str) -> dict[str, Any]:
    """The config of (method, setting); an error if absent or if two manifests disagree."""
    if isinstance(manifests, Manifest):
        manifests = [manifests]
    found: list[tuple[Manifest, dict]] = [(m, m.config(method, setting)) for m in manifests if (method, setting) in m.settings]
    if not found:
        raise ReproError(f"no manifest declares setting {method}/{setting}; add it under settings.{method}.{setting}")
    first_m, first = found[0]
    for m, cfg in found[1:]:
        if cfg != first:
            raise ReproError(
                f"setting {method}/{setting} differs between {first_m.path} ({first}) and {m.path} ({cfg}); "
                "runs are shared by path, so give one of them another setting name"
            )
    return first

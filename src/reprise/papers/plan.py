"""Which runs a paper's targets need at a given scale, and which metrics they read.

The scale config is the dict the workflow passes in (``config/scales/<scale>.yaml``):
``scale``, ``seeds``, ``eval.seqlen``, ``eval.testsets``, ``eval.zeroshot_tasks`` and
``papers.<paper>.{models, sparsities, blocks, settings, seeds, tasks, calibration, testsets}``.
This module only reads it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from reprise.io import ReproError
from reprise.metrics import SPEED_FIELDS, speed_metric
from reprise.papers.manifest import DENSE, Figure, Manifest, Table, sparsity_setting

SCALES = ("smoke", "mini", "full")
ALL_SETTINGS = "all"  # papers.<paper>.settings: all runs every row (a larger scale undoing smoke's thinning)
ALL_BLOCKS = "all"  # papers.<paper>.blocks: all compresses every block (structured pruning shrinks them all)


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


def paper_seeds(manifest: Manifest, scale_cfg: Mapping) -> list[int]:
    """The paper's seeds at this scale: ``papers.<paper>.seeds`` (ALPS reports 5 runs), else ``seeds``."""
    own = _get(scale_cfg, f"papers.{manifest.paper}.seeds", None)
    if own is None:
        return seeds(scale_cfg)
    if not own or not all(isinstance(x, int) and not isinstance(x, bool) for x in own):
        raise ReproError(f"scale config: papers.{manifest.paper}.seeds must be a non-empty list of integers, got {own!r}")
    return list(own)


def paper_scale(manifest: Manifest, scale_cfg: Mapping) -> Mapping:
    """The scale's ``papers.<paper>`` entry."""
    return _get(scale_cfg, f"papers.{manifest.paper}")


def scale_models(manifest: Manifest, scale_cfg: Mapping) -> list[str]:
    models = list(_get(scale_cfg, f"papers.{manifest.paper}.models"))
    if not models:
        raise ReproError(f"scale config: papers.{manifest.paper}.models is empty; list the model keys to run")
    return models


def blocks(manifest: Manifest, scale_cfg: Mapping, target: str | None = None) -> Any:
    """The block slice of this paper (or of its ``target``) at this scale: ``papers.<paper>.blocks``
    (a slice, ``all``, or a mapping target -> slice/``all`` for papers whose tables share runs planned
    with different slices by other papers), else ``driver.blocks``; None when every block is compressed."""
    b = _get(scale_cfg, f"papers.{manifest.paper}.blocks", None)
    if isinstance(b, Mapping):
        b = b.get(target) if target is not None else None
    if b == ALL_BLOCKS:
        return None
    return b if b is not None else _get(scale_cfg, "driver.blocks", None)


def scale_settings(manifest: Manifest, scale_cfg: Mapping) -> set[str] | None:
    """The settings this scale runs (``papers.<paper>.settings``: setting names, for every method, or
    ``method/setting``), or None for all of them (absent or ``all``)."""
    own = _get(scale_cfg, f"papers.{manifest.paper}.settings", None)
    if own is None or own == ALL_SETTINGS:
        return None
    declared = {s for _, s in manifest.settings} | {f"{m}/{s}" for m, s in manifest.settings}
    unknown = sorted(set(own) - declared - {DENSE})
    if unknown:
        raise ReproError(f"scale config: papers.{manifest.paper}.settings names {', '.join(unknown)}, which "
                         f"{manifest.path} does not declare under settings; use its setting names")
    return set(own) | {DENSE}


def row_skip(manifest: Manifest, row: Any, scale_cfg: Mapping) -> str | None:
    """Why a table row or figure series is not regenerated at this scale (None: it is)."""
    if row.skip is not None:
        return row.skip
    if row.scales is not None and scale_name(scale_cfg) not in row.scales:
        return f"not run at scale '{scale_name(scale_cfg)}' (a configuration for {', '.join(row.scales)} only)"
    keep = scale_settings(manifest, scale_cfg)
    if keep is not None and row.setting not in keep and f"{row.method}/{row.setting}" not in keep:
        return f"not run at scale '{scale_name(scale_cfg)}' (papers.{manifest.paper}.settings thins the grid)"
    return None


def speed_metrics(scale_cfg: Mapping) -> list[str]:
    """The speed job's metrics at this scale's input shape (``eval.speed``, default batch 1 × eval.seqlen)."""
    cfg = _get(scale_cfg, "eval.speed", None) or {}
    batch = int(cfg.get("batch_size", 1))
    seqlen = int(cfg.get("seqlen", _get(scale_cfg, "eval.seqlen")))
    return [speed_metric(f, batch, seqlen) for f in SPEED_FIELDS]


def paper_testsets(scale_cfg: Mapping, manifest: Manifest | None = None) -> list[str]:
    """The perplexity test sets: the paper's ``papers.<paper>.testsets`` (HASSLE-free reads c4-new,
    not the lab C4 windows), else ``eval.testsets``."""
    own = _get(scale_cfg, f"papers.{manifest.paper}.testsets", None) if manifest is not None else None
    return list(own) if own is not None else list(_get(scale_cfg, "eval.testsets"))


def perplexity_metrics(scale_cfg: Mapping, manifest: Manifest | None = None) -> list[str]:
    seqlen = _get(scale_cfg, "eval.seqlen")
    return [f"{name}_ppl@{seqlen}" for name in paper_testsets(scale_cfg, manifest)]


def calibration(manifest: Manifest | None, scale_cfg: Mapping) -> dict[str, Any]:
    """The calibration draw of this paper's runs: the scale's ``calibration``, with the keys the
    paper's ``papers.<paper>.calibration`` overrides (HASSLE-free draws from the C4 train shard)."""
    base = dict(_get(scale_cfg, "calibration"))
    own = _get(scale_cfg, f"papers.{manifest.paper}.calibration", None) if manifest is not None else None
    return {**base, **(own or {})}


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


NO_TASK = "none"  # papers.<paper>.tasks: {<task>: none} leaves a task out at that scale


def task_stand_in(manifest: Manifest, task: str, scale_cfg: Mapping) -> str | None:
    """The task run for the paper's ``task`` at this scale: itself, the scale's stand-in
    (``papers.<paper>.tasks: {<task>: <stand-in>}``), or None when the scale leaves it out."""
    subs = _get(scale_cfg, f"papers.{manifest.paper}.tasks", None) or {}
    used = subs.get(task, task)
    return None if used == NO_TASK else used


def figure_task(manifest: Manifest, figure: str, scale_cfg: Mapping) -> str:
    """The zero-shot task a figure is evaluated on at this scale: its own, or the scale's stand-in."""
    fig = manifest.figures[figure]
    used = task_stand_in(manifest, fig.task, scale_cfg)
    if used is None:
        raise ReproError(f"scale config: papers.{manifest.paper}.tasks leaves out {fig.task}, which figure {figure} "
                         "plots; give it a stand-in task instead of none")
    return used


def table_tasks(manifest: Manifest, table: str, scale_cfg: Mapping) -> list[tuple[str, str | None]]:
    """(paper's task, task run at this scale or None) per zero-shot column of ``table``."""
    spec = manifest.tables[table]
    if not spec.zeroshot:
        return []
    if spec.tasks is None:  # the scale's own task list, as the baselines tables use
        return [(t, t) for t in (_get(scale_cfg, "eval.zeroshot_tasks", None) or [])]
    return [(t, task_stand_in(manifest, t, scale_cfg)) for t in spec.tasks]


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
        ppl = perplexity_metrics(scale_cfg, manifest)
        if not ppl:
            raise ReproError(f"scale config: eval.testsets is empty, but figure {target} plots perplexity")
        if spec.kind == "ppl_vs_speedup":
            return ppl[:1] + speed_metrics(scale_cfg)
        return ppl[:1]
    out = perplexity_metrics(scale_cfg, manifest) if spec.perplexity else []
    out += speed_metrics(scale_cfg) if spec.speed else []
    if spec.zeroshot and spec.tasks is None:
        out += zeroshot_metrics(scale_cfg, spec.zeroshot_metric)
    elif spec.zeroshot:
        out += [f"{used}/{spec.task_metrics.get(task, spec.zeroshot_metric)}"
                for task, used in table_tasks(manifest, target, scale_cfg) if used]
    return out


def target_rows(manifest: Manifest, target: str, scale_cfg: Mapping) -> list[tuple[str, str]]:
    """(method, setting) pairs the target regenerates at this scale (skipped rows excluded)."""
    spec = _target(manifest, target)
    if isinstance(spec, Table) or spec.series:
        return [(r.method, r.setting) for r in spec.rows if row_skip(manifest, r, scale_cfg) is None]
    pairs = [(DENSE, DENSE)] if spec.dense_reference else []
    for method in spec.methods:
        pairs += [(method, sparsity_setting(s)) for s in figure_sparsities(manifest, target, scale_cfg)]
    return pairs


def seeds_for(manifest: Manifest, method: str, scale_cfg: Mapping) -> list[int]:
    s = paper_seeds(manifest, scale_cfg)
    return s[:1] if method in manifest.seed_independent else s


def reads_runs(manifest: Manifest, target: str, scale_cfg: Mapping) -> bool:
    """False for a table with no column at this scale (e.g. only hub zero-shot tasks, left out at
    smoke): it renders its rows with the reason and needs no solve."""
    spec = _target(manifest, target)
    if isinstance(spec, Figure):
        return True
    return bool(required_metrics(manifest, target, scale_cfg)) or spec.runtime or spec.wall_time


def plan(manifest: Manifest, scale_cfg: Mapping, target: str | None = None) -> list[Cell]:
    """Every cell the manifest's targets (or just ``target``) need at this scale, without duplicates."""
    out: dict[Cell, None] = {}
    for t in [target] if target else targets(manifest):
        if not reads_runs(manifest, t, scale_cfg):
            continue
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


def _per_run(manifests: Iterable[Manifest], scale_cfg: Mapping, key: str, value) -> dict[tuple[str, str, str, int], Any]:
    """``value(manifest)`` for each planned compressed run. Runs are shared by path, so two papers
    that plan the same run with different values of ``papers.<paper>.<key>`` are an error."""
    out: dict[tuple[str, str, str, int], tuple[Any, str]] = {}
    for manifest in manifests:
        v = value(manifest)
        for run in run_metrics(manifest, scale_cfg):
            if run[1] == DENSE:  # the dense model is not solved: no slice, no calibration draw
                continue
            if run in out and out[run][0] != v:
                raise ReproError(
                    f"run {'/'.join(map(str, run))} is planned by papers {out[run][1]} ({key} {out[run][0]}) and "
                    f"{manifest.paper} ({key} {v}); runs are shared by path, so give the two papers the same "
                    f"papers.<paper>.{key} or distinct setting names")
            out.setdefault(run, (v, manifest.paper))
    return {run: v for run, (v, _) in out.items()}


def run_blocks(manifests: Iterable[Manifest], scale_cfg: Mapping) -> dict[tuple[str, str, str, int], Any]:
    """The block slice each planned run compresses (its paper's, or its target's, ``papers.<paper>.blocks``,
    else ``driver.blocks``; None: every block). Runs are shared by path, so two targets that plan the
    same run with different slices are an error."""
    out: dict[tuple[str, str, str, int], tuple[Any, str]] = {}
    for manifest in manifests:
        for t in targets(manifest):
            b = blocks(manifest, scale_cfg, t)
            v = list(b) if isinstance(b, (list, tuple)) else b
            for cell in plan(manifest, scale_cfg, t):
                run = cell.run
                if run[1] == DENSE:  # the dense model is not solved: no slice
                    continue
                where = f"{manifest.paper}_{t}"
                if run in out and out[run][0] != v:
                    raise ReproError(
                        f"run {'/'.join(map(str, run))} is planned by {out[run][1]} (blocks {out[run][0]}) and {where} "
                        f"(blocks {v}); runs are shared by path, so give both the same papers.<paper>.blocks (a "
                        f"mapping target -> slice sets one target's) or distinct setting names")
                out.setdefault(run, (v, where))
    return {run: v for run, (v, _) in out.items()}


def run_calibrations(manifests: Iterable[Manifest], scale_cfg: Mapping) -> dict[tuple[str, str, str, int], dict]:
    """The calibration draw (without its seed) of each planned run: its paper's ``calibration``."""
    return _per_run(manifests, scale_cfg, "calibration", lambda m: calibration(m, scale_cfg))


def study_model(manifest: Manifest, study: str, scale_cfg: Mapping) -> str:
    """The model of a layer study at this scale: the paper's first model that runs here, else the
    scale's first model (a stand-in, which the caption names)."""
    spec = manifest.layer_studies[study]
    models = scale_models(manifest, scale_cfg)
    return next((m for m in spec.models if m in models), models[0])


def vision_models(manifest: Manifest, study: str, scale_cfg: Mapping) -> list[str]:
    """The models of a vision study at this scale: ``papers.<paper>.vision_models`` (smoke's small
    digits network stands in for ImageNet models), else the study's own."""
    own = _get(scale_cfg, f"papers.{manifest.paper}.vision_models", None)
    return list(own) if own else list(manifest.vision_studies[study].models)


def vision_file(runs_dir: str | Path, model: str, paper: str, study: str, seed: int) -> Path:
    """``runs/vision/<model>/<paper>.<study>_s<seed>.csv``: one model's rows of a vision study."""
    return Path(runs_dir) / "vision" / model / f"{paper}.{study}_s{seed}.csv"


def layer_file(runs_dir: str | Path, model: str, block: int, layer: str, seed: int) -> Path:
    """``runs/<model>/layers/b<block>.<layer>_s<seed>.pt``: one linear's weight, input Gram and mean."""
    return Path(runs_dir) / model / "layers" / f"b{block}.{layer}_s{seed}.pt"


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

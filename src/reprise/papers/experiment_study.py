"""Render a sparse-learning experiment (``experiments`` of a manifest) from the per-seed CSVs its
jobs wrote, and compare its rows with the manifest's ``checks``.

A table groups the rows by the experiment's ``index`` columns and averages its ``values`` over
replicates and seeds (mean, std, n). A figure draws ``plot.y`` against ``plot.x``: one line (or
point cloud) per ``series`` value, one panel per ``facet`` value, the mean over replicates and
seeds with a ±std band; ``image_grid`` draws one small image per ``image`` value. Nothing here
solves anything: the rows come from ``reprise.experiments`` functions, run by the workflow.
"""
from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple

from reprise.io import ReproError, atomic_path
from reprise.papers.manifest import Check, Manifest
from reprise.papers.plan import is_smoke, paper_seeds, scale_name
from reprise.papers.tables import caption_tail, write_md_tex

SEED = "seed"
COUNT = "n_rows"  # a table cell's number of averaged rows (replicates x seeds)


def _params_key(manifest: Manifest, experiment: str, scale_cfg: Mapping) -> str | None:
    spec = manifest.experiments[experiment]
    scale = scale_name(scale_cfg)
    return next((k for k in ((scale, "full") if scale == "mini" else (scale,)) if k in spec.params), None)


def runs_at(manifest: Manifest, experiment: str, scale_cfg: Mapping) -> bool:
    """Whether ``experiment`` runs at this scale: its params have an entry for it (mini falls back
    to full). An experiment with full-scale params only (e.g. real data a fetch rule downloads) is
    left out of `all` and of the plan at smoke, and report.md says so."""
    return _params_key(manifest, experiment, scale_cfg) is not None


def experiment_params(manifest: Manifest, experiment: str, scale_cfg: Mapping,
                      part: str | None = None) -> dict[str, Any]:
    """The params of ``experiment`` at this scale (``params.<scale>``; mini falls back to full); for
    one ``part`` of a split experiment, its ``split_by`` lists cut down to that part's values."""
    key = _params_key(manifest, experiment, scale_cfg)
    if key is None:
        scale = scale_name(scale_cfg)
        ran = ", ".join(manifest.experiments[experiment].params) or "none"
        raise ReproError(f"{manifest.path}: experiments.{experiment} does not run at scale '{scale}' (params for: "
                         f"{ran}); run it with --configfile config/scales/<one of those>.yaml, or add params.{scale}")
    params = dict(manifest.experiments[experiment].params[key])
    if part is None:
        return params
    parts = _split_parts(manifest, experiment, params)
    if part not in parts:
        raise ReproError(f"{manifest.path}: experiments.{experiment} has no part {part!r} at scale "
                         f"'{scale_name(scale_cfg)}' (its parts: {', '.join(parts) or 'none, it is not split'})")
    return {**params, **{k: [v] for k, v in parts[part].items()}}


PART_NAME = r"[A-Za-z0-9.+-]+(?:_[A-Za-z0-9.+-]+)*"  # a part's file-name stem (rows: <part>_s<seed>.csv)


def _split_parts(manifest: Manifest, experiment: str, params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """part name -> {param: value} of a ``split_by`` experiment: one part per combination of the
    listed params' values (their cartesian product, in order); {} when the scale's params do not
    name every one of them (e.g. smoke's defaults), so the experiment runs as one job."""
    spec = manifest.experiments[manifest.experiments[experiment].job]
    if not spec.split_by or not all(k in params for k in spec.split_by):
        return {}
    values = []
    for k in spec.split_by:
        v = params[k]
        if not isinstance(v, list) or not v:
            raise ReproError(f"{manifest.path}: experiments.{spec.id}.split_by names {k!r}, whose value {v!r} is not a "
                             f"non-empty list; list its values, or drop {k} from split_by")
        values.append(v)
    parts: dict[str, dict[str, Any]] = {}
    for combo in itertools.product(*values):
        name = "-".join(str(v) for v in combo)
        if not re.fullmatch(PART_NAME, name) or name in parts:
            raise ReproError(f"{manifest.path}: experiments.{spec.id}: split_by values {combo} make the part name "
                             f"{name!r}, which is {'taken' if name in parts else 'not a plain file name'}; "
                             "split by params whose values are distinct names or numbers")
        parts[name] = dict(zip(spec.split_by, combo))
    return parts


def experiment_parts(manifest: Manifest, experiment: str, scale_cfg: Mapping) -> list[str | None]:
    """The parts each seed of ``experiment`` runs as (``[None]``: one job per seed)."""
    if not runs_at(manifest, experiment, scale_cfg):
        return [None]
    job = manifest.experiments[experiment].job
    return list(_split_parts(manifest, job, experiment_params(manifest, job, scale_cfg))) or [None]


def experiment_seeds(manifest: Manifest, experiment: str, scale_cfg: Mapping) -> list[int]:
    spec = manifest.experiments[manifest.experiments[experiment].job]
    own = (spec.seeds or {}).get(scale_name(scale_cfg), (spec.seeds or {}).get("*"))
    return list(own) if own is not None else paper_seeds(manifest, scale_cfg)


class ExperimentJob(NamedTuple):
    """One experiment job: a seed of an experiment, or one part of a seed of a split one."""

    experiment: str
    kind: str
    seed: int
    part: str | None = None

    @property
    def name(self) -> str:
        """``<experiment>``, or ``<experiment>/<part>`` for a part (the cost table's setting)."""
        return self.experiment if self.part is None else f"{self.experiment}/{self.part}"

    @property
    def stem(self) -> str:
        """``<name>_s<seed>``: its files' names."""
        return job_stem(self.experiment, self.seed, self.part)

    def rows_file(self, runs_dir: str | Path, paper: str) -> Path:
        """The CSV its rows go to (:func:`experiment_file`)."""
        return experiment_file(runs_dir, paper, self.experiment, self.seed, self.part)


def job_stem(experiment: str, seed: int, part: str | None = None) -> str:
    return f"{experiment}_s{seed}" if part is None else f"{experiment}/{part}_s{seed}"


def experiment_jobs(manifest: Manifest, scale_cfg: Mapping, only: str | None = None) -> list[ExperimentJob]:
    """Every experiment job of the paper at this scale (of experiment ``only`` and what it reads its
    rows from, when given): per seed, and per part where ``split_by`` splits it."""
    ids = [manifest.experiments[only].job] if only else list(manifest.experiments)
    jobs = []
    for eid in ids:
        if manifest.experiments[eid].rows_from or not runs_at(manifest, eid, scale_cfg):
            continue
        parts = experiment_parts(manifest, eid, scale_cfg)  # once per experiment, not per seed
        jobs += [ExperimentJob(eid, manifest.experiments[eid].kind, s, part)
                 for s in experiment_seeds(manifest, eid, scale_cfg) for part in parts]
    return jobs


def experiment_file(runs_dir: str | Path, paper: str, experiment: str, seed: int, part: str | None = None) -> Path:
    """``runs/experiments/<paper>/<experiment>_s<seed>.csv``: one seed's rows of an experiment
    (``<experiment>/<part>_s<seed>.csv``: one part's)."""
    return Path(runs_dir) / "experiments" / paper / f"{job_stem(experiment, seed, part)}.csv"


def read_rows(files: Iterable[str | Path]):
    """The rows of every seed's CSV, with a ``seed`` column taken from the file name."""
    import pandas as pd

    frames = []
    for f in files:
        f = Path(f)
        frame = pd.read_csv(f)
        seed = f.stem.rsplit("_s", 1)[-1]
        if SEED not in frame.columns:
            frame[SEED] = int(seed) if seed.isdigit() else seed
        frames.append(frame)
    if not frames:
        raise ReproError("no experiment rows to render: the experiment's jobs wrote no CSV")
    return pd.concat(frames, ignore_index=True)


def _filtered(frame, where: Mapping[str, Any] | None, what: str):
    for col, val in (where or {}).items():
        if col not in frame.columns:
            raise ReproError(f"{what}: column {col!r} is not in the experiment's rows ({', '.join(frame.columns)})")
        frame = frame[frame[col].isin(val if isinstance(val, list) else [val])]
    return frame


def _need(frame, cols: Iterable[str], what: str) -> None:
    missing = [c for c in cols if c and c not in frame.columns]
    if missing:
        raise ReproError(f"{what}: columns {', '.join(missing)} are not in the experiment's rows "
                         f"({', '.join(map(str, frame.columns))}); fix the manifest or the experiment")


def selected_rows(manifest: Manifest, experiment: str, rows):
    """The rows an experiment's view shows: its ``where`` filter, then (``final``) only the rows at
    the largest value of that column."""
    spec = manifest.experiments[experiment]
    rows = _filtered(rows, spec.where, f"experiments.{experiment}.where")
    if spec.final:
        _need(rows, [spec.final], f"experiments.{experiment}.final")
        rows = rows[rows[spec.final] == rows[spec.final].max()]
    if rows.empty:
        raise ReproError(f"experiments.{experiment}: no rows left after where/final; check their values")
    return rows


def seed_ranges(seeds: Iterable[int]) -> str:
    """Seeds as runs of consecutive values (``0-99, 120``), so a 471-job grid's caption stays short."""
    out, run = [], []
    for s in sorted(set(int(x) for x in seeds)):
        if run and s == run[-1] + 1:
            run.append(s)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 2 else ", ".join(map(str, run)))
        run = [s]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 2 else ", ".join(map(str, run)))
    return ", ".join(out)


def experiment_caption(manifest: Manifest, experiment: str, scale_cfg: Mapping) -> str:
    spec = manifest.experiments[experiment]
    if not runs_at(manifest, experiment, scale_cfg):
        return (spec.caption.rstrip(". ") + f". Not run at scale '{scale_name(scale_cfg)}': its params are for "
                f"{', '.join(spec.params)} only.")
    seeds = experiment_seeds(manifest, experiment, scale_cfg)
    params = experiment_params(manifest, experiment, scale_cfg)
    shown = ", ".join(f"{k}={v}" for k, v in params.items()) or "its defaults"
    parts = [spec.caption.rstrip(". ") + ".",
             f"Regenerated at scale '{scale_name(scale_cfg)}' with seed{'s' if len(seeds) > 1 else ''} "
             f"{seed_ranges(seeds)} ({spec.kind}: {shown})."]
    split = [p for p in experiment_parts(manifest, experiment, scale_cfg) if p is not None]
    if split:
        by = ", ".join(manifest.experiments[spec.job].split_by)
        parts.append(f"Each seed ran as {len(split)} jobs, one per value of {by}.")
    return " ".join(parts + caption_tail(manifest, scale_cfg))


def summary_frame(manifest: Manifest, experiment: str, rows):
    """(index columns, value columns, grouped frame with ``<v>``, ``<v>_std``, ``n``) of a table view."""
    spec = manifest.experiments[experiment]
    _need(rows, [*spec.index, *spec.values], f"experiments.{experiment}")
    for taken, what in ((COUNT, "count"), ("scale", "scale-label")):
        if taken in (*spec.index, *spec.values):
            raise ReproError(f"experiments.{experiment}: {taken!r} is the table's {what} column; rename that column")
    index = list(spec.index)
    agg = {}
    for v in spec.values:
        agg[v] = (v, "mean")
        agg[f"{v}_std"] = (v, "std")
    agg[COUNT] = (spec.values[0], "count")
    grouped = rows.groupby(index, sort=False, dropna=False).agg(**agg).reset_index() if index else \
        rows.agg({v: ["mean", "std", "count"] for v in spec.values})
    if not index:  # one row: flatten pandas' stat x column layout
        import pandas as pd

        flat = {v: grouped.loc["mean", v] for v in spec.values}
        flat.update({f"{v}_std": grouped.loc["std", v] for v in spec.values})
        flat[COUNT] = int(grouped.loc["count", spec.values[0]])
        grouped = pd.DataFrame([flat])
    return index, list(spec.values), grouped


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "—"
        return f"{v:.3g}" if abs(v) >= 1e4 or (v != 0 and abs(v) < 1e-3) else f"{v:.4g}"
    return str(v)


def render_experiment(manifest: Manifest, experiment: str, scale_cfg: Mapping, rows, out_prefix: str | Path) -> list[Path]:
    """Write the table (``.csv``, ``.md``, ``.tex``) or figure (``.png``, ``.pdf``) of ``experiment``."""
    spec = manifest.experiments[experiment]
    out_prefix = Path(out_prefix)
    cap = experiment_caption(manifest, experiment, scale_cfg)
    rows = selected_rows(manifest, experiment, rows)
    if spec.is_figure:
        return _render_figure(manifest, experiment, scale_cfg, rows, out_prefix, cap)
    index, values, frame = summary_frame(manifest, experiment, rows)
    with_std = bool((frame[COUNT] > 1).any())
    paths = [out_prefix.with_name(out_prefix.name + ext) for ext in (".csv", ".md", ".tex")]
    frame.insert(0, "scale", scale_name(scale_cfg))  # a smoke row read from the CSV alone stays labelled
    with atomic_path(paths[0], suffix=".csv") as tmp:
        frame.to_csv(tmp, index=False)
    head = index + values + [COUNT]
    body = []
    for _, r in frame.iterrows():
        cells = [_fmt(r[c]) for c in index]
        for v in values:
            mean, std = r[v], r[f"{v}_std"]
            cells.append(_fmt(mean) + (f" ± {_fmt(std)}" if with_std and isinstance(std, float) and not math.isnan(std) else ""))
        body.append(cells + [str(int(r[COUNT]))])
    notes = [n.text for n in spec.notes if n.applies(scale_name(scale_cfg))]
    write_md_tex(paths[1], paths[2], manifest.paper, experiment, cap, head, body, notes, text_columns=len(index))
    return paths


def _render_figure(manifest: Manifest, experiment: str, scale_cfg: Mapping, rows, out_prefix: Path, cap: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    spec = manifest.experiments[experiment]
    plot = dict(spec.plot)
    rows = _filtered(rows, plot.get("where"), f"experiments.{experiment}.plot.where")
    if spec.view == "image_grid":
        _need(rows, [plot["image"], plot["pixel"], plot["value"]], f"experiments.{experiment}.plot")
        images = list(dict.fromkeys(rows[plot["image"]]))
        h, w = plot["shape"]
        cols = min(len(images), int(plot.get("columns", 10)))
        nrows = math.ceil(len(images) / cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(1.2 * cols, 1.2 * nrows + 0.6), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, img in zip(axes.flat, images):
            part = rows[rows[plot["image"]] == img].groupby(plot["pixel"])[plot["value"]].mean()
            grid = np.zeros(h * w)
            grid[part.index.to_numpy(dtype=int)] = part.to_numpy()
            ax.imshow(grid.reshape(h, w), cmap="gray_r")
            ax.set_title(str(img), fontsize=7)
    elif spec.view == "heatmap":
        row, col, value, facet = plot["row"], plot["col"], plot["value"], plot.get("facet")
        row_cols = row if isinstance(row, list) else [row]
        _need(rows, [*row_cols, col, value, facet], f"experiments.{experiment}.plot")
        rows = rows.assign(_row=[" / ".join(map(str, v)) for v in rows[row_cols].itertuples(index=False)])
        facets = list(dict.fromkeys(rows[facet])) if facet else [None]
        fig, axes = plt.subplots(len(facets), 1, figsize=(8, 0.3 * rows["_row"].nunique() * len(facets) + 1.2),
                                 squeeze=False)
        for ax, fv in zip(axes[:, 0], facets):
            part = rows if fv is None else rows[rows[facet] == fv]
            grid = part.pivot_table(index="_row", columns=col, values=value, aggfunc="mean", sort=False)
            ax.imshow(grid.to_numpy(dtype=float), aspect="auto", cmap="Greys", vmin=0)
            ax.set_yticks(range(len(grid.index)), grid.index, fontsize=7)
            ax.set_xlabel(plot.get("xlabel", col))
            if fv is not None:
                ax.set_title(f"{facet} = {fv}", fontsize=9)
    else:
        x, y = plot["x"], plot["y"]
        series, facet = plot.get("series"), plot.get("facet")
        if isinstance(series, list):  # several columns: one line per combination, labelled a/b/c
            _need(rows, series, f"experiments.{experiment}.plot")
            rows = rows.assign(_series=[" / ".join(str(v) for v in vals if v == v and v != "")  # NaN != NaN
                                        for vals in rows[series].itertuples(index=False)])
            series = "_series"
        _need(rows, [x, y, series, facet], f"experiments.{experiment}.plot")
        facets = list(dict.fromkeys(rows[facet])) if facet else [None]
        fig, axes = plt.subplots(1, len(facets), figsize=(4.2 * len(facets), 3.4), squeeze=False)
        for ax, fv in zip(axes[0], facets):
            part = rows if fv is None else rows[rows[facet] == fv]
            for sv in (list(dict.fromkeys(part[series])) if series else [None]):
                line = part if sv is None else part[part[series] == sv]
                if spec.view == "scatter":
                    ax.scatter(line[x], line[y], s=10, label=None if sv is None else str(sv))
                    continue
                stats = line.groupby(x)[y].agg(["mean", "std"]).sort_index()
                xs, mean = stats.index.to_numpy(dtype=float), stats["mean"].to_numpy()
                ax.plot(xs, mean, marker="." if len(xs) < 30 else None, label=None if sv is None else str(sv))
                std = stats["std"].fillna(0).to_numpy()
                if std.any():
                    ax.fill_between(xs, mean - std, mean + std, alpha=0.2)
            ax.set_xlabel(plot.get("xlabel", x))
            ax.set_ylabel(plot.get("ylabel", y))
            if plot.get("logx"):
                ax.set_xscale("log")
            if plot.get("logy"):
                ax.set_yscale("log")
            if fv is not None:
                ax.set_title(f"{facet} = {fv}", fontsize=9)
            if series:
                ax.legend(fontsize=7)
    fig.suptitle(f"{manifest.paper} / {experiment}" + (" (smoke)" if is_smoke(scale_cfg) else ""), fontsize=9)
    fig.tight_layout()
    paths = [out_prefix.with_name(out_prefix.name + ext) for ext in (".png", ".pdf")]
    for p in paths:
        with atomic_path(p, suffix=p.suffix) as tmp:
            fig.savefig(tmp, format=p.suffix[1:], dpi=120)
    plt.close(fig)
    return paths


# --------------------------------------------------------------------------- checks

@dataclass(frozen=True)
class CheckResult:
    check: Check
    ours: float | None
    n_rows: int
    verdict: str
    reason: str = ""


def check_results(manifest: Manifest, scale_cfg: Mapping, runs_dir: str | Path) -> list[CheckResult]:
    """Each ``check`` against the mean of its metric over the matching rows of every seed's CSV."""
    from reprise.papers.report import FAIL, MISSING, NOT_REGENERATED, PASS, SMOKE, verdict

    scale = scale_name(scale_cfg)
    out = []
    for c in manifest.checks:
        if not runs_at(manifest, c.experiment, scale_cfg):
            out.append(CheckResult(c, None, 0, NOT_REGENERATED, f"experiment {c.experiment} does not run at scale "
                                                                 f"'{scale}'"))
            continue
        files = [j.rows_file(runs_dir, manifest.paper) for j in experiment_jobs(manifest, scale_cfg, only=c.experiment)]
        files = [f for f in files if f.is_file()]
        if not files:
            out.append(CheckResult(c, None, 0, MISSING, "the experiment's rows are not there yet"))
            continue
        rows = _filtered(read_rows(files), c.where, f"checks {c.id}")
        _need(rows, [c.metric], f"checks {c.id}")
        ours = float(rows[c.metric].mean()) if len(rows) else None
        compared = scale in c.scales if c.scales else not is_smoke(scale_cfg)
        if (c.at_most or c.at_least) and compared and ours is not None and c.value is not None:
            slack = c.tolerance.bound(c.value) if c.tolerance else 0.0
            v = PASS if (ours <= c.value + slack if c.at_most else ours >= c.value - slack) else FAIL
        else:
            v = verdict(ours, c.value, c.tolerance, smoke=not compared)
        reason = "" if compared else (f"compared at scale {', '.join(c.scales)} only" if c.scales
                                      else "smoke: not compared with the logged value")
        out.append(CheckResult(c, ours, len(rows), v if ours is not None else MISSING,
                               reason if v == SMOKE else ("no matching rows" if ours is None else "")))
    return out


def check_lines(results: list[CheckResult]) -> list[str]:
    lines = ["", "## Checks against logged and published values", "",
             "| check | experiment | metric (rows) | value | source | tolerance | ours | verdict | note |",
             "|---|---|---|---:|---|---|---:|---|---|"]
    for r in results:
        c = r.check
        where = ", ".join(f"{k}={v}" for k, v in c.where.items())
        tol = c.tolerance.describe() if c.tolerance else "—"
        value = "—" if c.value is None else ("≤ " if c.at_most else "≥ " if c.at_least else "") + _fmt(c.value)
        ours = "—" if r.ours is None else _fmt(r.ours)
        lines.append(f"| {c.text} | `{c.experiment}` | {c.metric} ({where or 'all'}; {r.n_rows} rows) | {value} | "
                     f"`{c.source}` | {tol} | {ours} | **{r.verdict}** | {r.reason} |")
    return lines


def experiment_section(manifest: Manifest, scale_cfg: Mapping, runs_dir: str | Path) -> list[str]:
    """report.md's lines for a paper's experiments: their captions, then the checks with verdicts."""
    if not manifest.experiments:
        return []
    lines = ["", "## Experiments", ""]
    lines += [f"- `{eid}`: {experiment_caption(manifest, eid, scale_cfg)}" for eid in manifest.experiments]
    if manifest.checks:
        lines += check_lines(check_results(manifest, scale_cfg, runs_dir))
    return lines

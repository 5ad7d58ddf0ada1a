"""Read regenerated numbers from run directories and summarise them over seeds."""
from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path
from typing import Iterable, Mapping

from reprise.io import ReproError
from reprise.papers.plan import Cell, run_dir, unique_runs

RUNTIME = "solve_seconds"  # pseudo-metric: total seconds of solve_log.csv
WALL = "wall_seconds"  # pseudo-metric: the compress job's seconds, activation generation included (provenance.json)

Run = tuple[str, str, str, int]
Results = Mapping[Run, Mapping[str, float | None]]


def _eval_metrics(eval_dir: Path) -> dict[str, tuple[float | None, Path]]:
    found: dict[str, tuple[float | None, Path]] = {}
    for f in sorted(eval_dir.glob("*.json")) if eval_dir.is_dir() else ():
        try:
            metrics = json.loads(f.read_text()).get("metrics")
        except (json.JSONDecodeError, AttributeError) as exc:
            raise ReproError(f"{f}: not an eval result ({exc}); delete it and rerun its evaluate job") from None
        if not isinstance(metrics, dict):
            raise ReproError(f"{f}: no 'metrics' mapping; delete it and rerun its evaluate job")
        for name, value in metrics.items():
            value = None if value is None else float(value)
            if name in found and found[name][0] != value:
                raise ReproError(
                    f"metric {name} has two values, {found[name][0]} in {found[name][1]} and {value} in {f}; "
                    "delete the stale file and rerun evaluation"
                )
            found[name] = (value, f)
    return found


def solve_log_rows(directory: Path, columns: Iterable[str] = ("seconds",)) -> list[dict[str, str]] | None:
    """The rows of ``solve_log.csv`` in ``directory`` (None if absent); ``columns`` must be there."""
    log = Path(directory) / "solve_log.csv"
    if not log.is_file():
        return None
    with log.open(newline="") as fh:
        reader = csv.DictReader(fh)
        for col in columns:
            if reader.fieldnames is None or col not in reader.fieldnames:
                raise ReproError(f"{log}: no {col!r} column; rerun the compress job that wrote it")
        return list(reader)


def total_seconds(rows: Iterable[Mapping[str, str]]) -> float:
    """Sum of the ``seconds`` column of solve-log rows."""
    return float(sum(float(r["seconds"]) for r in rows if r["seconds"] not in ("", None)))


def solve_seconds(directory: Path) -> float | None:
    """Sum of the ``seconds`` column of ``solve_log.csv`` in ``directory`` (None if absent)."""
    rows = solve_log_rows(directory)
    return None if rows is None else total_seconds(rows)


def wall_seconds(directory: Path) -> float | None:
    """The compress job's ``wall_seconds`` from ``provenance.json`` in ``directory`` (None if absent)."""
    prov = Path(directory) / "provenance.json"
    if not prov.is_file():
        return None
    try:
        value = json.loads(prov.read_text()).get("wall_seconds")
    except json.JSONDecodeError as exc:
        raise ReproError(f"{prov}: not valid JSON ({exc}); rerun the compress job that wrote it") from None
    return None if value is None else float(value)


def load_results(runs_dir: str | Path, cells: Iterable[Cell], metrics: Iterable[str], runtime: bool = False) -> dict[Run, dict[str, float | None]]:
    """Map each run of ``cells`` to ``{metric: value}`` for ``metrics`` (None where not evaluated yet).

    Every ``eval/*.json`` of the run is read; with ``runtime`` the total solve seconds of
    ``solve_log.csv`` is added under ``solve_seconds`` (None when the run has no solve log).
    """
    metrics = list(metrics)
    out: dict[Run, dict[str, float | None]] = {}
    for run in unique_runs(cells):
        d = run_dir(runs_dir, *run)
        found = _eval_metrics(d / "eval")
        row = {m: found[m][0] if m in found else None for m in metrics}
        if runtime:
            row[RUNTIME] = solve_seconds(d)
            row[WALL] = wall_seconds(d)
        out[run] = row
    return out


def summarise(results: Results, model: str, method: str, setting: str, metric: str, seeds: Iterable[int]) -> tuple[float | None, float | None, int]:
    """(mean, std, n) of a metric over the seeds that have a finite value; std is None when n < 2."""
    vals = []
    for s in seeds:
        v = results.get((model, method, setting, s), {}).get(metric)
        if v is not None and math.isfinite(v):
            vals.append(float(v))
    if not vals:
        return None, None, 0
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None), len(vals)

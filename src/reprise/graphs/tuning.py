"""Choosing the penalty of each method on a held-out sample (specs/other-papers.md §2.10, §2.9).

GraphL0 picks ``λ0`` (``λ2``, ``M`` fixed) by the held-out pseudo-log-likelihood
``Σ_i [log θ_ii − (1/θ_ii)‖Y_val θ_{·i}‖²]`` (the reference ``stats_utils.compute_likelihood``,
here centred by the training mean). The baselines use the criterion native to each: graphical
lasso the held-out Gaussian log-likelihood (``GraphicalLasso.score``), CONCORD the same
pseudo-likelihood as GraphL0 (it is a pseudo-likelihood method too), nodewise lasso the held-out
mean squared error of its regressions. Ties go to the first grid point.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from reprise.io import ReproError

from .baselines import concord, graphical_lasso, nodewise_precision, nodewise_prediction_error, nodewise_regressions
from .estimator import L0GraphicalModel
from .problem import check_data, pseudo_likelihood

BASELINES = ("glasso", "concord", "nodewise_and", "nodewise_or")


@dataclass
class Tuned:
    method: str
    value: float                  # the chosen penalty
    precision: np.ndarray
    table: list[dict] = field(default_factory=list)   # one row per grid point: value, score
    estimator: Any = None


def check_grid(grid: Sequence[float] | None, name: str) -> list[float]:
    if grid is None:
        raise ReproError(f"{name} grid is missing; pass a non-empty list of penalties")
    values = [float(v) for v in np.atleast_1d(np.asarray(grid, dtype=float))]
    if not values:
        raise ReproError(f"{name} grid is empty; pass at least one penalty value")
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise ReproError(f"{name} grid {values} must hold finite values ≥ 0")
    return values


def tune_lambda0(X_train, X_val, lambda0_grid: Sequence[float], **params) -> Tuned:
    """Fit ``L0GraphicalModel(lambda0=v, **params)`` for each ``v`` and keep the best held-out
    pseudo-likelihood."""
    grid = check_grid(lambda0_grid, "lambda0")
    X_train, X_val = check_data(X_train), check_data(X_val, "X_val")
    best, table = None, []
    for v in grid:
        est = L0GraphicalModel(lambda0=v, **params).fit(X_train)
        score = est.score(X_val)
        table.append({"value": v, "score": score, "n_edges": est.n_edges_, "objective": est.objective_})
        if best is None or score > best[1]:
            best = (est, score)
    est = best[0]
    return Tuned("graphl0", est.lambda0, est.precision_, table, est)


def tune_baseline(method: str, X_train, X_val, grid: Sequence[float]) -> Tuned:
    """Tune ``method`` (one of ``BASELINES``) over the penalty ``grid``."""
    if method not in BASELINES:
        raise ReproError(f"baseline {method!r} is unknown; use one of {', '.join(BASELINES)}")
    values = check_grid(grid, method)
    X_train, X_val = check_data(X_train), check_data(X_val, "X_val")
    best, table = None, []
    for v in values:
        if method == "glasso":
            fit = graphical_lasso(X_train, v)
            Theta, score = fit.precision_, float(fit.score(X_val))
        elif method == "concord":
            Theta = concord(X_train, v)
            score = pseudo_likelihood(Theta, X_val, X_train.mean(axis=0))
        else:
            B, var, mean = nodewise_regressions(X_train, v)
            Theta = nodewise_precision(B, var, method.split("_")[1])
            score = -nodewise_prediction_error(X_val, B, mean)
        off = np.triu(np.abs(Theta) > 0, 1)
        table.append({"value": v, "score": score, "n_edges": int(off.sum())})
        if best is None or score > best[1]:
            best = (v, score, Theta)
    return Tuned(method, best[0], best[2], table)

"""Shared pieces of the sparse-learning papers (specs/other-papers.md §9.3), written once.

Support metrics (TP/FP/FN counts, MCC, F1, TPR/FPR), the relative Frobenius error, top-k hard
thresholding (whole array, per row or per column, and by groups), the Euclidean projection onto
the unit simplex, and the choice of an open MIP back-end. GraphL0BnB, sMTL, sparse NMF and Skinny
Trees use these; numpy only, no RNG, no I/O.
"""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass

import numpy as np

from reprise.io import ReproError

#: entries with |x| at or below this count as zero in support metrics (GraphL0's test_util uses 1e-3)
SUPPORT_TOL = 1e-3


# --------------------------------------------------------------------------- support metrics

@dataclass(frozen=True)
class SupportCounts:
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def mcc(self) -> float:
        """Matthews correlation coefficient; 0 when a margin is empty (no positive or no negative)."""
        num = self.tp * self.tn - self.fp * self.fn
        den = math.sqrt((self.tp + self.fp) * (self.tp + self.fn) * (self.tn + self.fp) * (self.tn + self.fn))
        return num / den if den > 0 else 0.0

    @property
    def f1(self) -> float:
        den = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / den if den > 0 else 1.0  # both supports empty: perfect agreement

    @property
    def tpr(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def fpr(self) -> float:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0


def support(x: np.ndarray, tol: float = SUPPORT_TOL) -> np.ndarray:
    """Boolean support ``|x| > tol``."""
    return np.abs(np.asarray(x)) > tol


def support_counts(estimate: np.ndarray, truth: np.ndarray, tol: float = SUPPORT_TOL,
                   off_diagonal: bool = False) -> SupportCounts:
    """Confusion counts of ``support(estimate)`` against ``support(truth)`` over every entry (or,
    with ``off_diagonal``, the entries off the diagonal of a square matrix)."""
    est, true = support(estimate, tol), support(truth, tol)
    if est.shape != true.shape:
        raise ReproError(f"support_counts: estimate has shape {est.shape}, truth {true.shape}; they must match")
    if off_diagonal:
        if est.ndim != 2 or est.shape[0] != est.shape[1]:
            raise ReproError(f"support_counts: off_diagonal needs a square matrix, got shape {est.shape}")
        keep = ~np.eye(est.shape[0], dtype=bool)
        est, true = est[keep], true[keep]
    return SupportCounts(tp=int((est & true).sum()), fp=int((est & ~true).sum()),
                         fn=int((~est & true).sum()), tn=int((~est & ~true).sum()))


def rel_frobenius(estimate: np.ndarray, truth: np.ndarray) -> float:
    """``‖estimate − truth‖_F / ‖truth‖_F``."""
    truth = np.asarray(truth, dtype=float)
    norm = np.linalg.norm(truth)
    if norm == 0:
        raise ReproError("rel_frobenius: the true matrix is zero, so the relative error is undefined")
    return float(np.linalg.norm(np.asarray(estimate, dtype=float) - truth) / norm)


# --------------------------------------------------------------------------- thresholding and projections

def top_k_mask(x: np.ndarray, k: int, axis: int | None = None) -> np.ndarray:
    """Boolean mask of the ``k`` entries of largest ``|x|`` (over the whole array, or along ``axis``
    for each slice). Ties go to the lower index, so the result is deterministic."""
    a = np.abs(np.asarray(x, dtype=float))
    if axis is None:
        flat = a.reshape(-1)
        if not 0 <= k <= flat.size:
            raise ReproError(f"top_k_mask: k={k} is outside [0, {flat.size}]")
        order = np.argsort(-flat, kind="stable")
        mask = np.zeros(flat.size, dtype=bool)
        mask[order[:k]] = True
        return mask.reshape(a.shape)
    n = a.shape[axis]
    if not 0 <= k <= n:
        raise ReproError(f"top_k_mask: k={k} is outside [0, {n}] along axis {axis}")
    order = np.argsort(-a, axis=axis, kind="stable")
    mask = np.zeros(a.shape, dtype=bool)
    np.put_along_axis(mask, np.take(order, np.arange(k), axis=axis), True, axis=axis)
    return mask


def hard_threshold(x: np.ndarray, k: int, axis: int | None = None) -> np.ndarray:
    """``x`` with all but its ``k`` largest-magnitude entries (per slice along ``axis``) set to zero."""
    x = np.asarray(x, dtype=float)
    return np.where(top_k_mask(x, k, axis), x, 0.0)


def group_top_k(x: np.ndarray, k: int, groups: np.ndarray) -> np.ndarray:
    """Boolean mask keeping the ``k`` groups of largest Euclidean norm. ``groups`` labels every
    entry of ``x`` (same shape) with a group id; ties go to the smaller id."""
    x, groups = np.asarray(x, dtype=float), np.asarray(groups)
    if groups.shape != x.shape:
        raise ReproError(f"group_top_k: groups has shape {groups.shape}, x {x.shape}; label every entry")
    ids, inverse = np.unique(groups.reshape(-1), return_inverse=True)
    if not 0 <= k <= ids.size:
        raise ReproError(f"group_top_k: k={k} is outside [0, {ids.size}] groups")
    norms = np.bincount(inverse, weights=x.reshape(-1) ** 2, minlength=ids.size)
    keep_ids = np.zeros(ids.size, dtype=bool)
    keep_ids[np.argsort(-norms, kind="stable")[:k]] = True
    return keep_ids[inverse].reshape(x.shape)


def project_simplex(v: np.ndarray, axis: int = -1, radius: float = 1.0) -> np.ndarray:
    """Euclidean projection of each slice of ``v`` along ``axis`` onto ``{w ≥ 0, Σw = radius}``
    (the sort-based algorithm: shift by the threshold that makes the positive part sum to radius)."""
    if radius <= 0:
        raise ReproError(f"project_simplex: radius={radius} must be > 0")
    v = np.moveaxis(np.asarray(v, dtype=float), axis, -1)
    if v.shape[-1] == 0:
        raise ReproError("project_simplex: cannot project an empty vector onto the simplex")
    u = -np.sort(-v, axis=-1)
    css = np.cumsum(u, axis=-1) - radius
    idx = np.arange(1, v.shape[-1] + 1)
    cond = u - css / idx > 0
    rho = v.shape[-1] - 1 - np.argmax(cond[..., ::-1], axis=-1)  # last index where cond holds
    theta = np.take_along_axis(css, rho[..., None], axis=-1) / (rho[..., None] + 1)
    return np.moveaxis(np.maximum(v - theta, 0.0), -1, axis)


# --------------------------------------------------------------------------- MIP back-ends

#: open back-ends by name: the module that provides each (HiGHS ships with scipy)
MIP_BACKENDS = {"highs": "scipy.optimize", "scip": "pyscipopt", "gurobi": "gurobipy"}


def mip_backend(name: str) -> str:
    """Check that the MIP back-end ``name`` is known and importable; returns it. ``highs`` (through
    ``scipy.optimize.milp``) is always there; ``scip`` needs pyscipopt, ``gurobi`` gurobipy and a
    licence (its pip licence is size-limited)."""
    if name not in MIP_BACKENDS:
        raise ReproError(f"MIP back-end {name!r} is unknown; use one of {', '.join(MIP_BACKENDS)}")
    if importlib.util.find_spec(MIP_BACKENDS[name].split(".")[0]) is None:
        raise ReproError(f"MIP back-end {name!r} needs the Python package {MIP_BACKENDS[name]!r}, which is not "
                         f"installed; install it or choose highs")
    return name

"""Input checks, the prepared (centred, optionally standardised) problem, and the objective.

Every solver of :mod:`reprise.mtl` works on a :class:`TaskData`: per task ``k`` the centred
(and, with ``scale``, standardised) design ``X_k``, the centred outcome ``y_k``, and their
second moments ``G_k = X_kᵀX_k / n_k``, ``c_k = X_kᵀy_k / n_k``, ``yy_k = y_kᵀy_k / n_k``.
Centring is exact for an unpenalised intercept: the best intercept of task ``k`` for any
``β_k`` is ``ȳ_k − x̄_kᵀβ_k``, and after centring it is zero. So the loss of task k is
``½ β_kᵀG_kβ_k − c_kᵀβ_k + ½ yy_k``.
"""
from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real
from typing import Sequence

import numpy as np

from reprise.io import ReproError

#: |β| at or below this counts as zero when a support is read off coefficients
ZERO_TOL = 1e-12


# --------------------------------------------------------------------------- input checks

def check_tasks(Xs, ys, name_x: str = "Xs", name_y: str = "ys") -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Validate one design matrix and one outcome vector per task; return float copies.

    Fails with a ReproError naming the argument and the fix on: not a sequence, a different
    number of tasks in ``Xs`` and ``ys``, a design that is not 2-D, differing feature counts,
    an outcome whose length differs from its design's rows, fewer than 2 rows, NaN or inf.
    """
    if isinstance(Xs, np.ndarray) or not isinstance(Xs, Sequence) or isinstance(Xs, (str, bytes)):
        raise ReproError(f"{name_x} must be a list with one 2-D array (n_k × p) per task, got "
                         f"{type(Xs).__name__}; wrap a single task's matrix as [X]")
    if isinstance(ys, np.ndarray) or not isinstance(ys, Sequence) or isinstance(ys, (str, bytes)):
        raise ReproError(f"{name_y} must be a list with one 1-D array (n_k,) per task, got "
                         f"{type(ys).__name__}; wrap a single task's outcome as [y]")
    if len(Xs) == 0:
        raise ReproError(f"{name_x} is empty; pass at least one task")
    if len(Xs) != len(ys):
        raise ReproError(f"{name_x} has {len(Xs)} tasks but {name_y} has {len(ys)}; pass one (X_k, y_k) pair per task")
    out_x, out_y, p = [], [], None
    for k, (X, y) in enumerate(zip(Xs, ys)):
        try:
            X = np.array(X, dtype=float)
            y = np.array(y, dtype=float)
        except (TypeError, ValueError) as exc:
            raise ReproError(f"{name_x}[{k}] / {name_y}[{k}] are not numeric arrays ({exc})") from None
        if X.ndim != 2:
            raise ReproError(f"{name_x}[{k}] has shape {X.shape}; each task's design must be 2-D (n_k × p)")
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ReproError(f"{name_y}[{k}] has shape {y.shape}; each task's outcome must be 1-D (n_k,)")
        if p is None:
            p = X.shape[1]
        elif X.shape[1] != p:
            raise ReproError(f"{name_x}[{k}] has {X.shape[1]} columns but {name_x}[0] has {p}; every task needs "
                             f"the same p features in the same order")
        if y.shape[0] != X.shape[0]:
            raise ReproError(f"{name_y}[{k}] has {y.shape[0]} values but {name_x}[{k}] has {X.shape[0]} rows; "
                             f"they must match")
        if X.shape[0] < 2:
            raise ReproError(f"task {k} has n_k={X.shape[0]} rows; each task needs at least 2 observations")
        if p == 0:
            raise ReproError(f"{name_x}[{k}] has no columns; need at least one feature")
        if not np.all(np.isfinite(X)):
            raise ReproError(f"{name_x}[{k}] contains NaN or inf; remove or impute those entries before fitting")
        if not np.all(np.isfinite(y)):
            raise ReproError(f"{name_y}[{k}] contains NaN or inf; remove or impute those entries before fitting")
        out_x.append(X)
        out_y.append(y)
    return out_x, out_y


def check_nonneg(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not np.isfinite(value) or value < 0:
        raise ReproError(f"{name}={value!r} must be a finite number >= 0")
    return float(value)


def check_int(name: str, value, low: int, high: int | None = None, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ReproError(f"{name}={value!r} must be an integer{hint}")
    value = int(value)
    if value < low or (high is not None and value > high):
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ReproError(f"{name}={value} must be {rng}{hint}")
    return value


def check_s(s, p: int) -> int:
    return check_int("s", s, 1, p, hint=f" (the per-task support size; the data have p={p} features, so "
                                          f"choose 1 <= s <= {p})")


# --------------------------------------------------------------------------- prepared problem

@dataclass
class TaskData:
    """Centred (and optionally standardised) tasks in the form every solver uses."""

    X: list[np.ndarray]        # centred / standardised designs, one per task
    y: list[np.ndarray]        # centred outcomes
    G: np.ndarray              # (K, p, p)  X_kᵀX_k / n_k
    c: np.ndarray              # (K, p)     X_kᵀy_k / n_k
    yy: np.ndarray             # (K,)       y_kᵀy_k / n_k
    n: np.ndarray              # (K,)       n_k
    x_mean: np.ndarray         # (K, p)
    x_scale: np.ndarray        # (K, p)     1 where scale=False (or a constant column)
    y_mean: np.ndarray         # (K,)

    @property
    def K(self) -> int:
        return self.G.shape[0]

    @property
    def p(self) -> int:
        return self.G.shape[1]

    def to_original(self, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients and intercepts on the original scale of the data."""
        coef = B / self.x_scale
        return coef, self.y_mean - np.einsum("kp,kp->k", self.x_mean, coef)

    def to_internal(self, coef: np.ndarray) -> np.ndarray:
        return np.asarray(coef, dtype=float) * self.x_scale


def prepare(Xs: list[np.ndarray], ys: list[np.ndarray], scale: bool) -> TaskData:
    """Centre each task's design and outcome; with ``scale`` also divide each column by its
    within-task standard deviation (population form, ``ddof=0``; a constant column keeps scale 1).
    """
    X_out, y_out, Gs, cs, yys, ns, means, scales, ymeans = [], [], [], [], [], [], [], [], []
    for X, y in zip(Xs, ys):
        n = X.shape[0]
        mu = X.mean(axis=0)
        Xc = X - mu
        sd = np.sqrt((Xc ** 2).mean(axis=0)) if scale else np.ones(X.shape[1])
        sd = np.where(sd > 0, sd, 1.0)
        Xc = Xc / sd
        ym = y.mean()
        yc = y - ym
        X_out.append(Xc)
        y_out.append(yc)
        Gs.append(Xc.T @ Xc / n)
        cs.append(Xc.T @ yc / n)
        yys.append(float(yc @ yc) / n)
        ns.append(n)
        means.append(mu)
        scales.append(sd)
        ymeans.append(ym)
    return TaskData(X=X_out, y=y_out, G=np.stack(Gs), c=np.stack(cs), yy=np.array(yys), n=np.array(ns),
                    x_mean=np.stack(means), x_scale=np.stack(scales), y_mean=np.array(ymeans))


# --------------------------------------------------------------------------- objective

def zbar_penalty(Z: np.ndarray) -> float:
    """``Σ_k ‖z_k − z̄‖²`` for a (K, p) 0/1 support matrix (without the λ_z/2 factor)."""
    Z = np.asarray(Z, dtype=float)
    return float(((Z - Z.mean(axis=0)) ** 2).sum())


def internal_objective(data: TaskData, B: np.ndarray, Z: np.ndarray, lambda1: float, lambda2: float,
                       lambda_z: float) -> float:
    """Objective of §6.2 on the prepared data (the intercepts are at their optimum)."""
    GB = np.einsum("kij,kj->ki", data.G, B)
    loss = 0.5 * np.einsum("ki,ki->", B, GB) - np.einsum("ki,ki->", data.c, B) + 0.5 * data.yy.sum()
    val = loss + 0.5 * lambda1 * float((B ** 2).sum())
    if lambda2:
        val += 0.5 * lambda2 * float(((B - B.mean(axis=0)) ** 2).sum())
    if lambda_z:
        val += 0.5 * lambda_z * zbar_penalty(Z)
    return float(val)


def objective(Xs, ys, coef, intercept=None, *, lambda1: float = 0.0, lambda2: float = 0.0,
              lambda_z: float = 0.0, support=None, s: int | None = None, common_support: bool = False) -> float:
    """The sparse multi-task objective of specs/other-papers.md §6.2, on the data as given:

    ``Σ_k [ ‖y_k − b_k − X_kβ_k‖²/(2n_k) + (λ₁/2)‖β_k‖² + (λ₂/2)‖β_k − β̄‖² + (λ_z/2)‖z_k − z̄‖² ]``

    with ``β̄`` and ``z̄`` the task averages and the intercepts ``b_k`` unpenalised.

    ``coef`` is (K, p); ``intercept`` (K,) or None for each task's best intercept
    ``ȳ_k − x̄_kᵀβ_k``. ``support`` is the (K, p) 0/1 matrix z (default: the nonzeros of coef);
    it must cover every nonzero coefficient. With ``s`` the constraint ``Σ_j z_jk <= s`` is
    checked, with ``common_support`` that every task has the same support. Infeasible input
    raises a ReproError.
    """
    Xs, ys = check_tasks(Xs, ys)
    K, p = len(Xs), Xs[0].shape[1]
    coef = np.asarray(coef, dtype=float)
    if coef.shape != (K, p):
        raise ReproError(f"coef has shape {coef.shape}; it must be (K, p) = ({K}, {p}), one row per task")
    if intercept is None:
        intercept = np.array([y.mean() - X.mean(axis=0) @ b for X, y, b in zip(Xs, ys, coef)])
    intercept = np.asarray(intercept, dtype=float).reshape(-1)
    if intercept.shape != (K,):
        raise ReproError(f"intercept has shape {intercept.shape}; it must be ({K},), one per task")
    if support is None:
        Z = np.abs(coef) > ZERO_TOL
    else:
        Z = np.asarray(support)
        if Z.shape != (K, p):
            raise ReproError(f"support has shape {Z.shape}; it must be (K, p) = ({K}, {p})")
        if not np.all((Z == 0) | (Z == 1)):
            raise ReproError("support must hold only 0/1 (or booleans)")
        Z = Z.astype(bool)
        if np.any((np.abs(coef) > ZERO_TOL) & ~Z):
            raise ReproError("coef has nonzeros outside support (β_jk (1 − z_jk) = 0 is violated); "
                             "pass a support that covers every nonzero coefficient")
    if s is not None:
        s = check_int("s", s, 0)
        if np.any(Z.sum(axis=1) > s):
            raise ReproError(f"a task's support has {int(Z.sum(axis=1).max())} entries, more than s={s}")
    if common_support and np.any(Z != Z[0]):
        raise ReproError("common_support=True but the tasks' supports differ")
    lambda1, lambda2, lambda_z = (check_nonneg(n, v) for n, v in
                                  (("lambda1", lambda1), ("lambda2", lambda2), ("lambda_z", lambda_z)))
    val = 0.0
    for X, y, b, b0 in zip(Xs, ys, coef, intercept):
        r = y - b0 - X @ b
        val += float(r @ r) / (2 * X.shape[0])
    val += 0.5 * lambda1 * float((coef ** 2).sum())
    val += 0.5 * lambda2 * float(((coef - coef.mean(axis=0)) ** 2).sum())
    val += 0.5 * lambda_z * zbar_penalty(Z)
    return val


def multitask_rmse(Xs, ys, coef, intercept) -> float:
    """Multi-task RMSE as the package's ``multiTaskRmse``: the mean over tasks of each task's RMSE."""
    Xs, ys = check_tasks(Xs, ys)
    coef = np.asarray(coef, dtype=float)
    intercept = np.asarray(intercept, dtype=float).reshape(-1)
    if coef.shape != (len(Xs), Xs[0].shape[1]) or intercept.shape != (len(Xs),):
        raise ReproError(f"coef {coef.shape} / intercept {intercept.shape} do not match {len(Xs)} tasks "
                         f"with {Xs[0].shape[1]} features")
    return float(np.mean([np.sqrt(np.mean((y - b0 - X @ b) ** 2))
                          for X, y, b, b0 in zip(Xs, ys, coef, intercept)]))


def max_zbar_penalty(K: int, p: int, s: int) -> float:
    """Largest value of ``Σ_k ‖z_k − z̄‖²`` over supports of size s in p features: the tasks'
    supports spread as evenly as possible (``s(K−1)`` when ``sK <= p``, disjoint supports). The
    package divides its λ_z grid by this kind of maximum (``rhoScale``) so that λ_z is comparable
    across s."""
    total = s * K
    if total <= p:
        return float(s * (K - 1))
    lo, extra = divmod(total, p)  # `extra` features used lo+1 times, the rest lo times
    counts = np.array([lo + 1] * extra + [lo] * (p - extra), dtype=float)
    return float((counts * (K - counts) / K).sum())

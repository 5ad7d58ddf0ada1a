"""MIP initialisation by outer approximation (specs/other-papers.md §7.3, ``InitializeMIP``).

The support of H is a binary matrix ``Z ∈ {0,1}^{k×n}`` with ``ΣZ ≤ ℓ``. For a support,

    F(Z) = min { ‖H − W̃X‖_F² : rows of W̃ in Δ_m, 0 ≤ H ≤ M·Z }

is how far the best archetypes on that support (bounded by M) are from the data hull. F extended
to ``Z ∈ [0,1]^{k×n}`` is convex (the value of a convex program whose constraints are jointly
linear in (H, Z)), and ``−M · max(2(W̃X − H), 0)`` at the inner solution is a subgradient (the
multipliers of ``H ≤ M·Z``), so

    η ≥ F(Z⁰) + ⟨−M·max(2(W̃X − H), 0), Z − Z⁰⟩

is a cut. The master problem ``min η`` over binary Z with ``ΣZ ≤ ℓ`` and all cuts so far is a
MILP, solved here by HiGHS through ``scipy.optimize.milp`` (the Julia code uses Gurobi; §9.2). The
loop stops when the relative gap ``(best F − master bound) / best F`` is at most ``min_gap``, after
``max_cuts`` cuts, or after ``time_limit`` seconds. The inner problem is solved approximately as in
the official code: alternate ``H = clip(W̃X, 0, M·Z)`` with a projected gradient step on W̃ (step
``1/(2σ_max(X)²)``), at most ``inner_max_iter`` times, so cuts are as accurate as that solve.
The initial point is the best support found: its H and W̃, and W from projecting each data point
onto the hull of the archetypes.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from reprise.nmf.core import NMFInputError, hull_weights, spectral_norm
from reprise.sparsity import mip_backend, project_simplex

log = logging.getLogger("reprise.nmf")


@dataclass(frozen=True)
class Cut:
    value: float  # F(Z⁰)
    grad: np.ndarray  # k × n subgradient at Z⁰
    Z: np.ndarray  # k × n binary support Z⁰


def inner_problem(Z, X, big_m: float, max_iter: int = 200, tol: float = 1e-4, sigma_x: float | None = None):
    """Approximate ``F(Z)``: returns ``(value, H, W_tilde)`` with H = clip(W̃X, 0, M·Z) feasible for
    the final W̃, so ``value = ‖H − W̃X‖²`` is attained (an upper bound on the exact F(Z)). W̃ starts
    with every row on the first data point; stops when H and W̃X change by less than ``tol``
    relative, or after ``max_iter`` alternations."""
    X, Z = np.asarray(X, dtype=float), np.asarray(Z, dtype=float)
    m = X.shape[0]
    k = Z.shape[0]
    upper = big_m * Z
    s2 = (spectral_norm(X) if sigma_x is None else sigma_x) ** 2
    Wt = np.zeros((k, m))
    Wt[:, 0] = 1.0
    P = Wt @ X
    H = np.clip(P, 0.0, upper)
    for _ in range(max_iter):
        Wt = project_simplex(Wt - (P - H) @ X.T / s2, axis=1)
        P_new = Wt @ X
        H_new = np.clip(P_new, 0.0, upper)
        scale = np.linalg.norm(H_new) + np.linalg.norm(P_new)
        change = np.linalg.norm(H_new - H) + np.linalg.norm(P_new - P)
        P, H = P_new, H_new
        if scale == 0 or change <= tol * scale:
            break
    return float(np.sum((H - P) ** 2)), H, Wt


def make_cut(Z, X, big_m: float, **inner) -> tuple[Cut, np.ndarray, np.ndarray]:
    """Evaluate F at ``Z`` and return the cut there with the inner solution ``(H, W_tilde)``."""
    value, H, Wt = inner_problem(Z, X, big_m, **inner)
    grad = -big_m * np.maximum(2.0 * (Wt @ X - H), 0.0)
    return Cut(value, grad, np.asarray(Z, dtype=float)), H, Wt


@dataclass
class MasterResult:
    Z: np.ndarray | None  # k × n binary support proposed (None when HiGHS found no point in time)
    eta: float  # objective of that point (max over the cuts)
    bound: float  # a valid lower bound on the master's optimum (HiGHS's dual bound)
    status: int  # scipy.optimize.milp status (0 optimal, 1 time/iteration limit)
    message: str = ""


def solve_master(cuts, shape, ell: int, time_limit: float | None = None, backend: str = "highs",
                 mip_rel_gap: float = 1e-9) -> MasterResult:
    """``min η`` over binary Z (``shape``) and real η with ``ΣZ ≤ ell`` and
    ``η ≥ c_t + ⟨g_t, Z − Z_t⟩`` for every cut, by HiGHS (``scipy.optimize.milp``), stopped at
    the relative gap ``mip_rel_gap`` or ``time_limit`` seconds. ``bound`` is HiGHS's dual bound,
    valid however early the solve stops."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    if mip_backend(backend) != "highs":
        raise NMFInputError(f"mip_backend={backend!r}: the sparse NMF master problem is written for HiGHS "
                         f"(scipy.optimize.milp) only; use highs")
    cuts = list(cuts)
    if not cuts:
        raise NMFInputError("solve_master: needs at least one cut (η is unbounded below without one)")
    k, n = shape
    N = k * n
    rows, ub = [np.r_[np.ones(N), 0.0]], [float(ell)]
    for cut in cuts:
        g = np.asarray(cut.grad, dtype=float).reshape(-1)
        rows.append(np.r_[g, -1.0])  # ⟨g, z⟩ − η ≤ ⟨g, Z_t⟩ − c_t
        ub.append(float(g @ np.asarray(cut.Z, dtype=float).reshape(-1) - cut.value))
    A = np.vstack(rows)
    options = {"mip_rel_gap": mip_rel_gap, "disp": False}
    if time_limit is not None:
        options["time_limit"] = max(float(time_limit), 1e-3)
    res = milp(c=np.r_[np.zeros(N), 1.0], constraints=LinearConstraint(A, -np.inf, np.array(ub)),
               integrality=np.r_[np.ones(N), 0.0],
               bounds=Bounds(np.r_[np.zeros(N), -np.inf], np.r_[np.ones(N), np.inf]), options=options)
    bound = getattr(res, "mip_dual_bound", None)
    if res.x is None:
        return MasterResult(None, math.inf, -math.inf if bound is None else float(bound), int(res.status),
                            str(res.message))
    Z = (res.x[:N] > 0.5).astype(float).reshape(k, n)
    eta = float(res.x[N])
    if bound is None or not math.isfinite(bound):
        bound = eta if res.status == 0 else -math.inf
    return MasterResult(Z, eta, float(min(bound, eta)), int(res.status), str(res.message))


@dataclass
class MIPResult:
    H: np.ndarray
    W: np.ndarray
    W_tilde: np.ndarray
    best_value: float  # smallest F found
    gaps: list[float] = field(default_factory=list)  # relative gap after each master solve
    values: list[float] = field(default_factory=list)  # F at each evaluated support
    n_cuts: int = 0
    seconds: float = 0.0
    stop: str = ""  # "gap", "max_cuts", "time_limit" or "master_failed" (HiGHS gave no point, not for time)

    @property
    def gap(self) -> float:
        """The last relative gap (inf when no master solve gave a bound)."""
        return self.gaps[-1] if self.gaps else math.inf


def mip_init(X, k: int, ell: int, big_m: float = 1.0, time_limit: float = 480.0, max_cuts: int = 10,
             min_gap: float = 0.05, Z0=None, backend: str = "highs", inner_max_iter: int = 200,
             master_gap: float = 1e-2) -> MIPResult:
    """Outer approximation (module docstring) from support ``Z0`` (default all zeros, as the demo),
    then W by projecting the data points onto the hull of the best archetypes. Demo values:
    M = 1, 8 minutes (480 s), 10 cuts, gap 0.05. Each master solve stops at HiGHS's relative gap
    ``master_gap`` (its dual bound enters the outer gap, so the bound stays valid; exact master
    solves at 240 binaries and 5 cuts already take seconds, at 1 % a tenth of one)."""
    X = np.asarray(X, dtype=float)
    n = X.shape[1]
    if not (isinstance(big_m, (int, float)) and not isinstance(big_m, bool) and math.isfinite(big_m) and big_m > 0):
        raise NMFInputError(f"mip_big_m={big_m!r} must be a finite number > 0 (an upper bound on the entries of H; "
                         f"X.max() never cuts off an archetype inside the data hull)")
    if not (isinstance(time_limit, (int, float)) and time_limit > 0):
        raise NMFInputError(f"mip_time_limit={time_limit!r} must be a number of seconds > 0 (the demo uses 480)")
    if not (isinstance(max_cuts, int) and max_cuts >= 1):
        raise NMFInputError(f"mip_max_cuts={max_cuts!r} must be an integer ≥ 1 (the demo uses 10)")
    mip_backend(backend)
    t0 = time.perf_counter()
    Z = np.zeros((k, n)) if Z0 is None else np.asarray(Z0, dtype=float)
    sigma_x = spectral_norm(X)
    cuts: list[Cut] = []
    best = None
    out = MIPResult(np.zeros((k, n)), np.zeros((X.shape[0], k)), np.zeros((k, X.shape[0])), math.inf)
    out.stop = "max_cuts"
    for _ in range(max_cuts):
        cut, H, Wt = make_cut(Z, X, big_m, max_iter=inner_max_iter, sigma_x=sigma_x)
        cuts.append(cut)
        out.values.append(cut.value)
        if best is None or cut.value < best[0]:
            best = (cut.value, H, Wt)
        remaining = time_limit - (time.perf_counter() - t0)
        if remaining <= 0:
            out.stop = "time_limit"
            break
        master = solve_master(cuts, (k, n), ell, time_limit=remaining, backend=backend, mip_rel_gap=master_gap)
        c_min = best[0]
        log.info("MIP cut %d: F = %.6g, best %.6g, master bound %.6g (HiGHS status %d), %.1f s", len(cuts),
                 cut.value, best[0], master.bound, master.status, time.perf_counter() - t0)
        if math.isfinite(master.bound):
            out.gaps.append(0.0 if c_min <= 0 else max(0.0, (c_min - master.bound) / c_min))
            if out.gaps[-1] <= min_gap:
                out.stop = "gap"
                break
        if master.Z is None:  # HiGHS found no support within the time left (or failed)
            out.stop = "time_limit" if master.status == 1 else "master_failed"
            break
        if time.perf_counter() - t0 > time_limit:
            out.stop = "time_limit"
            break
        Z = master.Z
    out.n_cuts = len(cuts)
    out.best_value, out.H, out.W_tilde = best
    out.W = hull_weights(X, out.H)
    out.seconds = time.perf_counter() - t0
    return out

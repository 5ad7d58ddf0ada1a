"""Approximate (primal) solvers of the GraphL0 problem (specs/other-papers.md §2.3).

* ``cd``: cyclic coordinate descent over the allowed pairs with the closed-form box-constrained
  ℓ0-ℓ2 update, then the closed-form diagonal update, until the relative objective change is
  below ``rel_tol`` (1e-4) or ``cd_max_itr`` (100) sweeps.
* ``cdpsi``: ``cd`` followed by the partial swap inspection (at most ``swap_max_itr`` = 10 passes;
  after a pass with a swap the diagonal is refreshed and ``cd`` re-run; stop after a pass without
  one). The reference code's default solver.
* ``ascd`` / ``ascdpsi``: the same on an active set: start from the pairs of the top
  ``k = min(⌊0.2p⌋, ⌊√p⌋)`` absolute correlations of each row (and the warm start's nonzeros),
  sweep until the support stays unchanged three times, then alternate ``cd`` (``cdpsi``) on the
  active set with adding every KKT violator (an allowed pair outside the set whose best
  one-coordinate value beats zero) until none is left.

All return a ``HeuristicResult``: the estimate, its objective (the same number as
``graphs.objective``), the per-sweep objective trace and the counts.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from reprise.io import ReproError

from . import _kernels as K
from .problem import GraphProblem, mask_to_pairs

HEURISTICS = ("cd", "cdpsi", "ascd", "ascdpsi")
#: the reference code's defaults
REL_TOL, CD_MAX_ITR, SWAP_MAX_ITR, KKT_MAX_ITR = 1e-4, 100, 10, 100


@dataclass
class HeuristicResult:
    Theta: np.ndarray
    objective: float
    trace: list[float] = field(default_factory=list)  # objective after each CD sweep / swap pass
    sweeps: int = 0
    swaps: int = 0
    kkt_rounds: int = 0
    seconds: float = 0.0

    @property
    def support(self) -> np.ndarray:
        return np.triu(self.Theta != 0, 1)


def _allowed_mask(p: int, allowed: np.ndarray | None) -> np.ndarray:
    if allowed is None:
        mask = np.ones((p, p), dtype=bool)
    else:
        mask = np.asarray(allowed, dtype=bool)
        mask = mask | mask.T
    np.fill_diagonal(mask, False)
    return mask


def _start(prob: GraphProblem, warm: np.ndarray | None, mask: np.ndarray):
    if warm is None:
        return prob.trivial()
    Theta = np.array(warm, dtype=float, copy=True)
    if Theta.shape != (prob.p, prob.p):
        raise ReproError(f"warm start has shape {Theta.shape}; it must be ({prob.p}, {prob.p})")
    off = ~np.eye(prob.p, dtype=bool)
    Theta[off & ~mask] = 0.0
    Theta = 0.5 * (Theta + Theta.T)
    d = np.diag(Theta)
    if np.any(~np.isfinite(Theta)) or np.any(d <= 0):
        return prob.trivial()
    np.clip(Theta, -prob.M, prob.M, out=Theta, where=off)
    return Theta, prob.residuals(Theta)


def _run_cd(prob, Theta, Rt, pairs, rel_tol, cd_max_itr, trace):
    kinds = np.zeros(pairs.shape[0], dtype=np.int64)
    buf = np.empty(max(cd_max_itr, 1))
    obj, sweeps = K.cd_solve(prob.Yt, Rt, Theta, prob.S_diag, pairs, kinds, prob.lambda0, prob.lambda2,
                             prob.M, prob.ratio, rel_tol, cd_max_itr, buf)
    trace.extend(buf[:sweeps].tolist())
    return obj, sweeps


def _run_cdpsi(prob, Theta, Rt, pairs, mask, rel_tol, cd_max_itr, swap_max_itr, trace):
    obj, sweeps = _run_cd(prob, Theta, Rt, pairs, rel_tol, cd_max_itr, trace)
    swaps = 0
    for _ in range(swap_max_itr):
        done = K.psi_pass(prob.Yt, Rt, Theta, prob.S_diag, prob.S, mask, prob.lambda0, prob.lambda2, prob.M,
                          1e-12)
        K.diagonal_update(prob.Yt, Rt, Theta, prob.S_diag)
        obj = prob.objective(Theta, Rt)
        trace.append(obj)
        swaps += done
        if done == 0:
            break
        obj, s = _run_cd(prob, Theta, Rt, pairs, rel_tol, cd_max_itr, trace)
        sweeps += s
    return obj, sweeps, swaps


def initial_active_mask(prob: GraphProblem, Theta: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """The top ``min(⌊0.2p⌋, ⌊√p⌋)`` absolute correlations of each row, within ``allowed``, plus
    the nonzeros of ``Theta``."""
    p = prob.p
    k = max(1, min(int(0.2 * p), int(np.floor(np.sqrt(p)))))
    F = prob.Yt
    corr = (F @ F.T) / np.sqrt(np.outer(prob.S_diag, prob.S_diag))
    np.fill_diagonal(corr, 0.0)
    score = np.where(allowed, np.abs(corr), -1.0)
    top = np.argsort(-score, axis=1, kind="stable")[:, :k]
    active = np.zeros((p, p), dtype=bool)
    rows = np.repeat(np.arange(p), k)
    active[rows, top.reshape(-1)] = True
    active &= allowed
    active |= active.T
    active |= (Theta != 0) & allowed
    np.fill_diagonal(active, False)
    return active


def kkt_violators(prob: GraphProblem, Theta: np.ndarray, Rt: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Pairs among ``candidates`` (symmetric mask) at zero whose best ℓ0-ℓ2 one-coordinate value is
    below zero, i.e. ``min_{0<|θ|≤M} (a+λ2)θ² + bθ + λ0 < 0``."""
    a = prob.curvature(Theta) + prob.lambda2
    b = prob.gradient_at_zero(Theta, Rt)
    t = np.minimum(np.abs(b) / (2 * a), prob.M)
    best = a * t * t - np.abs(b) * t + prob.lambda0
    return candidates & (Theta == 0) & (best < -1e-12 * np.maximum(1.0, np.abs(b) * t))


def solve_heuristic(prob: GraphProblem, solver: str = "cdpsi", warm_start: np.ndarray | None = None,
                    allowed: np.ndarray | None = None, rel_tol: float = REL_TOL, cd_max_itr: int = CD_MAX_ITR,
                    swap_max_itr: int = SWAP_MAX_ITR, kkt_max_itr: int = KKT_MAX_ITR) -> HeuristicResult:
    """Run ``solver`` (one of ``HEURISTICS``) on ``prob``; ``allowed`` (symmetric boolean p × p)
    restricts the support, ``warm_start`` a starting Θ (entries outside ``allowed`` dropped)."""
    if solver not in HEURISTICS:
        raise ReproError(f"solver={solver!r} is not a heuristic; use one of {', '.join(HEURISTICS)}")
    if rel_tol <= 0 or cd_max_itr < 1 or swap_max_itr < 0:
        raise ReproError(f"rel_tol={rel_tol} must be > 0, cd_max_itr={cd_max_itr} ≥ 1, "
                         f"swap_max_itr={swap_max_itr} ≥ 0")
    t0 = time.perf_counter()
    mask = _allowed_mask(prob.p, allowed)
    Theta, Rt = _start(prob, warm_start, mask)
    trace: list[float] = [prob.objective(Theta, Rt)]
    swaps = rounds = sweeps = 0
    if solver in ("cd", "cdpsi"):
        pairs = mask_to_pairs(mask)
        if solver == "cd":
            obj, sweeps = _run_cd(prob, Theta, Rt, pairs, rel_tol, cd_max_itr, trace)
        else:
            obj, sweeps, swaps = _run_cdpsi(prob, Theta, Rt, pairs, mask, rel_tol, cd_max_itr, swap_max_itr, trace)
    else:
        active = initial_active_mask(prob, Theta, mask) if warm_start is None else ((Theta != 0) & mask)
        if warm_start is None:
            pairs = mask_to_pairs(active)
            sweeps += K.cd_until_support_stable(prob.Yt, Rt, Theta, prob.S_diag, pairs,
                                                np.zeros(pairs.shape[0], dtype=np.int64), prob.lambda0,
                                                prob.lambda2, prob.M, prob.ratio, 3, cd_max_itr)
            active = (Theta != 0) & mask
            trace.append(prob.objective(Theta, Rt))
        while True:
            pairs = mask_to_pairs(active)
            if solver == "ascd":
                obj, s = _run_cd(prob, Theta, Rt, pairs, rel_tol, cd_max_itr, trace)
            else:
                obj, s, w = _run_cdpsi(prob, Theta, Rt, pairs, active, rel_tol, cd_max_itr, swap_max_itr, trace)
                swaps += w
            sweeps += s
            rounds += 1
            new = kkt_violators(prob, Theta, Rt, mask & ~active)
            if not new.any() or rounds >= kkt_max_itr:
                break
            active = active | new
    obj = prob.objective(Theta, Rt)
    return HeuristicResult(Theta=Theta, objective=obj, trace=trace, sweeps=sweeps, swaps=swaps,
                           kkt_rounds=rounds, seconds=time.perf_counter() - t0)

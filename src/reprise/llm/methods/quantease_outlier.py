"""Outlier-aware QuantEase (spec §2.4): a quantized part on the grid plus a sparse full-precision part.

Problem: minimise ``tr((W − Ŵ − Ĥ) G (W − Ŵ − Ĥ)ᵀ)`` with ``Ŵ`` on the grid and ``Ĥ`` sparse:
at most ``s = round(outlier · q · p)`` non-zero weights (unstructured), or at most
``s = round(outlier · p)`` non-zero input columns (``structured``). Block coordinate descent as the
paper states it; every iteration ``k`` does

(a) one QuantEase sweep on ``Ŵ`` towards the target ``W − Ĥ`` (exact coordinate minimisation, the
    quantized column written back into ``Ŵ``, the correction normalised by ``G_jj``; the shared
    engine of ``quantease.py``, with the same relaxation schedule), the residual ``(W − Ĥ − Ŵ) G``
    recomputed from scratch at the start of every sweep (``Ĥ`` moved);
(b) one iterative-hard-thresholding step ``Ĥ ← P_s(Ĥ − η (Ŵ + Ĥ − W) G)`` with
    ``η = alpha / (2 λ_max(G))`` (``torch.linalg.eigvalsh``, deterministic). ``P_s`` keeps exactly
    ``s`` entries of largest magnitude (columns of largest ℓ2 norm, structured); ties go to the
    lowest row-major index (column index, structured).

Start: ``Ĥ`` = the top-``s`` entries (columns) of ``W``, ``Ŵ = W`` with them zeroed. Grids
(released code's ``find_params``): unstructured, per row (group) from the original ``W`` after
discarding extremes: with ``m = round(n · outlier / 2)`` for ``n`` columns in the slice, ``x_min``
is the m-th smallest entry and ``x_max`` the (m+1)-th largest (plain min/max when ``m = 0``), each
then combined with 0 as usual; fixed for the whole solve. Structured: plain min/max over the
slice's columns that are not outliers (all of them if every column of a group is one), refit at
the start of every iteration from the current outlier set.

Output: ``weight = Ŵ + Ĥ``: on the grid (``quant``) everywhere except at the outliers, which hold
``Ŵ + Ĥ`` in full precision; their positions are ``extras["outlier_mask"]`` (bool, W's shape,
exactly ``s`` entries or ``s`` whole columns).

**Bug in the released outlier code (not reproduced here).** ``method/quantease_outlier.py`` of
linkedin/QuantEase writes each new column into ``P_hat[:, j]`` instead of ``W_hat[:, j]`` (only dead
columns update ``W_hat``), and its within-sweep correction lacks the ``1/Σ_jj`` factor of
``quantease.py``. ``Ŵ`` therefore stays the unquantized start ``W − Ĥ₀``, is never on the grid, and
``Ŵ + Ĥ`` reproduces ``W`` (spec §2.4: reconstruction error ≈ 1e-33 in a port). The paper's numbers
cannot come from that code; this module implements the algorithm the paper states, and the
tests check that the returned quantized part is on the grid and differs from ``W``.
"""
from __future__ import annotations

import dataclasses
import math

import torch

from reprise.llm.methods.base import QuantConfig, SolveResult, _fail
from reprise.llm.methods.quant_grid import decode, fit_grid, group_index
from reprise.llm.methods.quantease import CoordinateDescent, Grid, relaxed_sweep
from reprise.llm.methods.registry import register


@dataclasses.dataclass(frozen=True)
class QuantEaseOutlierConfig(QuantConfig):
    outlier: float = 0.01
    structured: bool = False
    alpha: float = 1.0
    iters: int = 30
    relax: bool = True
    act_order: bool = False
    block_size: int = 32

    def validate(self) -> None:
        super().validate()
        for name in ("structured", "relax", "act_order"):
            self._check_bool(name)
        self._check_pos_int("block_size")
        self._check_pos_int("iters")
        self._check_fraction("outlier", "use a fraction in [0, 1) (0.01 = 1% of the weights, or of the input "
                                        "columns when structured)")
        self._float_field("alpha")
        if not isinstance(self.alpha, float) or not math.isfinite(self.alpha) or self.alpha <= 0:
            _fail(self, "alpha", self.alpha, "use a finite number > 0 (IHT step multiplier; 1 in the paper)")


def top_s(scores: torch.Tensor, s: int) -> torch.Tensor:
    """Bool mask of exactly ``s`` largest entries of the 1-D ``scores``; ties to the lowest index."""
    n = scores.numel()
    if s <= 0:
        return torch.zeros(n, dtype=torch.bool, device=scores.device)
    if s >= n:
        return torch.ones(n, dtype=torch.bool, device=scores.device)
    thr = torch.kthvalue(scores, n - s + 1).values  # the s-th largest
    gt = scores > thr
    eq = scores == thr
    need = s - int(gt.sum())
    return gt | (eq & (torch.cumsum(eq.to(torch.int64), 0) <= need))


def _slices(p: int, group_size: int):
    step = group_size if group_size > 0 else p
    return [(c0, min(c0 + step, p)) for c0 in range(0, p, step)]


def trimmed_grid(W: torch.Tensor, outlier: float, bits: int, group_size: int, sym: bool) -> Grid:
    """Unstructured-outlier grid: min/max per row (group) after discarding ``round(n·outlier/2)`` extremes."""
    scales, zeros = [], []
    for c0, c1 in _slices(W.shape[1], group_size):
        sl = W[:, c0:c1]
        n = c1 - c0
        m = int(round(n * outlier / 2))
        if m > 0:
            lo = torch.kthvalue(sl, m, dim=1).values  # m-th smallest
            hi = torch.kthvalue(sl, n - m, dim=1).values  # (m+1)-th largest
            sl = torch.stack([lo, hi], 1)  # fit_grid of these two columns is the trimmed min/max grid
        s, z = fit_grid(sl, bits, sym)
        scales.append(s)
        zeros.append(z)
    return Grid(torch.stack(scales, 1), torch.stack(zeros, 1), group_index(W.shape[1], group_size, W.device),
                bits, group_size)


def masked_grid(W: torch.Tensor, keep: torch.Tensor, bits: int, group_size: int, sym: bool) -> Grid:
    """Structured-outlier grid: min/max per row (group) over the columns in ``keep`` only."""
    scales, zeros = [], []
    for c0, c1 in _slices(W.shape[1], group_size):
        k = keep[c0:c1]
        sl = W[:, c0:c1][:, k] if bool(k.any()) else W[:, c0:c1]
        s, z = fit_grid(sl, bits, sym)
        scales.append(s)
        zeros.append(z)
    return Grid(torch.stack(scales, 1), torch.stack(zeros, 1), group_index(W.shape[1], group_size, W.device),
                bits, group_size)


def _select(cand: torch.Tensor, s: int, structured: bool) -> torch.Tensor:
    """Exact-budget support of ``P_s`` on ``cand`` (q, p), original layout."""
    if structured:
        cols = top_s(torch.linalg.vector_norm(cand, dim=0), s)
        return cols[None, :].expand_as(cand).clone()
    return top_s(cand.abs().reshape(-1), s).view_as(cand)


@register("quantease-outlier", Config=QuantEaseOutlierConfig, kind="quant", needs_gram=True)
def _quantease_outlier(W: torch.Tensor, G: torch.Tensor, cfg: QuantEaseOutlierConfig) -> SolveResult:
    q, p = W.shape
    s = int(round(cfg.outlier * (p if cfg.structured else q * p)))
    lam = float(torch.linalg.eigvalsh(0.5 * (G + G.T))[-1])
    eta = cfg.alpha / (2 * lam) if lam > 0 else 0.0

    mask = _select(W, s, cfg.structured)
    H = torch.where(mask, W, torch.zeros_like(W))
    if cfg.structured:
        grid = masked_grid(W, ~mask[0], cfg.bits, cfg.group_size, cfg.sym)
    else:
        grid = trimmed_grid(W, cfg.outlier, cfg.bits, cfg.group_size, cfg.sym)

    cd = CoordinateDescent(G, cfg.bits, cfg.block_size, cfg.act_order)
    St, Zt = grid.expanded(cd.perm)
    cd.set_grid(St, Zt, grid.uniform)
    What_t = cd.to_layout(W - H)
    cd.start(cd.to_layout(W - H), torch.addcmul(Zt, What_t, cd.invSt))
    traj = []
    for k in range(cfg.iters):
        if cfg.structured and k > 0:  # refit the grid on the current non-outlier columns, re-encode Ŵ on it
            What_t = cd.weight_t()
            grid = masked_grid(W, ~mask[0], cfg.bits, cfg.group_size, cfg.sym)
            St, Zt = grid.expanded(cd.perm)
            cd.set_grid(St, Zt, grid.uniform)
            cd.Vt.copy_(torch.addcmul(Zt, What_t, cd.invSt))
        if k > 0:
            cd.Tt.copy_(cd.to_layout(W - H))
            traj.append(cd.refresh())  # objective of Ŵ + Ĥ after the previous iteration's IHT step
        else:
            cd.refresh()
        if relaxed_sweep(k, cfg.iters, cfg.relax):
            cd.relaxed_sweep()
            cd.refresh()
        else:
            cd.rounded_sweep()
        if s > 0 and eta > 0:  # IHT: gradient step on Ĥ (−R is the half-gradient), keep exactly s
            cand = H + eta * cd.from_layout(cd.residual_t())
            mask = _select(cand, s, cfg.structured)
            H = torch.where(mask, cand, torch.zeros_like(cand))
    cd.Tt.copy_(cd.to_layout(W - H))
    traj.append(cd.refresh())

    quant = grid.record()
    Wq = decode(quant, cd.from_layout(cd.Vt).to(torch.float32)).to(W.dtype)
    weight = Wq + H  # H is exactly 0 off the outliers, so those weights stay on the grid
    extras = {"outlier_mask": mask, "n_outliers": int(mask.sum()), "iht_step": eta,
              "sweep_objective": torch.tensor(traj, dtype=torch.float64)}
    if cd.perm is not None:
        extras["perm"] = cd.perm.cpu()
    return SolveResult(weight=weight, quant=quant, extras=extras)
